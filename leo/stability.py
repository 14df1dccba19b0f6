"""Which units are stably active or inactive over the box.

Every engine runs the same cheap steps per ReLU layer first: (1) interval and
symbolic bounds decide what they can; (2) box samples, data points and a local
search find witnesses, points where a unit takes both signs, so it needs no solve.
What is left goes to a MILP engine: ``unit`` (one persistent HiGHS model per layer,
one early-stopped solve per open unit; LEO 2020) or ``network`` (one model of the
whole network that looks for any open unit that can flip; Serra et al. 2021).

Stable means a *proven* bound beyond the safety margin; a time-out means "unstable
as far as we know".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from leo.bounds import ROUNDING_SLACK, LayerBounds, interval_layer, symbolic_layer
from leo.domain import Box
from leo.errors import LeoInputError
from leo.network import Network
from leo.report import ACTIVE, INACTIVE, UNSTABLE, LayerReport, StabilityReport, UnitProof
from leo.threads import DEFAULT_THREADS, highs_threads, using_threads
from leo.witnesses import Witnesses, local_search, seed_points
from solvers.formulation import Formulation, UnitState, build_prefix
from solvers.highs_backend import highs_version

ENGINES = ("unit", "network")

#: Relative widening of LP optima before they are used as big-M bounds.
LP_SLACK = 1e-6


@dataclass(frozen=True)
class StabilityOptions:
    """Settings of the analysis; all of them go into the certificate."""

    time_limit: float = 60.0  # seconds per MILP solve
    margin: float = 1e-6  # a solver bound proves a sign only beyond this margin
    symbolic: bool = True  # back-substitution bounds besides interval arithmetic
    samples: int = 2048  # random box points used as witnesses
    local_search: bool = True
    seed: int = 0
    workers: int = 1  # processes for the per-unit MILP phase
    scheduler: str | None = None  # a Dask scheduler address, for the per-unit MILP phase
    engine: str = "unit"  # "unit" or "network"
    cuts: bool = True  # ideal-formulation cuts on the LP relaxation before each MILP (--no-cuts)
    neighbourhood: bool = True  # neighbourhood search for a crossing before each MILP (--no-search)
    lp_bounds: bool = False  # LP-relaxation bounds for earlier layers before a layer's MILPs (--lp-bounds)
    time_budget: float | None = None  # seconds for the whole analysis; None: no limit but time_limit per solve
    threads: int = DEFAULT_THREADS  # torch and HiGHS threads during the analysis (leo.threads); 0: one per core

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise LeoInputError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise LeoInputError(f"the time budget must be positive, got {self.time_budget}")
        if self.threads < 0:
            raise LeoInputError(f"threads must be 0 (one per core) or positive, got {self.threads}")


#: What a progress event can say the analysis is doing, cheapest first.
BOUNDS, WITNESSES, LOCAL_SEARCH, LP, MILP, DONE = "bounds", "witnesses", "local search", "LP", "MILP", "done"
PHASES = (BOUNDS, WITNESSES, LOCAL_SEARCH, LP, MILP, DONE)


@dataclass(frozen=True)
class Progress:
    """Where the analysis is: ``layer`` 0 stands for the network-wide MILP; ``decided``
    of ``total`` units are decided (``how``: by which method); ``phase`` (one of
    ``PHASES``) is what runs now, so a display does not stand still during a long
    witness or local-search step; ``eta`` is the estimated seconds until the layer is
    done, where one exists (the MILP phase: its pace so far, capped by the deadline)."""

    layer: int
    decided: int
    total: int
    how: dict[str, int]
    seconds: float
    phase: str = DONE
    eta: float | None = None


ProgressFn = Callable[[Progress], None]


class LayerWork:
    """The verdicts of one ReLU layer while they are being decided."""

    def __init__(self, k: int, bounds: LayerBounds) -> None:
        self.k = k
        self.bounds = bounds
        self.started = time.perf_counter()
        self.solves = 0
        self.phase = BOUNDS
        self.proofs: list[UnitProof | None] = [None] * bounds.lower.size
        self._decide_by_bounds()

    @property
    def width(self) -> int:
        return len(self.proofs)

    def retighten(self, bounds: LayerBounds) -> None:
        """Take tighter bounds (after earlier layers were tightened); decide what they decide."""
        self.bounds = self.bounds.tightened(bounds.lower, bounds.upper, "lp-symbolic")
        self._decide_by_bounds()

    def _decide_by_bounds(self) -> None:
        """Open units whose bounds do not cross 0 are stable, by the method of that bound."""
        b = self.bounds
        for j in self.open_units():
            if b.lower[j] >= 0:
                self.proofs[j] = UnitProof(ACTIVE, b.lower_method[j], float(b.lower[j]))
            elif b.upper[j] <= 0:
                self.proofs[j] = UnitProof(INACTIVE, b.upper_method[j], float(b.upper[j]))

    def open_units(self) -> np.ndarray:
        return np.array([j for j, p in enumerate(self.proofs) if p is None], dtype=int)

    def mark_witnessed(self, wit: Witnesses, method: str = "witness") -> None:
        """Units seen with both signs are unstable, with the two points as proof."""
        zmax, amax, zmin, amin = wit.signs(self.k)
        for j in self.open_units():
            if zmax[j] > 0 and zmin[j] < 0:
                self.proofs[j] = UnitProof(UNSTABLE, method, witness=(int(amax[j]), int(amin[j])))

    def progress(self, fn: ProgressFn | None, phase: str | None = None, eta: float | None = None,
                 extra: dict[str, int] | None = None) -> None:
        """Tell ``fn`` where the layer is; ``phase`` (if given) is the step starting now;
        ``extra`` counts verdicts found but not yet recorded (a running MILP phase)."""
        if phase is not None:
            self.phase = phase
        if fn is None:
            return
        how: dict[str, int] = dict(extra or {})
        for p in self.proofs:
            if p is not None:
                how[p.method] = how.get(p.method, 0) + 1
        fn(Progress(self.k + 1, min(sum(how.values()), self.width), self.width, how,
                    time.perf_counter() - self.started, self.phase, eta))

    def finish(self) -> LayerReport:
        """The layer's report; MILP-proven signs tighten the bounds used downstream."""
        proofs = tuple(p for p in self.proofs if p is not None)
        if len(proofs) != self.width:
            raise RuntimeError(f"layer {self.k + 1}: {self.width - len(proofs)} units left undecided")
        lb = self.bounds
        for j, p in enumerate(proofs):
            if p.verdict == ACTIVE and lb.lower[j] < 0:
                lb = lb.with_unit(j, 0.0, None, p.method)
            elif p.verdict == INACTIVE and lb.upper[j] > 0:
                lb = lb.with_unit(j, None, 0.0, p.method)
        return LayerReport(self.k + 1, proofs, lb, time.perf_counter() - self.started, self.solves)


class Analysis:
    """Shared state of one analysis: the network, the box, witnesses, and the bounds
    and unit states of the layers done so far."""

    def __init__(self, network: Network, box: Box, options: StabilityOptions, data: np.ndarray | None,
                 progress: ProgressFn | None) -> None:
        if box.dim != network.input_dim:
            raise LeoInputError(f"the domain has {box.dim} inputs but the network takes {network.input_dim}")
        # wall-clock (time.time, not perf_counter): worker processes and Dask workers compare against it
        self.deadline = None if options.time_budget is None else time.time() + options.time_budget
        self.network = network
        self.box = box
        self.options = options
        self.progress = progress
        self.witnesses = Witnesses(network, box)
        self.witnesses.add(seed_points(box, options.samples, np.random.default_rng(options.seed), data))
        self.bounds: list[LayerBounds] = []
        self.states: list[list[UnitState]] = []

    def seconds_left(self, deadline: float | None = None) -> float:
        """What is left until ``deadline`` (default: the budget's; infinite without one)."""
        deadline = self.deadline if deadline is None else deadline
        return math.inf if deadline is None else max(deadline - time.time(), 0.0)

    def expired(self, deadline: float | None = None) -> bool:
        """Whether ``deadline`` (default: the budget's) has passed: a step that finds it
        passed does not start, and what it would have decided stays open."""
        deadline = self.deadline if deadline is None else deadline
        return deadline is not None and time.time() >= deadline

    def layer_deadline(self, k: int) -> float | None:
        """When the solves of layer ``k`` must end: an equal share of the budget left for
        each ReLU layer from ``k`` on, so the first hard layer cannot starve the later
        ones; what a layer does not use rolls over to the next. None without a budget."""
        if self.deadline is None:
            return None
        layers_left = sum(1 for layer in self.network.layers[k:] if layer.relu)
        return time.time() + self.seconds_left() / max(layers_left, 1)

    def layer_bounds(self, k: int) -> LayerBounds:
        b = interval_layer(self.network, k, self.box, self.bounds)
        if self.options.symbolic and k > 0:
            s = symbolic_layer(self.network, k, self.box, self.bounds)
            b = b.tightened(s.lower, s.upper, "symbolic")
        return b

    def cheap_pass(self, k: int) -> LayerWork:
        """Bounds, then witnesses, then a local search for the units still open (within
        the layer's share of the budget)."""
        deadline = self.layer_deadline(k)
        if self.progress is not None:
            self.progress(Progress(k + 1, 0, self.network.layers[k].width, {}, 0.0, BOUNDS))
        work = LayerWork(k, self.layer_bounds(k))
        work.progress(self.progress, WITNESSES)
        work.mark_witnessed(self.witnesses)
        self.search(work, deadline=deadline)
        work.progress(self.progress, None if work.open_units().size else DONE)
        return work

    def search(self, work: LayerWork, method: str = "witness", deadline: float | None = None,
               phase: str | None = LOCAL_SEARCH) -> None:
        """Local search for the open units of a layer, from the witness nearest to the
        sign not seen yet, until ``deadline`` (default: the budget's); marks the units
        it shows unstable. ``phase``: what progress says runs (None: the phase goes on)."""
        open_units = work.open_units()
        deadline = self.deadline if deadline is None else deadline
        if not (self.options.local_search and open_units.size) or self.expired(deadline):
            return
        work.progress(self.progress, phase)
        zmax, amax, zmin, amin = self.witnesses.signs(work.k)
        seen_pos = zmax[open_units] > 0
        direction = np.where(seen_pos, -1.0, 1.0)
        starts = self.witnesses.points[np.where(seen_pos, amin[open_units], amax[open_units])]
        self.witnesses.add(local_search(self.network, self.box, work.k, open_units, starts, direction,
                                        seed=self.options.seed, deadline=deadline))
        work.mark_witnessed(self.witnesses, method)

    def directions(self, k: int, units: np.ndarray) -> np.ndarray:
        """The question left open per unit: +1 "is it active?" (seen positive only), else -1."""
        zmax = self.witnesses.signs(k)[0]
        return np.where(zmax[units] > 0, 1, -1)

    def tighten_with_lp(self, upto: int, deadline: float | None = None) -> int:
        """LP-relaxation bounds for the unstable units of the ReLU layers before ``upto``,
        until ``deadline`` (default: the budget's; an LP cut short gives no bound).

        Tighter bounds give smaller big-M values, hence stronger relaxations for the
        MILPs that follow. Worth it only when a MILP is coming, so engines call it
        then. Each LP optimum is widened by a safety slack before it becomes a bound,
        since a big-M that is too tight would cut off real points. Returns the LPs solved.
        """
        from solvers.highs_backend import HighsModel

        solved = 0
        for k in range(1, upto):
            if not self.network.layers[k].relu:
                continue
            lb = self.bounds[k]
            units = [j for j, st in enumerate(self.states[k]) if st is UnitState.UNSTABLE]
            if not units:
                continue
            if self.expired(deadline):
                break
            f = build_prefix(self.network, self.box, self.bounds[: k + 1], self.states[:k], k)
            model = HighsModel(f, relax=True, threads=highs_threads())
            lo, hi = lb.lower.copy(), lb.upper.copy()
            for j in units:
                for sign in (1.0, -1.0):
                    left = min(self.options.time_limit, self.seconds_left(deadline))
                    if left <= 0:
                        break
                    res = model.minimise(f.objective(k, j, sign), threshold=None, time_limit=left)
                    solved += 1
                    if not np.isfinite(res.bound):
                        continue
                    value = sign * res.bound
                    slack = LP_SLACK * (1.0 + abs(value))
                    if sign > 0:
                        lo[j] = max(lo[j], value - slack)
                    else:
                        hi[j] = min(hi[j], value + slack)
            self.bounds[k] = lb.tightened(lo, hi, "lp")
        return solved

    def push(self, report: LayerReport) -> None:
        self.bounds.append(report.bounds)
        self.states.append(report.states)

    def push_linear(self, k: int) -> None:
        self.bounds.append(self.layer_bounds(k))
        self.states.append([])


def analyse(network: Network, box: Box, options: StabilityOptions = StabilityOptions(),
            data: np.ndarray | None = None, progress: ProgressFn | None = None) -> StabilityReport:
    """Prove the stability of every unit of every ReLU layer over ``box``."""
    from leo.engine_network import run_network
    from leo.engine_unit import run_per_unit

    engines = {"unit": run_per_unit, "network": run_network}
    t0 = time.perf_counter()
    with using_threads(options.threads):
        state = Analysis(network, box, options, data, progress)
        reports = engines[options.engine](state)
    report = StabilityReport(box, tuple(reports), state.witnesses.points, _settings(options),
                             time.perf_counter() - t0)
    return _compact(report)


def _settings(options: StabilityOptions) -> dict[str, object]:
    out: dict[str, object] = asdict(options)
    out["solver"] = f"HiGHS {highs_version()}"
    out["rounding_slack"] = ROUNDING_SLACK
    if options.cuts:
        from solvers.cuts import ROUNDING

        out["cut_rounding_slack"] = ROUNDING  # relative widening of every cut's right side
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


def bounds_and_states(network: Network, box: Box, report: StabilityReport,
                      options: StabilityOptions = StabilityOptions()) -> tuple[list[LayerBounds], list[list[UnitState]]]:
    """Per layer of ``network``: proven bounds and unit states from ``report``; linear
    layers (no report entry) get interval/symbolic bounds and no states."""
    state = Analysis(network, box, replace(options, samples=0, local_search=False), None, None)
    for k, lyr in enumerate(network.layers):
        lr = report.layer(k + 1) if lyr.relu else None
        if lr is not None:
            state.push(lr)
        elif lyr.relu:
            raise LeoInputError(f"the stability report has no entry for ReLU layer {k + 1}: "
                                "it must come from analysing this network over this box")
        else:
            state.push_linear(k)
    return state.bounds, state.states


def prefix_formulation(network: Network, box: Box, layer: int,
                       options: StabilityOptions = StabilityOptions()) -> Formulation:
    """The MILP for units of ``layer`` (0-based), with big-M values and unit states
    from analysing the layers before it."""
    bounds: list[LayerBounds] = []
    states: list[list[UnitState]] = []
    if layer:
        head = Network(network.input_dim, network.layers[:layer])
        bounds, states = bounds_and_states(head, box, analyse(head, box, options), options)
    state = Analysis(network, box, replace(options, samples=0, local_search=False), None, None)
    state.bounds, state.states = bounds, states
    return build_prefix(network, box, bounds + [state.layer_bounds(layer)], states, layer)
