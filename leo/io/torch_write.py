"""TorchScript output that loads without leo and takes the input shape the original model
took: a plain ``nn.Sequential`` for a dense MLP, else a ``SkipNet`` (dense layers with
skip connections) or a ``ConvNet`` (``nn.Conv2d`` blocks where a layer is a convolution,
so the structured form stays convolutional, and ``nn.MaxPool2d`` where layers are still
exactly a MaxPool, ``leo.io.pool_export``). A weight matrix whose nonzeros take fewer
bytes than its dense form (``leo.io.sparse``: MaxPool selections, bypasses) is a
``SparseLinear`` of index and value buffers; one that is exactly a convolution in a layer
that is not all convolutions (a residual Add) is a ``SourceConv``. ``leo.io.torch_io``
reads all of them back entry for entry (``dense_weight``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leo.core.network import INPUT_SHAPE, Layer, Network
from leo.io.conv import Window, channel_bias, conv_geometries, conv_kernels, conv_matrix, source_kernel
from leo.io.pool_export import PoolRun, pool_runs
from leo.io.sparse import smaller_sparse

EXTRA = "leo.json"  # leo's metadata inside the TorchScript archives it writes
_INDEX_BYTES = 8  # two int32 coordinates per nonzero


class SparseLinear(nn.Module):
    """``x @ W.T`` for a matrix ``W`` kept as its nonzeros (int32 coordinates and values)."""

    def __init__(self, w: np.ndarray, dtype: torch.dtype) -> None:
        super().__init__()
        rows, cols = np.nonzero(w)
        self.register_buffer("index", torch.tensor(np.stack([rows, cols]), dtype=torch.int32))
        self.register_buffer("values", torch.tensor(w[rows, cols], dtype=dtype))
        self.size: list[int] = [int(w.shape[0]), int(w.shape[1])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sparse_coo_tensor(self.index.long(), self.values, self.size)
        return torch.sparse.mm(w, x.t()).t()


def _cast(w: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    return w.astype(np.float32 if dtype == torch.float32 else np.float64)


class SourceConv(nn.Module):
    """``x @ W.T`` for a matrix ``W`` that is exactly a convolution (``leo.io.conv.source_kernel``),
    run as that convolution on the flat input reshaped, its output flat again."""

    def __init__(self, kernel: np.ndarray, st: Mapping[str, Any], dtype: torch.dtype) -> None:
        super().__init__()
        n = len(st["kernel"])
        pads = [int(p) for p in st["pads"]]
        self.pad: list[int] = [p for i in reversed(range(n)) for p in (pads[i], pads[n + i])]  # F.pad's order
        self.in_shape: list[int] = [int(d) for d in st["in_shape"]]
        # the geometry again, plainly, so leo reads the archive back (``dense_weight``)
        self.pads: list[int] = pads
        self.strides: list[int] = [int(v) for v in st["strides"]]
        self.dilations: list[int] = [int(v) for v in st["dilations"]]
        self.group: int = int(st["group"])
        self.conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[n](
            self.in_shape[0], kernel.shape[0], tuple(kernel.shape[2:]), stride=tuple(self.strides), padding=0,
            dilation=tuple(self.dilations), groups=self.group, bias=False, dtype=dtype)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(kernel, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.nn.functional.pad(x.reshape([-1] + self.in_shape), self.pad)).flatten(1)


def _linear(w: np.ndarray, dtype: torch.dtype, geometries: list[Mapping[str, Any]] | None = None) -> nn.Module:
    """A bias-free linear map of ``w``: the convolution it is exactly (one of ``geometries``),
    else sparse when its nonzeros are the smaller file, else dense."""
    found = source_kernel(w, geometries) if geometries else None
    if found is not None:
        return SourceConv(found[0], found[1], dtype)
    cast = _cast(w, dtype)
    if smaller_sparse(cast, cast.itemsize, _INDEX_BYTES):
        return SparseLinear(cast, dtype)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w, dtype=dtype))
    return lin


def dense_weight(module: nn.Module) -> np.ndarray:
    """The float64 matrix of a ``nn.Linear`` or a ``SparseLinear`` (also scripted and reloaded)."""
    kind = getattr(module, "original_name", type(module).__name__)
    if kind == "SourceConv":
        weight = module.conv.weight.detach().to(torch.float64).numpy()
        n = len(module.strides)
        window = Window(tuple(module.in_shape[1:]), tuple(weight.shape[2:]), tuple(module.strides),
                        tuple(module.pads[:n]), tuple(module.pads[n:]), tuple(module.dilations))
        return conv_matrix(weight, int(module.in_shape[0]), window, int(module.group))
    if kind != "SparseLinear":
        return module.weight.detach().to(torch.float64).numpy()
    rows, cols = module.index.to(torch.int64).numpy()
    out = np.zeros([int(d) for d in module.size])
    out[rows, cols] = module.values.detach().to(torch.float64).numpy()
    return out


class SkipBlock(nn.Module):
    """One layer with several sources: z = bias + sum_i linears[i](outs[sources[i]])."""

    def __init__(self, layer: Layer, dtype: torch.dtype, geometries: list[Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        self.linears = nn.ModuleList([_linear(w, dtype, geometries) for w in layer.weights.values()])
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


class ConvBlock(nn.Module):
    """A layer that is a convolution of each of its sources: z = bias + sum_i convs[i](x_i),
    on flat tensors reshaped to the conv's input shape (asymmetric pads by F.pad). A bias
    constant per channel of a one-source layer is the conv's own (``bias`` is then a zero
    buffer); any other is a flat parameter ``bias``."""

    def __init__(self, layer: Layer, kernels: dict[int, np.ndarray], dtype: torch.dtype) -> None:
        super().__init__()
        st = layer.structure
        per_channel = channel_bias(layer) if len(kernels) == 1 else None
        n = len(st["kernel"])
        pads = [int(p) for p in st["pads"]]
        begin, end = pads[:n], pads[n:]
        self.symmetric: bool = begin == end
        self.pad: list[int] = [p for i in reversed(range(n)) for p in (begin[i], end[i])]  # F.pad's order
        self.in_shape: list[int] = [int(d) for d in st["in_shape"]]
        self.out_shape: list[int] = [int(d) for d in layer.shape]
        # the conv's geometry again, plainly, so leo reads the archive back (``_from_convnet``)
        self.pads: list[int] = pads
        self.strides: list[int] = [int(v) for v in st["strides"]]
        self.dilations: list[int] = [int(v) for v in st["dilations"]]
        self.group: int = int(st["group"])
        conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[n]
        self.convs = nn.ModuleList()
        for kernel in kernels.values():
            conv = conv_type(self.in_shape[0], kernel.shape[0], tuple(kernel.shape[2:]),
                             stride=tuple(int(v) for v in st["strides"]),
                             padding=tuple(begin) if self.symmetric else 0,
                             dilation=tuple(int(v) for v in st["dilations"]), groups=int(st["group"]),
                             bias=per_channel is not None, dtype=dtype)
            with torch.no_grad():
                conv.weight.copy_(torch.tensor(kernel, dtype=dtype))
                if per_channel is not None:
                    conv.bias.copy_(torch.tensor(per_channel, dtype=dtype))
            self.convs.append(conv)
        if per_channel is None:
            self.bias = nn.Parameter(torch.tensor(layer.bias, dtype=dtype))
        else:
            self.register_buffer("bias", torch.zeros(1, dtype=dtype))
        self.sources: list[int] = [int(s) for s in kernels]
        self.relu: bool = bool(layer.relu)

    def forward(self, outs: list[torch.Tensor]) -> torch.Tensor:
        z = self.bias
        for i, conv in enumerate(self.convs):
            x = outs[self.sources[i]].reshape([-1] + self.in_shape)
            if not self.symmetric:
                x = torch.nn.functional.pad(x, self.pad)
            z = z + conv(x).flatten(1)
        return torch.relu(z) if self.relu else z


class PoolBlock(nn.Module):
    """The layers leo made of a MaxPool (``leo.io.pool_export.PoolRun``), as the pool: its
    output is the pooled tensor, flat; the run's later layers are ``PoolAlias`` blocks."""

    def __init__(self, run: PoolRun) -> None:
        super().__init__()
        n = len(run.kernel)
        begin, end = list(run.pads[:n]), list(run.pads[n:])
        self.pad: list[int] = [p for i in reversed(range(n)) for p in (begin[i], end[i])]  # F.pad's order
        self.padded: bool = any(run.pads)
        self.source: int = run.source
        self.levels: int = run.output - run.first
        self.in_shape: list[int] = list(run.in_shape)
        # the geometry again, plainly, so leo reads the archive back (``leo.io.torch_io``)
        self.kernel: list[int] = list(run.kernel)
        self.strides: list[int] = list(run.strides)
        self.pads: list[int] = list(run.pads)
        self.dilations: list[int] = list(run.dilations)
        self.pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[n](
            tuple(run.kernel), tuple(run.strides), 0, tuple(run.dilations))

    def forward(self, outs: list[torch.Tensor]) -> torch.Tensor:
        x = outs[self.source].reshape([-1] + self.in_shape)
        if self.padded:  # padding never wins a max
            x = torch.nn.functional.pad(x, self.pad, value=float("-inf"))
        return self.pool(x).flatten(1)


class PoolAlias(nn.Module):
    """A later layer of a MaxPool's run: the pooled tensor again (only the run reads it)."""

    def __init__(self, first: int) -> None:
        super().__init__()
        self.first: int = first

    def forward(self, outs: list[torch.Tensor]) -> torch.Tensor:
        return outs[self.first]


class ConvNet(nn.Module):
    """A network with conv layers (``ConvBlock``), MaxPools (``PoolBlock``) and dense layers
    (``SkipBlock``); scriptable, so the archive needs no leo."""

    def __init__(self, network: Network, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        runs = pool_runs(network)
        geometries = conv_geometries(network.layers)
        blocks: list[nn.Module] = []
        run: PoolRun | None = None  # the MaxPool run being written
        for k, layer in enumerate(network.layers, start=1):
            run = runs.get(k, run)
            if k in runs:
                blocks.append(PoolBlock(runs[k]))
            elif run is not None and k <= run.output:
                blocks.append(PoolAlias(run.first))
            else:
                kernels = conv_kernels(layer)
                blocks.append(ConvBlock(layer, kernels, dtype) if kernels else SkipBlock(layer, dtype, geometries))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x.flatten(1)]
        for block in self.blocks:
            outs.append(block(outs))
        return outs[-1]


def _flat_input(network: Network) -> bool:
    shape = network.input_shape
    return shape is not None and len(shape) == 1


def _any_sparse(network: Network, dtype: torch.dtype) -> bool:
    return any(smaller_sparse(c, c.itemsize, _INDEX_BYTES)
               for ly in network.layers for c in (_cast(w, dtype) for w in ly.weights.values()))


def to_module(network: Network, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A ``ConvNet`` (nn.Conv2d layers) when a layer is a convolution, else a plain
    ``nn.Sequential`` for an MLP, else a ``SkipNet``; all take the input shape the original
    model took (a Flatten in front unless that input was a flat vector)."""
    if any(conv_kernels(layer) is not None for layer in network.layers) or pool_runs(network):
        return ConvNet(network, dtype)
    if not network.is_mlp or _any_sparse(network, dtype):
        return SkipNet(network, dtype)  # it flattens its input itself
    mods: list[nn.Module] = [] if _flat_input(network) else [nn.Flatten()]
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
    """A TorchScript archive; leo's metadata (the input shape) rides along as an extra
    file, so leo reads the archive back with the shape it was written with."""
    extra = {EXTRA: json.dumps({INPUT_SHAPE: list(network.input_shape or ()) or None})}
    torch.jit.save(torch.jit.script(to_module(network, dtype)), str(path), _extra_files=extra)
