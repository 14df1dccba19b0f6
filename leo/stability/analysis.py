"""Which units are stably active or inactive over the box: the orchestrator.

Every engine runs after the same cheap steps per ReLU layer: (1) interval and
symbolic bounds decide what they can; (2) box samples, data points and a local
search find witnesses, points where a unit takes both signs, so it needs no solve.
What is left goes to a MILP engine: ``unit`` (one persistent model per layer, one
early-stopped solve per open unit; LEO 2020) or ``network`` (one model of the whole
network that looks for any open unit that can flip; Serra et al. 2021). An engine
takes an immutable problem (``leo.stability.stages``) and returns what it proved and found;
this module merges that into the witnesses and the verdicts.

Stable means a *proven* bound beyond the safety margin; a time-out means "unstable
as far as we know".
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace

import numpy as np

from leo.bab import input_split as branch
from leo.stability import engine_network, engine_unit
from leo.bounds.propagate import ROUNDING_SLACK, LayerBounds, interval_layer, symbolic_layer
from leo.core.domain import Box
from leo.bounds.encoding import Encoding, build_prefix
from leo.errors import LeoInputError
from leo.core.network import Network
from leo.stability.prove import TaskResult
from leo.stability.report import LayerReport, StabilityReport, UnitProof
from leo.stability.stages import (BOUNDS, BRANCH, DONE, ENGINES, LOCAL_SEARCH, LP, MILP, PHASES, WITNESSES, Counts,
                        LayerProblem, NetworkProblem, Progress, ProgressFn, StabilityOptions)
from leo.core.threads import highs_threads, using_threads
from leo.core.verdicts import Method, Verdict
from leo.search.witnesses import Witnesses, local_search, seed_points
from solvers.backend import backend_version, new_model
from solvers.cuts import ROUNDING as CUT_ROUNDING

__all__ = ["BOUNDS", "BRANCH", "DONE", "ENGINES", "LOCAL_SEARCH", "LP", "MILP", "PHASES", "WITNESSES", "Progress",
           "ProgressFn", "StabilityOptions", "analyse", "bounds_and_states", "layer_bounds", "prefix_formulation"]

#: Relative widening of LP optima before they are used as big-M bounds.
LP_SLACK = 1e-6
#: The branch-and-bound phase takes at most this share of a layer's time (the MILPs get
#: the rest), and without a budget at most BRANCH_UNIT_SECONDS per unit (capped by time_limit).
BRANCH_SHARE = 0.5
BRANCH_UNIT_SECONDS = 2.0


def layer_bounds(network: Network, box: Box, k: int, bounds: list[LayerBounds], symbolic: bool) -> LayerBounds:
    """Interval (and, with ``symbolic``, back-substitution) bounds of layer ``k`` given
    the bounds of the layers before it."""
    b = interval_layer(network, k, box, bounds)
    if symbolic and k > 0:
        s = symbolic_layer(network, k, box, bounds)
        b = b.tightened(s.lower, s.upper, Method.SYMBOLIC)
    return b


class _Layer:
    """The verdicts of one ReLU layer while the orchestrator collects them (private:
    engines never see it)."""

    def __init__(self, k: int, bounds: LayerBounds, started: float | None = None) -> None:
        self.k = k
        self.bounds = bounds
        #: when the layer's work began (its bounds included): its report's seconds count from here
        self.started = time.perf_counter() if started is None else started
        self.counts = Counts()
        self.phase = BOUNDS
        self.proofs: list[UnitProof | None] = [None] * bounds.lower.size
        self._decide_by_bounds()

    @property
    def width(self) -> int:
        return len(self.proofs)

    def retighten(self, bounds: LayerBounds) -> None:
        """Take tighter bounds (after earlier layers were tightened); decide what they decide."""
        self.bounds = self.bounds.tightened(bounds.lower, bounds.upper, Method.LP_SYMBOLIC)
        self._decide_by_bounds()

    def _decide_by_bounds(self) -> None:
        """Open units whose bounds do not cross 0 are stable, by the method of that bound."""
        b = self.bounds
        for j in self.open_units():
            if b.lower[j] >= 0:
                self.proofs[j] = UnitProof(Verdict.ACTIVE, Method(b.lower_method[j]), float(b.lower[j]))
            elif b.upper[j] <= 0:
                self.proofs[j] = UnitProof(Verdict.INACTIVE, Method(b.upper_method[j]), float(b.upper[j]))

    def open_units(self) -> np.ndarray:
        return np.array([j for j, p in enumerate(self.proofs) if p is None], dtype=int)

    def states(self) -> tuple[Verdict, ...]:
        """Per unit its verdict so far, UNSTABLE while open (it keeps its binary)."""
        return tuple(Verdict.UNSTABLE if p is None else p.verdict for p in self.proofs)

    def mark_witnessed(self, wit: Witnesses, method: Method = Method.WITNESS) -> None:
        """Units seen with both signs are unstable, with the two points as proof."""
        zmax, amax, zmin, amin = wit.signs(self.k)
        for j in self.open_units():
            if zmax[j] > 0 and zmin[j] < 0:
                self.proofs[j] = UnitProof(Verdict.UNSTABLE, method, witness=(int(amax[j]), int(amin[j])))

    def settle(self, proofs: dict[int, UnitProof]) -> None:
        """Take the verdicts of ``proofs`` for the units still open."""
        for j, proof in proofs.items():
            if self.proofs[j] is None:
                self.proofs[j] = proof

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
                how[str(p.method)] = how.get(str(p.method), 0) + 1
        fn(Progress(self.k + 1, min(sum(how.values()), self.width), self.width, how,
                    time.perf_counter() - self.started, self.phase, eta))

    def finish(self, shape: tuple[int, ...] | None = None) -> LayerReport:
        """The layer's report (``shape``: the layer's per-sample shape, for per-channel
        summaries); MILP-proven signs tighten the bounds used downstream."""
        proofs = tuple(p for p in self.proofs if p is not None)
        if len(proofs) != self.width:
            raise RuntimeError(f"layer {self.k + 1}: {self.width - len(proofs)} units left undecided")
        lb = self.bounds
        for j, p in enumerate(proofs):
            if p.verdict == Verdict.ACTIVE and lb.lower[j] < 0:
                lb = lb.with_unit(j, 0.0, None, p.method)
            elif p.verdict == Verdict.INACTIVE and lb.upper[j] > 0:
                lb = lb.with_unit(j, None, 0.0, p.method)
        c = self.counts
        return LayerReport(self.k + 1, proofs, lb, time.perf_counter() - self.started, c.lps, c.milps, c.nodes,
                           shape)


class _Run:
    """One analysis as the orchestrator sees it: the network, the box, the witnesses,
    and the bounds and unit states of the layers done so far."""

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
        self.states: list[tuple[Verdict, ...]] = []

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
        return layer_bounds(self.network, self.box, k, self.bounds, self.options.symbolic)

    def cheap_pass(self, k: int, since: float | None = None) -> _Layer:
        """Bounds, then witnesses, then a local search for the units still open (within
        the layer's share of the budget); ``since``: when the layer's work began (default: now)."""
        since = time.perf_counter() if since is None else since
        deadline = self.layer_deadline(k)
        if self.progress is not None:
            self.progress(Progress(k + 1, 0, self.network.layers[k].width, {}, 0.0, BOUNDS))
        work = _Layer(k, self.layer_bounds(k), since)
        work.progress(self.progress, WITNESSES)
        work.mark_witnessed(self.witnesses)
        self.search(work, deadline=deadline)
        work.progress(self.progress, None if work.open_units().size else DONE)
        return work

    def search(self, work: _Layer, method: Method = Method.WITNESS, deadline: float | None = None,
               phase: str | None = LOCAL_SEARCH) -> None:
        """Local search for the open units of a layer, from the witness nearest to the
        sign not seen yet, until ``deadline`` (default: the budget's); marks the units
        it shows unstable. ``phase``: what progress says runs (None: the phase goes on)."""
        open_units = work.open_units()
        deadline = self.deadline if deadline is None else deadline
        if not (self.options.local_search and open_units.size) or self.expired(deadline):
            return
        work.progress(self.progress, phase)
        seen = self.directions(work.k, open_units)  # the search pushes toward the other sign
        starts = self.starts(work.k, open_units, seen)
        self.witnesses.add(local_search(self.network, self.box, work.k, open_units, starts, -seen.astype(float),
                                        seed=self.options.seed, deadline=deadline))
        work.mark_witnessed(self.witnesses, method)

    def directions(self, k: int, units: np.ndarray) -> np.ndarray:
        """The question left open per unit: +1 "is it active?" (seen positive only), else -1."""
        zmax = self.witnesses.signs(k)[0]
        return np.where(zmax[units] > 0, 1, -1)

    def starts(self, k: int, units: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Per unit the witness closest to the answer "no" to its question: the point of
        its smallest z for +1, of its largest z for -1."""
        _, amax, _, amin = self.witnesses.signs(k)
        return self.witnesses.points[np.where(directions > 0, amin[units], amax[units])]

    def tighten_with_lp(self, upto: int, deadline: float | None = None) -> int:
        """LP-relaxation bounds for the unstable units of the ReLU layers before ``upto``,
        until ``deadline`` (default: the budget's; an LP cut short gives no bound).

        Tighter bounds give smaller big-M values, hence stronger relaxations for the
        MILPs that follow. Worth it only when a MILP is coming, so engines call it
        then. Each LP optimum is widened by a safety slack before it becomes a bound,
        since a big-M that is too tight would cut off real points. Returns the LPs solved.
        """
        solved = 0
        for k in range(1, upto):
            if not self.network.layers[k].relu:
                continue
            lb = self.bounds[k]
            units = [j for j, st in enumerate(self.states[k]) if st == Verdict.UNSTABLE]
            if not units:
                continue
            if self.expired(deadline):
                break
            f = build_prefix(self.network, self.box, self.bounds[: k + 1], self.states[:k], k)
            model = new_model(f, relax=True, threads=highs_threads(), solver=self.options.solver)
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
            self.bounds[k] = lb.tightened(lo, hi, Method.LP)
        return solved

    def branch_phase(self, work: _Layer) -> None:
        """Input-splitting branch and bound (``leo.bab.input_split.search_each``) on ``work``'s open
        units, before the MILPs: one split tree for the whole layer, one question per unit
        (the sign no witness has shown). A unit is stable only when every leaf's sound bound
        clears the margin; a point the search finds (in-leaf attack) becomes a witness only
        by the network's forward pass. Takes BRANCH_SHARE of the layer's time (without a
        budget BRANCH_UNIT_SECONDS per open unit); what it leaves open goes to the MILP."""
        units = work.open_units()
        binaries = sum(st == Verdict.UNSTABLE for states in self.states[:work.k] for st in states)
        if not (units.size and self.options.branches(self.network.input_dim, binaries)) or self.expired():
            return
        work.progress(self.progress, BRANCH)
        layer_end = self.layer_deadline(work.k)
        seconds = min(self.options.time_limit, BRANCH_UNIT_SECONDS) * units.size if layer_end is None \
            else BRANCH_SHARE * self.seconds_left(layer_end)
        if seconds <= 0:
            return
        sub = branch.unit_network(self.network, work.k + 1)
        proofs, points = _branch_units(sub, self.box, units, self.directions(work.k, units), self.options.margin,
                                       seconds)
        work.settle(proofs)
        if len(points):
            self.witnesses.add(points)
            work.mark_witnessed(self.witnesses)

    def push(self, report: LayerReport) -> None:
        self.bounds.append(report.bounds)
        self.states.append(tuple(report.states))

    def push_linear(self, k: int) -> None:
        self.bounds.append(self.layer_bounds(k))
        self.states.append(())

    def layer_problem(self, work: _Layer, deadline: float | None) -> LayerProblem:
        """What the per-unit engine is asked about ``work``'s open units."""
        units = work.open_units()
        directions = self.directions(work.k, units)
        return LayerProblem(self.network, self.box, work.k, tuple(self.bounds[: work.k]) + (work.bounds,),
                            tuple(self.states[: work.k]), units, directions, self.starts(work.k, units, directions),
                            self.options, deadline)

    def solve_open_units(self, work: _Layer) -> None:
        """The per-unit engine on ``work``'s open units; then its points as witnesses, a
        local search from them, and its fallback verdicts for whatever is still open."""
        deadline = self.layer_deadline(work.k)
        problem = self.layer_problem(work, deadline)
        work.progress(self.progress, MILP)
        result = engine_unit.solve_layer(problem, self._milp_progress(work, problem.units.size, deadline))
        work.counts = work.counts + result.counts
        if len(result.points):
            self.witnesses.add(result.points)
        work.settle(result.proofs)
        work.mark_witnessed(self.witnesses, Method.MILP_WITNESS)
        # from the incumbents, which sit near the answer "no"; within the budget, not the layer's share:
        # it decides units the MILPs already paid for
        self.search(work, Method.MILP_WITNESS, phase=None)
        work.settle(result.fallback)

    def _milp_progress(self, work: _Layer, count: int, deadline: float | None):  # noqa: ANN202
        """A progress callback for the tasks of one layer's MILP phase: the units proven so
        far, and an ETA from the pace so far (never past the layer's deadline)."""
        if self.progress is None:
            return None
        started = time.time()
        done: dict[str, int] = {}
        finished = [0]

        def on_result(r: TaskResult) -> None:
            finished[0] += 1
            if r.proven:
                done[str(r.how)] = done.get(str(r.how), 0) + 1
            now = time.time()
            eta = (now - started) / finished[0] * (count - finished[0])
            if deadline is not None:
                eta = min(eta, max(deadline - now, 0.0))
            work.progress(self.progress, MILP, eta, done)

        return on_result


def _branch_units(sub: Network, box: Box, units: np.ndarray, directions: np.ndarray, margin: float,
                  seconds: float) -> tuple[dict[int, UnitProof], np.ndarray]:
    """The questions "is ``direction * z_j >= margin`` on the whole box?" for ``units`` of
    ``sub`` (the prefix whose outputs are the layer's pre-activations), one disjunct each, to
    ``leo.bab.input_split.search_each``: proofs (bound ``direction * margin``) of the units excluded on
    every leaf, and the box points where the forward pass shows ``direction * z_j < 0``.
    Units in neither stay open (a time-out proves nothing)."""
    goal = branch.Goal.of([(d * np.eye(sub.output_dim)[[j]], np.array([-margin]))  # unsafe: d * z - margin <= 0
                           for j, d in zip(units, directions)])

    def other_sign(x: np.ndarray, i: int) -> bool:
        return bool(box.contains(x)[0]) and float(directions[i] * sub(x[None, :])[0, units[i]]) < 0

    t0 = time.perf_counter()
    res = branch.search_each(sub, box, goal, t0 + seconds, confirm=other_sign)
    took = time.perf_counter() - t0
    proofs = {int(units[i]): UnitProof(Verdict.ACTIVE if directions[i] > 0 else Verdict.INACTIVE, Method.BRANCH,
                                       float(directions[i] * margin), seconds=took) for i in sorted(res.proven)}
    points = np.vstack(list(res.found.values())) if res.found else np.zeros((0, box.dim))
    return proofs, points


def _mark_budget(work: _Layer) -> None:
    """The budget is spent: every open unit of ``work`` stays unproven (never stable)."""
    work.settle({int(j): UnitProof(Verdict.UNSTABLE, Method.BUDGET) for j in work.open_units()})


def _per_unit(run: _Run) -> list[LayerReport]:
    """Layer by layer; a layer's seconds are all the time since the layer before it was done
    (the bounds of the linear layers between, its own bounds and witnesses, after the
    deadline too), so the layers' seconds add up to the analysis's."""
    net, reports = run.network, []
    since = time.perf_counter()
    for k, layer in enumerate(net.layers):
        if not layer.relu:
            run.push_linear(k)
            continue
        work = run.cheap_pass(k, since)
        if work.open_units().size and run.options.lp_bounds and k > 1 and not run.expired():
            work.progress(run.progress, LP)
            work.counts = work.counts + Counts(lps=run.tighten_with_lp(k, run.layer_deadline(k)))
            work.retighten(run.layer_bounds(k))
            work.mark_witnessed(run.witnesses)
        run.branch_phase(work)
        if work.open_units().size and run.expired():
            _mark_budget(work)
        elif work.open_units().size:
            run.solve_open_units(work)
        work.progress(run.progress, DONE)
        report = work.finish(run.network.layers[k].shape)
        run.push(report)
        reports.append(replace(report, seconds=time.perf_counter() - since))
        since = time.perf_counter()
    return reports


def _network_wide(run: _Run) -> list[LayerReport]:
    net = run.network
    relu_layers = [k for k, ly in enumerate(net.layers) if ly.relu]
    if not relu_layers:
        return []
    works: dict[int, _Layer] = {}
    for k, layer in enumerate(net.layers[: relu_layers[-1] + 1]):
        if not layer.relu:
            run.push_linear(k)
            continue
        work = run.cheap_pass(k)
        run.branch_phase(work)
        works[k] = work
        # open units stay in the model as unstable (with a binary) until proven otherwise
        run.bounds.append(work.bounds)
        run.states.append(work.states())
    candidates = [(k, int(j)) for k, w in works.items() for j in w.open_units()]
    if candidates and not run.expired():
        _solve_network(run, works, candidates, relu_layers[-1])
    for k, work in works.items():  # what the network-wide solve left (a time-out): per unit
        if work.open_units().size and run.expired():
            _mark_budget(work)
        elif work.open_units().size:
            run.solve_open_units(work)
            run.states[k] = work.states()  # later layers see the new proofs
            work.progress(run.progress, DONE)
    return [works[k].finish(run.network.layers[k].shape) for k in relu_layers]


def _solve_network(run: _Run, works: dict[int, _Layer], candidates: list[tuple[int, int]], last: int) -> None:
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


def analyse(network: Network, box: Box, options: StabilityOptions = StabilityOptions(),
            data: np.ndarray | None = None, progress: ProgressFn | None = None) -> StabilityReport:
    """Prove the stability of every unit of every ReLU layer over ``box``."""
    engines = {"unit": _per_unit, "network": _network_wide}
    t0 = time.perf_counter()
    with using_threads(options.threads):
        run = _Run(network, box, options, data, progress)
        reports = engines[options.engine](run)
        everything = _all_bounds(run, reports)
    report = StabilityReport(box, tuple(reports), run.witnesses.points, _settings(options),
                             time.perf_counter() - t0, everything)
    return _compact(report)


def _all_bounds(run: _Run, reports: list[LayerReport]) -> tuple[LayerBounds, ...]:
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
