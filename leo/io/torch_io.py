"""PyTorch in and out: state_dicts of ``nn.Sequential`` MLPs, TorchScript archives,
``nn.Module`` objects, and TorchScript output that loads without leo."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leo.errors import LeoInputError
from leo.network import Layer, Network, mlp

_KEY = re.compile(r"^(?P<prefix>.*?)(?P<index>\d+)\.(?P<kind>weight|bias)$")
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def from_state_dict(state: Mapping[str, object], final_relu: bool = False) -> Network:
    """An MLP from ``{'0.weight', '0.bias', '2.weight', ...}``: ReLU between Linear layers."""
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
    return mlp(weights, biases, final_relu=final_relu)


def from_module(module: nn.Module) -> Network:
    """A network from an ``nn.Module`` made of Linear, ReLU, Flatten, Identity, Dropout
    (or a ``SkipNet`` that leo wrote)."""
    if _kind(module) == "SkipNet":
        return _from_skipnet(module)
    children = _flatten(module)
    weights, biases, relus = [], [], []
    for name, child in children:
        kind = getattr(child, "original_name", type(child).__name__)
        if kind == "Linear":
            weights.append(child.weight.detach().to(torch.float64).cpu().numpy())
            bias = child.bias
            biases.append(bias.detach().to(torch.float64).cpu().numpy() if bias is not None
                          else np.zeros(child.weight.shape[0]))
            relus.append(False)
        elif kind == "ReLU":
            if not weights or relus[-1]:
                raise LeoInputError(f"layer {name}: a ReLU must follow a Linear layer")
            relus[-1] = True
        elif kind in ("Flatten", "Identity", "Dropout"):
            if kind == "Flatten" and weights:
                raise LeoInputError(f"layer {name}: Flatten is only supported before the first Linear layer")
        else:
            raise LeoInputError(f"unsupported layer {name} ({kind}): leo reads Linear and ReLU layers")
    if not weights:
        raise LeoInputError("the model has no Linear layers")
    layers = tuple(Layer({k: w}, b, r) for k, (w, b, r) in enumerate(zip(weights, biases, relus)))
    return Network(int(weights[0].shape[1]), layers)


def _kind(module: nn.Module) -> str:
    return getattr(module, "original_name", type(module).__name__)


def _flatten(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf layers of a (nested) ``nn.Sequential``, in forward order.

    Only Sequential containers are opened: a custom module's ``forward`` could do
    anything, so it is refused rather than guessed at.
    """
    if _kind(module) != "Sequential":
        if prefix == "" and list(module.children()):
            raise LeoInputError(
                f"leo reads nn.Sequential models, got {_kind(module)}: pass its Sequential part, "
                "save its state_dict, or export it to ONNX"
            )
        return [(prefix or _kind(module), module)]
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        sub = f"{prefix}.{name}" if prefix else name
        out.extend(_flatten(child, sub) if _kind(child) == "Sequential" else [(sub, child)])
    return out


def load_torch(path: Path, allow_pickle: bool = False) -> Network:
    """Read a state_dict checkpoint, a TorchScript archive or (opt-in) a pickled module."""
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
            raise LeoInputError(f"cannot read TorchScript archive {path}: {str(exc).splitlines()[0]}") from None
        return from_module(module)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "" if allow_pickle else " (a pickled whole module needs --allow-pickle, which runs its code)"
        raise LeoInputError(f"cannot read {path} as a PyTorch checkpoint: {first[:200]}{hint}") from None
    if isinstance(obj, nn.Module):
        return from_module(obj)
    if isinstance(obj, Mapping):
        return from_state_dict(obj)
    raise LeoInputError(f"{path} holds a {type(obj).__name__}, not a state_dict or a module")


class SkipBlock(nn.Module):
    """One layer with several sources: z = bias + sum_i linears[i](outs[sources[i]])."""

    def __init__(self, layer: Layer, dtype: torch.dtype) -> None:
        super().__init__()
        self.linears = nn.ModuleList()
        for w in layer.weights.values():
            lin = nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(w, dtype=dtype))
            self.linears.append(lin)
        self.bias = nn.Parameter(torch.tensor(layer.bias, dtype=dtype))
        self.sources: list[int] = [int(s) for s in layer.weights]
        self.relu: bool = bool(layer.relu)

    def forward(self, outs: list[torch.Tensor]) -> torch.Tensor:
        z = self.bias
        for i, lin in enumerate(self.linears):
            z = z + lin(outs[self.sources[i]])
        return torch.relu(z) if self.relu else z


class SkipNet(nn.Module):
    """A network with skip connections, scriptable so the archive needs no leo."""

    def __init__(self, network: Network, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([SkipBlock(layer, dtype) for layer in network.layers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x.flatten(1)]
        for block in self.blocks:
            outs.append(block(outs))
        return outs[-1]


def _from_skipnet(module: nn.Module) -> Network:
    layers = []
    for _, block in module.blocks.named_children():  # scripted ModuleLists do not iterate
        linears = [lin for _, lin in block.linears.named_children()]
        weights = {int(s): lin.weight.detach().to(torch.float64).numpy()
                   for s, lin in zip(block.sources, linears)}
        layers.append(Layer(weights, block.bias.detach().to(torch.float64).numpy(), bool(block.relu)))
    first = layers[0].weights
    return Network(int(next(iter(first.values())).shape[1]), tuple(layers))


def to_module(network: Network, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A plain ``nn.Sequential`` for an MLP, else a ``SkipNet``."""
    if not network.is_mlp:
        return SkipNet(network, dtype)
    mods: list[nn.Module] = []
    for k, layer in enumerate(network.layers):
        w = layer.weights[k]
        lin = nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w, dtype=dtype))
            lin.bias.copy_(torch.tensor(layer.bias, dtype=dtype))
        mods.append(lin)
        if layer.relu:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def save_torchscript(network: Network, path: Path, dtype: torch.dtype = torch.float32) -> None:
    torch.jit.save(torch.jit.script(to_module(network, dtype)), str(path))
