"""Exact pre-activation ranges of a soak MLP (``benchmarks.soak.Case``) by enumerating
the activation patterns feasible on its box, one ``scipy.optimize.linprog`` LP per
branch; shares no code with leo's bounds or formulations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from benchmarks.soak import Case

#: Enumerations stop after this many LPs (the network then counts as sampled only).
LP_CAP = 6000

@dataclass
class Exact:
    """Per hidden layer, LP lower/upper bounds of each unit over the box, and LP optima."""

    lower: list[np.ndarray]
    upper: list[np.ndarray]
    points: list[np.ndarray]
    regions: int = 0
    lps: int = 0


class _LPCap(Exception):
    pass


class ExactRanges:
    """Exact pre-activation ranges by enumerating feasible activation patterns.

    Variables u in [-1, 1]^f parametrise the free coordinates, x = c + D u (fixed
    coordinates stay at their value), which keeps thin, far boxes well scaled. On a
    pattern of layers < k the network is affine, z_k = A u + a; each constraint row
    (one per fixed sign) is normalised before it goes to the LP.
    """

    def __init__(self, case: Case, lp_cap: int = LP_CAP) -> None:
        from scipy.optimize import linprog

        self._linprog = linprog
        self.case = case
        self.lp_cap = lp_cap
        lo, hi = case.lower, case.upper
        self.free = np.flatnonzero(hi > lo)
        self.c = (lo + hi) / 2
        self.c[hi == lo] = lo[hi == lo]
        self.half = ((hi - lo) / 2)[self.free]
        hidden = case.hidden
        self.out = Exact([np.full(n, np.inf) for n in hidden], [np.full(n, -np.inf) for n in hidden], [])

    def x_of(self, u: np.ndarray) -> np.ndarray:
        x = self.c.copy()
        x[self.free] = self.c[self.free] + self.half * u
        return np.clip(x, self.case.lower, self.case.upper)

    def _lp(self, cost: np.ndarray, g: np.ndarray, h: np.ndarray) -> tuple[float, np.ndarray] | None:
        """min cost·u over the box and G u <= h; None when infeasible."""
        self.out.lps += 1
        if self.out.lps > self.lp_cap:
            raise _LPCap
        f = self.free.size
        res = self._linprog(cost, A_ub=g if g.size else None, b_ub=h if g.size else None,
                            bounds=[(-1.0, 1.0)] * f, method="highs")
        if res.status == 2:
            return None
        if res.status != 0:
            raise RuntimeError(f"linprog status {res.status}: {res.message}")
        return float(res.fun), np.asarray(res.x)

    def run(self) -> Exact:
        f = self.free.size
        w0 = self.case.weights[0]
        a = w0 @ self.c + self.case.biases[0]
        big_a = w0[:, self.free] * self.half
        self._layer(0, big_a, a, np.zeros((0, f)), np.zeros(0))
        return self.out

    def _layer(self, k: int, big_a: np.ndarray, a: np.ndarray, g: np.ndarray, h: np.ndarray) -> None:
        """Ranges of layer k on the region G u <= h, then recurse into its feasible patterns."""
        f = self.free.size
        lo, hi = np.empty(a.size), np.empty(a.size)
        for j in range(a.size):
            for sign, store in ((1.0, lo), (-1.0, hi)):
                norm = float(np.linalg.norm(big_a[j]))
                if f == 0 or norm == 0.0:
                    store[j] = a[j]
                    self.out.points.append(self.x_of(np.zeros(f)))
                    continue
                # a normalised cost: a tiny row (1e-7 weights) would fall below the LP's dual tolerance
                sol = self._lp(sign * big_a[j] / norm, g, h)
                if sol is None:  # region empty (reached only through a tolerance): nothing to add
                    return
                store[j] = a[j] + float(big_a[j] @ sol[1])
                self.out.points.append(self.x_of(sol[1]))
        self.out.lower[k] = np.minimum(self.out.lower[k], lo)
        self.out.upper[k] = np.maximum(self.out.upper[k], hi)
        if k + 1 == len(self.case.hidden):
            self.out.regions += 1
            return
        scale = 1.0 + np.abs(a) + np.abs(big_a).sum(axis=1)
        eps = 1e-12 * scale
        fixed = np.where(lo >= -eps, 1.0, np.where(hi <= eps, 0.0, np.nan))
        self._patterns(k, big_a, a, g, h, fixed, 0)

    def _patterns(self, k: int, big_a: np.ndarray, a: np.ndarray, g: np.ndarray, h: np.ndarray,
                  pattern: np.ndarray, j: int) -> None:
        """Branch on the crossing units of layer k from unit j on, keeping feasible sign choices."""
        while j < pattern.size and not np.isnan(pattern[j]):
            j += 1
        if j == pattern.size:
            w, b = self.case.weights[k + 1], self.case.biases[k + 1]
            self._layer(k + 1, (w * pattern) @ big_a, (w * pattern) @ a + b, g, h)
            return
        norm = float(np.linalg.norm(big_a[j]))
        for side in (1.0, 0.0):  # active: -z <= 0; inactive: z <= 0
            sign = -1.0 if side == 1.0 else 1.0
            row, rhs = sign * big_a[j] / norm, -sign * a[j] / norm
            g2, h2 = np.vstack([g, row]), np.append(h, rhs)
            if self._lp(np.zeros(self.free.size), g2, h2) is None:
                continue
            child = pattern.copy()
            child[j] = side
            self._patterns(k, big_a, a, g2, h2, child, j + 1)


def exact_ranges(case: Case, lp_cap: int = LP_CAP) -> Exact | None:
    """The exact ranges, or None when the enumeration needs more than ``lp_cap`` LPs."""
    try:
        return ExactRanges(case, lp_cap).run()
    except _LPCap:
        return None
