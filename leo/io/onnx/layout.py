"""Ops that only pick and move entries: Flatten, Reshape, Transpose, Gather, Slice,
Squeeze, Unsqueeze, Split, Concat, Pad. On the network's data they are row selections
of the ``Affine`` map, computed by running the op on the entries' indices.

Each op's older opset forms (attributes where later opsets take inputs) have their own
small reader here; the table in ``leo.io.onnx.table`` says which reads which opset.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leo.errors import LeoInputError
from leo.io.onnx.values import Affine, Graph, Handler, Node, Value, stack, to_float, unbatched

Rearrange = Callable[[Node, list[np.ndarray]], list[np.ndarray]]


def _on_indices(node: Node, x: Affine, fn: Rearrange, args: list[np.ndarray],
                single_sample: bool = False) -> list[Value]:
    """``fn`` on ``x``'s entries. A batched ``x`` runs as a batch of two samples, so an op
    that touches the batch dimension is caught instead of misread; in a graph defined on
    one sample (``single_sample``) it is then read on the unbatched tensor."""
    if x.batched and single_sample:
        try:
            return _on_indices(node, x, fn, args)
        except LeoInputError:
            return _on_indices(node, unbatched(x), fn, args)
    if x.batched:
        index = np.arange(2 * x.size).reshape(2, *x.shape)
    else:
        index = np.arange(x.size).reshape(x.shape)
    try:
        outs = [np.asarray(o) for o in fn(node, [index, *args])]
    except (ValueError, IndexError, np.exceptions.AxisError) as exc:
        raise node.fail(f"cannot apply to shape {list(x.full_shape)}: {exc}") from None
    values: list[Value] = []
    for out in outs:
        if not x.batched:
            values.append(x.rows(out.ravel(), tuple(out.shape)))
            continue
        if out.ndim < 1 or out.shape[0] != 2 or not np.array_equal(out[1], out[0] + x.size):
            raise node.fail("moves or slices the batch dimension")
        values.append(x.rows(out[0].ravel(), tuple(out.shape[1:])))
    return values


def rearranging(fn: Rearrange) -> Handler:
    """A handler for an op that only picks and moves entries of its first input."""

    def handler(g: Graph, node: Node) -> list[Value]:
        x, rest = node.inputs[0], node.inputs[1:]
        if any(isinstance(v, Affine) for v in rest):
            raise node.fail("reads the network's data as shape or index arguments")
        args = [v for v in rest if v is not None]
        if not isinstance(x, Affine):
            return list(fn(node, [v for v in node.inputs if v is not None]))
        return _on_indices(node, x, fn, args, g.single_sample)  # type: ignore[arg-type]

    return handler


def one(fn: Callable[[Node, list[np.ndarray]], np.ndarray]) -> Rearrange:
    return lambda node, args: [fn(node, args)]


def gather(node: Node, args: list[np.ndarray]) -> np.ndarray:
    return np.take(args[0], args[1], axis=int(node.attrs.get("axis", 0)))


def transpose(node: Node, args: list[np.ndarray]) -> np.ndarray:
    perm = node.attrs.get("perm")
    return np.transpose(args[0], None if perm is None else [int(p) for p in perm])


def unsqueeze_attribute(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """Unsqueeze before opset 13: ``axes`` is an attribute."""
    return _unsqueeze(args[0], [int(a) for a in node.attrs["axes"]])


def unsqueeze_input(node: Node, args: list[np.ndarray]) -> np.ndarray:
    return _unsqueeze(args[0], [int(a) for a in args[1].ravel()])


def _unsqueeze(data: np.ndarray, axes: list[int]) -> np.ndarray:
    rank = data.ndim + len(axes)
    return np.expand_dims(data, tuple(sorted(a % rank for a in axes)))


def squeeze_attribute(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """Squeeze before opset 13: ``axes`` is an optional attribute."""
    axes = node.attrs.get("axes")
    return np.squeeze(args[0], None if axes is None else tuple(int(a) for a in axes))


def squeeze_input(node: Node, args: list[np.ndarray]) -> np.ndarray:
    return np.squeeze(args[0], tuple(int(a) for a in args[1].ravel()) if len(args) > 1 else None)


def slice_attributes(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """Slice before opset 10: ``starts``, ``ends`` and ``axes`` are attributes, no steps."""
    starts = np.array(node.attrs["starts"], dtype=np.int64)
    axes = node.attrs.get("axes")
    return _slice(args[0], starts, np.array(node.attrs["ends"], dtype=np.int64),
                  np.arange(len(starts)) if axes is None else np.array(axes, dtype=np.int64),
                  np.ones(len(starts), dtype=np.int64))


def slice_inputs(node: Node, args: list[np.ndarray]) -> np.ndarray:
    starts = args[1].ravel()
    axes = args[3].ravel() if len(args) > 3 else np.arange(len(starts))
    steps = args[4].ravel() if len(args) > 4 else np.ones(len(starts), dtype=np.int64)
    return _slice(args[0], starts, args[2].ravel(), axes, steps)


def _slice(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, axes: np.ndarray,
           steps: np.ndarray) -> np.ndarray:
    index = [slice(None)] * data.ndim
    for a, b, e, st in zip(axes, starts, ends, steps):
        n = data.shape[int(a)]
        b, e = int(np.clip(b, -n - 1, n)), int(np.clip(e, -n - 1, n))
        index[int(a)] = slice(b, e if e >= -n else None, int(st))
    return data[tuple(index)]


def split_sizes(node: Node, length: int, sizes: np.ndarray | None) -> list[int]:
    """The part sizes: given, else ``num_outputs`` (opset 18; the last part smaller when
    it does not divide) or the node's outputs (which must divide the axis evenly)."""
    if sizes is not None and np.size(sizes):
        return [int(s) for s in np.ravel(sizes)]
    parts = int(node.attrs.get("num_outputs", len(node.outputs)))
    chunk = -(-length // parts)
    if "num_outputs" not in node.attrs and length % parts:
        raise ValueError(f"{length} entries do not split into {parts} equal parts")
    return [min(chunk, max(length - i * chunk, 0)) for i in range(parts)]


def _split(data: np.ndarray, node: Node, sizes: np.ndarray | None) -> list[np.ndarray]:
    axis = int(node.attrs.get("axis", 0))
    parts = split_sizes(node, data.shape[axis], sizes)
    if sum(parts) != data.shape[axis] or min(parts) < 0:
        raise ValueError(f"parts {parts} do not add up to the axis' {data.shape[axis]} entries")
    return np.split(data, np.cumsum(parts)[:-1], axis=axis)


def split_attribute(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    """Split of opsets 1-12: ``split`` is an attribute (or, in opset 1, an optional input)."""
    given = node.attrs.get("split")
    return _split(args[0], node, np.array(given) if given is not None else (args[1] if len(args) > 1 else None))


def split_input(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    return _split(args[0], node, args[1] if len(args) > 1 else None)


def flatten(g: Graph, node: Node) -> list[Value]:
    x = node.inputs[0]
    axis = int(node.attrs.get("axis", 1))
    if isinstance(x, np.ndarray):
        axis = axis + x.ndim if axis < 0 else axis
        return [x.reshape(int(np.prod(x.shape[:axis])), -1)]
    assert isinstance(x, Affine)
    full = x.full_shape
    axis = axis + len(full) if axis < 0 else axis
    if not 0 <= axis <= len(full):
        raise node.fail(f"axis {axis} out of range for shape {list(full)}")
    lead = int(np.prod(full[:axis]))
    if x.batched and g.single_sample and (axis == 0 or (axis > 1 and lead > 1)):
        x = unbatched(x)  # one sample's values: merging its batch axis of 1 only reshapes them
    if not x.batched:
        return [x.reshaped((lead, x.size // lead))]
    if axis == 0:
        raise node.fail("axis=0 merges the batch dimension into the features")
    if axis > 1 and lead > 1:
        raise node.fail(f"axis={axis} merges the batch dimension with per-sample dims {list(full[1:axis])}")
    return [x.reshaped((x.size,))]


def _target_shape(node: Node, x: Affine, target: list[int], batch: int | None) -> tuple[int, ...]:
    """Per-sample shape of a Reshape of a batched tensor that keeps the batch dimension first."""
    if len(target) < 2 or target[0] not in (-1, 0, 1, batch):
        raise node.fail(f"reshape to {target} does not keep the batch dimension first")
    return _resolve(node, list(target[1:]), x.shape, x.size, target)


def _resolve(node: Node, rest: list[int], shape: tuple[int, ...], size: int, target: list[int]) -> tuple[int, ...]:
    """``rest`` with 0 (copy the dim, unless ``allowzero``) and -1 (the rest) resolved."""
    if not node.attrs.get("allowzero", 0):
        rest = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(rest)]
    if rest.count(-1) > 1 or any(d < -1 for d in rest):
        raise node.fail(f"invalid target shape {target}")
    known = int(np.prod([d for d in rest if d != -1]))
    if -1 in rest:
        if known == 0 or size % known:
            raise node.fail(f"cannot reshape {size} values to {target}")
        rest[rest.index(-1)] = size // known
    if int(np.prod(rest)) != size:
        raise node.fail(f"cannot reshape {size} values to {target}")
    return tuple(int(d) for d in rest)


def _reshape(g: Graph, node: Node, target: list[int]) -> list[Value]:
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        if not node.attrs.get("allowzero", 0):
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return [x.reshape(target)]
    assert isinstance(x, Affine)
    if x.batched and g.single_sample and (len(target) < 2 or target[0] not in (-1, 0, 1, g.batch)):
        x = unbatched(x)  # one sample's values: a reshape that moves its batch axis of 1 only reorders them
    if not x.batched:
        return [x.reshaped(_resolve(node, list(target), x.shape, x.size, target))]
    return [x.reshaped(_target_shape(node, x, target, g.batch))]


def reshape_attribute(g: Graph, node: Node) -> list[Value]:
    """Reshape before opset 5: the target shape is an attribute."""
    return _reshape(g, node, [int(d) for d in node.attrs.get("shape", [])])


def reshape_input(g: Graph, node: Node) -> list[Value]:
    return _reshape(g, node, [int(d) for d in node.const(1, "target shape").ravel()])


def concat(g: Graph, node: Node) -> list[Value]:
    """Concat of every opset (``axis`` defaults to 1 in opset 1, required since)."""
    parts = [v for v in node.inputs if v is not None]
    axis = int(node.attrs.get("axis", 1))
    if not any(isinstance(v, Affine) for v in parts):
        return [np.concatenate(parts, axis=axis)]
    batched = all(v.batched for v in parts if isinstance(v, Affine))
    affines = [(v if batched else unbatched(v)) if isinstance(v, Affine) else
               Affine({}, to_float(np.asarray(v)).reshape(-1), np.shape(v)[1:] if batched else np.shape(v),
                      batched=batched) for v in parts]
    shapes = [a.full_shape for a in affines]
    rank = len(shapes[0])
    axis = axis + rank if axis < 0 else axis
    if batched and (axis == 0 or any(sh[0] != 1 for sh in shapes)):
        raise node.fail(f"concatenates along the batch dimension (shapes {[list(s) for s in shapes]})")
    if any(len(sh) != rank for sh in shapes) or not 0 <= axis < rank or any(
            sh[:axis] + sh[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for sh in shapes):
        raise node.fail(f"concatenates tensors of shapes {[list(s) for s in shapes]} along axis {axis}")
    out = list(shapes[0])
    out[axis] = sum(sh[axis] for sh in shapes)
    out_shape = tuple(out[1:]) if batched else tuple(out)
    stacked = stack(affines, (int(np.prod(out)),))
    # stacked rows are part by part; the result's row-major order interleaves them along the axis
    offsets = np.cumsum([0] + [int(np.prod(sh)) for sh in shapes])
    blocks = [np.arange(offsets[i], offsets[i + 1]).reshape(sh) for i, sh in enumerate(shapes)]
    return [stacked.rows(np.concatenate(blocks, axis=axis).ravel(), out_shape)]


#: np.pad's name for each ONNX padding mode.
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _full_pads(node: Node, pads: list[int], rank: int, axes: list[int] | None) -> tuple[list[int], list[int]]:
    """Per-axis (begin, end) pads over all ``rank`` axes; ``axes`` (opset 18) names the padded ones."""
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    if len(pads) != 2 * len(axes) or any(not 0 <= a < rank for a in axes):
        raise node.fail(f"pads {pads} do not fit a tensor of rank {rank} (axes {axes})")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[len(axes) + i]
    return begin, end


def _pad(node: Node, pads: list[int], fill: float, axes: list[int] | None = None) -> list[Value]:
    """Padding as rows of the input: ``fill`` in new positions for constant mode (a
    negative pad crops), copies of input entries for reflect, edge and wrap."""
    x = node.inputs[0]
    mode = node.text("mode", "constant")
    if mode not in _PAD_MODES:
        raise node.fail(f"mode={mode!r} is not supported ({', '.join(_PAD_MODES)} are)")
    full = x.full_shape if isinstance(x, Affine) else np.shape(x)
    begin, end = _full_pads(node, pads, len(full), axes)
    if isinstance(x, np.ndarray):
        if mode != "constant" or min(begin + end) < 0:
            raise node.fail("only constant, non-negative padding of constants is supported")
        return [np.pad(x, list(zip(begin, end)), constant_values=fill)]
    assert isinstance(x, Affine)
    if x.batched and (begin[0] or end[0]):
        raise node.fail(f"pads {pads} pad the batch dimension")
    index = np.arange(x.size).reshape(full)
    index = index[tuple(slice(max(-b, 0), d - max(-e, 0)) for b, e, d in zip(begin, end, full))]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if mode == "constant":
        index = np.pad(index, widths, constant_values=-1)
    elif index.size and all(w < d or mode != "reflect" for (wb, we), d in zip(widths, index.shape) for w in (wb, we)):
        index = np.pad(index, widths, mode=_PAD_MODES[mode])  # type: ignore[call-overload]
    else:
        raise node.fail(f"pads {pads} are too wide for {mode} padding of shape {list(full)}")
    if index.size == 0:
        raise node.fail(f"pads {pads} leave no values")
    flat = index.ravel()
    inside = flat >= 0
    out = x.rows(np.where(inside, flat, 0), index.shape[1:] if x.batched else index.shape)
    return [out.elementwise(inside.astype(np.float64), np.where(inside, 0.0, fill))]


def pad_paddings(g: Graph, node: Node) -> list[Value]:
    """Pad of opset 1: the attribute is ``paddings``."""
    return _pad(node, [int(v) for v in node.attrs.get("paddings", [])], float(node.attrs.get("value", 0.0)))


def pad_attributes(g: Graph, node: Node) -> list[Value]:
    """Pad of opsets 2-10: ``pads`` and ``value`` are attributes."""
    return _pad(node, [int(v) for v in node.attrs.get("pads", [])], float(node.attrs.get("value", 0.0)))


def pad_inputs(g: Graph, node: Node) -> list[Value]:
    """Pad of opset 11 on: ``pads``, ``constant_value`` and (opset 18) ``axes`` are inputs."""
    pads = [int(v) for v in node.const(1, "pads").ravel()]
    fill = float(np.asarray(node.const(2, "constant value")).ravel()[0]) if node.input(2) is not None else 0.0
    axes = [int(a) for a in node.const(3, "axes").ravel()] if node.input(3) is not None else None
    return _pad(node, pads, fill, axes)
