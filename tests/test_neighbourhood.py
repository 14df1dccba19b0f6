"""The searches for a crossing: the region walk's affine maps and LPs against the
forward pass and dense sampling, and the combined search against exact ranges from
pattern enumeration (on networks this small the first neighbourhood frees every
binary, so the search must find every crossing there is)."""

import numpy as np
import pytest

from leo.search.neighbourhood import FREE, affine_maps, find_crossing, region_walk, relu_units
from leo.core.network import Layer, Network
from solvers.highs_backend import HighsModel
from tests.conftest import exact_ranges, random_prefix


def test_affine_maps_equal_the_forward_pass_in_each_points_own_region():
    rng = np.random.default_rng(0)
    w1, w2, skip, w3 = (rng.normal(size=s) for s in ((6, 4), (5, 6), (5, 4), (3, 5)))
    net = Network(4, (Layer({0: w1}, rng.normal(size=6), True),
                      Layer({1: w2, 0: skip}, rng.normal(size=5), True),  # a skip from the input
                      Layer({2: w3}, rng.normal(size=3), False)))
    for x in rng.uniform(-1, 1, size=(50, 4)):
        pre = net.pre_activations(x[None])
        maps = affine_maps(net, 2, [(pre[k][0] > 0).astype(float) for k in range(2)])
        for k in range(3):
            a, c = maps[k]
            assert a @ x + c == pytest.approx(pre[k][0], abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_region_walk_beats_every_sampled_point_of_its_start_region(seed):
    rng, net, box, f = random_prefix(seed)
    layers, units = relu_units(net, f)
    samples = box.sample(20000, rng)
    pre = net.pre_activations(samples)
    signs = np.array([pre[k][:, u] > 0 for k, u in zip(layers, units)]).T
    compared = 0
    for j in range(net.layers[2].width):
        for direction in (1, -1):
            above = np.flatnonzero(direction * pre[2][:, j] > 0)  # starts that do not cross yet
            if not above.size:
                continue
            start = samples[rng.choice(above)]
            walk = region_walk(net, f, 2, j, direction, start, time_limit=10)
            assert walk.points and all(box.contains(np.vstack(walk.points)))
            values = direction * net.pre_activations(np.vstack(walk.points))[2][:, j]
            start_value = direction * net.pre_activations(start[None])[2][0, j]
            assert walk.best == pytest.approx(min(values.min(), start_value)) or walk.best < 0
            same = np.all(signs == signs[np.all(samples == start, axis=1)][0], axis=1)
            if walk.best >= 0:  # a walk stopped by a crossing need not have finished its region
                assert walk.best <= (direction * pre[2][same, j]).min() + 1e-9
                compared += 1
    assert compared > 0


@pytest.mark.parametrize("seed", range(6))
def test_search_finds_every_crossing_and_restores_the_model(seed):
    rng, net, box, f = random_prefix(seed)
    assert f.num_binaries <= FREE  # the first neighbourhood is the whole MILP
    lo, hi = exact_ranges(net, box.lower, box.upper, 2)
    model = HighsModel(f)
    samples = box.sample(500, rng)
    z = net.pre_activations(samples)[2]
    crossings = 0
    for j in range(net.layers[2].width):
        for direction, truth in ((1, lo[j]), (-1, -hi[j])):
            start = samples[np.argmax(direction * z[:, j])]  # the point farthest from a crossing
            res = find_crossing(model, f, net, 2, j, direction, [start], time_limit=30)
            if truth < -1e-6:
                assert res.best < 0
                crossings += 1
            if res.best < 0:  # a claimed crossing is one by the forward pass
                values = direction * net.pre_activations(np.vstack([start, *res.points]))[2][:, j]
                assert values.min() == pytest.approx(res.best) and truth < 0
            # the indicators are free again, and the full MILP still finds the true minimum
            lp = model.highs.getLp()
            d = f.relus[:, 2]
            assert np.all(np.asarray(lp.col_lower_)[d] == 0) and np.all(np.asarray(lp.col_upper_)[d] == 1)
            full = model.minimise(f.objective(2, j, float(direction)), threshold=None, time_limit=30)
            assert full.bound == pytest.approx(truth, abs=1e-6)
    assert crossings > 0


@pytest.mark.parametrize("seed", range(3))
def test_small_neighbourhoods_leave_the_model_as_they_found_it(seed, monkeypatch):
    import leo.search.neighbourhood as nb

    monkeypatch.setattr(nb, "FREE", 2)  # fewer free indicators than the model has: the rest are fixed
    rng, net, box, f = random_prefix(seed)
    lo, _ = exact_ranges(net, box.lower, box.upper, 2)
    model = HighsModel(f)
    start = box.sample(1, rng)[0]
    for j in range(net.layers[2].width):
        res = nb.neighbourhood_search(model, f, net, 2, j, 1, [start], time_limit=10)
        assert res.rounds > 0 or res.best < 0
        lp = model.highs.getLp()
        d = f.relus[:, 2]
        assert np.all(np.asarray(lp.col_lower_)[d] == 0) and np.all(np.asarray(lp.col_upper_)[d] == 1)
        full = model.minimise(f.objective(2, j, 1.0), threshold=None, time_limit=30)
        assert full.bound == pytest.approx(lo[j], abs=1e-6)
