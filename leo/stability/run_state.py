"""One stability analysis as the orchestrator sees it (``AnalysisRun``): the network, the box,
the options, the witnesses, and the bounds and unit states of the ReLU layers done so far; and
the steps a layer's schedule (``leo.stability.schedules``) runs on it, each until the deadline
it is given. Private to ``leo.stability``: engines get immutable problems built from it."""

from __future__ import annotations

import time

import numpy as np

from leo.bab import input_split
from leo.bounds.encoding import build_prefix
from leo.bounds.propagate import LayerBounds, interval_layer, symbolic_layer
from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.threads import highs_threads
from leo.core.verdicts import Method, Verdict
from leo.errors import LeoInputError
from leo.search.witnesses import Witnesses, local_search, seed_points
from leo.stability import engine_unit
from leo.stability.branch_phase import branch_units, unit_seconds
from leo.stability.layer_work import LayerWork
from leo.stability.prove import TaskResult
from leo.stability.relu_phase import split_units
from leo.stability.relu_phase import unit_seconds as unit_seconds_relu
from leo.stability.report import LayerReport
from leo.stability.stages import LayerProblem, Phase, Progress, ProgressFn, StabilityOptions
from solvers.backend import new_model

#: Relative widening of LP optima before they are used as big-M bounds.
LP_SLACK = 1e-6


def layer_bounds(network: Network, box: Box, k: int, bounds: list[LayerBounds], symbolic: bool) -> LayerBounds:
    """Interval (and, with ``symbolic``, back-substitution) bounds of layer ``k`` given
    the bounds of the layers before it."""
    b = interval_layer(network, k, box, bounds)
    if symbolic and k > 0:
        s = symbolic_layer(network, k, box, bounds)
        b = b.tightened(s.lower, s.upper, Method.SYMBOLIC)
    return b


class AnalysisRun:
    """One analysis as the orchestrator sees it: the network, the box, the witnesses,
    and the bounds and unit states of the layers done so far."""

    def __init__(self, network: Network, box: Box, options: StabilityOptions, data: np.ndarray | None,
                 progress: ProgressFn | None) -> None:
        if box.dim != network.input_dim:
            raise LeoInputError(f"the domain has {box.dim} inputs but the network takes {network.input_dim}")
        self.deadline = Deadline.after(options.time_budget)
        self.network = network
        self.box = box
        self.options = options
        self.progress = progress
        self.witnesses = Witnesses(network, box)
        self.witnesses.add(seed_points(box, options.samples, np.random.default_rng(options.seed), data))
        self.bounds: list[LayerBounds] = []
        self.states: list[tuple[Verdict, ...]] = []

    def expired(self) -> bool:
        """Whether the budget is spent: a step that finds it spent does not start, and what
        it would have decided stays open."""
        return self.deadline.passed()

    def layer_deadline(self, k: int) -> Deadline:
        """When the solves of layer ``k`` must end: an equal share of the budget left for
        each ReLU layer from ``k`` on, so the first hard layer cannot starve the later
        ones; what a layer does not use rolls over to the next. Never without a budget."""
        layers_left = sum(1 for layer in self.network.layers[k:] if layer.relu)
        return self.deadline.share(1.0 / max(layers_left, 1))

    def layer_bounds(self, k: int) -> LayerBounds:
        return layer_bounds(self.network, self.box, k, self.bounds, self.options.symbolic)

    def start_layer(self, k: int, since: float | None = None) -> LayerWork:
        """Layer ``k``'s work, every unit open, with its interval (and symbolic) bounds;
        ``since``: when the layer's work began (default: now)."""
        since = time.perf_counter() if since is None else since
        if self.progress is not None:
            self.progress(Progress(k + 1, 0, self.network.layers[k].width, {}, 0.0, Phase.BOUNDS))
        return LayerWork(k, self.layer_bounds(k), since)

    def search(self, work: LayerWork, deadline: Deadline, method: Method = Method.WITNESS,
               phase: Phase | None = Phase.LOCAL_SEARCH) -> None:
        """Local search for the open units of a layer, from the witness nearest to the
        sign not seen yet, until ``deadline`` (default: the budget's); marks the units
        it shows unstable. ``phase``: what progress says runs (None: the phase goes on)."""
        open_units = work.open_units()
        if not (self.options.local_search and open_units.size) or deadline.passed():
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

    def tighten_with_lp(self, upto: int, deadline: Deadline) -> int:
        """LP-relaxation bounds for the unstable units of the ReLU layers before ``upto``,
        until ``deadline`` (an LP cut short gives no bound).

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
            if deadline.passed():
                break
            f = build_prefix(self.network, self.box, self.bounds[: k + 1], self.states[:k], k)
            model = new_model(f, relax=True, threads=highs_threads(), solver=self.options.solver)
            lo, hi = lb.lower.copy(), lb.upper.copy()
            for j in units:
                for sign in (1.0, -1.0):
                    left = deadline.limit(self.options.time_limit)
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

    def branch_phase(self, work: LayerWork, deadline: Deadline) -> None:
        """Input-splitting branch and bound (``leo.bab.input_split.search_each``) on ``work``'s open
        units, before the MILPs: one split tree for the whole layer, one question per unit
        (the sign no witness has shown). A unit is stable only when every leaf's sound bound
        clears the margin; a point the search finds (in-leaf attack) becomes a witness only
        by the network's forward pass. Runs until ``deadline`` (without one, for
        ``branch_phase.unit_seconds`` per open unit); what it leaves open goes to the MILP."""
        units = work.open_units()
        binaries = sum(st == Verdict.UNSTABLE for states in self.states[:work.k] for st in states)
        if not (units.size and self.options.branches(self.network.input_dim, binaries)) or self.expired():
            return
        work.progress(self.progress, Phase.BRANCH)
        seconds = deadline.left() if deadline.bounded else unit_seconds(self.options.time_limit) * units.size
        if seconds <= 0:
            return
        sub = input_split.unit_network(self.network, work.k + 1)
        proofs, points = branch_units(sub, self.box, units, self.directions(work.k, units), self.options.margin,
                                      seconds)
        work.settle(proofs)
        if len(points):
            self.witnesses.add(points)
            work.mark_witnessed(self.witnesses)

    def relu_split_phase(self, work: LayerWork, deadline: Deadline) -> None:
        """ReLU-split branch and bound (``leo.stability.relu_phase``) on each of ``work``'s open
        units, over the proven bounds so far, until ``deadline`` (without one, for
        ``relu_phase.unit_seconds`` per unit); what it leaves open goes to the MILP."""
        units = work.open_units()
        if not units.size or self.expired():
            return
        work.progress(self.progress, Phase.RELU_SPLIT)
        per_unit = unit_seconds_relu(self.options.time_limit)
        bounds = tuple(self.bounds[:work.k]) + (work.bounds,)
        proofs, points = split_units(self.network, self.box, work.k, bounds, self.states[:work.k], units,
                                     self.directions(work.k, units), self.options.margin, deadline, per_unit)
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

    def layer_problem(self, work: LayerWork, deadline: Deadline) -> LayerProblem:
        """What the per-unit engine is asked about ``work``'s open units."""
        units = work.open_units()
        directions = self.directions(work.k, units)
        return LayerProblem(self.network, self.box, work.k, tuple(self.bounds[: work.k]) + (work.bounds,),
                            tuple(self.states[: work.k]), units, directions, self.starts(work.k, units, directions),
                            self.options, deadline)

    def solve_open_units(self, work: LayerWork, deadline: Deadline) -> None:
        """The per-unit engine on ``work``'s open units until ``deadline``; then its points as
        witnesses, a local search from them, and its fallback verdicts for whatever is still open."""
        problem = self.layer_problem(work, deadline)
        work.progress(self.progress, Phase.MILP)
        result = engine_unit.solve_layer(problem, self._milp_progress(work, problem.units.size, deadline))
        work.counts = work.counts + result.counts
        if len(result.points):
            self.witnesses.add(result.points)
        work.settle(result.proofs)
        work.mark_witnessed(self.witnesses, Method.MILP_WITNESS)
        # from the incumbents, which sit near the answer "no"; within the budget, not the layer's share:
        # it decides units the MILPs already paid for
        self.search(work, self.deadline, Method.MILP_WITNESS, phase=None)
        work.settle(result.fallback)

    def _milp_progress(self, work: LayerWork, count: int, deadline: Deadline):  # noqa: ANN202
        """A progress callback for the tasks of one layer's MILP phase: the units proven so
        far, and an ETA from the pace so far (never past the layer's deadline)."""
        if self.progress is None:
            return None
        started = time.perf_counter()
        done: dict[str, int] = {}
        finished = [0]

        def on_result(r: TaskResult) -> None:
            finished[0] += 1
            if r.proven:
                done[str(r.how)] = done.get(str(r.how), 0) + 1
            eta = (time.perf_counter() - started) / finished[0] * (count - finished[0])
            work.progress(self.progress, Phase.MILP, min(eta, deadline.left()), done)

        return on_result

