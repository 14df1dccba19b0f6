import numpy as np

from leo.domain import make_box
from leo.equivalence import compare_exact, compare_sampled
from leo.network import mlp
from leo.reduce import reduce
from leo.stability import analyse
from tests.conftest import random_mlp


def test_exact_check_proves_a_reduction(rng):
    net = random_mlp(rng, [3, 8, 6, 2], bias_shift=-0.5)
    box = make_box(0, 1, 3)
    small = reduce(net, analyse(net, box)).network
    assert compare_sampled(net, small, box, n=5000).equivalent
    res = compare_exact(net, small, box, tolerance=1e-6)
    assert res.equivalent and res.proven_bound <= 1e-6


def test_exact_check_finds_a_difference_sampling_misses(rng):
    """g differs from f only in a thin sliver of the box; the MILP finds it."""
    w1 = np.array([[1.0, 0.0]])
    f = mlp([w1, np.ones((1, 1))], [np.array([-0.999]), np.zeros(1)])
    g = mlp([w1, np.ones((1, 1))], [np.array([-1.5]), np.zeros(1)])  # f - g = relu(x0 - 0.999)
    box = make_box(0, 1, 2)
    sampled = compare_sampled(f, g, box, n=50, tolerance=1e-4, seed=3)
    res = compare_exact(f, g, box, tolerance=1e-4)
    assert not res.equivalent and res.counterexample is not None
    x = res.counterexample[None]
    assert abs(f(x) - g(x))[0, 0] > 1e-4
    assert sampled.max_diff <= res.max_diff


def test_exact_check_proves_folded_and_merged_reductions(rng):
    from tests.test_reduce import _planted

    net = _planted(rng)
    box = make_box(0, 1, 4)
    red = reduce(net, analyse(net, box))
    assert red.folded_active[0]
    res = compare_exact(net, red.network, box, tolerance=1e-6)
    assert res.equivalent and res.proven_bound <= 1e-6
    w1 = np.abs(rng.normal(size=(3, 2)))
    lin = mlp([w1, np.abs(rng.normal(size=(3, 3))), rng.normal(size=(1, 3))], [np.ones(3), np.ones(3), np.zeros(1)])
    merged = reduce(lin, analyse(lin, box := make_box(0, 1, 2))).network
    assert merged.hidden == ()
    assert compare_exact(lin, merged, box, tolerance=1e-6).equivalent


def test_exact_check_rejects_a_small_perturbation(rng):
    """A reduction with one weight nudged: sampling may miss it, the exact check may not."""
    net = random_mlp(rng, [3, 8, 6, 2], bias_shift=-0.5)
    box = make_box(0, 1, 3)
    small = reduce(net, analyse(net, box)).network
    layers = list(small.layers)
    w = dict(layers[-1].weights)
    key = next(iter(w))
    nudged = w[key].copy()
    nudged[0, 0] += 1e-2
    w[key] = nudged
    from leo.network import Layer, Network

    layers[-1] = Layer(w, layers[-1].bias, layers[-1].relu)
    bad = Network(small.input_dim, tuple(layers))
    res = compare_exact(net, bad, box, tolerance=1e-6)
    assert not res.equivalent
    if res.counterexample is not None:
        x = res.counterexample[None]
        assert np.abs(net(x) - bad(x)).max() > 1e-6
