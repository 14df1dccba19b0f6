"""Which units are stably active or inactive over the box: the orchestrator.

Each ReLU layer runs a named schedule (``leo.stability.schedules``, on ``leo.core.schedule``)
on its share of the budget: interval and symbolic bounds decide what they can; box samples,
data points and a local search find witnesses, points where a unit takes both signs, so it
needs no solve; branch and bound and the MILPs get what is left. The MILP engine is ``unit``
(one persistent model per layer, one early-stopped solve per open unit; LEO 2020) or
``network`` (one model of the whole network that looks for any open unit that can flip; Serra
et al. 2021). An engine takes an immutable problem (``leo.stability.stages``) and returns what
it proved and found; the run (``leo.stability.run_state``) merges that into the witnesses and
the verdicts.

Stable means a *proven* bound beyond the safety margin; a time-out means "unstable
as far as we know".
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np

from leo.bounds.encoding import Encoding, build_prefix
from leo.bounds.propagate import ROUNDING_SLACK, LayerBounds
from leo.core.choices import Engine
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.schedule import Schedule, run_schedule
from leo.core.threads import using_threads
from leo.core.verdicts import Method, Verdict
from leo.errors import LeoInputError
from leo.stability import engine_network
from leo.stability.branch_phase import branch_units
from leo.stability.layer_work import LayerWork
from leo.stability.report import LayerReport, StabilityReport
from leo.stability.run_state import LP_SLACK, AnalysisRun, layer_bounds
from leo.stability.schedules import STABILITY, STABILITY_CHEAP, LayerTurn
from leo.stability.stages import ENGINES, PHASES, NetworkProblem, Phase, Progress, ProgressFn, StabilityOptions
from solvers.backend import backend_version
from solvers.cuts import ROUNDING as CUT_ROUNDING

__all__ = ["ENGINES", "LP_SLACK", "PHASES", "Phase", "Progress", "ProgressFn", "StabilityOptions", "analyse",
           "bounds_and_states", "layer_bounds", "prefix_formulation"]

#: The name the phase's tests know the input-splitting step by.
_branch_units = branch_units
#: The run's class under the name the tests patch its methods by.
_Run = AnalysisRun


def _layer_turn(run: AnalysisRun, k: int, schedule: Schedule[LayerTurn], since: float | None = None) -> LayerWork:
    """Layer ``k``'s work after ``schedule``'s steps, on the layer's share of the budget; done
    when no unit is left open (the network engine's MILP may still come)."""
    work = run.start_layer(k, since)
    run_schedule(schedule, LayerTurn(run, work), frozenset(range(work.width)), run.layer_deadline(k))
    if not work.open_units().size:
        work.progress(run.progress, Phase.DONE)
    return work


def _per_unit(run: AnalysisRun) -> list[LayerReport]:
    """Layer by layer, the ``STABILITY`` schedule; a layer's seconds are all the time since the
    layer before it was done (the bounds of the linear layers between, its own bounds and
    witnesses, after the deadline too), so the layers' seconds add up to the analysis's."""
    net, reports = run.network, []
    since = time.perf_counter()
    for k, layer in enumerate(net.layers):
        if not layer.relu:
            run.push_linear(k)
            continue
        report = _layer_turn(run, k, STABILITY, since).finish(run.network.layers[k].shape)
        run.push(report)
        reports.append(replace(report, seconds=time.perf_counter() - since))
        since = time.perf_counter()
    return reports


def _network_wide(run: AnalysisRun) -> list[LayerReport]:
    """Every layer's cheap steps (``STABILITY_CHEAP``), then one network-wide MILP over all the
    units they left open; what it leaves (a time-out), per unit."""
    net = run.network
    relu_layers = [k for k, ly in enumerate(net.layers) if ly.relu]
    if not relu_layers:
        return []
    works: dict[int, LayerWork] = {}
    for k, layer in enumerate(net.layers[: relu_layers[-1] + 1]):
        if not layer.relu:
            run.push_linear(k)
            continue
        works[k] = work = _layer_turn(run, k, STABILITY_CHEAP)
        # open units stay in the model as unstable (with a binary) until proven otherwise
        run.bounds.append(work.bounds)
        run.states.append(work.states())
    candidates = [(k, int(j)) for k, w in works.items() for j in w.open_units()]
    if candidates and not run.expired():
        _solve_network(run, works, candidates, relu_layers[-1])
    for k, work in works.items():  # what the network-wide solve left (a time-out): per unit
        if work.open_units().size and run.expired():
            work.mark_budget()
        elif work.open_units().size:
            run.solve_open_units(work, run.layer_deadline(k))
            run.states[k] = work.states()  # later layers see the new proofs
            work.progress(run.progress, Phase.DONE)
    return [works[k].finish(run.network.layers[k].shape) for k in relu_layers]


def _solve_network(run: AnalysisRun, works: dict[int, LayerWork], candidates: list[tuple[int, int]], last: int) -> None:
    """The network-wide engine on every open unit; its points become witnesses."""
    signs = {k: run.witnesses.signs(k) for k in works}
    directions = np.array([1 if signs[k][0][j] > 0 else -1 for k, j in candidates])  # as run.directions
    problem = NetworkProblem(
        run.network, run.box, last, tuple(run.bounds), tuple(run.states), tuple(candidates), directions,
        np.array([signs[k][2][j] for k, j in candidates]), np.array([signs[k][0][j] for k, j in candidates]),
        run.options, run.deadline)
    result = engine_network.solve_network(problem, run.progress)
    works[last].counts = works[last].counts + result.counts
    if len(result.points):
        run.witnesses.add(result.points)
    for k, work in works.items():
        work.settle({j: p for (kk, j), p in result.proofs.items() if kk == k})
        work.mark_witnessed(run.witnesses, Method.MILP_WITNESS)
        work.settle({j: p for (kk, j), p in result.fallback.items() if kk == k})


#: What runs after the cheap steps, per engine.
_ENGINES = {Engine.UNIT: _per_unit, Engine.NETWORK: _network_wide}


def analyse(network: Network, box: Box, options: StabilityOptions = StabilityOptions(),
            data: np.ndarray | None = None, progress: ProgressFn | None = None) -> StabilityReport:
    """Prove the stability of every unit of every ReLU layer over ``box``."""
    t0 = time.perf_counter()
    with using_threads(options.threads):
        run = AnalysisRun(network, box, options, data, progress)
        reports = _ENGINES[options.engine](run)
        everything = _all_bounds(run, reports)
    report = StabilityReport(box, tuple(reports), run.witnesses.points, _settings(options),
                             time.perf_counter() - t0, everything)
    return _compact(report)


def _all_bounds(run: AnalysisRun, reports: list[LayerReport]) -> tuple[LayerBounds, ...]:
    """Bounds of every layer: a ReLU layer's from its report (MILP-proven signs included),
    a linear layer's as the run computed it, or (the network engine stops at the last ReLU
    layer) from the layers before it."""
    final = {lr.layer - 1: lr.bounds for lr in reports}
    out: list[LayerBounds] = []
    for k, layer in enumerate(run.network.layers):
        if k in final:
            out.append(final[k])
        elif not layer.relu and k < len(run.bounds):
            out.append(run.bounds[k])
        else:
            out.append(layer_bounds(run.network, run.box, k, out, run.options.symbolic))
    return tuple(out)


def _settings(options: StabilityOptions) -> dict[str, object]:
    out: dict[str, object] = asdict(options)
    out["solver"] = backend_version(options.solver)
    out["rounding_slack"] = ROUNDING_SLACK
    if options.cuts:
        out["cut_rounding_slack"] = CUT_ROUNDING  # relative widening of every cut's right side
    return out


def _compact(report: StabilityReport) -> StabilityReport:
    """Keep only the witness points that some verdict refers to, renumbered."""
    used = sorted({i for lr in report.layers for p in lr.proofs if p.witness for i in p.witness})
    index = {old: new for new, old in enumerate(used)}
    layers = tuple(
        replace(lr, proofs=tuple(replace(p, witness=(index[p.witness[0]], index[p.witness[1]])) if p.witness else p
                                 for p in lr.proofs))
        for lr in report.layers
    )
    points = report.witness_points[used] if used else np.zeros((0, report.box.dim))
    return replace(report, layers=layers, witness_points=points)


def bounds_and_states(network: Network, box: Box, report: StabilityReport,
                      options: StabilityOptions = StabilityOptions()) -> tuple[list[LayerBounds], list[list[Verdict]]]:
    """Per layer of ``network`` (or of its first layers, when ``report`` analysed a longer
    network): proven bounds and unit states from ``report``; linear layers (no report entry)
    get the report's bounds where it carries them, else interval/symbolic bounds, and no states."""
    bounds: list[LayerBounds] = []
    states: list[list[Verdict]] = []
    for k, lyr in enumerate(network.layers):
        lr = report.layer(k + 1) if lyr.relu else None
        if lr is not None:
            bounds.append(lr.bounds)
            states.append(lr.states)
        elif lyr.relu:
            raise LeoInputError(f"the stability report has no entry for ReLU layer {k + 1}: "
                                "it must come from analysing this network over this box")
        elif k < len(report.all_bounds):
            bounds.append(report.all_bounds[k])
            states.append([])
        else:
            bounds.append(layer_bounds(network, box, k, bounds, options.symbolic))
            states.append([])
    return bounds, states


def prefix_formulation(network: Network, box: Box, layer: int,
                       options: StabilityOptions = StabilityOptions(),
                       report: StabilityReport | None = None, progress: ProgressFn | None = None) -> Encoding:
    """The MILP for units of ``layer`` (0-based), with big-M values and unit states
    from ``report`` (an analysis of ``network`` over ``box``) or, without one, from
    analysing the layers before it (``progress`` hears that analysis)."""
    bounds: list[LayerBounds] = []
    states: list[list[Verdict]] = []
    if layer:
        head = Network(network.input_dim, network.layers[:layer])
        bounds, states = bounds_and_states(head, box, report or analyse(head, box, options, progress=progress),
                                           options)
    here = layer_bounds(network, box, layer, bounds, options.symbolic)
    return build_prefix(network, box, bounds + [here], states, layer)
