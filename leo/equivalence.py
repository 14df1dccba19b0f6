"""Are two networks the same function on the box? Sampling finds differences;
``exact`` proves their absence with a MILP that maximises |f(x) - g(x)|."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leo.domain import Box
from leo.network import Network
from leo.stability import StabilityOptions, analyse, bounds_and_states
from solvers.formulation import Builder, encode
from solvers.highs_backend import HighsModel
from solvers.result import SolveStatus


@dataclass(frozen=True)
class CheckResult:
    """``max_diff`` is the largest |f - g| seen; with ``proven_bound`` set, no point of
    the box differs by more than it (an exact check)."""

    equivalent: bool
    max_diff: float
    points: int
    counterexample: np.ndarray | None
    output: int | None
    proven_bound: float | None = None
    exact: bool = False
    complete: bool = True  # False when an exact solve ran out of time


def sample_points(box: Box, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random points, plus all corners when there are at most 4096 of them."""
    parts = [box.sample(n, rng), ((box.lower + box.upper) / 2)[None]]
    corners = box.corners(limit=4096)
    if corners is not None:
        parts.append(corners)
    return np.vstack(parts)


def compare_sampled(f: Network, g: Network, box: Box, n: int = 100_000, tolerance: float = 1e-4,
                    seed: int = 0, batch: int = 20_000) -> CheckResult:
    rng = np.random.default_rng(seed)
    pts = sample_points(box, n, rng)
    worst, where, out = 0.0, None, None
    for i in range(0, len(pts), batch):
        chunk = pts[i:i + batch]
        diff = np.abs(f(chunk) - g(chunk))
        if diff.size and diff.max() > worst:
            r, c = np.unravel_index(int(diff.argmax()), diff.shape)
            worst, where, out = float(diff.max()), chunk[r].copy(), int(c)
    ok = worst <= tolerance
    return CheckResult(ok, worst, len(pts), None if ok else where, None if ok else out)


#: Largest |z_g - z_f| (relative to the unit's scale) for two units to count as the same.
MATCH_TOL = 1e-9


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


class _Joint:
    """f encoded whole, and g over the same inputs with proven-equal units shared."""

    def __init__(self, f: Network, fb, fs, g: Network, gb, gs, box: Box,  # noqa: ANN001
                 shared: dict[int, np.ndarray], upto: int, with_output: bool) -> None:
        b = Builder()
        self.x_cols = b.add_cols(box.lower, box.upper, "x")
        self.f_z, self.f_out, self.f_y = encode(b, f, fb, fs, self.x_cols, len(f.layers) - 1, True)
        self.g_z, _, self.g_y = encode(b, g, gb, gs, self.x_cols, upto, with_output, shared, prefix="g_")
        self.formulation = b.build(self.x_cols, self.f_z, self.f_y)


def compare_exact(f: Network, g: Network, box: Box, tolerance: float = 1e-4,
                  time_limit: float = 600.0) -> CheckResult:
    """Prove max |f - g| <= tolerance over the box, or find a point where it is not.

    Both networks are analysed first (stable units get no binary). Units of g whose
    pre-activation agrees with a unit of f on samples are then *proven* equal, layer by
    layer, by LP over the joint model; proven-equal units share f's variables, which
    leaves few binaries for the final MILPs that maximise f_i - g_i and g_i - f_i. The
    substitutions' tiny proven errors are propagated and added to the final bound.
    """
    opts = StabilityOptions(time_limit=min(time_limit, 60.0))
    fb, fs = bounds_and_states(f, box, analyse(f, box, opts))
    gb, gs = bounds_and_states(g, box, analyse(g, box, opts))
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
            if pairs:
                joint = _Joint(f, fb, fs, g, gb, gs, box, shared, m, False)
                model = HighsModel(joint.formulation, relax=True)
                for v, k, u in pairs:
                    cost = np.zeros(joint.formulation.num_cols)
                    cost[joint.g_z[m][v]] += 1.0
                    cost[joint.f_z[k][u]] -= 1.0
                    low = model.minimise(cost, None, time_limit).bound
                    high = -model.minimise(-cost, None, time_limit).bound
                    eps = max(abs(low), abs(high))
                    if np.isfinite(eps) and eps <= MATCH_TOL * (1.0 + float(np.abs(zg[m][:, v]).max())):
                        share[v] = joint.f_out[k + 1][u] if layer.relu == f.layers[k].relu else -2
                        if share[v] >= -1:
                            err[v] = eps + err_z[v]
            shared[m] = share
        err_out.append(err)
    joint = _Joint(f, fb, fs, g, gb, gs, box, shared, len(g.layers) - 1, True)
    slack = float(err_out[-1].max()) if err_out[-1].size else 0.0
    result = _maximise_difference(f, g, joint, tolerance, time_limit, target=tolerance - slack)
    if result.proven_bound is not None:
        bound = result.proven_bound + slack
        ok = result.complete and bound <= tolerance
        return CheckResult(ok, result.max_diff, 0, None, None, bound, exact=True, complete=result.complete)
    return result


def _maximise_difference(f: Network, g: Network, joint: _Joint, tolerance: float, time_limit: float,
                         target: float) -> CheckResult:
    """Maximise f_i - g_i and g_i - f_i for every output i, asking the MILP whether the
    difference can exceed ``target`` (the tolerance less the substitutions' proven error);
    stop at a real difference > tolerance."""
    model = HighsModel(joint.formulation)
    worst_bound, worst_seen, complete = 0.0, 0.0, True
    for i in range(f.output_dim):
        for sign in (1.0, -1.0):
            cost = np.zeros(joint.formulation.num_cols)
            cost[joint.f_y[i]] -= sign  # minimise -(sign * (f_i - g_i))
            cost[joint.g_y[i]] += sign
            res = model.minimise(cost, threshold=-target, time_limit=time_limit)
            if res.point is not None:
                x = res.point[None]
                diff = float(abs(f(x) - g(x))[0, i])
                if diff > tolerance:  # confirmed by the networks' own forward passes
                    return CheckResult(False, diff, 0, res.point, i, None, exact=True)
                worst_seen = max(worst_seen, diff)
            if res.status is SolveStatus.TIME_LIMIT or res.status is SolveStatus.ERROR:
                complete = False
            worst_bound = max(worst_bound, -res.bound if math.isfinite(res.bound) else math.inf)
    ok = complete and worst_bound <= tolerance
    return CheckResult(ok, worst_seen, 0, None, None, worst_bound, exact=True, complete=complete)
