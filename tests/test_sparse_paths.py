"""The sparse and convolutional fast paths (issue 15: ~10k-unit CNNs within a budget) give
what the dense paths give: interval and symbolic bounds to 1e-12, the same MILP rows, the
same big-M blocks, the same forward passes; and the stable claims of an analysis on the fast
paths hold on 10^5 samples of the network's own forward pass.

Each fast path is forced on tiny random conv nets (thresholds monkeypatched), then compared
with the dense path forced on the same net."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

import leo.bounds.propagate as bounds
from leo.core.domain import make_box
from leo.bounds.encoding import build_prefix
from leo.io.conv import conv_kernel
from leo.io.graph import module_network
from leo.core.network import Layer, Network
from leo.stability.analysis import StabilityOptions, analyse
from leo.core.verdicts import Verdict
from leo.search.witnesses import Witnesses, local_search, pre_activations
from solvers.problem import ProblemBuilder

#: (conv kwargs of two layers): padding, stride, dilation and groups all covered.
CONVS = [
    (dict(out_channels=3, kernel_size=3, stride=1, padding=1), dict(out_channels=4, kernel_size=2, stride=2)),
    (dict(out_channels=4, kernel_size=3, stride=2, padding=2, dilation=2), dict(out_channels=4, kernel_size=3,
                                                                                padding=1, groups=2)),
    (dict(out_channels=2, kernel_size=(2, 3), stride=(1, 2), padding=(0, 1)), dict(out_channels=3, kernel_size=1)),
]


def _conv_net(seed: int, which: int) -> Network:
    torch.manual_seed(seed)
    first, second = CONVS[which]
    c1 = nn.Conv2d(1, **first).double()
    c2 = nn.Conv2d(first["out_channels"], **second).double()
    with torch.no_grad():
        n = c2(c1(torch.zeros(1, 1, 6, 6, dtype=torch.float64))).numel()
    module = nn.Sequential(c1, nn.ReLU(), c2, nn.ReLU(), nn.Flatten(), nn.Linear(n, 5).double(), nn.ReLU(),
                           nn.Linear(5, 2).double())
    return module_network(module, (1, 6, 6), "test")


@pytest.fixture
def force(monkeypatch):
    """``force(True)``: every weight takes its sparse view; ``force(False)``: none does."""
    def setter(sparse: bool) -> None:
        monkeypatch.setattr(bounds, "SPARSE_MIN_SIZE", 0 if sparse else 10**18)
        monkeypatch.setattr(bounds, "SPARSE_DENSITY", 1.0)
        bounds._views.clear()
    yield setter
    bounds._views.clear()


@pytest.mark.parametrize("which", range(len(CONVS)))
@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_bounds_equal_dense_bounds(force, which, seed):
    net = _conv_net(seed, which)
    box = make_box(0.0, 1.0, net.input_dim)
    force(True)
    assert bounds.sparse_view(net.layers[1].weights[1]) is not None  # the sparse path really runs
    fast = bounds.cheap_bounds(net, box)
    force(False)
    assert bounds.sparse_view(net.layers[1].weights[1]) is None
    slow = bounds.cheap_bounds(net, box)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a.lower, b.lower, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.upper, b.upper, rtol=0, atol=1e-12)
    # and they are bounds: 10^4 box points stay inside
    zs = net.pre_activations(box.sample(10_000, np.random.default_rng(seed)))
    for z, b in zip(zs, fast):
        assert np.all(z >= b.lower) and np.all(z <= b.upper)


def test_symbolic_keeps_sparse_coefficients_sound_when_they_fill_in(force, monkeypatch):
    """Coefficients that fill in turn dense mid-way (SPARSE_KEEP); the bounds do not change."""
    net = _conv_net(3, 0)
    box = make_box(0.0, 1.0, net.input_dim)
    force(True)
    monkeypatch.setattr(bounds, "SPARSE_KEEP", 0.0)  # densify at the first chance
    early = bounds.cheap_bounds(net, box)
    monkeypatch.setattr(bounds, "SPARSE_KEEP", 1.0)  # never densify
    late = bounds.cheap_bounds(net, box)
    for a, b in zip(early, late):
        np.testing.assert_allclose(a.lower, b.lower, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.upper, b.upper, rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", range(len(CONVS)))
def test_milp_rows_from_the_sparse_view_are_the_dense_rows(force, which):
    net = _conv_net(5, which)
    box = make_box(0.0, 1.0, net.input_dim)
    lb = bounds.cheap_bounds(net, box)
    states = [[Verdict.UNSTABLE] * layer.width for layer in net.layers]
    force(True)
    fast = build_prefix(net, box, lb, states, 2)
    force(False)
    slow = build_prefix(net, box, lb, states, 2)
    assert (fast.matrix != slow.matrix).nnz == 0
    for a, b in [(fast.row_lower, slow.row_lower), (fast.row_upper, slow.row_upper),
                 (fast.col_lower, slow.col_lower), (fast.col_upper, slow.col_upper)]:
        np.testing.assert_array_equal(a, b)


def test_add_relus_writes_what_add_relu_writes(rng):
    """The batched big-M blocks: same columns, names, integrality, rows and ReLU records."""
    n = 7
    lo, hi = -rng.random(n) - 0.1, rng.random(n) + 0.1
    one, many = ProblemBuilder(), ProblemBuilder()
    for b in (one, many):
        b.add_cols(lo, hi, "z")
        b.add_rows(sp.eye(n, b.num_cols), np.zeros(n), np.zeros(n))
    for j in range(n):
        one.add_relu(j, lo[j], hi[j], j, (f"h{j}", f"d{j}"))
    h, d = many.add_relus(np.arange(n), lo, hi, np.arange(n), [(f"h{j}", f"d{j}") for j in range(n)])
    p, q = one.build(), many.build()
    assert (p.matrix != q.matrix).nnz == 0 and p.names == q.names
    for a, b in [(p.row_lower, q.row_lower), (p.row_upper, q.row_upper), (p.col_lower, q.col_lower),
                 (p.col_upper, q.col_upper), (p.integer, q.integer), (p.relus, q.relus)]:
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(q.relus[:, 1:3], np.column_stack([h, d]))


@pytest.mark.parametrize("which", range(len(CONVS)))
def test_conv_kernel_reads_back_the_conv_and_refuses_anything_else(which):
    net = _conv_net(7, which)
    for layer in net.layers[:2]:
        w = layer.weights[layer.sources[0]]
        kernel = conv_kernel(w, layer.structure)
        assert kernel is not None and kernel.shape[2:] == tuple(layer.structure["kernel"])
        changed = np.array(w)
        changed[np.unravel_index(np.argmax(changed == 0), changed.shape)] = 0.5  # a zero entry outside the taps
        assert conv_kernel(changed, layer.structure) is None


@pytest.mark.parametrize("which", range(len(CONVS)))
def test_convolutional_forward_equals_the_network_forward(which, rng):
    net = _conv_net(11, which)
    x = rng.random((64, net.input_dim))
    for a, b in zip(pre_activations(net, x), net.pre_activations(x)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_local_search_on_convolutions_returns_box_points_no_worse_than_its_starts(rng):
    net = _conv_net(13, 1)
    box = make_box(0.0, 1.0, net.input_dim)
    units = np.arange(net.layers[1].width)
    starts = box.sample(units.size, rng)
    dirs = np.where(rng.random(units.size) < 0.5, -1.0, 1.0)
    pts = local_search(net, box, 1, units, starts, dirs)
    assert box.contains(pts).all()
    z_end = net.pre_activations(pts)[1][np.arange(units.size), units] * dirs
    z_start = net.pre_activations(starts)[1][np.arange(units.size), units] * dirs
    assert np.all(z_end >= z_start - 1e-12)


@pytest.mark.parametrize("which", range(len(CONVS)))
def test_stable_claims_on_the_fast_paths_hold_on_samples_and_match_the_dense_paths(force, which):
    net = _conv_net(17 + which, which)
    box = make_box(0.0, 1.0, net.input_dim)
    options = StabilityOptions(time_limit=30.0, samples=256)
    force(True)
    fast = analyse(net, box, options)
    force(False)
    slow = analyse(net, box, options)
    zs = net.pre_activations(box.sample(100_000, np.random.default_rng(which)))
    claims = 0
    for lr, lr_dense in zip(fast.layers, slow.layers):
        z = zs[lr.layer - 1]
        assert lr.active == lr_dense.active and lr.inactive == lr_dense.inactive
        assert np.all(z[:, lr.active] >= 0) and np.all(z[:, lr.inactive] <= 0)
        claims += len(lr.active) + len(lr.inactive)
        assert not any(p.witness is None and p.verdict == Verdict.UNSTABLE for p in lr.proofs)  # all decided
    assert claims > 0


def test_witness_extremes_kept_as_points_come_equal_the_extremes_of_all_points(rng):
    """Witnesses keep per unit the max/min and the earliest point reaching it, batch by batch
    (not every point's pre-activations): the same as arg-extremes over all points at once."""
    net = _conv_net(19, 2)
    box = make_box(0.0, 1.0, net.input_dim)
    wit = Witnesses(net, box)
    batches = [box.sample(n, rng) for n in (5, 1, 40, 3)]
    batches.append(batches[0][:2])  # repeated points: ties go to the earliest
    for b in batches:
        wit.add(b)
    pts = np.vstack(batches)
    np.testing.assert_array_equal(wit.points, pts)
    for k, z in enumerate(net.pre_activations(pts)):
        zmax, amax, zmin, amin = wit.signs(k)
        np.testing.assert_allclose(zmax, z.max(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(zmin, z.min(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(z[amax, np.arange(z.shape[1])], zmax, rtol=0, atol=1e-12)
        np.testing.assert_allclose(z[amin, np.arange(z.shape[1])], zmin, rtol=0, atol=1e-12)
        assert np.all(amax < pts.shape[0] - 2) and np.all(amin < pts.shape[0] - 2)
