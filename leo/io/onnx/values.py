"""The values of the ONNX walk: constants (numpy arrays) and ``Affine`` maps of the input.

Every tensor of the graph is either a constant or an ``Affine``: a vector that is an
affine function of outputs of layers already emitted. A tensor is *batched* when its
first ONNX axis is the batch (the usual export), and ``Affine.shape`` then leaves it
out; a graph whose input has no batch axis (a [5] or [3, 32, 32] input) holds
*unbatched* tensors whose ``shape`` is the whole ONNX shape. An unbatched tensor whose
first axis is 1 is the batched tensor of one sample, so ops defined on (N, C, ...)
tensors (Conv, pools, BatchNormalization) read it through ``as_batched``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Union

import numpy as np

from leo.errors import LeoInputError
from leo.io.conv import check_size
from leo.core.network import Layer


@dataclass(frozen=True)
class Affine:
    """A tensor that depends on the input: ``sum_s terms[s] @ h_s + bias``.

    A 1-D term is a diagonal matrix (kept as its diagonal, so the identity on a
    784-pixel input costs 784 numbers). ``shape`` is the tensor's shape without the
    batch axis when ``batched``, else its whole shape; the vector is that tensor in
    row-major order. ``mixed`` says a weight matrix was applied since the last layer:
    the next one starts a new (linear) layer instead of multiplying two weight matrices
    together. ``structure`` names the conv the map was lowered from (kept through
    per-channel scales and shifts, such as a BatchNormalization or a bias).
    """

    terms: Mapping[int, np.ndarray]
    bias: np.ndarray
    shape: tuple[int, ...]
    mixed: bool = False
    structure: Mapping[str, Any] | None = None
    batched: bool = True

    @property
    def size(self) -> int:
        return int(self.bias.size)

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The ONNX shape of the tensor for one sample (batch axis 1 when batched)."""
        return (1, *self.shape) if self.batched else self.shape

    def matmul(self, matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, ...]) -> Affine:
        """``matrix @ self + offset``."""
        terms = {s: _scaled_columns(matrix, t) if t.ndim == 1 else matrix @ t for s, t in self.terms.items()}
        return Affine(terms, matrix @ self.bias + offset, shape, mixed=True, batched=self.batched)

    def elementwise(self, scale: np.ndarray, offset: np.ndarray) -> Affine:
        """``scale * self + offset`` with per-element ``scale`` and ``offset``."""
        terms = {s: scale * t if t.ndim == 1 else scale[:, None] * t for s, t in self.terms.items()}
        keep = (self.structure is not None and len(self.shape) > 1
                and per_channel(scale, self.shape) and per_channel(offset, self.shape))
        return replace(self, terms=terms, bias=scale * self.bias + offset, structure=self.structure if keep else None)

    def plus(self, other: Affine) -> Affine:
        terms = dict(self.terms)
        for s, t in other.terms.items():
            terms[s] = add_terms(terms[s], t) if s in terms else t
        return Affine(terms, self.bias + other.bias, self.shape, self.mixed or other.mixed, batched=self.batched)

    def reshaped(self, shape: tuple[int, ...], batched: bool | None = None) -> Affine:
        return replace(self, shape=shape, batched=self.batched if batched is None else batched)

    def rows(self, index: np.ndarray, shape: tuple[int, ...]) -> Affine:
        """The entries ``index`` (flat), in that order, as a tensor of ``shape``."""
        terms = {s: dense(t)[index] for s, t in self.terms.items()}
        return Affine(terms, self.bias[index], shape, self.mixed, batched=self.batched)

    def is_identity_of(self, source: int) -> bool:
        t = self.terms.get(source)
        return (set(self.terms) == {source} and t is not None and t.ndim == 1
                and bool(np.all(t == 1.0)) and not self.bias.any())


Value = Union[np.ndarray, Affine]


def _scaled_columns(matrix: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
    """``matrix @ diag(diagonal)``, without a copy of a (possibly GiB-sized conv) matrix
    when the diagonal is the identity, as on the network's input."""
    return matrix if bool(np.all(diagonal == 1.0)) else matrix * diagonal


def per_channel(values: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``values`` (flat, of ``shape`` with rank >= 2) is constant within each channel."""
    v = values.reshape(shape[0], -1)
    return bool(np.all(v == v[:, :1]))


def stack(parts: list[Affine], shape: tuple[int, ...]) -> Affine:
    """The affine maps of ``parts`` one after another (flat), as a tensor of ``shape``."""
    sources = sorted({s for p in parts for s in p.terms})
    widths = {s: next(dense(p.terms[s]).shape[1] for p in parts if s in p.terms) for s in sources}
    terms = {s: np.vstack([dense(p.terms[s]) if s in p.terms else np.zeros((p.size, widths[s])) for p in parts])
             for s in sources}
    return Affine(terms, np.concatenate([p.bias for p in parts]), shape, any(p.mixed for p in parts),
                  batched=parts[0].batched)


def add_terms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim == b.ndim == 1:
        return a + b
    return dense(a) + dense(b)


def dense(t: np.ndarray) -> np.ndarray:
    return np.diag(t) if t.ndim == 1 else t


def unbatched(x: Affine) -> Affine:
    """The same tensor with its batch axis (of one sample) written out."""
    return x if not x.batched else x.reshaped(x.full_shape, batched=False)


def to_float(a: np.ndarray) -> np.ndarray:
    """Float tensors in float64; integer ones (shapes, indices) stay integers."""
    return a.astype(np.float64) if a.dtype.kind == "f" else a


@dataclass
class Graph:
    """The state of the walk: the value of every tensor name and the layers so far.
    ``batch`` is the static batch size of an export traced at a fixed batch, else None.
    ``single_sample`` says the file fixes the input's batch axis at the literal 1: the graph
    is then defined on one sample only, so an op that moves or reduces that axis only
    reorders (or sums over one) sample's values and is read exactly on the unbatched tensor."""

    values: dict[str, Value]
    batch: int | None = None
    layers: list[Layer] = field(default_factory=list)
    single_sample: bool = False

    @classmethod
    def start(cls, input_name: str, shape: tuple[int, ...], batched: bool, batch: int | None,
              single_sample: bool = False) -> Graph:
        n = int(np.prod(shape))
        return cls({input_name: Affine({0: np.ones(n)}, np.zeros(n), shape, batched=batched)}, batch,
                   single_sample=single_sample)

    def emit(self, value: Affine, relu: bool) -> Affine:
        """Make ``value`` a layer; return its output as the identity on the new source."""
        shape = value.shape if value.batched or value.shape[:1] != (1,) else value.shape[1:]
        self.layers.append(Layer({s: dense(t) for s, t in value.terms.items()}, value.bias, relu,
                                 shape if len(shape) > 1 else None, value.structure if value.mixed else None))
        return Affine({len(self.layers): np.ones(value.size)}, np.zeros(value.size), value.shape,
                      batched=value.batched)


@dataclass(frozen=True)
class Node:
    """One ONNX node with its inputs resolved (None for an omitted optional input)."""

    op: str
    name: str
    inputs: list[Value | None]
    attrs: dict[str, Any]
    outputs: tuple[str, ...] = ()

    def fail(self, why: str) -> LeoInputError:
        return LeoInputError(f"ONNX op {self.op} at node '{self.name}': {why}")

    def const(self, i: int, what: str) -> np.ndarray:
        v = self.input(i)
        if not isinstance(v, np.ndarray):
            raise self.fail(f"the {what} must be a constant (an initializer or a Constant node)")
        return v

    def input(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def text(self, name: str, default: str) -> str:
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else str(value)

    def with_inputs(self, inputs: list[Value | None]) -> Node:
        return replace(self, inputs=inputs)


Handler = Callable[[Graph, Node], list[Value]]


def as_batched(node: Node, x: Affine) -> Affine:
    """``x`` as a batched tensor: an unbatched one must have a first axis of 1."""
    if x.batched:
        return x
    if len(x.shape) < 2 or x.shape[0] != 1:
        raise node.fail(f"needs a (batch, channels, ...) tensor, got shape {list(x.shape)} (the graph's "
                        "input has no batch dimension; add one of size 1 before this node)")
    return x.reshaped(x.shape[1:], batched=True)


def broadcast_to(node: Node, x: Affine, shape: tuple[int, ...]) -> Affine:
    """``x`` broadcast (numpy rules) against a tensor of ONNX ``shape``: its entries repeated
    where the other widens it; the batch axis of a batched ``x`` must stay first and alone."""
    full = x.full_shape
    try:
        target = tuple(int(d) for d in np.broadcast_shapes(full, tuple(shape)))
    except ValueError:
        raise node.fail(f"shapes {list(full)} and {list(shape)} do not broadcast") from None
    if x.batched and (len(target) != len(full) or target[0] != 1):
        raise node.fail(f"a tensor of shape {list(shape)} broadcast over the batch dimension of per-sample "
                        f"shape {list(x.shape)}")
    if target == full:
        return x
    check_size(int(np.prod(target)), x.size)
    index = np.broadcast_to(np.arange(x.size).reshape(full), target).ravel()
    return x.rows(index, target[1:] if x.batched else target)


def constant_over(node: Node, c: np.ndarray, full: tuple[int, ...]) -> np.ndarray:
    """The constant ``c`` broadcast over a tensor of ONNX shape ``full`` (which it must not
    widen), flattened."""
    c = np.asarray(c, dtype=np.float64)
    try:
        ok = c.ndim <= len(full) and np.broadcast_shapes(c.shape, full) == tuple(full)
    except ValueError:
        ok = False
    if not ok:
        raise node.fail(f"a constant of shape {list(c.shape)} does not broadcast over the shape {list(full)}")
    return np.broadcast_to(c, full).reshape(-1).astype(np.float64)


def linear(g: Graph, node: Node, x: Affine, w: np.ndarray, offset: np.ndarray, shape: tuple[int, ...]) -> Affine:
    """``w @ x + offset``; a second weight matrix since the last layer starts a new layer."""
    if w.shape[1] != x.size:
        raise node.fail(f"weight of shape {w.shape} does not fit an input of {x.size} values")
    if x.mixed:
        x = g.emit(x, relu=False)
    return x.matmul(w, offset, shape)


def negate(x: Value) -> Value:
    if isinstance(x, np.ndarray):
        return -x
    return x.elementwise(-np.ones(x.size), np.zeros(x.size))
