"""Stability verdicts against brute force: the exact range of every unit, from one LP
per activation pattern of the layers before it."""

import numpy as np
import pytest

from leo.core.domain import make_box
from leo.core.network import mlp
from leo.stability.report import ACTIVE, INACTIVE, UNSTABLE
from leo.stability.analysis import StabilityOptions, analyse
from tests.conftest import exact_ranges, random_mlp

MARGIN = 1e-6


def _truth(net, box, k):
    lo, hi = exact_ranges(net, box.lower, box.upper, k)
    return [ACTIVE if l >= MARGIN else INACTIVE if h <= -MARGIN else UNSTABLE if (l < -MARGIN and h > MARGIN) else None
            for l, h in zip(lo, hi)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("engine,local_search,cuts,search", [
    ("unit", True, True, True), ("unit", False, True, True), ("unit", False, True, False),
    ("unit", False, False, False), ("network", False, True, True)])
def test_verdicts_match_brute_force(seed, engine, local_search, cuts, search):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 4, 4, 4, 2], bias_shift=float(rng.choice([-0.8, 0.0, 0.8])))
    box = make_box(-1, 1, 3)
    report = analyse(net, box, StabilityOptions(margin=MARGIN, local_search=local_search, samples=8, engine=engine,
                                                      cuts=cuts, neighbourhood=search))
    assert [lr.layer for lr in report.layers] == [1, 2, 3]
    for k, lr in enumerate(report.layers):
        truth = _truth(net, box, k)
        for j, proof in enumerate(lr.proofs):
            if truth[j] is not None:  # units within the margin of zero may go either way
                assert proof.verdict == truth[j], (k, j, proof)


def test_unstable_verdicts_carry_checkable_witnesses(rng):
    net = random_mlp(rng, [4, 10, 10, 2])
    box = make_box(0, 1, 4)
    report = analyse(net, box, StabilityOptions(samples=16))
    pts = report.witness_points
    assert np.all(box.contains(pts))
    zs = net.pre_activations(pts) if len(pts) else None
    checked = 0
    for k, lr in enumerate(report.layers):
        for j, proof in enumerate(lr.proofs):
            if proof.witness is not None:
                pos, neg = proof.witness
                assert zs[k][pos, j] > 0 > zs[k][neg, j]
                checked += 1
    assert checked > 0


def test_stable_verdicts_hold_on_dense_samples(rng):
    for _ in range(5):
        net = random_mlp(rng, [5, 12, 12, 3], bias_shift=-0.5)
        box = make_box(0, 1, 5)
        report = analyse(net, box)
        zs = net.pre_activations(box.sample(50_000, rng))
        for k, lr in enumerate(report.layers):
            assert np.all(zs[k][:, lr.active] >= 0)
            assert np.all(zs[k][:, lr.inactive] <= 0)


@pytest.mark.parametrize("cuts", [False, True])
def test_milp_decides_units_bounds_cannot(cuts):
    """A unit whose interval bound crosses zero but which is inactive: only a solver proves
    it (the MILP, or with cuts the LP relaxation tightened by ideal cuts)."""
    w1 = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    b1 = np.zeros(3)
    # u = h0 - h1 - h2 - 0.1: h0 = x0 + x1 <= h1 + h2 + ... ; on [0,1]^2 relu(x0-x1)+relu(x1-x0) = |x0-x1|
    # z = |x0 - x1| - (x0 + x1) - 0.1 <= -0.1 everywhere, while interval bounds reach above 0.
    w2 = np.array([[-1.0, 1.0, 1.0]])
    b2 = np.array([-0.1])
    net = mlp([w1, w2, np.ones((1, 1))], [b1, b2, np.zeros(1)])
    box = make_box(0, 1, 2)
    report = analyse(net, box, StabilityOptions(symbolic=False, cuts=cuts, branch=False))
    proof = report.layers[1].proofs[0]
    assert proof.verdict == INACTIVE and proof.method == ("lp-cuts" if cuts else "milp")
    assert -0.1 - 1e-9 <= proof.bound <= -1e-6  # a valid upper bound on z (max -0.1) that clears the margin
    assert report.solves >= 1


def test_time_out_is_never_stable(rng):
    net = random_mlp(rng, [6, 12, 12, 2])
    box = make_box(0, 1, 6)
    report = analyse(net, box, StabilityOptions(time_limit=1e-3, samples=0, local_search=False))
    full = analyse(net, box)
    for fast, slow in zip(report.layers, full.layers):
        assert set(fast.active) <= set(slow.active)
        assert set(fast.inactive) <= set(slow.inactive)
        for p in fast.proofs:
            if p.method in ("timeout", "not-proven"):
                assert p.verdict == UNSTABLE


def test_domain_dimension_mismatch(rng):
    from leo.errors import LeoInputError

    net = random_mlp(rng, [3, 4, 2])
    with pytest.raises(LeoInputError, match="inputs"):
        analyse(net, make_box(0, 1, 4))


@pytest.mark.parametrize("seed", range(4))
def test_engines_and_back_ends_agree(seed):
    rng = np.random.default_rng(100 + seed)
    net = random_mlp(rng, [5, 12, 10, 8, 2], bias_shift=-0.3)
    box = make_box(0, 1, 5)
    runs = [analyse(net, box, StabilityOptions(engine="unit", samples=4, local_search=False)),
            analyse(net, box, StabilityOptions(engine="network", samples=4, local_search=False)),
            analyse(net, box, StabilityOptions(engine="unit", workers=2, samples=4, local_search=False))]
    for other in runs[1:]:
        for a, b in zip(runs[0].layers, other.layers):
            assert (a.active, a.inactive) == (b.active, b.inactive)


def test_lp_tightened_bounds_stay_sound_and_agree(rng):
    net = random_mlp(rng, [4, 10, 10, 8, 2], bias_shift=-0.3)
    box = make_box(0, 1, 4)
    plain = analyse(net, box, StabilityOptions(samples=4, local_search=False))
    tight = analyse(net, box, StabilityOptions(samples=4, local_search=False, lp_bounds=True))
    zs = net.pre_activations(box.sample(50_000, rng))
    for a, b, z in zip(plain.layers, tight.layers, zs):
        assert (a.active, a.inactive) == (b.active, b.inactive)
        assert np.all(z >= b.bounds.lower - 1e-9) and np.all(z <= b.bounds.upper + 1e-9)
        assert np.all(b.bounds.upper - b.bounds.lower <= a.bounds.upper - a.bounds.lower + 1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_network_engine_falls_back_per_unit_after_a_time_out(seed, monkeypatch):
    """When the network-wide solve answers nothing (a time-out), every candidate is
    still decided, per unit, and the verdicts match brute force."""
    import leo.stability.engine_network as engine_network
    from leo.stability.stages import NetworkResult

    calls = []
    def unanswered(problem, progress=None):  # noqa: ANN001, ANN202 - a time-out: nothing proven, nothing found
        calls.append(problem)
        return NetworkResult({}, {}, np.zeros((0, problem.box.dim)))

    monkeypatch.setattr(engine_network, "solve_network", unanswered)
    rng = np.random.default_rng(200 + seed)
    net = random_mlp(rng, [3, 5, 5, 4, 2], bias_shift=0.4)
    box = make_box(-1, 1, 3)
    report = analyse(net, box, StabilityOptions(engine="network", samples=4, local_search=False, branch=False))
    assert calls, "the network-wide solve was skipped: the test would not reach the fallback"
    for k, lr in enumerate(report.layers):
        assert all(p.method not in ("timeout", "not-proven") for p in lr.proofs)
        truth = _truth(net, box, k)
        for j, proof in enumerate(lr.proofs):
            if truth[j] is not None:
                assert proof.verdict == truth[j], (k, j, proof)
