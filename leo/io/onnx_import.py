"""ONNX in: feed-forward ReLU networks as torch.onnx and verification benchmarks
(VNN-COMP, ERAN) write them.

The graph is walked once, in its (topological) node order. Every tensor is either a
constant (a numpy array) or an ``Affine``: a per-sample vector that is an affine
function of outputs of layers already emitted. Linear ops (Gemm, MatMul, Add, Sub,
Mul, Div by constants, BatchNormalization, reshapes) compose into that affine map; a
Relu turns it into a Layer. So input normalisation folds into the first Linear layer
and a BatchNormalization into the layer before it, with no pattern matching on the
graph. Everything is computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from leo.errors import LeoInputError
from leo.network import ARCHITECTURE_SOURCE, INPUT_SHAPE, Layer, Network, shape_text


@dataclass(frozen=True)
class Affine:
    """A tensor that depends on the input: ``sum_s terms[s] @ h_s + bias`` per sample.

    A 1-D term is a diagonal matrix (kept as its diagonal, so the identity on a
    784-pixel input costs 784 numbers). ``shape`` is the per-sample shape (no batch
    dimension); the vector is that tensor in row-major order. ``mixed`` says a weight
    matrix was applied since the last layer: the next one starts a new (linear) layer
    instead of multiplying two weight matrices together.
    """

    terms: Mapping[int, np.ndarray]
    bias: np.ndarray
    shape: tuple[int, ...]
    mixed: bool = False

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
        return Affine(terms, scale * self.bias + offset, self.shape, self.mixed)

    def plus(self, other: Affine) -> Affine:
        terms = dict(self.terms)
        for s, t in other.terms.items():
            terms[s] = _add_terms(terms[s], t) if s in terms else t
        return Affine(terms, self.bias + other.bias, self.shape, self.mixed or other.mixed)

    def reshaped(self, shape: tuple[int, ...]) -> Affine:
        return Affine(self.terms, self.bias, shape, self.mixed)

    def is_identity_of(self, source: int) -> bool:
        t = self.terms.get(source)
        return (set(self.terms) == {source} and t is not None and t.ndim == 1
                and bool(np.all(t == 1.0)) and not self.bias.any())


Value = Union[np.ndarray, Affine]


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
        self.layers.append(Layer({s: _dense(t) for s, t in value.terms.items()}, value.bias, relu))
        return Affine({len(self.layers): np.ones(value.size)}, np.zeros(value.size), value.shape)


@dataclass(frozen=True)
class _Node:
    """One ONNX node with its inputs resolved (None for an omitted optional input)."""

    op: str
    name: str
    inputs: list[Value | None]
    attrs: dict[str, Any]

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
    """Shape arithmetic (Gather, Unsqueeze, Concat, ...): only on constants."""

    def handler(g: _Graph, node: _Node) -> list[Value]:
        if any(isinstance(v, Affine) for v in node.inputs):
            raise node.fail("is supported only on constants (shape arithmetic), not on the network's data")
        return [fn(node, [v for v in node.inputs if v is not None])]

    return handler


def _unsqueeze(node: _Node, args: list[np.ndarray]) -> np.ndarray:
    axes = node.attrs["axes"] if "axes" in node.attrs else args[1].ravel().tolist()
    rank = args[0].ndim + len(axes)
    return np.expand_dims(args[0], tuple(sorted(int(a) % rank for a in axes)))


def _squeeze(node: _Node, args: list[np.ndarray]) -> np.ndarray:
    axes = node.attrs.get("axes", args[1].ravel().tolist() if len(args) > 1 else None)
    return np.squeeze(args[0], None if axes is None else tuple(int(a) for a in axes))


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
    "Gather": _constant_only(lambda n, a: np.take(a[0], a[1], axis=int(n.attrs.get("axis", 0)))),
    "Unsqueeze": _constant_only(_unsqueeze),
    "Squeeze": _constant_only(_squeeze),
    "Concat": _constant_only(lambda n, a: np.concatenate(a, axis=int(n.attrs["axis"]))),
    "Cast": _cast,
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
        handler = _OPS.get(op)
        if handler is None:
            raise LeoInputError(f"unsupported {op_label} {op} at node '{name}'{where}: leo reads feed-forward ReLU "
                                f"networks (supported: {', '.join(supported_ops())})")
        missing = [t for t in node.input if t and t not in g.values]
        if missing:
            raise LeoInputError(f"ONNX node '{name}' reads tensor '{missing[0]}' that no earlier node produces")
        inputs = [g.values[t] if t else None for t in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        outputs = handler(g, _Node(op, name, inputs, attrs))
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
