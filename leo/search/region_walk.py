"""A counterexample search that walks across the network's linear regions by LP.

On the linear region of a point x (the inputs whose ReLUs have x's on/off pattern) the
network is affine, so the lowest value of a disjunct's excess ``max_r (a_r . y - c_r)``
there is one LP: ``min t`` subject to ``a_r . (A x + b) - c_r <= t``, the region's
inequalities and the box. Its optimum lies on the region's boundary; stepping just across
the boundary rows whose duals are non-zero enters a neighbouring region, whose LP starts
from there. The walk is a local descent, exact in each region, which, unlike a gradient,
does not stall where the gradient is zero or the max switches rows.

Why: on ACAS Xu 1_9 property 7 (sat) the gradient searches of ``leo.queries.property`` and
``leo.bab.input_split`` stalled at excess +4.4e-4 to +5.9e-4 from thousands of starts, and the
input-splitting search found no counterexample in 116 s; walks from the lowest of 10^5
random box points reached excess -1e-4 within 6 LPs.

Only candidates come out of here: the caller confirms them by the network's forward pass.

The stability analysis has its own walk for one unit (``leo.search.neighbourhood.region_walk``): it
minimises one pre-activation with the MILP's proven unit states; this one minimises a
largest-of-rows (an epigraph variable) on few inputs. Both take the region's affine maps from
``leo.search.neighbourhood.affine_maps``.
Tried on the 25 units the analysis left open on ACAS Xu 1_9 over property 7's box (60 s): walks
from the best of 10^5 points showed 1 of them unstable; the others' walks ended at z -0.005 to
-0.07 (most likely stable, so a walk is no help there).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linprog

from leo.core.domain import Box
from leo.core.network import Network
from leo.search.neighbourhood import affine_maps

#: Box points sampled for the walks' starts (the walk is local: the lowest points start).
WALK_SAMPLES = 100_000
#: Walks per disjunct and round, from the lowest points (one per plateau). On 1_9 property 7 one
#: round found a counterexample in 5 of 8 seeds with 20 (0.5-1.4 s, load 1) and in 6 of 8 with 10
#: (1.1-1.9 s, load 3): the same within noise.
WALK_STARTS = 20
#: LPs per walk at most, and the walk ends after this many in a row without a lower value.
WALK_STEPS, WALK_STALL = 50, 8
#: The step across a region's boundary, as a share of the box's widths.
CROSS = 1e-7
#: Two starts whose excess differs by less than this are taken to lie on the same plateau
#: (on 1_9 property 7, 1 in 5 random points had the same value: a region where the outputs
#: are constant), so only one of them starts a walk.
SAME = 1e-12


def region(network: Network, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The network on ``x``'s linear region: ``(A, b, P, q)`` with outputs ``A u + b`` for
    every ``u`` in the region ``{u : P u <= q}`` (one row per ReLU: z >= 0 where x's unit
    is on, z <= 0 where it is off). The maps are the analysis's (``leo.search.neighbourhood.affine_maps``)."""
    n = network.input_dim
    pattern = [(z[0] > 0).astype(np.float64) for z in network.pre_activations(x[None, :])]
    maps = affine_maps(network, len(network.layers) - 1, pattern)
    rows, rhs = [], []
    for layer, (m_z, c_z), on in zip(network.layers, maps, pattern):
        if layer.relu:
            sign = np.where(on > 0, -1.0, 1.0)  # on: -(M u + m) <= 0; off: M u + m <= 0
            rows.append(sign[:, None] * m_z)
            rhs.append(-sign * c_z)
    a_out, b_out = maps[-1]
    if network.layers[-1].relu:  # affine_maps gives pre-activations: the last ReLU's pattern applies too
        a_out, b_out = a_out * pattern[-1][:, None], b_out * pattern[-1]
    if not rows:
        return a_out, b_out, np.zeros((0, n)), np.zeros(0)
    return a_out, b_out, np.vstack(rows), np.concatenate(rhs)


def excess(network: Network, x: np.ndarray, a: np.ndarray, c: np.ndarray) -> float:
    """The disjunct's excess at ``x`` by the forward pass (<= 0: inside)."""
    return float((network(x[None, :])[0] @ a.T - c).max())


def descend(network: Network, box: Box, a: np.ndarray, c: np.ndarray, x: np.ndarray, deadline: float,
            steps: int = WALK_STEPS, stall: int = WALK_STALL) -> tuple[np.ndarray, float]:
    """Walk from ``x`` to lower values of the disjunct ``a y <= c``'s excess; stops at a
    point inside it (excess < 0 by the forward pass), after ``steps`` LPs, after ``stall``
    LPs in a row without a lower value, at a region with no way down, or at ``deadline``.
    Returns the lowest point seen and its excess (both by the forward pass)."""
    lo, hi = box.lower, box.upper
    n, m = box.dim, len(c)
    best_x, best = x.copy(), excess(network, x, a, c)
    bounds = [(float(l), float(h)) for l, h in zip(lo, hi)] + [(None, None)]
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    since = 0
    for _ in range(steps):
        left = deadline - time.perf_counter()
        if best < 0 or left <= 0 or since >= stall:
            break
        a_out, b_out, p, q = region(network, x)
        g = a @ a_out  # row r: g_r . u + (a_r . b - c_r) <= t
        a_ub = np.vstack([np.hstack([g, -np.ones((m, 1))]), np.hstack([p, np.zeros((len(q), 1))])])
        b_ub = np.concatenate([c - a @ b_out, q])
        lp = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs", options={"time_limit": left})
        if lp.status != 0:  # not optimal (a time limit, a degenerate region): the walk ends here
            break
        u = np.clip(lp.x[:n], lo, hi)
        value = excess(network, u, a, c)
        since = 0 if value < best - SAME else since + 1
        if value < best:
            best_x, best = u, value
        duals = lp.ineqlin.marginals[m:]
        tight = np.flatnonzero(np.abs(duals) > 0)
        if not len(tight):  # no boundary holds the optimum down: no neighbour is lower by this step
            break
        out = p[tight].sum(axis=0)  # leave the region across its binding rows
        norm = np.linalg.norm(out)
        if not norm > 0:
            break
        x = np.clip(u + CROSS * (hi - lo) * out / norm, lo, hi)
    return best_x, best


def starts(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` lowest ``values``, one per plateau (values within SAME)."""
    order = np.argsort(values, kind="stable")
    keep: list[int] = []
    last = -np.inf
    for j in order:
        if values[j] - last >= SAME:
            keep.append(int(j))
            last = values[j]
            if len(keep) == count:
                break
    return np.array(keep, dtype=int)


def walk_search(network: Network, box: Box, disjuncts: Sequence[tuple[np.ndarray, np.ndarray]],
                deadline: float, confirm: Callable[[np.ndarray], int | None], seed: int = 0,
                rounds: range = range(1), samples: int = WALK_SAMPLES, per_disjunct: int = WALK_STARTS,
                skip: Sequence[int] = ()) -> tuple[np.ndarray, int] | None:
    """Per round, walks from the lowest of ``samples`` fresh random box points (round ``r``
    draws with seed ``seed + r``), up to ``per_disjunct`` per disjunct, the disjuncts taken
    in turn; the first point that ``confirm`` (the caller's forward pass) puts in the unsafe
    set and its disjunct, or None. Disjuncts in ``skip`` (proven empty elsewhere) are not
    walked."""
    live = [i for i, (_, c) in enumerate(disjuncts) if i not in skip and len(c)]
    for r in rounds:
        pts = box.sample(samples, np.random.default_rng(seed + r))
        ys = network(pts)
        todo = {i: list(starts((ys @ disjuncts[i][0].T - disjuncts[i][1]).max(axis=1), per_disjunct))
                for i in live}
        while any(todo.values()):
            for i in live:
                if time.perf_counter() >= deadline:
                    return None
                if not todo[i]:
                    continue
                a, c = disjuncts[i]
                x, value = descend(network, box, a, c, pts[todo[i].pop(0)], deadline)
                if value <= 0:
                    hit = confirm(x)
                    if hit is not None:
                        return x, hit
    return None
