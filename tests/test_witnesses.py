"""The local search only ever returns real box points, and its multi-start finds
crossings that one start misses."""

import numpy as np

from leo.core.domain import make_box
from leo.core.network import Layer, Network
from leo.search.witnesses import local_search
from tests.conftest import random_mlp


def _bump() -> Network:
    """z2 = relu(x0 - 0.6) + relu(x1 - 0.6) - 0.7 - 0.3 * relu(0.5 - x0) on [0,1]^2: positive
    only near the corner (1, 1). From the origin the gradient stops at x0 = 0.5; a start
    with both inputs above 0.6 (16 % of random ones) climbs to the corner."""
    w1 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    b1 = np.array([-0.6, -0.6, 0.5])
    w2 = np.array([[1.0, 1.0, -0.3]])
    return Network(2, (Layer({0: w1}, b1, True), Layer({1: w2}, np.array([-0.7]), True)))


def test_points_are_in_the_box_and_the_best_found(rng):
    net = random_mlp(rng, [4, 8, 6, 2])
    box = make_box(-0.5, 0.5, 4)
    units = np.arange(6)
    starts = box.sample(6, rng)
    dirs = np.where(rng.random(6) < 0.5, -1.0, 1.0)
    pts = local_search(net, box, 1, units, starts, dirs)
    assert pts.shape == (6, 4) and box.contains(pts).all()
    z_end = net.pre_activations(pts)[1][np.arange(6), units] * dirs
    z_start = net.pre_activations(starts)[1][np.arange(6), units] * dirs
    assert np.all(z_end >= z_start - 1e-12)  # never worse than where it started


def test_multi_start_finds_a_crossing_one_start_misses():
    net = _bump()
    box = make_box(0, 1, 2)
    start = np.zeros((1, 2))
    one = local_search(net, box, 1, np.array([0]), start, np.array([1.0]), restarts=1)
    many = local_search(net, box, 1, np.array([0]), start, np.array([1.0]), restarts=32)
    assert net.pre_activations(one)[1][0, 0] < 0
    assert net.pre_activations(many)[1][0, 0] > 0
