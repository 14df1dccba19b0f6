"""``leo.core.product.parallel``: the product network computes each network's own forward
pass (random dense, residual and conv networks, different depths, tied and separate inputs),
and questions asked of the product get the answers known for the networks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import random_mlp
from leo.core.product import PRODUCT, layout, parallel
from leo.queries.closeness import closeness, closeness_eps, closeness_property
from leo.core.domain import make_box
from leo.errors import LeoInputError
from leo.core.network import ARCHITECTURE_SOURCE, Layer, Network
from leo.queries.property import Answer


def _residual(rng: np.random.Generator, n_in: int, width: int, n_out: int) -> Network:
    """x -> relu(W1 x) -> relu(W2 h1 + S x) -> W3 h2 + R h1: skip connections from the input and layer 1."""
    g = lambda o, i: rng.normal(size=(o, i)) / np.sqrt(i)  # noqa: E731
    layers = (Layer({0: g(width, n_in)}, rng.normal(size=width) * 0.3, True),
              Layer({1: g(width, width), 0: g(width, n_in)}, rng.normal(size=width) * 0.3, True),
              Layer({2: g(n_out, width), 1: g(n_out, width)}, rng.normal(size=n_out), False))
    return Network(n_in, layers)


def _check_forward(nets: list[Network], groups: list[int], rng: np.random.Generator) -> Network:
    prod = parallel(nets, groups)
    lay = layout(nets, groups)
    x = rng.uniform(-2, 2, size=(200, prod.input_dim))
    y = prod(x)
    assert y.shape == (200, sum(n.output_dim for n in nets))
    for net, xs, ys in zip(nets, lay.split_input(x), lay.split_output(y)):
        np.testing.assert_allclose(ys, net(xs), rtol=1e-12, atol=1e-12)
    return prod


@pytest.mark.parametrize("groups", [[0, 0, 0], [0, 1, 2], [1, 0, 1]])
def test_random_nets_of_different_depths(rng, groups):
    sizes = [[4, 7, 3], [4, 5, 6, 5, 2], [4, 3, 3, 3, 3, 3, 1]]
    nets = [random_mlp(rng, s) for s in sizes]
    prod = _check_forward(nets, groups, rng)
    assert len(prod.layers) == 6  # aligned at the end: as deep as the deepest network
    assert prod.input_dim == 4 * len(set(groups))
    meta = json.loads(prod.metadata[PRODUCT])
    assert [m["input_group"] for m in meta] == groups
    assert "product of 3 networks" in prod.metadata[ARCHITECTURE_SOURCE]


def test_separate_inputs_of_different_sizes(rng):
    nets = [random_mlp(rng, [3, 6, 2]), random_mlp(rng, [5, 4, 4, 3])]
    prod = _check_forward(nets, [1, 0], rng)
    assert layout(nets, [1, 0]).input_slices == (slice(5, 8), slice(0, 5))
    assert prod.input_shape == (8,)


def test_residual_networks(rng):
    nets = [_residual(rng, 3, 6, 2), random_mlp(rng, [3, 5, 2]), _residual(rng, 3, 4, 2)]
    _check_forward(nets, [0, 0, 0], rng)


def test_linear_hidden_layer_lays_networks_one_after_another(rng):
    """A linear hidden layer would share a product layer with a ReLU layer if aligned: the
    networks then go one after another with a gathering layer, still exact."""
    a = random_mlp(rng, [3, 5, 4, 2])
    linear_hidden = Network(3, (a.layers[0], Layer(dict(a.layers[1].weights), a.layers[1].bias, False), a.layers[2]))
    b = random_mlp(rng, [3, 6, 6, 2])
    prod = _check_forward([linear_hidden, b], [0, 0], rng)
    assert len(prod.layers) == 7
    assert "one after another" in prod.metadata[ARCHITECTURE_SOURCE]


def test_one_network_is_itself(rng):
    f = random_mlp(rng, [4, 6, 3])
    prod = _check_forward([f], [0], rng)
    for a, b in zip(prod.layers, f.layers):
        assert a.relu == b.relu and dict(a.weights).keys() == dict(b.weights).keys()


def test_conv_networks_keep_structure_only_where_exact(rng):
    torch = pytest.importorskip("torch")
    from torch import nn

    from conftest import seeded_module
    from leo.api import as_network

    def conv(seed: int, depth: int) -> Network:
        body = [nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()] + [nn.Conv2d(2, 2, 3, padding=1), nn.ReLU()] * (depth - 1)
        module = seeded_module(nn.Sequential(*body, nn.Flatten(), nn.Linear(2 * 5 * 5, 3)), seed)
        net = as_network(module, like=np.zeros((1, 1, 5, 5), dtype=np.float32))
        x = rng.uniform(0, 1, size=(20, 1, 5, 5))
        with torch.no_grad():
            ref = module(torch.tensor(x, dtype=torch.float32)).double().numpy()
        np.testing.assert_allclose(net(x.reshape(20, -1)), ref, atol=1e-4)
        return net

    f, g = conv(0, 1), conv(1, 2)
    assert f.layers[0].structure is not None
    prod = _check_forward([f, g], [0, 0], rng)
    assert prod.input_shape == (1, 5, 5)
    assert prod.layers[0].structure is not None  # only g's first conv: its matrix unchanged
    assert prod.layers[1].structure is None  # f's and g's convs together: no longer one conv
    alone = parallel([g], [0])
    assert all((a.structure is None) == (b.structure is None) for a, b in zip(alone.layers, g.layers))


def test_closeness_property_is_the_difference_test(rng):
    y = rng.normal(size=(500, 6)) * 0.3
    prop = closeness_property(3, 0.25)
    inside = np.array([prop.violating(row[None]) is not None for row in y])
    np.testing.assert_array_equal(inside, np.abs(y[:, :3] - y[:, 3:]).max(axis=1) >= 0.25)


def test_compressed_copy_is_close(rng):
    from leo.reduction.reduce import reduce
    from leo.stability.analysis import analyse

    f = random_mlp(rng, [3, 10, 8, 2], bias_shift=-0.4)
    box = make_box(0, 1, 3)
    small = reduce(f, analyse(f, box)).network
    assert sum(small.hidden) < sum(f.hidden)
    res = closeness(f, small, box, 1e-4, time_limit=8)
    assert res.answer is Answer.UNSAT


def test_perturbed_copy_has_a_confirmed_witness(rng):
    f = random_mlp(rng, [3, 8, 8, 2])
    last = f.layers[-1]
    w = dict(last.weights)
    w[2] = w[2] + np.outer([0.3, 0.0], np.ones(8)) * (np.arange(8) == 2)  # one weight of output 0 moved
    g = Network(3, f.layers[:-1] + (Layer(w, last.bias, False),))
    box = make_box(-1, 1, 3)
    x = box.sample(20_000, np.random.default_rng(0))
    eps = 0.5 * float(np.abs(f(x) - g(x)).max())  # dense sampling: some point is more than eps apart
    assert eps > 0
    res = closeness(f, g, box, eps, time_limit=30)
    assert res.answer is Answer.SAT
    cx = res.counterexample[None]
    assert box.contains(cx)[0] and np.abs(f(cx) - g(cx)).max() >= eps - 1e-9
    np.testing.assert_allclose(res.output, np.r_[f(cx)[0], g(cx)[0]], rtol=1e-12)


def test_stability_of_a_product_is_each_networks(rng):
    """Units of the product are the networks' units: the same verdicts, layer by layer."""
    from leo.stability.analysis import analyse

    f, g = random_mlp(rng, [3, 6, 5, 2], bias_shift=-0.3), random_mlp(rng, [2, 7, 5, 2], bias_shift=0.3)
    box_f, box_g = make_box(0, 1, 3), make_box(-1, 1, 2)
    prod = parallel([f, g], [0, 1])
    both = make_box(np.r_[box_f.lower, box_g.lower], np.r_[box_f.upper, box_g.upper], 5)
    rp, rf, rg = analyse(prod, both), analyse(f, box_f), analyse(g, box_g)
    for lp, lf, lg in zip(rp.layers, rf.layers, rg.layers):
        assert list(lp.states) == list(lf.states) + list(lg.states)


@pytest.mark.parametrize("nets, groups, words", [
    ([], [], "at least one"),
    ([(3, 2)], [0, 0], "one per network"),
    ([(3, 2), (3, 2)], [0, 2], "numbered"),
    ([(3, 2), (4, 2)], [0, 0], "same size"),
])
def test_bad_layouts(rng, nets, groups, words):
    built = [random_mlp(rng, [i, 4, o]) for i, o in nets]
    with pytest.raises(LeoInputError, match=words):
        parallel(built, groups)


def test_closeness_finds_a_sliver_sampling_misses():
    """f - g = relu(x0 - 0.999) on [0, 1]^2: only a sliver of the box tells them apart."""
    from leo.core.network import mlp

    w1 = np.array([[1.0, 0.0]])
    f = mlp([w1, np.ones((1, 1))], [np.array([-0.999]), np.zeros(1)])
    g = mlp([w1, np.ones((1, 1))], [np.array([-1.5]), np.zeros(1)])
    box = make_box(0, 1, 2)
    res = closeness(f, g, box, 5e-4, time_limit=20)
    assert res.answer is Answer.SAT
    cx = res.counterexample[None]
    assert box.contains(cx)[0] and abs(f(cx) - g(cx))[0, 0] >= 5e-4 - 1e-6
    assert closeness(f, g, box, 2e-3, time_limit=20).answer is Answer.UNSAT  # the largest difference is 1e-3


@pytest.mark.parametrize("sizes, eps, words", [([3, 4, 2], 0.0, "positive"), ([2, 4, 2], 0.1, "differ in shape")])
def test_closeness_bad_input(rng, sizes, eps, words):
    f = random_mlp(rng, [3, 4, 2])
    with pytest.raises(LeoInputError, match=words):
        closeness(f, random_mlp(rng, sizes), make_box(0, 1, 3), eps, time_limit=5)


def test_closeness_eps_recognises_only_closeness_queries():
    from leo.queries.property import Inequality, OutputProperty

    prop = closeness_property(3, 0.25)
    assert closeness_eps(prop, 3) == 0.25
    scaled = OutputProperty(6, tuple((Inequality(2 * d[0].coeffs, 2 * d[0].bound),) for d in reversed(prop.disjuncts)))
    assert closeness_eps(scaled, 3) == 0.25
    assert closeness_eps(OutputProperty(6, prop.disjuncts[:-1]), 3) is None  # one side missing
    assert closeness_eps(OutputProperty(6, prop.disjuncts[:-1] + prop.disjuncts[:1]), 3) is None
    shifted = OutputProperty(6, prop.disjuncts[:-1] + ((Inequality(prop.disjuncts[-1][0].coeffs, -0.3),),))
    assert closeness_eps(shifted, 3) is None  # two different ε
    assert closeness_eps(closeness_property(3, 0.25), 2) is None
