"""Cheap, sound bounds on pre-activations: interval arithmetic and symbolic
back-substitution (DeepPoly/CROWN-style linear relaxations).

Bounds are a result, not a side effect: ``LayerBounds`` keeps per unit the lower and
upper bound and the method that proved each. Float rounding is covered by widening
every computed bound by ``ROUNDING_SLACK`` times the magnitude of the terms summed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from leo.bounds.relaxation import (ROUNDING_SLACK, Step, back_substitute, interval_step, relu_outputs,  # noqa: F401 (ROUNDING_SLACK: the report states it)
                                   relu_relaxation)
from leo.core.domain import Box
from leo.core.network import Network



@dataclass(frozen=True)
class LayerBounds:
    """Proven bounds on one layer's pre-activations, with the method behind each."""

    lower: np.ndarray
    upper: np.ndarray
    lower_method: tuple[str, ...]
    upper_method: tuple[str, ...]

    def tightened(self, lower: np.ndarray, upper: np.ndarray, method: str) -> "LayerBounds":
        """Keep, per unit and side, the tighter of the current and the new bound."""
        lo_better = lower > self.lower
        hi_better = upper < self.upper
        return LayerBounds(
            np.where(lo_better, lower, self.lower),
            np.where(hi_better, upper, self.upper),
            tuple(method if b else m for b, m in zip(lo_better, self.lower_method)),
            tuple(method if b else m for b, m in zip(hi_better, self.upper_method)),
        )

    def with_unit(self, j: int, lower: float | None, upper: float | None, method: str) -> "LayerBounds":
        lo, hi = self.lower.copy(), self.upper.copy()
        lm, um = list(self.lower_method), list(self.upper_method)
        if lower is not None and lower > lo[j]:
            lo[j], lm[j] = lower, method
        if upper is not None and upper < hi[j]:
            hi[j], um[j] = upper, method
        return LayerBounds(lo, hi, tuple(lm), tuple(um))


#: A weight matrix is used as a scipy.sparse CSR view (``sparse_view``) when at most this
#: share of its entries are nonzero and it has at least SPARSE_MIN_SIZE entries: a lowered
#: conv (3x3 kernels over 32 channels: 288 of 6,272 entries per row, 5 %) costs a
#: twentieth of its dense product; a dense MLP layer stays dense, so MLP results are
#: bit for bit what they were.
SPARSE_DENSITY = 0.25
SPARSE_MIN_SIZE = 100_000
#: Back-substitution coefficients stay sparse while at most this share is nonzero.
SPARSE_KEEP = 0.3

_views: dict[int, tuple[weakref.ref, sp.csr_matrix | None]] = {}


def sparse_view(w: np.ndarray) -> sp.csr_matrix | None:
    """The CSR form of a read-only layer weight when sparse products pay (None: use it
    dense). Cached per array for the array's lifetime: ``Layer`` weights are frozen, so
    the view cannot go stale, and every stage (bounds, MILP rows, witnesses) shares it."""
    key = id(w)
    hit = _views.get(key)
    if hit is not None and hit[0]() is w:
        return hit[1]
    view = None
    if w.ndim == 2 and w.size >= SPARSE_MIN_SIZE and not w.flags.writeable:
        nnz = int(np.count_nonzero(w))
        if nnz <= SPARSE_DENSITY * w.size:
            view = sp.csr_matrix(w)
    if not w.flags.writeable:  # a writeable array could change under a cached view
        _views[key] = (weakref.ref(w, lambda _, k=key: _views.pop(k, None)), view)
    return view


def weight_operator(w: np.ndarray) -> np.ndarray | sp.csr_matrix:
    """``w`` as the faster operand for products: its sparse view, or itself."""
    view = sparse_view(w)
    return w if view is None else view


def _pos(a: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    return a.maximum(0.0) if sp.issparse(a) else np.maximum(a, 0.0)


def _neg(a: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    return a.minimum(0.0) if sp.issparse(a) else np.minimum(a, 0.0)


def _vec(v: np.ndarray | np.matrix) -> np.ndarray:
    """A 1-D array from a product that may have been sparse."""
    return np.asarray(v).reshape(-1)


def _scale_columns(a: np.ndarray | sp.csr_matrix, scale: np.ndarray) -> np.ndarray | sp.csr_matrix:
    return sp.csr_matrix(a.multiply(scale[None, :])) if sp.issparse(a) else a * scale


def _settle(a: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    """Coefficients that have filled in are cheaper dense."""
    if sp.issparse(a) and a.nnz > SPARSE_KEEP * a.shape[0] * a.shape[1]:
        return a.toarray()
    return sp.csr_matrix(a) if sp.issparse(a) else np.asarray(a)


def output_bounds(layer_relu: bool, bounds: LayerBounds) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on a layer's output ``h`` from bounds on its pre-activation ``z``."""
    return relu_outputs(bounds.lower, bounds.upper) if layer_relu else (bounds.lower, bounds.upper)


def _apply(op: np.ndarray | sp.csr_matrix) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                    Callable[[np.ndarray], np.ndarray]]:
    """``v -> W v`` and ``v -> |W| v`` for the interval step."""
    return (lambda v: _vec(op @ v)), (lambda v: _vec(abs(op) @ v))


def interval_layer(network: Network, k: int, box: Box, previous: list[LayerBounds]) -> LayerBounds:
    """Interval bounds of layer ``k`` (0-based) from the bounds of the layers before it."""
    layer = network.layers[k]
    outs = [(box.lower, box.upper)] + [
        output_bounds(network.layers[i].relu, previous[i]) for i in range(k)
    ]
    lo, hi = interval_step(layer.bias, [(*outs[s], *_apply(weight_operator(w))) for s, w in layer.weights.items()])
    n = layer.width
    return LayerBounds(lo, hi, ("interval",) * n, ("interval",) * n)


class NumpyOps:
    """``BackOps`` on one box: (m, n) coefficient blocks, dense or scipy.sparse while sparse."""

    @staticmethod
    def relax(a: np.ndarray | sp.csr_matrix, relaxation: tuple) -> tuple:
        low, up, icpt = relaxation
        pos, neg = _pos(a), _neg(a)
        az = _settle(_scale_columns(pos, low) + _scale_columns(neg, up))
        return az, _vec(neg @ icpt), _vec(abs(neg) @ np.abs(icpt))

    @staticmethod
    def affine(a: np.ndarray | sp.csr_matrix, bias: np.ndarray, abs_bias: np.ndarray) -> tuple:
        return _vec(a @ bias), _vec(abs(a) @ abs_bias)

    @staticmethod
    def through(a: np.ndarray | sp.csr_matrix, w: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return _product(a, w)

    @staticmethod
    def add(a: np.ndarray | sp.csr_matrix, b: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
        return _settle(a + b)

    @staticmethod
    def concretize(a0: np.ndarray | sp.csr_matrix | None, lo: np.ndarray, hi: np.ndarray) -> tuple:
        if a0 is None:
            return 0.0, 0.0
        low = _vec(_pos(a0) @ lo) + _vec(_neg(a0) @ hi)
        return low, _vec(abs(a0) @ np.maximum(np.abs(lo), np.abs(hi)))


def symbolic_layer(network: Network, k: int, box: Box, previous: list[LayerBounds]) -> LayerBounds:
    """Back-substitution bounds of layer ``k`` (0-based) through all earlier layers.

    Lower and upper bounds are computed together by back-substituting the stacked
    objective ``[I; -I]`` (minimise z and -z), each row picking the relaxation side
    that keeps it a valid lower bound. Coefficients stay scipy.sparse while they are
    sparse (a conv layer's rows reach only its receptive field), dense otherwise.
    """
    layer = network.layers[k]
    n = layer.width
    coeffs: dict[int, np.ndarray | sp.csr_matrix] = {}
    for s, w in layer.weights.items():
        op = weight_operator(w)
        coeffs[s] = sp.vstack([op, -op], format="csr") if sp.issparse(op) else np.vstack([w, -w])
    steps = [Step(ly.weights, ly.bias, np.abs(ly.bias),
                  relu_relaxation(previous[i].lower, previous[i].upper) if ly.relu else None)
             for i, ly in enumerate(network.layers[:k])]
    low, _ = back_substitute(NumpyOps, steps, coeffs, np.concatenate([layer.bias, -layer.bias]),
                             box.lower, box.upper)
    lo, hi = low[:n], -low[n:]
    return LayerBounds(lo, hi, ("symbolic",) * n, ("symbolic",) * n)


def _product(a: np.ndarray | sp.csr_matrix, w: np.ndarray) -> np.ndarray | sp.csr_matrix:
    """``a @ w`` with ``w``'s sparse view when it has one; dense unless both are sparse."""
    op = weight_operator(w)
    if sp.issparse(a) and sp.issparse(op):
        return _settle(a @ op)
    if sp.issparse(a):
        return np.asarray(a @ w)
    return np.asarray(a @ op) if sp.issparse(op) else a @ w


def cheap_bounds(network: Network, box: Box, symbolic: bool = True) -> list[LayerBounds]:
    """Best of interval and (optionally) symbolic bounds for every layer, in order."""
    result: list[LayerBounds] = []
    for k in range(len(network.layers)):
        b = interval_layer(network, k, box, result)
        if symbolic and k > 0:
            s = symbolic_layer(network, k, box, result)
            b = b.tightened(s.lower, s.upper, "symbolic")
        result.append(b)
    return result
