"""``leo compress --method M`` with no further options makes an ordinary trained MLP
smaller (fewer nonzero parameters), for each approximate method (the ``trained``
fixture is in conftest.py)."""

from __future__ import annotations

import json

import pytest
import torch

from leo.cli.main import main


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
