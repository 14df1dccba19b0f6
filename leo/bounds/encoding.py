"""The big-M MILP of a network prefix: leo's network written as a ``solvers.Problem``.

Columns are the input ``x``, the pre-activations ``z`` of every encoded layer, the
post-activations ``h`` of unstable units and one binary ``d`` per unstable unit.
Stable units get no binary: an active unit's output *is* its ``z`` column, an
inactive unit's output is the constant 0. For an unstable unit with bounds l < 0 < u,
``ProblemBuilder.add_relu`` writes

    h >= z,  h >= 0,  h <= z - l (1 - d),  h <= u d,  d in {0, 1}.

Every back-end (HiGHS, SCIP, Gurobi, Pyomo, the LP/MPS writers) reads this one
problem, so they all solve the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from leo.bounds.propagate import LayerBounds, sparse_view
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.verdicts import Verdict
from solvers.problem import Problem, ProblemBuilder

#: Weights smaller than this are left out of the MILP rows, which are widened by the
#: range of the dropped terms over the column bounds instead (a sound relaxation). l1 training leaves most
#: weights below 1e-6 (down to 1e-14); kept in the rows they stall HiGHS's simplex at the
#: root (a 3x100 unit: no node in 600 s; with 1e-6 it is proven in ~35 s).
DROP_TOL = 1e-6


@dataclass(frozen=True)
class Encoding(Problem):
    """A ``Problem`` (any back-end solves it as is) that knows which network quantity
    each column holds: per encoded layer ``z_cols``, and ``h_cols``/``d_cols`` (-1 where
    a unit has no activation column/binary of its own); ``out_cols`` the outputs."""

    z_cols: tuple[np.ndarray, ...] = ()
    z_rows: tuple[np.ndarray, ...] = ()  # the row defining each z column
    h_cols: tuple[np.ndarray, ...] = ()
    d_cols: tuple[np.ndarray, ...] = ()
    out_cols: np.ndarray | None = None

    def objective(self, layer: int, unit: int, sign: float) -> np.ndarray:
        """Cost vector for minimising ``sign * z[layer][unit]``."""
        return self.cost([self.z_cols[layer][unit]], sign)


@dataclass(frozen=True)
class Encoded:
    """The columns ``encode`` gave one network: per layer its z columns, the rows
    defining them, and its h and d columns (-1: none), per source (input, then each layer) its output columns (-1: the constant 0),
    and the network's outputs when asked for."""

    z_cols: list[np.ndarray]
    z_rows: list[np.ndarray]
    h_cols: list[np.ndarray]
    d_cols: list[np.ndarray]
    outputs: list[np.ndarray]
    out_cols: np.ndarray | None


def build_prefix(network: Network, box: Box, bounds: Sequence[LayerBounds], states: Sequence[Sequence[Verdict]],
                 upto: int, with_output: bool = False) -> Encoding:
    """Encode layers ``0..upto`` (0-based). Layers before ``upto`` use ``states``
    (one per unit); layer ``upto`` contributes its ``z`` columns, the targets, and
    with ``with_output`` also its activation (``out_cols``; a constant-zero output
    gets a column fixed at 0)."""
    b = ProblemBuilder()
    x_cols = b.add_cols(box.lower, box.upper, "x")
    enc = encode(b, network, bounds, states, x_cols, upto, with_output)
    return as_encoding(b.build(), x_cols, enc)


def as_encoding(problem: Problem, x_cols: np.ndarray, enc: Encoded) -> Encoding:
    """``problem`` with the columns of the network ``enc`` describes."""
    return Encoding(
        matrix=problem.matrix, row_lower=problem.row_lower, row_upper=problem.row_upper,
        col_lower=problem.col_lower, col_upper=problem.col_upper, integer=problem.integer, names=problem.names,
        x_cols=x_cols, relus=problem.relus, z_cols=tuple(enc.z_cols), z_rows=tuple(enc.z_rows), h_cols=tuple(enc.h_cols),
        d_cols=tuple(enc.d_cols), out_cols=enc.out_cols,
    )


def _z_rows(b: ProblemBuilder, layer_index: int, width: int, weights: dict, bias: np.ndarray,
            outputs: list[np.ndarray], prefix: str, lb: LayerBounds) -> tuple[np.ndarray, np.ndarray]:
    """The z columns of one layer and the rows defining them (z - sum_s W_s h_s = bias),
    with weights below DROP_TOL left out and the rows widened by their range instead."""
    zc = b.add_cols(lb.lower, lb.upper, f"{prefix}z{layer_index + 1}")
    col_lo, col_hi = b.col_bounds()
    rows, cols, vals = [np.arange(width)], [zc], [np.ones(width)]
    low = np.zeros(width)  # range of the dropped terms, per row
    high = np.zeros(width)
    for s, w in weights.items():
        src = outputs[s]
        keep = src >= 0
        view = sparse_view(w) if isinstance(w, np.ndarray) else None
        if view is None:  # dense or scipy.sparse weights alike
            wk = sp.coo_matrix(w[:, keep])
        else:  # a lowered conv: its cached CSR view, so no step looks at its zeros
            wk = (view if keep.all() else view[:, keep]).tocoo()
        c = src[keep][wk.col]
        tiny = np.abs(wk.data) < DROP_TOL
        # a dropped term w * h lies between w * lo(h) and w * hi(h): widen the row by that range
        wt, ct = wk.data[tiny], c[tiny]
        np.add.at(low, wk.row[tiny], np.minimum(wt * col_lo[ct], wt * col_hi[ct]))
        np.add.at(high, wk.row[tiny], np.maximum(wt * col_lo[ct], wt * col_hi[ct]))
        rows.append(wk.row[~tiny])
        cols.append(c[~tiny])
        vals.append(-wk.data[~tiny])
    coo = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(width, b.num_cols))
    # z - kept terms = bias + dropped terms; outward rounding where something was dropped
    pad = 1e-6 * (np.abs(low) + np.abs(high)) + np.where((low != 0) | (high != 0), 1e-15, 0.0)
    z_rows = b.add_rows(coo, bias + low - pad, bias + high + pad)
    return zc, z_rows


def encode(b: ProblemBuilder, network: Network, bounds: Sequence[LayerBounds],
           states: Sequence[Sequence[Verdict]], x_cols: np.ndarray, upto: int, with_output: bool = False,
           shared: dict[int, np.ndarray] | None = None, prefix: str = "") -> Encoded:
    """Add a network's layers ``0..upto`` to a builder, over the input columns ``x_cols``.

    ``shared[k][j] >= -1`` makes unit ``j`` of layer ``k`` use an existing column as its
    output (-1: the constant 0) instead of its own activation encoding: used to encode a
    second network whose units are proven equal to units of the first."""
    outputs: list[np.ndarray] = [x_cols]
    z_cols: list[np.ndarray] = []
    z_rows: list[np.ndarray] = []
    h_cols: list[np.ndarray] = []
    d_cols: list[np.ndarray] = []
    out_cols = None
    for k in range(upto + 1):
        layer = network.layers[k]
        zc, rows_k = _z_rows(b, k, layer.width, dict(layer.weights), layer.bias, outputs, prefix, bounds[k])
        z_cols.append(zc)
        z_rows.append(rows_k)
        none = np.full(layer.width, -1)
        if k == upto and not with_output:
            h_cols.append(none)
            d_cols.append(none.copy())
            break
        if not layer.relu:
            h_cols.append(none)
            d_cols.append(none.copy())
            out = zc.copy()
        else:
            if k < upto:
                st = list(states[k])
            else:  # the output layer's activation, with_output: binaries where the bounds cross 0
                st = list(states[k]) if len(states) > k and states[k] else [Verdict.UNSTABLE] * layer.width
            share = shared.get(k) if shared and k < upto else None
            if share is not None:  # shared units need no encoding of their own
                st = [Verdict.INACTIVE if share[j] >= -1 else state for j, state in enumerate(st)]
            out, h, d = _encode_relu(b, k, zc, rows_k, bounds[k], st, prefix)
            h_cols.append(h)
            d_cols.append(d)
            if share is not None:
                out = np.where(share >= -1, share, out)
        if k == upto:  # with_output
            zero = out < 0
            out = out.copy()
            out[zero] = b.add_cols(np.zeros(int(zero.sum())), np.zeros(int(zero.sum())), f"{prefix}zero{k + 1}")
            out_cols = out
            break
        outputs.append(out)
    return Encoded(z_cols, z_rows, h_cols, d_cols, outputs, out_cols)


def _encode_relu(b: ProblemBuilder, k: int, zc: np.ndarray, z_rows: np.ndarray, lb: LayerBounds,
                 states: Sequence[Verdict], prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns holding relu(z) per unit (-1 for the constant zero), and the h and d
    columns per unit (-1 where none): binaries only where unstable."""
    out = np.full(zc.size, -1)
    h_cols = np.full(zc.size, -1)
    d_cols = np.full(zc.size, -1)
    st = np.array([str(s) for s in states])
    l, u = np.asarray(lb.lower, dtype=float), np.asarray(lb.upper, dtype=float)
    inactive = (st == str(Verdict.INACTIVE)) | (u <= 0)
    active = ~inactive & ((st == str(Verdict.ACTIVE)) | (l >= 0))
    out[active] = zc[active]
    unstable = np.flatnonzero(~inactive & ~active)  # one big-M block each, in unit order
    names = [(f"{prefix}h{k + 1}_{j}", f"{prefix}d{k + 1}_{j}") for j in unstable]
    h, d = b.add_relus(zc[unstable], l[unstable], u[unstable], z_rows[unstable], names)
    out[unstable] = h_cols[unstable] = h
    d_cols[unstable] = d
    return out, h_cols, d_cols


def assignment(network: Network, encoding: Encoding, x: np.ndarray) -> np.ndarray:
    """A full column vector for input ``x`` (warm starts, tests), from the recorded columns."""
    v = np.zeros(encoding.num_cols)
    v[encoding.x_cols] = x
    zs = network.pre_activations(np.asarray(x, dtype=np.float64)[None, :])
    for k, cols in enumerate(encoding.z_cols):
        z = zs[k][0]
        v[cols] = z
        if k < len(encoding.h_cols):
            h, d = encoding.h_cols[k], encoding.d_cols[k]
            v[h[h >= 0]] = np.maximum(z[h >= 0], 0.0)
            v[d[d >= 0]] = (z[d >= 0] > 0).astype(float)
    return v
