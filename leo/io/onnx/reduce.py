"""Linear ops that broadcast or sum entries: Expand, ReduceSum and ReduceMean.

On the network's data each is a matrix over the entries (a 0/1 row selection for Expand,
ones or 1/count over each reduced group for the reductions), so they read exactly. The
reductions' older forms take ``axes`` as an attribute (ReduceSum before opset 13,
ReduceMean before 18) and have no ``noop_with_empty_axes``; the table says which reader
reads which opset.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leo.io.conv import check_size
from leo.io.onnx.values import Affine, Graph, Handler, Node, Value, broadcast_to, linear, unbatched

#: How a reduction weighs each entry of a group of ``count``: 1 for a sum, 1/count for a mean.
Combine = Callable[[int], float]


def _sum(count: int) -> float:
    return 1.0


def _mean(count: int) -> float:
    return 1.0 / count


def expand(g: Graph, node: Node) -> list[Value]:
    """Expand (opsets 8 and 13): numpy broadcasting of the data against the given shape,
    in both directions (a 1 in the shape keeps the data's dimension)."""
    x = node.inputs[0]
    target = tuple(int(d) for d in node.const(1, "shape").ravel())
    if isinstance(x, np.ndarray):
        try:
            return [np.broadcast_to(x, np.broadcast_shapes(x.shape, target)).copy()]
        except ValueError:
            raise node.fail(f"shapes {list(x.shape)} and {list(target)} do not broadcast") from None
    assert isinstance(x, Affine)
    if x.batched and g.single_sample:
        x = unbatched(x)
    return [broadcast_to(node, x, target)]


def _axes(node: Node, rank: int, axes: list[int] | None) -> tuple[int, ...] | None:
    """The reduced axes, each in range; None for the identity (``noop_with_empty_axes``)."""
    if not axes:
        return None if node.attrs.get("noop_with_empty_axes", 0) else tuple(range(rank))
    if any(not -rank <= a < rank for a in axes):
        raise node.fail(f"axes {axes} out of range for a tensor of rank {rank}")
    return tuple(sorted({a % rank for a in axes}))


def _reduce(g: Graph, node: Node, combine: Combine, axes: list[int] | None) -> list[Value]:
    x = node.inputs[0]
    keep = bool(node.attrs.get("keepdims", 1))
    if isinstance(x, np.ndarray):
        picked = _axes(node, x.ndim, axes)
        if picked is None:
            return [x]
        count = int(np.prod([x.shape[a] for a in picked]))
        return [np.sum(x, axis=picked, keepdims=keep) * combine(max(count, 1))]
    assert isinstance(x, Affine)
    picked = _axes(node, len(x.full_shape), axes)
    if picked is None:
        return [x]
    if x.batched and 0 in picked:
        if not g.single_sample:
            raise node.fail("reduces over the batch dimension")
        x = unbatched(x)
    return [_reduced(g, node, x, picked, keep, combine)]


def _reduced(g: Graph, node: Node, x: Affine, picked: tuple[int, ...], keep: bool, combine: Combine) -> Affine:
    """The reduction as a matrix: input entry i adds ``combine(count)`` to its group's row."""
    full = x.full_shape
    kept = tuple(1 if a in picked else d for a, d in enumerate(full))
    count = int(np.prod([full[a] for a in picked]))
    rows = int(np.prod(kept))
    check_size(rows, x.size)
    coords = np.indices(full).reshape(len(full), -1)
    coords[list(picked)] = 0  # each entry's group: its coordinates with the reduced ones at 0
    group = np.ravel_multi_index(tuple(coords), kept)
    w = np.zeros((rows, x.size))
    w[group, np.arange(x.size)] = combine(count)
    out = kept if keep else tuple(d for a, d in enumerate(full) if a not in picked)
    shape = out[1:] if x.batched else out
    return linear(g, node, x, w, np.zeros(rows), tuple(shape))


def reduce_attribute(combine: Combine) -> Handler:
    """ReduceSum before opset 13, ReduceMean before 18: ``axes`` is an optional attribute."""

    def handler(g: Graph, node: Node) -> list[Value]:
        axes = node.attrs.get("axes")
        return _reduce(g, node.with_inputs(node.inputs[:1]), combine, None if axes is None else
                       [int(a) for a in axes])

    return handler


def reduce_input(combine: Combine) -> Handler:
    """ReduceSum from opset 13, ReduceMean from 18: ``axes`` is an optional input."""

    def handler(g: Graph, node: Node) -> list[Value]:
        axes = node.const(1, "axes").ravel() if node.input(1) is not None else None
        return _reduce(g, node, combine, None if axes is None else [int(a) for a in axes])

    return handler


reduce_sum_attribute = reduce_attribute(_sum)
reduce_sum_input = reduce_input(_sum)
reduce_mean_attribute = reduce_attribute(_mean)
reduce_mean_input = reduce_input(_mean)
