"""A persistent HiGHS model of one formulation; only the objective changes between
solves. A solve stops as soon as its question is answered: the proven bound reaches
the threshold (the answer is yes) or an incumbent falls below it (the answer can no
longer be yes).

The question "is min >= threshold?" needs no optimum, so the threshold is also given
to HiGHS as an objective cutoff (``objective_bound``): every node whose bound reaches
it is pruned, and reduced-cost fixing works from the start as if an incumbent of that
value were known. If the search then ends "infeasible", no point has an objective below
the threshold (the model itself is feasible: every box point satisfies it), which
proves the bound. On a 3x100 MNIST unit this took a proof from 14.6 s to 3.5 s."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator

import highspy
import numpy as np
import scipy.sparse as sp

from solvers.problem import Problem
from solvers.result import SolveResult, SolveStatus, proven_bound

_INF = highspy.kHighsInf

_S = highspy.HighsModelStatus
#: Every HiGHS model status, mapped explicitly to what leo may conclude from it. Only
#: OPTIMAL (and, for a MIP, the dual bound of INTERRUPTED/TIME_LIMIT) is a proven bound;
#: "infeasible" under an objective cutoff is handled before this table (it proves the
#: cutoff); everything else proves nothing (bound -inf). A status added by a newer HiGHS
#: and missing here also proves nothing (see ``outcome``).
STATUS_OUTCOME: dict[object, SolveStatus] = {
    _S.kOptimal: SolveStatus.OPTIMAL,
    _S.kInterrupt: SolveStatus.INTERRUPTED,
    _S.kHighsInterrupt: SolveStatus.INTERRUPTED,
    _S.kTimeLimit: SolveStatus.TIME_LIMIT,
    _S.kIterationLimit: SolveStatus.ERROR,
    _S.kSolutionLimit: SolveStatus.ERROR,
    _S.kMemoryLimit: SolveStatus.ERROR,
    _S.kObjectiveBound: SolveStatus.ERROR,  # leo never asks an LP for it; not a proof it has checked
    _S.kObjectiveTarget: SolveStatus.ERROR,
    _S.kInfeasible: SolveStatus.ERROR,  # without a cutoff: every box point is feasible, so a numerical failure
    _S.kUnbounded: SolveStatus.ERROR,
    _S.kUnboundedOrInfeasible: SolveStatus.ERROR,
    _S.kNotset: SolveStatus.ERROR,
    _S.kLoadError: SolveStatus.ERROR,
    _S.kModelError: SolveStatus.ERROR,
    _S.kModelEmpty: SolveStatus.ERROR,
    _S.kPresolveError: SolveStatus.ERROR,
    _S.kSolveError: SolveStatus.ERROR,
    _S.kPostsolveError: SolveStatus.ERROR,
    _S.kUnknown: SolveStatus.ERROR,
}


def outcome(status: object) -> SolveStatus:
    """What a HiGHS model status lets leo conclude (unknown statuses prove nothing)."""
    return STATUS_OUTCOME.get(status, SolveStatus.ERROR)


@contextlib.contextmanager
def _silenced_stdout() -> Iterator[None]:
    """Send file descriptor 1 to the null device for the duration: HiGHS >= 1.16 prints its
    banner from C on stdout when the first instance of a process is made, even before
    ``output_flag`` can be set, and leo's stdout carries results only (``--json -`` must parse)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to protect
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def new_highs() -> highspy.Highs:
    """A silent HiGHS instance: no banner on stdout, no log output."""
    with _silenced_stdout():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


#: The thread count HiGHS's process-wide scheduler was last started with (None: not yet). HiGHS
#: starts it once per process, at the first run, and then runs no model asking for another count:
#: such a run ends with status "Not Set" (seen: an analysis with threads=2 after one with 1 in the
#: same process made every LP and MILP an error, so nothing was proven).
_scheduler_threads: list[int | None] = [None]


def use_threads(h: highspy.Highs, threads: int) -> None:
    """Give ``h`` ``threads`` threads, restarting HiGHS's scheduler when the count changes."""
    if _scheduler_threads[0] not in (None, threads):
        highspy.Highs.resetGlobalScheduler(True)
    _scheduler_threads[0] = threads
    h.setOptionValue("threads", threads)


def highs_version() -> str:
    return str(new_highs().version())


#: The MIP feasibility tolerance leo runs HiGHS with: its primal feasibility tolerance, so the
#: MIP checks rows no more loosely than the LP does (HiGHS's default is 1e-6; see HighsModel).
#: Measured on the 3x100 speed network (one MILP): 24 s at 1e-6, 32 s at 1e-7, 45 s at 1e-9,
#: the same stable units; the soak's network 384 is solved right at 1e-7 and below.
MIP_FEASIBILITY_TOLERANCE = 1e-7

#: HiGHS silently deletes matrix entries smaller than its ``small_matrix_value`` (1e-9), which
#: changes the model: in the soak (benchmarks/soak.py, seed 0, network 384) the big-M row
#: h - 1.6e-11 d <= 0 would become h <= 0, cutting off points where h > 0. Entries below TINY
#: are removed here instead, and their rows widened by the most those entries can contribute
#: over the columns' bounds: a relaxation, so every bound HiGHS proves stays valid.
TINY = 1e-8


def relax_tiny(matrix: sp.spmatrix, row_lower: np.ndarray, row_upper: np.ndarray,
               col_lower: np.ndarray, col_upper: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """``matrix`` without entries below TINY, with its row bounds widened to stay a relaxation."""
    m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    tiny = (np.abs(m.data) < TINY) & (m.data != 0)
    if not tiny.any():
        return m, np.asarray(row_lower, float), np.asarray(row_upper, float)
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    cols = m.indices
    reach = np.abs(m.data[tiny]) * np.maximum(np.abs(col_lower[cols[tiny]]), np.abs(col_upper[cols[tiny]]))
    widen = np.bincount(rows[tiny], weights=reach, minlength=m.shape[0])
    m.data[tiny] = 0.0
    m.eliminate_zeros()
    return m, np.asarray(row_lower, float) - widen, np.asarray(row_upper, float) + widen


def _to_highs(f: Problem, relax: bool) -> highspy.HighsLp:
    matrix, row_lower, row_upper = relax_tiny(f.matrix, f.row_lower, f.row_upper, f.col_lower, f.col_upper)
    lp = highspy.HighsLp()
    lp.num_col_ = f.num_cols
    lp.num_row_ = int(f.row_lower.size)
    lp.col_cost_ = np.zeros(f.num_cols)
    lp.col_lower_ = np.where(np.isfinite(f.col_lower), f.col_lower, -_INF)
    lp.col_upper_ = np.where(np.isfinite(f.col_upper), f.col_upper, _INF)
    lp.row_lower_ = np.where(np.isfinite(row_lower), row_lower, -_INF)
    lp.row_upper_ = np.where(np.isfinite(row_upper), row_upper, _INF)
    csc = sp.csc_matrix(matrix)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data.astype(np.float64)
    lp.a_matrix_.num_col_ = f.num_cols
    lp.a_matrix_.num_row_ = lp.num_row_
    if not relax and f.num_binaries:
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in f.integer
        ]
    return lp


class HighsModel:
    """One HiGHS instance holding a problem (as MILP, or as its LP relaxation)."""

    def __init__(self, formulation: Problem, relax: bool = False, threads: int = 1) -> None:
        self.formulation = formulation
        self.is_mip = (not relax) and formulation.num_binaries > 0
        self.highs = new_highs()
        self.threads = threads
        use_threads(self.highs, threads)
        self.highs.setOptionValue("mip_rel_gap", 0.0)
        # HiGHS's default (1e-6) let its MIP propagation call a feasible model infeasible on a
        # badly scaled network (the soak's seed 0, network 384: weights to 9.5e3 on a box 1e-3
        # wide), so the network-wide MILP "proved" two unstable units stable
        self.highs.setOptionValue("mip_feasibility_tolerance", MIP_FEASIBILITY_TOLERANCE)
        self.highs.passModel(_to_highs(formulation, relax))
        self._threshold: float | None = None
        self._cutoff = False
        self._on_point: Callable[[np.ndarray], None] | None = None
        if self.is_mip:
            self.highs.setCallback(self._callback, None)
            self.highs.startCallback(highspy.cb.HighsCallbackType.kCallbackMipInterrupt)
            self.highs.startCallback(highspy.cb.HighsCallbackType.kCallbackMipImprovingSolution)

    def _callback(self, kind, message, data_out, data_in, user_data) -> None:  # noqa: ANN001
        if kind == highspy.cb.HighsCallbackType.kCallbackMipImprovingSolution:
            if self._on_point is not None:
                self._on_point(np.array(data_out.mip_solution, dtype=np.float64))
            return
        t = self._threshold
        # set the flag either way: HiGHS keeps it between solves of the same model.
        # Under the cutoff a proof ends the search by itself ("infeasible"), so only an
        # incumbent below the threshold interrupts it.
        data_in.user_interrupt = t is not None and (
            data_out.objective_function_value < t or (not self._cutoff and data_out.mip_dual_bound >= t)
        )

    def _point(self, values: np.ndarray) -> np.ndarray:
        """The solution's point: its values on the problem's ``x_cols`` (all, without them)."""
        cols = self.formulation.x_cols
        return (values if cols is None else values[cols]).copy()

    @property
    def num_rows(self) -> int:
        return int(self.highs.getNumRow())

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None:
        """Append rows ``lower <= matrix @ v <= upper`` (e.g. globally valid cuts)."""
        count = int(matrix.shape[0])
        if count:
            f = self.formulation
            m, lower, upper = relax_tiny(matrix, np.asarray(lower, float), np.asarray(upper, float),
                                         f.col_lower, f.col_upper)
            lower = np.where(np.isfinite(lower), lower, -_INF)
            upper = np.where(np.isfinite(upper), upper, _INF)
            self.highs.addRows(count, lower, upper, m.nnz,
                               m.indptr[:-1].astype(np.int32), m.indices.astype(np.int32), m.data.astype(float))

    def truncate_rows(self, count: int) -> None:
        """Delete every row after the first ``count`` (the cuts added since)."""
        extra = self.num_rows - count
        if extra > 0:
            self.highs.deleteRows(extra, np.arange(count, count + extra, dtype=np.int32))

    def set_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change column bounds in place (e.g. fix resolved indicators to 0)."""
        cols = np.asarray(cols, dtype=np.int32)
        if cols.size:
            self.highs.changeColsBounds(cols.size, cols, np.asarray(lower, float), np.asarray(upper, float))

    def solution(self) -> np.ndarray:
        """The full column vector of the last incumbent."""
        return np.asarray(self.highs.getSolution().col_value)

    def row_duals(self) -> np.ndarray:
        """The row duals of the last LP optimum (nonzero where a row binds the optimum)."""
        return np.asarray(self.highs.getSolution().row_dual)

    def minimise(
        self,
        cost: np.ndarray,
        threshold: float | None,
        time_limit: float,
        start: np.ndarray | None = None,
        on_point: Callable[[np.ndarray], None] | None = None,
    ) -> SolveResult:
        # on_point receives the full column vector of every improving incumbent
        """Minimise ``cost @ v``, stopping once bound >= threshold or incumbent < threshold
        (the question "is the minimum >= threshold?" is then answered); ``None``
        solves to optimality."""
        h = self.highs
        h.changeColsCost(self.formulation.num_cols, np.arange(self.formulation.num_cols, dtype=np.int32), cost)
        # HiGHS 1.15 compares an LP's time_limit with the run time summed over every run
        # of this instance (after 2 s in all, each further 2 s LP stopped at once), a MIP's
        # with its own run only; so an LP's limit counts from the time already used
        used = 0.0 if self.is_mip else float(h.getRunTime())
        h.setOptionValue("time_limit", used + float(max(time_limit, 1e-3)))
        cutoff = self.is_mip and threshold is not None
        self._threshold = threshold
        self._cutoff = cutoff
        self._on_point = on_point
        if self.is_mip:
            h.setOptionValue("objective_bound", float(threshold) if cutoff else _INF)
            h.clearSolver()
        if start is not None and self.is_mip:
            sol = highspy.HighsSolution()
            sol.col_value = start
            sol.value_valid = True
            h.setSolution(sol)
        use_threads(h, self.threads)  # another model may have restarted the scheduler with another count
        t0 = time.perf_counter()
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kNotset:
            # seen on LPs after rows were deleted and added: the run did not start; once more from scratch
            h.clearSolver()
            h.run()
            status = h.getModelStatus()
        seconds = time.perf_counter() - t0
        info = h.getInfo()
        point = None
        if self.is_mip:
            bound = float(info.mip_dual_bound)
            incumbent = float(info.objective_function_value) if info.primal_solution_status == 2 else math.inf
            nodes = int(info.mip_node_count)
        else:
            # An LP optimum is a proven bound only when HiGHS says optimal.
            optimal = status == highspy.HighsModelStatus.kOptimal
            incumbent = float(info.objective_function_value) if optimal else math.inf
            bound = incumbent if optimal else -math.inf
            nodes = 0
        if math.isfinite(incumbent):
            point = self._point(np.asarray(h.getSolution().col_value))
        if cutoff and status == highspy.HighsModelStatus.kInfeasible:
            # nothing below the cutoff: the threshold is a proven bound
            kind, bound, incumbent, point = SolveStatus.OPTIMAL, float(threshold), math.inf, None
        else:
            kind = outcome(status)
            if kind is SolveStatus.ERROR:
                bound = -math.inf
        bound = proven_bound(bound, threshold if cutoff else None)
        return SolveResult(kind, bound, incumbent, point, seconds, nodes)


def solve_feasibility(problem: Problem, time_limit: float, threads: int = 1) -> tuple[str, np.ndarray | None]:
    """Whether ``problem`` (every column bounded) has a feasible point: ("feasible", its
    point on ``x_cols``), ("infeasible", None), ("timeout", None) when HiGHS stopped at the
    time limit, or (why unknown, None). Only "infeasible" is a proof of anything."""
    h = new_highs()
    use_threads(h, threads)
    h.setOptionValue("time_limit", float(max(time_limit, 1e-3)))
    h.passModel(_to_highs(problem, relax=False))
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kUnboundedOrInfeasible:
        # Presolve could not tell which; every column is bounded, so ask without it.
        h.setOptionValue("presolve", "off")
        h.run()
        status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return "infeasible", None
    if status == highspy.HighsModelStatus.kOptimal:  # zero objective: any feasible point is optimal
        values = np.asarray(h.getSolution().col_value)
        return "feasible", (values if problem.x_cols is None else values[problem.x_cols]).copy()
    if status == highspy.HighsModelStatus.kTimeLimit:
        return "timeout", None
    return f"solver status {h.modelStatusToString(status)}", None
