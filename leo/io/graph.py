"""One reader for every PyTorch form that records its architecture: an ``nn.Module``
(any class), a traced or scripted TorchScript module, and a ``torch.export`` program.

Why through ONNX: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript-based
exporter that ships with torch, no extra package) turns all three into one graph of
standard ops, and ``leo.io.onnx_import`` already walks such a graph with a table of op
handlers (Gemm/MatMul, Relu, Add, Flatten, Reshape, BatchNormalization, ...) that folds
linear ops into leo's layers. So one table serves ONNX files and PyTorch models, and a
later op (Conv, pooling) is added once, there. Checked with torch 2.13: nn.Module,
``torch.jit.script``/``trace`` results (also after save/load) and
``ExportedProgram.module()`` export this way; the newer dynamo exporter would read an
ExportedProgram directly but needs the ``onnxscript`` package, which leo does not
depend on. An ExportedProgram's module cannot switch train/eval mode, hence
``TrainingMode.PRESERVE``; it also guards its input shapes, so it is exported at the
shape it was exported with (a Reshape may then name that batch size).

The export runs in memory; the module's own dtype is kept (a float64 module stays
float64), so leo's network computes what the module computes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from leo.errors import LeoInputError
from leo.io.shape import HOW_TO_GIVE_SHAPE, check_recorded
from leo.core.network import Layer, Network, shape_text


def _dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter warns about tracing and constant folding; none of it is the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_log = logging.getLogger("torch")
        level = torch_log.level
        torch_log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            torch_log.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


@contextlib.contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    """Inference mode for the block, the module's own mode after it (an exported
    program's module has no modes to switch)."""
    was = module.training
    switch = was and not isinstance(module, torch.fx.GraphModule)
    if switch:
        module.eval()
    try:
        with torch.no_grad(), _quiet():
            yield
    finally:
        if switch:
            module.train(was)


def failure(module: nn.Module, shape: tuple[int, ...]) -> str | None:
    """Why ``module`` fails on a batch of one input of per-sample ``shape`` (its error's
    first line), or None when it runs."""
    try:
        with _evaluating(module):
            module(torch.zeros((1, *shape), dtype=_dtype(module)))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not this shape"
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # TorchScript puts the interpreter's traceback first and the error itself last
        scripted = len(lines) > 1 and "TorchScript interpreter" in lines[0]
        return ((lines[-1] if scripted else lines[0]) if lines else type(exc).__name__)[:160]


def runs_on(module: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``module`` accepts a batch of one input of per-sample ``shape``."""
    return failure(module, shape) is None


def guess_input_shape(module: nn.Module, candidates: Iterable[tuple[int, ...]] = ()) -> tuple[int, ...]:
    """A per-sample input shape the module runs on: the candidates first, then a flat
    vector as wide as a weight matrix's columns (the first Linear's inputs). Only for a
    model that records no shape and was given none; a failure says how to give one."""
    tried: list[tuple[int, ...]] = []
    widths = [(int(p.shape[1]),) for p in module.parameters() if p.ndim == 2]
    for shape in [*candidates, *widths]:
        if shape in tried:
            continue
        tried.append(shape)
        if runs_on(module, shape):
            return shape
    shown = ", ".join(str(s) for s in tried) or "none (the model has no weight matrix)"
    raise LeoInputError(f"the model records no input shape and none was given, and it runs on no flat input "
                        f"leo tried ({shown}): {HOW_TO_GIVE_SHAPE}")


def module_shape(module: nn.Module, recorded: tuple[int, ...] | None, given: tuple[int, ...] | None,
                 hints: tuple[tuple[int, ...], ...], what: object) -> tuple[int, ...] | None:
    """The per-sample input shape to read ``module`` on: the user's (it must agree with a
    recorded one, and the module must run on it), else the recorded one, else the first
    hint the module runs on; None when there is none (``from_module`` then tries a flat
    vector, and says how to give a shape when that fails)."""
    if given is not None:
        check_recorded(recorded, given, what)
        why = failure(module, given)
        if why is not None:
            batch = len(given) > 1 and given[0] == 1 and runs_on(module, given[1:])
            hint = f"; it runs on {shape_text(given[1:])}: give one input's shape, without the batch dimension" \
                if batch else ""
            raise LeoInputError(f"{what} does not run on inputs of shape {shape_text(given)} given by "
                                f"--input-shape / input_shape= ({why}){hint}")
        return given
    if recorded is not None:
        return recorded
    return next((s for s in hints if runs_on(module, s)), None)


def traced_shape(module: nn.Module) -> tuple[int, ...] | None:
    """The per-sample input shape a traced TorchScript module was traced on, from its graph's
    input type (a scripted module's carries no sizes: None). The traced example usually has
    a batch dimension; one without (a Linear traced on a vector) is recognised by running."""
    try:
        inputs = list(module.graph.inputs())[1:]  # the first is the module itself
    except (AttributeError, RuntimeError):
        return None
    kind = inputs[0].type() if len(inputs) == 1 else None
    sizes = kind.sizes() if isinstance(kind, torch._C.TensorType) else None
    if not sizes or any(d is None or d <= 0 for d in sizes):
        return None
    full = tuple(int(d) for d in sizes)
    return next((s for s in (full[1:], full) if s and runs_on(module, s)), None)


def _export(module: nn.Module, example: torch.Tensor, dynamic_batch: bool, exported: bool) -> bytes:
    """The ONNX bytes of ``module`` traced on ``example``.

    Tracing records one path through Python code: a forward that branches on, or
    converts, the input's values would be baked in for the example. torch says so with a
    TracerWarning, which is an error here, except for a torch.export program (its graph
    has no Python control flow; its input-shape guards trigger the warning). Such a
    program cannot switch train/eval mode, so its mode is preserved.
    """
    training = torch.onnx.TrainingMode.PRESERVE if exported else torch.onnx.TrainingMode.EVAL
    buf = io.BytesIO()
    axes = {"x": {0: "batch"}} if dynamic_batch else None
    with torch.no_grad(), _quiet(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        torch.onnx.export(module, (example,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes=axes, training=training, opset_version=17)
    for w in [] if exported else caught:
        if issubclass(w.category, torch.jit.TracerWarning) and "Converting a tensor to a Python" in str(w.message):
            raise LeoInputError(f"the model's forward depends on the values of its input in Python code "
                                f"({str(w.message).split('.')[0]}), so no graph records it; script it with "
                                "torch.jit.script or write it without data-dependent Python code")
    return buf.getvalue()


def module_network(module: nn.Module, shape: tuple[int, ...], source: str, *,
                   batch: int = 1, exported: bool = False) -> Network:
    """Leo's network of ``module`` on inputs of per-sample ``shape``, via an in-memory ONNX export.

    Unsupported operations become a LeoInputError naming the op and its node; the result
    is confirmed against the module's own forward on random inputs.
    """
    import onnx

    from leo.io.onnx_import import network_from_onnx

    example = torch.zeros((batch, *shape), dtype=_dtype(module))
    dynamic_batch = not exported  # an exported program guards its batch size
    try:
        data = _export(module, example, dynamic_batch, exported)
    except LeoInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
        raise LeoInputError(f"cannot read the {source} model's graph: {_first_line(exc)} "
                            "(leo reads Linear, ReLU, Add, Flatten/reshape and affine ops)") from None
    model = onnx.load_from_string(data)
    net = network_from_onnx(model, source=source, batch=batch if not dynamic_batch else None,
                            op_label="operation", where=f" of the {source} model")
    _confirm(module, net, shape, batch, source)
    return with_module_paths(net, module)


def with_module_paths(net: Network, module: nn.Module) -> Network:
    """``net`` with ``structure["module"]`` on each conv layer whose ONNX node names a
    Conv submodule of ``module`` of the same shape (so the user's own module can be
    pruned where leo proved channels dead); other layers unchanged."""
    modules = dict(module.named_modules())
    layers = []
    for layer in net.layers:
        st = dict(layer.structure) if layer.structure is not None else None
        path = conv_module_path(modules, str(st.get("node", ""))) if st else None
        if st is not None and path is not None and _same_conv(modules[path], st):
            st["module"] = path
            layer = Layer(dict(layer.weights), layer.bias, layer.relu, layer.shape, st)
        layers.append(layer)
    return Network(net.input_dim, tuple(layers), dict(net.metadata))


def conv_module_path(modules: dict[str, nn.Module], node_name: str) -> str | None:
    """The submodule path an exported node's scopes name, or None.

    torch 2.13's TorchScript exporter (``dynamo=False``) names a node by its module
    scopes, each a tail of the submodule's path: ``/stem/stem.0/Conv``,
    ``/block/conv/Conv``, ``/layers.0/seq/seq.0/Conv``; a module called twice gets a
    suffix (``/shared_1/Conv``). Each scope is matched to the shortest path below the
    previous one that ends with it (the suffix stripped only when nothing matches).
    """
    path = ""
    for scope in [s for s in node_name.split("/")[1:-1] if s]:
        base, _, digits = scope.rpartition("_")
        found = _below(modules, path, scope) or (_below(modules, path, base) if base and digits.isdigit() else None)
        if found is None:
            return None
        path = found
    return path or None


def _below(modules: dict[str, nn.Module], path: str, tail: str) -> str | None:
    """The shortest submodule path under ``path`` that ends with the scope ``tail``."""
    hits = [name for name in modules if name and (not path or name.startswith(path + "."))
            and (name == tail or name.endswith("." + tail))]
    return min(hits, key=len) if hits else None


def _same_conv(conv: nn.Module, st: dict) -> bool:
    """Whether ``conv`` is a Conv module with the lowered layer's channels, kernel, strides and groups."""
    if not isinstance(conv, nn.modules.conv._ConvNd) or isinstance(conv, nn.modules.conv._ConvTransposeNd):
        return False
    return (conv.in_channels == int(st["in_shape"][0]) and conv.out_channels == int(st["out_shape"][0])
            and list(conv.kernel_size) == list(st["kernel"]) and list(conv.stride) == list(st["strides"])
            and list(conv.dilation) == list(st["dilations"]) and conv.groups == int(st["group"]))


def _confirm(module: nn.Module, net: Network, shape: tuple[int, ...], batch: int, source: str) -> None:
    """leo's network computes what the module computes, on 64 random inputs (a last guard
    against a graph that does not say everything the forward does)."""
    dtype = _dtype(module)
    x = torch.randn((64 // batch) * batch or batch, *shape, generator=torch.Generator().manual_seed(0),
                    dtype=dtype)
    try:
        with _evaluating(module):
            want = torch.cat([module(chunk).reshape(len(chunk), -1) for chunk in x.split(batch)])
    except Exception as exc:  # noqa: BLE001
        raise LeoInputError(f"the {source} model fails on inputs of shape {tuple(x.shape[1:])}: "
                            f"{_first_line(exc)}") from None
    want_np = want.to(torch.float64).numpy()
    got = net(x.reshape(len(x), -1).to(torch.float64).numpy())
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    diff = float(abs(got - want_np).max()) if got.shape == want_np.shape else float("inf")
    if not diff <= tol * (1.0 + float(abs(want_np).max())):
        raise LeoInputError(f"leo's reading of the {source} model differs from its own forward by {diff:.3g} "
                            "on random inputs; the model does something leo's graph reader does not see")


def load_exported_program(path: Path) -> Network:
    """A ``torch.export`` program saved with ``torch.export.save`` (``.pt2``)."""
    try:
        with _quiet():
            program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails in many ways
        raise LeoInputError(f"cannot read {path} as a torch.export program: {_first_line(exc)}") from None
    user = [n for n in program.graph.nodes if n.op == "placeholder"
            and n.name in set(program.graph_signature.user_inputs)]
    if len(user) != 1:
        raise LeoInputError(f"the torch.export program {path} takes {len(user)} inputs; leo needs exactly one")
    val = user[0].meta.get("val")
    if val is None or not hasattr(val, "shape") or len(val.shape) < 2:
        raise LeoInputError(f"the torch.export program {path} takes an input without a (batch, ...) shape")
    dims = [_concrete(d) for d in val.shape]
    module = program.module()
    return module_network(module, tuple(dims[1:]), "torch.export", batch=dims[0], exported=True)


def _concrete(dim: object) -> int:
    """A dimension of an exported input: an int, or a symbolic one's example value."""
    if isinstance(dim, int):
        return dim
    hint = getattr(getattr(dim, "node", None), "hint", None)
    if hint is None:
        raise LeoInputError(f"the torch.export program has an input dimension {dim} without a known size")
    return int(hint)
