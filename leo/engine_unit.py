"""The per-unit engine: per ReLU layer, one persistent HiGHS model of the network
prefix; each open unit gets one solve that asks only the question its witnesses
left open and stops as soon as that is answered. Incumbents found on the way are
witnesses for the other units."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from leo.neighbourhood import find_crossing
from leo.network import Network
from leo.report import ACTIVE, INACTIVE, UNSTABLE, LayerReport, UnitProof
from leo.stability import DONE, LP, MILP, Analysis, LayerWork, StabilityOptions
from leo.threads import resolve, using_threads
from solvers.cuts import Separator, cut_loop
from solvers.formulation import Formulation, assignment, build_prefix
from solvers.highs_backend import HighsModel
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
    how: str = "milp"  # what answered it: "milp", "lp-cuts", "search", or "budget" (never started)


def prove(network: Network, formulation: Formulation, layer: int, tasks: list[Task],
          options: StabilityOptions, deadline: float | None = None,
          on_result: Callable[[TaskResult], None] | None = None) -> list[TaskResult]:
    """Solve ``tasks`` on one persistent model of the prefix; runs in any worker.

    With ``options.cuts`` each task first tightens the LP relaxation with ideal-formulation
    cuts (``solvers.cuts``). That alone often proves the sign, or its optimum's input shows
    the other sign; otherwise the cuts binding at its optimum join the MILP for that task.
    With ``options.neighbourhood`` a task still open then gets a neighbourhood search for
    a crossing (``leo.neighbourhood``) before its MILP.

    ``deadline`` (``time.time()``) bounds the whole list: each task gets an equal share
    of the time left among the tasks left (what a quick one leaves, later ones get),
    and nothing runs past it. ``on_result`` sees each result as it comes (progress).
    Runs with ``options.threads`` (a worker process too)."""
    with using_threads(options.threads):
        results = _prove(network, formulation, layer, tasks, options, deadline, on_result)
    return results


def _prove(network: Network, formulation: Formulation, layer: int, tasks: list[Task],
           options: StabilityOptions, deadline: float | None,
           on_result: Callable[[TaskResult], None] | None) -> list[TaskResult]:
    threads = resolve(options.threads)
    model = HighsModel(formulation, threads=threads)
    lp = HighsModel(formulation, relax=True, threads=threads) if options.cuts and formulation.num_binaries else None
    separator = Separator(formulation) if lp is not None else None
    results: list[TaskResult] = []
    found: list[np.ndarray] = []
    known_both: set[int] = set()
    x_cols = formulation.x_cols
    for i, task in enumerate(tasks):
        if results and on_result is not None:
            on_result(results[-1])
        if task.unit in known_both:
            results.append(TaskResult(task.unit, task.direction, False, -np.inf, False, (), 0.0))
            continue
        limit = options.time_limit
        if deadline is not None:
            left = deadline - time.time()
            if left < MIN_SOLVE_SECONDS:
                results.append(TaskResult(task.unit, task.direction, False, -np.inf, True, (), 0.0, "budget"))
                continue
            limit = min(limit, left, max(left / (len(tasks) - i), MIN_SOLVE_SECONDS))
        found.clear()
        start = assignment(network, formulation, task.point) if task.point is not None else None
        cost = formulation.objective(layer, task.unit, float(task.direction))
        base = model.num_rows
        loop = None
        if lp is not None and separator is not None:
            def crossed(v: np.ndarray, task: Task = task) -> bool:
                # the LP optimum's input is a box point: if the unit takes the other sign
                # there, the question is answered "no", with a witness
                found.append(v[x_cols].copy())
                return bool(task.direction * network.pre_activations(found[-1][None])[layer][0, task.unit] < 0)

            loop = cut_loop(lp, separator, cost, options.margin, limit * CUT_SHARE, on_point=crossed)
        if loop is not None and (loop.bound >= options.margin or loop.stopped):
            res = SolveResult(SolveStatus.OPTIMAL if not loop.stopped else SolveStatus.INTERRUPTED,
                              loop.bound, math.inf, None, loop.seconds, 0)
            how = "lp-cuts"
        else:
            spent = loop.seconds if loop is not None else 0.0
            search = None
            if options.neighbourhood and formulation.num_binaries:
                starts = list(found) + ([start[x_cols]] if start is not None else [])
                search = find_crossing(model, network, layer, task.unit, task.direction, starts,
                                       limit * SEARCH_SHARE)
                found.extend(search.points)
                spent += search.seconds
            if search is not None and search.best < 0:  # a crossing: answered "no" without the MILP
                res = SolveResult(SolveStatus.INTERRUPTED, -math.inf, math.inf, None, spent, 0)
                how = "search"
            else:
                if loop is not None:  # the cuts binding at the loop's last optimum, for this solve only
                    model.add_cuts(loop.cuts)
                res = model.minimise(cost, threshold=options.margin, time_limit=limit - spent,
                                     start=start, on_point=lambda v: found.append(v[x_cols].copy()))
                res = replace(res, seconds=res.seconds + spent)
                how = "milp"
                model.truncate_rows(base)
        points = list(found)
        if res.point is not None:
            points.append(res.point)
        proven = res.bound >= options.margin
        results.append(TaskResult(task.unit, task.direction, proven, res.bound,
                                  res.status is SolveStatus.TIME_LIMIT and not proven, tuple(points), res.seconds,
                                  how))
        if points:  # incumbents decide other units of this chunk for free
            z = network.pre_activations(np.vstack(points))[layer]
            known_both |= set(np.flatnonzero((z.max(axis=0) > 0) & (z.min(axis=0) < 0)).tolist())
    if results and on_result is not None:
        on_result(results[-1])
    return results


def run_per_unit(state: Analysis) -> list[LayerReport]:
    net, reports = state.network, []
    for k, layer in enumerate(net.layers):
        if not layer.relu:
            state.push_linear(k)
            continue
        work = state.cheap_pass(k)
        if work.open_units().size and state.options.lp_bounds and k > 1 and not state.expired():
            work.progress(state.progress, LP)
            work.solves += state.tighten_with_lp(k, state.layer_deadline(k))
            work.retighten(state.layer_bounds(k))
            work.mark_witnessed(state.witnesses)
        if work.open_units().size and state.expired():
            mark_budget(work)
        elif work.open_units().size:
            formulation = build_prefix(net, state.box, state.bounds + [work.bounds], state.states, k)
            solve_open_units(state, work, formulation)
        work.progress(state.progress, DONE)
        report = work.finish()
        state.push(report)
        reports.append(report)
    return reports


def mark_budget(work: LayerWork) -> None:
    """The budget is spent: every open unit of ``work`` stays unproven (never stable)."""
    for j in work.open_units():
        work.proofs[j] = UnitProof(UNSTABLE, "budget")


def solve_open_units(state: Analysis, work: LayerWork, formulation: Formulation) -> None:
    """One early-stopped solve per open unit of ``work`` on ``formulation`` (a prefix
    model ending at the layer). A unit is decided when its sign is proven or the
    incumbents, after a local search from them, show both signs; any unit left is
    unstable as far as we know: "timeout", "not-proven", or "budget" (the analysis's
    time budget ran out before its solve could start)."""
    from leo.parallel import run_chunks

    net, k = state.network, work.k
    open_units = work.open_units()
    deadline = state.layer_deadline(k)
    directions = state.directions(k, open_units)
    _, amax, _, amin = state.witnesses.signs(k)
    tasks = []
    for j, d in zip(open_units, directions):
        # warm start from the witness closest to answering "no"
        x = state.witnesses.points[amin[j] if d > 0 else amax[j]]
        tasks.append(Task(int(j), int(d), x if formulation.num_binaries else None))
    work.progress(state.progress, MILP)
    results = run_chunks(net, formulation, k, tasks, state.options, deadline,
                         _milp_progress(state, work, len(tasks), deadline))
    work.solves += sum(1 for r in results if r.seconds > 0)
    for r in results:
        if r.points:
            state.witnesses.add(np.vstack(r.points))
    for r in results:
        if r.proven:
            verdict = ACTIVE if r.direction > 0 else INACTIVE
            work.proofs[r.unit] = UnitProof(verdict, r.how, float(r.direction * r.bound), seconds=r.seconds)
    work.mark_witnessed(state.witnesses, "milp-witness")
    # from the incumbents, which sit near the answer "no"; within the budget, not the layer's share:
    # it decides units the MILPs already paid for
    state.search(work, "milp-witness", phase=None)
    for r in results:
        if work.proofs[r.unit] is None:
            why = "budget" if r.how == "budget" else "timeout" if r.timed_out else "not-proven"
            work.proofs[r.unit] = UnitProof(UNSTABLE, why, seconds=r.seconds)


def _milp_progress(state: Analysis, work: LayerWork, count: int,
                   deadline: float | None) -> Callable[[TaskResult], None] | None:
    """A progress callback for the tasks of one layer's MILP phase: the units proven so
    far, and an ETA from the pace so far (never past the layer's deadline)."""
    if state.progress is None:
        return None
    started = time.time()
    done: dict[str, int] = {}
    finished = [0]

    def on_result(r: TaskResult) -> None:
        finished[0] += 1
        if r.proven:
            done[r.how] = done.get(r.how, 0) + 1
        now = time.time()
        eta = (now - started) / finished[0] * (count - finished[0])
        if deadline is not None:
            eta = min(eta, max(deadline - now, 0.0))
        work.progress(state.progress, MILP, eta, done)

    return on_result
