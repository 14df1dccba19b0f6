"""Cheap, sound bounds on pre-activations: interval arithmetic and symbolic
back-substitution (DeepPoly/CROWN-style linear relaxations).

Bounds are a result, not a side effect: ``LayerBounds`` keeps per unit the lower and
upper bound and the method that proved each. Float rounding is covered by widening
every computed bound by ``ROUNDING_SLACK`` times the magnitude of the terms summed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from leo.core.domain import Box
from leo.core.network import Network

#: Relative widening that covers float64 rounding in the sums below (n * 2^-53 for
#: n up to ~10^4 terms, with a wide safety factor).
ROUNDING_SLACK = 1e-9


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


def _widen(lo: np.ndarray, hi: np.ndarray, magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    slack = ROUNDING_SLACK * magnitude + 1e-300
    return lo - slack, hi + slack


def output_bounds(layer_relu: bool, bounds: LayerBounds) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on a layer's output ``h`` from bounds on its pre-activation ``z``."""
    if layer_relu:
        return np.maximum(bounds.lower, 0.0), np.maximum(bounds.upper, 0.0)
    return bounds.lower, bounds.upper


def interval_layer(network: Network, k: int, box: Box, previous: list[LayerBounds]) -> LayerBounds:
    """Interval bounds of layer ``k`` (0-based) from the bounds of the layers before it."""
    layer = network.layers[k]
    outs = [(box.lower, box.upper)] + [
        output_bounds(network.layers[i].relu, previous[i]) for i in range(k)
    ]
    lo = layer.bias.copy()
    hi = layer.bias.copy()
    mag = np.abs(layer.bias)
    for s, w in layer.weights.items():
        l, u = outs[s]
        op = weight_operator(w)
        wp, wn = _pos(op), _neg(op)
        lo = lo + _vec(wp @ l) + _vec(wn @ u)
        hi = hi + _vec(wp @ u) + _vec(wn @ l)
        mag = mag + _vec(abs(op) @ np.maximum(np.abs(l), np.abs(u)))
    lo, hi = _widen(lo, hi, mag)
    n = layer.width
    return LayerBounds(lo, hi, ("interval",) * n, ("interval",) * n)


def _relu_relaxation(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear relaxation of relu on [lo, hi]: slope_low*z <= relu(z) <= slope_up*z + icpt_up."""
    active = lo >= 0
    inactive = hi <= 0
    unstable = ~(active | inactive)
    denom = np.where(unstable, hi - lo, 1.0)
    slope_up = np.where(active, 1.0, np.where(unstable, hi / denom, 0.0))
    icpt_up = np.where(unstable, -lo * hi / denom, 0.0)
    slope_low = np.where(active, 1.0, np.where(unstable & (hi > -lo), 1.0, 0.0))
    return slope_low, slope_up, icpt_up


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
    const = np.concatenate([layer.bias, -layer.bias])
    mag = np.abs(const)
    for s, w in layer.weights.items():
        op = weight_operator(w)
        coeffs[s] = sp.vstack([op, -op], format="csr") if sp.issparse(op) else np.vstack([w, -w])
    relax = [_relu_relaxation(b.lower, b.upper) if network.layers[i].relu else None
             for i, b in enumerate(previous)]
    for s in range(k, 0, -1):  # source s is the output of layer index s-1
        if s not in coeffs:
            continue
        a = coeffs.pop(s)
        src = network.layers[s - 1]
        rel = relax[s - 1]
        if rel is None:
            az = a
        else:
            slope_low, slope_up, icpt_up = rel
            pos, neg = _pos(a), _neg(a)
            az = _settle(_scale_columns(pos, slope_low) + _scale_columns(neg, slope_up))
            const = const + _vec(neg @ icpt_up)
            mag = mag + _vec(abs(neg) @ np.abs(icpt_up))
        const = const + _vec(az @ src.bias)
        mag = mag + _vec(abs(az) @ np.abs(src.bias))
        for t, w in src.weights.items():
            contrib = _product(az, w)
            coeffs[t] = _settle(coeffs[t] + contrib) if t in coeffs else contrib
    a0 = coeffs.get(0, np.zeros((2 * n, box.dim)))
    low = const + _vec(_pos(a0) @ box.lower) + _vec(_neg(a0) @ box.upper)
    mag = mag + _vec(abs(a0) @ np.maximum(np.abs(box.lower), np.abs(box.upper)))
    low = low - ROUNDING_SLACK * mag - 1e-300
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
