"""The per-unit engine: per ReLU layer, one persistent HiGHS model of the network
prefix; each open unit gets one solve that asks only the question its witnesses
left open and stops as soon as that is answered. Incumbents found on the way are
witnesses for the other units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leo.network import Network
from leo.report import ACTIVE, INACTIVE, UNSTABLE, LayerReport, UnitProof
from leo.stability import Analysis, LayerWork, StabilityOptions
from solvers.formulation import Formulation, assignment, build_prefix
from solvers.highs_backend import HighsModel
from solvers.result import SolveStatus


@dataclass(frozen=True)
class Task:
    """Is unit ``unit`` of the target layer stable in ``direction``?

    +1 asks "min z >= margin" (active); -1 asks "max z <= -margin" (inactive).
    ``start`` is a full assignment to warm-start from (a witness point), or None.
    """

    unit: int
    direction: int
    start: np.ndarray | None


@dataclass(frozen=True)
class TaskResult:
    unit: int
    direction: int
    proven: bool
    bound: float  # proven min of direction * z
    timed_out: bool
    points: tuple[np.ndarray, ...]  # incumbents found on the way (witness candidates)
    seconds: float


def prove(network: Network, formulation: Formulation, layer: int, tasks: list[Task],
          options: StabilityOptions) -> list[TaskResult]:
    """Solve ``tasks`` on one persistent model of the prefix; runs in any worker."""
    model = HighsModel(formulation)
    results: list[TaskResult] = []
    found: list[np.ndarray] = []
    known_both: set[int] = set()
    x_cols = formulation.x_cols
    for task in tasks:
        if task.unit in known_both:
            results.append(TaskResult(task.unit, task.direction, False, -np.inf, False, (), 0.0))
            continue
        found.clear()
        res = model.minimise(
            formulation.objective(layer, task.unit, float(task.direction)),
            threshold=options.margin,
            time_limit=options.time_limit,
            start=task.start,
            on_point=lambda v: found.append(v[x_cols].copy()),
        )
        points = list(found)
        if res.point is not None:
            points.append(res.point)
        proven = res.bound >= options.margin
        results.append(TaskResult(task.unit, task.direction, proven, res.bound,
                                  res.status is SolveStatus.TIME_LIMIT and not proven, tuple(points), res.seconds))
        if points:  # incumbents decide other units of this chunk for free
            z = network.pre_activations(np.vstack(points))[layer]
            known_both |= set(np.flatnonzero((z.max(axis=0) > 0) & (z.min(axis=0) < 0)).tolist())
    return results


def run_per_unit(state: Analysis) -> list[LayerReport]:
    net, reports = state.network, []
    for k, layer in enumerate(net.layers):
        if not layer.relu:
            state.push_linear(k)
            continue
        work = state.cheap_pass(k)
        if work.open_units().size and state.options.lp_bounds and k > 1:
            work.solves += state.tighten_with_lp(k)
            work.retighten(state.layer_bounds(k))
            work.mark_witnessed(state.witnesses)
        if work.open_units().size:
            formulation = build_prefix(net, state.box, state.bounds + [work.bounds], state.states, k)
            solve_open_units(state, work, formulation)
            work.progress(state.progress)
        report = work.finish()
        state.push(report)
        reports.append(report)
    return reports


def solve_open_units(state: Analysis, work: LayerWork, formulation: Formulation) -> None:
    """One early-stopped solve per open unit of ``work`` on ``formulation`` (a prefix
    model ending at the layer). A unit is decided when its sign is proven or the
    incumbents, after a local search from them, show both signs; any unit left is
    unstable as far as we know ("timeout" or "not-proven")."""
    from leo.parallel import run_chunks

    net, k = state.network, work.k
    open_units = work.open_units()
    directions = state.directions(k, open_units)
    _, amax, _, amin = state.witnesses.signs(k)
    tasks = []
    for j, d in zip(open_units, directions):
        # warm start from the witness closest to answering "no"
        x = state.witnesses.points[amin[j] if d > 0 else amax[j]]
        tasks.append(Task(int(j), int(d), assignment(net, formulation, x) if formulation.num_binaries else None))
    results = run_chunks(net, formulation, k, tasks, state.options)
    work.solves += sum(1 for r in results if r.seconds > 0)
    for r in results:
        if r.points:
            state.witnesses.add(np.vstack(r.points))
    for r in results:
        if r.proven:
            verdict = ACTIVE if r.direction > 0 else INACTIVE
            work.proofs[r.unit] = UnitProof(verdict, "milp", float(r.direction * r.bound), seconds=r.seconds)
    work.mark_witnessed(state.witnesses, "milp-witness")
    state.search(work, "milp-witness")  # from the incumbents, which sit near the answer "no"
    for r in results:
        if work.proofs[r.unit] is None:
            work.proofs[r.unit] = UnitProof(UNSTABLE, "timeout" if r.timed_out else "not-proven", seconds=r.seconds)
