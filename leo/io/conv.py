"""Convolutions and pools as matrices on flat (C, *spatial) vectors, row-major.

The ONNX reader (``leo.io.onnx``) composes every linear op into an affine map
per sample, so a Conv or an AveragePool becomes one matrix from its input's flat index
to its output's, and a MaxPool becomes the window's candidates (selection matrices)
that the reader combines with ReLUs, max(a, b) = a + relu(b - a). The matrices are
built with index arithmetic (no sampling of the op), then densified: ``Layer.weights``
stays dense for every reader, while the hot paths use cached views of it (scipy.sparse in
``leo.bounds.propagate``; ``conv_kernel``'s read-back kernel, checked entry for entry, for torch
forward passes in ``leo.search.witnesses``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from leo.core.network import Layer

#: The largest dense matrix a conv or pool is lowered to (entries; 8 bytes each): a
#: CIFAR-sized first conv (16 x 32 x 32 outputs of 3 x 32 x 32 inputs) is 5e7.
MAX_DENSE = 2 * 10**8


class TooLarge(ValueError):
    """The op's dense matrix would not fit: leo lowers convolutions to dense matrices."""


def check_size(rows: int, cols: int) -> None:
    if rows * cols > MAX_DENSE:
        raise TooLarge(f"its dense matrix would be {rows} x {cols} ({rows * cols * 8 / 2**30:.1f} GiB); "
                       "leo lowers convolutions to dense matrices and does not read networks this large yet")


@dataclass(frozen=True)
class Window:
    """Sliding-window geometry over the spatial dimensions of one channel."""

    in_spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    dilations: tuple[int, ...]

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(
            (n + b + e - d * (k - 1) - 1) // s + 1
            for n, k, s, b, e, d in zip(self.in_spatial, self.kernel, self.strides, self.pads_begin,
                                        self.pads_end, self.dilations)
        )

    def taps(self) -> tuple[np.ndarray, np.ndarray]:
        """``(index, valid)``, both (K, O): the flat spatial input index read by kernel
        offset k at output position o, and whether it lies inside the input (not padding)."""
        out = self.out_spatial
        grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
        index, valid = [], []
        for offset in itertools.product(*[range(k) for k in self.kernel]):
            pos = [g.ravel() * s - b + k * d for g, s, b, k, d in
                   zip(grids, self.strides, self.pads_begin, offset, self.dilations)]
            ok = np.all([(p >= 0) & (p < n) for p, n in zip(pos, self.in_spatial)], axis=0)
            clipped = [np.clip(p, 0, n - 1) for p, n in zip(pos, self.in_spatial)]
            index.append(np.ravel_multi_index(clipped, self.in_spatial))
            valid.append(ok)
        return np.array(index, dtype=np.int64), np.array(valid, dtype=bool)


def same_pads(in_spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
              dilations: tuple[int, ...], upper: bool) -> tuple[list[int], list[int]]:
    """ONNX auto_pad SAME_UPPER / SAME_LOWER: the output has ceil(in / stride) positions."""
    begin, end = [], []
    for n, k, s, d in zip(in_spatial, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        begin.append(small if upper else total - small)
        end.append(total - small if upper else small)
    return begin, end


def conv_matrix(weight: np.ndarray, channels: int, window: Window, group: int) -> np.ndarray:
    """The (M*O, C*I) matrix of a grouped convolution with ``weight`` of shape (M, C/group, *kernel)."""
    m, cg = weight.shape[0], weight.shape[1]
    check_size(m * int(np.prod(window.out_spatial)), channels * int(np.prod(window.in_spatial)))
    index, valid = window.taps()  # (K, O)
    n_in = int(np.prod(window.in_spatial))
    n_out = index.shape[1]
    oc = np.arange(m)
    ic = (oc // (m // group))[:, None] * cg + np.arange(cg)[None, :]  # (M, Cg) input channel of each tap
    rows = np.broadcast_to(oc[:, None, None, None] * n_out + np.arange(n_out), (m, cg, *index.shape))
    cols = ic[:, :, None, None] * n_in + index[None, None]
    vals = np.broadcast_to(weight.reshape(m, cg, -1, 1), rows.shape)
    mask = np.broadcast_to(valid[None, None], rows.shape)
    matrix = scipy.sparse.coo_matrix((vals[mask], (rows[mask], cols[mask])), shape=(m * n_out, channels * n_in))
    return matrix.toarray()


def conv_transpose_matrix(weight: np.ndarray, out_channels: int, window: Window, group: int) -> np.ndarray:
    """The (M*O, C*I) matrix of a transposed convolution with ``weight`` of shape (C, M/group,
    *kernel): the transpose of the convolution from its (M, *O) output to its (C, *I) input
    with the same weight and geometry (``window`` slides over the output, O = in_spatial)."""
    return conv_matrix(weight, out_channels, window, group).T


def conv_kernel(matrix: np.ndarray, structure: Mapping[str, Any]) -> np.ndarray | None:
    """The (M, C/group, *kernel) weight whose ``conv_matrix`` is exactly ``matrix``, read back
    from the entries of a layer lowered from the Conv that ``structure`` describes; None when
    ``matrix`` is not exactly that conv (composed with other linear ops, say). Lets the
    forward passes run the op as a convolution instead of a product with its matrix."""
    try:
        kernel = tuple(int(k) for k in structure["kernel"])
        in_shape = tuple(int(d) for d in structure["in_shape"])
        out_shape = tuple(int(d) for d in structure["out_shape"])
        pads = [int(p) for p in structure["pads"]]
        window = Window(in_shape[1:], kernel, tuple(int(v) for v in structure["strides"]), tuple(pads[:len(kernel)]),
                        tuple(pads[len(kernel):]), tuple(int(v) for v in structure["dilations"]))
        group = int(structure["group"])
    except (KeyError, TypeError, ValueError):
        return None
    m, channels = out_shape[0], in_shape[0]
    n_in, n_out = int(np.prod(in_shape[1:])), int(np.prod(out_shape[1:]))
    if (structure.get("op") != "Conv" or group < 1 or channels % group or m % group
            or matrix.shape != (m * n_out, channels * n_in) or window.out_spatial != out_shape[1:]):
        return None
    index, valid = window.taps()  # (K, O)
    pos = valid.argmax(axis=1)  # an output position where each tap reads the input
    cg = channels // group
    ic = (np.arange(m) // (m // group))[:, None] * cg + np.arange(cg)[None, :]  # (M, Cg)
    rows = np.arange(m)[:, None, None] * n_out + pos[None, None, :]
    cols = ic[:, :, None] * n_in + index[np.arange(index.shape[0]), pos][None, None, :]
    weight = np.where(valid.any(axis=1)[None, None, :], matrix[rows, cols], 0.0).reshape(m, cg, *kernel)
    if not np.array_equal(conv_matrix(weight, channels, window, group), matrix):
        return None
    return weight


def conv_kernels(layer: Layer) -> dict[int, np.ndarray] | None:
    """Per source, the kernel of a layer that is a conv of each of its sources (see
    ``conv_kernel``); None when any is not, or the layer records no structure. The writers
    (``leo.io.onnx_export``, ``leo.io.torch_io``) write such a layer as convolutions."""
    if layer.structure is None:
        return None
    if layer.shape is None or tuple(layer.structure.get("out_shape", ())) != tuple(layer.shape):
        return None  # the writers shape the conv's output by ``layer.shape``
    out = {}
    for s, w in layer.weights.items():
        kernel = conv_kernel(w, layer.structure)
        if kernel is None:
            return None
        out[s] = kernel
    return out


#: The keys that fix a conv's geometry (a layer's ``structure`` also names its ONNX node).
_GEOMETRY = ("kernel", "strides", "pads", "dilations", "group", "in_shape", "out_shape")


def conv_geometries(layers: tuple[Layer, ...]) -> list[Mapping[str, Any]]:
    """The distinct conv geometries the layers record, for ``source_kernel``."""
    out: dict[str, Mapping[str, Any]] = {}
    for layer in layers:
        st = layer.structure
        if st is not None and st.get("op") == "Conv" and all(key in st for key in _GEOMETRY):
            out.setdefault(repr([st[key] for key in _GEOMETRY]), {"op": "Conv", **{key: st[key] for key in _GEOMETRY}})
    return list(out.values())


def source_kernel(matrix: np.ndarray,
                  geometries: list[Mapping[str, Any]]) -> tuple[np.ndarray, Mapping[str, Any]] | None:
    """A kernel and geometry whose conv is exactly ``matrix`` (checked entry for entry by
    ``conv_kernel``), for a weight that is a conv in a layer that is not all convs (a
    residual Add: the conv's output plus the block's input); None when none fits."""
    for st in geometries:
        kernel = conv_kernel(matrix, st)
        if kernel is not None:
            return kernel, st
    return None


def channel_bias(layer: Layer) -> np.ndarray | None:
    """The per-channel bias of a conv layer when its bias is constant within each channel."""
    if layer.shape is None or len(layer.shape) < 2:
        return None
    b = layer.bias.reshape(layer.shape[0], -1)
    return b[:, 0].copy() if np.array_equal(b, np.broadcast_to(b[:, :1], b.shape)) else None


def average_matrix(channels: int, window: Window, count_include_pad: bool) -> np.ndarray:
    """The (C*O, C*I) matrix of an average pool; the divisor counts padding only when asked."""
    check_size(channels * int(np.prod(window.out_spatial)), channels * int(np.prod(window.in_spatial)))
    index, valid = window.taps()
    count = np.full(index.shape[1], index.shape[0]) if count_include_pad else valid.sum(axis=0)
    weight = np.where(valid, 1.0 / np.maximum(count, 1)[None, :], 0.0)  # (K, O)
    n_in, n_out = int(np.prod(window.in_spatial)), index.shape[1]
    out = np.zeros((channels * n_out, channels * n_in))
    rows = np.broadcast_to(np.arange(n_out), index.shape)
    for c in range(channels):
        np.add.at(out, (c * n_out + rows, c * n_in + index), weight)
    return out


def max_candidates(channels: int, window: Window) -> list[np.ndarray]:
    """Selection matrices (C*O, C*I), one per kernel offset, whose elementwise max is the
    max pool. A tap in the padding selects the window's first valid tap instead (max(a, a) = a)."""
    check_size(channels * int(np.prod(window.out_spatial)), channels * int(np.prod(window.in_spatial)))
    index, valid = window.taps()
    if not valid.any(axis=0).all():
        raise ValueError("a pooling window lies entirely in the padding")
    first = index[valid.argmax(axis=0), np.arange(index.shape[1])]
    n_in, n_out = int(np.prod(window.in_spatial)), index.shape[1]
    out = []
    for k in range(index.shape[0]):
        pick = np.where(valid[k], index[k], first)
        sel = np.zeros((channels * n_out, channels * n_in))
        for c in range(channels):
            sel[c * n_out + np.arange(n_out), c * n_in + pick] = 1.0
        out.append(sel)
    return out


def distinct(candidates: list[np.ndarray]) -> list[np.ndarray]:
    """The candidates with exact duplicates dropped (a 1x1 pool, or padding-only taps)."""
    kept: list[np.ndarray] = []
    for c in candidates:
        if not any(np.array_equal(c, k) for k in kept):
            kept.append(c)
    return kept
