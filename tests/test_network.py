import numpy as np
import pytest

from leo.errors import LeoInputError
from leo.core.network import Layer, Network, mlp


def test_forward_matches_numpy(rng):
    w1, b1, w2, b2 = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4)), rng.normal(size=2)
    net = mlp([w1, w2], [b1, b2])
    x = rng.normal(size=(10, 3))
    expected = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    np.testing.assert_allclose(net(x), expected, rtol=1e-12)
    assert net.hidden == (4,) and net.output_dim == 2 and net.is_mlp


def test_skip_connection_forward(rng):
    w1, w2, s = rng.normal(size=(4, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
    net = Network(3, (Layer({0: w1}, np.zeros(4), True), Layer({1: w2, 0: s}, np.ones(2), False)))
    x = rng.normal(size=(5, 3))
    np.testing.assert_allclose(net(x), np.maximum(x @ w1.T, 0) @ w2.T + x @ s.T + 1)
    assert not net.is_mlp


def test_arrays_are_read_only(rng):
    net = mlp([rng.normal(size=(2, 2))], [np.zeros(2)])
    with pytest.raises(ValueError):
        net.layers[0].weights[0][0, 0] = 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_rejected(bad):
    w = np.ones((2, 2))
    w[0, 1] = bad
    with pytest.raises(LeoInputError, match="NaN or infinite"):
        mlp([w], [np.zeros(2)])


def test_shape_mismatch_rejected():
    with pytest.raises(LeoInputError, match="columns"):
        mlp([np.ones((3, 2)), np.ones((2, 4))], [np.zeros(3), np.zeros(2)])
