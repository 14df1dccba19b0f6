"""PyTorch in and out: state_dicts of Linear-ReLU chains, TorchScript archives,
``torch.export`` programs, ``nn.Module`` objects, and TorchScript output that loads
without leo and takes the input shape the original model took.

A state_dict records no architecture, so it is read as Linear→ReLU→...→Linear and
leo says so (a warning, and ``architecture_source`` in the metadata); every other
form is read from its graph (``leo.io.graph``), or by a short path for plain
``nn.Sequential`` chains and leo's own ``SkipNet`` and ``ConvNet`` (what leo writes for a
network with conv layers: nn.Conv2d blocks, so the structured form stays convolutional).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leo.errors import LeoInputError
from leo.io.shape import with_input_shape
# the writer's entry points are re-exported: callers write through leo.io.torch_io
from leo.io.torch_write import EXTRA, dense_weight, save_torchscript, to_module  # noqa: F401
from leo.core.network import ARCHITECTURE_SOURCE, INPUT_SHAPE, Layer, Network, mlp, shape_text

log = logging.getLogger(__name__)

_KEY = re.compile(r"^(?P<prefix>.*?)(?P<index>\d+)\.(?P<kind>weight|bias)$")
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")
_SIMPLE = ("Linear", "ReLU", "Flatten", "Identity", "Dropout")
STATE_DICT_SOURCE = "state_dict (assumed Linear-ReLU chain)"
_NOT_A_MODEL = "is not a PyTorch checkpoint, TorchScript archive, torch.export program or ONNX model"


def state_dict_note(path: object) -> str:
    return (f"read {path} as a state_dict: assumed Linear→ReLU→...→Linear (a state_dict records no "
            "architecture); give TorchScript, torch.export (.pt2) or ONNX to be exact")


def from_state_dict(state: Mapping[str, object], final_relu: bool = False) -> Network:
    """An MLP from ``{'0.weight', '0.bias', '2.weight', ...}``: ReLU between Linear layers.

    The chain is an assumption (a state_dict has no graph); the metadata says so.
    """
    for key in _WRAPPERS:
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and inner:
            state = inner
            break
    layers: dict[int, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        m = _KEY.match(str(key))
        if m is None or not isinstance(value, torch.Tensor):
            raise LeoInputError(f"unsupported entry {key!r} in the state_dict: expected '<index>.weight'/'<index>.bias' of Linear layers")
        layers.setdefault(int(m["index"]), {})[m["kind"]] = value.detach().to(torch.float64).cpu().numpy()
    if not layers:
        raise LeoInputError("the checkpoint holds no Linear layers")
    weights, biases = [], []
    for idx in sorted(layers):
        entry = layers[idx]
        if "weight" not in entry:
            raise LeoInputError(f"layer {idx} has a bias but no weight")
        w = entry["weight"]
        if w.ndim != 2:
            raise LeoInputError(f"layer {idx} has a weight of shape {w.shape}: only Linear layers are supported")
        weights.append(w)
        biases.append(entry.get("bias", np.zeros(w.shape[0])))
    for i in range(1, len(weights)):
        if weights[i].shape[1] != weights[i - 1].shape[0]:
            raise LeoInputError(
                f"layer sizes do not chain: {weights[i - 1].shape[0]} outputs feed {weights[i].shape[1]} inputs"
            )
    return mlp(weights, biases, final_relu=final_relu).with_metadata(**{ARCHITECTURE_SOURCE: STATE_DICT_SOURCE})


def from_module(module: nn.Module, input_shape: tuple[int, ...] | None = None,
                source: str = "nn.Module") -> Network:
    """Leo's network of any ``nn.Module`` (or TorchScript module) built of supported ops.

    ``input_shape`` is the per-sample shape of its input when known (it is then kept in
    the metadata); otherwise a plain chain starting with Linear has a flat input and
    any other module is run on a flat vector as wide as its first weight matrix.
    """
    if _kind(module) == "SkipNet":
        net = _from_skipnet(module)
    elif _kind(module) == "ConvNet":
        net = _from_convnet(module)
    else:
        net = _sequential(module, source)
        if net is None:  # any other module: read its graph on a known or guessed input shape
            from leo.io.graph import module_network

            net = module_network(module, input_shape or _guess_shape(module), source)
            net = net.with_metadata(**{INPUT_SHAPE: None})  # a guess is no record of the shape
    if input_shape is not None:
        net = net.with_metadata(**{INPUT_SHAPE: shape_text(input_shape)})
    return net.with_metadata(**{ARCHITECTURE_SOURCE: source})


def _guess_shape(module: nn.Module) -> tuple[int, ...]:
    from leo.io.graph import guess_input_shape

    return guess_input_shape(module)


def _sequential(module: nn.Module, source: str) -> Network | None:
    """The short path: a (nested) Sequential of Linear/ReLU/Flatten/Identity/Dropout in
    chain order; None for anything else, which the graph reader handles."""
    if _kind(module) != "Sequential":
        return None
    children = _flatten(module)
    weights, biases, relus = [], [], []
    flat_first = True
    for _, child in children:
        kind = _kind(child)
        if kind not in _SIMPLE:
            return None
        if kind == "Linear":
            weights.append(child.weight.detach().to(torch.float64).cpu().numpy())
            bias = child.bias
            biases.append(bias.detach().to(torch.float64).cpu().numpy() if bias is not None
                          else np.zeros(child.weight.shape[0]))
            relus.append(False)
        elif kind == "ReLU":
            if not weights or relus[-1]:
                return None
            relus[-1] = True
        elif kind == "Flatten":
            if weights:
                return None
            flat_first = False
    if not weights:
        return None
    layers = tuple(Layer({k: w}, b, r) for k, (w, b, r) in enumerate(zip(weights, biases, relus)))
    n = int(weights[0].shape[1])
    meta = {ARCHITECTURE_SOURCE: source}
    if flat_first:  # the first op is a Linear layer: the input is a flat vector
        meta[INPUT_SHAPE] = shape_text((n,))
    return Network(n, layers, meta)


def _kind(module: nn.Module) -> str:
    return getattr(module, "original_name", type(module).__name__)


def _flatten(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf layers of a (nested) ``nn.Sequential``, in forward order."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        sub = f"{prefix}.{name}" if prefix else name
        out.extend(_flatten(child, sub) if _kind(child) == "Sequential" else [(sub, child)])
    return out


# -- files ---------------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    """The first sentence of an error, which is what says what went wrong."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.split(". ")[0][:200]


def _zip_names(path: Path) -> list[str] | None:
    """The member names of an intact zip archive; None when it is damaged (torch does not
    check the stored CRCs, so a flipped bit in the weights would be read silently)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return None if zf.testzip() is not None else zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error, NotImplementedError):
        return None


def _is_text(head: bytes) -> bool:
    """Whether the first bytes read as text (a multi-byte character may be cut at the end)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\t\r\n" for c in text)


def load_torch(path: Path, allow_pickle: bool = False, shapes: tuple[tuple[int, ...], ...] = (),
               input_shape: tuple[int, ...] | None = None) -> Network:
    """Read a file by its content: a TorchScript archive, a torch.export program, a
    PyTorch checkpoint (a state_dict; a pickled module only with ``allow_pickle``), or
    an ONNX model whatever its name. ``input_shape`` is the user's (checked against the
    file's when it records one); ``shapes`` are further per-sample shapes to try for a
    module whose file records none."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        raise LeoInputError(f"{path} is empty")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _load_archive(path, allow_pickle, shapes, input_shape)
    if head[:1] == b"\x80":  # a pickle (torch.save's legacy format)
        return _load_checkpoint(path, allow_pickle, shapes, input_shape)
    if _is_text(head):
        raise LeoInputError(f"{path} {_NOT_A_MODEL} (it starts with text)")
    if head[:1] == b"\x08":  # a protobuf whose first field is an integer, as ONNX files start
        from leo.io.onnx_import import load_onnx

        return with_input_shape(load_onnx(path, input_shape), input_shape, path)
    raise LeoInputError(f"{path} {_NOT_A_MODEL} (unrecognised content)")


def _load_archive(path: Path, allow_pickle: bool, shapes: tuple[tuple[int, ...], ...],
                  input_shape: tuple[int, ...] | None) -> Network:
    names = _zip_names(path)
    if names is None:
        raise LeoInputError(f"{path} is a damaged zip archive (truncated or corrupted); "
                            f"it cannot be a valid checkpoint, TorchScript or torch.export file")
    if any(n.endswith("/archive_format") or n.endswith("serialized_exported_program.json") for n in names):
        from leo.io.graph import load_exported_program

        return with_input_shape(load_exported_program(path), input_shape, path)
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        traced = any("/traced_inputs/" in n for n in names)  # torch.jit.trace keeps its example inputs
        return _load_torchscript(path, traced, shapes, input_shape)
    return _load_checkpoint(path, allow_pickle, shapes, input_shape)


def _load_torchscript(path: Path, traced: bool, shapes: tuple[tuple[int, ...], ...],
                      input_shape: tuple[int, ...] | None) -> Network:
    """A TorchScript archive. Its input shape: leo's metadata in the archives leo writes, or
    the example a traced module was traced on (``_restore_shapes`` puts its sizes back on
    the graph's input; torch stores the example since 2.0); a scripted one records none."""
    extra = {EXTRA: ""}
    try:
        module = _jit_load(path, extra, traced)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
        raise LeoInputError(f"cannot read TorchScript archive {path}: {_first_line(exc)}") from None
    shape = None
    if extra[EXTRA]:
        try:
            shape = tuple(int(d) for d in json.loads(extra[EXTRA]).get(INPUT_SHAPE) or ()) or None
        except (ValueError, TypeError, AttributeError):
            raise LeoInputError(f"{path}: leo's metadata in the archive is damaged") from None
    from leo.io.graph import module_shape, traced_shape

    recorded = shape or (traced_shape(module) if traced else None)
    use = module_shape(module, recorded, input_shape, shapes, path)
    return from_module(module, input_shape=use, source="torchscript")


def _jit_load(path: Path, extra: dict[str, str], traced: bool) -> torch.jit.ScriptModule:
    """``torch.jit.load``, restoring a traced module's input sizes where the archive keeps them;
    an archive whose stored example no longer runs is loaded without them."""
    if traced:
        try:
            return torch.jit.load(str(path), map_location="cpu", _extra_files=extra, _restore_shapes=True)
        except Exception:  # noqa: BLE001 - read it again without the sizes; a real fault shows then
            pass
    return torch.jit.load(str(path), map_location="cpu", _extra_files=extra)


def _load_checkpoint(path: Path, allow_pickle: bool, shapes: tuple[tuple[int, ...], ...],
                     input_shape: tuple[int, ...] | None) -> Network:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the error says enough
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # noqa: BLE001
        raise LeoInputError(_checkpoint_error(path, exc, allow_pickle)) from None
    if isinstance(obj, nn.Module):
        from leo.io.graph import module_shape

        use = module_shape(obj, None, input_shape, shapes, path)
        return from_module(obj, input_shape=use, source="nn.Module (pickled)")
    if isinstance(obj, Mapping):
        net = with_input_shape(from_state_dict(obj), input_shape, path)
        log.warning(state_dict_note(path))
        return net
    raise LeoInputError(f"{path} holds a {type(obj).__name__}, not a state_dict or a module")


def _checkpoint_error(path: Path, exc: BaseException, allow_pickle: bool) -> str:
    """One line; --allow-pickle is suggested only when weights-only loading refused
    the pickle (the file is whole but loading it would run code)."""
    text = str(exc)
    if not allow_pickle and "Weights only load failed" in text:
        after = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else ""
        why = next((ln.strip() for ln in after.splitlines() if ln.strip()), "")
        why = why.split(" was not an allowed global")[0].replace("Unsupported global: GLOBAL ", "it needs ")
        return (f"{path} is a pickle that weights-only loading refuses ({why[:120] or 'unsupported content'}): "
                "loading it could run code. Only if you trust the file, --allow-pickle loads it "
                "(a pickled whole module needs that)")
    return f"cannot read {path} as a PyTorch checkpoint: {_first_line(exc)}"


# -- leo's own archives (written by ``leo.io.torch_write``), read back --------------------

def _from_convnet(module: nn.Module) -> Network:
    """The network of a ``ConvNet`` leo wrote, conv layers with their structure."""
    from leo.io.conv import Window, conv_matrix

    layers: list[Layer] = []
    for _, block in module.blocks.named_children():
        if _kind(block) == "PoolBlock":
            layers.extend(_from_pool_block(block, tuple(layers)))
            continue
        if _kind(block) == "PoolAlias":  # its layer came with the run's PoolBlock
            continue
        if _kind(block) != "ConvBlock":
            layers.append(_from_skipnet_block(block))
            continue
        n = len(block.strides)
        kernels = {int(s): conv.weight.detach().to(torch.float64).numpy()
                   for s, (_, conv) in zip(block.sources, block.convs.named_children())}
        size = tuple(next(iter(kernels.values())).shape[2:])
        window = Window(tuple(block.in_shape[1:]), size, tuple(block.strides), tuple(block.pads[:n]),
                        tuple(block.pads[n:]), tuple(block.dilations))
        weights = {s: conv_matrix(k, block.in_shape[0], window, int(block.group)) for s, k in kernels.items()}
        bias = np.broadcast_to(block.bias.detach().to(torch.float64).numpy(), (int(np.prod(block.out_shape)),))
        for _, conv in block.convs.named_children():
            if conv.bias is not None:  # a per-channel bias the conv carries
                bias = bias + np.repeat(conv.bias.detach().to(torch.float64).numpy(), bias.size // block.out_shape[0])
        structure = {"op": "Conv", "kernel": list(size), "strides": list(block.strides),
                     "pads": list(block.pads), "dilations": list(block.dilations), "group": int(block.group),
                     "in_shape": list(block.in_shape), "out_shape": list(block.out_shape)}
        layers.append(Layer(weights, bias, bool(block.relu), tuple(block.out_shape), structure))
    return Network(layers[0].weights[0].shape[1], tuple(layers))


def _from_pool_block(block: nn.Module, before: tuple[Layer, ...]) -> list[Layer]:
    """The layers a ``PoolBlock`` stands for: its MaxPool lowered as the ONNX reader lowers it."""
    from leo.io.pool_export import PoolRun, lowered

    first = len(before) + 1
    run = PoolRun(int(block.source), first, first + int(block.levels), tuple(block.kernel), tuple(block.strides),
                  tuple(block.pads), tuple(block.dilations), tuple(block.in_shape), (), "maxpool")
    return lowered(run, before)[0]


def _from_skipnet_block(block: nn.Module) -> Layer:
    linears = [lin for _, lin in block.linears.named_children()]
    weights = {int(s): dense_weight(lin) for s, lin in zip(block.sources, linears)}
    return Layer(weights, block.bias.detach().to(torch.float64).numpy(), bool(block.relu))


def _from_skipnet(module: nn.Module) -> Network:
    layers = []
    for _, block in module.blocks.named_children():  # scripted ModuleLists do not iterate
        layers.append(_from_skipnet_block(block))
    first = layers[0].weights
    return Network(int(next(iter(first.values())).shape[1]), tuple(layers))
