"""The task worker of the per-unit engine: one persistent model of a layer's prefix,
one early-stopped question per open unit. It runs wherever ``leo.stability.parallel`` sends it
(this process, a process pool, a Dask worker), so it takes and returns plain data."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from leo.bounds.encoding import Encoding, assignment
from leo.core.deadline import Deadline
from leo.search.neighbourhood import find_crossing
from leo.core.network import Network
from leo.stability.stages import Counts, StabilityOptions
from leo.core.threads import resolve, using_threads
from leo.core.verdicts import Method
from solvers.backend import Model, new_model
from solvers.cuts import LoopResult, Separator, cut_loop
from solvers.guard import check_relaxation
from solvers.result import SolveResult, SolveStatus

#: Share of a task's time limit the cut loop may take before the MILP gets the rest.
CUT_SHARE = 0.1
#: Share the neighbourhood search for a crossing may take (it stops earlier when it stalls).
SEARCH_SHARE = 0.35
#: Under a time budget, no task gets less than this, and none starts with less than this left.
MIN_SOLVE_SECONDS = 0.05


@dataclass(frozen=True)
class Task:
    """Is unit ``unit`` of the target layer stable in ``direction``?

    +1 asks "min z >= margin" (active); -1 asks "max z <= -margin" (inactive).
    ``point`` is the box point (a witness) to warm-start from, or None; its full
    assignment is computed only when the task runs (for 300 tasks past a deadline,
    computing them up front took 2 s).
    """

    unit: int
    direction: int
    point: np.ndarray | None


@dataclass(frozen=True)
class TaskResult:
    unit: int
    direction: int
    proven: bool
    bound: float  # proven min of direction * z
    timed_out: bool
    points: tuple[np.ndarray, ...]  # incumbents found on the way (witness candidates)
    seconds: float
    how: Method = Method.MILP  # what answered it: MILP, LP_CUTS, SEARCH, or BUDGET (never started)
    counts: Counts = Counts()  # what the solver ran for it


def prove(network: Network, encoding: Encoding, layer: int, tasks: list[Task],
          options: StabilityOptions, deadline: Deadline = Deadline.never(),
          on_result: Callable[[TaskResult], None] | None = None) -> list[TaskResult]:
    """Solve ``tasks`` on one persistent model of the prefix; runs in any worker.

    With ``options.cuts`` each task first tightens the LP relaxation with ideal-formulation
    cuts (``solvers.cuts``). That alone often proves the sign, or its optimum's input shows
    the other sign; otherwise the cuts binding at its optimum join the MILP for that task.
    With ``options.neighbourhood`` a task still open then gets a neighbourhood search for
    a crossing (``leo.search.neighbourhood``) before its MILP.

    ``deadline`` bounds the whole list: each task gets an equal share
    of the time left among the tasks left (what a quick one leaves, later ones get),
    and nothing runs past it. ``on_result`` sees each result as it comes (progress).
    Runs with ``options.threads`` (a worker process too)."""
    with using_threads(options.threads):
        return _Prover(network, encoding, layer, options).run(tasks, deadline, on_result)


class _Prover:
    """The models of one prefix (the MILP, and its LP relaxation for the cut loop)."""

    def __init__(self, network: Network, encoding: Encoding, layer: int, options: StabilityOptions) -> None:
        threads = resolve(options.threads)
        self.network, self.encoding, self.layer, self.options = network, encoding, layer, options
        self.model: Model = new_model(encoding, threads=threads, solver=options.solver)
        use_cuts = options.cuts and encoding.num_binaries > 0
        self.lp: Model | None = new_model(encoding, relax=True, threads=threads, solver=options.solver) \
            if use_cuts else None
        self.separator = Separator(encoding) if use_cuts else None

    def _in_trouble(self, limit: float) -> bool:
        """Whether the solver fails the prefix's LP relaxation (``solvers.guard``: every box point
        satisfies it, so its cutoff solves would read as proofs). A time-out proves nothing either
        way, and the tasks go on as usual."""
        lp = self.lp or new_model(self.encoding, relax=True, threads=resolve(self.options.threads),
                                  solver=self.options.solver)
        return check_relaxation(lp, limit).in_trouble

    def run(self, tasks: list[Task], deadline: Deadline,
            on_result: Callable[[TaskResult], None] | None) -> list[TaskResult]:
        left = deadline.left() if deadline.bounded else self.options.time_limit
        checked = bool(tasks) and left >= MIN_SOLVE_SECONDS
        if checked and self._in_trouble(min(self.options.time_limit, left)):
            results = [TaskResult(t.unit, t.direction, False, -np.inf, False, (), 0.0) for t in tasks]
            results[0] = replace(results[0], counts=Counts(lps=1))  # the check's LP is a solve too
            for result in results if on_result is not None else ():
                on_result(result)
            return results
        results = self._run(tasks, deadline, on_result)
        if checked and results:
            results[0] = replace(results[0], counts=results[0].counts + Counts(lps=1))
        return results

    def _run(self, tasks: list[Task], deadline: Deadline,
             on_result: Callable[[TaskResult], None] | None) -> list[TaskResult]:
        results: list[TaskResult] = []
        known_both: set[int] = set()
        for i, task in enumerate(tasks):
            if results and on_result is not None:
                on_result(results[-1])
            if task.unit in known_both:
                results.append(TaskResult(task.unit, task.direction, False, -np.inf, False, (), 0.0))
                continue
            limit = self.options.time_limit
            if deadline.bounded:
                left = deadline.left()
                if left < MIN_SOLVE_SECONDS:
                    results.append(TaskResult(task.unit, task.direction, False, -np.inf, True, (), 0.0,
                                              Method.BUDGET))
                    continue
                limit = min(limit, left, max(left / (len(tasks) - i), MIN_SOLVE_SECONDS))
            result = self.task(task, limit)
            results.append(result)
            if result.points:  # incumbents decide other units of this chunk for free
                z = self.network.pre_activations(np.vstack(result.points))[self.layer]
                known_both |= set(np.flatnonzero((z.max(axis=0) > 0) & (z.min(axis=0) < 0)).tolist())
        if results and on_result is not None:
            on_result(results[-1])
        return results

    def task(self, task: Task, limit: float) -> TaskResult:
        """Cut loop, then neighbourhood search, then the MILP, each only if still needed."""
        f, layer, margin = self.encoding, self.layer, self.options.margin
        found: list[np.ndarray] = []
        start = assignment(self.network, f, task.point) if task.point is not None else None
        cost = f.objective(layer, task.unit, float(task.direction))
        loop = self._cut_loop(task, cost, limit, found)
        counts = Counts(lps=loop.lps) if loop is not None else Counts()
        if loop is not None and (loop.bound >= margin or loop.stopped):
            res = SolveResult(SolveStatus.OPTIMAL if not loop.stopped else SolveStatus.INTERRUPTED,
                              loop.bound, math.inf, None, loop.seconds, 0)
            how = Method.LP_CUTS
        else:
            spent = loop.seconds if loop is not None else 0.0
            search = None
            if self.options.neighbourhood and f.num_binaries:
                starts = list(found) + ([start[f.x_cols]] if start is not None else [])
                search = find_crossing(self.model, f, self.network, layer, task.unit, task.direction, starts,
                                       limit * SEARCH_SHARE, self.options.solver)
                found.extend(search.points)
                spent += search.seconds
                counts = counts + search.counts
            if search is not None and search.best < 0:  # a crossing: answered "no" without the MILP
                res = SolveResult(SolveStatus.INTERRUPTED, -math.inf, math.inf, None, spent, 0)
                how = Method.SEARCH
            else:
                res = self._milp(cost, limit - spent, start, loop, found)
                res = replace(res, seconds=res.seconds + spent)
                how = Method.MILP
                counts = counts + Counts(milps=1, nodes=res.nodes)
        points = list(found)
        if res.point is not None:
            points.append(res.point)
        proven = res.bound >= margin
        return TaskResult(task.unit, task.direction, proven, res.bound,
                          res.status is SolveStatus.TIME_LIMIT and not proven, tuple(points), res.seconds, how,
                          counts)

    def _cut_loop(self, task: Task, cost: np.ndarray, limit: float, found: list[np.ndarray]) -> LoopResult | None:
        if self.lp is None or self.separator is None:
            return None
        x_cols, network, layer = self.encoding.x_cols, self.network, self.layer

        def crossed(v: np.ndarray) -> bool:
            # the LP optimum's input is a box point: if the unit takes the other sign
            # there, the question is answered "no", with a witness
            found.append(v[x_cols].copy())
            return bool(task.direction * network.pre_activations(found[-1][None])[layer][0, task.unit] < 0)

        return cut_loop(self.lp, self.separator, cost, self.options.margin, limit * CUT_SHARE, on_point=crossed)

    def _milp(self, cost: np.ndarray, limit: float, start: np.ndarray | None, loop: LoopResult | None,
              found: list[np.ndarray]) -> SolveResult:
        """The MILP, with the cuts binding at the loop's last optimum for this solve only."""
        base = self.model.num_rows
        if loop is not None and loop.cuts.count:
            self.model.add_rows(loop.cuts.matrix, np.full(loop.cuts.count, -np.inf), loop.cuts.upper)
        x_cols = self.encoding.x_cols
        try:
            return self.model.minimise(cost, threshold=self.options.margin, time_limit=limit, start=start,
                                       on_point=lambda v: found.append(v[x_cols].copy()))
        finally:
            self.model.truncate_rows(base)
