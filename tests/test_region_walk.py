"""The LP walk across linear regions (leo.search.region_walk) against the forward pass, a convex case
whose minimum is known, and the real instance it was built for (through ``check_property``)."""

from __future__ import annotations


import numpy as np
import pytest

from leo.core.deadline import Deadline
from leo.core.domain import Box, make_box
from leo.core.network import Layer, Network, mlp
from leo.search.region_walk import descend, region, starts, walk_search
from tests.conftest import random_mlp, vnncomp_answer, vnncomp_dir


def _pattern(net: Network, x: np.ndarray) -> np.ndarray:
    zs = net.pre_activations(x[None, :])
    return np.concatenate([z[0] > 0 for z, layer in zip(zs, net.layers) if layer.relu])


def _skip_net(rng: np.random.Generator) -> Network:
    """3 -> 6 -> 5 (+ a skip from the input) -> 2, with a ReLU on the output too."""
    return Network(input_dim=3, layers=(
        Layer({0: rng.normal(size=(6, 3))}, rng.normal(size=6), relu=True),
        Layer({1: rng.normal(size=(5, 6)), 0: rng.normal(size=(5, 3))}, rng.normal(size=5), relu=True),
        Layer({2: rng.normal(size=(2, 5))}, rng.normal(size=2), relu=True),
    ))


@pytest.mark.parametrize("seed", range(6))
def test_region_is_the_network_on_the_points_with_the_same_pattern(seed):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 7, 6, 2]) if seed % 2 else _skip_net(rng)
    x = rng.uniform(-1, 1, 3)
    a, b, p, q = region(net, x)
    np.testing.assert_allclose(a @ x + b, net(x[None, :])[0], atol=1e-12)
    assert (p @ x <= q + 1e-12).all()
    same = 0
    for u in x + rng.normal(scale=0.05, size=(400, 3)):
        inside = bool((p @ u <= q - 1e-9).all())
        if (_pattern(net, u) == _pattern(net, x)).all():
            same += 1
            np.testing.assert_allclose(a @ u + b, net(u[None, :])[0], atol=1e-12)
            assert (p @ u <= q + 1e-9).all()
        else:
            assert not inside  # a point strictly inside the region has the region's pattern
    assert same > 0  # the check above saw points of the region


def _diamond() -> tuple[Network, Box]:
    """y = |x0 - 0.3| + |x1 - 0.6| + relu(x0 - 0.5) + relu(x1 - 0.8) - 0.01 on [0,1]^2: convex,
    below 0 only on a diamond of area 2e-4; from x0 > 0.5 or x1 > 0.8 the walk must cross a
    region boundary to reach it."""
    w1 = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1], [1, 0], [0, 1]])
    b1 = np.array([-0.3, 0.3, -0.6, 0.6, -0.5, -0.8])
    return mlp([w1, np.ones((1, 6))], [b1, np.array([-0.01])]), make_box(0.0, 1.0, 2)


def test_walk_reaches_the_known_minimum_of_a_convex_case():
    net, box = _diamond()
    a, c = np.array([[1.0]]), np.array([0.0])
    for start in ([0.0, 0.0], [1.0, 0.0], [0.9, 0.95]):
        x, value = descend(net, box, a, c, np.array(start), Deadline.after(30), stall=100)
        assert value < 0
        assert value == pytest.approx(float(net(x[None, :])[0, 0]), abs=0)  # the value is the forward pass's
        assert box.contains(x, tol=0.0)[0]
        # the walk stops at the first region's lowest point inside: here the minimum -0.01 at (0.3, 0.6)
        np.testing.assert_allclose(value, -0.01, atol=1e-9)
        np.testing.assert_allclose(x, [0.3, 0.6], atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_walk_never_ends_above_its_start(seed):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [4, 10, 10, 3])
    box = make_box(-1.0, 1.0, 4)
    a, c = rng.normal(size=(2, 3)), rng.normal(size=2)
    for x in box.sample(5, rng):
        start = float((net(x[None, :])[0] @ a.T - c).max())
        end_x, end = descend(net, box, a, c, x, Deadline.after(30))
        assert end <= start
        assert end == pytest.approx(float((net(end_x[None, :])[0] @ a.T - c).max()), abs=0)
        assert box.contains(end_x, tol=0.0)[0]


def test_starts_take_one_point_per_plateau():
    values = np.array([3.0, 1.0, 1.0, 2.0, 1.0 + 1e-14, 0.5])
    assert starts(values, 3).tolist() == [5, 1, 3]


def test_walk_search_only_returns_what_confirm_accepts():
    net, box = _diamond()
    disjuncts = [(np.array([[1.0]]), np.array([0.0]))]
    seen: list[np.ndarray] = []

    def never(x: np.ndarray) -> int | None:
        seen.append(x)
        return None

    assert walk_search(net, box, disjuncts, Deadline.after(30), never, samples=50) is None
    assert seen and all(box.contains(x, tol=0.0)[0] and net(x[None, :])[0, 0] <= 0 for x in seen)
    found = walk_search(net, box, disjuncts, Deadline.after(30), lambda x: 0, samples=50)
    assert found is not None and net(found[0][None, :])[0, 0] < 0
    assert walk_search(net, box, disjuncts, Deadline.after(30), lambda x: 0, skip=[0]) is None


@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
def test_acas_1_9_property_7_is_found_sat_through_check_property():
    """Undecided in 116 s before the walks (gradient searches stalled on plateaus)."""
    from leo.io.load import load_network
    from leo.queries.property import Answer, check_property
    from leo.io.vnnlib import read_vnnlib

    data = vnncomp_dir()
    assert vnncomp_answer("ACASXU_run2a_1_9_batch_2000.onnx", "prop_7.vnnlib") == "sat"
    net = load_network(data / "acasxu" / "ACASXU_run2a_1_9_batch_2000.onnx")
    box, prop = read_vnnlib(data / "acasxu" / "prop_7.vnnlib", net.input_dim)
    result = check_property(net, box, prop, time_limit=116)
    assert result.answer is Answer.SAT and result.how == "region walk"
    assert box.contains(result.counterexample, tol=0.0)[0]
    assert prop.excess(net(result.counterexample[None, :]), result.disjunct)[0] < 0


@pytest.mark.parametrize("seed", range(4))
def test_default_path_answers_as_the_exact_range_says(seed):
    """Samples, gradient search, walks, branch and bound, MILP: whichever decides, thresholds
    1e-4 inside the exact range (by LP per activation pattern) are sat with a point the forward
    pass confirms, and 1e-4 outside it unsat."""
    from leo.queries.property import Answer, Inequality, OutputProperty, check_property
    from tests.conftest import exact_ranges

    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 5, 4, 2])  # exact ranges: one LP per pattern of 9 units
    box = make_box(-1.0, 1.0, 3)
    lo, hi = exact_ranges(net, box.lower, box.upper, len(net.layers) - 1)
    row = np.array([1.0, 0.0])  # y0 >= t is unsafe: -y0 <= -t
    for t, expected in ((hi[0] - 1e-4, Answer.SAT), (hi[0] + 1e-4, Answer.UNSAT)):
        prop = OutputProperty(2, ((Inequality(-row, -t),),))
        result = check_property(net, box, prop, 60.0, seed=seed)
        assert result.answer is expected, (t, result.how)
        if expected is Answer.SAT:
            assert box.contains(result.counterexample, tol=0.0)[0]
            assert net(result.counterexample[None, :])[0, 0] >= t - 1e-6
