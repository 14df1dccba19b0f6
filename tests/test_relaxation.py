"""One relaxation for both bound engines (``leo.bounds.relaxation``): numpy and torch give
the same relaxation and the same bounds, and every bound holds on dense samples of the box."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leo.bounds.batched import Net, layer_bounds, row_bounds
from leo.bounds.propagate import cheap_bounds
from leo.bounds.relaxation import relu_relaxation
from leo.core.domain import Box
from leo.core.network import Layer, Network
from tests.conftest import random_mlp


def test_relaxation_is_the_same_in_numpy_and_torch_and_sandwiches_relu() -> None:
    rng = np.random.default_rng(0)
    lo = rng.normal(size=500) - 0.5
    hi = lo + rng.exponential(size=500)
    lo[:5], hi[:5] = 0.0, 1.0  # boundary cases: lo == 0, hi == 0, a point interval
    lo[5:10], hi[5:10] = -1.0, 0.0
    lo[10:15] = hi[10:15] = 0.3
    numpy_parts = relu_relaxation(lo, hi)
    torch_parts = relu_relaxation(torch.from_numpy(lo), torch.from_numpy(hi))
    for a, b in zip(numpy_parts, torch_parts):
        assert b.dtype == torch.float64
        np.testing.assert_array_equal(a, b.numpy())
    low, up, icpt = numpy_parts
    z = lo[None, :] + (hi - lo)[None, :] * rng.uniform(size=(200, 1))
    r = np.maximum(z, 0.0)
    assert np.all(low * z <= r + 1e-12) and np.all(r <= up * z + icpt + 1e-12)
    assert np.all((low >= 0) & (low <= 1))


def _skip_net(rng: np.random.Generator) -> Network:
    l1 = Layer({0: rng.normal(size=(8, 4))}, rng.normal(size=8), relu=True)
    l2 = Layer({1: rng.normal(size=(7, 8)), 0: rng.normal(size=(7, 4))}, rng.normal(size=7), relu=True)
    l3 = Layer({2: rng.normal(size=(6, 7))}, rng.normal(size=6), relu=True)
    l4 = Layer({3: rng.normal(size=(3, 6)), 1: rng.normal(size=(3, 8))}, rng.normal(size=3), relu=False)
    return Network(4, (l1, l2, l3, l4))


@pytest.mark.parametrize("make", [lambda rng: random_mlp(rng, [4, 12, 12, 12, 3]), _skip_net])
def test_numpy_and_torch_engines_agree_and_hold_on_samples(make) -> None:  # noqa: ANN001
    rng = np.random.default_rng(1)
    net = make(rng)
    box = Box(-np.ones(4), np.ones(4))
    pts = box.sample(100_000, rng)
    zs = net.pre_activations(pts)
    cheap = cheap_bounds(net, box)
    lo_t, hi_t = (torch.from_numpy(v[None, :].copy()) for v in (box.lower, box.upper))
    pre, _ = layer_bounds(Net(net), lo_t, hi_t)
    for k, (b, (zl, zu)) in enumerate(zip(cheap, pre)):
        tl, tu = zl[0].numpy(), zu[0].numpy()
        assert np.all(b.lower <= zs[k].min(axis=0)) and np.all(b.upper >= zs[k].max(axis=0))
        assert np.all(tl <= zs[k].min(axis=0)) and np.all(tu >= zs[k].max(axis=0))
        open_ = (tl < 0) & (tu > 0)  # torch back-substitutes these only; numpy every unit
        scale = 1e-8 * (1 + np.abs(b.lower) + np.abs(b.upper))
        np.testing.assert_array_less(np.abs(tl - b.lower)[open_], scale[open_])
        np.testing.assert_array_less(np.abs(tu - b.upper)[open_], scale[open_])
        if k == 0:  # interval bounds alone: the same formula in both
            np.testing.assert_allclose(tl, b.lower, rtol=1e-12, atol=1e-12)
    g = rng.normal(size=(5, net.output_dim))
    h = rng.normal(size=5)
    low, _ = row_bounds(Net(net), lo_t, hi_t, torch.from_numpy(g), torch.from_numpy(h))
    assert np.all(low[0].numpy() <= (net(pts) @ g.T + h).min(axis=0))
