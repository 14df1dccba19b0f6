"""The LP relaxation that ReLU-split branch and bound solves, and its safe dual bound.

The network over the box as one sparse LP (``Relaxation``): stable units linear or zero,
unstable ones the triangle of ``leo.bounds.relaxation.relu_relaxation`` (its upper chord),
so the LP, the interval and the back-substitution bounds relax a unit the same way. A
bound on the LP's optimum counts only as recomputed here from duals (``safe_bound``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from leo.bounds.propagate import LayerBounds
from leo.bounds.relaxation import relu_relaxation
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.verdicts import Verdict

#: Relative widening of the recomputed dual bound for float rounding (the sums have at most
#: ~10^5 terms, each rounding error ~1e-16 of the magnitudes: 1e-10 covers them many times).
DUAL_SLACK = 1e-10


@dataclass(frozen=True)
class LinearProgram:
    """``min cost . v`` s.t. ``row_lo <= A v <= row_hi``, ``col_lo <= v <= col_hi``."""

    a: sp.csr_matrix
    cost: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray

    @property
    def abs_a_t(self) -> sp.csr_matrix:
        """|A|^T, for the rounding slack (made once)."""
        if "_abs_a_t" not in self.__dict__:
            object.__setattr__(self, "_abs_a_t", abs(self.a).T.tocsr())
        return self.__dict__["_abs_a_t"]


def safe_bound(lp: LinearProgram, row_dual: np.ndarray, col_lo: np.ndarray, col_hi: np.ndarray,
               row_lo: np.ndarray, row_hi: np.ndarray, cost: np.ndarray | None = None) -> float:
    """A proven lower bound on ``lp``'s objective (with these bounds) from any row duals, by
    weak duality: ``c.v = y.(A v) + (c - A^T y).v``, each part bounded below over the bounds,
    widened for rounding. A dual on an infinite side counts as 0 (still a valid dual vector).
    With ``cost`` = 0 and a dual ray, a bound > 0 is a Farkas proof of infeasibility."""
    c = lp.cost if cost is None else cost
    y = np.where(np.isfinite(row_dual), row_dual, 0.0)
    y = np.where((y > 0) & ~np.isfinite(row_lo), 0.0, y)
    y = np.where((y < 0) & ~np.isfinite(row_hi), 0.0, y)
    row_side = np.where(y > 0, row_lo, np.where(y < 0, row_hi, 0.0))
    row_terms = np.where(y != 0, y * row_side, 0.0)
    reduced = c - lp.a.T @ y
    col_side = np.where(reduced > 0, col_lo, np.where(reduced < 0, col_hi, 0.0))
    if not np.isfinite(col_side[reduced != 0]).all():
        return -np.inf
    col_terms = np.where(reduced != 0, reduced * col_side, 0.0)
    scale = np.maximum(np.abs(col_lo), np.abs(col_hi))
    err = float(np.abs(row_terms).sum() + ((np.abs(c) + lp.abs_a_t @ np.abs(y)) * scale).sum())
    return float(row_terms.sum() + col_terms.sum()) - DUAL_SLACK * err


@dataclass(frozen=True)
class Unit:
    """An unstable unit: its z and h columns and its ``h - z >= 0`` row."""

    z: int
    h: int
    row: int
    lower: float
    upper: float


class Relaxation:
    """The network's LP relaxation for one disjunct, as arrays (see LinearProgram), with the
    unstable units and the columns of the inputs and of ``t``."""

    def __init__(self, network: Network, box: Box, bounds: Sequence[LayerBounds],
                 states: Sequence[Sequence[Verdict]], a: np.ndarray, c: np.ndarray) -> None:
        self.col_lo: list[float] = list(box.lower)
        self.col_hi: list[float] = list(box.upper)
        self.entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (rows, cols, values)
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.units: list[Unit] = []
        outs: list[np.ndarray] = [np.arange(box.dim)]  # per layer: column of each output (-1: zero)
        self.z_cols: list[np.ndarray] = []
        for k, layer in enumerate(network.layers):
            lb = bounds[k]
            st = states[k] if k < len(states) and len(states[k]) else [Verdict.UNSTABLE] * layer.width
            # a stably inactive unit is constantly 0 and its row is implied by the box: neither is in
            # the LP (dropping rows only relaxes it; the dense first-layer rows cost the simplex most)
            live = np.ones(layer.width, dtype=bool) if not layer.relu else \
                ~((np.asarray(st) == Verdict.INACTIVE) | (np.asarray(lb.upper) <= 0))
            z = np.full(layer.width, -1)
            z[live] = self._cols(lb.lower[live], lb.upper[live])
            self.z_cols.append(z)
            rows = np.full(layer.width, -1)
            rows[live] = np.arange(len(self.row_lo), len(self.row_lo) + int(live.sum()))
            self._add(rows[live], z[live], np.ones(int(live.sum())))
            for s, w in layer.weights.items():
                coo = sp.coo_matrix(w[live])
                keep = outs[s][coo.col] >= 0
                self._add(rows[live][coo.row[keep]], outs[s][coo.col[keep]], -coo.data[keep])
            self.row_lo += list(layer.bias[live])
            self.row_hi += list(layer.bias[live])
            outs.append(self._relus(z, lb, st) if layer.relu else z)
        self.y = outs[-1]
        self.t = self._t_column(lb_out=bounds[-1], final_relu=network.layers[-1].relu, a=a, c=c)

    def _cols(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        start = len(self.col_lo)
        self.col_lo += list(np.asarray(lo, dtype=np.float64))
        self.col_hi += list(np.asarray(hi, dtype=np.float64))
        return np.arange(start, len(self.col_lo))

    def _add(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        self.entries.append((np.asarray(rows), np.asarray(cols), np.asarray(values, dtype=np.float64)))

    def _row(self, cols: Sequence[int], values: Sequence[float], lo: float, hi: float) -> int:
        r = len(self.row_lo)
        self._add(np.full(len(cols), r), np.asarray(cols), np.asarray(values))
        self.row_lo.append(lo)
        self.row_hi.append(hi)
        return r

    def _relus(self, z: np.ndarray, lb: LayerBounds, states: Sequence[Verdict]) -> np.ndarray:
        """Columns of the layer's outputs: z itself (active), -1 (inactive: no z column either) or a new h."""
        out = np.full(z.size, -1)
        for j, zj in enumerate(z):
            if zj < 0:  # stably inactive: no column
                continue
            lo, hi = float(lb.lower[j]), float(lb.upper[j])
            if states[j] == Verdict.ACTIVE or lo >= 0:
                self.col_lo[zj] = max(lo, 0.0)
                out[j] = zj
            else:
                out[j] = self._unstable(int(zj), lo, hi)
        return out

    def _unstable(self, z: int, lo: float, hi: float) -> int:
        """h in [0, hi], h >= z, and the triangle's upper side h - s z <= rhs: the chord of
        ``relu_relaxation``, with rhs at least h - s z at both kinks (so the rounded row cuts
        off no true point)."""
        h = int(self._cols(np.array([0.0]), np.array([hi]))[0])
        row = self._row([h, z], [1.0, -1.0], 0.0, np.inf)
        _, up, icpt = relu_relaxation(np.array([lo]), np.array([hi]))
        s = float(up[0])
        rhs = max(float(icpt[0]), -s * lo, hi - s * hi)
        self._row([h, z], [1.0, -s], -np.inf, rhs * (1 + 1e-12) + 1e-15)
        self.units.append(Unit(z, h, row, lo, hi))
        return h

    def _t_column(self, lb_out: LayerBounds, final_relu: bool, a: np.ndarray, c: np.ndarray) -> int:
        """``t >= a_r . y - c_r`` for every row r; t's bounds hold for every true point."""
        ylo, yhi = np.asarray(lb_out.lower, dtype=np.float64), np.asarray(lb_out.upper, dtype=np.float64)
        if final_relu:
            ylo, yhi = np.maximum(ylo, 0.0), np.maximum(yhi, 0.0)
        least = (np.minimum(a * ylo, a * yhi).sum(axis=1) - c)
        most = (np.maximum(a * ylo, a * yhi).sum(axis=1) - c)
        err = 1e-9 * (np.abs(a) * np.maximum(np.abs(ylo), np.abs(yhi))).sum(axis=1) + 1e-9 * np.abs(c) + 1e-12
        t = int(self._cols(np.array([float((least - err).max())]), np.array([float((most + err).max()) + 1.0]))[0])
        live = self.y >= 0
        for ar, cr in zip(a, c):
            self._row(list(self.y[live]) + [t], list(ar[live]) + [-1.0], -np.inf, float(cr))
        return t

    def program(self) -> LinearProgram:
        """The relaxation as one sparse LP minimising ``t``."""
        rows = np.concatenate([e[0] for e in self.entries])
        cols = np.concatenate([e[1] for e in self.entries])
        vals = np.concatenate([e[2] for e in self.entries])
        n = len(self.col_lo)
        a = sp.csr_matrix((vals, (rows, cols)), shape=(len(self.row_lo), n))
        cost = np.zeros(n)
        cost[self.t] = 1.0
        return LinearProgram(a, cost, np.array(self.col_lo), np.array(self.col_hi),
                             np.array(self.row_lo), np.array(self.row_hi))
