"""A persistent HiGHS model of one formulation; the objective, bounds and trailing rows
change between solves. A solve stops as soon as its question is answered: the proven bound reaches
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

from solvers.backend import Tuning
from solvers.problem import Problem
from solvers.result import (CONCLUSION, Raw, SolveResult, SolveStatus, Termination, as_feasibility, conclude)

_INF = highspy.kHighsInf

_S = highspy.HighsModelStatus
#: Every HiGHS model status, mapped explicitly to why the solve stopped; ``CONCLUSION`` says
#: what leo may conclude from that. A status added by a newer HiGHS and missing here is
#: UNKNOWN and proves nothing (see ``termination``).
TERMINATION: dict[object, Termination] = {
    _S.kOptimal: Termination.OPTIMAL,
    _S.kInterrupt: Termination.INTERRUPTED,
    _S.kHighsInterrupt: Termination.INTERRUPTED,
    _S.kTimeLimit: Termination.TIME_LIMIT,
    _S.kIterationLimit: Termination.OTHER_LIMIT,
    _S.kSolutionLimit: Termination.OTHER_LIMIT,
    _S.kMemoryLimit: Termination.OTHER_LIMIT,
    _S.kObjectiveBound: Termination.OTHER_LIMIT,  # leo never asks an LP for it; not a proof it has checked
    _S.kObjectiveTarget: Termination.OTHER_LIMIT,
    _S.kInfeasible: Termination.INFEASIBLE,
    _S.kUnbounded: Termination.UNBOUNDED,
    _S.kUnboundedOrInfeasible: Termination.INFEASIBLE_OR_UNBOUNDED,
    _S.kNotset: Termination.ERROR,
    _S.kLoadError: Termination.ERROR,
    _S.kModelError: Termination.ERROR,
    _S.kModelEmpty: Termination.ERROR,
    _S.kPresolveError: Termination.ERROR,
    _S.kSolveError: Termination.NUMERICAL_ERROR,
    _S.kPostsolveError: Termination.NUMERICAL_ERROR,
    _S.kUnknown: Termination.UNKNOWN,
}

#: What leo may conclude from each HiGHS status (``TERMINATION`` then ``CONCLUSION``).
STATUS_OUTCOME: dict[object, SolveStatus] = {s: CONCLUSION[t] for s, t in TERMINATION.items()}


def termination(status: object) -> Termination:
    """Why HiGHS stopped (an unknown status: UNKNOWN)."""
    return TERMINATION.get(status, Termination.UNKNOWN)


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


def tiny_widening(matrix: sp.spmatrix, col_lower: np.ndarray, col_upper: np.ndarray
                  ) -> tuple[sp.csr_matrix, np.ndarray]:
    """``matrix`` without entries below TINY, and per row the most those entries can
    contribute over the columns' bounds (what each side must be widened by)."""
    m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    tiny = (np.abs(m.data) < TINY) & (m.data != 0)
    if not tiny.any():
        return m, np.zeros(m.shape[0])
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    cols = m.indices
    reach = np.abs(m.data[tiny]) * np.maximum(np.abs(col_lower[cols[tiny]]), np.abs(col_upper[cols[tiny]]))
    widen = np.bincount(rows[tiny], weights=reach, minlength=m.shape[0])
    m.data[tiny] = 0.0
    m.eliminate_zeros()
    return m, widen


def relax_tiny(matrix: sp.spmatrix, row_lower: np.ndarray, row_upper: np.ndarray,
               col_lower: np.ndarray, col_upper: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """``matrix`` without entries below TINY, with its row bounds widened to stay a relaxation."""
    m, widen = tiny_widening(matrix, col_lower, col_upper)
    return m, np.asarray(row_lower, float) - widen, np.asarray(row_upper, float) + widen


def _sides(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row or column sides in HiGHS's terms (its infinity for an open side)."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    return np.where(np.isfinite(lower), lower, -_INF), np.where(np.isfinite(upper), upper, _INF)


def _to_highs(f: Problem, relax: bool) -> tuple[highspy.HighsLp, np.ndarray]:
    """The problem as a HighsLp, and each row's widening (``tiny_widening``)."""
    matrix, widen = tiny_widening(f.matrix, f.col_lower, f.col_upper)
    lp = highspy.HighsLp()
    lp.num_col_ = f.num_cols
    lp.num_row_ = int(f.row_lower.size)
    lp.col_cost_ = np.zeros(f.num_cols)
    lp.col_lower_, lp.col_upper_ = _sides(f.col_lower, f.col_upper)
    lp.row_lower_, lp.row_upper_ = _sides(np.asarray(f.row_lower, float) - widen, np.asarray(f.row_upper, float) + widen)
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
    return lp, widen


#: HiGHS options per tuning (``solvers.backend.Tuning``), set once when a model is made.
_TUNING: dict[Tuning, tuple[tuple[str, object], ...]] = {
    Tuning.DEFAULT: (),
    Tuning.RESOLVE: (("presolve", "off"), ("solver", "simplex"), ("simplex_scale_strategy", 0)),
}


class HighsModel:
    """One HiGHS instance holding a problem (as MILP, or as its LP relaxation)."""

    def __init__(self, formulation: Problem, relax: bool = False, threads: int = 1,
                 tuning: Tuning = Tuning.DEFAULT) -> None:
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
        for name, value in _TUNING[tuning]:
            self.highs.setOptionValue(name, value)
        lp, self._widen = _to_highs(formulation, relax)
        self.highs.passModel(lp)
        self._threshold: float | None = None
        self._cutoff = False
        self._on_point: Callable[[np.ndarray], None] | None = None
        self._cost: np.ndarray | None = None
        self._last: highspy.HighsSolution | None = None
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

    @property
    def num_cols(self) -> int:
        return self.formulation.num_cols

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None:
        """Append rows ``lower <= matrix @ v <= upper`` (e.g. globally valid cuts)."""
        count = int(matrix.shape[0])
        if count:
            f = self.formulation
            m, widen = tiny_widening(matrix, f.col_lower, f.col_upper)
            lower, upper = _sides(np.asarray(lower, float) - widen, np.asarray(upper, float) + widen)
            self.highs.addRows(count, lower, upper, m.nnz,
                               m.indptr[:-1].astype(np.int32), m.indices.astype(np.int32), m.data.astype(float))
            self._widen = np.concatenate([self._widen, widen])

    def truncate_rows(self, count: int) -> None:
        """Delete every row after the first ``count`` (the cuts added since)."""
        extra = self.num_rows - count
        if extra > 0:
            self.highs.deleteRows(extra, np.arange(count, count + extra, dtype=np.int32))
            self._widen = self._widen[:count]

    def set_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change column bounds in place (e.g. fix resolved indicators to 0)."""
        cols = np.asarray(cols, dtype=np.int32)
        if cols.size:
            lower, upper = _sides(lower, upper)
            self.highs.changeColsBounds(cols.size, cols, lower, upper)

    def set_row_bounds(self, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change the sides of existing rows, widened as those rows were (``tiny_widening``)."""
        rows = np.asarray(rows, dtype=np.int32)
        if rows.size:
            widen = self._widen[rows]
            lower, upper = _sides(np.asarray(lower, float) - widen, np.asarray(upper, float) + widen)
            self.highs.changeRowsBounds(rows.size, rows, lower, upper)

    def solution(self) -> np.ndarray:
        """The full column vector of the last solve's point."""
        sol = self._last if self._last is not None else self.highs.getSolution()
        return np.asarray(sol.col_value)

    def row_duals(self) -> np.ndarray:
        """The row duals of the last LP optimum (nonzero where a row binds the optimum)."""
        sol = self._last if self._last is not None else self.highs.getSolution()
        return np.asarray(sol.row_dual)

    def dual_ray(self) -> np.ndarray | None:
        """HiGHS's dual ray of the last LP it called infeasible (None: it has none)."""
        _, has, ray = self.highs.getDualRay()
        return np.asarray(ray, dtype=np.float64) if has else None

    def _prepare(self, cost: np.ndarray, threshold: float | None, time_limit: float,
                 start: np.ndarray | None) -> bool:
        """Set objective, limits and warm start for the next solve; whether a cutoff is set."""
        h = self.highs
        cost = np.asarray(cost, dtype=np.float64)
        if self._cost is None or not np.array_equal(cost, self._cost):
            h.changeColsCost(self.num_cols, np.arange(self.num_cols, dtype=np.int32), cost)
            self._cost = cost.copy()
        # HiGHS 1.15 compares an LP's time_limit with the run time summed over every run
        # of this instance (after 2 s in all, each further 2 s LP stopped at once), a MIP's
        # with its own run only; so an LP's limit counts from the time already used
        used = 0.0 if self.is_mip else float(h.getRunTime())
        h.setOptionValue("time_limit", used + float(max(time_limit, 1e-3)))
        cutoff = self.is_mip and threshold is not None
        self._threshold = threshold
        self._cutoff = cutoff
        if self.is_mip:
            h.setOptionValue("objective_bound", float(threshold) if cutoff else _INF)
            h.clearSolver()
        if start is not None and self.is_mip:
            sol = highspy.HighsSolution()
            sol.col_value = start
            sol.value_valid = True
            h.setSolution(sol)
        use_threads(h, self.threads)  # another model may have restarted the scheduler with another count
        return cutoff

    def _run(self) -> object:
        """Run HiGHS; its model status."""
        h = self.highs
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kNotset:
            # seen on LPs after rows were deleted and added: the run did not start; once more from scratch
            h.clearSolver()
            h.run()
            status = h.getModelStatus()
        return status

    def minimise(
        self,
        cost: np.ndarray,
        threshold: float | None,
        time_limit: float,
        start: np.ndarray | None = None,
        on_point: Callable[[np.ndarray], None] | None = None,
    ) -> SolveResult:
        """Minimise ``cost @ v``, stopping once bound >= threshold or incumbent < threshold
        (the question "is the minimum >= threshold?" is then answered); ``None``
        solves to optimality. ``on_point`` receives the full column vector of every
        improving incumbent."""
        cutoff = self._prepare(cost, threshold, time_limit, start)
        self._on_point = on_point
        self._last = None
        t0 = time.perf_counter()
        status = self._run()
        seconds = time.perf_counter() - t0
        self._on_point = None
        info = self.highs.getInfo()
        if self.is_mip:
            dual = float(info.mip_dual_bound)
            incumbent = float(info.objective_function_value) if info.primal_solution_status == 2 else math.inf
            nodes = int(info.mip_node_count)
        else:  # an LP's objective is an incumbent (and a bound) only at an optimum
            dual, nodes = -math.inf, 0
            incumbent = float(info.objective_function_value) if status == _S.kOptimal else math.inf
        point = None
        if math.isfinite(incumbent):
            self._last = self.highs.getSolution()
            point = self._point(np.asarray(self._last.col_value))
        raw = Raw(termination(status), self.is_mip, dual, incumbent, point, seconds, nodes)
        return conclude(raw, float(threshold) if cutoff else None)

    def feasibility(self, time_limit: float) -> SolveResult:
        """Whether the model has a point (``Model.feasibility``); a run whose presolve cannot
        tell infeasible from unbounded is asked again without presolve (every column is
        bounded, so it is one or the other)."""
        zero = np.zeros(self.num_cols)
        res = as_feasibility(self.minimise(zero, None, time_limit))
        if res.termination is Termination.INFEASIBLE_OR_UNBOUNDED:
            _, presolve = self.highs.getOptionValue("presolve")
            self.highs.setOptionValue("presolve", "off")
            try:
                res = as_feasibility(self.minimise(zero, None, time_limit))
            finally:
                self.highs.setOptionValue("presolve", presolve)
        return res


def new_model(problem: Problem, relax: bool = False, threads: int = 1, tuning: Tuning = Tuning.DEFAULT
              ) -> HighsModel:
    return HighsModel(problem, relax=relax, threads=threads, tuning=tuning)

