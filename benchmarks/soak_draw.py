"""The graph soak's generators: small convolutional, residual and max-pool networks, and
the dense soak's awkward MLPs, as ``benchmarks.soak_graph.Drawn`` (torch module + box).

Weights come from the dense soak's mixture (sparse, zero rows, 1e-7 entries, parallel
rows, magnitudes 1e-6 to 1e3) applied to the flattened kernels; biases are fitted layer
by layer on sampled points so that units cross 0, or pushed to make them stable; boxes
are the dense soak's (thin, far, degenerate coordinates).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from benchmarks.soak import _box, _layer_weights, random_case
from benchmarks.soak_graph import MAX_POOLED, MAX_RELUS, Drawn, Graph, Op, Step, graph_of, module


class Kind(enum.Enum):
    """A generator of the graph soak."""

    MLP = "mlp"
    CONV = "conv"
    RESIDUAL = "residual"
    MAXPOOL = "maxpool"


Layers = list[tuple[str, dict[str, object], np.ndarray, np.ndarray]]


def _conv(rng: np.random.Generator, c_in: int, c_out: int, k: int, stride: int, pad: int,
          traits: list[str]) -> tuple[str, dict[str, object], np.ndarray, np.ndarray]:
    w = _layer_weights(rng, c_out, c_in * k * k, traits).reshape(c_out, c_in, k, k)
    args = {"in_channels": c_in, "out_channels": c_out, "kernel_size": k, "stride": stride, "padding": pad}
    return "conv", args, w, np.zeros(c_out)


def _linear(rng: np.random.Generator, n_in: int, n_out: int,
            traits: list[str]) -> tuple[str, dict[str, object], np.ndarray, np.ndarray]:
    return "linear", {"in_features": n_in, "out_features": n_out}, _layer_weights(rng, n_out, n_in, traits), \
        np.zeros(n_out)


def _spatial(h: int, k: int, stride: int, pad: int) -> int:
    return (h + 2 * pad - k) // stride + 1


def _draw_conv(rng: np.random.Generator, traits: list[str]) -> tuple[tuple[int, ...], list, Layers]:
    c_in, h, w = int(rng.integers(1, 3)), int(rng.integers(3, 6)), int(rng.integers(3, 6))
    k, stride, pad = int(rng.integers(2, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    c1 = int(rng.integers(1, 3))
    h1, w1 = _spatial(h, k, stride, pad), _spatial(w, k, stride, pad)
    layers: Layers = [_conv(rng, c_in, c1, k, stride, pad, traits)]
    steps = [(Step.LAYER, 0), (Step.RELU, 0)]
    n = c1 * h1 * w1
    if min(h1, w1) >= 2 and rng.random() < 0.5:
        traits.append("two-convs")
        c2 = int(rng.integers(1, 3))
        layers.append(_conv(rng, c1, c2, 2, 1, 0, traits))
        steps += [(Step.LAYER, 1), (Step.RELU, 0)]
        n = c2 * (h1 - 1) * (w1 - 1)
    layers.append(_linear(rng, n, int(rng.integers(1, 4)), traits))
    return (c_in, h, w), [*steps, (Step.FLATTEN, 0), (Step.LAYER, len(layers) - 1)], layers


def _draw_residual(rng: np.random.Generator, traits: list[str]) -> tuple[tuple[int, ...], list, Layers]:
    if rng.random() < 0.4:
        traits.append("conv-residual")
        c, h, w = int(rng.integers(1, 3)), int(rng.integers(2, 4)), 2
        layers: Layers = [_conv(rng, c, 1, 3, 1, 1, traits), _conv(rng, 1, 1, 3, 1, 1, traits),
                          _linear(rng, h * w, int(rng.integers(1, 4)), traits)]
        steps = [(Step.LAYER, 0), (Step.RELU, 0), (Step.SAVE, 0), (Step.LAYER, 1), (Step.RELU, 0),
                 (Step.ADD, 0), (Step.FLATTEN, 0), (Step.LAYER, 2)]
        return (c, h, w), steps, layers
    d, width = int(rng.integers(1, 7)), int(rng.integers(1, 6))
    layers = [_linear(rng, d, width, traits), _linear(rng, width, width, traits)]
    steps = [(Step.LAYER, 0), (Step.RELU, 0), (Step.SAVE, 0), (Step.LAYER, 1), (Step.RELU, 0), (Step.ADD, 0)]
    if rng.random() < 0.4:
        traits.append("two-skips")
        layers.append(_linear(rng, width, width, traits))
        steps += [(Step.SAVE, 0), (Step.LAYER, 2), (Step.RELU, 0), (Step.ADD, 1)]
    layers.append(_linear(rng, width, int(rng.integers(1, 4)), traits))
    return (d,), [*steps, (Step.LAYER, len(layers) - 1)], layers


def _draw_maxpool(rng: np.random.Generator, traits: list[str]) -> tuple[tuple[int, ...], list, Layers]:
    h, w = int(rng.integers(3, 6)), int(rng.integers(3, 6))
    c1 = int(rng.integers(1, 3))
    layers: Layers = [_conv(rng, 1, c1, 2, 1, 0, traits)]
    pooled = c1 * ((h - 1) // 2) * ((w - 1) // 2)
    if rng.random() < 0.5:
        traits.append("pool-then-relu")
        steps = [(Step.LAYER, 0), (Step.POOL, 2), (Step.RELU, 0)]
    else:
        steps = [(Step.LAYER, 0), (Step.RELU, 0), (Step.POOL, 2)]
    layers.append(_linear(rng, pooled, int(rng.integers(1, 4)), traits))
    return (1, h, w), [*steps, (Step.FLATTEN, 0), (Step.LAYER, 1)], layers


_DRAW: dict[Kind, Callable[[np.random.Generator, list[str]], tuple[tuple[int, ...], list, Layers]]] = {
    Kind.CONV: _draw_conv, Kind.RESIDUAL: _draw_residual, Kind.MAXPOOL: _draw_maxpool,
}


def _fit_biases(drawn: Drawn, rng: np.random.Generator, traits: list[str]) -> Drawn:
    """Per layer in order: biases through a sampled pre-activation (a unit that crosses 0
    there), random, or pushed beyond the sampled reach (stably on or off)."""
    pts = drawn.lower + rng.random((256, drawn.lower.size)) * (drawn.upper - drawn.lower)
    layers = list(drawn.layers)
    for li, (kind, args, w, _) in enumerate(layers):
        graph = graph_of(drawn, module(drawn))
        z = graph.values(pts)[_layer_node(graph, li)]  # bias still 0: the layer's linear part
        per = z.reshape(len(pts), w.shape[0], -1)  # (points, channels or units, positions)
        reach = np.abs(per).max(axis=(0, 2)) + 1e-12
        draw = rng.random(w.shape[0])
        crossing = -per[rng.integers(0, len(pts), w.shape[0]), np.arange(w.shape[0]),
                        rng.integers(0, per.shape[2], w.shape[0])]
        b = np.where(draw < 0.5, crossing, rng.normal(size=w.shape[0]) * 0.5 * reach)
        if li < len(layers) - 1 and rng.random() < 0.3:
            traits.append("pushed-biases")
            push = rng.random(w.shape[0])
            b = np.where(push < 0.25, -reach * rng.uniform(1.1, 3.0), np.where(push < 0.45, reach * 1.5, b))
        layers[li] = (kind, args, w, b)
        drawn = replace(drawn, layers=tuple(layers))
    return drawn


def _layer_node(graph: Graph, li: int) -> int:
    """The value index of the li-th layer's affine node (ADD nodes are affine too: skipped by
    counting only nodes with one source)."""
    seen = -1
    for i, node in enumerate(graph.nodes, start=1):
        if node.op is Op.AFFINE and len(node.sources) == 1:
            seen += 1
            if seen == li:
                return i
    raise ValueError(f"no layer {li}")


def _from_case(seed: int, index: int) -> Drawn:
    case = random_case(seed, index)
    layers = tuple(("linear", {"in_features": w.shape[1], "out_features": w.shape[0]}, w, b)
                   for w, b in zip(case.weights, case.biases))
    steps: list[tuple[Step, int]] = []
    for k in range(len(layers)):
        steps += [(Step.LAYER, k)] + ([(Step.RELU, 0)] if k < len(layers) - 1 else [])
    return Drawn(Kind.MLP.value, (case.lower.size,), tuple(steps), layers, case.lower, case.upper, case.traits)


def draw(kind: Kind, seed: int, index: int) -> Drawn:
    """Network ``index`` of ``seed`` for generator ``kind``: deterministic."""
    if kind is Kind.MLP:
        return _from_case(seed, index)
    rng = np.random.default_rng([seed, index, 11])
    for _ in range(100):
        traits: list[str] = []
        shape, steps, layers = _DRAW[kind](rng, traits)
        lower, upper = _box(rng, int(np.prod(shape)), traits)
        drawn = Drawn(kind.value, shape, tuple(steps), tuple(layers), lower, upper)
        graph = graph_of(drawn, module(drawn))
        pooled = sum(len(n.groups) for n in graph.nodes if n.op is Op.MAX)
        if graph.relus <= MAX_RELUS and pooled <= MAX_POOLED:
            drawn = _fit_biases(drawn, rng, traits)
            return replace(drawn, traits=tuple(sorted(set(traits))))
    raise RuntimeError(f"no {kind.value} network small enough for seed {seed}, index {index}")
