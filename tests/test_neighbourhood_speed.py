"""The region walk's affine maps (``leo.search.neighbourhood.affine_maps``) after the speed-up (the
input's identity map copied, lowered convs multiplied as sparse views): the same maps as
the dense computation it replaced, bit for bit on dense networks and small convs, to
rounding (the order of the sums) where big convs use sparse views; and on every network
the map of a point's own region gives the forward pass at that point."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leo.api import as_network
from leo.bounds.propagate import sparse_view
from leo.search.neighbourhood import affine_maps
from leo.core.network import Layer, Network
from tests.conftest import random_mlp, seeded_module

torch.set_num_threads(1)


def _dense_affine(network: Network, layer: int, pattern: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The maps as they were computed before (dense products from the identity), verbatim."""
    n = network.input_dim
    outs = [(np.eye(n), np.zeros(n))]
    maps = []
    for k, lyr in enumerate(network.layers[: layer + 1]):
        a = np.zeros((lyr.width, n))
        c = np.array(lyr.bias, dtype=np.float64)
        for s, w in lyr.weights.items():
            a += w @ outs[s][0]
            c += w @ outs[s][1]
        maps.append((a, c))
        if k < layer:
            p = pattern[k] if lyr.relu else np.ones(lyr.width)
            outs.append((a * p[:, None], c * p))
    return maps


def _patterns(net: Network, rng: np.random.Generator, count: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Random box points and each one's own activation pattern."""
    out = []
    for x in rng.uniform(0, 1, size=(count, net.input_dim)):
        pre = net.pre_activations(x[None])
        out.append((x, [(pre[k][0] > 0).astype(float) for k in range(len(net.layers))]))
    return out


def _with_skip(rng: np.random.Generator) -> Network:
    w1, w2, skip, w3 = (rng.normal(size=s) for s in ((9, 5), (7, 9), (7, 5), (3, 7)))
    return Network(5, (Layer({0: w1}, rng.normal(size=9), True),
                       Layer({1: w2, 0: skip}, rng.normal(size=7), True),  # a skip from the input
                       Layer({2: w3}, rng.normal(size=3), False)))


def _conv(channels: tuple[int, int], side: int, seed: int) -> Network:
    c1, c2 = channels
    module = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c2, 3, stride=2, padding=1),
                           nn.ReLU(), nn.Flatten(), nn.Linear(c2 * ((side + 1) // 2) ** 2, 6), nn.ReLU(),
                           nn.Linear(6, 2))
    return as_network(seeded_module(module, seed), like=np.zeros((1, side, side)))


@pytest.mark.parametrize("seed", range(4))
def test_dense_networks_and_small_convs_get_the_old_maps_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nets = [random_mlp(rng, [4, 8, 6, 5, 2]), _with_skip(rng), _conv((2, 3), 5, seed)]
    for net in nets:
        assert all(sparse_view(w) is None for ly in net.layers for w in ly.weights.values())
        relu = [k for k, ly in enumerate(net.layers) if ly.relu]
        for _, pattern in _patterns(net, rng, 3):
            for layer in relu:
                new, old = affine_maps(net, layer, pattern), _dense_affine(net, layer, pattern)
                for (a, c), (a0, c0) in zip(new, old, strict=True):
                    np.testing.assert_array_equal(a, a0)
                    np.testing.assert_array_equal(c, c0)


def test_big_convs_use_sparse_views_and_give_the_old_maps_to_rounding_and_the_forward_pass() -> None:
    rng = np.random.default_rng(7)
    net = _conv((8, 8), 12, seed=7)  # conv weights of 166k and 331k entries, 6 % nonzero: sparse views
    assert [sparse_view(w) is not None for ly in net.layers for w in ly.weights.values()] == [True, True, False, False]
    layer = 2  # the dense layer after both convs: every kind of product on the way
    for x, pattern in _patterns(net, rng, 4):
        new, old = affine_maps(net, layer, pattern), _dense_affine(net, layer, pattern)
        pre = net.pre_activations(x[None])
        for k, ((a, c), (a0, c0)) in enumerate(zip(new, old, strict=True)):
            assert isinstance(a, np.ndarray) and a.shape == a0.shape
            np.testing.assert_allclose(a, a0, rtol=0, atol=1e-13 * np.abs(a0).max())
            np.testing.assert_array_equal(c, c0)  # the offsets still multiply densely
            np.testing.assert_allclose(a @ x + c, pre[k][0], rtol=0, atol=1e-10)  # the point's own region
        np.testing.assert_array_equal(new[0][0], old[0][0])  # the input's map is copied: exact

