"""Arithmetic ops: Gemm, MatMul, Add/Sub/Mul/Div, Neg, Relu, Clip, BatchNormalization.

Linear ops compose into the ``Affine`` map, so input normalisation folds into the first
layer and a BatchNormalization into the layer before it; Relu turns the map into a
layer. Clip is exact with two ReLUs: max(x, lo) = lo + relu(x - lo) and
min(y, hi) = hi - relu(hi - y).
"""

from __future__ import annotations

import numpy as np

from leo.io.conv import check_size
from leo.io.onnx.values import (Affine, Graph, Handler, Node, Value, as_batched, broadcast_to, constant_over, linear,
                                negate, to_float, unbatched)

#: A Clip bound at or beyond float32's range is no bound (Clip-6's defaults are those values).
NO_BOUND = 3.4e38


def _weight_on_last_axis(node: Node, x: Affine, w: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """The matrix that applies ``w`` (K, N) along the last axis of ``x``, and the result's shape."""
    if not x.shape or x.shape[-1] != w.shape[0]:
        raise node.fail(f"a weight of shape {list(w.shape)} does not fit a tensor of shape {list(x.full_shape)}")
    prefix = int(np.prod(x.shape[:-1]))
    check_size(prefix * w.shape[1], x.size)
    matrix = w.T if prefix == 1 else np.kron(np.eye(prefix), w.T)
    return matrix, (*x.shape[:-1], int(w.shape[1]))


def gemm(g: Graph, node: Node) -> list[Value]:
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    b = to_float(node.const(1, "second input (the weight)"))
    if node.attrs.get("transB", 0):
        b = b.T
    c = node.input(2)
    if isinstance(c, Affine):
        raise node.fail("the bias (third input) depends on the network input")
    a = node.inputs[0]
    if isinstance(a, np.ndarray):
        a = a.T if node.attrs.get("transA", 0) else a
        return [alpha * (a @ b) + (beta * c if c is not None else 0.0)]
    assert isinstance(a, Affine)
    if node.attrs.get("transA", 0):
        raise node.fail("transA=1 on the network's data would mix the batch dimension")
    if len(a.full_shape) != 2 or b.ndim != 2:
        raise node.fail(f"needs a flat input per sample and a weight matrix, got shapes {list(a.shape)} and "
                        f"{list(b.shape)}: add a Flatten before it")
    matrix, shape = _weight_on_last_axis(node, a, alpha * b)
    out = (1, *shape) if a.batched else shape
    offset = beta * constant_over(node, to_float(c), out) if c is not None else np.zeros(int(np.prod(shape)))
    return [linear(g, node, a, matrix, offset, shape)]


def matmul(g: Graph, node: Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [a @ b]
    if not isinstance(a, Affine) or not isinstance(b, np.ndarray) or b.ndim not in (1, 2):
        raise node.fail("only data @ constant-weight is supported (the weight a matrix, the second operand)")
    w = to_float(b).reshape(b.shape[0], -1)
    matrix, shape = _weight_on_last_axis(node, a, w)
    return [linear(g, node, a, matrix, np.zeros(matrix.shape[0]), shape if b.ndim == 2 else shape[:-1])]


def _with_constant(node: Node, x: Affine, c: np.ndarray) -> tuple[Affine, np.ndarray]:
    """``x`` broadcast against the constant ``c``, and ``c`` over the result (flat)."""
    x = broadcast_to(node, x, np.shape(c))
    return x, constant_over(node, c, x.full_shape)


def add(g: Graph, node: Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [a + b]
    if isinstance(a, Affine) and isinstance(b, Affine):
        if a.batched != b.batched:
            a, b = unbatched(a), unbatched(b)
        a = broadcast_to(node, a, b.full_shape)
        b = broadcast_to(node, b, a.full_shape)
        return [a.plus(b)]
    x, c = (a, b) if isinstance(a, Affine) else (b, a)
    assert isinstance(x, Affine) and isinstance(c, np.ndarray)
    x, offset = _with_constant(node, x, c)
    return [x.elementwise(np.ones(x.size), offset)]


def neg(g: Graph, node: Node) -> list[Value]:
    x = node.inputs[0]
    assert x is not None
    return [negate(x)]


def sub(g: Graph, node: Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    assert a is not None and b is not None
    return add(g, node.with_inputs([a, negate(b)]))


def mul(g: Graph, node: Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [a * b]
    if isinstance(a, Affine) and isinstance(b, Affine):
        raise node.fail("multiplies two tensors that depend on the input (not linear)")
    x, c = (a, b) if isinstance(a, Affine) else (b, a)
    assert isinstance(x, Affine) and isinstance(c, np.ndarray)
    x, scale = _with_constant(node, x, c)
    return [x.elementwise(scale, np.zeros(x.size))]


def div(g: Graph, node: Node) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [a / b]
    if not isinstance(b, np.ndarray) or not isinstance(a, Affine):
        raise node.fail("divides by a tensor that depends on the input (not linear)")
    x, d = _with_constant(node, a, b)
    if not np.all(d != 0):
        raise node.fail("divides by zero")
    return [x.elementwise(1.0 / d, np.zeros(x.size))]


def _shape_of(v: Value | None) -> tuple[int, ...]:
    return v.full_shape if isinstance(v, Affine) else tuple(np.shape(v))


def legacy_broadcast(handler: Handler) -> Handler:
    """Add/Sub/Mul/Div of opsets 1-6: without ``broadcast=1`` both shapes are equal; with it
    the second operand's shape matches a contiguous run of the first's dims starting at
    ``axis`` (by default the trailing dims, as numpy aligns them)."""

    def read(g: Graph, node: Node) -> list[Value]:
        a, b = node.inputs[0], node.inputs[1]
        if not int(node.attrs.get("broadcast", 0)):
            if _shape_of(a) != _shape_of(b):
                raise node.fail(f"broadcast=0 needs equal shapes, got {list(_shape_of(a))} and {list(_shape_of(b))}")
            return handler(g, node)
        rank, brank = len(_shape_of(a)), len(_shape_of(b))
        axis = int(node.attrs.get("axis", rank - brank))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis <= rank - brank:
            raise node.fail(f"axis={axis} does not place a tensor of rank {brank} inside one of rank {rank}")
        if axis + brank == rank:
            return handler(g, node)
        if not isinstance(b, np.ndarray):
            raise node.fail("broadcasts a tensor that depends on the input along an axis")
        aligned = b.reshape(*b.shape, *([1] * (rank - axis - brank)))
        return handler(g, node.with_inputs([a, aligned]))

    return read


def relu(g: Graph, node: Node) -> list[Value]:
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        return [np.maximum(x, 0)]
    assert isinstance(x, Affine)
    return [g.emit(x, relu=True)]


def _bound(value: object) -> float | None:
    if value is None:
        return None
    v = float(np.asarray(value, dtype=np.float64).ravel()[0])
    return None if abs(v) >= NO_BOUND else v


def _clip(g: Graph, node: Node, lo: float | None, hi: float | None) -> list[Value]:
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        return [np.clip(x, lo, hi) if lo is not None or hi is not None else x]
    assert isinstance(x, Affine)
    ones = np.ones(x.size)
    if lo is not None:
        x = g.emit(x.elementwise(ones, -lo * ones), relu=True).elementwise(ones, lo * ones)
    if hi is not None:
        x = g.emit(x.elementwise(-ones, hi * ones), relu=True).elementwise(-ones, hi * ones)
    return [x]


def clip_attributes(g: Graph, node: Node) -> list[Value]:
    """Clip of opsets 1-6: the bounds are attributes."""
    return _clip(g, node, _bound(node.attrs.get("min")), _bound(node.attrs.get("max")))


def clip_inputs(g: Graph, node: Node) -> list[Value]:
    """Clip of opset 11 on: the bounds are optional (constant) inputs."""
    lo = node.const(1, "min") if node.input(1) is not None else None
    hi = node.const(2, "max") if node.input(2) is not None else None
    return _clip(g, node, _bound(lo), _bound(hi))


def batchnorm(g: Graph, node: Node) -> list[Value]:
    """Inference batch normalisation (every opset): ``spatial=0`` (opsets 1-7) keeps one
    statistic per element instead of per channel; a training graph is refused."""
    if node.attrs.get("training_mode", 0) or len([o for o in node.outputs if o]) > 1:
        raise node.fail("training mode (running statistics as outputs) is not an inference graph; "
                        "export the model in eval mode")
    scale, bias, mean, var = (to_float(node.const(i, what)) for i, what in
                              [(1, "scale"), (2, "bias"), (3, "running mean"), (4, "running variance")])
    factor = scale / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    offset = bias - mean * factor
    spatial = int(node.attrs.get("spatial", 1))
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        expand = (1, *np.shape(factor)) if not spatial else (-1,) + (1,) * (x.ndim - 2)
        return [x * factor.reshape(expand) + offset.reshape(expand)]
    assert isinstance(x, Affine)
    x = as_batched(node, x)
    shape = x.shape if not spatial else (-1,) + (1,) * (len(x.shape) - 1)  # channels: axis 1 of (batch, C, ...)
    if factor.size != (x.size if not spatial else x.shape[0]):
        raise node.fail(f"statistics of {factor.size} values for a tensor of per-sample shape {list(x.shape)}")
    full = x.full_shape
    return [x.elementwise(constant_over(node, factor.reshape(shape), full),
                          constant_over(node, offset.reshape(shape), full))]
