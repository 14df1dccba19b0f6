"""Ops that make or pass on tensors without arithmetic: Constant, Shape, ConstantOfShape,
Cast, Identity and Dropout (the identity at inference)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leo.io.onnx.values import Affine, Graph, Handler, Node, Value, to_float


def _sparse(value: object) -> np.ndarray:
    """A SparseTensorProto as a dense array (indices flat, or one row of coordinates each)."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(value.values)  # type: ignore[attr-defined]
    indices = numpy_helper.to_array(value.indices)  # type: ignore[attr-defined]
    dims = [int(d) for d in value.dims]  # type: ignore[attr-defined]
    out = np.zeros(dims, dtype=values.dtype)
    if indices.ndim == 1:
        out.reshape(-1)[indices] = values
    else:
        out[tuple(indices.T)] = values
    return out


def constant(g: Graph, node: Node) -> list[Value]:
    from onnx import numpy_helper

    a = node.attrs
    if "value" in a:
        return [to_float(numpy_helper.to_array(a["value"]))]
    if "sparse_value" in a:
        return [to_float(_sparse(a["sparse_value"]))]
    for key, dtype in (("value_float", np.float64), ("value_floats", np.float64),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return [np.array(a[key], dtype=dtype)]
    raise node.fail(f"unsupported constant attribute(s) {sorted(a)} (strings are not numbers)")


def shape(g: Graph, node: Node) -> list[Value]:
    x = node.inputs[0]
    # The batch size of a batched tensor reads as 1: shape arithmetic only feeds
    # Reshape, which treats a leading 1 as "keep the batch".
    dims = x.full_shape if isinstance(x, Affine) else np.shape(x)
    full = np.array(dims, dtype=np.int64)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    return [full[start:end]]


def constant_only(fn: Callable[[Node, list[np.ndarray]], np.ndarray]) -> Handler:
    """Ops that make constants (ConstantOfShape): never on the network's data."""

    def handler(g: Graph, node: Node) -> list[Value]:
        if any(isinstance(v, Affine) for v in node.inputs):
            raise node.fail("is supported only on constants (shape arithmetic), not on the network's data")
        return [fn(node, [v for v in node.inputs if v is not None])]

    return handler


def constant_of_shape(node: Node, args: list[np.ndarray]) -> np.ndarray:
    from onnx import numpy_helper

    value = node.attrs.get("value")
    fill = numpy_helper.to_array(value).ravel() if value is not None else np.zeros(1, dtype=np.float32)
    return to_float(np.full([int(d) for d in args[0].ravel()], fill[0], dtype=fill.dtype))


def cast(g: Graph, node: Node) -> list[Value]:
    """Cast of every opset (``to`` a type name such as b"FLOAT" before opset 6, an enum since)."""
    from onnx import TensorProto, helper

    to = node.attrs["to"]
    code = TensorProto.DataType.Value(to.decode() if isinstance(to, bytes) else to) if isinstance(to, (bytes, str)) \
        else int(to)
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(code))
    x = node.inputs[0]
    if isinstance(x, np.ndarray):
        return [to_float(x.astype(dtype))]
    if dtype.kind != "f":
        raise node.fail(f"casts the network's data to {dtype}: rounding to an integer or bool type is a step "
                        "function, not piecewise linear")
    assert x is not None
    return [x]  # leo computes in float64 whatever the float type


def identity(g: Graph, node: Node) -> list[Value]:
    x = node.inputs[0]
    assert x is not None
    return [x]


def dropout(g: Graph, node: Node) -> list[Value]:
    """The identity at inference (its mask output is not provided); opset 12 on takes
    ``training_mode`` as an input, which must then be a constant false."""
    mode = node.input(2)
    if mode is not None and (not isinstance(mode, np.ndarray) or bool(np.asarray(mode).ravel()[0])):
        raise node.fail("training_mode is on (or not a constant): export the model in eval mode")
    return identity(g, node)
