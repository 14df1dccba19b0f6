"""The big-M MILP of a network prefix, in matrix form.

Columns are the input ``x``, the pre-activations ``z`` of every encoded layer, the
post-activations ``h`` of unstable units and one binary ``d`` per unstable unit.
Stable units get no binary: an active unit's output *is* its ``z`` column, an
inactive unit's output is the constant 0. For an unstable unit with bounds l < 0 < u:

    h >= z,  h >= 0,  h <= z - l (1 - d),  h <= u d,  d in {0, 1}.

Every back-end (highspy, Pyomo, the LP/MPS writers) reads this one object, so they
all solve the same model.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the MILP layer reads leo's types but must not import leo at load time
    from leo.bounds import LayerBounds
    from leo.domain import Box
    from leo.network import Network


#: Weights smaller than this are left out of the MILP rows, which are widened by the
#: range of the dropped terms over the column bounds instead (a sound relaxation). l1 training leaves most
#: weights below 1e-6 (down to 1e-14); kept in the rows they stall HiGHS's simplex at the
#: root (a 3x100 unit: no node in 600 s; with 1e-6 it is proven in ~35 s).
DROP_TOL = 1e-6


class UnitState(enum.Enum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    UNSTABLE = "unstable"


@dataclass(frozen=True)
class Formulation:
    """min c^T v  s.t.  row_lower <= A v <= row_upper,  col_lower <= v <= col_upper."""

    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray  # bool per column
    names: tuple[str, ...]
    x_cols: np.ndarray
    z_cols: tuple[np.ndarray, ...]  # one array per encoded layer
    out_cols: np.ndarray | None = None  # the network's outputs, when encoded
    #: one row per binary-encoded ReLU: its z, h and d columns and the row defining z
    #: (z - sum w h_prev in [row_lower, row_upper]); read by the cut separator
    relus: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4), dtype=int))

    @property
    def num_cols(self) -> int:
        return int(self.col_lower.size)

    @property
    def num_binaries(self) -> int:
        return int(self.integer.sum())

    def objective(self, layer: int, unit: int, sign: float) -> np.ndarray:
        """Cost vector for minimising ``sign * z[layer][unit]``."""
        c = np.zeros(self.num_cols)
        c[self.z_cols[layer][unit]] = sign
        return c


class Builder:
    def __init__(self) -> None:
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.integer: list[bool] = []
        self.names: list[str] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.z_row: dict[int, int] = {}  # z column -> the row that defines it
        self.relus: list[tuple[int, int, int, int]] = []

    def add_cols(self, lo: np.ndarray, hi: np.ndarray, prefix: str, integer: bool = False) -> np.ndarray:
        start = len(self.lo)
        self.lo.extend(np.asarray(lo, dtype=float).tolist())
        self.hi.extend(np.asarray(hi, dtype=float).tolist())
        self.integer.extend([integer] * len(lo))
        self.names.extend(f"{prefix}_{i}" for i in range(len(lo)))
        return np.arange(start, start + len(lo))

    def add_col(self, lo: float, hi: float, name: str, integer: bool = False) -> int:
        self.lo.append(float(lo))
        self.hi.append(float(hi))
        self.integer.append(integer)
        self.names.append(name)
        return len(self.lo) - 1

    def add_row(self, cols: Sequence[int], vals: Sequence[float], lo: float, hi: float) -> None:
        r = len(self.row_lo)
        self.rows.extend([r] * len(cols))
        self.cols.extend(cols)
        self.vals.extend(vals)
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def add_rows(self, matrix: sp.coo_matrix, lo: np.ndarray, hi: np.ndarray) -> None:
        r = len(self.row_lo)
        self.rows.extend((matrix.row + r).tolist())
        self.cols.extend(matrix.col.tolist())
        self.vals.extend(matrix.data.tolist())
        self.row_lo.extend(np.asarray(lo, dtype=float).tolist())
        self.row_hi.extend(np.asarray(hi, dtype=float).tolist())

    def build(self, x_cols: np.ndarray, z_cols: list[np.ndarray], out_cols: np.ndarray | None = None) -> Formulation:
        n = len(self.lo)
        a = sp.csr_matrix((self.vals, (self.rows, self.cols)), shape=(len(self.row_lo), n))
        return Formulation(
            matrix=a, row_lower=np.array(self.row_lo), row_upper=np.array(self.row_hi),
            col_lower=np.array(self.lo), col_upper=np.array(self.hi),
            integer=np.array(self.integer, dtype=bool), names=tuple(self.names),
            x_cols=x_cols, z_cols=tuple(z_cols), out_cols=out_cols,
            relus=np.array(self.relus, dtype=int).reshape(-1, 4),
        )


def build_prefix(
    network: Network,
    box: Box,
    bounds: Sequence[LayerBounds],
    states: Sequence[Sequence[UnitState]],
    upto: int,
    with_output: bool = False,
) -> Formulation:
    """Encode layers ``0..upto`` (0-based). Layers before ``upto`` use ``states``
    (one per unit); layer ``upto`` contributes its ``z`` columns, the targets, and
    with ``with_output`` also its activation (``out_cols``; a constant-zero output
    gets a column fixed at 0)."""
    b = Builder()
    x_cols = b.add_cols(box.lower, box.upper, "x")
    z_cols, _, out_cols = encode(b, network, bounds, states, x_cols, upto, with_output)
    return b.build(x_cols, z_cols, out_cols)


def encode(
    b: Builder,
    network: Network,
    bounds: Sequence[LayerBounds],
    states: Sequence[Sequence[UnitState]],
    x_cols: np.ndarray,
    upto: int,
    with_output: bool = False,
    shared: dict[int, np.ndarray] | None = None,
    prefix: str = "",
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray | None]:
    """Add a network's layers ``0..upto`` to a builder, over the input columns ``x_cols``.

    ``shared[k][j] >= -1`` makes unit ``j`` of layer ``k`` use an existing column as its
    output (-1: the constant 0) instead of its own activation encoding: used to encode a
    second network whose units are proven equal to units of the first. Returns the z
    columns per layer, the output columns per source (-1 for a constant zero), and the
    network's output columns when ``with_output``.
    """
    outputs: list[np.ndarray] = [x_cols]
    z_cols: list[np.ndarray] = []
    for k in range(upto + 1):
        layer = network.layers[k]
        lb = bounds[k]
        zc = b.add_cols(lb.lower, lb.upper, f"{prefix}z{k + 1}")
        z_cols.append(zc)
        # z - sum_s W_s h_s = bias
        rows, cols, vals = [np.arange(layer.width)], [zc], [np.ones(layer.width)]
        low = np.zeros(layer.width)  # range of the dropped terms, per row
        high = np.zeros(layer.width)
        col_lo, col_hi = np.array(b.lo), np.array(b.hi)
        for s, w in layer.weights.items():
            src = outputs[s]
            keep = src >= 0
            wk = sp.coo_matrix(w[:, keep])
            c = src[keep][wk.col]
            tiny = np.abs(wk.data) < DROP_TOL
            # a dropped term w * h lies between w * lo(h) and w * hi(h): widen the row by that range
            wt, ct = wk.data[tiny], c[tiny]
            np.add.at(low, wk.row[tiny], np.minimum(wt * col_lo[ct], wt * col_hi[ct]))
            np.add.at(high, wk.row[tiny], np.maximum(wt * col_lo[ct], wt * col_hi[ct]))
            rows.append(wk.row[~tiny])
            cols.append(c[~tiny])
            vals.append(-wk.data[~tiny])
        coo = sp.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(layer.width, len(b.lo))
        )
        # z - kept terms = bias + dropped terms; outward rounding where something was dropped
        pad = 1e-6 * (np.abs(low) + np.abs(high)) + np.where((low != 0) | (high != 0), 1e-15, 0.0)
        b.z_row.update(zip(zc.tolist(), range(len(b.row_lo), len(b.row_lo) + layer.width)))
        b.add_rows(coo, layer.bias + low - pad, layer.bias + high + pad)
        if k == upto:
            break
        share = shared.get(k) if shared else None
        st = list(states[k]) if layer.relu else []
        if share is not None and layer.relu:  # shared units need no encoding of their own
            st = [UnitState.INACTIVE if share[j] >= -1 else state for j, state in enumerate(st)]
        out = _encode_relu(b, k, zc, lb, st, prefix) if layer.relu else zc.copy()
        if share is not None:
            out = np.where(share >= -1, share, out)
        outputs.append(out)
    out_cols = None
    if with_output:
        last = network.layers[upto]
        if last.relu:
            st = states[upto] if len(states) > upto and states[upto] else [UnitState.UNSTABLE] * last.width
            out = _encode_relu(b, upto, z_cols[-1], bounds[upto], st, prefix)
            zero = out < 0
            out[zero] = b.add_cols(np.zeros(int(zero.sum())), np.zeros(int(zero.sum())), f"{prefix}zero{upto + 1}")
            out_cols = out
        else:
            out_cols = z_cols[-1]
    return z_cols, outputs, out_cols


def _encode_relu(b: Builder, k: int, zc: np.ndarray, lb: LayerBounds, states: Sequence[UnitState],
                 prefix: str = "") -> np.ndarray:
    """Columns holding relu(z) per unit (-1 for the constant zero); binaries only where unstable."""
    out = np.full(zc.size, -1)
    for j, state in enumerate(states):
        l, u = float(lb.lower[j]), float(lb.upper[j])
        if state is UnitState.INACTIVE or u <= 0:
            continue
        if state is UnitState.ACTIVE or l >= 0:
            out[j] = zc[j]
            continue
        h = b.add_col(0.0, u, f"{prefix}h{k + 1}_{j}")
        d = b.add_col(0.0, 1.0, f"{prefix}d{k + 1}_{j}", integer=True)
        z = int(zc[j])
        b.add_row([z, h], [1.0, -1.0], -np.inf, 0.0)  # h >= z
        b.add_row([h, z, d], [1.0, -1.0, -l], -np.inf, -l)  # h <= z - l (1 - d)
        b.add_row([h, d], [1.0, -u], -np.inf, 0.0)  # h <= u d
        b.relus.append((z, h, d, b.z_row[z]))
        out[j] = h
    return out


def assignment(network: Network, formulation: Formulation, x: np.ndarray) -> np.ndarray:
    """A full column vector for input ``x`` (used for warm starts and tests)."""
    v = np.zeros(formulation.num_cols)
    v[formulation.x_cols] = x
    zs = network.pre_activations(x[None, :])
    for k, cols in enumerate(formulation.z_cols):
        v[cols] = zs[k][0]
    for i, name in enumerate(formulation.names):
        if name[0] in "hd" and "_" in name:
            layer, unit = name[1:].split("_")
            z = zs[int(layer) - 1][0][int(unit)]
            v[i] = max(z, 0.0) if name[0] == "h" else float(z > 0)
    return v


def with_columns(
    formulation: Formulation,
    lower: np.ndarray,
    upper: np.ndarray,
    integer: np.ndarray,
    names: Sequence[str],
    rows: sp.coo_matrix,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
) -> tuple[Formulation, np.ndarray]:
    """A copy with extra columns and rows appended; ``rows`` spans old and new columns."""
    f = formulation
    n_new = len(lower)
    total = f.num_cols + n_new
    old = f.matrix.tocoo()
    a = sp.vstack([
        sp.coo_matrix((old.data, (old.row, old.col)), shape=(old.shape[0], total)),
        sp.coo_matrix((rows.data, (rows.row, rows.col)), shape=(rows.shape[0], total)),
    ]).tocsr()
    joint = Formulation(
        matrix=a,
        row_lower=np.concatenate([f.row_lower, row_lower]),
        row_upper=np.concatenate([f.row_upper, row_upper]),
        col_lower=np.concatenate([f.col_lower, lower]),
        col_upper=np.concatenate([f.col_upper, upper]),
        integer=np.concatenate([f.integer, np.asarray(integer, dtype=bool)]),
        names=f.names + tuple(names),
        x_cols=f.x_cols, z_cols=f.z_cols, out_cols=f.out_cols, relus=f.relus,
    )
    return joint, np.arange(f.num_cols, total)
