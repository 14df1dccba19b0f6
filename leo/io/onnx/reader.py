"""The walk: an ONNX graph, node by node in its (topological) order, into a ``Network``.

Every tensor is a constant or an ``Affine`` map of the input (``leo.io.onnx.values``);
each node's reader comes from the op table (``leo.io.onnx.table``) by op type and the
version the model's opset resolves to. Everything is computed in float64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from leo.errors import LeoInputError
from leo.io.conv import TooLarge
from leo.io.sparse import dense_from_flat
from leo.io.onnx.table import NOT_PIECEWISE_LINEAR, UnknownVersion, handler_for, supported_ops
from leo.io.onnx.values import Affine, Graph, Node, to_float
from leo.io.shape import HOW_TO_GIVE_SHAPE
from leo.core.network import ARCHITECTURE_SOURCE, INPUT_SHAPE, Network, shape_text

#: The opset assumed for a model that declares none for the default domain (onnx's own default).
DEFAULT_OPSET = 1


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


def _input_shape(value_info: Any, batch: int | None,
                 given: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], bool]:
    """The graph input's shape and whether its first axis is a batch: a symbolic first
    dimension, or 1, or the ``batch`` of an export. Any other fully known shape (a [5] or
    [3, 32, 32] input) has no batch axis: the whole tensor is one input. Feature dimensions
    the file leaves open come from ``given`` (one input's shape, ``--input-shape``), which
    must agree with the ones it fixes."""
    dims = value_info.type.tensor_type.shape.dim
    known = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    shown = [d if d is not None else "?" for d in known]
    if known and all(d is not None for d in known) and (len(known) == 1 or known[0] not in (1, batch)):
        return tuple(int(d) for d in known), False  # type: ignore[arg-type]
    open_features = len(known) >= 2 and any(d is None for d in known[1:])
    if open_features and given is not None and len(given) == len(known) - 1 and all(
            k is None or k == g for k, g in zip(known[1:], given)):
        return tuple(int(d) for d in given), True
    if len(known) < 2 or open_features:
        hint = f"; {HOW_TO_GIVE_SHAPE}" if open_features else ""
        raise LeoInputError(f"ONNX input '{value_info.name}' has shape {shown}: expected (batch, features...) "
                            f"with known feature dimensions{hint}")
    return tuple(int(d) for d in known[1:]), True  # type: ignore[arg-type]


def _first_dim(value_info: Any) -> int | None:
    """The literal first dimension of a graph input; None when symbolic or absent."""
    dims = value_info.type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None


#: The largest integer magnitude below which every integer is exact in float64.
FLOAT64_EXACT_INTEGERS = 2 ** 53


def _constant_output(name: str, value: np.ndarray, input_dim: int) -> Affine:
    """A graph output that does not depend on the input (``Shape(X)``, a cast of a constant),
    as zero weights on the input and its values as the bias: exact when every value is a
    number float64 holds exactly."""
    if value.dtype.kind not in "biuf":
        raise LeoInputError(f"the ONNX output '{name}' is a constant of type {value.dtype}, not a number")
    if value.dtype.kind in "iu" and value.size and int(np.max(np.abs(value))) > FLOAT64_EXACT_INTEGERS:
        raise LeoInputError(f"the ONNX output '{name}' is an integer constant beyond 2^53, which float64 "
                            "cannot hold exactly")
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    return Affine({0: np.zeros((flat.size, input_dim))}, flat, tuple(value.shape), batched=False)


def _opset(model: Any) -> int:
    versions = [int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else DEFAULT_OPSET


def _sparse_initializers(graph: Any) -> dict[str, np.ndarray]:
    """The graph's sparse initializers, dense (leo's weights are dense matrices), by the
    name of their values; indices flat (row-major) or one row of coordinates per value."""
    from onnx import numpy_helper

    out = {}
    for t in graph.sparse_initializer:
        shape = tuple(int(d) for d in t.dims)
        values = to_float(numpy_helper.to_array(t.values))
        index = numpy_helper.to_array(t.indices).astype(np.int64)
        try:
            if index.ndim == 2:
                index = np.ravel_multi_index(tuple(index.T), shape) if index.size else index.reshape(-1)
            out[t.values.name] = dense_from_flat(shape, index, values)
        except ValueError as exc:
            raise LeoInputError(f"sparse initializer '{t.values.name}': {exc}") from None
    return out


def _last_uses(graph: Any) -> dict[int, list[str]]:
    """Per node, the tensors no later node reads (nor the graph's output): the walk drops
    them after it, so a conv's dense matrix is not held twice (by its tensor and by the layer
    made of it) while the rest of a large network is read."""
    last: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for t in [*node.input, *node.output]:
            if t:
                last[t] = i
    keep = {o.name for o in graph.output}
    out: dict[int, list[str]] = {}
    for t, i in last.items():
        if t not in keep:
            out.setdefault(i, []).append(t)
    return out


def load_onnx(path: str | Path, input_shape: tuple[int, ...] | None = None) -> Network:
    """The network of an ONNX file; unsupported ops raise LeoInputError naming them.
    ``input_shape`` fills feature dimensions the file leaves open."""
    return network_from_onnx(_read_model(Path(path)), input_shape=input_shape)


def _unsupported(op: str, name: str, op_label: str, where: str) -> LeoInputError:
    why = ("it is not piecewise linear, and leo's proofs are exact only on piecewise-linear networks"
           if op in NOT_PIECEWISE_LINEAR else "leo reads piecewise-linear networks")
    return LeoInputError(f"unsupported {op_label} {op} at node '{name}'{where}: {why} "
                         f"(supported: {', '.join(supported_ops())})")


def network_from_onnx(model: Any, source: str = "onnx", batch: int | None = None,
                      op_label: str = "ONNX op", where: str = "",
                      input_shape: tuple[int, ...] | None = None) -> Network:
    """The network of an ONNX ``ModelProto``, with its input shape and ``source`` in the metadata.

    ``batch`` is the batch size of an export traced at a fixed batch (a Reshape may
    name it); ``op_label`` names operations in errors ("ONNX op" for files) and
    ``where`` says whose graph it is; ``input_shape`` fills feature dimensions the graph
    leaves open.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: to_float(numpy_helper.to_array(t)) for t in graph.initializer}
    inits.update(_sparse_initializers(graph))
    real = [i for i in graph.input if i.name not in inits]
    if len(real) != 1:
        raise LeoInputError(f"the ONNX graph has {len(real)} inputs that are not initializers "
                            f"({[i.name for i in real]}); leo needs exactly one")
    if len(graph.output) != 1:
        raise LeoInputError(f"the ONNX graph has {len(graph.output)} outputs; leo needs exactly one")
    shape, batched = _input_shape(real[0], batch, input_shape)
    g = Graph.start(real[0].name, shape, batched, batch, single_sample=batched and batch is None
                    and _first_dim(real[0]) == 1)
    g.values.update(inits)
    opset = _opset(model)
    done = _last_uses(graph)
    for i, node in enumerate(graph.node):
        name = node.name or (node.output[0] if node.output else f"#{i}")
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        try:
            handler = handler_for(op, opset) if node.domain in ("", "ai.onnx") else None
        except UnknownVersion as exc:
            raise LeoInputError(f"unsupported {op_label} {op} at node '{name}'{where}: {exc}") from None
        if handler is None:
            raise _unsupported(op, name, op_label, where)
        missing = [t for t in node.input if t and t not in g.values]
        if missing:
            raise LeoInputError(f"ONNX node '{name}' reads tensor '{missing[0]}' that no earlier node produces")
        inputs = [g.values[t] if t else None for t in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        try:
            outputs = handler(g, Node(op, name, inputs, attrs, tuple(node.output)))
        except TooLarge as exc:
            raise LeoInputError(f"{op_label} {op} at node '{name}'{where}: {exc}") from None
        for out_name, value in zip(node.output, outputs):
            if out_name:
                g.values[out_name] = value
        for t in done.get(i, ()):
            g.values.pop(t, None)
    out_name = graph.output[0].name
    out = g.values.get(out_name)
    if isinstance(out, np.ndarray):
        out = _constant_output(out_name, out, int(np.prod(shape)))
    if not isinstance(out, Affine):
        raise LeoInputError(f"the ONNX output '{out_name}' is not a numeric tensor")
    if not (g.layers and out.is_identity_of(len(g.layers))):
        g.emit(out, relu=False)
    meta = {INPUT_SHAPE: shape_text(shape), ARCHITECTURE_SOURCE: source}
    return Network(input_dim=int(np.prod(shape)), layers=tuple(g.layers), metadata=meta)
