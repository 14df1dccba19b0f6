"""The torch forward pass: differentiable, batched, and with conv layers run as convolutions.

The numpy pass is ``Network.pre_activations``; this one serves what needs autograd or a
convolution's speed (the attack's torch backend, the witnesses' pre-activations on CNNs),
and equals it up to the rounding of the sums' order.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
import torch

from leo.core.network import Layer, Network
from leo.io.conv import conv_kernel

#: One source's term of a layer as a torch function of that source's output (batch, n).
Term = Callable[[torch.Tensor], torch.Tensor]
_terms: dict[int, tuple[weakref.ref, Term, bool]] = {}


def _conv_term(kernel: np.ndarray, layer: Layer) -> Term:
    """The term of a conv layer as the convolution itself: on a 9.5k-unit MNIST CNN the
    product with the lowered matrix (20M entries, 5 % nonzero) made the local search's
    forward and backward passes most of the witness phase."""
    st = layer.structure
    assert st is not None
    dims = len(st["kernel"])
    pads = [int(p) for p in st["pads"]]
    pad = [p for d in reversed(range(dims)) for p in (pads[d], pads[dims + d])]  # torch: last dim first
    conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[dims]
    weight = torch.tensor(kernel)
    in_shape = tuple(int(d) for d in st["in_shape"])
    strides, dilations, group = list(st["strides"]), list(st["dilations"]), int(st["group"])

    def term(h: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.pad(h.reshape(h.shape[0], *in_shape), pad)
        return conv(x, weight, stride=strides, dilation=dilations, groups=group).reshape(h.shape[0], -1)

    return term


def _term(layer: Layer, source: int) -> Term:
    """How the torch pass applies ``layer``'s weight from ``source`` (cached per weight
    array, which is frozen): as a convolution when the weight is exactly the conv its
    ``structure`` names (``leo.io.conv.conv_kernel`` checks entry for entry), else as a product."""
    w = layer.weights[source]
    hit = _terms.get(id(w))
    if hit is not None and hit[0]() is w:
        return hit[1]
    kernel = None
    if layer.structure is not None and len(layer.weights) == 1 and len(layer.structure.get("kernel", ())) in (1, 2, 3):
        kernel = conv_kernel(w, layer.structure)
    if kernel is not None:
        term = _conv_term(kernel, layer)
    else:
        wt = torch.tensor(w).T

        def term(h: torch.Tensor) -> torch.Tensor:
            return h @ wt

    key = id(w)
    _terms[key] = (weakref.ref(w, lambda _, k=key: _terms.pop(k, None)), term, kernel is not None)
    return term


def runs_as_conv(layer: Layer, source: int) -> bool:
    """Whether ``_term`` runs ``layer``'s weight from ``source`` as a convolution."""
    _term(layer, source)
    return _terms[id(layer.weights[source])][2]


def torch_layers(network: Network, upto: int) -> list[tuple[dict[int, Term], torch.Tensor, bool]]:
    """Layers ``0..upto`` as (terms per source, bias, relu) for torch forward passes."""
    return [({s: _term(lyr, s) for s in lyr.weights}, torch.tensor(lyr.bias), lyr.relu)
            for lyr in network.layers[: upto + 1]]


def torch_forward(layers: list[tuple[dict[int, Term], torch.Tensor, bool]], x: torch.Tensor) -> list[torch.Tensor]:
    """Pre-activations of ``layers`` on the batch ``x`` (float64)."""
    outs, zs = [x], []
    for terms, bias, relu in layers:
        z = bias + sum(term(outs[s]) for s, term in terms.items())
        zs.append(z)
        outs.append(torch.relu(z) if relu else z)
    return zs


def pre_activations(network: Network, x: np.ndarray) -> list[np.ndarray]:
    """``network.pre_activations(x)``, computed with ``torch_forward`` (equal up to float
    rounding of the sums' order) when some layer runs as a convolution."""
    if not any(runs_as_conv(lyr, s) for lyr in network.layers for s in lyr.weights):
        return network.pre_activations(x)  # no convolution: the network's own pass, as before
    layers = torch_layers(network, len(network.layers) - 1)
    with torch.no_grad():
        zs = torch_forward(layers, torch.as_tensor(np.asarray(x, dtype=np.float64)))
    return [z.numpy() for z in zs]
