"""The soak on a seed-fixed slice: leo's stable claims and compressions hold against
independent truth; and the soak's own truth and checks can fail (else 0 proves nothing)."""

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import soak
from leo.core.network import mlp
from tests.conftest import exact_ranges as brute_force_ranges


def test_slice_has_no_false_claim_and_no_mismatch():
    """30 networks through leo.compress (the production path), every claim and every
    compressed output checked; the slice must actually check claims, some exactly."""
    result = soak.soak(30, seed=1, samples=4000, failures=None)
    assert result["false_claims"] == 0, result["failures"]
    assert result["compression_mismatches"] == 0, result["failures"]
    assert result["errors"] == 0
    assert result["claims_checked_exact"] > 20
    assert result["exact_networks"] > 10


@pytest.mark.parametrize("index", range(6))
def test_exact_ranges_match_brute_force_enumeration(index):
    """The depth-first pattern enumeration gives the ranges that all 2^n patterns give
    (tests/conftest.py, a separate implementation), on the soak's own awkward cases."""
    case = soak.random_case(5, index)
    while sum(case.hidden) > 8 or np.all(case.lower == case.upper):
        index += 100
        case = soak.random_case(5, index)
    exact = soak.exact_ranges(case)
    assert exact is not None
    net = mlp(list(case.weights), list(case.biases))
    for k in range(len(case.hidden)):
        lo, hi = brute_force_ranges(net, case.lower, case.upper, k)
        scale = 1.0 + np.abs(lo) + np.abs(hi)
        assert np.allclose(exact.lower[k], lo, rtol=0, atol=1e-6 * scale.max())
        assert np.allclose(exact.upper[k], hi, rtol=0, atol=1e-6 * scale.max())


def _report(active, inactive, unstable):
    return SimpleNamespace(layers=[SimpleNamespace(active=active, inactive=inactive, unstable=unstable)])


def test_claim_check_catches_a_false_claim_and_counts_incompleteness():
    """One hidden layer on [-1, 1]: z0 = x (unstable), z1 = x + 2 (active), z2 = -x - 2 (inactive).
    Claiming z0 active is false; leaving z1 unstable is incomplete."""
    case = soak.Case((np.array([[1.0], [1.0], [-1.0]]), np.ones((1, 3))), (np.array([0.0, 2.0, -2.0]), np.zeros(1)),
                     np.array([-1.0]), np.array([1.0]), "default")
    exact = soak.exact_ranges(case)
    assert np.allclose(exact.lower[0], [-1, 1, -3]) and np.allclose(exact.upper[0], [1, 3, -1])
    pts = soak.box_points(case, 100, np.random.default_rng(0))
    zs, sizes = soak.forward(case, pts)
    out = soak.Outcome(0, case.hidden, 1, "default", ())
    soak._check_claims(out, _report([0], [2], [1]), zs[:-1], sizes[:-1], exact, pts)
    assert [(c["unit"], c["claim"]) for c in out.false_claims] == [(0, "active")]
    assert out.incomplete == 1 and out.claims == 2


def test_output_check_catches_a_changed_network():
    """A compressed network whose output bias is off by 1e-3 is a mismatch; the same network is not."""
    case = soak.random_case(0, 3)
    net = mlp(list(case.weights), list(case.biases))
    pts = soak.box_points(case, 500, np.random.default_rng(0))
    zs, sizes = soak.forward(case, pts)
    same = soak.Outcome(0, case.hidden, case.lower.size, case.options, ())
    soak._check_outputs(same, net, pts, zs[-1], sizes[-1])
    assert not same.mismatches
    biases = list(case.biases)
    biases[-1] = biases[-1] + 1e-3 * (1 + sizes[-1].max())
    wrong = soak.Outcome(0, case.hidden, case.lower.size, case.options, ())
    soak._check_outputs(wrong, mlp(list(case.weights), biases), pts, zs[-1], sizes[-1])
    assert wrong.mismatches


def test_saved_case_replays(tmp_path):
    case = soak.random_case(0, 7)
    soak.save_case(case, tmp_path / "c.npz", note="x")
    back = soak.load_case(tmp_path / "c.npz")
    assert back.options == case.options
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, case.weights))
    assert np.array_equal(back.lower, case.lower) and np.array_equal(back.upper, case.upper)


def test_graph_slice_has_no_false_claim_no_wrong_answer_no_mismatch():
    """A seed-fixed slice: conv, residual, max-pool and dense networks through leo's reader,
    leo.compress, check_property and compare_exact; the slice must decide queries both ways."""
    from benchmarks.soak_draw import Kind
    from benchmarks.soak_nets import soak_graphs

    result = soak_graphs(8, seed=5, samples=1000, failures=None)
    t = result["total"]
    assert t["false_claims"] == 0 and t["mismatches"] == 0 and t["errors"] == 0, result["failures"]
    assert t["wrong_answers"] == 0 and t["truth_disagreements"] == 0, result["failures"]
    assert t["claims"] > 20 and t["exact_networks"] >= 6
    assert t["property"]["right"] >= 5 and t["property"]["true"] >= 1 and t["property"]["false"] >= 1
    assert t["equivalence"]["right"] + t["equivalence"]["witness outside the box"] >= 5
    assert all(result["by_generator"][k.value]["networks"] == 2 for k in Kind)


def test_exact_ranges_of_tiny_weights_are_not_a_point():
    """A row of 5e-8 weights (below the LP's dual tolerance, 1e-7, unless the cost is
    normalised) still has the range its interval gives: [b - 1e-7, b + 1e-7] on [-1, 1]^2."""
    case = soak.Case((np.full((1, 2), 5e-8), np.ones((1, 1))), (np.array([3e-8]), np.zeros(1)),
                     np.array([-1.0, -1.0]), np.array([1.0, 1.0]), "default")
    exact = soak.exact_ranges(case)
    assert np.allclose(exact.lower[0], 3e-8 - 1e-7, rtol=1e-6, atol=0)
    assert np.allclose(exact.upper[0], 3e-8 + 1e-7, rtol=1e-6, atol=0)
