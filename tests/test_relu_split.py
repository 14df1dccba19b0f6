"""ReLU-split branch and bound (leo.bab.relu_split) against independent truth: the exact minimum
of ``a . y`` over the box by one LP per activation pattern (tests.conftest.exact_ranges,
scipy's linprog), weak duality checked against linprog's optimum on random LPs, and the
production path through ``check_property`` on a network with image-size (> 32) inputs."""

from __future__ import annotations


import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from leo.bounds.propagate import cheap_bounds
from leo.core.deadline import Deadline, now
from leo.core.domain import Box, make_box
from leo.core.network import Network, mlp
from leo.queries.property import Answer, Inequality, OutputProperty, check_property
from leo.bab.relu_split import LinearProgram, SplitStatus, decide, safe_bound, search, tighten
from leo.core.verdicts import Verdict
from tests.conftest import exact_ranges, random_mlp

GAP = 1e-3  # thresholds this far (relative to the output's range) below / above the exact minimum


def _objective_net(net: Network, a: np.ndarray) -> Network:
    """``net`` with its last layer folded into the one output ``a . y`` (its exact range is the truth)."""
    ws = [ly.weights[k] for k, ly in enumerate(net.layers)]
    bs = [ly.bias for ly in net.layers]
    return mlp(ws[:-1] + [a[None, :] @ ws[-1]], bs[:-1] + [np.array([a @ bs[-1]])])


def _exact_min(net: Network, box: Box, a: np.ndarray) -> tuple[float, float]:
    lo, hi = exact_ranges(_objective_net(net, a), box.lower, box.upper, len(net.layers) - 1)
    return float(lo[0]), float(hi[0])


def _confirm(net: Network, box: Box, a: np.ndarray, c: float):  # noqa: ANN202 - the caller's check
    def confirmed(x: np.ndarray) -> int | None:
        inside = bool(box.contains(x)[0])
        return 0 if inside and float(net(x[None, :])[0] @ a) - c <= 1e-6 else None
    return confirmed


def _unstable_states(net: Network) -> list[list[Verdict]]:
    return [[Verdict.UNSTABLE] * ly.width if ly.relu else [] for ly in net.layers]


@pytest.mark.parametrize("seed", range(8))
def test_search_decides_thresholds_around_the_exact_minimum(seed: int) -> None:
    """Just below the exact min of a . y the unsafe set is empty (must be PROVEN), just above it
    is reachable (must give a point whose forward pass puts a . y under the threshold); two and
    three hidden layers, with interval bounds or LP-tightened ones."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 5))
    hidden = [int(rng.integers(3, 6)) for _ in range(2)] if seed % 2 else [3, 3, 3]
    net = random_mlp(rng, [d, *hidden, 3], bias_shift=float(rng.choice([-0.3, 0.0, 0.3])))
    box = make_box(-1.0, 1.0, d)
    a = rng.normal(size=3)
    lo, hi = _exact_min(net, box, a)
    gap = GAP * max(hi - lo, 1e-3)
    bounds = cheap_bounds(net, box, symbolic=False)
    states = _unstable_states(net)
    if seed % 4 < 2:  # as in production: later layers' bounds tightened by LP first
        bounds = tighten(net, box, bounds, states, Deadline.after(30))
    for c, expect in ((lo - gap, SplitStatus.PROVEN), (lo + gap, SplitStatus.COUNTEREXAMPLE)):
        r = search(net, box, bounds, states, a[None, :], np.array([c]), Deadline.after(60),
                   _confirm(net, box, a, c))
        assert r.status is expect, (seed, c, lo, r)
        if expect is SplitStatus.COUNTEREXAMPLE:
            assert r.x is not None and box.contains(r.x)[0]
            assert float(net(r.x[None, :])[0] @ a) <= c + 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_two_row_disjunct_against_sampling(seed: int) -> None:
    """A disjunct of two rows (y_0 <= c0 and y_1 <= c1): a PROVEN answer is checked against
    dense sampling (no sample may be inside), a counterexample by the forward pass."""
    rng = np.random.default_rng(100 + seed)
    net = random_mlp(rng, [2, 6, 6, 2])
    box = make_box(-1.0, 1.0, 2)
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    y = net(g)
    a, c = np.eye(2), np.quantile(y, 0.3, axis=0)
    r = search(net, box, cheap_bounds(net, box, symbolic=False), _unstable_states(net), a, c,
               Deadline.after(60), lambda x: 0 if (net(x[None, :])[0] <= c + 1e-6).all() else None)
    inside = ((y <= c).all(axis=1)).any()
    if r.status is SplitStatus.PROVEN:
        assert not inside
    else:
        assert r.status is SplitStatus.COUNTEREXAMPLE and (net(r.x[None, :])[0] <= c + 1e-6).all()


def _random_lp(rng: np.random.Generator) -> LinearProgram:
    n, m = int(rng.integers(2, 8)), int(rng.integers(1, 8))
    a = rng.normal(size=(m, n)) * (rng.random((m, n)) < 0.7)
    x0 = rng.uniform(-1, 1, size=n)  # a feasible point
    ax = a @ x0
    row_lo = np.where(rng.random(m) < 0.5, ax - rng.random(m), -np.inf)
    row_hi = np.where(rng.random(m) < 0.5, ax + rng.random(m), np.inf)
    eq = rng.random(m) < 0.2
    row_lo[eq], row_hi[eq] = ax[eq], ax[eq]
    return LinearProgram(sp.csr_matrix(a), rng.normal(size=n), np.full(n, -1.0), np.full(n, 1.0), row_lo, row_hi)


def _lp_min(lp: LinearProgram, cost: np.ndarray) -> float:
    a = lp.a.toarray()
    up, dn = np.isfinite(lp.row_hi), np.isfinite(lp.row_lo)
    a_ub = np.vstack([a[up], -a[dn]])
    b_ub = np.concatenate([lp.row_hi[up], -lp.row_lo[dn]])
    res = linprog(cost, A_ub=a_ub if len(b_ub) else None, b_ub=b_ub if len(b_ub) else None,
                  bounds=list(zip(lp.col_lo, lp.col_hi)), method="highs")
    assert res.status == 0
    return float(res.fun)


@pytest.mark.parametrize("seed", range(40))
def test_safe_bound_never_exceeds_the_true_minimum(seed: int) -> None:
    """Weak duality: any row duals (random ones, of any sign, and the cost 0 of a Farkas check)
    give a bound <= the LP's true minimum; the optimal duals give it up to the rounding slack."""
    rng = np.random.default_rng(seed)
    lp = _random_lp(rng)
    for cost in (lp.cost, np.zeros_like(lp.cost)):
        best = _lp_min(lp, cost)
        for _ in range(20):
            y = rng.normal(size=lp.a.shape[0]) * rng.choice([0.0, 1.0, 10.0])
            assert safe_bound(lp, y, lp.col_lo, lp.col_hi, lp.row_lo, lp.row_hi, cost) <= best + 1e-12


def test_safe_bound_is_tight_at_the_optimal_duals() -> None:
    """min x0 + x1 s.t. x0 + x1 >= 1.5, x in [0, 1]^2: the dual 1 proves 1.5 (less the slack)."""
    lp = LinearProgram(sp.csr_matrix(np.ones((1, 2))), np.ones(2), np.zeros(2), np.ones(2),
                       np.array([1.5]), np.array([np.inf]))
    b = safe_bound(lp, np.array([1.0]), lp.col_lo, lp.col_hi, lp.row_lo, lp.row_hi)
    assert 1.5 - 1e-8 < b <= 1.5
    # the same row as a Farkas ray: x0 + x1 >= 3 cannot hold on [0, 1]^2
    assert safe_bound(lp, np.array([1.0]), lp.col_lo, lp.col_hi, np.array([3.0]), lp.row_hi, np.zeros(2)) > 0


@pytest.mark.parametrize("seed", range(4))
def test_tighten_keeps_every_bound_valid(seed: int) -> None:
    """LP-tightened bounds of later layers still contain the exact range of every unit."""
    rng = np.random.default_rng(200 + seed)
    net = random_mlp(rng, [3, 4, 4, 3, 2])
    box = make_box(-1.0, 1.0, 3)
    bounds = cheap_bounds(net, box, symbolic=False)
    tight = tighten(net, box, bounds, _unstable_states(net), Deadline.after(30))
    for k in range(1, len(net.layers) - 1):
        lo, hi = exact_ranges(net, box.lower, box.upper, k)
        assert (tight[k].lower <= lo + 1e-9).all() and (tight[k].upper >= hi - 1e-9).all()
        assert (tight[k].lower >= bounds[k].lower).all() and (tight[k].upper <= bounds[k].upper).all()


def test_decide_stops_at_its_deadline_without_a_proof() -> None:
    """A deadline already past decides nothing: no disjunct proven, no point."""
    rng = np.random.default_rng(7)
    net = random_mlp(rng, [3, 6, 6, 2])
    box = make_box(-1.0, 1.0, 3)
    a = np.array([[1.0, -1.0]])
    d = decide(net, box, [(a, np.array([-100.0]))], [0], cheap_bounds(net, box, symbolic=False),
               _unstable_states(net), Deadline(now() - 1.0), lambda x: None)
    assert d.proven == frozenset() and d.x is None


# -- the production path: check_property on image-size inputs (> leo.bab.input_split.SPLIT_INPUTS) -----------------

def _wide_case(seed: int) -> tuple[Network, Box, np.ndarray, float, float]:
    rng = np.random.default_rng(300 + seed)
    net = random_mlp(rng, [40, 5, 4, 3])
    box = make_box(-0.2, 0.2, 40)
    a = rng.normal(size=3)
    lo, hi = _exact_min(net, box, a)
    return net, box, a, lo, hi


@pytest.mark.parametrize("seed", range(2))
def test_check_property_on_wide_inputs_proves_just_below_the_minimum(seed: int) -> None:
    """40 inputs take the ReLU-split path; a . y <= min - gap is unreachable: UNSAT, decided
    by the ReLU split (the input-splitting branch and bound is off, so it cannot decide first)."""
    net, box, a, lo, hi = _wide_case(seed)
    c = lo - GAP * (hi - lo)
    prop = OutputProperty(3, ((Inequality(a, c),),))
    r = check_property(net, box, prop, time_limit=60, branch=False)
    assert r.answer is Answer.UNSAT and r.how == "relu-split", r


@pytest.mark.parametrize("seed", range(2))
def test_check_property_on_wide_inputs_finds_just_above_the_minimum(seed: int) -> None:
    """a . y <= min + gap is reachable: SAT, found by the ReLU split (sampling and the gradient
    search miss this thin region), with a point the forward pass puts below c."""
    net, box, a, lo, hi = _wide_case(seed)
    c = lo + GAP * (hi - lo)
    prop = OutputProperty(3, ((Inequality(a, c),),))
    r = check_property(net, box, prop, time_limit=60, branch=False)
    assert r.answer is Answer.SAT and r.how == "relu-split" and r.counterexample is not None
    assert box.contains(r.counterexample)[0] and float(net(r.counterexample[None, :])[0] @ a) <= c + 1e-6
