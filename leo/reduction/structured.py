"""The structured form (``--form structured``): whole channels out, Conv layers kept.

A conv layer (one whose ``Layer.structure`` rebuilds its weights exactly) loses the
output channels whose units are ALL proven stably inactive, and the layers reading it
lose those input channels; a channel with some live units stays whole (a Conv must stay
rectangular; its inactive units are zero on the box anyway). Dense layers are reduced
as LEO does. A layer whose remaining units are all stably active is linear on the box:
it is multiplied into the layers reading it when the product is smaller, counted as
written (a conv by its kernel), and stays a conv when a conv rebuilds it exactly;
otherwise it stays, without its ReLU. This is ``STRUCTURED``, a policy of the one
reduction loop (``leo.reduction.loop``), so its edits are logged steps like every form's.

Every structure kept is verified by the writers' own test, ``leo.io.conv.conv_kernel``: it
reads a kernel back from the dense matrix and requires the conv it defines to rebuild that
matrix exactly, entry for entry. No tolerance: a layer this form keeps as a conv is then
always written as a Conv node, and the Conv computes the very matrix that was certified
(a kernel accepted up to a tolerance would be written as a matrix, or would write a
slightly different function than the one the audit replays).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from leo.core.choices import Form
from leo.core.network import Layer, Network
from leo.core.verdicts import Verdict
from leo.io.conv import channel_bias, conv_kernel, conv_kernels
from leo.reduction.editable import EditLayer
from leo.reduction.loop import Policy, Run, delete_inactive, fold_dependent, merge, run_policy
from leo.reduction.steps import DropChannels, DropRelu, Reduction
from leo.stability.report import StabilityReport

INACTIVE = Verdict.INACTIVE

# -- the reduction ------------------------------------------------------------------------

def _kernel_ok(weights: Mapping[int, np.ndarray], structure: dict[str, Any] | None) -> bool:
    return structure is not None and all(conv_kernel(w, structure) is not None for w in weights.values())


def _params(weights: Mapping[int, np.ndarray], bias: np.ndarray, structure: Mapping[str, Any] | None) -> int:
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


def _drop_channels(run: Run, k: int, channels: list[int], spatial: int) -> bool:
    """Delete output channels (positions) of conv layer k and the readers' input channels,
    when every structure involved still rebuilds its weights afterwards; else change nothing."""
    ed = run.ed
    ly = ed.layer(k)
    c_all, per = ly.shape[0], ly.bias.size // ly.shape[0]
    units = np.concatenate([np.arange(c * per, (c + 1) * per) for c in channels])
    keep = np.setdiff1d(np.arange(ly.bias.size), units)
    left = c_all - len(channels)
    structure = _with_channels(ly.structure, "out_shape", left)
    if not _kernel_ok({s: w[keep] for s, w in ly.weights.items()}, structure):
        return False
    reader_structures = []
    for reader in (ed.layer(r) for r in ed.readers(k)):
        new = None
        if reader.structure is not None:
            new = _with_channels(reader.structure, "in_shape", left)
            weights = {s: (w[:, keep] if s == k else w) for s, w in reader.weights.items()}
            if not _kernel_ok(weights, new):
                return False
        reader_structures.append((reader, new))
    original = tuple(sorted(ly.origin[c * per] // spatial for c in channels))
    run.apply(DropChannels(ly.name, original, spatial))
    ly.structure, ly.shape = structure, (left, *ly.shape[1:])
    for reader, new in reader_structures:
        reader.structure = new
    return True


def _dead_channels(run: Run, k: int) -> None:
    """Delete the wholly inactive channels of conv layer k (all at once, else one by one)."""
    ly = run.ed.layer(k)
    spatial = math.prod(run.original.layers[ly.name - 1].shape[1:])
    per = ly.bias.size // ly.shape[0]
    dead = [c for c in range(ly.shape[0]) if all(s == INACTIVE for s in ly.state[c * per:(c + 1) * per])]
    if not dead or _drop_channels(run, k, dead, spatial):
        return
    for c in sorted(dead, reverse=True):  # from the end, so earlier positions stay valid
        _drop_channels(run, k, [c], spatial)


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


def _merge_if_smaller(run: Run, k: int) -> bool:
    """Multiply linear layer k into its readers when that is smaller as written (always for
    dense layers read only by dense ones, as LEO does); the readers stay convs where a
    conv rebuilds the product. Otherwise a ReLU layer keeps its units without the ReLU."""
    if _intact_pool(run, k):  # a MaxPool's output layer: multiplied in, the pool would be written as matrices
        return False
    ed = run.ed
    ly = ed.layer(k)
    plans = []
    for reader in (ed.layer(r) for r in ed.readers(k)):
        w = reader.weights[k]
        weights = {s: v for s, v in reader.weights.items() if s != k}
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
            if ly.relu:
                run.apply(DropRelu(ly.name))
            return False
    merge(run, k)
    for reader, _, _, structure in plans:
        reader.structure = structure
    return True


def _spoil_readers(run: Run, k: int) -> None:
    """Layer k's units changed one by one: its own and its readers' conv structure is gone."""
    ed = run.ed
    ed.layer(k).shape, ed.layer(k).structure = None, None
    for r in ed.readers(k):
        ed.layer(r).structure = None


def _is_conv_relu(ly: EditLayer) -> bool:
    """A conv ReLU layer with some unit not stably inactive (one with none is deleted whole)."""
    return ly.relu and ly.structure is not None and any(s != INACTIVE for s in ly.state)


def _prepare(run: Run) -> None:
    """Keep only the conv structures that rebuild their weights exactly; then delete dead
    channels first, while every conv keeps its structure: merging a linear layer into a
    conv (a MaxPool's output into the conv reading it) can leave it dense, and its dead
    channels would then go unit by unit, unnamed, and stay in the user's pruned module."""
    for ly, layer in zip(run.ed.layers, run.original.layers):
        if conv_kernels(layer) is None:
            ly.structure = None
    for k in range(1, len(run.ed.layers)):
        if _is_conv_relu(run.ed.layer(k)):
            _dead_channels(run, k)


def _intact_pool(run: Run, k: int) -> bool:
    """Layer k is one of a MaxPool's layers (its ReLU levels or its output) and still computes
    exactly what the reader made of the pool: the writers write such layers as one MaxPool
    node (``leo.io.pool_export``), far smaller than any of their units removed."""
    ly = run.ed.layer(k)
    layers = run.original.layers

    def pool(name: int) -> bool:
        st = layers[name - 1].structure
        return st is not None and st.get("op") == "MaxPool"

    output = not layers[ly.name - 1].relu and ly.name > 1 and pool(ly.name - 1)  # the level before it pools
    return (pool(ly.name) or output) and run.ed.unchanged(ly)


def _units(run: Run, k: int) -> None:
    """A conv layer's dead channels are gone and a channel with live units stays whole; an
    intact MaxPool's layers stay whole (its stable units compute the pool all the same);
    a dense layer is reduced as LEO does."""
    if _is_conv_relu(run.ed.layer(k)) or _intact_pool(run, k):
        return
    if delete_inactive(run, k):
        _spoil_readers(run, k)
    if fold_dependent(run, k):
        _spoil_readers(run, k)


def _final_layer(run: Run, ly: EditLayer) -> Layer:
    """The layer as written: its conv structure where a conv still rebuilds it exactly, else
    its original structure (a MaxPool's levels) where the layer is unchanged, else none."""
    if ly.structure is None and run.ed.unchanged(ly):
        before = run.original.layers[ly.name - 1]
        return Layer(ly.weights, ly.bias, ly.relu, before.shape, before.structure)
    shape = ly.shape if ly.shape is not None and math.prod(ly.shape) == ly.bias.size else None
    layer = Layer(ly.weights, ly.bias, ly.relu, shape, ly.structure)
    if ly.structure is not None and conv_kernels(layer) is None:  # a safeguard: export only exact convs
        layer = Layer(ly.weights, ly.bias, ly.relu, shape, None)
    return layer


def _finish(run: Run) -> Network:
    return Network(run.ed.input_dim, tuple(_final_layer(run, ly) for ly in run.ed.layers), run.ed.metadata)


#: Whole channels out, conv layers kept; dense layers as LEO.
STRUCTURED = Policy(Form.STRUCTURED, _units, _merge_if_smaller, _prepare, _finish)


def reduce_structured(network: Network, report: StabilityReport) -> Reduction:
    """The structured reduction of ``network`` (``report`` must come from analysing it)."""
    return run_policy(network, report, STRUCTURED)


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


@dataclass(frozen=True)
class KeptActive:
    """What became of the stably active units of a reduction (``leo`` and ``flat`` forms): each one
    kept raises the rank of its layer's active rows, and a layer with unstable units cannot be
    multiplied into the next, so the user is told why such units are still there."""

    bypassed: int  # through skip connections (the flat form: every stably active unit leaves its ReLU)
    folded: int  # into the next layer: their rows are combinations of others
    kept: int  # in layers not merged, not folded

    @classmethod
    def of(cls, report: StabilityReport, reduction: Reduction) -> KeptActive:
        merged = set(reduction.merged_layers)
        kept = sum(len(set(lr.active) - set(reduction.folded_active[lr.layer - 1]))
                   for lr in report.layers if lr.layer not in merged)
        return cls(sum(len(u) for u in reduction.bypassed_active), sum(len(f) for f in reduction.folded_active), kept)

    def line(self) -> str:
        """The compress report's line ("" when there is nothing to say)."""
        if self.bypassed:
            return (f"{self.bypassed} stably active units bypassed (their linear maps reach the layers that read "
                    "them through skip connections)")
        if not self.kept and not self.folded:
            return ""
        return (f"{self.folded} stably active units folded into the next layer (their rows are combinations of "
                f"others); {self.kept} kept: their rows are linearly independent, and their layers also hold "
                "unstable units")


__all__ = ["STRUCTURED", "KeptActive", "channel_bias", "conv_kernel", "conv_kernels", "describe", "reduce_structured",
           "written_parameters"]
