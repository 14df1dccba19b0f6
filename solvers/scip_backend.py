"""A persistent SCIP model (pyscipopt) of one problem, with HiGHS's surface (``Model``
in solvers/backend.py). Install with ``pip install 'leo[scip]'``.

Early stop for "is min >= threshold?" (MIP only):
- the threshold is SCIP's objective limit (``setObjlimit``): nodes whose bound reaches
  it are pruned, and a search that ends "infeasible" found nothing below it, which
  proves the threshold (every box point satisfies the model, so it is not empty);
- an event handler on new best solutions interrupts the search at the first incumbent
  below it (status "userinterrupt"): the answer can then no longer be yes. (SCIP's
  ``limits/primal`` cannot do this: under an objective limit SCIP's primal bound starts
  at the limit, so it would stop at once.)
SCIP prunes with its epsilon (1e-9) as HiGHS prunes with its tolerances; leo's margin
(default 1e-6) is what a sign proof must clear on top of that.

``on_point`` gets every new best solution through an event handler (BESTSOLFOUND), as a
full column vector. Threads: SCIP's branch and bound is sequential; ``threads`` is
passed to its LP solver (``lp/threads``), which SoPlex may ignore. Warm start: a
``start`` vector is handed to SCIP as a solution before the search (MIP only).
Row duals (LP only) need presolving and propagation off, so a relaxed model runs
without them: its constraints then stay the linear rows they were given as.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyscipopt
import scipy.sparse as sp
from pyscipopt.scip import Expr, ExprCons, Term

from solvers.backend import Tuning
from solvers.highs_backend import MIP_FEASIBILITY_TOLERANCE, tiny_widening
from solvers.result import CONCLUSION, Raw, SolveResult, SolveStatus, Termination, as_feasibility, conclude

#: Every SCIP status (``Model.getStatus()`` gives the lowercased name of a member of
#: ``pyscipopt.SCIP_STATUS``), mapped to why SCIP stopped; ``CONCLUSION`` says what leo may
#: conclude. A stop leo asks for (the time limit, an interrupt on an incumbent below the
#: threshold) keeps SCIP's dual bound, which SCIP proved; limits leo never sets prove nothing
#: it has checked; a status unknown to this table is UNKNOWN.
TERMINATION: dict[str, Termination] = {
    "optimal": Termination.OPTIMAL,
    "timelimit": Termination.TIME_LIMIT,
    "userinterrupt": Termination.INTERRUPTED,  # an incumbent below the threshold (see _BestSolutions)
    "primallimit": Termination.OTHER_LIMIT,  # limits/primal and limits/dual are never set by leo
    "duallimit": Termination.OTHER_LIMIT,
    "nodelimit": Termination.OTHER_LIMIT,
    "totalnodelimit": Termination.OTHER_LIMIT,
    "stallnodelimit": Termination.OTHER_LIMIT,
    "gaplimit": Termination.OTHER_LIMIT,
    "memlimit": Termination.OTHER_LIMIT,
    "sollimit": Termination.OTHER_LIMIT,
    "bestsollimit": Termination.OTHER_LIMIT,
    "restartlimit": Termination.OTHER_LIMIT,
    "infeasible": Termination.INFEASIBLE,
    "unbounded": Termination.UNBOUNDED,
    "inforunbd": Termination.INFEASIBLE_OR_UNBOUNDED,
    "unknown": Termination.UNKNOWN,
}

#: What leo may conclude from each SCIP status (``TERMINATION`` then ``CONCLUSION``).
STATUS_OUTCOME: dict[str, SolveStatus] = {s: CONCLUSION[t] for s, t in TERMINATION.items()}

#: SCIP parameters per tuning (``solvers.backend.Tuning``); a relaxed model already runs
#: without presolve (see ScipModel).
_TUNING: dict[Tuning, tuple[tuple[str, object], ...]] = {
    Tuning.DEFAULT: (),
    Tuning.RESOLVE: (("lp/scaling", 0), ("lp/initalgorithm", "d"), ("lp/resolvealgorithm", "d")),
}

#: Stages in which SCIP accepts an interrupt from an event handler.
_INTERRUPTIBLE = (pyscipopt.SCIP_STAGE.PRESOLVING, pyscipopt.SCIP_STAGE.SOLVING)


def termination(status: str) -> Termination:
    """Why SCIP stopped (an unknown status: UNKNOWN)."""
    return TERMINATION.get(status, Termination.UNKNOWN)


def outcome(status: str) -> SolveStatus:
    """What a SCIP status lets leo conclude (unknown statuses prove nothing)."""
    return STATUS_OUTCOME.get(status, SolveStatus.ERROR)


def version() -> str:
    m = pyscipopt.Model()
    return f"SCIP {m.getMajorVersion()}.{m.getMinorVersion()}.{m.getTechVersion()} (PySCIPOpt {pyscipopt.__version__})"


class _BestSolutions(pyscipopt.Eventhdlr):
    """Hands every new best solution to the model's ``on_point`` (when one is set), and
    interrupts the search once one lies below the threshold. SCIP refuses an interrupt
    in some stages (a solution found while the search starts up), so the wish is kept
    and acted on at the next node."""

    def __init__(self, owner: "ScipModel") -> None:
        self.owner = owner
        self.stop = False

    def eventinit(self) -> None:
        self.stop = False
        self.model.catchEvent(pyscipopt.SCIP_EVENTTYPE.BESTSOLFOUND, self)
        self.model.catchEvent(pyscipopt.SCIP_EVENTTYPE.NODEFOCUSED, self)

    def eventexec(self, event: Any) -> None:
        owner, m = self.owner, self.model
        if event.getType() == pyscipopt.SCIP_EVENTTYPE.BESTSOLFOUND:
            sol = m.getBestSol()
            if owner._on_point is not None:
                owner._on_point(np.array([m.getSolVal(sol, v) for v in owner._vars], dtype=np.float64))
            self.stop = owner._threshold is not None and m.getSolObjVal(sol) < owner._threshold
        if self.stop and m.getStage() in _INTERRUPTIBLE:
            m.interruptSolve()


class ScipModel:
    """One SCIP instance holding a problem (as MILP, or as its LP relaxation)."""

    def __init__(self, problem: Any, relax: bool = False, threads: int = 1, tuning: Tuning = Tuning.DEFAULT) -> None:
        self.problem = problem
        self.is_mip = (not relax) and problem.num_binaries > 0
        m = pyscipopt.Model()
        m.hideOutput()
        m.setParam("numerics/feastol", MIP_FEASIBILITY_TOLERANCE)
        m.setParam("limits/gap", 0.0)
        m.setParam("limits/absgap", 0.0)
        m.setParam("lp/threads", max(int(threads), 1))
        if not self.is_mip:  # keep rows as given, so their duals can be read back
            m.setPresolve(pyscipopt.SCIP_PARAMSETTING.OFF)
            m.setHeuristics(pyscipopt.SCIP_PARAMSETTING.OFF)
            m.setSeparating(pyscipopt.SCIP_PARAMSETTING.OFF)
            m.setParam("propagating/maxrounds", 0)
            m.setParam("propagating/maxroundsroot", 0)
        for name, value in _TUNING[tuning]:
            m.setParam(name, value)
        self.scip = m
        self._inf = m.infinity()
        integer = np.asarray(problem.integer, bool) & self.is_mip
        self._vars = [
            m.addVar(name=f"v{i}", vtype="I" if integer[i] else "C",
                     lb=self._finite(lo), ub=self._finite(hi))
            for i, (lo, hi) in enumerate(zip(problem.col_lower, problem.col_upper))
        ]
        self._cons: list[Any] = []
        self._widen = np.zeros(0)
        self._x_cols = getattr(problem, "x_cols", None)
        self._on_point: Callable[[np.ndarray], None] | None = None
        self._threshold: float | None = None
        self._last: np.ndarray | None = None
        self._duals: np.ndarray | None = None
        self._ray: np.ndarray | None = None
        self.add_rows(problem.matrix, problem.row_lower, problem.row_upper)
        if self.is_mip:
            m.includeEventhdlr(_BestSolutions(self), "leo_best", "reports incumbents to leo")

    def _finite(self, value: float) -> float | None:
        return None if not np.isfinite(value) else float(value)

    @property
    def num_rows(self) -> int:
        return len(self._cons)

    @property
    def num_cols(self) -> int:
        return len(self._vars)

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None:
        """Append rows ``lower <= matrix @ v <= upper`` (tiny entries removed, rows widened)."""
        p = self.problem
        a, widen = tiny_widening(matrix, p.col_lower, p.col_upper)
        lo, hi = np.asarray(lower, float) - widen, np.asarray(upper, float) + widen
        if a.shape[0] == 0:
            return
        self.scip.freeTransform()
        for r in range(a.shape[0]):
            cols = a.indices[a.indptr[r]:a.indptr[r + 1]]
            vals = a.data[a.indptr[r]:a.indptr[r + 1]]
            expr = Expr({Term(self._vars[c]): float(v) for c, v in zip(cols, vals)})
            lhs, rhs = self._finite(lo[r]), self._finite(hi[r])
            if lhs is None and rhs is None:
                rhs = self._inf  # a free row: kept so that row numbers stay aligned
            self._cons.append(self.scip.addCons(ExprCons(expr, lhs=lhs, rhs=rhs), name=f"r{len(self._cons)}"))
        self._widen = np.concatenate([self._widen, widen])

    def truncate_rows(self, count: int) -> None:
        """Delete every row after the first ``count``."""
        if len(self._cons) > count:
            self.scip.freeTransform()
            for c in self._cons[count:]:
                self.scip.delCons(c)
            del self._cons[count:]
            self._widen = self._widen[:count]

    def set_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change column bounds in place."""
        cols = np.asarray(cols, dtype=int)
        if cols.size:
            self.scip.freeTransform()
            for c, lo, hi in zip(cols, np.asarray(lower, float), np.asarray(upper, float)):
                self.scip.chgVarLb(self._vars[c], self._finite(lo))
                self.scip.chgVarUb(self._vars[c], self._finite(hi))

    def set_row_bounds(self, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change the sides of existing rows, widened as those rows were."""
        rows = np.asarray(rows, dtype=int)
        if rows.size:
            self.scip.freeTransform()
            widen = self._widen[rows]
            for r, lo, hi in zip(rows, np.asarray(lower, float) - widen, np.asarray(upper, float) + widen):
                self.scip.chgLhs(self._cons[r], self._finite(lo))
                self.scip.chgRhs(self._cons[r], self._finite(hi))

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
        """SCIP's Farkas multipliers of the last LP it called infeasible, where it kept them."""
        return None if self._ray is None else self._ray.copy()

    def _farkas(self) -> np.ndarray | None:
        """The rows' Farkas values after an infeasible LP (None: SCIP kept none; it reads zeros
        where it decided infeasibility without an LP, e.g. from activity bounds)."""
        try:
            ray = np.array([self.scip.getDualfarkasLinear(c) for c in self._cons], dtype=np.float64)
        except Exception:  # noqa: BLE001 - pyscipopt raises its own types for a wrong stage
            return None
        return ray if np.any(ray != 0) else None

    def _prepare(self, cost: np.ndarray, threshold: float | None, time_limit: float,
                 start: np.ndarray | None) -> bool:
        """Set objective, limits and warm start for the next solve; whether a cutoff is set."""
        m = self.scip
        m.freeTransform()
        cost = np.asarray(cost, float)
        nz = np.flatnonzero(cost)
        m.setObjective(Expr({Term(self._vars[i]): float(cost[i]) for i in nz}), sense="minimize")
        m.setParam("limits/time", float(max(time_limit, 1e-3)))
        cutoff = self.is_mip and threshold is not None
        m.setObjlimit(float(threshold) if cutoff else self._inf)
        self._threshold = float(threshold) if cutoff else None
        if start is not None and self.is_mip:
            sol = m.createSol()
            for v, value in zip(self._vars, np.asarray(start, float)):
                m.setSolVal(sol, v, float(value))
            m.addSol(sol, free=True)
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
        (``None``: to optimality); only what SCIP proved becomes the bound."""
        m = self.scip
        cutoff = self._prepare(cost, threshold, time_limit, start)
        self._on_point = on_point
        self._last, self._duals, self._ray = None, None, None
        t0 = time.perf_counter()
        m.optimize()
        seconds = time.perf_counter() - t0
        why = termination(m.getStatus())
        self._on_point = None
        incumbent, point = math.inf, None
        if m.getNSols() > 0:
            sol = m.getBestSol()
            value = float(m.getSolObjVal(sol))
            if not (cutoff and value >= threshold):  # SCIP may keep a start that was above the limit
                incumbent = value
                self._last = np.array([m.getSolVal(sol, v) for v in self._vars], dtype=np.float64)
                point = (self._last[self._x_cols] if self._x_cols is not None else self._last).copy()
        nodes = int(m.getNTotalNodes()) if self.is_mip else 0
        dual = float(m.getDualbound()) if self.is_mip else -math.inf
        res = conclude(Raw(why, self.is_mip, dual, incumbent, point, seconds, nodes),
                       float(threshold) if cutoff else None, self._inf)
        if not self.is_mip and res.status is SolveStatus.OPTIMAL:
            self._duals = np.array([m.getDualsolLinear(c) for c in self._cons], dtype=np.float64)
        elif not self.is_mip and why is Termination.INFEASIBLE:
            self._ray = self._farkas()
        return res

    def feasibility(self, time_limit: float) -> SolveResult:
        """Whether the model has a point (``Model.feasibility``); "infeasible or unbounded" is
        asked again without presolve (every column is bounded, so it is one or the other)."""
        zero = np.zeros(self.num_cols)
        res = as_feasibility(self.minimise(zero, None, time_limit))
        if res.termination is Termination.INFEASIBLE_OR_UNBOUNDED:
            self.scip.freeTransform()
            self.scip.setPresolve(pyscipopt.SCIP_PARAMSETTING.OFF)
            try:
                res = as_feasibility(self.minimise(zero, None, time_limit))
            finally:
                self.scip.freeTransform()
                if self.is_mip:
                    self.scip.setPresolve(pyscipopt.SCIP_PARAMSETTING.DEFAULT)
        return res


def new_model(problem: Any, relax: bool = False, threads: int = 1, tuning: Tuning = Tuning.DEFAULT) -> ScipModel:
    return ScipModel(problem, relax=relax, threads=threads, tuning=tuning)
