import numpy as np
import pytest

from leo.core.domain import make_box
from leo.queries.equivalence import Verdict, compare_exact, compare_sampled, readable
from leo.core.network import Layer, Network, mlp
from leo.reduction.reduce import reduce
from leo.stability.analysis import analyse
from tests.conftest import random_mlp

BUILTIN = "builtin:mnist-2x50"


def scaled_unit(net: Network, k: int, j: int, c: float) -> Network:
    """The same function with unit j of layer k scaled by c > 0 (in and out): its
    pre-activation matches no unit of ``net``, so an exact check must branch on it."""
    layers = list(net.layers)
    w = {s: a.copy() for s, a in layers[k].weights.items()}
    for a in w.values():
        a[j] *= c
    bias = layers[k].bias.copy()
    bias[j] *= c
    layers[k] = Layer(w, bias, layers[k].relu)
    for m in range(k + 1, len(layers)):
        if k + 1 in layers[m].weights:
            w2 = dict(layers[m].weights)
            w2[k + 1] = w2[k + 1].copy()
            w2[k + 1][:, j] /= c
            layers[m] = Layer(w2, layers[m].bias, layers[m].relu)
    return Network(net.input_dim, tuple(layers))


def perturbed_builtin(net: Network) -> Network:
    """The built-in model with one output weight changed by 1 on a second-layer unit that is
    zero at the box centre and positive on ~0.5% of the box: outputs differ by up to ~1
    there, while a few random points miss it."""
    last = net.layers[-1]
    w = {s: a.copy() for s, a in last.weights.items()}
    w[len(net.layers) - 1][3, 44] += 1.0
    return Network(net.input_dim, net.layers[:-1] + (Layer(w, last.bias, last.relu),))


def _builtin():
    from leo.api import as_network

    return as_network(BUILTIN)


def test_exact_check_proves_a_reduction(rng):
    net = random_mlp(rng, [3, 8, 6, 2], bias_shift=-0.5)
    box = make_box(0, 1, 3)
    small = reduce(net, analyse(net, box)).network
    assert compare_sampled(net, small, box, n=5000).equivalent
    res = compare_exact(net, small, box, tolerance=1e-6)
    assert res.verdict is Verdict.PROVEN and res.proven_bound <= 1e-6


def test_exact_check_finds_a_difference_sampling_misses(rng):
    """g differs from f only in a thin sliver of the box; the MILP finds it."""
    w1 = np.array([[1.0, 0.0]])
    f = mlp([w1, np.ones((1, 1))], [np.array([-0.999]), np.zeros(1)])
    g = mlp([w1, np.ones((1, 1))], [np.array([-1.5]), np.zeros(1)])  # f - g = relu(x0 - 0.999)
    box = make_box(0, 1, 2)
    sampled = compare_sampled(f, g, box, n=50, tolerance=1e-4, seed=3)
    res = compare_exact(f, g, box, tolerance=1e-4)
    assert res.verdict is Verdict.REFUTED and res.counterexample is not None
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
    assert res.verdict is Verdict.PROVEN and res.proven_bound <= 1e-6
    w1 = np.abs(rng.normal(size=(3, 2)))
    lin = mlp([w1, np.abs(rng.normal(size=(3, 3))), rng.normal(size=(1, 3))], [np.ones(3), np.ones(3), np.zeros(1)])
    merged = reduce(lin, analyse(lin, box := make_box(0, 1, 2))).network
    assert merged.hidden == ()
    assert compare_exact(lin, merged, box, tolerance=1e-6).verdict is Verdict.PROVEN


def test_exact_check_rejects_a_small_perturbation(rng):
    """A reduction with one weight nudged: the exact check finds a confirmed point."""
    net = random_mlp(rng, [3, 8, 6, 2], bias_shift=-0.5)
    box = make_box(0, 1, 3)
    small = reduce(net, analyse(net, box)).network
    layers = list(small.layers)
    w = dict(layers[-1].weights)
    key = next(iter(w))
    nudged = w[key].copy()
    nudged[0, 0] += 1e-2
    w[key] = nudged
    layers[-1] = Layer(w, layers[-1].bias, layers[-1].relu)
    bad = Network(small.input_dim, tuple(layers))
    res = compare_exact(net, bad, box, tolerance=1e-6)
    assert res.verdict is Verdict.REFUTED
    x = res.counterexample[None]
    assert np.abs(net(x) - bad(x)).max() > 1e-6


def test_unconfirmed_incumbent_is_neither_a_proof_nor_a_refutation():
    """f and g are the same function (g scales the hidden unit by 2), but the MILP rows drop
    199 weights of 4e-7 and are widened by their range (~8e-5), independently in f and g:
    the model shows a difference the networks never have. The check must say undecided,
    not 'proven' from an interrupted solve nor 'not equivalent' without a point."""
    n = 200
    w = np.full((1, n), 4e-7)
    w[0, 0] = 1.0
    f = mlp([w, np.ones((1, 1))], [np.array([-0.5]), np.zeros(1)])
    g = mlp([2 * w, np.full((1, 1), 0.5)], [np.array([-1.0]), np.zeros(1)])
    box = make_box(0, 1, n)
    x = box.sample(20_000, np.random.default_rng(0))
    assert np.abs(f(x) - g(x)).max() <= 1e-12  # independent truth: the same function
    res = compare_exact(f, g, box, tolerance=1e-5, time_limit=30)
    assert res.verdict is Verdict.UNDECIDED and res.proven_bound is None and res.counterexample is None
    assert "do not confirm" in res.reason


def test_readable_has_no_negative_zeros():
    text = readable(np.array([-0.0, 0.5, -1e-17, -2.0]))
    assert "-0." not in text and "-2." in text and "0.5" in text


@pytest.mark.slow
def test_builtin_model_is_proven_equivalent_to_itself_and_its_compression():
    import leo

    f = _builtin()
    box = make_box(0, 1, f.input_dim)
    small = leo.compress(f, 0.0, 1.0).network
    assert sum(lyr.width for lyr in small.layers) < sum(lyr.width for lyr in f.layers)
    for g in (f, small):
        res = compare_exact(f, g, box, tolerance=1e-4, time_limit=60)
        assert res.verdict is Verdict.PROVEN, res.reason
        assert res.proven_bound <= 1e-4


@pytest.mark.slow
def test_builtin_perturbation_is_refuted_by_a_confirmed_point():
    f = _builtin()
    g = perturbed_builtin(f)
    box = make_box(0, 1, f.input_dim)
    res = compare_exact(f, g, box, tolerance=1e-4, time_limit=60)
    assert res.verdict is Verdict.REFUTED
    x = res.counterexample
    assert np.all(x >= box.lower) and np.all(x <= box.upper)
    diff = np.abs(f(x[None]) - g(x[None]))[0]
    assert diff[res.output] > 1e-4 and diff[res.output] == pytest.approx(res.max_diff)
