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

from solvers.highs_backend import MIP_FEASIBILITY_TOLERANCE, relax_tiny
from solvers.result import SolveResult, SolveStatus, proven_bound

#: Every SCIP status (``Model.getStatus()`` gives the lowercased name of a member of
#: ``pyscipopt.SCIP_STATUS``), mapped to what leo may conclude. A stop leo asks for (the
#: time limit, an interrupt on an incumbent below the threshold) keeps SCIP's dual bound,
#: which SCIP proved; limits leo never sets prove nothing it has checked; "infeasible"
#: proves the objective limit and is handled before this table, where a limit was set;
#: a status unknown to this table proves nothing.
STATUS_OUTCOME: dict[str, SolveStatus] = {
    "optimal": SolveStatus.OPTIMAL,
    "timelimit": SolveStatus.TIME_LIMIT,
    "userinterrupt": SolveStatus.INTERRUPTED,  # an incumbent below the threshold (see _BestSolutions)
    "primallimit": SolveStatus.ERROR,  # limits/primal and limits/dual are never set by leo
    "duallimit": SolveStatus.ERROR,
    "nodelimit": SolveStatus.ERROR,
    "totalnodelimit": SolveStatus.ERROR,
    "stallnodelimit": SolveStatus.ERROR,
    "gaplimit": SolveStatus.ERROR,
    "memlimit": SolveStatus.ERROR,
    "sollimit": SolveStatus.ERROR,
    "bestsollimit": SolveStatus.ERROR,
    "restartlimit": SolveStatus.ERROR,
    "infeasible": SolveStatus.ERROR,  # without an objective limit: every box point is feasible, so a failure
    "unbounded": SolveStatus.ERROR,
    "inforunbd": SolveStatus.ERROR,
    "unknown": SolveStatus.ERROR,
}

#: Stages in which SCIP accepts an interrupt from an event handler.
_INTERRUPTIBLE = (pyscipopt.SCIP_STAGE.PRESOLVING, pyscipopt.SCIP_STAGE.SOLVING)


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

    def __init__(self, problem: Any, relax: bool = False, threads: int = 1) -> None:
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
        self.scip = m
        self._inf = m.infinity()
        integer = np.asarray(problem.integer, bool) & self.is_mip
        self._vars = [
            m.addVar(name=f"v{i}", vtype="I" if integer[i] else "C",
                     lb=self._finite(lo), ub=self._finite(hi))
            for i, (lo, hi) in enumerate(zip(problem.col_lower, problem.col_upper))
        ]
        self._cons: list[Any] = []
        self._x_cols = getattr(problem, "x_cols", None)
        self._on_point: Callable[[np.ndarray], None] | None = None
        self._threshold: float | None = None
        self._last: np.ndarray | None = None
        self._duals: np.ndarray | None = None
        self.add_rows(problem.matrix, problem.row_lower, problem.row_upper)
        if self.is_mip:
            m.includeEventhdlr(_BestSolutions(self), "leo_best", "reports incumbents to leo")

    def _finite(self, value: float) -> float | None:
        return None if not np.isfinite(value) else float(value)

    @property
    def num_rows(self) -> int:
        return len(self._cons)

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None:
        """Append rows ``lower <= matrix @ v <= upper`` (tiny entries removed, rows widened)."""
        p = self.problem
        a, lo, hi = relax_tiny(matrix, np.asarray(lower, float), np.asarray(upper, float), p.col_lower, p.col_upper)
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

    def truncate_rows(self, count: int) -> None:
        """Delete every row after the first ``count``."""
        if len(self._cons) > count:
            self.scip.freeTransform()
            for c in self._cons[count:]:
                self.scip.delCons(c)
            del self._cons[count:]

    def set_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change column bounds in place."""
        cols = np.asarray(cols, dtype=int)
        if cols.size:
            self.scip.freeTransform()
            for c, lo, hi in zip(cols, np.asarray(lower, float), np.asarray(upper, float)):
                self.scip.chgVarLb(self._vars[c], self._finite(lo))
                self.scip.chgVarUb(self._vars[c], self._finite(hi))

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
        self._last, self._duals = None, None
        t0 = time.perf_counter()
        m.optimize()
        seconds = time.perf_counter() - t0
        status = m.getStatus()
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
        if cutoff and status == "infeasible":
            return SolveResult(SolveStatus.OPTIMAL, float(threshold), math.inf, None, seconds, nodes)
        kind = outcome(status)
        if kind is SolveStatus.ERROR:
            bound = -math.inf
        elif self.is_mip:
            bound = float(m.getDualbound())
        else:  # an LP optimum is a proven bound only when SCIP says optimal
            bound = incumbent if kind is SolveStatus.OPTIMAL else -math.inf
            if kind is SolveStatus.OPTIMAL:
                self._duals = np.array([m.getDualsolLinear(c) for c in self._cons], dtype=np.float64)
        bound = proven_bound(bound, threshold if cutoff else None, self._inf)
        return SolveResult(kind, bound, incumbent, point, seconds, nodes)


def new_model(problem: Any, relax: bool = False, threads: int = 1) -> ScipModel:
    return ScipModel(problem, relax=relax, threads=threads)
