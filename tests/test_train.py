"""Training: the loss goes down, l1 shrinks weights, the RS loss is what the paper says,
and a seed fixes the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from leo.errors import LeoInputError
from leo.io.torch_io import from_module, from_state_dict
from leo.train import (
    PAPER_STEPS, TrainOptions, accuracy, init_mlp, l1_norm, rs_loss, train_command, train_mlp,
)


def blobs(n: int = 240, d: int = 8, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable-ish Gaussian clusters inside [0, 1]^d."""
    rng = np.random.default_rng(seed)
    centres = rng.random((classes, d))
    y = rng.integers(0, classes, size=n)
    x = np.clip(centres[y] + 0.08 * rng.standard_normal((n, d)), 0, 1).astype(np.float32)
    return x, y


def small(**kw: object) -> TrainOptions:
    base = dict(hidden=(16, 16), l1=0.0, steps=300, batch=32, lr=0.05)
    base.update(kw)
    return TrainOptions(**base)  # type: ignore[arg-type]


def cross_entropy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(torch.tensor(x)), torch.tensor(y)))


def test_training_reduces_loss() -> None:
    x, y = blobs()
    opts = small()
    before = cross_entropy(init_mlp((8, 16, 16, 3), opts.seed), x, y)
    model = train_mlp(x, y, opts)
    after = cross_entropy(model, x, y)
    assert after < 0.5 * before
    assert accuracy(model, x, y) > 0.9
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]  # no ReLU on the output
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_l1_shrinks_weights() -> None:
    x, y = blobs()
    plain = train_mlp(x, y, small(l1=0.0))
    sparse = train_mlp(x, y, small(l1=1e-2))
    assert float(l1_norm(sparse).detach()) < 0.7 * float(l1_norm(plain).detach())


def test_init_is_kaiming_with_zero_bias() -> None:
    model = init_mlp((400, 300, 10), seed=3)
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in model if isinstance(m, nn.Linear))
    std = float(model[0].weight.detach().std())
    assert abs(std - np.sqrt(2 / 400)) < 0.05 * np.sqrt(2 / 400)


def numpy_rs_loss(weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, eps: float) -> float:
    """-mean_samples sum_hidden tanh(1 + l*u), bounds by splitting W into its signs."""
    lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    total = np.zeros(x.shape[0])
    for w, b in zip(weights[:-1], biases[:-1]):
        wp, wn = np.maximum(w, 0), np.minimum(w, 0)
        l, u = lo @ wp.T + hi @ wn.T + b, hi @ wp.T + lo @ wn.T + b
        total += np.tanh(1 + l * u).sum(axis=1)
        lo, hi = np.maximum(l, 0), np.maximum(u, 0)
    return float(-total.mean())


def test_rs_loss_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    sizes = (5, 4, 3, 2)
    weights = [rng.standard_normal((sizes[k + 1], sizes[k])) for k in range(3)]
    biases = [rng.standard_normal(sizes[k + 1]) for k in range(3)]
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        for lin, w, b in zip([model[0], model[2], model[4]], weights, biases):
            lin.weight.copy_(torch.tensor(w))
            lin.bias.copy_(torch.tensor(b))
    x = rng.random((6, 5))
    for eps in (0.0, 0.1, 0.3):
        with torch.no_grad():
            got = float(rs_loss(model, torch.tensor(x), eps))
        assert got == pytest.approx(numpy_rs_loss(weights, biases, x, eps), rel=1e-12, abs=1e-12)
    # eps = 0: l = u = z, so the loss is -sum tanh(1 + z^2) of the actual pre-activations
    z1 = x @ weights[0].T + biases[0]
    z2 = np.maximum(z1, 0) @ weights[1].T + biases[1]
    direct = -(np.tanh(1 + z1**2).sum(1) + np.tanh(1 + z2**2).sum(1)).mean()
    with torch.no_grad():
        assert float(rs_loss(model, torch.tensor(x), 0.0)) == pytest.approx(direct, rel=1e-12)


def test_rs_training_lowers_rs_loss() -> None:
    x, y = blobs()
    plain = train_mlp(x, y, small())
    stable = train_mlp(x, y, small(rs=0.05))
    xt = torch.tensor(x)
    with torch.no_grad():
        assert float(rs_loss(stable, xt, 0.1)) < float(rs_loss(plain, xt, 0.1))


def test_seed_determines_result() -> None:
    x, y = blobs()
    a = train_mlp(x, y, small(steps=60, l1=1e-3, rs=0.01, seed=7))
    b = train_mlp(x, y, small(steps=60, l1=1e-3, rs=0.01, seed=7))
    c = train_mlp(x, y, small(steps=60, l1=1e-3, rs=0.01, seed=8))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a[0].weight, c[0].weight)


def test_threads_restored() -> None:
    before = torch.get_num_threads()
    x, y = blobs(n=20)
    train_mlp(x, y, small(steps=2))
    assert torch.get_num_threads() == before


def test_schedule_by_steps() -> None:
    opts = TrainOptions(hidden=(10,), l1=0.0)
    assert opts.steps == PAPER_STEPS == 56_250
    assert opts.milestones() == (23_437, 46_875)
    assert opts.learning_rate(0) == 0.01
    assert opts.learning_rate(23_436) == 0.01
    assert opts.learning_rate(23_437) == pytest.approx(1e-3)
    assert opts.learning_rate(56_249) == pytest.approx(1e-4)


@pytest.mark.parametrize("bad", [dict(hidden=()), dict(hidden=(0,)), dict(l1=-1.0), dict(steps=0),
                                 dict(lr=0.0), dict(momentum=1.0), dict(batch=0), dict(rs=float("nan"))])
def test_options_validated(bad: dict) -> None:
    with pytest.raises(LeoInputError):
        small(**bad)


def test_bad_training_data() -> None:
    x, y = blobs(n=10)
    with pytest.raises(LeoInputError):
        train_mlp(x, y[:-1], small(steps=1))
    with pytest.raises(LeoInputError):
        train_mlp(x, -np.ones(10, dtype=int), small(steps=1))


def test_accuracy_module_equals_network() -> None:
    x, y = blobs()
    model = train_mlp(x, y, small(steps=50))
    assert accuracy(model, x, y) == accuracy(from_module(model), x, y)


def test_command_rejects_bad_hidden(tmp_path: Path) -> None:
    result = CliRunner().invoke(train_command, ["--hidden", "100,x", "--l1", "0", "-o", str(tmp_path / "m.pt")])
    assert result.exit_code == 2 and "hidden" in result.output


def test_command_trains_and_saves(tmp_path: Path) -> None:
    from leo.data import SPLIT_DESCRIPTION, TORCHVISION_ENV, data_dir

    try:
        has_mnist = (data_dir() / "mnist").is_dir()
    except LeoInputError:
        has_mnist = False
    if not has_mnist:
        pytest.skip("shared MNIST data not available")
    out = tmp_path / "sub" / "m.pt"
    result = CliRunner(env={TORCHVISION_ENV: ""}).invoke(
        train_command, ["--hidden", "8", "--l1", "1e-4", "--steps", "30", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert SPLIT_DESCRIPTION in result.output and "test accuracy" in result.output
    network = from_module(torch.jit.load(str(out)))
    assert network.widths == (784, 8, 10)
    assert list(out.parent.iterdir()) == [out]  # no temporary left behind
