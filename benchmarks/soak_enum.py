"""Exact truth on a soak graph (``benchmarks.soak_graph.Graph``): the activation regions
feasible on a box, enumerated depth-first with one ``scipy.optimize.linprog`` LP per
branch (ReLU sign, max-pool argmax), and on each region, where the network is affine,
the LPs a query needs. Shares no code with leo's bounds, formulations or solvers layer.

Variables u in [-1, 1]^f parametrise the free coordinates of the box, x = c + D u (fixed
coordinates keep their value), which keeps thin and far boxes well scaled; every node's
value on a region is an affine map A u + a, and the region is G u <= h.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchmarks.soak_graph import Graph, Node, Op

#: An enumeration stops after this many LPs (the network then has no exact truth).
ENUM_LP_CAP = 1200
#: A unit whose LP range clears 0 by this x (1 + its term size) is not branched on.
SIGN_RTOL = 1e-12

Affine = tuple[np.ndarray, np.ndarray]  # (A, a): value = A u + a


class LPCapReached(Exception):
    """The enumeration needed more LPs than its cap."""


@dataclass(frozen=True)
class Leaf:
    """One activation region G u <= h and the output's affine map on it."""

    g: np.ndarray
    h: np.ndarray
    out: Affine


@dataclass
class Regions:
    """The enumeration: leaves, exact input ranges of every ReLU node, LP optima as points."""

    leaves: list[Leaf] = field(default_factory=list)
    lower: dict[int, np.ndarray] = field(default_factory=dict)
    upper: dict[int, np.ndarray] = field(default_factory=dict)
    points: list[np.ndarray] = field(default_factory=list)
    lps: int = 0


class Enumeration:
    """Depth-first enumeration of ``graph``'s regions on the box [lower, upper]."""

    def __init__(self, graph: Graph, lower: np.ndarray, upper: np.ndarray, lp_cap: int = ENUM_LP_CAP) -> None:
        from scipy.optimize import linprog

        self._linprog = linprog
        self.graph, self.lower, self.upper, self.lp_cap = graph, lower, upper, lp_cap
        self.free = np.flatnonzero(upper > lower)
        self.c = np.where(upper > lower, (lower + upper) / 2, lower)
        self.half = ((upper - lower) / 2)[self.free]
        self.out = Regions()
        self._ops: dict[Op, Callable[..., None]] = {Op.AFFINE: self._affine, Op.RELU: self._relu, Op.MAX: self._max}

    @property
    def f(self) -> int:
        return int(self.free.size)

    def x_of(self, u: np.ndarray) -> np.ndarray:
        x = self.c.copy()
        x[self.free] = self.c[self.free] + self.half * u
        return np.clip(x, self.lower, self.upper)

    def lp(self, cost: np.ndarray, g: np.ndarray, h: np.ndarray,
           extra_free: int = 0) -> tuple[float, np.ndarray] | None:
        """min cost . (u, t) over u in [-1, 1]^f, ``extra_free`` unbounded t, G (u, t) <= h; None if empty."""
        self.out.lps += 1
        if self.out.lps > self.lp_cap:
            raise LPCapReached
        n = self.f + extra_free
        if n == 0:
            return (0.0, np.zeros(0)) if np.all(h >= -1e-9) else None
        bounds = [(-1.0, 1.0)] * self.f + [(None, None)] * extra_free
        res = self._linprog(cost, A_ub=g if g.size else None, b_ub=h if g.size else None, bounds=bounds,
                            method="highs")
        if res.status == 2:
            return None
        if res.status != 0:
            raise RuntimeError(f"linprog status {res.status}: {res.message}")
        return float(res.fun), np.asarray(res.x)

    def run(self) -> Regions:
        n = self.graph.inputs
        a0 = np.zeros((n, self.f))
        a0[self.free, np.arange(self.f)] = self.half
        self._node(0, [(a0, self.c.copy())], np.zeros((0, self.f)), np.zeros(0))
        return self.out

    def _node(self, i: int, vals: list[Affine], g: np.ndarray, h: np.ndarray) -> None:
        if i == len(self.graph.nodes):
            self.out.leaves.append(Leaf(g, h, vals[-1]))
            return
        node = self.graph.nodes[i]
        self._ops[node.op](i, node, vals, g, h)

    def _affine(self, i: int, node: Node, vals: list[Affine], g: np.ndarray, h: np.ndarray) -> None:
        big = sum(w @ vals[s][0] for s, w in zip(node.sources, node.weights))
        small = sum(w @ vals[s][1] for s, w in zip(node.sources, node.weights)) + node.bias
        self._node(i + 1, [*vals, (big, small)], g, h)

    def _range(self, row: np.ndarray, const: float, g: np.ndarray, h: np.ndarray) -> tuple[float, float] | None:
        """min and max of row . u + const on the region (None: region empty); normalised cost
        (a row of 1e-7 weights would fall below the LP's dual tolerance). The two optima
        are the last two of ``points``."""
        norm = float(np.linalg.norm(row))
        if self.f == 0 or norm == 0.0:
            self.out.points += [self.x_of(np.zeros(self.f))] * 2
            return const, const
        ends = []
        for sign in (1.0, -1.0):
            sol = self.lp(sign * row / norm, g, h)
            if sol is None:
                return None
            ends.append(const + float(row @ sol[1]))
            self.out.points.append(self.x_of(sol[1]))
        return ends[0], ends[1]

    def _relu(self, i: int, node: Node, vals: list[Affine], g: np.ndarray, h: np.ndarray) -> None:
        big, small = vals[node.sources[0]]
        lo, hi = np.empty(small.size), np.empty(small.size)
        for j in range(small.size):
            r = self._range(big[j], float(small[j]), g, h)
            if r is None:
                return
            lo[j], hi[j] = r
        key = i + 1
        self.out.lower[key] = np.minimum(self.out.lower.get(key, np.inf), lo)
        self.out.upper[key] = np.maximum(self.out.upper.get(key, -np.inf), hi)
        eps = SIGN_RTOL * (1.0 + np.abs(small) + np.abs(big).sum(axis=1))
        pattern = np.where(lo >= -eps, 1.0, np.where(hi <= eps, 0.0, np.nan))
        self._relu_patterns(i, vals, (big, small), g, h, pattern, 0)

    def _relu_patterns(self, i: int, vals: list[Affine], z: Affine, g: np.ndarray, h: np.ndarray,
                       pattern: np.ndarray, j: int) -> None:
        while j < pattern.size and not np.isnan(pattern[j]):
            j += 1
        big, small = z
        if j == pattern.size:
            self._node(i + 1, [*vals, (big * pattern[:, None], small * pattern)], g, h)
            return
        norm = float(np.linalg.norm(big[j]))
        for side, sign in ((1.0, -1.0), (0.0, 1.0)):  # active: -z <= 0; inactive: z <= 0
            g2, h2 = np.vstack([g, sign * big[j] / norm]), np.append(h, -sign * small[j] / norm)
            if self.lp(np.zeros(self.f), g2, h2) is None:
                continue
            child = pattern.copy()
            child[j] = side
            self._relu_patterns(i, vals, z, g2, h2, child, j + 1)

    def _max(self, i: int, node: Node, vals: list[Affine], g: np.ndarray, h: np.ndarray) -> None:
        self._max_choices(i, node, vals, g, h, [], [])

    def _max_choices(self, i: int, node: Node, vals: list[Affine], g: np.ndarray, h: np.ndarray,
                     rows: list[np.ndarray], consts: list[float]) -> None:
        """Branch on which member of each window is its maximum (member m: z_o - z_m <= 0 for all o)."""
        j = len(rows)
        big, small = vals[node.sources[0]]
        if j == len(node.groups):
            self._node(i + 1, [*vals, (np.array(rows).reshape(j, self.f), np.array(consts))], g, h)
            return
        members = node.groups[j]
        for m in members:
            diff = big[members] - big[m]
            rhs = small[m] - small[members]
            keep = np.array([o != m for o in members])
            norms = np.linalg.norm(diff[keep], axis=1)
            ok = norms > 0
            if np.any(~ok & (rhs[keep] < 0)):  # the same row, a larger constant: never the maximum
                continue
            d, r = diff[keep][ok] / norms[ok, None], rhs[keep][ok] / norms[ok]
            g2, h2 = np.vstack([g, d]), np.append(h, r)
            if d.size and self.lp(np.zeros(self.f), g2, h2) is None:
                continue
            self._max_choices(i, node, vals, g2, h2, [*rows, big[m]], [*consts, float(small[m])])
            if not d.size:
                break


def enumerate_regions(graph: Graph, lower: np.ndarray, upper: np.ndarray,
                      lp_cap: int = ENUM_LP_CAP) -> tuple[Enumeration, Regions] | None:
    """The enumeration, or None when it needs more than ``lp_cap`` LPs."""
    e = Enumeration(graph, np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64), lp_cap)
    try:
        return e, e.run()
    except LPCapReached:
        return None


def min_excess(e: Enumeration, regions: Regions, p: np.ndarray, c: np.ndarray,
               lp_cap: int = ENUM_LP_CAP) -> tuple[float, np.ndarray] | None:
    """min over the box of max_i (p_i . y - c_i): one LP per region (variables u and t);
    the value and its minimiser x. None when the LPs run past ``lp_cap`` more."""
    e.lp_cap = e.out.lps + lp_cap
    best: tuple[float, np.ndarray] | None = None
    try:
        for leaf in regions.leaves:
            big, small = leaf.out
            rows = np.hstack([p @ big, -np.ones((p.shape[0], 1))])
            g = np.vstack([np.hstack([leaf.g, np.zeros((leaf.g.shape[0], 1))]), rows])
            h = np.concatenate([leaf.h, c - p @ small])
            cost = np.zeros(e.f + 1)
            cost[-1] = 1.0
            sol = e.lp(cost, g, h, extra_free=1)
            if sol is not None and (best is None or sol[0] < best[0]):
                best = (sol[0], e.x_of(sol[1][:e.f]))
    except LPCapReached:
        return None
    return best


def max_abs(e: Enumeration, regions: Regions, lp_cap: int = ENUM_LP_CAP) -> tuple[float, np.ndarray] | None:
    """max over the box of max_i |y_i| (y: the graph's output): two LPs per output per region."""
    e.lp_cap = e.out.lps + lp_cap
    best = (-np.inf, e.x_of(np.zeros(e.f)))
    try:
        for leaf in regions.leaves:
            big, small = leaf.out
            for i in range(small.size):
                r = e._range(big[i], float(small[i]), leaf.g, leaf.h)
                if r is None:
                    break
                for value in (-r[0], r[1]):
                    if value > best[0]:
                        best = (value, e.out.points[-1 if value == r[1] else -2])
    except LPCapReached:
        return None
    return best
