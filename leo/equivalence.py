"""Are two networks the same function on the box? Sampling finds differences;
``exact`` proves their absence with a MILP that maximises |f(x) - g(x)|."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leo.bounds import cheap_bounds
from leo.domain import Box
from leo.network import Network
from solvers.formulation import UnitState, build_prefix, join_on_inputs
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


def _full_formulation(net: Network, box: Box):  # noqa: ANN202
    bounds = cheap_bounds(net, box)
    states = [
        [UnitState.ACTIVE if lo >= 0 else UnitState.INACTIVE if hi <= 0 else UnitState.UNSTABLE
         for lo, hi in zip(b.lower, b.upper)] if layer.relu else []
        for b, layer in zip(bounds, net.layers)
    ]
    return build_prefix(net, box, bounds, states, len(net.layers) - 1, with_output=True)


def compare_exact(f: Network, g: Network, box: Box, tolerance: float = 1e-4,
                  time_limit: float = 600.0) -> CheckResult:
    """Maximise f_i - g_i and g_i - f_i for every output i; stop at a difference > tol."""
    joint, fo, go = join_on_inputs(_full_formulation(f, box), _full_formulation(g, box))
    model = HighsModel(joint)
    worst_bound, worst_seen, complete = 0.0, 0.0, True
    for i in range(f.output_dim):
        for sign in (1.0, -1.0):
            cost = np.zeros(joint.num_cols)
            cost[fo[i]] -= sign  # minimise -(sign * (f_i - g_i))
            cost[go[i]] += sign
            res = model.minimise(cost, threshold=-tolerance, time_limit=time_limit)
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
