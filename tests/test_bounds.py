"""Bounds on the production path, against independent truth.

Production computes bounds with ``leo.bounds.propagate.interval_layer`` and ``symbolic_layer``
(called layer by layer by the analysis) and, with ``--lp-bounds``, LP relaxations of
earlier layers; ``leo.analyse`` reports them. These tests run exactly that and compare
with what does not share leo's code: interval arithmetic and one step of
back-substitution written out here unit by unit, exact ranges by enumerating activation
patterns (one scipy LP each, tests/conftest.exact_ranges), the triangle relaxation as a
scipy LP, and dense sampling. Each bound method has a test that fails when it is widened
or shrunk by 1e-3 or (symbolic) skipped: see each test's docstring.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

import leo
from leo.bounds.propagate import interval_layer, symbolic_layer
from leo.core.domain import make_box
from tests.conftest import exact_ranges, random_mlp

#: What the analysis needs to keep bounds-only decisions: no witnesses, no searches.
QUIET = dict(samples=0, local_search=False, neighbourhood=False, time_limit=30)
#: leo widens every bound by 1e-9 times the magnitude of its terms (ROUNDING_SLACK).
ROUND = 1e-7


def _affine_range(w: np.ndarray, b: float, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
    """Exact min and max of ``w @ x + b`` over the box, one term at a time."""
    lo = hi = float(b)
    for wi, li, ui in zip(w, lower, upper):
        lo += min(wi * li, wi * ui)
        hi += max(wi * li, wi * ui)
    return lo, hi


def _interval_reference(net, box) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval arithmetic through every layer of a plain MLP, written out unit by unit."""
    out_lo, out_hi = box.lower, box.upper
    result = []
    for k, layer in enumerate(net.layers):
        w = layer.weights[k]
        ranges = [_affine_range(w[i], layer.bias[i], out_lo, out_hi) for i in range(layer.width)]
        lo, hi = np.array([r[0] for r in ranges]), np.array([r[1] for r in ranges])
        result.append((lo, hi))
        out_lo, out_hi = (np.maximum(lo, 0), np.maximum(hi, 0)) if layer.relu else (lo, hi)
    return result


def _symbolic_reference(net, box, lo0: np.ndarray, hi0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Back-substitution bounds of layer 1 through the ReLUs of layer 0 (bounds lo0, hi0):
    each term w * relu(z_j) is replaced by the linear side that bounds it from below
    (w > 0: z_j if hi0 > -lo0 else 0; w < 0: the chord hi0 (z_j - lo0) / (hi0 - lo0)),
    then the resulting affine function of x is minimised over the box."""
    l0, l1 = net.layers[0], net.layers[1]
    w0, b0, w1, b1 = l0.weights[0], l0.bias, l1.weights[1], l1.bias

    def lower_bound(row: np.ndarray, const: float) -> float:
        coef, c = np.zeros(box.dim), float(const)
        for j, a in enumerate(row):
            lo, hi = lo0[j], hi0[j]
            if lo >= 0:  # active: relu(z) = z
                coef += a * w0[j]; c += a * b0[j]
            elif hi <= 0:  # inactive: relu(z) = 0
                continue
            elif a > 0:
                if hi > -lo:
                    coef += a * w0[j]; c += a * b0[j]
            else:
                s = hi / (hi - lo)
                coef += a * s * w0[j]; c += a * (s * b0[j] - s * lo)
        return _affine_range(coef, c, box.lower, box.upper)[0]

    lower = np.array([lower_bound(w1[i], b1[i]) for i in range(l1.width)])
    upper = np.array([-lower_bound(-w1[i], -b1[i]) for i in range(l1.width)])
    return lower, upper


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=0, atol=ROUND))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_interval_layer_is_interval_arithmetic(seed):
    """Production's interval_layer, chained as the analysis chains it, equals interval
    arithmetic written out here (exact on the first layer), and contains 4000 samples.
    Fails when interval_layer is widened or shrunk by 1e-3."""
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 6, 5, 4, 2])
    box = make_box(-1, 1, 3)
    bounds = []
    for k in range(len(net.layers)):
        bounds.append(interval_layer(net, k, box, bounds))
    reference = _interval_reference(net, box)
    zs = net.pre_activations(box.sample(4000, rng))
    for b, (lo, hi), z in zip(bounds, reference, zs):
        assert _close(b.lower, lo) and _close(b.upper, hi)
        assert np.all(z >= b.lower) and np.all(z <= b.upper)
    exact_lo, exact_hi = exact_ranges(net, box.lower, box.upper, 0)
    assert _close(bounds[0].lower, exact_lo) and _close(bounds[0].upper, exact_hi)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_symbolic_layer_is_back_substitution(seed):
    """Production's symbolic_layer on the second layer equals one step of back-substitution
    written out here, and is never looser than interval arithmetic. Fails when
    symbolic_layer is widened or shrunk by 1e-3."""
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [4, 8, 6, 2])
    box = make_box(0, 1, 4)
    first = interval_layer(net, 0, box, [])
    sym = symbolic_layer(net, 1, box, [first])
    lo, hi = _symbolic_reference(net, box, first.lower, first.upper)
    assert _close(sym.lower, lo) and _close(sym.upper, hi)


@functools.cache
def _deep_case(seed: int):
    """A 3-3-4-3-1 network on [-1, 1]^3, its analysis with bounds and MILPs only, and the
    exact ranges of its three ReLU layers."""
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 3, 4, 3, 1], bias_shift=float(rng.choice([-0.4, 0.0, 0.4])))
    box = make_box(-1, 1, 3)
    report = leo.analyse(net, box, leo.StabilityOptions(**QUIET))
    exact = [exact_ranges(net, box.lower, box.upper, k) for k in range(3)]
    return net, box, report, exact


@pytest.mark.parametrize("seed", range(4))
def test_analysis_bounds_and_verdicts_against_exact_ranges(seed):
    """Every bound ``leo.analyse`` reports contains the exact range; every unit it calls
    stable is stable by the exact range, every unit it calls unstable crosses 0."""
    net, box, report, exact = _deep_case(seed)
    for k, (lo, hi) in enumerate(exact):
        lr = report.layer(k + 1)
        assert np.all(lr.bounds.lower <= lo + ROUND) and np.all(lr.bounds.upper >= hi - ROUND)
        for j, proof in enumerate(lr.proofs):
            if proof.verdict == "active":
                assert lo[j] >= -ROUND
            elif proof.verdict == "inactive":
                assert hi[j] <= ROUND
            else:
                assert lo[j] < 0 < hi[j]


def test_the_analysis_uses_interval_and_symbolic_bounds():
    """The bounds ``leo.analyse`` reports for open units of the second layer are the
    tighter of interval arithmetic and back-substitution written out here, over the
    first layer's exact ranges (which are what the analysis must report for it). Fails
    when interval_layer is widened or shrunk by 1e-3, or the analysis skips symbolic."""
    rng = np.random.default_rng(2024)
    tighter = 0
    for _ in range(8):
        net = random_mlp(rng, [4, 8, 6, 2])
        box = make_box(0, 1, 4)
        report = leo.analyse(net, box, leo.StabilityOptions(**QUIET))
        first, second = report.layer(1), report.layer(2)
        exact_lo, exact_hi = exact_ranges(net, box.lower, box.upper, 0)
        assert _close(first.bounds.lower, exact_lo) and _close(first.bounds.upper, exact_hi)
        iv = _interval_reference(net, box)[1]
        sym = _symbolic_reference(net, box, exact_lo, exact_hi)
        lo, hi = np.maximum(iv[0], sym[0]), np.minimum(iv[1], sym[1])
        for j, proof in enumerate(second.proofs):
            if proof.verdict == "unstable":  # no verdict clipped its bounds
                assert abs(second.bounds.lower[j] - lo[j]) <= ROUND and abs(second.bounds.upper[j] - hi[j]) <= ROUND
        tighter += int(np.sum(sym[1] < iv[1] - 1e-3)) + int(np.sum(sym[0] > iv[0] + 1e-3))
    assert tighter > 0  # symbolic mattered, so skipping it would show


def _triangle_lp(net, box, lo0: np.ndarray, hi0: np.ndarray, unit: int, sign: float) -> float:
    """min sign * z1[unit] over the triangle relaxation of layer 0's ReLUs (the projection of
    the big-M LP relaxation), variables x and h0, as a scipy LP."""
    l0, l1 = net.layers[0], net.layers[1]
    w0, b0 = l0.weights[0], l0.bias
    d, n = box.dim, l0.width
    rows, rhs = [], []
    h_lo, h_hi = np.zeros(n), np.maximum(hi0, 0)
    for j in range(n):
        if lo0[j] >= 0 or hi0[j] <= 0:  # linear: h = z (active) or h = 0 (inactive)
            active = lo0[j] >= 0
            e = np.zeros(d + n); e[d + j] = 1.0
            if active:
                e[:d] = -w0[j]
                rows += [e, -e]; rhs += [b0[j], -b0[j]]
            continue
        e = np.zeros(d + n); e[:d] = w0[j]; e[d + j] = -1.0  # z - h <= 0
        rows.append(e); rhs.append(-b0[j])
        s = hi0[j] / (hi0[j] - lo0[j])  # h <= s (z - lo)
        e = np.zeros(d + n); e[:d] = -s * w0[j]; e[d + j] = 1.0
        rows.append(e); rhs.append(s * (b0[j] - lo0[j]))
    cost = np.concatenate([np.zeros(d), sign * l1.weights[1][unit]])
    scale = float(np.abs(cost).max()) or 1.0
    res = linprog(cost / scale, A_ub=np.array(rows), b_ub=np.array(rhs),
                  bounds=list(zip(box.lower, box.upper)) + list(zip(h_lo, h_hi)), method="highs")
    assert res.status == 0
    return float(cost @ res.x) + sign * l1.bias[unit]


def _lp_tightened(net, box, report) -> tuple[np.ndarray, np.ndarray]:
    """The second layer's bounds after ``--lp-bounds``, recomputed here: for each unit the
    report calls unstable, the triangle LP over the first layer's reported bounds, widened
    by leo's LP slack, where it beats the reported bound."""
    from leo.stability.analysis import LP_SLACK

    b0, b1 = report.layer(1).bounds, report.layer(2).bounds
    lo, hi = b1.lower.copy(), b1.upper.copy()
    for j, proof in enumerate(report.layer(2).proofs):
        if proof.verdict != "unstable":
            continue
        low = _triangle_lp(net, box, b0.lower, b0.upper, j, 1.0)
        high = -_triangle_lp(net, box, b0.lower, b0.upper, j, -1.0)
        lo[j] = max(lo[j], low - LP_SLACK * (1 + abs(low)))
        hi[j] = min(hi[j], high + LP_SLACK * (1 + abs(high)))
    return lo, hi


def test_lp_bounds_are_the_lp_relaxation():
    """With ``lp_bounds=True`` the analysis tightens the second layer by LP before the third
    layer's MILPs and recomputes the third layer's bounds over it ("lp-symbolic"): those
    equal interval and symbolic bounds over the triangle-relaxation LPs solved here (and
    differ from them without the LPs), and contain 20,000 samples. Fails when the LP bounds
    are widened or shrunk by 1e-3."""
    rng = np.random.default_rng(77)
    checked = mattered = 0
    for _ in range(6):
        net = random_mlp(rng, [3, 6, 6, 4, 1])
        box = make_box(-1, 1, 3)
        report = leo.analyse(net, box, leo.StabilityOptions(lp_bounds=True, cuts=False, **QUIET))
        b0, b1 = report.layer(1).bounds, report.layer(2).bounds
        third = report.layer(3).bounds
        lo1, hi1 = _lp_tightened(net, box, report)
        tightened = type(b1)(lo1, hi1, b1.lower_method, b1.upper_method)
        ref = interval_layer(net, 2, box, [b0, tightened])
        sym = symbolic_layer(net, 2, box, [b0, tightened])
        ref_lo, ref_hi = np.maximum(ref.lower, sym.lower), np.minimum(ref.upper, sym.upper)
        plain = symbolic_layer(net, 2, box, [b0, b1])
        z = net.pre_activations(box.sample(20_000, rng))[2]
        assert np.all(z >= third.lower - ROUND) and np.all(z <= third.upper + ROUND)
        for j in range(third.lower.size):
            if third.lower_method[j] == "lp-symbolic":
                assert third.lower[j] == pytest.approx(ref_lo[j], abs=1e-6)
                checked += 1
                mattered += int(ref_lo[j] > plain.lower[j] + 1e-4)
            if third.upper_method[j] == "lp-symbolic":
                assert third.upper[j] == pytest.approx(ref_hi[j], abs=1e-6)
                checked += 1
                mattered += int(ref_hi[j] < plain.upper[j] - 1e-4)
    assert checked >= 10 and mattered >= 5  # the LPs tightened enough bounds to be tested
