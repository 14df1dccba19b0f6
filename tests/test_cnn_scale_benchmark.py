"""benchmarks/cnn_scale.py reads phases off leo verify's progress bars correctly, and it and
benchmarks/cnn.py train through one shared loop exactly as their own loops did."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.cnn_scale import _phase_seconds

torch.set_num_threads(1)

BARS = ("layer 1:   0%|    | 0/10 units decided [00:00]\r"
        "layer 1 bounds:   0%|    | 0/10 units decided [00:00]\r"
        "layer 1 witnesses:  10%|    | 1/10 units decided [00:02, interval 1]\r"
        "layer 1 local search:  90%|    | 9/10 units decided [00:05, interval 1, witness 8]\r"
        "layer 1 MILP:  90%|    | 9/10 units decided [00:07, interval 1, witness 8]\r"
        "layer 1 MILP:  90%|    | 9/10 units decided [00:30, interval 1, witness 8; eta 3 s]\r"
        "layer 1: 100%|    | 10/10 units decided [01:10, interval 1, witness 8, milp 1]\n"
        "layer 2 (64x7x7) bounds:   0%|    | 0/4 units decided [00:00]\r"
        "layer 2 (64x7x7) MILP:   0%|    | 0/4 units decided [00:03]\r"
        "layer 2 (64x7x7): 100%|    | 4/4 units decided [00:09, budget 4]\n")


def test_phase_seconds_sum_each_phase_from_its_first_bar_to_the_next_phase():
    assert _phase_seconds(BARS) == {"done": 0, "bounds": 5, "witnesses": 3, "local search": 2, "milp": 69}



# -- the one training loop of benchmarks/cnn.py and benchmarks/cnn_scale.py (benchmarks.common.train_cnn) --

def _fake_mnist(n: int) -> SimpleNamespace:
    """leo.data.MnistData's fields, random: no MNIST needed, and a few batches only."""
    rng = np.random.default_rng(0)
    return SimpleNamespace(x_train=rng.random((n, 784), dtype=np.float32), y_train=rng.integers(0, 10, n),
                           x_test=rng.random((50, 784), dtype=np.float32), y_test=rng.integers(0, 10, 50))


def _weights(model: nn.Module) -> bytes:
    return b"".join(v.numpy().tobytes() for v in model.state_dict().values())


def _old_cnn_train(data: SimpleNamespace, l1: float, steps: int, seed: int, rs: float) -> nn.Sequential:
    """benchmarks/cnn.py's loop as it was written before it was shared."""
    from benchmarks.cnn import RS_EPS, cnn, rs_loss

    torch.manual_seed(seed)
    model = cnn()
    x = torch.tensor(np.array(data.x_train), dtype=torch.float32).reshape(-1, 1, 28, 28)
    y = torch.tensor(np.array(data.y_train), dtype=torch.long)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    weights = [m.weight for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    for _ in range(steps):
        idx = torch.randint(len(x), (128,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx]) + l1 * sum(w.abs().sum() for w in weights)
        if rs:
            loss = loss + rs * rs_loss(model, x[idx], RS_EPS)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _old_scale_train(data: SimpleNamespace, quick: bool, epochs: int, l1: float, seed: int) -> nn.Sequential:
    """benchmarks/cnn_scale.py's loop as it was written before it was shared."""
    from benchmarks.cnn_scale import cnn

    torch.manual_seed(seed)
    model = cnn(quick)
    x = torch.tensor(np.array(data.x_train), dtype=torch.float32).reshape(-1, 1, 28, 28)
    y = torch.tensor(np.array(data.y_train), dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    weights = [m.weight for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx]) + l1 * sum(w.abs().sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_the_shared_loop_trains_both_scripts_networks_as_before_and_caches_them_by_their_names(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import benchmarks.cnn as cnn_bench
    import benchmarks.cnn_scale as scale_bench

    data = _fake_mnist(300)
    monkeypatch.setattr("benchmarks.common.mnist", lambda: data)
    monkeypatch.setattr(cnn_bench, "NETWORKS", tmp_path)
    monkeypatch.setattr(scale_bench, "NETWORKS", tmp_path)

    model, acc = cnn_bench.train(1e-4, 3, seed=1, rs=1e-3)
    trained = _weights(model)
    assert trained == _weights(_old_cnn_train(data, 1e-4, 3, 1, 1e-3))
    assert not model.training and 0 <= acc <= 1
    model, _, onnx = scale_bench.train(True, 2, 1e-5, seed=1)
    assert _weights(model) == _weights(_old_scale_train(data, True, 2, 1e-5, 1))
    names = {"cnn-l10.0001-rs0.001-e0.05-s3-seed1.pt", "cnn-scale-quick-l11e-05-e2-seed1.pt",
             "cnn-scale-quick-l11e-05-e2-seed1.onnx"}  # the cache names, unchanged
    assert {p.name for p in tmp_path.iterdir()} == names and onnx.name in names

    monkeypatch.setattr(torch.optim.SGD, "step", lambda *a, **k: pytest.fail("retrained a cached network"))
    again, acc_again = cnn_bench.train(1e-4, 3, seed=1, rs=1e-3)  # read back from the cache
    assert _weights(again) == trained and acc_again == acc
