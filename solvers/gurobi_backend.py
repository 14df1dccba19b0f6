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

from solvers.highs_backend import MIP_FEASIBILITY_TOLERANCE, relax_tiny
from solvers.result import SolveResult, SolveStatus, proven_bound

_S = GRB.Status
#: Every Gurobi status (the members of ``GRB.Status``), mapped to what leo may conclude.
#: A stop on a limit leo sets (time, BestObjStop/BestBdStop, an interrupt) keeps Gurobi's
#: ObjBound of a MIP, which Gurobi proved; CUTOFF proves the cutoff and is handled before
#: this table, where one was set; everything else proves nothing, as does a status
#: unknown to this table.
STATUS_OUTCOME: dict[int, SolveStatus] = {
    _S.OPTIMAL: SolveStatus.OPTIMAL,
    _S.TIME_LIMIT: SolveStatus.TIME_LIMIT,
    _S.USER_OBJ_LIMIT: SolveStatus.INTERRUPTED,
    _S.INTERRUPTED: SolveStatus.INTERRUPTED,
    _S.CUTOFF: SolveStatus.ERROR,  # without a cutoff set by leo: not a proof it has checked
    _S.LOADED: SolveStatus.ERROR,
    _S.INFEASIBLE: SolveStatus.ERROR,  # without a cutoff: every box point is feasible, so a numerical failure
    _S.INF_OR_UNBD: SolveStatus.ERROR,
    _S.UNBOUNDED: SolveStatus.ERROR,
    _S.ITERATION_LIMIT: SolveStatus.ERROR,
    _S.NODE_LIMIT: SolveStatus.ERROR,
    _S.SOLUTION_LIMIT: SolveStatus.ERROR,
    _S.NUMERIC: SolveStatus.ERROR,
    _S.SUBOPTIMAL: SolveStatus.ERROR,
    _S.INPROGRESS: SolveStatus.ERROR,
    _S.WORK_LIMIT: SolveStatus.ERROR,
    _S.MEM_LIMIT: SolveStatus.ERROR,
    _S.LOCALLY_OPTIMAL: SolveStatus.ERROR,
    _S.LOCALLY_INFEASIBLE: SolveStatus.ERROR,
}


#: Statuses that, under a cutoff set by leo, prove that nothing lies below it.
_PROVES_CUTOFF = (_S.CUTOFF, _S.INFEASIBLE)


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

    def __init__(self, problem: Any, relax: bool = False, threads: int = 1) -> None:
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
        integer = np.asarray(problem.integer, bool) & self.is_mip
        vtype = np.where(integer, GRB.INTEGER, GRB.CONTINUOUS)
        self.x = m.addMVar(problem.num_cols, lb=_inf(problem.col_lower), ub=_inf(problem.col_upper), vtype=vtype)
        self.model = m
        self._rows: list[tuple[Any, ...]] = []  # Gurobi constraints per leo row
        self._x_cols = getattr(problem, "x_cols", None)
        self._on_point: Callable[[np.ndarray], None] | None = None
        self._last: np.ndarray | None = None
        self._duals: np.ndarray | None = None
        self.add_rows(problem.matrix, problem.row_lower, problem.row_upper)

    @property
    def num_rows(self) -> int:
        return len(self._rows)

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None:
        """Append rows ``lower <= matrix @ v <= upper`` (tiny entries removed, rows widened)."""
        p = self.problem
        a, lo, hi = relax_tiny(matrix, np.asarray(lower, float), np.asarray(upper, float), p.col_lower, p.col_upper)
        n = a.shape[0]
        if n == 0:
            return
        per_row: list[list[Any]] = [[] for _ in range(n)]
        equal = np.isfinite(lo) & (lo == hi)
        for sense, rows, rhs in (("=", equal, lo), ("<", ~equal & np.isfinite(hi), hi),
                                 (">", ~equal & np.isfinite(lo), lo)):
            idx = np.flatnonzero(rows)
            if idx.size:
                cons = self.model.addMConstr(a[idx], self.x, sense, rhs[idx]).tolist()
                for i, c in zip(idx, cons):
                    per_row[i].append(c)
        self._rows.extend(tuple(c) for c in per_row)
        self.model.update()

    def truncate_rows(self, count: int) -> None:
        """Delete every row after the first ``count``."""
        if len(self._rows) > count:
            self.model.remove([c for cons in self._rows[count:] for c in cons])
            del self._rows[count:]
            self.model.update()

    def set_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change column bounds in place."""
        cols = np.asarray(cols, dtype=int)
        if cols.size:
            self.x[cols].LB = _inf(lower)
            self.x[cols].UB = _inf(upper)
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

    def _row_duals(self) -> np.ndarray:
        """Per leo row, the sum of the duals of its Gurobi constraints."""
        flat = [c for cons in self._rows for c in cons]
        owner = np.repeat(np.arange(len(self._rows)), [len(cons) for cons in self._rows])
        duals = np.zeros(len(self._rows))
        if flat:
            np.add.at(duals, owner, np.asarray(self.model.getAttr("Pi", flat), dtype=np.float64))
        return duals

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
        self._last, self._duals = None, None
        t0 = time.perf_counter()
        m.optimize(self._callback if (self.is_mip and on_point is not None) else None)
        seconds = time.perf_counter() - t0
        self._on_point = None
        status = m.Status
        incumbent, point = math.inf, None
        proved = cutoff and status in _PROVES_CUTOFF
        if m.SolCount > 0 and not proved:
            incumbent = float(m.ObjVal)
            self._last = np.asarray(self.x.X, dtype=np.float64).copy()
            point = (self._last[self._x_cols] if self._x_cols is not None else self._last).copy()
        nodes = int(m.NodeCount) if self.is_mip else 0
        if proved:
            return SolveResult(SolveStatus.OPTIMAL, float(threshold), math.inf, None, seconds, nodes)
        kind = outcome(status)
        if kind is SolveStatus.ERROR:
            bound = -math.inf
        elif self.is_mip:
            bound = float(m.ObjBound)
        else:  # an LP optimum is a proven bound only when Gurobi says optimal
            bound = incumbent if kind is SolveStatus.OPTIMAL else -math.inf
            if kind is SolveStatus.OPTIMAL:
                self._duals = self._row_duals()
        bound = proven_bound(bound, threshold if cutoff else None, GRB.INFINITY)
        return SolveResult(kind, bound, incumbent, point, seconds, nodes)


def new_model(problem: Any, relax: bool = False, threads: int = 1) -> GurobiModel:
    return GurobiModel(problem, relax=relax, threads=threads)
