"""``leo compress --method M`` with no further options makes an ordinary trained MLP
smaller (fewer nonzero parameters), for each approximate method."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from leo.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 12-48-48-4 ReLU MLP trained on a synthetic 4-class task in [0, 1]^12."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((3000, 12))
    y = np.argmax(x[:, :4] + 0.3 * x[:, 4:8], axis=1)
    model = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for step in range(600):
        idx = torch.randint(0, len(xt), (64,))
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder = tmp_path_factory.mktemp("cli")
    ckpt = folder / "net.pt"
    torch.save(model.state_dict(), ckpt)
    np.savez(folder / "d.npz", x=x, y=y)
    return folder, ckpt


@pytest.mark.parametrize("method", ["linearity", "pq-index", "dependence"])
def test_defaults_shrink_a_trained_network(capsys, trained, method: str) -> None:
    folder, ckpt = trained
    out = folder / f"{method}.pt"
    code = main(["compress", str(ckpt), "--lower", "0", "--upper", "1", "-o", str(out), "--method", method,
                 "--data", str(folder / "d.npz"), "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    counts = report["summary"]["parameters_count"]
    # independent count of the nonzero parameters of the written model
    written = torch.jit.load(str(out))
    nonzero = sum(int(torch.count_nonzero(p)) for p in written.parameters())
    assert counts["nonzero_after"] == nonzero < counts["nonzero_before"]
    data = report["summary"]["data"]
    assert data["accuracy_after"] >= data["accuracy_before"] - 0.1  # smaller, and still a classifier
