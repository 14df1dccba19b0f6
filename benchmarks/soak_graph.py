"""Random convolutional, residual and max-pool networks for the soak, each built twice
from one draw: as a torch module (what leo reads, through its production reader) and
as a plain graph of affine / ReLU / max nodes whose affine maps are measured from the
torch layers themselves (the layer applied to the unit vectors), so the truth computed
on the graph does not depend on leo's lowering of convolutions, adds or pools.

Sizes are kept small (at most ``MAX_RELUS`` ReLUs and ``MAX_POOLED`` pooled units) so
that enumerating activation patterns stays feasible for many of them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Drawn networks with more ReLUs than this are drawn again smaller.
MAX_RELUS = 16
#: ... and with more max-pool outputs than this.
MAX_POOLED = 4


class Op(enum.Enum):
    """A node of the plain graph."""

    AFFINE = "affine"  # sum over sources of W_s h_s + b
    RELU = "relu"  # elementwise max(h, 0) of its one source
    MAX = "max"  # output j = max of the source's units groups[j]


@dataclass(frozen=True)
class Node:
    op: Op
    sources: tuple[int, ...]  # node indices, 0 = the input
    weights: tuple[np.ndarray, ...] = ()
    bias: np.ndarray | None = None
    groups: np.ndarray | None = None


@dataclass(frozen=True)
class Graph:
    """Node ``i`` (1-based) computes value ``i`` from earlier values; the last is the output."""

    inputs: int
    nodes: tuple[Node, ...]

    def values(self, x: np.ndarray) -> list[np.ndarray]:
        """Every node's value on the rows of ``x`` (index 0: the input)."""
        vals = [np.atleast_2d(np.asarray(x, dtype=np.float64))]
        for node in self.nodes:
            vals.append(_EVAL[node.op](node, vals))
        return vals

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.values(x)[-1]

    @property
    def relus(self) -> int:
        return sum(self.width(i + 1) for i, n in enumerate(self.nodes) if n.op is Op.RELU)

    def width(self, i: int) -> int:
        if i == 0:
            return self.inputs
        node = self.nodes[i - 1]
        return {Op.AFFINE: lambda: node.bias.size, Op.RELU: lambda: self.width(node.sources[0]),
                Op.MAX: lambda: len(node.groups)}[node.op]()


_EVAL: dict[Op, Callable[[Node, list[np.ndarray]], np.ndarray]] = {
    Op.AFFINE: lambda n, v: n.bias + sum(v[s] @ w.T for s, w in zip(n.sources, n.weights)),
    Op.RELU: lambda n, v: np.maximum(v[n.sources[0]], 0.0),
    Op.MAX: lambda n, v: v[n.sources[0]][:, n.groups].max(axis=2),
}


def joint_difference(f: Graph, g: Graph) -> Graph:
    """One graph computing f(x) - g(x): both side by side on the shared input."""
    shift = len(f.nodes)
    moved = [Node(n.op, tuple(s if s == 0 else s + shift for s in n.sources), n.weights, n.bias, n.groups)
             for n in g.nodes]
    m = f.width(len(f.nodes))
    diff = Node(Op.AFFINE, (shift, shift + len(g.nodes)), (np.eye(m), -np.eye(m)), np.zeros(m))
    return Graph(f.inputs, (*f.nodes, *moved, diff))


def from_leo(network) -> Graph:  # noqa: ANN001 - leo.Network, read as plain data
    """The plain graph of a leo network's layers (sources, weights, bias, ReLU flag)."""
    nodes: list[Node] = []
    where = {0: 0}  # leo layer index -> graph node holding its output
    for k, layer in enumerate(network.layers, start=1):
        srcs = tuple(sorted(layer.weights))
        nodes.append(Node(Op.AFFINE, tuple(where[s] for s in srcs),
                          tuple(np.asarray(layer.weights[s]) for s in srcs), np.asarray(layer.bias)))
        if layer.relu:
            nodes.append(Node(Op.RELU, (len(nodes),)))
        where[k] = len(nodes)
    return Graph(int(network.input_dim), tuple(nodes))


# -- the torch side ---------------------------------------------------------------------
class Step(enum.Enum):
    LAYER = "layer"  # a Conv2d or Linear module, by index
    RELU = "relu"
    POOL = "pool"  # max-pool, kernel = stride = arg
    FLATTEN = "flatten"
    SAVE = "save"  # remember the current value for a later ADD
    ADD = "add"  # add the value saved as number arg


@dataclass(frozen=True)
class Drawn:
    """One drawn network: its steps, layers' parameters, per-sample input shape, box."""

    kind: str
    shape: tuple[int, ...]
    steps: tuple[tuple[Step, int], ...]
    layers: tuple[tuple[str, dict[str, object], np.ndarray, np.ndarray], ...]  # (type, ctor args, weight, bias)
    lower: np.ndarray
    upper: np.ndarray
    traits: tuple[str, ...] = field(default=())


def module(drawn: Drawn):  # noqa: ANN201 - a float64 torch.nn.Module
    """The torch module of a drawn network (float64)."""
    import torch
    from torch import nn

    class SoakNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.steps = drawn.steps
            mods = []
            for kind, args, w, b in drawn.layers:
                m = (nn.Conv2d if kind == "conv" else nn.Linear)(**args).double()
                with torch.no_grad():
                    m.weight.copy_(torch.from_numpy(w))
                    m.bias.copy_(torch.from_numpy(b))
                mods.append(m)
            self.layers = nn.ModuleList(mods)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            saved: list[torch.Tensor] = []
            for step, arg in self.steps:
                x = _TORCH[step](self, x, arg, saved)
            return x

    return SoakNet().eval()


def _max_pool(x, k: int):  # noqa: ANN001, ANN202 - torch tensors
    from torch.nn import functional

    return functional.max_pool2d(x, k)


def _save(saved: list, x):  # noqa: ANN001, ANN202
    saved.append(x)
    return x


_TORCH = {
    Step.LAYER: lambda m, x, a, s: m.layers[a](x),
    Step.RELU: lambda m, x, a, s: x.relu(),
    Step.POOL: lambda m, x, a, s: _max_pool(x, a),
    Step.FLATTEN: lambda m, x, a, s: x.flatten(1),
    Step.SAVE: lambda m, x, a, s: _save(s, x),
    Step.ADD: lambda m, x, a, s: x + s[a],
}


def torch_forward(mod, shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """The module's own forward pass on flat rows."""
    import torch

    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)).reshape(-1, *shape)
        return mod(t).reshape(t.shape[0], -1).numpy()


@dataclass
class _Walk:
    """The graph being built while the steps are read: nodes, current value and its shape."""

    nodes: list[Node]
    cur: int
    shape: tuple[int, ...]
    saved: list[tuple[int, tuple[int, ...]]]

    def emit(self, node: Node, shape: tuple[int, ...] | None = None) -> None:
        self.nodes.append(node)
        self.cur = len(self.nodes)
        self.shape = self.shape if shape is None else shape


def _layer_node(w: _Walk, mod, arg: int) -> None:  # noqa: ANN001
    """A Conv2d or Linear as a matrix: the layer applied to 0 and to every unit vector."""
    import torch

    n = int(np.prod(w.shape))
    with torch.no_grad():
        probe = torch.cat([torch.zeros(1, n, dtype=torch.float64), torch.eye(n, dtype=torch.float64)])
        out = mod.layers[arg](probe.reshape(-1, *w.shape))
    flat = out.reshape(n + 1, -1).numpy()
    w.emit(Node(Op.AFFINE, (w.cur,), ((flat[1:] - flat[0]).T.copy(),), flat[0].copy()), tuple(out.shape[1:]))


def _pool_node(w: _Walk, arg: int) -> None:
    groups, shape = pool_groups(w.shape, arg)
    w.emit(Node(Op.MAX, (w.cur,), groups=groups), shape)


def _add_node(w: _Walk, arg: int) -> None:
    n = int(np.prod(w.shape))
    w.emit(Node(Op.AFFINE, (w.cur, w.saved[arg][0]), (np.eye(n), np.eye(n)), np.zeros(n)))


_GRAPH_STEPS: dict[Step, Callable[[_Walk, object, int], None]] = {
    Step.LAYER: _layer_node,
    Step.RELU: lambda w, m, a: w.emit(Node(Op.RELU, (w.cur,))),
    Step.POOL: lambda w, m, a: _pool_node(w, a),
    Step.FLATTEN: lambda w, m, a: setattr(w, "shape", (int(np.prod(w.shape)),)),
    Step.SAVE: lambda w, m, a: w.saved.append((w.cur, w.shape)),
    Step.ADD: lambda w, m, a: _add_node(w, a),
}


def graph_of(drawn: Drawn, mod) -> Graph:  # noqa: ANN001
    """The plain graph, each affine map measured from the module's own layers."""
    walk = _Walk([], 0, drawn.shape, [])
    for step, arg in drawn.steps:
        _GRAPH_STEPS[step](walk, mod, arg)
    return Graph(int(np.prod(drawn.shape)), tuple(walk.nodes))


def pool_groups(shape: tuple[int, ...], k: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flat (C, H, W) indices of each k x k window (stride k, no padding, floor)."""
    c, h, w = shape
    ho, wo = h // k, w // k
    idx = np.arange(c * h * w).reshape(c, h, w)
    groups = [idx[ch, i * k:(i + 1) * k, j * k:(j + 1) * k].ravel()
              for ch in range(c) for i in range(ho) for j in range(wo)]
    return np.array(groups, dtype=np.int64).reshape(len(groups), k * k), (c, ho, wo)
