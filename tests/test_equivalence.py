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
