"""Cuts from the ideal single-ReLU formulation (Anderson, Huchette, Ma, Tjandraatmadja,
Vielma, "Strong mixed-integer programming formulations for trained neural networks",
Math. Programming 2020).

The big-M rows of a ReLU ``h = max(0, z)``, ``z = sum_i w_i x_i + beta``, are the
convex hull only in (z, h, d); over the inputs ``x`` they are weak, and on deep L1-
trained networks their LP bound stays far from the optimum. The ideal formulation
adds, for every subset ``I`` of the inputs,

    h <= sum_{i in I} w_i (x_i - L_i (1 - d)) + (beta_hi + sum_{i not in I} w_i U_i) d

where ``L_i``/``U_i`` is the bound of ``x_i`` that minimises/maximises ``w_i x_i``.
There are exponentially many, but the most violated one at a point is found in linear
time: ``i`` belongs to ``I`` exactly when its term on the left is the smaller of its
two terms. ``Separator`` does this for every ReLU of a formulation at once.

Validity: when ``d = 1`` the right side is at least ``z = h``; when ``d = 0`` it is at
least 0 = h (each term ``w_i (x_i - L_i) >= 0``). Rounding in the summed coefficients is
covered by widening the right side by ``ROUNDING`` times the magnitude of its terms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from solvers.backend import Model
from solvers.problem import Problem

#: Relative widening of every cut's right side (float64 rounding, with a wide margin).
ROUNDING = 1e-9

#: Inputs whose term is below this share of their ReLU's largest are kept out of the cuts.
SPARSE = 1e-3


@dataclass(frozen=True)
class Cuts:
    """Rows ``matrix @ v <= upper``, one per cut."""

    matrix: sp.csr_matrix
    upper: np.ndarray

    @property
    def count(self) -> int:
        return int(self.upper.size)

    @staticmethod
    def none(num_cols: int) -> Cuts:
        return Cuts(sp.csr_matrix((0, num_cols)), np.zeros(0))


class Separator:
    """Finds the most violated ideal-formulation cut of every binary ReLU at a point
    (the ReLUs a ``ProblemBuilder.add_relu`` recorded in ``relus``)."""

    def __init__(self, f: Problem) -> None:
        self.n = f.num_cols
        relus = f.relus
        self.z, self.h, self.d, rows = (relus[:, i] for i in range(4))
        a = f.matrix[rows].tocoo()
        keep = a.col != self.z[a.row]  # the z column's own entry is not an input
        self.entry_relu = a.row[keep]
        self.entry_col = a.col[keep]
        self.w = -a.data[keep]
        lo, hi = f.col_lower[self.entry_col], f.col_upper[self.entry_col]
        self.low = np.where(self.w >= 0, lo, hi)  # the bound minimising w * x
        self.high = np.where(self.w >= 0, hi, lo)
        self.beta_hi = f.row_upper[rows]
        # inputs whose term spans less than SPARSE of the largest term of their ReLU never
        # enter I (that is another cut of the family): dense cuts of tiny coefficients
        # slow the simplex down more than they tighten it
        span = np.abs(self.w * (self.high - self.low))
        largest = np.zeros(relus.shape[0])
        np.maximum.at(largest, self.entry_relu, span)
        self.significant = span >= SPARSE * largest[self.entry_relu]
        self.m = relus.shape[0]

    def separate(self, v: np.ndarray, min_violation: float = 1e-6) -> Cuts:
        """The most violated cut of every ReLU whose cut ``v`` violates by more than
        ``min_violation`` (relative to 1 + the size of the cut's terms)."""
        if not self.m:
            return Cuts.none(self.n)
        r, w = self.entry_relu, self.w
        d = v[self.d][r]
        in_set = (w * (v[self.entry_col] - self.low * (1 - d)) < w * self.high * d) & self.significant
        wl, wu = w * self.low, w * self.high
        # rhs(v) = sum_I w x + K + C d, with K = -sum_I w L and C = beta_hi + sum_I w L + sum_notI w U
        const = -np.bincount(r, np.where(in_set, wl, 0.0), self.m)
        coef_d = self.beta_hi + np.bincount(r, np.where(in_set, wl, wu), self.m)
        scale = np.bincount(r, np.abs(wl) + np.abs(wu), self.m) + np.abs(self.beta_hi)
        slack = ROUNDING * scale + 1e-12
        rhs = np.bincount(r, np.where(in_set, w * v[self.entry_col], 0.0), self.m) + const + coef_d * v[self.d]
        violated = np.flatnonzero(v[self.h] - rhs - slack > min_violation * (1.0 + scale))
        if not violated.size:
            return Cuts.none(self.n)
        # row: h - sum_I w x - C d <= K + slack
        take = np.isin(r, violated) & in_set
        # violated is sorted (flatnonzero), so a ReLU's cut row is its position there
        rows = np.concatenate([np.arange(violated.size), np.arange(violated.size),
                               np.searchsorted(violated, r[take])])
        cols = np.concatenate([self.h[violated], self.d[violated], self.entry_col[take]])
        vals = np.concatenate([np.ones(violated.size), -coef_d[violated], -w[take]])
        matrix = sp.csr_matrix((vals, (rows, cols)), shape=(violated.size, self.n))
        matrix.sum_duplicates()
        return Cuts(matrix, const[violated] + slack[violated])


@dataclass(frozen=True)
class LoopResult:
    bound: float  # proven LP bound with the cuts (-inf if the LP failed)
    rounds: int
    lps: int  # LP solves run (the rounds, and the first LP)
    cuts: Cuts  # the cuts binding at the last LP optimum (worth passing on to a MILP)
    seconds: float
    stopped: bool  # on_point asked to stop


def cut_loop(lp: Model, separator: Separator, cost: np.ndarray, threshold: float, time_limit: float,
             max_rounds: int = 60, on_point: Callable[[np.ndarray], bool] | None = None) -> LoopResult:
    """Minimise ``cost`` over the LP relaxation ``lp``, adding the most violated ideal
    cuts and re-solving until the bound reaches ``threshold``, no cut is violated, the
    bound stalls (less than 5 % of the remaining gap gained in 5 rounds), ``on_point``
    (given each LP optimum) returns True, or time runs out. The cuts are removed from
    ``lp`` again; the binding ones are returned."""
    start = time.perf_counter()
    base = lp.num_rows
    history: list[float] = []
    added: list[Cuts] = []
    rounds, stopped = 0, False
    try:
        while True:
            left = time_limit - (time.perf_counter() - start)
            res = lp.minimise(cost, threshold=None, time_limit=max(left, 1e-3))
            history.append(res.bound)
            if not np.isfinite(res.bound) or res.bound >= threshold:
                break
            v = lp.solution()
            if on_point is not None and on_point(v):
                stopped = True
                break
            if rounds >= max_rounds or time.perf_counter() - start >= time_limit:
                break
            if len(history) > 5 and history[-1] - history[-6] < 0.05 * (threshold - history[-1]):
                break
            cuts = separator.separate(v)
            if not cuts.count:
                break
            lp.add_rows(cuts.matrix, np.full(cuts.count, -np.inf), cuts.upper)
            added.append(cuts)
            rounds += 1
        binding = Cuts.none(separator.n)
        if added and np.isfinite(history[-1]):
            every = Cuts(sp.vstack([c.matrix for c in added]).tocsr(), np.concatenate([c.upper for c in added]))
            activity = every.matrix @ lp.solution()
            tight = activity >= every.upper - 1e-7 * (1.0 + np.abs(every.upper))
            binding = Cuts(every.matrix[tight], every.upper[tight])
    finally:
        lp.truncate_rows(base)
    # every LP optimum is a bound (cuts only tighten); a failed last LP does not undo the earlier ones
    bound = max((b for b in history if np.isfinite(b)), default=-np.inf)
    return LoopResult(bound, rounds, len(history), binding, time.perf_counter() - start, stopped)
