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

This is the one LP walk: the stability analysis walks one unit's pre-activation with it
(``leo.search.neighbourhood.region_walk``: the units it proved stable keep their state and
add no row), property checking walks a disjunct's largest-of-rows (an epigraph variable).
Its LPs go through ``solvers`` (so ``--solver`` reaches them); on ACAS Xu 1_9 property 7,
160 walks from the same starts (2026-12-06, alternating) ended at the same values as the
same walk through scipy's ``linprog``, in 40.8 s against 47.9 s. The region's affine maps
are ``leo.search.maps.affine_maps``.

Tried on the 25 units the analysis left open on ACAS Xu 1_9 over property 7's box (60 s): walks
from the best of 10^5 points showed 1 of them unstable; the others' walks ended at z -0.005 to
-0.07 (most likely stable, so a walk is no help there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.threads import highs_threads
from leo.search.maps import affine_maps
from solvers.backend import Solver, new_model
from solvers.problem import Problem
from solvers.result import SolveStatus

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


#: A row whose dual exceeds this at an LP optimum is a wall the optimum sits on.
WALL_DUAL = 1e-9

#: Per layer, a fixed ReLU state per unit (1 passes, 0 blocks) or NaN: free (its sign is the point's,
#: and its sign row bounds the region). The stability analysis fixes the units it proved stable.
Fixed = Sequence[np.ndarray]


def _pattern(network: Network, x: np.ndarray, upto: int, fixed: Fixed | None) -> tuple[list[np.ndarray],
                                                                                      list[np.ndarray]]:
    """Per layer ``0..upto``: the ReLU state at ``x`` (fixed units keep theirs), and which units are free."""
    zs = network.pre_activations(x[None, :], upto)
    pattern, free = [], []
    for k, z in enumerate(zs):
        seen = (z[0] > 0).astype(np.float64)
        f = np.full(seen.size, np.nan) if fixed is None or k >= len(fixed) else np.asarray(fixed[k], dtype=float)
        pattern.append(np.where(np.isnan(f), seen, f))
        free.append(np.isnan(f))
    return pattern, free


def _region(network: Network, upto: int, pattern: list[np.ndarray], free: list[np.ndarray],
            output: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(A, b, P, q)``: the values ``A u + b`` (layer ``upto``'s pre-activation, or its output
    with ``output``) for every ``u`` of the region ``{u : P u <= q}`` (a row per free ReLU
    before ``upto``, and of ``upto`` itself with ``output``: z >= 0 where on, z <= 0 where off)."""
    maps = affine_maps(network, upto, pattern)
    rows, rhs = [], []
    for k, (layer, (m_z, c_z)) in enumerate(zip(network.layers[: upto + 1], maps)):
        if layer.relu and (k < upto or output):
            sign = np.where(pattern[k] > 0, -1.0, 1.0)[free[k]]  # on: -(M u + m) <= 0; off: M u + m <= 0
            rows.append(sign[:, None] * m_z[free[k]])
            rhs.append(-sign * c_z[free[k]])
    a_out, b_out = maps[-1]
    if output and network.layers[upto].relu:  # affine_maps gives pre-activations: the last ReLU's pattern applies
        a_out, b_out = a_out * pattern[upto][:, None], b_out * pattern[upto]
    n = network.input_dim
    if not rows:
        return a_out, b_out, np.zeros((0, n)), np.zeros(0)
    return a_out, b_out, np.vstack(rows), np.concatenate(rhs)


def region(network: Network, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The network on ``x``'s linear region: ``(A, b, P, q)`` with outputs ``A u + b`` for
    every ``u`` in the region ``{u : P u <= q}`` (one row per ReLU: z >= 0 where x's unit
    is on, z <= 0 where it is off). The maps are the analysis's (``leo.search.neighbourhood.affine_maps``)."""
    last = len(network.layers) - 1
    return _region(network, last, *_pattern(network, x, last, None), output=True)


@dataclass(frozen=True)
class Walk:
    """Where a walk went: every LP optimum, the lowest point seen and its value (both by the
    forward pass), and the LPs solved."""

    points: tuple[np.ndarray, ...]
    x: np.ndarray
    value: float
    lps: int


@dataclass(frozen=True)
class Target:
    """What a walk lowers: ``max_r (g_r . v + h_r)`` where ``v`` is layer ``layer``'s
    pre-activation (None: the network's output)."""

    g: np.ndarray
    h: np.ndarray
    layer: int | None = None

    def value(self, network: Network, x: np.ndarray) -> float:
        """At ``x``, by the forward pass."""
        if self.layer is None:
            v = network(x[None, :])[0]
        else:
            v = network.pre_activations(x[None, :], self.layer)[-1][0]
        return float((self.g @ v + self.h).max())


def _region_lp(network: Network, box: Box, target: Target, x: np.ndarray, fixed: Fixed | None, seconds: float,
               solver: Solver | str) -> tuple[np.ndarray, np.ndarray] | None:
    """The lowest point of the target on ``x``'s region (an LP through ``solvers``: ``min t`` s.t.
    ``g_r . (A u + b) + h_r <= t``, the region's rows, the box), and the region rows it binds on."""
    upto = len(network.layers) - 1 if target.layer is None else target.layer
    pattern, free = _pattern(network, x, upto, fixed)
    a_out, b_out, p, q = _region(network, upto, pattern, free, output=target.layer is None)
    n, m = box.dim, len(target.h)
    g = target.g @ a_out
    matrix = sp.csr_matrix(np.vstack([np.hstack([g, -np.ones((m, 1))]), np.hstack([p, np.zeros((len(q), 1))])]))
    upper = np.concatenate([-(target.g @ b_out + target.h), q])
    problem = Problem(matrix=matrix, row_lower=np.full(len(upper), -np.inf), row_upper=upper,
                      col_lower=np.append(box.lower, -np.inf), col_upper=np.append(box.upper, np.inf),
                      integer=np.zeros(n + 1, dtype=bool), names=tuple(f"x_{i}" for i in range(n)) + ("t",),
                      x_cols=np.arange(n))
    lp = new_model(problem, relax=True, threads=highs_threads(), solver=solver)
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    res = lp.minimise(cost, threshold=None, time_limit=seconds)
    if res.status is not SolveStatus.OPTIMAL or res.point is None:
        return None  # not optimal (a time limit, a degenerate region): the walk ends here
    walls = np.flatnonzero(np.abs(lp.row_duals()[m:]) > WALL_DUAL)
    return np.clip(res.point, box.lower, box.upper), p[walls]


def walk(network: Network, box: Box, target: Target, x: np.ndarray, deadline: Deadline, *,
         fixed: Fixed | None = None, steps: int = WALK_STEPS, stall: int = WALK_STALL,
         solver: Solver | str = Solver.HIGHS) -> Walk:
    """Walk from ``x`` to lower values of ``target``: per step the LP of the current point's
    region, then a step just across the walls its optimum binds on. Stops at a value < 0, after
    ``steps`` LPs, after ``stall`` LPs in a row without a lower value, at a region with no way
    down, or at ``deadline``."""
    lo, hi = box.lower, box.upper
    best_x, best = x.copy(), target.value(network, x)
    points: list[np.ndarray] = []
    since = 0
    for _ in range(steps):
        if best < 0 or deadline.passed() or since >= stall:
            break
        solved = _region_lp(network, box, target, x, fixed, deadline.left(), solver)
        if solved is None:
            break
        u, walls = solved
        points.append(u)
        value = target.value(network, u)
        since = 0 if value < best - SAME else since + 1
        if value < best:
            best_x, best = u, value
        out = walls.sum(axis=0) if len(walls) else np.zeros(box.dim)  # leave the region across its walls
        norm = np.linalg.norm(out)
        if not norm > 0:  # no wall holds the optimum down: no neighbour is lower by this step
            break
        x = np.clip(u + CROSS * (hi - lo) * out / norm, lo, hi)
    return Walk(tuple(points), best_x, best, len(points))


def excess(network: Network, x: np.ndarray, a: np.ndarray, c: np.ndarray) -> float:
    """The disjunct's excess at ``x`` by the forward pass (<= 0: inside)."""
    return Target(np.atleast_2d(a), -np.asarray(c, dtype=np.float64)).value(network, x)


def descend(network: Network, box: Box, a: np.ndarray, c: np.ndarray, x: np.ndarray, deadline: Deadline,
            steps: int = WALK_STEPS, stall: int = WALK_STALL,
            solver: Solver | str = Solver.HIGHS) -> tuple[np.ndarray, float]:
    """``walk`` to lower values of the disjunct ``a y <= c``'s excess; returns the lowest point
    seen and its excess (both by the forward pass)."""
    target = Target(np.atleast_2d(np.asarray(a, dtype=np.float64)), -np.asarray(c, dtype=np.float64))
    w = walk(network, box, target, x, deadline, steps=steps, stall=stall, solver=solver)
    return w.x, w.value


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
                deadline: Deadline, confirm: Callable[[np.ndarray], int | None], seed: int = 0,
                rounds: range = range(1), samples: int = WALK_SAMPLES, per_disjunct: int = WALK_STARTS,
                skip: Sequence[int] = (), solver: Solver | str = Solver.HIGHS) -> tuple[np.ndarray, int] | None:
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
                if deadline.passed():
                    return None
                if not todo[i]:
                    continue
                a, c = disjuncts[i]
                x, value = descend(network, box, a, c, pts[todo[i].pop(0)], deadline, solver=solver)
                if value <= 0:
                    hit = confirm(x)
                    if hit is not None:
                        return x, hit
    return None
