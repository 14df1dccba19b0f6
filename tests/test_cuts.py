"""Ideal-formulation cuts: valid at every point of the network (they cut off no real
point), violated by the LP optima they were separated at, and they tighten the LP bound
without passing the true optimum."""

import numpy as np
import pytest

from solvers.cuts import Separator, cut_loop
from leo.bounds.encoding import assignment
from solvers.highs_backend import HighsModel
from tests.conftest import exact_ranges, random_prefix


@pytest.mark.parametrize("seed", range(6))
def test_cuts_keep_every_network_point_and_cut_off_the_lp_point(seed):
    rng, net, box, f = random_prefix(seed)
    separator = Separator(f)
    assert separator.m == f.num_binaries > 0
    lp = HighsModel(f, relax=True)
    points = np.vstack([assignment(net, f, x) for x in box.sample(2000, rng)])
    found = 0
    for _ in range(10):
        lp.minimise(rng.normal(size=f.num_cols), threshold=None, time_limit=10)
        v = lp.solution()
        cuts = separator.separate(v)
        if not cuts.count:
            continue
        found += cuts.count
        assert np.all(cuts.matrix @ v > cuts.upper)  # each cut is violated where it was found
        assert np.all(points @ cuts.matrix.T <= cuts.upper + 1e-9)  # and holds at every real point
        lp.add_rows(cuts.matrix, np.full(cuts.count, -np.inf), cuts.upper)
    assert found > 0


@pytest.mark.parametrize("seed", range(6))
def test_cut_loop_bound_lies_between_lp_and_true_minimum(seed):
    rng, net, box, f = random_prefix(seed)
    lo, hi = exact_ranges(net, box.lower, box.upper, 2)
    lp = HighsModel(f, relax=True)
    separator = Separator(f)
    gained = 0
    for j in range(net.layers[2].width):
        for sign, truth in ((1.0, lo[j]), (-1.0, -hi[j])):
            cost = f.objective(2, j, sign)
            plain = lp.minimise(cost, threshold=None, time_limit=10).bound
            rows = lp.num_rows
            loop = cut_loop(lp, separator, cost, threshold=np.inf, time_limit=10)
            assert lp.num_rows == rows  # the loop leaves the model as it found it
            assert plain - 1e-7 <= loop.bound <= truth + 1e-7
            gained += loop.bound > plain + 1e-6
            mip = HighsModel(f)
            mip.add_rows(loop.cuts.matrix, np.full(loop.cuts.count, -np.inf), loop.cuts.upper)  # the binding cuts keep the MILP's optimum
            assert mip.minimise(cost, threshold=None, time_limit=30).bound == pytest.approx(truth, abs=1e-6)
    assert gained > 0


@pytest.mark.parametrize("seed", range(4))
def test_separator_finds_the_most_violated_cut_of_the_family(seed):
    """Against enumeration of every subset I of a ReLU's inputs (both signs of weight)."""
    import itertools

    rng, net, box, f = random_prefix(seed)
    separator = Separator(f)
    lp = HighsModel(f, relax=True)
    lp.minimise(rng.normal(size=f.num_cols), threshold=None, time_limit=10)
    v = lp.solution()
    cuts = separator.separate(v, min_violation=-np.inf)  # one cut per ReLU, violated or not
    assert cuts.count == separator.m
    found = cuts.matrix @ v - cuts.upper
    for i in range(separator.m):
        mine = separator.entry_relu == i
        w, x = separator.w[mine], v[separator.entry_col[mine]]
        low, high = separator.low[mine], separator.high[mine]
        d, h = v[separator.d[i]], v[separator.h[i]]
        best = -np.inf
        for subset in itertools.product([False, True], repeat=w.size):
            s = np.array(subset, dtype=bool)
            rhs = (w[s] * (x[s] - low[s] * (1 - d))).sum() + (separator.beta_hi[i] + (w[~s] * high[~s]).sum()) * d
            best = max(best, h - rhs)
        assert found[i] == pytest.approx(best, abs=1e-7)
