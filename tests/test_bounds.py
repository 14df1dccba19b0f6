import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from leo.bounds import cheap_bounds, interval_layer
from leo.domain import make_box
from tests.conftest import exact_ranges, random_mlp


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), symbolic=st.booleans())
def test_bounds_contain_all_sampled_values(seed, symbolic):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 6, 5, 4, 2])
    box = make_box(-1, 1, 3)
    bounds = cheap_bounds(net, box, symbolic=symbolic)
    zs = net.pre_activations(box.sample(4000, rng))
    for b, z in zip(bounds, zs):
        assert np.all(z >= b.lower) and np.all(z <= b.upper)


def test_symbolic_is_never_looser_and_sometimes_tighter(rng):
    tighter = 0
    for _ in range(10):
        net = random_mlp(rng, [4, 8, 8, 3])
        box = make_box(0, 1, 4)
        iv = []
        for k in range(3):
            iv.append(interval_layer(net, k, box, iv))
        sym = cheap_bounds(net, box, symbolic=True)
        for a, b in zip(iv, sym):
            assert np.all(b.lower >= a.lower - 1e-12) and np.all(b.upper <= a.upper + 1e-12)
        tighter += int(np.sum(sym[2].upper < iv[2].upper - 1e-9))
    assert tighter > 0


def test_bounds_are_sound_against_exact_ranges(rng):
    net = random_mlp(rng, [2, 4, 3, 1])
    box = make_box(-1, 1, 2)
    bounds = cheap_bounds(net, box)
    lo, hi = exact_ranges(net, box.lower, box.upper, 2)
    assert np.all(bounds[2].lower <= lo + 1e-9) and np.all(bounds[2].upper >= hi - 1e-9)
