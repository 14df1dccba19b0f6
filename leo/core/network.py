"""The one network type every stage reads.

A network is a list of dense layers. Layer ``k`` (1-based) computes

    z_k = b_k + sum_{s in sources(k)} W_{k,s} h_s,      h_k = relu(z_k) or z_k

where ``h_0`` is the input. A plain MLP has one source per layer (the layer
before); skip connections (from the approximate layer-fusion method) are extra
sources. Arrays are float64 and read-only: stages build new networks, they never
mutate one.

``metadata`` (str -> str) travels with a network through every stage that builds a
new one (reduce, approx, fine-tuning copy it), so facts about where the network came
from live there: ``input_shape`` (the per-sample shape the model was given, e.g.
``"1,5,5"``, so written models take the same input) and ``architecture_source``
(how the architecture was known: read from a graph, or assumed for a bare state_dict).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from leo.errors import LeoInputError


def _frozen(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Layer:
    """A dense layer: ``weights[s]`` maps the output of layer ``s`` (0 = input).

    ``shape`` is the per-sample shape of the layer's output when it is not flat (a conv
    layer's (C, H, W); unit ``j`` is the flat row-major index), so reports can group
    units by channel. ``structure`` records the op the weights were lowered from (a
    conv's kernel, strides, pads, dilations, group, in/out shapes) for structured
    export; both describe the same matrix and are dropped by stages that change units.
    """

    weights: Mapping[int, np.ndarray]
    bias: np.ndarray
    relu: bool
    shape: tuple[int, ...] | None = None
    structure: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        frozen = {int(s): _frozen(w) for s, w in sorted(self.weights.items())}
        object.__setattr__(self, "weights", MappingProxyType(frozen))
        object.__setattr__(self, "bias", _frozen(self.bias))
        if not frozen:
            raise LeoInputError("a layer needs at least one input")
        for s, w in frozen.items():
            if w.ndim != 2 or w.shape[0] != self.bias.shape[0]:
                raise LeoInputError(
                    f"weight from source {s} has shape {w.shape}, expected ({self.bias.shape[0]}, n)"
                )
        if self.shape is not None:
            shape = tuple(int(d) for d in self.shape)
            if int(np.prod(shape)) != self.bias.shape[0]:
                raise LeoInputError(f"layer shape {shape} does not hold its {self.bias.shape[0]} units")
            object.__setattr__(self, "shape", shape)
        if self.structure is not None:
            object.__setattr__(self, "structure", MappingProxyType(dict(self.structure)))

    def __reduce__(self):  # mapping proxies do not pickle; rebuild from plain values
        structure = None if self.structure is None else dict(self.structure)
        return (Layer, (dict(self.weights), self.bias, self.relu, self.shape, structure))

    @property
    def width(self) -> int:
        return int(self.bias.shape[0])

    @property
    def sources(self) -> tuple[int, ...]:
        return tuple(self.weights)


INPUT_SHAPE = "input_shape"
ARCHITECTURE_SOURCE = "architecture_source"
#: The file a network was read from: outputs are never written over it (leo.io.save).
SOURCE_PATH = "source_path"


def shape_text(shape: tuple[int, ...]) -> str:
    """The metadata form of a per-sample input shape."""
    return ",".join(str(int(d)) for d in shape)


@dataclass(frozen=True)
class Network:
    """Input size plus layers; the last layer is the output."""

    input_dim: int
    layers: tuple[Layer, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        if not self.layers:
            raise LeoInputError("the network has no layers")
        shape = self.input_shape
        if shape is not None and int(np.prod(shape)) != self.input_dim:
            raise LeoInputError(f"input shape {shape} holds {int(np.prod(shape))} values, "
                                f"but the network has {self.input_dim} inputs")
        widths = [self.input_dim] + [layer.width for layer in self.layers]
        for k, layer in enumerate(self.layers, start=1):
            for s, w in layer.weights.items():
                if not 0 <= s < k:
                    raise LeoInputError(f"layer {k} reads from layer {s}, which does not come before it")
                if w.shape[1] != widths[s]:
                    raise LeoInputError(
                        f"layer {k}: weight from layer {s} has {w.shape[1]} columns, "
                        f"but layer {s} has {widths[s]} units"
                    )
            arrays = [layer.bias, *layer.weights.values()]
            if not all(np.isfinite(a).all() for a in arrays):
                raise LeoInputError(f"layer {k} has NaN or infinite weights")

    def __reduce__(self):
        return (Network, (self.input_dim, self.layers, dict(self.metadata)))

    # -- shape -------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The per-sample shape of the model's input (no batch dimension), when known."""
        text = self.metadata.get(INPUT_SHAPE)
        if not text:
            return None
        try:
            shape = tuple(int(d) for d in text.split(","))
        except ValueError:
            raise LeoInputError(f"metadata input_shape {text!r} is not a list of integers") from None
        if any(d <= 0 for d in shape):
            raise LeoInputError(f"metadata input_shape {text!r} has a dimension that is not positive")
        return shape

    def with_metadata(self, **items: str | None) -> Network:
        """A copy with metadata entries set (or removed, for None)."""
        meta = dict(self.metadata)
        for key, value in items.items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        return Network(self.input_dim, self.layers, meta)

    @property
    def output_dim(self) -> int:
        return self.layers[-1].width

    @property
    def hidden(self) -> tuple[int, ...]:
        """Widths of the ReLU layers whose units can be removed (all but the output)."""
        return tuple(layer.width for layer in self.layers[:-1])

    @property
    def widths(self) -> tuple[int, ...]:
        """Widths indexed by source: ``widths[0]`` is the input."""
        return (self.input_dim, *(layer.width for layer in self.layers))

    @property
    def num_parameters(self) -> int:
        return int(sum(layer.bias.size + sum(w.size for w in layer.weights.values()) for layer in self.layers))

    @property
    def is_mlp(self) -> bool:
        """True when every layer reads only from the layer before it."""
        return all(layer.sources == (k - 1,) for k, layer in enumerate(self.layers, start=1))

    # -- evaluation --------------------------------------------------------
    def pre_activations(self, x: np.ndarray, upto: int | None = None) -> list[np.ndarray]:
        """Pre-activations ``z_k`` for a batch ``x`` of shape (n, input_dim), of the layers
        ``0..upto`` (0-based; default all): the one numpy forward pass."""
        outputs = [np.atleast_2d(np.asarray(x, dtype=np.float64))]
        zs: list[np.ndarray] = []
        for layer in self.layers[: len(self.layers) if upto is None else upto + 1]:
            z = layer.bias + sum(outputs[s] @ w.T for s, w in layer.weights.items())
            zs.append(z)
            outputs.append(np.maximum(z, 0.0) if layer.relu else z)
        return zs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = self.pre_activations(x)[-1]
        return np.maximum(z, 0.0) if self.layers[-1].relu else z


def channel_summary(layer: Layer, verdicts: list[str]) -> list[dict[str, int]] | None:
    """Per channel of a (C, ...)-shaped layer: how many units have each verdict
    (``verdicts[j]`` for flat unit ``j``); None for a flat layer. A channel whose units
    are all stably inactive is dead everywhere on the box."""
    if layer.shape is None or len(layer.shape) < 2:
        return None
    if len(verdicts) != layer.width:
        raise ValueError(f"{len(verdicts)} verdicts for a layer of {layer.width} units")
    per = layer.width // layer.shape[0]
    out = []
    for c in range(layer.shape[0]):
        counts: dict[str, int] = {"channel": c, "units": per}
        for v in verdicts[c * per:(c + 1) * per]:
            counts[v] = counts.get(v, 0) + 1
        out.append(counts)
    return out


def mlp(weights: list[np.ndarray], biases: list[np.ndarray], final_relu: bool = False) -> Network:
    """Build a plain MLP from per-layer ``(out, in)`` weights and biases."""
    if len(weights) != len(biases) or not weights:
        raise LeoInputError("need as many bias vectors as weight matrices, and at least one")
    layers = tuple(
        Layer({k: np.asarray(w)}, np.asarray(b), relu=(k < len(weights) - 1) or final_relu)
        for k, (w, b) in enumerate(zip(weights, biases))
    )
    return Network(input_dim=int(np.asarray(weights[0]).shape[1]), layers=layers)


def input_gradient(network: Network, zs: list[np.ndarray], cotangent: np.ndarray,
                   through_last_relu: bool = True) -> np.ndarray:
    """Per row: the gradient in ``x`` of ``cotangent . v`` where ``v`` is the last layer of ``zs``
    (``network.pre_activations(x, upto)``), its output (``through_last_relu``) or its
    pre-activation: back-propagation in numpy (a subgradient: ReLU'(0) = 0)."""
    last = len(zs)
    grads = [np.zeros((len(zs[0]), network.input_dim))] + [np.zeros_like(z) for z in zs]
    grads[last] = np.asarray(cotangent, dtype=np.float64)
    for k in range(last, 0, -1):
        layer = network.layers[k - 1]
        relu = layer.relu and (k < last or through_last_relu)
        g = grads[k] * (zs[k - 1] > 0) if relu else grads[k]
        for s, w in layer.weights.items():
            grads[s] += g @ w
    return grads[0]


def excess_and_gradient(network: Network, x: np.ndarray, a: np.ndarray,
                        c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``x``: the disjunct's excess ``max_r (a_r . y - c_r)`` and its gradient in
    ``x`` (a subgradient: ReLU'(0) = 0), by a forward pass and back-propagation in numpy,
    so that a counterexample search needs no torch (``leo.search.attack``)."""
    zs = network.pre_activations(x)
    y = np.maximum(zs[-1], 0.0) if network.layers[-1].relu else zs[-1]
    rows = y @ a.T - c
    worst = rows.argmax(axis=1)
    return rows[np.arange(len(rows)), worst], input_gradient(network, zs, a[worst])
