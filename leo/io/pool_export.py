"""MaxPools written as MaxPool again.

The ONNX reader lowers a MaxPool to ReLU layers (max(a, b) = a + relu(b - a), paired level
by level, ``leo.io.onnx.spatial.max_pool``) and, where the pooled tensor meets the next
weight matrix, a linear layer holding the pool's output. Written as those layers, a pool
and everything reading it became dense matrices hundreds of times the user's file. The
writers instead write one MaxPool op for such a run of layers when it is exactly what the
reader makes of that op: the layers are lowered again from the geometry they record and
compared entry for entry, and nothing but the next layer reads them. Reading the file back
then gives the same layers, which ``leo audit`` requires. A pool whose units a reduction
removed or bypassed no longer matches and is written as its layers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from leo.core.network import Layer, Network
from leo.io.onnx.spatial import max_pool
from leo.io.onnx.values import Affine, Graph, Node


@dataclass(frozen=True)
class PoolRun:
    """Layers ``first .. output`` (1-based): a MaxPool's ReLU levels and its output layer,
    the pool of layer ``source``'s output (0: the input) of per-sample shape ``in_shape``."""

    source: int
    first: int
    output: int
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    name: str

    @property
    def attributes(self) -> dict[str, list[int]]:
        """The ONNX MaxPool attributes (the pads include what ``ceil_mode`` added)."""
        return {"kernel_shape": list(self.kernel), "strides": list(self.strides), "pads": list(self.pads),
                "dilations": list(self.dilations)}


def lowered(run: PoolRun, before: tuple[Layer, ...]) -> tuple[list[Layer], tuple[int, ...]]:
    """The layers the reader makes of ``run``'s MaxPool after the layers ``before``, and the
    pooled tensor's shape: the pool's ReLU levels, then its output layer."""
    n = int(np.prod(run.in_shape))
    g = Graph({}, layers=list(before))
    x = Affine({run.source: np.ones(n)}, np.zeros(n), run.in_shape)
    pooled = max_pool(g, Node("MaxPool", run.name, [x], run.attributes, ("pooled",)))[0]
    assert isinstance(pooled, Affine)
    g.emit(pooled, relu=False)
    return g.layers[len(before):], pooled.shape


def _same(a: Layer, b: Layer) -> bool:
    return (a.relu == b.relu and set(a.weights) == set(b.weights) and np.array_equal(a.bias, b.bias)
            and all(np.array_equal(a.weights[s], b.weights[s]) for s in a.weights))


def _candidate(network: Network, first: int) -> PoolRun | None:
    """The run starting at layer ``first`` when its first layer records a MaxPool, else None."""
    st = network.layers[first - 1].structure
    if st is None or st.get("op") != "MaxPool" or "pool_kernel" not in st:
        return None
    sources = network.layers[first - 1].sources
    levels = 1
    while (first + levels <= len(network.layers) and network.layers[first + levels - 1].structure is not None
           and dict(network.layers[first + levels - 1].structure) == dict(st)):
        levels += 1
    if len(sources) != 1 or first + levels > len(network.layers):
        return None
    ints = {key: tuple(int(v) for v in st[key]) for key in
            ("pool_kernel", "pool_strides", "pool_pads", "pool_dilations", "pool_in_shape")}
    return PoolRun(sources[0], first, first + levels, ints["pool_kernel"], ints["pool_strides"], ints["pool_pads"],
                   ints["pool_dilations"], ints["pool_in_shape"], (), str(st.get("node", "maxpool")))


def _readers(network: Network, k: int) -> list[int]:
    return [j for j, layer in enumerate(network.layers, start=1) if k in layer.weights]


def pool_runs(network: Network) -> dict[int, PoolRun]:
    """Every run of layers that is exactly one MaxPool, by its first layer."""
    out: dict[int, PoolRun] = {}
    k = 1
    while k <= len(network.layers):
        run = _candidate(network, k)
        if run is None:
            k += 1
            continue
        inside = range(run.first, run.output)
        private = all(set(_readers(network, j)) <= set(range(j + 1, run.output + 1)) for j in inside)
        if private and set(_readers(network, run.output)) <= {run.output + 1}:
            try:
                layers, shape = lowered(run, network.layers[:run.first - 1])
            except Exception:  # noqa: BLE001 - a geometry the reader refuses is no MaxPool to write
                layers, shape = [], ()
            mine = network.layers[run.first - 1:run.output]
            if len(layers) == len(mine) and all(_same(a, b) for a, b in zip(layers, mine)):
                out[run.first] = replace(run, out_shape=tuple(int(d) for d in shape))
        k = run.output + 1
    return out
