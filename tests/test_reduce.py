"""The reducer: planted stable units are found and removed, and the compressed
network equals the original on dense samples of the box (property-based)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from leo.core.domain import make_box
from leo.core.network import Layer, Network, mlp
from leo.reduction.reduce import reduce
from leo.stability.analysis import analyse
from tests.conftest import random_mlp


def _planted(rng):
    """Layer 1 of 10 units: 0-2 inactive, 3-5 active, 6 = 2*u3 + u4 (active), 7 = u3 + u5."""
    w1, b1 = rng.normal(size=(10, 4)), rng.normal(size=10) * 0.1
    w1[0:3], b1[0:3] = -np.abs(w1[0:3]), -0.1
    w1[3:6], b1[3:6] = np.abs(w1[3:6]), 0.2
    w1[6], b1[6] = 2 * w1[3] + w1[4], 1.0
    w1[7], b1[7] = w1[3] + w1[5], -0.05 + 0.1
    w1[8:] = rng.normal(size=(2, 4)) * [[1, -1, 1, -1]]
    b1[8:] = 0.0
    return mlp([w1, rng.normal(size=(5, 10)), rng.normal(size=(2, 5))], [b1, rng.normal(size=5), rng.normal(size=2)])


def test_planted_units_are_found_and_removed(rng):
    net = _planted(rng)
    box = make_box(0, 1, 4)
    report = analyse(net, box)
    lr = report.layers[0]
    assert {0, 1, 2} <= set(lr.inactive)
    assert {3, 4, 5, 6, 7} <= set(lr.active)
    red = reduce(net, report)
    assert set(red.removed_inactive[0]) >= {0, 1, 2}
    # rank of the active rows is at most 4 (the input size) and 6, 7 are combinations
    assert len(red.folded_active[0]) >= 2
    assert red.network.hidden[0] <= 10 - 3 - 2
    x = box.sample(50_000, rng)
    np.testing.assert_allclose(red.network(x), net(x), atol=1e-9)


def test_fully_active_layer_is_multiplied_into_the_next(rng):
    w1 = np.abs(rng.normal(size=(3, 2)))
    w2 = np.abs(rng.normal(size=(3, 3)))
    net = mlp([w1, w2, rng.normal(size=(1, 3))], [np.ones(3), np.ones(3), np.zeros(1)])
    box = make_box(0, 1, 2)
    red = reduce(net, analyse(net, box))
    assert red.merged_layers == (1, 2)
    assert len(red.network.layers) == 1 and red.network.hidden == ()
    x = box.sample(1000, rng)
    np.testing.assert_allclose(red.network(x), net(x), atol=1e-12)


def test_layer_with_no_units_left_gives_a_constant(rng):
    w1 = -np.abs(rng.normal(size=(4, 3)))
    net = mlp([w1, rng.normal(size=(2, 4))], [-np.ones(4), np.array([1.0, -2.0])])
    box = make_box(0, 1, 3)
    red = reduce(net, analyse(net, box))
    x = box.sample(100, rng)
    np.testing.assert_allclose(red.network(x), np.tile([1.0, -2.0], (100, 1)))
    assert red.network.hidden == ()


def test_skip_network_reduces_equivalently(rng):
    layers = (
        Layer({0: rng.normal(size=(6, 3))}, rng.normal(size=6), True),
        Layer({1: rng.normal(size=(5, 6)), 0: rng.normal(size=(5, 3))}, rng.normal(size=5) - 1.0, True),
        Layer({2: rng.normal(size=(2, 5)), 1: rng.normal(size=(2, 6))}, np.zeros(2), False),
    )
    net = Network(3, layers)
    box = make_box(0, 1, 3)
    red = reduce(net, analyse(net, box))
    x = box.sample(20_000, rng)
    np.testing.assert_allclose(red.network(x), net(x), atol=1e-9)


def test_final_relu_layer_keeps_its_outputs(rng):
    net = mlp([rng.normal(size=(5, 3)), -np.abs(rng.normal(size=(2, 5)))], [rng.normal(size=5), -np.ones(2)],
              final_relu=True)
    box = make_box(0, 1, 3)
    red = reduce(net, analyse(net, box))
    assert red.network.output_dim == 2
    x = box.sample(1000, rng)
    np.testing.assert_allclose(red.network(x), net(x), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000), depth=st.integers(1, 3), width=st.integers(2, 8),
       shift=st.sampled_from([-1.0, 0.0, 1.0]))
def test_compressed_equals_original_on_samples(seed, depth, width, shift):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3] + [width] * depth + [2], bias_shift=shift)
    box = make_box(-1, 1, 3)
    red = reduce(net, analyse(net, box))
    assert sum(red.network.hidden) <= sum(net.hidden)
    x = np.vstack([box.sample(5000, rng), box.corners(16)])
    np.testing.assert_allclose(red.network(x), net(x), atol=1e-8)
