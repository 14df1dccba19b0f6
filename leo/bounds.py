"""Cheap, sound bounds on pre-activations: interval arithmetic and symbolic
back-substitution (DeepPoly/CROWN-style linear relaxations).

Bounds are a result, not a side effect: ``LayerBounds`` keeps per unit the lower and
upper bound and the method that proved each. Float rounding is covered by widening
every computed bound by ``ROUNDING_SLACK`` times the magnitude of the terms summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leo.domain import Box
from leo.network import Network

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
        wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
        lo = lo + wp @ l + wn @ u
        hi = hi + wp @ u + wn @ l
        mag = mag + np.abs(w) @ np.maximum(np.abs(l), np.abs(u))
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
    that keeps it a valid lower bound.
    """
    layer = network.layers[k]
    n = layer.width
    coeffs: dict[int, np.ndarray] = {}
    const = np.concatenate([layer.bias, -layer.bias])
    mag = np.abs(const)
    for s, w in layer.weights.items():
        coeffs[s] = np.vstack([w, -w])
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
            pos, neg = np.maximum(a, 0.0), np.minimum(a, 0.0)
            az = pos * slope_low + neg * slope_up
            const = const + neg @ icpt_up
            mag = mag + np.abs(neg) @ np.abs(icpt_up)
        const = const + az @ src.bias
        mag = mag + np.abs(az) @ np.abs(src.bias)
        for t, w in src.weights.items():
            contrib = az @ w
            coeffs[t] = coeffs[t] + contrib if t in coeffs else contrib
    a0 = coeffs.get(0, np.zeros((2 * n, box.dim)))
    low = const + np.maximum(a0, 0.0) @ box.lower + np.minimum(a0, 0.0) @ box.upper
    mag = mag + np.abs(a0) @ np.maximum(np.abs(box.lower), np.abs(box.upper))
    low = low - ROUNDING_SLACK * mag - 1e-300
    lo, hi = low[:n], -low[n:]
    return LayerBounds(lo, hi, ("symbolic",) * n, ("symbolic",) * n)


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
