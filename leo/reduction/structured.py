"""The structured form (``--form structured``): whole channels out, Conv layers kept.

A conv layer (one whose ``Layer.structure`` rebuilds its weights exactly) loses the
output channels whose units are ALL proven stably inactive, and the layers reading it
lose those input channels; a channel with some live units stays whole (a Conv must stay
rectangular; its inactive units are zero on the box anyway). Dense layers are reduced
as LEO does (``leo.reduction.reduce``'s helpers). A layer whose remaining units are all stably
active is linear on the box: it is multiplied into the layers reading it when the
product is smaller, counted as written (a conv by its kernel), and stays a conv when a
conv rebuilds it exactly; otherwise it stays, without its ReLU.

Every structure kept is verified: ``conv_kernel`` reads a kernel back from the dense
matrix and requires the conv it defines to rebuild that matrix (to 1e-12 relative), so
an export as a Conv node is exact or does not happen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from leo.io.conv import Window
from leo.core.network import Layer, Network
from leo.reduction.reduce import Reduction, _delete_units, _final_relu, _fold_dependent, _Layer, _merge_linear, _readers
from leo.stability.report import ACTIVE, INACTIVE, StabilityReport

#: Largest |rebuilt - weight| accepted, relative to the largest |weight|.
KERNEL_TOL = 1e-12


# -- kernels back from matrices ---------------------------------------------------------

def _window(structure: Mapping[str, Any]) -> Window:
    kernel = tuple(int(k) for k in structure["kernel"])
    n = len(kernel)
    pads = [int(p) for p in structure["pads"]]
    return Window(tuple(int(d) for d in structure["in_shape"][1:]), kernel,
                  tuple(int(s) for s in structure["strides"]), tuple(pads[:n]), tuple(pads[n:]),
                  tuple(int(d) for d in structure["dilations"]))


def _taps(weight_shape: tuple[int, int], structure: Mapping[str, Any]) -> tuple[np.ndarray, ...] | None:
    """Row, column, kernel-entry index and validity of every tap of the conv, all (M, Cg, K, O);
    None when the structure's shapes do not fit the matrix."""
    try:
        window = _window(structure)
        channels, out_channels = int(structure["in_shape"][0]), int(structure["out_shape"][0])
        group = int(structure.get("group", 1))
        out_spatial = tuple(int(d) for d in structure["out_shape"][1:])
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if (structure.get("op") != "Conv" or group < 1 or channels % group or out_channels % group
            or out_channels == 0 or window.out_spatial != out_spatial or len(window.kernel) != len(out_spatial)):
        return None
    n_in, n_out = math.prod(window.in_spatial), math.prod(out_spatial)
    if weight_shape != (out_channels * n_out, channels * n_in):
        return None
    index, valid = window.taps()  # (K, O)
    cg = channels // group
    oc = np.arange(out_channels)
    ic = (oc // (out_channels // group))[:, None] * cg + np.arange(cg)[None, :]  # (M, Cg)
    rows = oc[:, None, None, None] * n_out + np.arange(n_out)[None, None, None, :]
    cols = ic[:, :, None, None] * n_in + index[None, None]
    entry = (np.arange(out_channels * cg * index.shape[0]).reshape(out_channels, cg, index.shape[0], 1))
    shape = (out_channels, cg, *index.shape)
    return (np.broadcast_to(rows, shape), np.broadcast_to(cols, shape), np.broadcast_to(entry, shape),
            np.broadcast_to(valid[None, None], shape))


def conv_kernel(weight: np.ndarray, structure: Mapping[str, Any] | None) -> np.ndarray | None:
    """The (M, C/group, *kernel) kernel whose conv (``structure``) is ``weight``, read from
    the taps; None unless that conv rebuilds ``weight`` exactly (1e-12 relative)."""
    if structure is None:
        return None
    taps = _taps(weight.shape, structure)
    if taps is None:
        return None
    rows, cols, entry, valid = taps
    m, cg, n_k = rows.shape[:3]
    values = np.zeros(m * cg * n_k)
    first = valid.argmax(axis=3)  # an output position where each tap lies inside the input
    mi, ci, ki = np.indices((m, cg, n_k))
    seen = valid[mi, ci, ki, first]
    values[entry[mi, ci, ki, 0][seen]] = weight[rows[mi, ci, ki, first][seen], cols[mi, ci, ki, first][seen]]
    r, c = rows[valid], cols[valid]  # distinct (row, col) pairs: a tap reads one input per position
    scale = float(np.abs(weight).max(initial=0.0))
    if np.abs(weight[r, c] - values[entry[valid]]).max(initial=0.0) > KERNEL_TOL * scale:
        return None
    hits = np.count_nonzero(weight[r, c])
    if np.count_nonzero(weight) != hits:  # an entry no tap reaches is not zero
        residual = np.array(weight, dtype=np.float64, copy=True)
        residual[r, c] = 0.0
        if float(np.abs(residual).max()) > KERNEL_TOL * scale:
            return None
    return values.reshape(m, cg, *[int(k) for k in structure["kernel"]])


def conv_kernels(layer: Layer) -> dict[int, np.ndarray] | None:
    """Per source, the kernel of a layer that is a conv of each of its sources (see
    ``conv_kernel``); None when any is not, or the layer records no structure."""
    if layer.structure is None:
        return None
    if layer.shape is None or tuple(layer.structure.get("out_shape", ())) != tuple(layer.shape):
        return None  # exporters shape the conv's output by ``layer.shape``
    out = {}
    for s, w in layer.weights.items():
        kernel = conv_kernel(w, layer.structure)
        if kernel is None:
            return None
        out[s] = kernel
    return out


def channel_bias(layer: Layer) -> np.ndarray | None:
    """The per-channel bias of a conv layer when its bias is constant within each channel."""
    if layer.shape is None or len(layer.shape) < 2:
        return None
    b = layer.bias.reshape(layer.shape[0], -1)
    return b[:, 0].copy() if np.array_equal(b, np.broadcast_to(b[:, :1], b.shape)) else None


# -- the reduction ------------------------------------------------------------------------

@dataclass
class _SLayer(_Layer):
    shape: tuple[int, ...] | None = None
    structure: dict[str, Any] | None = None


def _kernel_ok(weights: Mapping[int, np.ndarray], structure: dict[str, Any] | None) -> bool:
    return structure is not None and all(conv_kernel(w, structure) is not None for w in weights.values())


def _params(weights: Mapping[int, np.ndarray], bias: np.ndarray, structure: dict[str, Any] | None) -> int:
    """Parameters as written: a conv by its kernels (and a per-channel bias when it is one)."""
    if structure is None:
        return int(sum(w.size for w in weights.values()) + bias.size)
    m = int(structure["out_shape"][0])
    kernel = m * (int(structure["in_shape"][0]) // int(structure.get("group", 1))) * math.prod(structure["kernel"])
    b = bias.reshape(m, -1)
    per_channel = np.array_equal(b, np.broadcast_to(b[:, :1], b.shape))
    return int(kernel * len(weights) + (m if per_channel else bias.size))


def _with_channels(structure: dict[str, Any], key: str, channels: int) -> dict[str, Any]:
    shape = list(structure[key])
    return {**structure, key: [channels, *shape[1:]]}


def _drop_channels(layers: list[_SLayer], k: int, channels: list[int]) -> bool:
    """Delete output channels (positions) of conv layer k and the readers' input channels,
    when every structure involved still rebuilds its weights afterwards; else change nothing."""
    ly = layers[k]
    c_all, per = ly.shape[0], ly.bias.size // ly.shape[0]
    units = np.concatenate([np.arange(c * per, (c + 1) * per) for c in channels])
    keep = np.setdiff1d(np.arange(ly.bias.size), units)
    left = c_all - len(channels)
    structure = _with_channels(ly.structure, "out_shape", left)
    if not _kernel_ok({s: w[keep] for s, w in ly.weights.items()}, structure):
        return False
    reader_structures = []
    for reader in _readers(layers, k + 1):
        new = None
        if reader.structure is not None:
            new = _with_channels(reader.structure, "in_shape", left)
            weights = {s: (w[:, keep] if s == k + 1 else w) for s, w in reader.weights.items()}
            if not _kernel_ok(weights, new):
                return False
        reader_structures.append((reader, new))
    _delete_units(layers, k, units)
    ly.structure, ly.shape = structure, (left, *ly.shape[1:])
    for reader, new in reader_structures:
        reader.structure = new
    return True


def _dead_channels(layers: list[_SLayer], k: int, spatial: int) -> list[int]:
    """Delete the wholly inactive channels of conv layer k (all at once, else one by one);
    their original channel indices."""
    ly = layers[k]
    per = ly.bias.size // ly.shape[0]
    dead = [c for c in range(ly.shape[0]) if all(s == INACTIVE for s in ly.status[c * per:(c + 1) * per])]
    if not dead:
        return []
    original = {c: ly.origin[c * per] // spatial for c in range(ly.shape[0])}
    if _drop_channels(layers, k, dead):
        return [original[c] for c in dead]
    done = []
    for c in sorted(dead, reverse=True):  # from the end, so earlier positions stay valid
        if _drop_channels(layers, k, [c]):
            done.append(original[c])
    return sorted(done)


def _composed(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    """Conv structures that may equal ``second`` after ``first`` (checked by the caller)."""
    s1, s2 = first["strides"], second["strides"]
    d1, d2 = first["dilations"], second["dilations"]
    k1, k2 = first["kernel"], second["kernel"]
    n = len(k1)
    if len(k2) != n or list(first["out_shape"]) != list(second["in_shape"]):
        return []
    in_spatial, target = first["in_shape"][1:], second["out_shape"][1:]
    strides, dilations, kernel, begin, end = [], [], [], [], []
    for i in range(n):
        step = d2[i] * s1[i]
        dil = math.gcd(d1[i], step)
        size = ((k2[i] - 1) * step + (k1[i] - 1) * d1[i]) // dil + 1
        stride = s1[i] * s2[i]
        pb = second["pads"][i] * s1[i] + first["pads"][i]
        pe = max(0, (target[i] - 1) * stride + dil * (size - 1) + 1 - in_spatial[i] - pb)
        if (in_spatial[i] + pb + pe - dil * (size - 1) - 1) // stride + 1 != target[i]:
            return []
        strides.append(stride), dilations.append(dil), kernel.append(size), begin.append(pb), end.append(pe)
    base = {"op": "Conv", "kernel": kernel, "strides": strides, "pads": begin + end, "dilations": dilations,
            "in_shape": list(first["in_shape"]), "out_shape": list(second["out_shape"])}
    groups = [1] if first.get("group", 1) != second.get("group", 1) or first.get("group", 1) == 1 \
        else [int(first["group"]), 1]
    return [{**base, "group": g} for g in groups]


def _merge_if_smaller(layers: list[_SLayer], k: int) -> bool:
    """Multiply linear layer k into its readers when that is smaller as written (always for
    dense layers read only by dense ones, as LEO does); the readers stay convs where a
    conv rebuilds the product."""
    ly = layers[k]
    plans = []
    for reader in _readers(layers, k + 1):
        w = reader.weights[k + 1]
        weights = {s: v for s, v in reader.weights.items() if s != k + 1}
        for s, ws in ly.weights.items():
            weights[s] = weights[s] + w @ ws if s in weights else w @ ws
        bias = reader.bias + w @ ly.bias
        structure = None
        if reader.structure is not None and ly.structure is not None:
            structure = next((c for c in _composed(ly.structure, reader.structure) if _kernel_ok(weights, c)), None)
        plans.append((reader, weights, bias, structure))
    structured = ly.structure is not None or any(r.structure is not None for r, *_ in plans)
    if structured and ly.bias.size:
        before = _params(ly.weights, ly.bias, ly.structure) + sum(
            _params(r.weights, r.bias, r.structure) for r, *_ in plans)
        after = sum(_params(w, b, s) for _, w, b, s in plans)
        if after >= before:
            return False
    _merge_linear(layers, k)
    for reader, _, _, structure in plans:
        reader.structure = structure
    return True


def _spoil_readers(layers: list[_SLayer], k: int) -> None:
    """Layer k's units changed one by one: its own and its readers' conv structure is gone."""
    layers[k].shape, layers[k].structure = None, None
    for reader in _readers(layers, k + 1):
        reader.structure = None


def _start(network: Network, report: StabilityReport) -> list[_SLayer]:
    layers = []
    for i, layer in enumerate(network.layers, start=1):
        lr = report.layer(i) if layer.relu else None
        if lr is None and layer.relu:
            raise ValueError(f"the report has no entry for ReLU layer {i}")
        status = [p.verdict for p in lr.proofs] if lr else [ACTIVE] * layer.width
        structure = dict(layer.structure) if conv_kernels(layer) is not None else None
        layers.append(_SLayer({s: w.copy() for s, w in layer.weights.items()}, layer.bias.copy(), layer.relu,
                              status, list(range(layer.width)), layer.shape, structure))
    return layers


def _final_layer(ly: _SLayer) -> Layer:
    shape = ly.shape if ly.shape is not None and math.prod(ly.shape) == ly.bias.size else None
    layer = Layer(ly.weights, ly.bias, ly.relu, shape, ly.structure)
    if ly.structure is not None and conv_kernels(layer) is None:  # a safeguard: export only exact convs
        layer = Layer(ly.weights, ly.bias, ly.relu, shape, None)
    return layer


def _is_conv_relu(ly: _SLayer) -> bool:
    """A conv ReLU layer with some unit not stably inactive (one with none is deleted whole)."""
    return ly.relu and ly.structure is not None and any(s != INACTIVE for s in ly.status)


def reduce_structured(network: Network, report: StabilityReport) -> Reduction:
    """The structured reduction of ``network`` (``report`` must come from analysing it)."""
    layers = _start(network, report)
    spatial = {i: (math.prod(ly.shape[1:]) if ly.shape else 1) for i, ly in enumerate(network.layers, start=1)}
    n_orig = len(layers)
    ids = list(range(1, n_orig + 1))
    removed: dict[int, list[int]] = {i: [] for i in ids}
    folded: dict[int, list[int]] = {i: [] for i in ids}
    dead: dict[int, list[int]] = {i: [] for i in ids}
    merged, linear, folds = [], [], []
    worst = 0.0
    # dead channels first, while every conv keeps its structure: merging a linear layer into
    # a conv (a MaxPool's output into the conv reading it) can leave it dense, and its dead
    # channels would then go unit by unit, unnamed, and stay in the user's pruned module
    for k, ly in enumerate(layers[:-1]):
        if _is_conv_relu(ly):
            channels = _dead_channels(layers, k, spatial[ids[k]])
            dead[ids[k]] += channels
            removed[ids[k]] += [c * spatial[ids[k]] + j for c in channels for j in range(spatial[ids[k]])]
    k = 0
    while k < len(layers) - 1:
        ly = layers[k]
        if _is_conv_relu(ly):
            pass  # its dead channels are gone; a channel with live units stays whole
        elif ly.relu:
            inactive = np.array([i for i, s in enumerate(ly.status) if s == INACTIVE], dtype=int)
            removed[ids[k]] += [ly.origin[i] for i in inactive]
            if inactive.size:
                _spoil_readers(layers, k)
            _delete_units(layers, k, inactive)
            fold = _fold_dependent(layers, k, ids[k])
            if fold is not None:
                _spoil_readers(layers, k)
                folds.append(fold)
                folded[ids[k]] += fold.units
                worst = max(worst, fold.residual)
        if all(s == ACTIVE for s in ly.status) or not ly.relu:
            if _merge_if_smaller(layers, k):
                merged.append(ids[k])
                del ids[k]
                continue
            if ly.relu:
                ly.relu = False
                linear.append(ids[k])
        k += 1
    _final_relu(layers[-1])
    net = Network(network.input_dim, tuple(_final_layer(ly) for ly in layers), dict(network.metadata))
    per_layer = range(1, n_orig + 1)
    return Reduction(
        network=net,
        removed_inactive=tuple(tuple(sorted(removed[i])) for i in per_layer),
        folded_active=tuple(tuple(sorted(folded[i])) for i in per_layer),
        merged_layers=tuple(merged),
        max_fold_residual=worst,
        kept=tuple(tuple(ly.origin) for ly in layers),
        folds=tuple(folds),
        bypassed_active=tuple(() for _ in per_layer),
        dead_channels=tuple(tuple(sorted(dead[i])) for i in per_layer),
        linear_layers=tuple(linear),
        form="structured",
    )


def written_parameters(network: Network) -> int:
    """Parameters as the structured form writes them: a conv layer by its kernels (and its
    bias per channel when it is one), other layers by their dense weights."""
    total = 0
    for layer in network.layers:
        structure = dict(layer.structure) if conv_kernels(layer) is not None else None
        total += _params(layer.weights, layer.bias, structure)
    return total


def describe(reduction: Reduction, original: Network | None = None) -> str:
    """The compress report's line: channels removed per layer, layers merged or made linear,
    and (given the original) parameters as written."""
    per = [(k, chans) for k, chans in enumerate(reduction.dead_channels, start=1) if chans]
    total = sum(len(c) for _, c in per)
    text = f"structured: removed {total} channel{'' if total == 1 else 's'}"
    if per:
        text += " (" + "; ".join(f"layer {k}: {', '.join(str(c) for c in chans)}" for k, chans in per) + ")"
    merged = reduction.merged_layers
    text += f", merged {len(merged)} linear layer{'' if len(merged) == 1 else 's'} into the next" + (
        f" (layer {', '.join(str(k) for k in merged)})" if merged else "")
    if reduction.linear_layers:
        text += (f", {len(reduction.linear_layers)} kept without ReLU (layer "
                 f"{', '.join(str(k) for k in reduction.linear_layers)}: all units stably active)")
    if original is not None:
        text += (f"; parameters as written (conv layers by their kernels) {written_parameters(original)} -> "
                 f"{written_parameters(reduction.network)}")
    return text


__all__ = ["channel_bias", "conv_kernel", "conv_kernels", "describe", "reduce_structured", "written_parameters"]
