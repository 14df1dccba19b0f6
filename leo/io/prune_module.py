"""The user's own ``nn.Module`` with the conv channels leo proved dead removed, by
Torch-Pruning's dependency graph, and re-checked against the original on the box.

Why Torch-Pruning: it knows how a removed output channel ripples through the user's
graph (the BatchNorm after the conv, the input channels of every reader, a Flatten
into a Linear, a Concat's offsets), so the result stays the user's class with
consistent shapes. Why not trust it blindly: it removes whole *groups*, and a group may
couple the dead channel with channels the proof says nothing about (a residual Add
with a live branch, a depthwise conv's own output, a grouped conv's balance). A
channel is removed only when every removal in its group is justified:

- output channels: of convs whose channel is proven dead (all its units stably
  inactive after the ReLU), used once in the forward, whose output reaches the ReLU
  only through BatchNorms and whose zero channel then reaches its readers only through
  ops that keep a zero channel zero (ReLU, pooling, reshapes, Concat, Add of branches
  all in the group); and of the BatchNorms between such a conv and its ReLU;
- input channels: of the readers those walks reach.

Anything else skips the channel, with the reason recorded. The pruned copy is then
compared with the original module on sampled points of the box and its corners and
centre; a difference is a bug (RuntimeError), never a result.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from leo.core.domain import Box, make_box
from leo.errors import LeoInputError
from leo.core.network import Network, channel_summary

#: Autograd ops that map an all-zero channel to an all-zero channel at the same index.
_ZERO_KEEPING = ("ReluBackward", "LeakyReluBackward", "MaxPool", "AvgPool", "AdaptiveAvgPool",
                 "AdaptiveMaxPool", "CloneBackward")


@dataclass(frozen=True)
class Skipped:
    """Dead channels of one layer that were kept, and why."""

    layer: int  # 1-based layer of leo's network
    module: str  # the conv's path in the module ("" when none was found)
    channels: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class PrunedModule:
    """The pruned deep copy of the user's module and what was done to it."""

    module: nn.Module
    removed: Mapping[str, tuple[int, ...]]  # per conv path: original output channels removed
    skipped: tuple[Skipped, ...]
    max_diff: float  # largest |original - pruned| over the check points
    tolerance: float
    points: int  # how many points were compared
    seconds: float


def dead_channels_from_report(network: Network, report: Any) -> dict[int, tuple[int, ...]]:
    """Per 1-based conv layer: the output channels whose units are all proven stably
    inactive in ``report`` (a StabilityReport of ``network``)."""
    out: dict[int, tuple[int, ...]] = {}
    for lr in report.layers:
        layer = network.layers[lr.layer - 1]
        summary = channel_summary(layer, [str(p.verdict) for p in lr.proofs]) if layer.relu else None
        dead = tuple(c["channel"] for c in summary or [] if c.get("inactive", 0) == c["units"])
        if dead:
            out[lr.layer] = dead
    return out


def prune_module(module: nn.Module, network: Network, dead_channels: Mapping[int, Iterable[int]],
                 lower: Any, upper: Any, points: int = 10_000) -> PrunedModule:
    """A deep copy of ``module`` without the dead output channels of its convs.

    ``network`` is leo's reading of ``module`` (``leo.io.torch_io.from_module``), whose
    conv layers name their module (``structure["module"]``); ``dead_channels`` maps a
    1-based layer of it to channels proven stably inactive on the box ``lower``..``upper``.
    The user's module is never changed; the copy comes back in the original's train/eval mode.
    """
    import torch_pruning as tp

    start = time.perf_counter()
    box = lower if isinstance(lower, Box) else make_box(lower, upper, network.input_dim)
    shape = network.input_shape or _input_shape(module, network)
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    pruned = copy.deepcopy(module).eval()
    example = torch.zeros((1, *shape), dtype=dtype)
    wanted, skipped = _wanted(network, dead_channels, _calls(pruned, example))
    modules = dict(pruned.named_modules())
    accepted: dict[str, set[int]] = {}
    if wanted:
        graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=example, verbose=False)
        accepted, more = _accept(graph, modules, wanted)
        skipped += more
    _apply(pruned, modules, accepted, example)
    max_diff, tol, n = _check(module, pruned, box, shape, dtype, points)
    pruned.train(module.training)
    return PrunedModule(pruned, {p: tuple(sorted(c)) for p, c in accepted.items() if c}, tuple(skipped),
                        max_diff, tol, n, time.perf_counter() - start)


# -- which channels are asked for --------------------------------------------------

def _input_shape(module: nn.Module, network: Network) -> tuple[int, ...]:
    from leo.io.graph import guess_input_shape

    return guess_input_shape(module, [(network.input_dim,)])


def _calls(module: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """How many times each conv of ``module`` runs in one forward."""
    counts: dict[str, int] = {}
    hooks = []
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.conv._ConvNd):
            counts[name] = 0
            hooks.append(sub.register_forward_hook(lambda *_, n=name: counts.__setitem__(n, counts[n] + 1)))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return counts


def _wanted(network: Network, dead: Mapping[int, Iterable[int]],
            calls: dict[str, int]) -> tuple[dict[str, tuple[int, set[int]]], list[Skipped]]:
    """Per conv path: (its layer, the dead channels asked for); the layers that cannot be
    mapped to a conv used once are skipped."""
    wanted: dict[str, tuple[int, set[int]]] = {}
    skipped: list[Skipped] = []
    for k, chans in sorted(dead.items()):
        chans = sorted({int(c) for c in chans})
        if not 1 <= k <= len(network.layers):
            raise LeoInputError(f"dead channels for layer {k}, but the network has {len(network.layers)} layers")
        layer = network.layers[k - 1]
        st = dict(layer.structure or {})
        path = str(st.get("module", ""))
        if chans and (layer.shape is None or min(chans) < 0 or max(chans) >= layer.shape[0]):
            raise LeoInputError(f"layer {k} has no output channels {chans}")
        reason = ("it is not a conv layer" if st.get("op") != "Conv" else
                  "it has no ReLU, so a stably inactive unit is not zero" if not layer.relu else
                  "no Conv module of the model matches its node " + repr(st.get("node")) if not path else
                  f"the module runs {calls.get(path, 0)} times in the forward; leo prunes modules used once"
                  if calls.get(path, 0) != 1 else "")
        if reason:
            skipped.append(Skipped(k, path, tuple(chans), reason))
        elif chans:
            wanted[path] = (k, set(chans))
    return wanted, skipped


# -- which removals the proof justifies ---------------------------------------------

def _op_name(node: Any) -> str:
    fn = getattr(node, "grad_fn", None)
    return fn.name() if fn is not None and hasattr(fn, "name") else type(node.module).__name__


def _is_grouped(module: nn.Module) -> bool:
    """A grouped conv that is not depthwise: removing one channel unbalances its groups."""
    return (isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1
            and not module.groups == module.in_channels == module.out_channels)


def _walk(graph: Any, conv: nn.Module) -> tuple[set[nn.Module], set[nn.Module]] | str:
    """(BatchNorms before the ReLU, readers of the zero channel) of a dead conv, or why
    its channel cannot be removed."""
    import torch_pruning as tp

    node = graph.module2node[conv]
    bns: set[nn.Module] = set()
    while True:  # conv -> BatchNorm* -> ReLU, read by nothing else
        if len(node.outputs) != 1:
            return f"its output before the ReLU is read by {len(node.outputs)} operations"
        node = node.outputs[0]
        if node.type == tp.ops.OPTYPE.BN:
            bns.add(node.module)
        elif _op_name(node).startswith("ReluBackward"):
            break
        else:
            return f"its output reaches {_op_name(node)} before a ReLU"
    readers: set[nn.Module] = set()
    stack, seen = [node], {node}
    while stack:  # the zero channel, through ops that keep it zero, to the readers
        node = stack.pop()
        if not node.outputs:
            return "its channel is part of the module's output"
        for nxt in node.outputs:
            if nxt in seen:
                continue
            seen.add(nxt)
            if nxt.type in (tp.ops.OPTYPE.CONV, tp.ops.OPTYPE.DEPTHWISE_CONV, tp.ops.OPTYPE.LINEAR):
                readers.add(nxt.module)
            elif (nxt.type in (tp.ops.OPTYPE.RESHAPE, tp.ops.OPTYPE.CONCAT, tp.ops.OPTYPE.SPLIT)
                  or _op_name(nxt).startswith(_ZERO_KEEPING) or _op_name(nxt) == "AddBackward0"):
                stack.append(nxt)
            else:
                return f"its zero channel reaches {_op_name(nxt)}, which may not keep it zero"
    return bns, readers


def _accept(graph: Any, modules: dict[str, nn.Module],
            wanted: dict[str, tuple[int, set[int]]]) -> tuple[dict[str, set[int]], list[Skipped]]:
    """Per conv path, the dead channels whose whole pruning group is justified."""
    import torch_pruning as tp

    paths = {m: p for p, m in modules.items()}
    walks = {p: _walk(graph, modules[p]) for p in wanted}
    skipped = [Skipped(wanted[p][0], p, tuple(sorted(wanted[p][1])), w) for p, w in walks.items()
               if isinstance(w, str)]
    clean = {p: w for p, w in walks.items() if not isinstance(w, str)}
    accepted: dict[str, set[int]] = {p: set() for p in clean}
    for p in clean:
        layer, chans = wanted[p]
        why: dict[str, list[int]] = {}
        for c in sorted(chans - accepted[p]):
            group = graph.get_pruning_group(modules[p], graph.get_pruner_of_module(modules[p]).prune_out_channels,
                                            idxs=[c])
            reason, outs = _judge(graph, group, paths, wanted, clean)
            full = [q for q, cs in outs.items() if len(accepted[q] | cs) >= modules[q].out_channels]
            reason = reason or (f"it would remove the last channel of {full[0]}" if full else "")
            if reason:
                why.setdefault(reason, []).append(c)
            else:
                for q, cs in outs.items():
                    accepted[q] |= cs
        skipped += [Skipped(layer, p, tuple(cs), r) for r, cs in why.items()]
    return accepted, skipped


def _judge(graph: Any, group: Any, paths: dict[nn.Module, str], wanted: dict[str, tuple[int, set[int]]],
           clean: dict[str, tuple[set[nn.Module], set[nn.Module]]]) -> tuple[str, dict[str, set[int]]]:
    """("", conv channels the group removes) when the proof justifies every removal in
    ``group``, else (the first reason it does not, {})."""
    import torch_pruning as tp

    ops = (tp.ops.OPTYPE.ELEMENTWISE, tp.ops.OPTYPE.RESHAPE, tp.ops.OPTYPE.CONCAT, tp.ops.OPTYPE.SPLIT)
    targets = {item.dep.target for item in group.items}
    outs: dict[str, set[int]] = {}
    readers: list[nn.Module] = []
    bns: list[tuple[nn.Module, set[int]]] = []
    for item in group.items:
        node, idxs = item.dep.target, {int(i) for i in item.idxs}
        name = paths.get(node.module, _op_name(node))
        if _is_grouped(node.module):
            return f"it couples with the grouped conv {name} (groups={node.module.groups})", {}
        if node.type in ops:
            if _op_name(node).startswith("AddBackward") and not _all_inputs_in(node, targets):
                return f"it feeds an Add ({node.name}) whose other input is not removed with it", {}
            continue
        out = graph.is_out_channel_pruning_fn(item.dep.handler)
        if node.type == tp.ops.OPTYPE.DEPTHWISE_CONV or (node.type == tp.ops.OPTYPE.CONV and out):
            if name not in clean or not idxs <= wanted[name][1]:
                return f"it couples with output channel(s) {sorted(idxs)} of {name}, not proven dead", {}
            outs.setdefault(name, set()).update(idxs)
        elif node.type == tp.ops.OPTYPE.BN:
            bns.append((node.module, idxs))
        elif node.type in (tp.ops.OPTYPE.CONV, tp.ops.OPTYPE.LINEAR) and graph.is_in_channel_pruning_fn(
                item.dep.handler):
            readers.append(node.module)
        else:
            return f"it couples with {name} ({node.type.name}), whose channels the proof says nothing about", {}
    for bn, idxs in bns:
        owner = [q for q in outs if bn in clean[q][0] and idxs <= outs[q]]
        if not owner:
            return f"it couples with the BatchNorm {paths.get(bn, '?')} outside a dead conv's path to its ReLU", {}
    for reader in readers:
        if not any(reader in clean[q][1] for q in outs):
            return f"it couples with input channels of {paths.get(reader, '?')}, which no dead channel feeds", {}
    return "", outs


def _all_inputs_in(node: Any, targets: set[Any]) -> bool:
    """Whether every operand of an Add node is a node of the group (not the module's input,
    a buffer or a constant, which Torch-Pruning cannot shrink)."""
    fn = getattr(node, "grad_fn", None)
    operands = getattr(fn, "next_functions", ())
    return all(f is not None for f, _ in operands) and len(operands) == 2 and set(node.inputs) <= targets


# -- pruning and the check -------------------------------------------------------------

def _apply(module: nn.Module, modules: dict[str, nn.Module], accepted: dict[str, set[int]],
           example: torch.Tensor) -> None:
    """Remove the accepted channels, one conv's at a time on a fresh dependency graph,
    translating original channel numbers to the current ones."""
    import torch_pruning as tp

    alive = {p: list(range(m.out_channels)) for p, m in modules.items() if isinstance(m, nn.modules.conv._ConvNd)}
    paths = {m: p for p, m in modules.items()}
    for p in sorted(accepted):
        todo = sorted(c for c in accepted[p] if c in alive[p])
        if not todo:
            continue  # removed with an earlier conv's group
        graph = tp.DependencyGraph().build_dependency(module, example_inputs=example, verbose=False)
        group = graph.get_pruning_group(modules[p], graph.get_pruner_of_module(modules[p]).prune_out_channels,
                                        idxs=[alive[p].index(c) for c in todo])
        gone: dict[str, list[int]] = {}
        for item in group.items:
            q = paths.get(item.dep.target.module)
            if q in alive and (item.dep.target.type == tp.ops.OPTYPE.DEPTHWISE_CONV
                               or graph.is_out_channel_pruning_fn(item.dep.handler)):
                gone[q] = [alive[q][int(i)] for i in item.idxs]
        if any(not set(cs) <= accepted.get(q, set()) for q, cs in gone.items()):
            raise RuntimeError(f"internal error: pruning {p} would remove channels {gone}, "
                               f"more than the accepted {accepted}")
        group.prune()
        for q, cs in gone.items():
            alive[q] = [c for c in alive[q] if c not in cs]


def _check(original: nn.Module, pruned: nn.Module, box: Box, shape: tuple[int, ...], dtype: torch.dtype,
           points: int) -> tuple[float, float, int]:
    """(max |original - pruned|, tolerance, points) on ``points`` samples of the box, its
    corners (when few, else the lowest and highest) and its centre; a difference over
    the tolerance (scaled like ``leo.api.exact_step``'s) is a RuntimeError."""
    from leo.core.domain import sample_points

    pts = np.vstack([sample_points(box, points, np.random.default_rng(0)), box.lower[None], box.upper[None],
                     (box.lower + box.upper)[None] / 2])
    reference = copy.deepcopy(original).eval()
    diff, scale = 0.0, 0.0
    with torch.no_grad():
        for chunk in np.array_split(pts, max(1, len(pts) // 1000)):
            x = torch.as_tensor(chunk, dtype=dtype).reshape(len(chunk), *shape)
            want = reference(x).to(torch.float64)
            try:
                got = pruned(x).to(torch.float64)
            except Exception as exc:  # noqa: BLE001 - any failure of the pruned copy is ours
                raise RuntimeError(f"internal error: the pruned module fails on box points: {exc}") from exc
            if got.shape != want.shape:
                raise RuntimeError(f"internal error: the pruned module gives outputs of shape {tuple(got.shape)}, "
                                   f"the original {tuple(want.shape)}")
            diff = max(diff, float((got - want).abs().max()))
            scale = max(scale, float(want.abs().max()))
    tol = (1e-6 if dtype == torch.float64 else 1e-5) * (1.0 + scale)
    if not diff <= tol:
        raise RuntimeError(f"internal error: the pruned module differs from the original by {diff:g} "
                           f"(tolerance {tol:g}) on a point of the box; please report this model")
    return diff, tol, len(pts)
