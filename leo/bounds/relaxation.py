"""The bound formulas, written once for numpy arrays and torch tensors alike.

Two engines bound pre-activations: ``leo.bounds.propagate`` (numpy, one box, scipy.sparse
for conv layers: the stability analysis) and ``leo.bounds.batched`` (torch, float64, many
sub-boxes in one pass: input-splitting branch and bound). Both take from here the ReLU
relaxation, the interval step and the back-substitution loop; each supplies only its
array operations (``BackOps``), so a change to the relaxation changes both, and
``tests/test_relaxation.py`` checks that they agree and that every bound holds on samples.
Float rounding is covered by widening each bound by ``ROUNDING_SLACK`` times the
magnitude of the terms summed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np

#: Relative widening that covers float64 rounding in the sums (n * 2^-53 for n up to
#: ~10^4 terms, with a wide safety factor).
ROUNDING_SLACK = 1e-9
#: Added to every widening, so a bound of exactly 0 terms still moves outward.
TINY = 1e-300

Array = Any  # a numpy array, a scipy.sparse matrix, or a torch tensor


def _xp(a: Array) -> ModuleType:
    """numpy for numpy arrays, torch for tensors (imported only when one is passed)."""
    if isinstance(a, np.ndarray):
        return np
    import torch

    return torch


def relu_relaxation(lo: Array, hi: Array) -> tuple[Array, Array, Array]:
    """The linear relaxation of relu on [lo, hi], per unit (CROWN's):
    ``low * z <= relu(z) <= up * z + icpt``; stable units are exact, an unstable unit's
    upper side is the chord through (lo, 0) and (hi, hi), its lower slope 1 when
    hi > -lo, else 0 (any slope in [0, 1] is sound)."""
    xp = _xp(lo)
    zero = lo - lo
    one = zero + 1.0
    active, inactive = lo >= 0, hi <= 0
    unstable = ~(active | inactive)
    width = xp.where(unstable, hi - lo, one)
    up = xp.where(active, one, xp.where(unstable, hi / width, zero))
    icpt = xp.where(unstable, -lo * hi / width, zero)
    low = xp.where(active | (unstable & (hi > -lo)), one, zero)
    return low, up, icpt


def relu_outputs(lo: Array, hi: Array) -> tuple[Array, Array]:
    """Bounds on relu(z) from bounds on z."""
    xp = _xp(lo)
    return xp.maximum(lo, lo - lo), xp.maximum(hi, hi - hi)


#: One source of an affine layer for the interval step: the source's bounds, then ``apply``
#: (v -> W v, on the engine's layout) and ``apply_abs`` (v -> |W| v).
Source = tuple[Array, Array, Callable[[Array], Array], Callable[[Array], Array]]


def interval_step(bias: Array, sources: Iterable[Source], widen: bool = True) -> tuple[Array, Array]:
    """Interval bounds of ``bias + sum W_s h_s`` from bounds on each ``h_s`` (centre and
    radius), widened for rounding by the magnitude of every term (``widen``: proofs need it;
    a training loss on the bounds, ``leo.train``, does not)."""
    lo = hi = bias
    mag = abs(bias)
    for l, u, apply, apply_abs in sources:
        xp = _xp(l)
        centre, radius = apply((l + u) / 2), apply_abs((u - l) / 2)
        lo, hi = lo + centre - radius, hi + centre + radius
        if widen:
            mag = mag + apply_abs(xp.maximum(abs(l), abs(u)))
    if not widen:
        return lo, hi
    slack = ROUNDING_SLACK * mag + TINY
    return lo - slack, hi + slack


class BackOps(Protocol):
    """An engine's array operations for ``back_substitute``; coefficient blocks ``a`` map a
    source's values to the bound rows, constants are per row."""

    def relax(self, a: Array, relaxation: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        """``a`` through the relu relaxation: new coefficients on z, the constant, its magnitude."""

    def affine(self, a: Array, bias: Array, abs_bias: Array) -> tuple[Array, Array]:
        """``a . bias`` and ``|a| . |bias|``."""

    def through(self, a: Array, w: Array) -> Array:
        """The coefficients ``a W`` on the layer's source."""

    def add(self, a: Array, b: Array) -> Array:
        """Two coefficient blocks on one source, summed."""

    def concretize(self, a0: Array | None, lo: Array, hi: Array) -> tuple[Array, Array]:
        """The least of ``a0 . x`` over the box, and its magnitude (``a0`` None: no input term)."""


@dataclass(frozen=True)
class Step:
    """One layer for back-substitution: weights per source, bias, |bias|, and its relu's
    relaxation (None: no relu, or a linear layer)."""

    weights: Mapping[int, Array]
    bias: Array
    abs_bias: Array
    relaxation: tuple[Array, Array, Array] | None


def back_substitute(ops: BackOps, steps: Sequence[Step], coeffs: dict[int, Array], const: Array,
                    lo: Array, hi: Array) -> tuple[Array, Array | None]:
    """Sound lower bounds of ``sum_s coeffs[s] . h_s + const`` over the box [lo, hi], by
    substituting each layer's relaxation and affine map back to the input (``steps[i]`` is
    layer ``i``, whose output is source ``i + 1``); also the input coefficients behind them."""
    coeffs = dict(coeffs)
    mag = abs(const)
    for s in range(max(coeffs, default=0), 0, -1):
        if s not in coeffs:
            continue
        a = coeffs.pop(s)
        step = steps[s - 1]
        if step.relaxation is not None:
            a, term, term_mag = ops.relax(a, step.relaxation)
            const, mag = const + term, mag + term_mag
        term, term_mag = ops.affine(a, step.bias, step.abs_bias)
        const, mag = const + term, mag + term_mag
        for t, w in step.weights.items():
            contrib = ops.through(a, w)
            coeffs[t] = ops.add(coeffs[t], contrib) if t in coeffs else contrib
    a0 = coeffs.get(0)
    low, low_mag = ops.concretize(a0, lo, hi)
    return const + low - (ROUNDING_SLACK * (mag + low_mag) + TINY), a0
