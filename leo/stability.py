"""Which units are stably active or inactive over the box, layer by layer.

For each ReLU layer: (1) interval and symbolic bounds decide what they can; (2) box
samples, data points and a local search find witnesses, points where a unit takes
both signs, so it needs no solve; (3) the remaining units get one MILP each on a
persistent HiGHS model of the network prefix, asking only the question the witnesses
left open, and stopping as soon as it is answered. Stable means a *proven* bound
beyond the safety margin; a time-out means "unstable as far as we know".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import highspy
import numpy as np

from leo.bounds import ROUNDING_SLACK, LayerBounds, interval_layer, symbolic_layer
from leo.domain import Box
from leo.errors import LeoInputError
from leo.network import Network
from leo.report import ACTIVE, INACTIVE, UNSTABLE, LayerReport, StabilityReport, UnitProof
from leo.witnesses import Witnesses, local_search, seed_points
from solvers.formulation import Formulation, UnitState, build_prefix
from solvers.highs_backend import HighsModel
from solvers.result import SolveStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StabilityOptions:
    """Settings of the analysis; all of them go into the certificate."""

    time_limit: float = 60.0  # seconds per MILP solve
    margin: float = 1e-6  # a solver bound proves a sign only beyond this margin
    symbolic: bool = True  # back-substitution bounds besides interval arithmetic
    samples: int = 2048  # random box points used as witnesses
    local_search: bool = True
    seed: int = 0
    workers: int = 1  # processes for the MILP phase
    scheduler: str | None = None  # a Dask scheduler address, for the MILP phase


@dataclass(frozen=True)
class Progress:
    layer: int
    decided: int
    total: int
    how: dict[str, int]
    seconds: float


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class Task:
    """One open question: is unit ``unit`` of the target layer stable in ``direction``?

    direction +1 asks "min z >= margin" (active); -1 asks "max z <= -margin" (inactive).
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
            on_point=found.append,
        )
        points = list(found)
        if res.point is not None:
            points.append(res.point)
        proven = res.bound >= options.margin
        results.append(TaskResult(task.unit, task.direction, proven, res.bound,
                                  res.status is SolveStatus.TIME_LIMIT and not proven, tuple(points), res.seconds))
        if points:
            # incumbents decide other units of this chunk for free
            z = network.pre_activations(np.vstack(points))[layer]
            known_both |= set(np.flatnonzero((z.max(axis=0) > 0) & (z.min(axis=0) < 0)).tolist())
    return results


def _run_tasks(network: Network, formulation: Formulation, layer: int, tasks: list[Task],
               options: StabilityOptions) -> list[TaskResult]:
    from leo.parallel import run_chunks

    return run_chunks(network, formulation, layer, tasks, options)


def _layer_bounds(network: Network, k: int, box: Box, bounds: list[LayerBounds],
                  options: StabilityOptions) -> LayerBounds:
    b = interval_layer(network, k, box, bounds)
    if options.symbolic and k > 0:
        s = symbolic_layer(network, k, box, bounds)
        b = b.tightened(s.lower, s.upper, "symbolic")
    return b


def analyse(network: Network, box: Box, options: StabilityOptions = StabilityOptions(),
            data: np.ndarray | None = None, progress: ProgressFn | None = None) -> StabilityReport:
    """Prove the stability of every unit of every ReLU layer over ``box``."""
    if box.dim != network.input_dim:
        raise LeoInputError(f"the domain has {box.dim} inputs but the network takes {network.input_dim}")
    t_start = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    wit = Witnesses(network, box)
    wit.add(seed_points(box, options.samples, rng, data))
    bounds: list[LayerBounds] = []
    states: list[list[UnitState]] = []
    reports: list[LayerReport] = []
    for k, layer in enumerate(network.layers):
        t0 = time.perf_counter()
        lb = _layer_bounds(network, k, box, bounds, options)
        if not layer.relu:
            bounds.append(lb)
            states.append([])
            continue
        n = layer.width
        proofs: list[UnitProof | None] = [None] * n
        for j in range(n):
            if lb.lower[j] >= 0:
                proofs[j] = UnitProof(ACTIVE, lb.lower_method[j], float(lb.lower[j]))
            elif lb.upper[j] <= 0:
                proofs[j] = UnitProof(INACTIVE, lb.upper_method[j], float(lb.upper[j]))

        def report(solves: int = 0) -> None:
            if progress is not None:
                done = [p for p in proofs if p is not None]
                how: dict[str, int] = {}
                for p in done:
                    how[p.method] = how.get(p.method, 0) + 1
                progress(Progress(k + 1, len(done), n, how, time.perf_counter() - t0))

        def witness_pass() -> np.ndarray:
            """Mark units seen with both signs; return the still open ones."""
            zmax, amax, zmin, amin = wit.signs(k)
            for j in range(n):
                if proofs[j] is None and zmax[j] > 0 and zmin[j] < 0:
                    proofs[j] = UnitProof(UNSTABLE, "witness", witness=(int(amax[j]), int(amin[j])))
            return np.array([j for j in range(n) if proofs[j] is None], dtype=int)

        report()
        open_units = witness_pass()
        if options.local_search and open_units.size:
            zmax, amax, zmin, amin = wit.signs(k)
            seen_pos = zmax[open_units] > 0
            direction = np.where(seen_pos, -1.0, 1.0)
            starts = wit.points[np.where(seen_pos, amin[open_units], amax[open_units])]
            wit.add(local_search(network, box, k, open_units, starts, direction))
            open_units = witness_pass()
        report()
        solves = 0
        if open_units.size:
            formulation = build_prefix(network, box, bounds + [lb], states, k)
            zmax, amax, zmin, amin = wit.signs(k)
            tasks = []
            for j in open_units:
                # ask the question the witnesses left open; seen positive -> is it active?
                direction = 1 if zmax[j] > 0 else -1
                tasks.append(Task(int(j), direction, None))
            results = _run_tasks(network, formulation, k, tasks, options)
            solves = sum(1 for r in results if r.seconds > 0)
            for r in results:
                if r.points:
                    wit.add(np.vstack(r.points))
            zmax, amax, zmin, amin = wit.signs(k)
            for r in results:
                j = r.unit
                if r.proven:
                    verdict = ACTIVE if r.direction > 0 else INACTIVE
                    proofs[j] = UnitProof(verdict, "milp", float(r.direction * r.bound), seconds=r.seconds)
                elif zmax[j] > 0 and zmin[j] < 0:
                    proofs[j] = UnitProof(UNSTABLE, "milp-witness", witness=(int(amax[j]), int(amin[j])),
                                          seconds=r.seconds)
                else:
                    proofs[j] = UnitProof(UNSTABLE, "timeout" if r.timed_out else "not-proven",
                                          seconds=r.seconds)
            report(solves)
        final = [p for p in proofs if p is not None]
        assert len(final) == n
        for j, p in enumerate(final):
            if p.verdict == ACTIVE and p.method == "milp":
                lb = lb.with_unit(j, 0.0, None, "milp")
            elif p.verdict == INACTIVE and p.method == "milp":
                lb = lb.with_unit(j, None, 0.0, "milp")
        bounds.append(lb)
        layer_report = LayerReport(k + 1, tuple(final), lb, time.perf_counter() - t0, solves)
        states.append(layer_report.states)
        reports.append(layer_report)
    return _compact(StabilityReport(box, tuple(reports), wit.points, _settings(options),
                                    time.perf_counter() - t_start))


def _settings(options: StabilityOptions) -> dict[str, object]:
    out: dict[str, object] = asdict(options)
    out["solver"] = f"HiGHS {highspy.Highs().version()}"
    out["rounding_slack"] = ROUNDING_SLACK
    return out


def _compact(report: StabilityReport) -> StabilityReport:
    """Keep only the witness points that some verdict refers to, renumbered."""
    used = sorted({i for lr in report.layers for p in lr.proofs if p.witness for i in p.witness})
    index = {old: new for new, old in enumerate(used)}
    layers = tuple(
        LayerReport(
            lr.layer,
            tuple(
                UnitProof(p.verdict, p.method, p.bound, (index[p.witness[0]], index[p.witness[1]]), p.seconds)
                if p.witness else p
                for p in lr.proofs
            ),
            lr.bounds, lr.seconds, lr.solves,
        )
        for lr in report.layers
    )
    points = report.witness_points[used] if used else np.zeros((0, report.box.dim))
    return StabilityReport(report.box, layers, points, report.settings, report.seconds)


def prefix_formulation(network: Network, box: Box, layer: int,
                       options: StabilityOptions = StabilityOptions()) -> Formulation:
    """The MILP for units of ``layer`` (0-based), with big-M values and unit states
    from analysing the layers before it."""
    head = Network(network.input_dim, network.layers[:layer]) if layer else None
    bounds: list[LayerBounds] = []
    states: list[list[UnitState]] = []
    if head is not None:
        report = analyse(head, box, options)
        for k, lyr in enumerate(head.layers):
            lr = report.layer(k + 1) if lyr.relu else None
            if lr is None:
                bounds.append(_layer_bounds(head, k, box, bounds, options))
                states.append([])
            else:
                bounds.append(lr.bounds)
                states.append(lr.states)
    bounds.append(_layer_bounds(network, layer, box, bounds, options))
    return build_prefix(network, box, bounds, states, layer)
