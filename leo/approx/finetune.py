"""A few SGD steps on a Network (skip connections included), through torch.

Used between the rounds of the approximate methods. Labels are the data's labels
when given, else the argmax predictions of a teacher network (self-distillation onto
hard labels), so fine-tuning also works on unlabelled data. Cross-entropy, SGD with
momentum, optional l1 penalty on the weights; float32 on one thread, deterministic
given the seed. The structure (layers, sources, widths, ReLUs) is kept; only the
numbers change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leo.errors import LeoInputError
from leo.core.network import Layer, Network


@dataclass(frozen=True)
class FinetuneOptions:
    steps: int = 200
    lr: float = 0.01
    momentum: float = 0.9
    batch: int = 128
    l1: float = 0.0
    seed: int = 0
    weight_decay: float = 0.0
    nesterov: bool = False
    cosine: bool = False  # cosine annealing of lr to 0 over the steps (else constant)

    def __post_init__(self) -> None:
        ok = (self.steps >= 0 and self.batch >= 1 and self.lr > 0 and 0 <= self.momentum < 1
              and self.l1 >= 0 and self.weight_decay >= 0
              and all(math.isfinite(v) for v in (self.lr, self.momentum, self.l1, self.weight_decay))
              and (not self.nesterov or self.momentum > 0))
        if not ok:
            raise LeoInputError(f"invalid fine-tuning options {self}: steps >= 0, batch >= 1, lr > 0, "
                                "0 <= momentum < 1, l1 >= 0, weight_decay >= 0, nesterov needs momentum")


class _TorchNet(nn.Module):
    """Trainable copy of a Network: one weight per (layer, source), one bias per layer."""

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.sources = [list(ly.weights) for ly in network.layers]
        self.relus = [ly.relu for ly in network.layers]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.tensor(w, dtype=torch.float32)) for ly in network.layers for w in ly.weights.values()])
        self.biases = nn.ParameterList([nn.Parameter(torch.tensor(ly.bias, dtype=torch.float32))
                                        for ly in network.layers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        i = 0
        for k, sources in enumerate(self.sources):
            z = self.biases[k]
            for s in sources:
                z = z + outs[s] @ self.weights[i].T
                i += 1
            outs.append(torch.relu(z) if self.relus[k] else z)
        return outs[-1]

    def to_network(self, like: Network) -> Network:
        it = iter(self.weights)
        layers = []
        for k, ly in enumerate(like.layers):
            ws = {s: next(it).detach().double().numpy() for s in ly.weights}
            layers.append(Layer(ws, self.biases[k].detach().double().numpy(), ly.relu))
        return Network(like.input_dim, tuple(layers), dict(like.metadata))


def _mask_tensors(network: Network, masks: Mapping[tuple[int, int], np.ndarray] | None) -> list[torch.Tensor | None]:
    """One float mask (or None) per weight of ``_TorchNet``, in its order."""
    out: list[torch.Tensor | None] = []
    for k, ly in enumerate(network.layers, start=1):
        for s, w in ly.weights.items():
            m = None if masks is None else masks.get((k, s))
            if m is not None and np.shape(m) != w.shape:
                raise LeoInputError(f"mask of layer {k} source {s} has shape {np.shape(m)}, weights {w.shape}")
            out.append(None if m is None else torch.tensor(np.asarray(m, dtype=np.float32)))
    return out


def _apply(model: _TorchNet, keep: list[torch.Tensor | None]) -> None:
    with torch.no_grad():
        for w, m in zip(model.weights, keep):
            if m is not None:
                w.mul_(m)


def pseudo_labels(teacher: Network, x: np.ndarray) -> np.ndarray:
    """The teacher's argmax class per row of ``x``."""
    return np.argmax(teacher(x), axis=1).astype(np.int64)


def finetune(network: Network, x: np.ndarray, y: np.ndarray | None = None,
             options: FinetuneOptions = FinetuneOptions(), teacher: Network | None = None,
             masks: Mapping[tuple[int, int], np.ndarray] | None = None) -> Network:
    """``options.steps`` SGD steps on ``(x, y)``; without ``y``, on the argmax labels of
    ``teacher`` (default: the network itself before fine-tuning). ``masks`` ({(layer,
    source): bool array}): weights where the mask is False stay zero (pruned weights)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != network.input_dim or x.shape[0] == 0:
        raise LeoInputError(f"fine-tuning data must be (n >= 1) x {network.input_dim}, got shape {x.shape}")
    labels = pseudo_labels(teacher or network, x) if y is None else np.asarray(y, dtype=np.int64).reshape(-1)
    if labels.shape[0] != x.shape[0]:
        raise LeoInputError(f"fine-tuning: {labels.shape[0]} labels for {x.shape[0]} samples")
    if labels.size and (labels.min() < 0 or labels.max() >= network.output_dim):
        raise LeoInputError(f"fine-tuning labels must lie in 0 .. {network.output_dim - 1}")
    if options.steps == 0:
        return network
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _TorchNet(network)
        gen = torch.Generator().manual_seed(options.seed)
        xt = torch.tensor(x, dtype=torch.float32)
        yt = torch.tensor(labels, dtype=torch.int64)
        opt = torch.optim.SGD(model.parameters(), lr=options.lr, momentum=options.momentum,
                              weight_decay=options.weight_decay, nesterov=options.nesterov)
        keep = _mask_tensors(network, masks)
        _apply(model, keep)
        order = torch.randperm(len(xt), generator=gen)
        pos = 0
        for step in range(options.steps):
            if options.cosine:
                for group in opt.param_groups:
                    group["lr"] = 0.5 * options.lr * (1 + math.cos(math.pi * step / options.steps))
            if pos >= len(order):
                order, pos = torch.randperm(len(xt), generator=gen), 0
            idx = order[pos:pos + options.batch]
            pos += options.batch
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            if options.l1:
                loss = loss + options.l1 * sum(w.abs().sum() for w in model.weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _apply(model, keep)
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise LeoInputError("fine-tuning diverged (NaN or infinite weights): lower the learning rate")
        return model.to_network(network)
    finally:
        torch.set_num_threads(threads)
