"""ONNX in: feed-forward ReLU networks as torch.onnx and verification benchmarks
(VNN-COMP, ERAN) write them.

The graph is walked once, in its (topological) node order. Every tensor is either a
constant (a numpy array) or an ``Affine``: a per-sample vector that is an affine
function of outputs of layers already emitted. Linear ops (Gemm, MatMul, Add, Sub,
Mul, Div by constants, BatchNormalization, reshapes) compose into that affine map; a
Relu turns it into a Layer. So input normalisation folds into the first Linear layer
and a BatchNormalization into the layer before it, with no pattern matching on the
graph. Everything is computed in float64.

Convolutional and residual networks go the same way: a Conv or AveragePool is a matrix
on the flat (C, H, W) vector (``leo.io.conv``), an Add of two branches sums their
affine maps (a layer with several sources), Concat and Transpose permute rows, and a
MaxPool is exact with ReLU layers, max(a, b) = a + relu(b - a), paired in a tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Union

import numpy as np

from leo.errors import LeoInputError
from leo.io.conv import TooLarge, Window, average_matrix, conv_matrix, distinct, max_candidates, same_pads
from leo.network import ARCHITECTURE_SOURCE, INPUT_SHAPE, Layer, Network, shape_text


@dataclass(frozen=True)
class Affine:
    """A tensor that depends on the input: ``sum_s terms[s] @ h_s + bias`` per sample.

    A 1-D term is a diagonal matrix (kept as its diagonal, so the identity on a
    784-pixel input costs 784 numbers). ``shape`` is the per-sample shape (no batch
    dimension); the vector is that tensor in row-major order. ``mixed`` says a weight
    matrix was applied since the last layer: the next one starts a new (linear) layer
    instead of multiplying two weight matrices together. ``structure`` names the conv
    the map was lowered from (kept through per-channel scales and shifts, such as a
    BatchNormalization or a bias), for the layer it becomes.
    """

    terms: Mapping[int, np.ndarray]
    bias: np.ndarray
    shape: tuple[int, ...]
    mixed: bool = False
    structure: Mapping[str, Any] | None = None

    @property
    def size(self) -> int:
        return int(self.bias.size)

    def matmul(self, matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, ...]) -> Affine:
        """``matrix @ self + offset``."""
        terms = {s: matrix * t if t.ndim == 1 else matrix @ t for s, t in self.terms.items()}
        return Affine(terms, matrix @ self.bias + offset, shape, mixed=True)

    def elementwise(self, scale: np.ndarray, offset: np.ndarray) -> Affine:
        """``scale * self + offset`` with per-element ``scale`` and ``offset``."""
        terms = {s: scale * t if t.ndim == 1 else scale[:, None] * t for s, t in self.terms.items()}
        keep = (self.structure is not None and len(self.shape) > 1
                and _per_channel(scale, self.shape) and _per_channel(offset, self.shape))
        return Affine(terms, scale * self.bias + offset, self.shape, self.mixed, self.structure if keep else None)

    def plus(self, other: Affine) -> Affine:
        terms = dict(self.terms)
        for s, t in other.terms.items():
            terms[s] = _add_terms(terms[s], t) if s in terms else t
        return Affine(terms, self.bias + other.bias, self.shape, self.mixed or other.mixed)

    def reshaped(self, shape: tuple[int, ...]) -> Affine:
        return Affine(self.terms, self.bias, shape, self.mixed, self.structure)

    def rows(self, index: np.ndarray, shape: tuple[int, ...]) -> Affine:
        """The entries ``index`` (flat), in that order, as a tensor of per-sample ``shape``."""
        terms = {s: _dense(t)[index] for s, t in self.terms.items()}
        return Affine(terms, self.bias[index], shape, self.mixed)

    def is_identity_of(self, source: int) -> bool:
        t = self.terms.get(source)
        return (set(self.terms) == {source} and t is not None and t.ndim == 1
                and bool(np.all(t == 1.0)) and not self.bias.any())


Value = Union[np.ndarray, Affine]


def _per_channel(values: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``values`` (flat, per-sample ``shape`` of rank >= 2) is constant within each channel."""
    v = values.reshape(shape[0], -1)
    return bool(np.all(v == v[:, :1]))


def _stack(parts: list[Affine], shape: tuple[int, ...]) -> Affine:
    """The affine maps of ``parts`` one after another (flat), as a tensor of ``shape``."""
    sources = sorted({s for p in parts for s in p.terms})
    widths = {s: next(_dense(p.terms[s]).shape[1] for p in parts if s in p.terms) for s in sources}
    terms = {s: np.vstack([_dense(p.terms[s]) if s in p.terms else np.zeros((p.size, widths[s])) for p in parts])
             for s in sources}
    return Affine(terms, np.concatenate([p.bias for p in parts]), shape, any(p.mixed for p in parts))


def _add_terms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim == b.ndim == 1:
        return a + b
    return _dense(a) + _dense(b)


def _dense(t: np.ndarray) -> np.ndarray:
    return np.diag(t) if t.ndim == 1 else t


class _Graph:
    """The state of the walk: the value of every tensor name and the layers so far."""

    def __init__(self, input_name: str, shape: tuple[int, ...], batch: int | None = None) -> None:
        n = int(np.prod(shape))
        self.batch = batch  # the static batch size of an export made at a fixed batch, else None
        self.values: dict[str, Value] = {input_name: Affine({0: np.ones(n)}, np.zeros(n), shape)}
        self.layers: list[Layer] = []

    def emit(self, value: Affine, relu: bool) -> Affine:
        """Make ``value`` a layer; return its output as the identity on the new source."""
        shape = value.shape if len(value.shape) > 1 else None
        self.layers.append(Layer({s: _dense(t) for s, t in value.terms.items()}, value.bias, relu,
                                 shape, value.structure if value.mixed else None))
        return Affine({len(self.layers): np.ones(value.size)}, np.zeros(value.size), value.shape)


@dataclass(frozen=True)
class _Node:
    """One ONNX node with its inputs resolved (None for an omitted optional input)."""

    op: str
    name: str
    inputs: list[Value | None]
    attrs: dict[str, Any]
    outputs: tuple[str, ...] = ()

    def fail(self, why: str) -> LeoInputError:
        return LeoInputError(f"ONNX op {self.op} at node '{self.name}': {why}")

    def const(self, i: int, what: str) -> np.ndarray:
        v = self.inputs[i] if i < len(self.inputs) else None
        if not isinstance(v, np.ndarray):
            raise self.fail(f"the {what} must be a constant (an initializer or a Constant node)")
        return v


Handler = Callable[[_Graph, _Node], list[Value]]


# -- helpers ---------------------------------------------------------------------

def _per_sample(node: _Node, c: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A constant broadcast over one sample, flattened; it must not widen the tensor."""
    full = (1, *shape)
    c = np.asarray(c, dtype=np.float64)
    try:
        ok = c.ndim <= len(full) and np.broadcast_shapes(c.shape, full) == full
    except ValueError:
        ok = False
    if not ok:
        raise node.fail(f"a constant of shape {c.shape} does not broadcast over the per-sample shape {shape}")
    return np.broadcast_to(c, full).reshape(-1).astype(np.float64)


def _weight_input(node: _Node, x: Affine) -> None:
    if len(x.shape) != 1:
        raise node.fail(f"needs a flat input per sample, got shape {x.shape}: add a Flatten before it")


def _linear(g: _Graph, node: _Node, x: Affine, w: np.ndarray, offset: np.ndarray) -> Affine:
    """``w @ x + offset``; a second weight matrix since the last layer starts a new layer."""
    if w.shape[1] != x.size:
        raise node.fail(f"weight of shape {w.shape} does not fit an input of {x.size} values")
    if x.mixed:
        x = g.emit(x, relu=False)
    return x.matmul(w, offset, (w.shape[0],))


def _float(a: np.ndarray) -> np.ndarray:
    """Float tensors in float64; integer ones (shapes, indices) stay integers."""
    return a.astype(np.float64) if a.dtype.kind == "f" else a


# -- handlers: one per op type ------------------------------------------------------

def _gemm(g: _Graph, node: _Node) -> list[Value]:
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    b = _float(node.const(1, "second input (the weight)"))
    if node.attrs.get("transB", 0):
        b = b.T
    c = node.inputs[2] if len(node.inputs) > 2 else None
    if isinstance(c, Affine):
        raise node.fail("the bias (third input) depends on the network input")
    a = node.inputs[0]
    if isinstance(a, np.ndarray):
        a = a.T if node.attrs.get("transA", 0) else a
        return [alpha * (a @ b) + (beta * c if c is not None else 0.0)]
    if node.attrs.get("transA", 0):
        raise node.fail("transA=1 on the network input would mix the batch dimension")
    _weight_input(node, a)
    if b.ndim != 2:
        raise node.fail(f"the weight must be a matrix, got shape {b.shape}")
    offset = np.zeros(b.shape[1])
    if c is not None:
        offset = beta * _per_sample(node, _float(c), (b.shape[1],))
    return [_linear(g, node, a, alpha * b.T, offset)]


def _matmul(g: _Graph, node: _Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [a @ b]
    if not isinstance(a, Affine) or not isinstance(b, np.ndarray):
        raise node.fail("only input @ constant-weight is supported (the weight must be the second operand)")
    _weight_input(node, a)
    if b.ndim != 2:
        raise node.fail(f"the weight must be a matrix, got shape {b.shape}")
    return [_linear(g, node, a, _float(b).T, np.zeros(b.shape[1]))]


def _add(g: _Graph, node: _Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [a + b]
    if isinstance(a, Affine) and isinstance(b, Affine):
        if a.shape != b.shape:
            raise node.fail(f"adds tensors of per-sample shapes {a.shape} and {b.shape}")
        return [a.plus(b)]
    x, c = (a, b) if isinstance(a, Affine) else (b, a)
    assert isinstance(x, Affine) and isinstance(c, np.ndarray)
    return [x.elementwise(np.ones(x.size), _per_sample(node, c, x.shape))]


def _negate(x: Value) -> Value:
    if isinstance(x, np.ndarray):
        return -x
    return x.elementwise(-np.ones(x.size), np.zeros(x.size))


def _neg(g: _Graph, node: _Node) -> list[Value]:
    x = node.inputs[0]
    assert x is not None
    return [_negate(x)]


def _sub(g: _Graph, node: _Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    assert a is not None and b is not None
    return _add(g, _Node(node.op, node.name, [a, _negate(b)], node.attrs))


def _mul(g: _Graph, node: _Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [a * b]
    if isinstance(a, Affine) and isinstance(b, Affine):
        raise node.fail("multiplies two tensors that depend on the input (not linear)")
    x, c = (a, b) if isinstance(a, Affine) else (b, a)
    assert isinstance(x, Affine) and isinstance(c, np.ndarray)
    return [x.elementwise(_per_sample(node, c, x.shape), np.zeros(x.size))]


def _div(g: _Graph, node: _Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [a / b]
    if not isinstance(b, np.ndarray) or not isinstance(a, Affine):
        raise node.fail("divides by a tensor that depends on the input (not linear)")
    d = _per_sample(node, b, a.shape)
    if not np.all(d != 0):
        raise node.fail("divides by zero")
    return [a.elementwise(1.0 / d, np.zeros(a.size))]


def _relu(g: _Graph, node: _Node) -> list[Value]:
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        return [np.maximum(x, 0)]
    assert isinstance(x, Affine)
    return [g.emit(x, relu=True)]


def _batchnorm(g: _Graph, node: _Node) -> list[Value]:
    if node.attrs.get("training_mode", 0):
        raise node.fail("training_mode=1 is not an inference graph; export the model in eval mode")
    scale, bias, mean, var = (_float(node.const(i, what)) for i, what in
                              [(1, "scale"), (2, "bias"), (3, "running mean"), (4, "running variance")])
    factor = scale / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    offset = bias - mean * factor
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        expand = (-1,) + (1,) * (x.ndim - 2)
        return [x * factor.reshape(expand) + offset.reshape(expand)]
    assert isinstance(x, Affine)
    channels = (-1,) + (1,) * (len(x.shape) - 1)  # channel axis is axis 1 of (batch, C, ...)
    return [x.elementwise(_per_sample(node, factor.reshape(channels), x.shape),
                          _per_sample(node, offset.reshape(channels), x.shape))]


def _spatial_input(node: _Node) -> Affine:
    x = node.inputs[0]
    if not isinstance(x, Affine):
        raise node.fail("the input must depend on the network input (a constant input is not supported)")
    if len(x.shape) < 2:
        raise node.fail(f"needs a (channels, spatial...) input per sample, got shape {x.shape}")
    return x


def _window(node: _Node, x: Affine, kernel: tuple[int, ...]) -> Window:
    """The window geometry from ONNX attributes (strides, pads, dilations, auto_pad, ceil_mode)."""
    spatial = tuple(x.shape[1:])
    n = len(spatial)
    if len(kernel) != n:
        raise node.fail(f"a kernel of {len(kernel)} dimensions on an input of spatial shape {spatial}")
    if int(node.attrs.get("ceil_mode", 0)):
        raise node.fail("ceil_mode=1 is not supported (export with ceil_mode=False)")
    strides = tuple(int(v) for v in node.attrs.get("strides", [1] * n))
    dilations = tuple(int(v) for v in node.attrs.get("dilations", [1] * n))
    pads = [int(v) for v in node.attrs.get("pads", [0] * (2 * n))]
    auto = node.attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = same_pads(spatial, kernel, strides, dilations, upper=auto == "SAME_UPPER")
        pads = begin + end
    elif auto == "VALID":
        pads = [0] * (2 * n)
    elif auto != "NOTSET":
        raise node.fail(f"unknown auto_pad {auto!r}")
    if len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        raise node.fail("strides, dilations or pads do not match the kernel's dimensions")
    if min(strides + dilations) < 1 or min(pads) < 0:
        raise node.fail("strides and dilations must be positive and pads not negative")
    window = Window(spatial, kernel, strides, tuple(pads[:n]), tuple(pads[n:]), dilations)
    if min(window.out_spatial) < 1:
        raise node.fail(f"the kernel {kernel} does not fit the input of spatial shape {spatial}")
    return window


def _conv(g: _Graph, node: _Node) -> list[Value]:
    x = _spatial_input(node)
    w = _float(node.const(1, "weight (second input)"))
    group = int(node.attrs.get("group", 1))
    channels = x.shape[0]
    if w.ndim != len(x.shape) + 1 or group < 1 or channels % group or w.shape[0] % group \
            or w.shape[1] * group != channels:
        raise node.fail(f"a weight of shape {w.shape} with group={group} does not fit an input of shape {x.shape}")
    kernel = tuple(int(k) for k in node.attrs.get("kernel_shape", w.shape[2:]))
    if kernel != tuple(w.shape[2:]):
        raise node.fail(f"kernel_shape {kernel} differs from the weight's {tuple(w.shape[2:])}")
    window = _window(node, x, kernel)
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if isinstance(bias, Affine):
        raise node.fail("the bias (third input) depends on the network input")
    out_shape = (int(w.shape[0]), *window.out_spatial)
    per = int(np.prod(window.out_spatial))
    offset = np.repeat(_float(bias).reshape(-1), per) if bias is not None else np.zeros(w.shape[0] * per)
    if offset.size != w.shape[0] * per:
        raise node.fail(f"a bias of {np.asarray(bias).size} values for {w.shape[0]} output channels")
    out = _linear(g, node, x, conv_matrix(w, channels, window, group), offset).reshaped(out_shape)
    structure = {"op": "Conv", "kernel": list(kernel), "strides": list(window.strides),
                 "pads": list(window.pads_begin + window.pads_end), "dilations": list(window.dilations),
                 "group": group, "in_shape": list(x.shape), "out_shape": list(out_shape),
                 "node": node.name}  # the ONNX node: leo.io.graph finds the module from its scope
    return [replace(out, structure=structure)]


def _pool_kernel(node: _Node) -> tuple[int, ...]:
    if "kernel_shape" not in node.attrs:
        raise node.fail("has no kernel_shape")
    return tuple(int(k) for k in node.attrs["kernel_shape"])


def _average_pool(g: _Graph, node: _Node) -> list[Value]:
    x = _spatial_input(node)
    window = _window(node, x, _pool_kernel(node))
    matrix = average_matrix(x.shape[0], window, bool(node.attrs.get("count_include_pad", 0)))
    return [_linear(g, node, x, matrix, np.zeros(matrix.shape[0])).reshaped((x.shape[0], *window.out_spatial))]


def _global_average_pool(g: _Graph, node: _Node) -> list[Value]:
    x = _spatial_input(node)
    spatial = tuple(x.shape[1:])
    window = Window(spatial, spatial, (1,) * len(spatial), (0,) * len(spatial), (0,) * len(spatial),
                    (1,) * len(spatial))
    matrix = average_matrix(x.shape[0], window, False)
    return [_linear(g, node, x, matrix, np.zeros(matrix.shape[0])).reshaped((x.shape[0], *window.out_spatial))]


def _max_pool(g: _Graph, node: _Node) -> list[Value]:
    """max over the window, exactly: candidates paired level by level, each level one ReLU
    layer of differences, max(a, b) = a + relu(b - a)."""
    if len([o for o in node.outputs if o]) > 1:
        raise node.fail("the indices output is not supported")
    if int(node.attrs.get("storage_order", 0)):
        raise node.fail("storage_order=1 is not supported")
    x = _spatial_input(node)
    window = _window(node, x, _pool_kernel(node))
    shape = (x.shape[0], *window.out_spatial)
    try:
        selections = distinct(max_candidates(x.shape[0], window))
    except ValueError as exc:
        raise node.fail(str(exc)) from None
    candidates = [x.matmul(sel, np.zeros(sel.shape[0]), shape) for sel in selections]
    while len(candidates) > 1:
        pairs = [(candidates[i], candidates[i + 1]) for i in range(0, len(candidates) - 1, 2)]
        diffs = _stack([b.plus(_negate(a)) for a, b in pairs], (len(pairs) * pairs[0][0].size,))
        r = g.emit(diffs, relu=True)
        n = pairs[0][0].size
        merged = [a.plus(r.rows(np.arange(i * n, (i + 1) * n), shape)) for i, (a, _) in enumerate(pairs)]
        candidates = merged + candidates[2 * len(pairs):]
    return [replace(candidates[0], shape=shape)]


def _concat(g: _Graph, node: _Node) -> list[Value]:
    parts = [v for v in node.inputs if v is not None]
    axis = int(node.attrs["axis"])
    if not any(isinstance(v, Affine) for v in parts):
        return [np.concatenate(parts, axis=axis)]
    shapes = [v.shape if isinstance(v, Affine) else tuple(np.shape(v))[1:] for v in parts]
    rank = len(shapes[0])
    axis = axis + rank + 1 if axis < 0 else axis
    if axis == 0:
        raise node.fail("concatenates along the batch dimension")
    if any(len(sh) != rank for sh in shapes) or any(
            sh[:axis - 1] + sh[axis:] != shapes[0][:axis - 1] + shapes[0][axis:] for sh in shapes):
        raise node.fail(f"concatenates tensors of per-sample shapes {shapes} along axis {axis}")
    affines = []
    for v, sh in zip(parts, shapes):
        if isinstance(v, Affine):
            affines.append(v)
        elif np.shape(v)[0] != 1:
            raise node.fail(f"concatenates a constant of shape {np.shape(v)} with the network's data")
        else:
            affines.append(Affine({}, _float(np.asarray(v)).reshape(-1), sh))
    out_shape = list(shapes[0])
    out_shape[axis - 1] = sum(sh[axis - 1] for sh in shapes)
    stacked = _stack(affines, (int(np.prod(out_shape)),))
    # stacked rows are part by part; the result's row-major order interleaves them along the axis
    offsets = np.cumsum([0] + [int(np.prod(sh)) for sh in shapes])
    blocks = [np.arange(offsets[i], offsets[i + 1]).reshape(sh) for i, sh in enumerate(shapes)]
    order = np.concatenate(blocks, axis=axis - 1).ravel()
    return [stacked.rows(order, tuple(out_shape))]


def _transpose(g: _Graph, node: _Node) -> list[Value]:
    x = node.inputs[0]
    perm = node.attrs.get("perm")
    if isinstance(x, np.ndarray):
        return [np.transpose(x, perm)]
    assert isinstance(x, Affine)
    perm = list(perm) if perm is not None else list(range(len(x.shape), -1, -1))
    if sorted(perm) != list(range(len(x.shape) + 1)) or perm[0] != 0:
        raise node.fail(f"perm {perm} does not keep the batch dimension first")
    axes = [p - 1 for p in perm[1:]]
    order = np.arange(x.size).reshape(x.shape).transpose(axes).ravel()
    return [x.rows(order, tuple(x.shape[a] for a in axes))]


def _pad(g: _Graph, node: _Node) -> list[Value]:
    """Padding as rows of the input: constant (``value`` in new positions; a negative pad
    crops), reflect and edge (copies of input entries)."""
    x = node.inputs[0]
    mode = node.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if len(node.inputs) > 1:
        pads = [int(v) for v in node.const(1, "pads").ravel()]
    else:  # opset < 11 keeps them as an attribute
        pads = [int(v) for v in node.attrs.get("pads", [])]
    value = node.inputs[2] if len(node.inputs) > 2 else None
    fill = float(np.asarray(node.const(2, "constant value")).ravel()[0]) if value is not None \
        else float(node.attrs.get("value", 0.0))
    if isinstance(x, np.ndarray):
        if mode != "constant" or len(node.inputs) > 3:
            raise node.fail("only constant padding of constants is supported")
        n = x.ndim
        return [np.pad(x, list(zip(pads[:n], pads[n:])), constant_values=fill)]
    assert isinstance(x, Affine)
    if mode not in ("constant", "reflect", "edge"):
        raise node.fail(f"mode={mode!r} is not supported (constant, reflect and edge are)")
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        raise node.fail("the axes input is not supported")
    rank = len(x.shape) + 1
    if len(pads) != 2 * rank or pads[0] or pads[rank]:
        raise node.fail(f"pads {pads} do not fit a tensor of rank {rank} or pad the batch dimension")
    index = np.arange(x.size).reshape(x.shape)
    begin, end = pads[1:rank], pads[rank + 1:]
    index = index[tuple(slice(max(-b, 0), d - max(-e, 0)) for b, e, d in zip(begin, end, x.shape))]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if mode == "constant":
        index = np.pad(index, widths, constant_values=-1)
    elif index.size and all(w < d or mode == "edge" for (wb, we), d in zip(widths, index.shape) for w in (wb, we)):
        index = np.pad(index, widths, mode=mode)
    else:
        raise node.fail(f"pads {pads} are too wide for {mode} padding of shape {x.shape}")
    if index.size == 0:
        raise node.fail(f"pads {pads} leave no values")
    flat = index.ravel()
    inside = flat >= 0
    out = x.rows(np.where(inside, flat, 0), index.shape)
    keep = inside.astype(np.float64)
    return [out.elementwise(keep, np.where(inside, 0.0, fill))]


def _refuse(why: str) -> Handler:
    def handler(g: _Graph, node: _Node) -> list[Value]:
        raise LeoInputError(f"unsupported ONNX op {node.op} at node '{node.name}': {why}")

    return handler


def _flatten(g: _Graph, node: _Node) -> list[Value]:
    x = node.inputs[0]
    axis = int(node.attrs.get("axis", 1))
    if isinstance(x, np.ndarray):
        axis = axis + x.ndim if axis < 0 else axis
        return [x.reshape(int(np.prod(x.shape[:axis])), -1)]
    assert isinstance(x, Affine)
    axis = axis + len(x.shape) + 1 if axis < 0 else axis
    if axis == 0:
        raise node.fail("axis=0 merges the batch dimension into the features")
    if axis == 1:
        return [x.reshaped((x.size,))]
    lead = int(np.prod(x.shape[:axis - 1]))
    return [x.reshaped((lead, x.size // lead))]


def _target_shape(node: _Node, x: Affine, target: list[int], batch: int | None) -> tuple[int, ...]:
    """Per-sample shape of a Reshape that keeps the batch dimension first."""
    if len(target) < 2 or target[0] not in (-1, 0, 1, batch):
        raise node.fail(f"reshape to {target} does not keep the batch dimension first")
    rest = list(target[1:])
    if not node.attrs.get("allowzero", 0):
        rest = [x.shape[i] if d == 0 and i < len(x.shape) else d for i, d in enumerate(rest)]
    if rest.count(-1) > 1 or any(d < -1 for d in rest):
        raise node.fail(f"invalid target shape {target}")
    known = int(np.prod([d for d in rest if d != -1]))
    if -1 in rest:
        if known == 0 or x.size % known:
            raise node.fail(f"cannot reshape {x.size} values per sample to {target}")
        rest[rest.index(-1)] = x.size // known
    if int(np.prod(rest)) != x.size:
        raise node.fail(f"cannot reshape {x.size} values per sample to {target}")
    return tuple(int(d) for d in rest)


def _reshape(g: _Graph, node: _Node) -> list[Value]:
    if len(node.inputs) > 1:
        target = [int(d) for d in node.const(1, "target shape").ravel()]
    else:  # opset < 5 keeps the shape as an attribute
        target = [int(d) for d in node.attrs.get("shape", [])]
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        if not node.attrs.get("allowzero", 0):
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return [x.reshape(target)]
    assert isinstance(x, Affine)
    return [x.reshaped(_target_shape(node, x, target, g.batch))]


def _identity(g: _Graph, node: _Node) -> list[Value]:
    x = node.inputs[0]
    assert x is not None
    return [x]  # Dropout too: it is the identity at inference; its mask output is not provided


def _constant(g: _Graph, node: _Node) -> list[Value]:
    from onnx import numpy_helper

    a = node.attrs
    if "value" in a:
        return [_float(numpy_helper.to_array(a["value"]))]
    for key, dtype in (("value_float", np.float64), ("value_floats", np.float64),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return [np.array(a[key], dtype=dtype)]
    raise node.fail(f"unsupported constant attribute(s) {sorted(a)}")


def _shape(g: _Graph, node: _Node) -> list[Value]:
    x = node.inputs[0]
    # The batch size of a tensor that depends on the input reads as 1: shape
    # arithmetic only feeds Reshape, which treats a leading 1 as "keep the batch".
    dims = x.shape if isinstance(x, np.ndarray) else (1, *x.shape) if isinstance(x, Affine) else ()
    full = np.array(dims, dtype=np.int64)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    return [full[start:end]]


def _constant_only(fn: Callable[[_Node, list[np.ndarray]], np.ndarray]) -> Handler:
    """Ops that make constants (ConstantOfShape): never on the network's data."""

    def handler(g: _Graph, node: _Node) -> list[Value]:
        if any(isinstance(v, Affine) for v in node.inputs):
            raise node.fail("is supported only on constants (shape arithmetic), not on the network's data")
        return [fn(node, [v for v in node.inputs if v is not None])]

    return handler


def _rearranging(fn: Callable[[_Node, list[np.ndarray]], np.ndarray]) -> Handler:
    """An op that only picks and moves entries (Slice, Squeeze, Unsqueeze, Gather): on
    the network's data it runs on the entries' indices, for a batch of two samples, so
    an op that touches the batch dimension is caught instead of misread."""

    def handler(g: _Graph, node: _Node) -> list[Value]:
        x, rest = node.inputs[0], node.inputs[1:]
        if any(isinstance(v, Affine) for v in rest):
            raise node.fail("reads the network's data as shape or index arguments")
        args = [v for v in rest if v is not None]
        if not isinstance(x, Affine):
            return [fn(node, [v for v in node.inputs if v is not None])]
        index = np.arange(2 * x.size).reshape(2, *x.shape)
        try:
            out = np.asarray(fn(node, [index, *args]))
        except (ValueError, IndexError, np.exceptions.AxisError) as exc:
            raise node.fail(f"cannot apply to per-sample shape {x.shape}: {exc}") from None
        if out.ndim < 1 or out.shape[0] != 2 or not np.array_equal(out[1], out[0] + x.size):
            raise node.fail("moves or slices the batch dimension")
        return [x.rows(out[0].ravel(), tuple(out.shape[1:]))]

    return handler


def _unsqueeze(node: _Node, args: list[np.ndarray]) -> np.ndarray:
    axes = node.attrs["axes"] if "axes" in node.attrs else args[1].ravel().tolist()
    rank = args[0].ndim + len(axes)
    return np.expand_dims(args[0], tuple(sorted(int(a) % rank for a in axes)))


def _squeeze(node: _Node, args: list[np.ndarray]) -> np.ndarray:
    axes = node.attrs.get("axes", args[1].ravel().tolist() if len(args) > 1 else None)
    return np.squeeze(args[0], None if axes is None else tuple(int(a) for a in axes))


def _constant_of_shape(node: _Node, args: list[np.ndarray]) -> np.ndarray:
    from onnx import numpy_helper

    value = node.attrs.get("value")
    fill = numpy_helper.to_array(value).ravel() if value is not None else np.zeros(1, dtype=np.float32)
    return _float(np.full([int(d) for d in args[0].ravel()], fill[0], dtype=fill.dtype))


def _slice(node: _Node, args: list[np.ndarray]) -> np.ndarray:
    data, starts, ends = args[0], args[1].ravel(), args[2].ravel()
    axes = args[3].ravel() if len(args) > 3 else np.arange(len(starts))
    steps = args[4].ravel() if len(args) > 4 else np.ones(len(starts), dtype=np.int64)
    index = [slice(None)] * data.ndim
    for a, b, e, st in zip(axes, starts, ends, steps):
        n = data.shape[int(a)]
        b, e = int(np.clip(b, -n - 1, n)), int(np.clip(e, -n - 1, n))
        index[int(a)] = slice(b, e if e >= -n else None, int(st))
    return data[tuple(index)]


def _cast(g: _Graph, node: _Node) -> list[Value]:
    from onnx import helper

    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(node.attrs["to"])))
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        return [_float(x.astype(dtype))]
    if dtype.kind != "f":
        raise node.fail(f"casts the network's data to {dtype}")
    assert x is not None
    return [x]  # leo computes in float64 whatever the float type


_OPS: dict[str, Handler] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Sub": _sub,
    "Mul": _mul,
    "Div": _div,
    "Neg": _neg,
    "Relu": _relu,
    "BatchNormalization": _batchnorm,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": _identity,
    "Dropout": _identity,
    "Constant": _constant,
    "Shape": _shape,
    "Gather": _rearranging(lambda n, a: np.take(a[0], a[1], axis=int(n.attrs.get("axis", 0)))),
    "Unsqueeze": _rearranging(_unsqueeze),
    "Squeeze": _rearranging(_squeeze),
    "ConstantOfShape": _constant_only(_constant_of_shape),
    "Slice": _rearranging(_slice),
    "Concat": _concat,
    "Cast": _cast,
    "Conv": _conv,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool,
    "MaxPool": _max_pool,
    "Transpose": _transpose,
    "Pad": _pad,
}

#: Ops people have in CNNs that leo refuses with a reason (still exit 2, op and node named).
_REFUSED: dict[str, Handler] = {
    "ConvTranspose": _refuse("transposed convolutions are not supported yet"),
}


# -- the walk ----------------------------------------------------------------------------

def _read_model(path: Path) -> Any:
    import onnx

    if not path.is_file():
        raise LeoInputError(f"no such model file: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-like errors, ...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise LeoInputError(f"cannot read {path} as an ONNX model ({type(exc).__name__}: {first}); "
                            "is it a valid .onnx file?") from None
    if not model.graph.node or not model.graph.input:
        raise LeoInputError(f"{path} holds no ONNX graph (no nodes or no inputs); is it a valid .onnx file?")
    _check(model, str(path))
    return model


def _check(model: Any, what: str) -> None:
    """A damaged file (a flipped bit, a cut-off tensor) fails here, not deep in the walk."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError and protobuf errors
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise LeoInputError(f"{what} is not a valid ONNX model: {first}") from None


def _input_shape(value_info: Any) -> tuple[int, ...]:
    """Per-sample shape of the graph input: all dimensions after the batch one, known."""
    dims = value_info.type.tensor_type.shape.dim
    known = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(known) < 2 or any(d is None or d <= 0 for d in known[1:]):
        shown = [d if d is not None else "?" for d in known]
        raise LeoInputError(f"ONNX input '{value_info.name}' has shape {shown}: expected (batch, features...) "
                            "with known feature dimensions")
    return tuple(int(d) for d in known[1:])  # type: ignore[arg-type]


def supported_ops() -> list[str]:
    return sorted(_OPS)


def load_onnx(path: str | Path) -> Network:
    """The network of an ONNX file; unsupported ops raise LeoInputError naming them."""
    return network_from_onnx(_read_model(Path(path)))


def network_from_onnx(model: Any, source: str = "onnx", batch: int | None = None,
                      op_label: str = "ONNX op", where: str = "") -> Network:
    """The network of an ONNX ``ModelProto``, with its input shape and ``source`` in the metadata.

    ``batch`` is the batch size of an export traced at a fixed batch (a Reshape may
    name it); ``op_label`` names operations in errors ("ONNX op" for files) and
    ``where`` says whose graph it is.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: _float(numpy_helper.to_array(t)) for t in graph.initializer}
    real = [i for i in graph.input if i.name not in inits]
    if len(real) != 1:
        raise LeoInputError(f"the ONNX graph has {len(real)} inputs that are not initializers "
                            f"({[i.name for i in real]}); leo needs exactly one")
    if len(graph.output) != 1:
        raise LeoInputError(f"the ONNX graph has {len(graph.output)} outputs; leo needs exactly one")
    shape = _input_shape(real[0])
    g = _Graph(real[0].name, shape, batch)
    g.values.update(inits)
    for i, node in enumerate(graph.node):
        name = node.name or (node.output[0] if node.output else f"#{i}")
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        handler = _OPS.get(op) or _REFUSED.get(op)
        if handler is None:
            raise LeoInputError(f"unsupported {op_label} {op} at node '{name}'{where}: leo reads feed-forward ReLU "
                                f"networks (supported: {', '.join(supported_ops())})")
        missing = [t for t in node.input if t and t not in g.values]
        if missing:
            raise LeoInputError(f"ONNX node '{name}' reads tensor '{missing[0]}' that no earlier node produces")
        inputs = [g.values[t] if t else None for t in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        try:
            outputs = handler(g, _Node(op, name, inputs, attrs, tuple(node.output)))
        except TooLarge as exc:
            raise LeoInputError(f"{op_label} {op} at node '{name}'{where}: {exc}") from None
        for out_name, value in zip(node.output, outputs):
            if out_name:
                g.values[out_name] = value
    out_name = graph.output[0].name
    out = g.values.get(out_name)
    if not isinstance(out, Affine):
        raise LeoInputError(f"the ONNX output '{out_name}' does not depend on the input")
    if not (g.layers and out.is_identity_of(len(g.layers))):
        g.emit(out, relu=False)
    meta = {INPUT_SHAPE: shape_text(shape), ARCHITECTURE_SOURCE: source}
    return Network(input_dim=int(np.prod(shape)), layers=tuple(g.layers), metadata=meta)
