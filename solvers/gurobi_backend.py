"""A persistent Gurobi model (gurobipy) of one problem, with HiGHS's surface (``Model``
in solvers/backend.py). Install with ``pip install 'leo[gurobi]'``; the pip package
carries a size-limited licence (about 2000 variables and constraints), a full licence
found by gurobipy lifts it.

Early stop for "is min >= threshold?" (MIP only): ``Cutoff`` = threshold prunes every
node whose bound reaches it, and a search that ends with status CUTOFF (or INFEASIBLE:
Gurobi's presolve turns the cutoff into a row and may then call the model infeasible)
found nothing below it, which proves the threshold (every box point satisfies the model,
so it is not empty); ``BestObjStop`` = threshold stops at the first
incumbent at or below it and ``BestBdStop`` = threshold once the bound reaches it
(status USER_OBJ_LIMIT; the bound is Gurobi's proven ``ObjBound``). ``on_point`` gets
every new incumbent through the MIPSOL callback. ``threads`` is Gurobi's ``Threads``;
``start`` is the MIP start (``Start``). Rows are kept two-sided: a row with both sides
finite and different is two Gurobi constraints, and its dual is their sum.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import gurobipy as gp
import numpy as np
import scipy.sparse as sp
from gurobipy import GRB

from solvers.backend import Tuning
from solvers.highs_backend import MIP_FEASIBILITY_TOLERANCE, tiny_widening
from solvers.result import CONCLUSION, Raw, SolveResult, SolveStatus, Termination, as_feasibility, conclude

_S = GRB.Status
#: Every Gurobi status (the members of ``GRB.Status``), mapped to why Gurobi stopped;
#: ``CONCLUSION`` says what leo may conclude. A stop on a limit leo sets (time,
#: BestObjStop/BestBdStop, an interrupt) keeps Gurobi's ObjBound of a MIP, which Gurobi
#: proved; CUTOFF (and INFEASIBLE: Gurobi's presolve turns the cutoff into a row) proves a
#: cutoff leo set (``solvers.result.conclude``); everything else proves nothing, as does a
#: status unknown to this table (UNKNOWN).
TERMINATION: dict[int, Termination] = {
    _S.OPTIMAL: Termination.OPTIMAL,
    _S.TIME_LIMIT: Termination.TIME_LIMIT,
    _S.USER_OBJ_LIMIT: Termination.INTERRUPTED,
    _S.INTERRUPTED: Termination.INTERRUPTED,
    _S.CUTOFF: Termination.CUTOFF,
    _S.LOADED: Termination.ERROR,
    _S.INFEASIBLE: Termination.INFEASIBLE,
    _S.INF_OR_UNBD: Termination.INFEASIBLE_OR_UNBOUNDED,
    _S.UNBOUNDED: Termination.UNBOUNDED,
    _S.ITERATION_LIMIT: Termination.OTHER_LIMIT,
    _S.NODE_LIMIT: Termination.OTHER_LIMIT,
    _S.SOLUTION_LIMIT: Termination.OTHER_LIMIT,
    _S.NUMERIC: Termination.NUMERICAL_ERROR,
    _S.SUBOPTIMAL: Termination.NUMERICAL_ERROR,  # Gurobi's word for an optimum it could not verify numerically
    _S.INPROGRESS: Termination.ERROR,
    _S.WORK_LIMIT: Termination.OTHER_LIMIT,
    _S.MEM_LIMIT: Termination.OTHER_LIMIT,
    _S.LOCALLY_OPTIMAL: Termination.UNKNOWN,  # nonconvex solves only
    _S.LOCALLY_INFEASIBLE: Termination.UNKNOWN,
}

#: What leo may conclude from each Gurobi status (``TERMINATION`` then ``CONCLUSION``).
STATUS_OUTCOME: dict[int, SolveStatus] = {s: CONCLUSION[t] for s, t in TERMINATION.items()}

#: Gurobi parameters per tuning (``solvers.backend.Tuning``).
_TUNING: dict[Tuning, tuple[tuple[str, object], ...]] = {
    Tuning.DEFAULT: (),
    Tuning.RESOLVE: (("Method", 1), ("Presolve", 0), ("ScaleFlag", 0)),
}


def termination(status: int) -> Termination:
    """Why Gurobi stopped (an unknown status: UNKNOWN)."""
    return TERMINATION.get(status, Termination.UNKNOWN)


def outcome(status: int) -> SolveStatus:
    """What a Gurobi status lets leo conclude (unknown statuses prove nothing)."""
    return STATUS_OUTCOME.get(status, SolveStatus.ERROR)


def version() -> str:
    major, minor, tech = gp.gurobi.version()
    return f"Gurobi {major}.{minor}.{tech}"


def _inf(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, float)
    return np.where(np.isfinite(v), v, np.sign(v) * GRB.INFINITY)


class GurobiModel:
    """One Gurobi model holding a problem (as MILP, or as its LP relaxation)."""

    def __init__(self, problem: Any, relax: bool = False, threads: int = 1, tuning: Tuning = Tuning.DEFAULT) -> None:
        self.problem = problem
        self.is_mip = (not relax) and problem.num_binaries > 0
        self.env = gp.Env(empty=True)
        self.env.setParam("OutputFlag", 0)
        self.env.start()
        m = gp.Model(env=self.env)
        m.Params.Threads = max(int(threads), 0)
        m.Params.MIPGap = 0.0
        m.Params.MIPGapAbs = 0.0
        m.Params.FeasibilityTol = MIP_FEASIBILITY_TOLERANCE
        m.Params.IntFeasTol = MIP_FEASIBILITY_TOLERANCE
        if not self.is_mip:
            m.Params.InfUnbdInfo = 1  # a Farkas proof with an infeasible LP (``dual_ray``)
        for name, value in _TUNING[tuning]:
            m.setParam(name, value)
        integer = np.asarray(problem.integer, bool) & self.is_mip
        vtype = np.where(integer, GRB.INTEGER, GRB.CONTINUOUS)
        self.x = m.addMVar(problem.num_cols, lb=_inf(problem.col_lower), ub=_inf(problem.col_upper), vtype=vtype)
        self.model = m
        self._rows: list[tuple[Any, ...]] = []  # Gurobi constraints per leo row
        self._widen = np.zeros(0)
        self._a = sp.csr_matrix((0, problem.num_cols))  # the rows as Gurobi holds them (for set_row_bounds)
        self._x_cols = getattr(problem, "x_cols", None)
        self._on_point: Callable[[np.ndarray], None] | None = None
        self._last: np.ndarray | None = None
        self._duals: np.ndarray | None = None
        self._ray: np.ndarray | None = None
        self.add_rows(problem.matrix, problem.row_lower, problem.row_upper)

    @property
    def num_rows(self) -> int:
        return len(self._rows)

    @property
    def num_cols(self) -> int:
        return int(self.problem.num_cols)

    def _constraints(self, a: sp.csr_matrix, lo: np.ndarray, hi: np.ndarray) -> list[tuple[Any, ...]]:
        """Gurobi constraints for rows ``lo <= a @ x <= hi``: one per finite side (one for an equation)."""
        per_row: list[list[Any]] = [[] for _ in range(a.shape[0])]
        equal = np.isfinite(lo) & (lo == hi)
        for sense, rows, rhs in (("=", equal, lo), ("<", ~equal & np.isfinite(hi), hi),
                                 (">", ~equal & np.isfinite(lo), lo)):
            idx = np.flatnonzero(rows)
            if idx.size:
                cons = self.model.addMConstr(a[idx], self.x, sense, rhs[idx]).tolist()
                for i, c in zip(idx, cons):
                    per_row[i].append(c)
        return [tuple(c) for c in per_row]

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None:
        """Append rows ``lower <= matrix @ v <= upper`` (tiny entries removed, rows widened)."""
        p = self.problem
        a, widen = tiny_widening(matrix, p.col_lower, p.col_upper)
        if a.shape[0] == 0:
            return
        self._rows.extend(self._constraints(a, np.asarray(lower, float) - widen, np.asarray(upper, float) + widen))
        self._widen = np.concatenate([self._widen, widen])
        self._a = sp.vstack([self._a, a]).tocsr()
        self.model.update()

    def truncate_rows(self, count: int) -> None:
        """Delete every row after the first ``count``."""
        if len(self._rows) > count:
            self.model.remove([c for cons in self._rows[count:] for c in cons])
            del self._rows[count:]
            self._widen = self._widen[:count]
            self._a = self._a[:count]
            self.model.update()

    def set_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change column bounds in place."""
        cols = np.asarray(cols, dtype=int)
        if cols.size:
            self.x[cols].LB = _inf(lower)
            self.x[cols].UB = _inf(upper)
            self.model.update()

    def set_row_bounds(self, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change the sides of existing rows, widened as those rows were: each row's Gurobi
        constraints are made again (a side may open or close)."""
        rows = np.asarray(rows, dtype=int)
        if not rows.size:
            return
        widen = self._widen[rows]
        lo, hi = np.asarray(lower, float) - widen, np.asarray(upper, float) + widen
        self.model.remove([c for r in rows for c in self._rows[r]])
        for r, cons in zip(rows, self._constraints(self._a[rows], lo, hi)):
            self._rows[r] = cons
        self.model.update()

    def solution(self) -> np.ndarray:
        """The full column vector of the last incumbent."""
        if self._last is None:
            raise RuntimeError("no solution: the last solve found no point")
        return self._last.copy()

    def row_duals(self) -> np.ndarray:
        """The row duals of the last LP optimum (nonzero where a row binds it)."""
        if self._duals is None:
            raise RuntimeError("no row duals: the last solve was not an LP solved to optimality")
        return self._duals.copy()

    def dual_ray(self) -> np.ndarray | None:
        """Gurobi's Farkas dual of the last LP it called infeasible (None: none)."""
        return None if self._ray is None else self._ray.copy()

    def _per_row(self, attr: str) -> np.ndarray:
        """Per leo row, the sum of attribute ``attr`` (Pi, FarkasDual) over its Gurobi constraints."""
        flat = [c for cons in self._rows for c in cons]
        owner = np.repeat(np.arange(len(self._rows)), [len(cons) for cons in self._rows])
        values = np.zeros(len(self._rows))
        if flat:
            np.add.at(values, owner, np.asarray(self.model.getAttr(attr, flat), dtype=np.float64))
        return values

    def _callback(self, model: gp.Model, where: int) -> None:
        if where == GRB.Callback.MIPSOL and self._on_point is not None:
            self._on_point(np.asarray(model.cbGetSolution(self.x), dtype=np.float64))

    def _prepare(self, cost: np.ndarray, threshold: float | None, time_limit: float,
                 start: np.ndarray | None) -> bool:
        """Set objective, limits and warm start for the next solve; whether a cutoff is set."""
        m = self.model
        self.x.Obj = np.asarray(cost, float)
        m.ModelSense = GRB.MINIMIZE
        m.Params.TimeLimit = float(max(time_limit, 1e-3))
        cutoff = self.is_mip and threshold is not None
        m.Params.Cutoff = float(threshold) if cutoff else GRB.INFINITY
        m.Params.BestObjStop = float(threshold) if cutoff else -GRB.INFINITY
        m.Params.BestBdStop = float(threshold) if cutoff else GRB.INFINITY
        if self.is_mip:
            m.reset()  # a fresh search: no bound or incumbent carried over from the last objective
            self.x.Start = np.asarray(start, float) if start is not None else np.full(self.x.shape, GRB.UNDEFINED)
        return cutoff

    def minimise(
        self,
        cost: np.ndarray,
        threshold: float | None,
        time_limit: float,
        start: np.ndarray | None = None,
        on_point: Callable[[np.ndarray], None] | None = None,
    ) -> SolveResult:
        """Minimise ``cost @ v``, stopping once bound >= threshold or incumbent < threshold
        (``None``: to optimality); only what Gurobi proved becomes the bound."""
        m = self.model
        cutoff = self._prepare(cost, threshold, time_limit, start)
        self._on_point = on_point
        self._last, self._duals, self._ray = None, None, None
        t0 = time.perf_counter()
        m.optimize(self._callback if (self.is_mip and on_point is not None) else None)
        seconds = time.perf_counter() - t0
        self._on_point = None
        why = termination(m.Status)
        incumbent, point = math.inf, None
        if m.SolCount > 0 and not (cutoff and why in (Termination.CUTOFF, Termination.INFEASIBLE)):
            incumbent = float(m.ObjVal)
            self._last = np.asarray(self.x.X, dtype=np.float64).copy()
            point = (self._last[self._x_cols] if self._x_cols is not None else self._last).copy()
        nodes = int(m.NodeCount) if self.is_mip else 0
        dual = float(m.ObjBound) if self.is_mip and why in (Termination.OPTIMAL, Termination.TIME_LIMIT,
                                                           Termination.INTERRUPTED) else -math.inf
        res = conclude(Raw(why, self.is_mip, dual, incumbent, point, seconds, nodes),
                       float(threshold) if cutoff else None, GRB.INFINITY)
        if not self.is_mip and res.status is SolveStatus.OPTIMAL:
            self._duals = self._per_row("Pi")
        elif not self.is_mip and why is Termination.INFEASIBLE:
            self._ray = self._farkas()
        return res

    def _farkas(self) -> np.ndarray | None:
        try:
            return self._per_row("FarkasDual")
        except gp.GurobiError:  # no proof kept (e.g. presolve decided it)
            return None

    def feasibility(self, time_limit: float) -> SolveResult:
        """Whether the model has a point (``Model.feasibility``); "infeasible or unbounded" is
        asked again without dual reductions (every column is bounded, so it is one or the other)."""
        zero = np.zeros(self.num_cols)
        res = as_feasibility(self.minimise(zero, None, time_limit))
        if res.termination is Termination.INFEASIBLE_OR_UNBOUNDED:
            self.model.Params.DualReductions = 0
            try:
                res = as_feasibility(self.minimise(zero, None, time_limit))
            finally:
                self.model.Params.DualReductions = 1
        return res


def new_model(problem: Any, relax: bool = False, threads: int = 1, tuning: Tuning = Tuning.DEFAULT) -> GurobiModel:
    return GurobiModel(problem, relax=relax, threads=threads, tuning=tuning)
