"""Shared fixtures of the approximate-method tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 12-48-48-4 ReLU MLP trained on a synthetic 4-class task in [0, 1]^12: the folder
    (with ``d.npz``: x, y) and the state_dict checkpoint."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((3000, 12))
    y = np.argmax(x[:, :4] + 0.3 * x[:, 4:8], axis=1)
    model = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(600):
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
