"""Are two networks the same function on the box? Sampling finds differences;
``exact`` proves their absence with a MILP that maximises |f(x) - g(x)|.

Soundness: a check is PROVEN only on a proven (dual or LP) bound from a solve that
finished, and REFUTED only on a point where the networks' own forward passes differ by
more than the tolerance. A MILP incumbent is neither: the big-M model is a relaxation
(integrality tolerance times big-M, rows widened for dropped tiny weights), so its
points can differ in the model and not in the networks.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from leo.core.choices import choose
from leo.core.deadline import Deadline
from leo.core.domain import Box, sample_points
from leo.core.network import Layer, Network
from leo.errors import LeoInputError
from leo.stability.report import StabilityReport
from leo.stability.analysis import StabilityOptions, analyse, bounds_and_states
from leo.bounds.encoding import as_encoding, encode
from solvers.backend import Model, Solver, new_model, unavailable
from solvers.guard import Relaxation, check_relaxation
from solvers.problem import ProblemBuilder
from solvers.result import SolveResult, SolveStatus

Progress = Callable[[str], None]


class Verdict(enum.Enum):
    """What a check established."""

    PROVEN = "proven equivalent"  # a proven bound <= tolerance over the whole box
    SAMPLED = "equivalent on the sampled points"  # no difference seen; not a proof
    REFUTED = "refuted"  # a counterexample confirmed by both forward passes
    UNDECIDED = "undecided"  # a solve stopped short, or the model's answer was not confirmed


@dataclass(frozen=True)
class CheckResult:
    """``max_diff`` is the largest |f - g| the forward passes showed; ``proven_bound`` (set
    when PROVEN) bounds |f - g| over the box; ``reason`` says why a check is UNDECIDED."""

    verdict: Verdict
    max_diff: float
    points: int
    counterexample: np.ndarray | None = None
    output: int | None = None
    proven_bound: float | None = None
    reason: str = ""

    @property
    def equivalent(self) -> bool:
        """No difference found (proven, or on every sampled point)."""
        return self.verdict in (Verdict.PROVEN, Verdict.SAMPLED)


#: The sampled comparison's batches hold at most this many float64 activations of the widest
#: network at once (20,000 points of a 12,608-unit CNN lowering took 5 GB).
BATCH_VALUES = 2**25


def compare_sampled(f: Network, g: Network, box: Box, n: int = 100_000, tolerance: float = 1e-4,
                    seed: int = 0, batch: int = 20_000, progress: Callable[[str], None] | None = None,
                    deadline: Deadline = Deadline.never()) -> CheckResult:
    """f against g on ``n`` sampled points of the box (and its corners, when few). ``progress``
    hears a line per batch; at ``deadline`` the comparison stops, and the result counts the
    points compared (a sampling check either way, never a proof)."""
    rng = np.random.default_rng(seed)
    pts = sample_points(box, n, rng)
    width = max(sum(f.widths), sum(g.widths), 1)
    batch = max(1, min(batch, BATCH_VALUES // width))
    worst, where, out, done = 0.0, None, None, 0
    size = min(batch, 256) if deadline.bounded else batch  # a first small batch measures the pace
    while done < len(pts):
        if deadline.bounded and done:
            size = min(batch, int(deadline.left() / max(per_point, 1e-9)))  # what still fits before the deadline
            if size < 1:
                break
        chunk = pts[done:done + size]
        start = time.perf_counter()
        diff = np.abs(f(chunk) - g(chunk))
        per_point = (time.perf_counter() - start) / len(chunk)
        done += len(chunk)
        if diff.size and diff.max() > worst:
            r, c = np.unravel_index(int(diff.argmax()), diff.shape)
            worst, where, out = float(diff.max()), chunk[r].copy(), int(c)
        if progress is not None:
            progress(f"sampled {done} of {len(pts)} points: max |f-g| = {worst:.3g}")
    if worst <= tolerance:
        return CheckResult(Verdict.SAMPLED, worst, done)
    return CheckResult(Verdict.REFUTED, worst, done, where, out)


def readable(v: np.ndarray, precision: int = 6, threshold: int = 12) -> str:
    """A vector on one line, rounded, without the ``-0.`` that array2string prints for
    negative zeros and for tiny negatives rounded away; long vectors are summarised."""
    shown = np.round(np.asarray(v, dtype=np.float64), precision) + 0.0  # -0.0 + 0.0 is +0.0
    return np.array2string(shown, precision=precision, threshold=threshold, max_line_width=10_000,
                           suppress_small=True)


#: Largest |z_g - z_f| (relative to the unit's scale) for two units to count as the same.
MATCH_TOL = 1e-9
#: ... or at most this share of the check's tolerance: a float32 copy of a float64 model
#: differs from it by roundings of ~1e-7 of a unit's scale, and every proven |z_g - z_f| is
#: carried to the outputs and taken off the tolerance (``compare_exact``), so it stays sound.
SHARE_FRACTION = 1e-2


def _candidates(zf: list[np.ndarray], zg: np.ndarray) -> list[tuple[int, int, int]]:
    """(g unit, f layer, f unit) whose pre-activations agree on every sampled point."""
    stacked = np.hstack(zf)
    owner = np.concatenate([np.full(z.shape[1], k) for k, z in enumerate(zf)])
    index = np.concatenate([np.arange(z.shape[1]) for z in zf])
    out = []
    for v in range(zg.shape[1]):
        diff = np.abs(stacked - zg[:, v:v + 1]).max(axis=0)
        n = int(diff.argmin())
        if diff[n] <= 1e-7 * (1.0 + np.abs(zg[:, v]).max()):
            out.append((v, int(owner[n]), int(index[n])))
    return out


def _affine(layer: Layer, outputs: list[np.ndarray], row: int, num_cols: int) -> np.ndarray:
    """Unit ``row``'s pre-activation minus its bias, as a cost over the model's columns.

    Read from the weights, not from the unit's z row: that row is widened by the dropped
    tiny weights, so two units with the same weights would get independent slacks."""
    cost = np.zeros(num_cols)
    for s, w in layer.weights.items():
        cols = outputs[s]
        keep = cols >= 0  # -1: a constant-zero source
        np.add.at(cost, cols[keep], w[row, keep])
    return cost


class _Joint:
    """f encoded whole, and g over the same inputs with proven-equal units shared."""

    def __init__(self, f: Network, fb, fs, g: Network, gb, gs, box: Box,  # noqa: ANN001
                 shared: dict[int, np.ndarray], upto: int, with_output: bool) -> None:
        b = ProblemBuilder()
        self.x_cols = b.add_cols(box.lower, box.upper, "x")
        fe = encode(b, f, fb, fs, self.x_cols, len(f.layers) - 1, True)
        ge = encode(b, g, gb, gs, self.x_cols, upto, with_output, shared, prefix="g_")
        self.f_out, self.f_y = fe.outputs, fe.out_cols
        self.g_out, self.g_y = ge.outputs, ge.out_cols
        self.formulation = as_encoding(b.build(), self.x_cols, fe)
        self.f, self.g, self.box = f, g, box

    def difference(self, m: int, v: int, k: int, u: int) -> tuple[np.ndarray, float]:
        """z_g[m][v] - z_f[k][u] as (cost over columns, constant)."""
        n = self.formulation.num_cols
        gl, fl = self.g.layers[m], self.f.layers[k]
        cost = _affine(gl, self.g_out, v, n) - _affine(fl, self.f_out, u, n)
        return cost, float(gl.bias[v] - fl.bias[u])

    def output_difference(self, i: int) -> tuple[np.ndarray, float]:
        """f_i - g_i as (cost over columns, constant)."""
        n = self.formulation.num_cols
        fl, gl = self.f.layers[-1], self.g.layers[-1]
        if fl.relu or gl.relu:  # a ReLU on the output: only its own columns express it
            cost = np.zeros(n)
            cost[self.f_y[i]] += 1.0
            cost[self.g_y[i]] -= 1.0
            return cost, 0.0
        cost = _affine(fl, self.f_out, i, n) - _affine(gl, self.g_out, i, n)
        return cost, float(fl.bias[i] - gl.bias[i])


def _interval_difference(cost: np.ndarray, const: float, lower: np.ndarray, upper: np.ndarray) -> float:
    """A proven bound on |cost @ v + const| over the box of the model's column bounds (every
    feasible point, the networks' own values included, lies in it), widened by the rounding
    of the sums. Cheap, and tight when the weights differ only by roundings."""
    keep = cost != 0
    c, lo, hi = cost[keep], lower[keep], upper[keep]
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return math.inf
    top, bottom = np.maximum(c * lo, c * hi), np.minimum(c * lo, c * hi)
    rounding = (c.size + 2) * np.finfo(float).eps * (float(np.abs(top).sum() + np.abs(bottom).sum()) + abs(const))
    return max(abs(float(top.sum()) + const), abs(float(bottom.sum()) + const)) + rounding


@dataclass(frozen=True)
class _Limits:
    """What every solve of one comparison runs under: a per-solve limit, the deadline of the
    whole comparison, and the back-end."""

    per_solve: float
    deadline: Deadline
    solver: Solver

    def solve(self) -> float:
        """The next solve's limit: the per-solve one, or less when the deadline comes first."""
        return self.deadline.limit(self.per_solve)


#: A solve is not started with less than this left before the deadline (it could prove nothing).
MIN_SOLVE_SECONDS = 1e-3
#: The stability analyses made here (for reports not given) share this much of the time left
#: before the deadline; the matching LPs and the final MILPs get the rest.
ANALYSIS_SHARE = 0.3


def _out_of_time(where: str) -> CheckResult:
    return CheckResult(Verdict.UNDECIDED, 0.0, 0, reason=f"the time limit ran out {where}")


def _share_layer(f: Network, g: Network, joint: _Joint, m: int, pairs: list[tuple[int, int, int]],
                 scale: np.ndarray, limits: _Limits, tolerance: float) -> dict[int, tuple[int, float]]:
    """g units of layer ``m`` proven equal to f units: {v: (f's output column, proven |z_g - z_f|)}.
    At the deadline it stops matching: a unit left unmatched only keeps its binary."""
    model: Model | None = None
    found: dict[int, tuple[int, float]] = {}
    problem = joint.formulation
    for v, k, u in pairs:
        if g.layers[m].relu != f.layers[k].relu:
            continue
        cost, const = joint.difference(m, v, k, u)
        limit = max(MATCH_TOL * (1.0 + scale[v]), SHARE_FRACTION * tolerance)
        eps = _interval_difference(cost, const, problem.col_lower, problem.col_upper)
        if eps > limit and cost.any():  # too loose: bound the difference by LP over the joint relaxation
            if limits.solve() < MIN_SOLVE_SECONDS:
                break
            model = model or new_model(joint.formulation, relax=True, solver=limits.solver)
            low = model.minimise(cost, None, limits.solve())
            high = model.minimise(-cost, None, limits.solve())
            if low.status is not SolveStatus.OPTIMAL or high.status is not SolveStatus.OPTIMAL:
                continue
            eps = min(eps, max(abs(low.bound + const), abs(-high.bound + const)))
        col = int(joint.f_out[k + 1][u])
        if np.isfinite(eps) and eps <= limit and col >= -1:
            found[v] = (col, eps)
    return found


def compare_exact(f: Network, g: Network, box: Box, tolerance: float = 1e-4,
                  time_limit: float = 600.0, progress: Progress | None = None,
                  reports: tuple[StabilityReport | None, StabilityReport | None] = (None, None),
                  solver: Solver | str = Solver.HIGHS, deadline: Deadline = Deadline.never()) -> CheckResult:
    """Prove max |f - g| <= tolerance over the box, or find a point where it is not.

    Both networks are analysed first (stable units get no binary). Units of g whose
    pre-activation agrees with a unit of f on samples are then *proven* equal, layer by
    layer (their weights compared over the joint model's columns, by LP where they
    differ); proven-equal units share f's variables, which leaves few binaries for the
    final MILPs that maximise f_i - g_i and g_i - f_i. The substitutions' tiny proven
    errors are propagated and added to the final bound. ``time_limit`` is per solve; the
    whole comparison (analyses, LPs, MILPs) stops at ``deadline`` (undecided, "time limit").
    ``reports``: analyses of f and of g over ``box`` already made (None: analysed here).
    ``solver``: the LP/MILP back-end (a name converts; a missing one is bad input).
    """
    say = progress or (lambda _msg: None)
    limits = _Limits(time_limit, deadline, _backend(solver))
    fb, fs, gb, gs = _analyses(f, g, box, reports, limits, say)
    if deadline.passed():
        return _out_of_time("in the networks' analyses")
    pts = sample_points(box, 512, np.random.default_rng(1))
    zf, zg = f.pre_activations(pts), g.pre_activations(pts)
    shared: dict[int, np.ndarray] = {}
    err_out: list[np.ndarray] = [np.zeros(box.dim)]  # per g source: bound on |g~ - g| of its output
    for m, layer in enumerate(g.layers):
        err_z = sum((np.abs(w) @ err_out[s] for s, w in layer.weights.items()), np.zeros(layer.width))
        err = err_z.copy()
        if m < len(g.layers) - 1:
            share = np.full(layer.width, -2)
            pairs = _candidates(zf, zg[m])
            if pairs and not deadline.passed():
                say(f"matching layer {m + 1} of g to f")
                joint = _Joint(f, fb, fs, g, gb, gs, box, shared, m, False)
                scale = np.abs(zg[m]).max(axis=0)
                for v, (col, eps) in _share_layer(f, g, joint, m, pairs, scale, limits, tolerance).items():
                    share[v] = col
                    err[v] = eps + err_z[v]
            shared[m] = share
        err_out.append(err)
    joint = _Joint(f, fb, fs, g, gb, gs, box, shared, len(g.layers) - 1, True)
    slack = float(err_out[-1].max()) if err_out[-1].size else 0.0
    if slack >= tolerance:
        return CheckResult(Verdict.UNDECIDED, 0.0, 0, reason=f"the proven errors of the units matched between "
                           f"the networks add up to {slack:.3g} at the outputs, not below the tolerance")
    target = _lower(tolerance - slack, tolerance, slack)  # so that target + slack <= tolerance, in reals
    return _maximise_difference(joint, tolerance, limits, target, slack, say)


def _backend(solver: Solver | str) -> Solver:
    """``solver`` as a ``Solver`` that can run here; a bad or missing one is bad input (one line)."""
    chosen = choose(Solver, solver, "solver")
    why = unavailable(chosen)
    if why is not None:
        raise LeoInputError(why)
    return chosen


def _analyses(f: Network, g: Network, box: Box, reports: tuple[StabilityReport | None, StabilityReport | None],
              limits: _Limits, say: Progress) -> tuple[list, list, list, list]:
    """Proven bounds and unit states of f and g (``reports``, or analyses made here, which
    share ANALYSIS_SHARE of the time left before the deadline)."""
    if None in reports:
        say("analysing both networks" if reports == (None, None) else "analysing a network")
    budget = None
    if limits.deadline.bounded:
        budget = max(ANALYSIS_SHARE * limits.deadline.left() / max(reports.count(None), 1), MIN_SOLVE_SECONDS)
    opts = StabilityOptions(time_limit=min(limits.per_solve, 60.0), time_budget=budget, solver=limits.solver)
    fb, fs = bounds_and_states(f, box, reports[0] or analyse(f, box, opts))
    gb, gs = bounds_and_states(g, box, reports[1] or analyse(g, box, opts))
    return fb, fs, gb, gs


def _ulps(value: float, terms: tuple[float, ...]) -> float:
    return 4 * float(np.spacing(max(abs(t) for t in (value, *terms))))


def _upper(value: float, *terms: float) -> float:
    """``value``, computed in floats from ``terms``, raised by a few ulps of the largest of
    them, so that an upper bound stays one after the rounding of that computation."""
    return float(value + _ulps(value, terms))


def _lower(value: float, *terms: float) -> float:
    """``value`` lowered likewise: a number at most the exact result."""
    return float(value - _ulps(value, terms))


@dataclass(frozen=True)
class _Side:
    """One maximisation of sign * (f_i - g_i): its proven bound (inf if none), whether the
    solve finished with that bound <= target, a confirmed point, and why not proven."""

    bound: float
    proven: bool
    point: np.ndarray | None = None  # set only when its diff > tolerance
    diff: float = 0.0  # the largest |f_i - g_i| seen at the solver's points
    reason: str = ""


def _solve_side(joint: _Joint, model: Model, i: int, sign: float, target: float, tolerance: float,
                limits: _Limits) -> _Side:
    """Maximise sign * (f_i - g_i): first only asking "can it exceed target?" (the
    cutoff prunes, the first incumbent above it stops the solve); if that incumbent is
    not confirmed by the forward passes (a big-M / tolerance artefact), solve to
    optimality, checking every improving incumbent, for a real point or a final bound."""
    f, g = joint.f, joint.g
    cost, const = joint.output_difference(i)
    cost, const = -sign * cost, -sign * const  # minimise -(sign * (f_i - g_i))
    best: list = [0.0, None]  # the largest |f_i - g_i| the forward passes showed, and where

    def confirm(x: np.ndarray) -> None:
        x = np.clip(x, joint.box.lower, joint.box.upper)  # a solver point may sit outside by its tolerance
        diff = float(abs(f(x[None]) - g(x[None]))[0, i])
        if diff > best[0]:
            best[:] = [diff, x.copy()]

    def on_point(v: np.ndarray) -> None:
        confirm(v[joint.x_cols])

    # "is min cost >= threshold?" answers "is sign * (f_i - g_i) <= target?": the threshold is
    # raised by the rounding of -target - const, so that a yes implies sign * (f_i - g_i) <= target
    threshold = _upper(-target - const, target, const)
    if not cost.any():  # the difference is a constant: nothing to solve
        confirm((joint.box.lower + joint.box.upper) / 2)
        res = SolveResult(SolveStatus.OPTIMAL, 0.0, 0.0, None, 0.0)
    else:
        t0 = time.perf_counter()
        res = model.minimise(cost, threshold=threshold, time_limit=limits.solve(), on_point=on_point)
        if res.point is not None:
            confirm(res.point)
        if res.status is SolveStatus.INTERRUPTED and best[0] <= tolerance:
            left = min(limits.per_solve - (time.perf_counter() - t0), limits.deadline.left())
            if left > 0:
                res = model.minimise(cost, threshold=None, time_limit=left, on_point=on_point)
                if res.point is not None:
                    confirm(res.point)
            else:
                res = SolveResult(SolveStatus.TIME_LIMIT, res.bound, res.incumbent, res.point, res.seconds)
    bound = _upper(-(res.bound + const), res.bound, const) if math.isfinite(res.bound) else math.inf
    if best[0] > tolerance:
        return _Side(bound, False, best[1], best[0])
    # Decided in the solver's own terms: a bound at the cutoff is a proof that the difference is
    # <= target, though the round trip -(threshold + const) may land a rounding above target.
    if res.status is SolveStatus.OPTIMAL and res.bound >= threshold:
        return _Side(min(bound, target), True, diff=best[0])
    side = f"output {i}, {'f-g' if sign > 0 else 'g-f'}"
    if res.status is SolveStatus.TIME_LIMIT:
        why = f"a solve hit the time limit ({side})"
    elif res.status is SolveStatus.OPTIMAL:
        model_diff = -(res.incumbent + const) if math.isfinite(res.incumbent) else bound
        why = (f"the MILP's maximum difference {model_diff:.3g} ({side}) exceeds the tolerance but the "
               f"networks' forward passes do not confirm it (slack of the MILP model: big-M tolerance, dropped "
               f"tiny weights)")
    else:
        why = f"a solve failed ({side}: {res.termination.value if res.termination else res.status.value})"
    return _Side(bound, False, diff=best[0], reason=why)


def _maximise_difference(joint: _Joint, tolerance: float, limits: _Limits, target: float, slack: float,
                         say: Progress) -> CheckResult:
    """Maximise f_i - g_i and g_i - f_i for every output i, asking the MILP whether the
    difference can exceed ``target`` (the tolerance less the substitutions' proven error,
    ``slack``); stop at a confirmed difference > tolerance, or at the deadline (undecided).
    The joint model holds every point of the box with both networks' values, so the solver's
    cutoff proofs count only once its LP relaxation is solved (``solvers.guard``)."""
    if limits.solve() < MIN_SOLVE_SECONDS:
        return _out_of_time("before the final MILPs")
    sanity = check_relaxation(new_model(joint.formulation, relax=True, solver=limits.solver), limits.solve())
    if sanity.state is Relaxation.UNDECIDED:
        return CheckResult(Verdict.UNDECIDED, 0.0, 0, reason="a solve hit the time limit (the joint model's LP "
                           "relaxation)")
    if sanity.in_trouble:
        return CheckResult(Verdict.UNDECIDED, 0.0, 0, reason=sanity.why("the joint model's LP relaxation"))
    model = new_model(joint.formulation, solver=limits.solver)
    outputs = joint.f.output_dim
    worst, seen, reason = 0.0, 0.0, ""
    for i in range(outputs):
        for sign in (1.0, -1.0):
            if limits.solve() < MIN_SOLVE_SECONDS:
                return CheckResult(Verdict.UNDECIDED, seen, 0, reason=reason or "the time limit ran out before "
                                   f"every output's MILPs were solved (output {i} of 0-{outputs - 1} open)")
            say(f"maximising {'f-g' if sign > 0 else 'g-f'} at output {i} (outputs 0-{outputs - 1})")
            side = _solve_side(joint, model, i, sign, target, tolerance, limits)
            if side.point is not None:
                return CheckResult(Verdict.REFUTED, side.diff, 0, side.point, i)
            worst, seen = max(worst, side.bound), max(seen, side.diff)
            if not side.proven and not reason:
                reason = side.reason
    if reason:
        return CheckResult(Verdict.UNDECIDED, seen, 0, reason=reason)
    # every side's bound is <= target, and target + slack <= tolerance (compare_exact)
    return CheckResult(Verdict.PROVEN, seen, 0, proven_bound=min(_upper(max(worst, 0.0) + slack, slack), tolerance))
