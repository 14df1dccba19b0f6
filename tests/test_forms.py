"""``leo compress --form``: the LEO form (the default) and REDNet's flat form, through the CLI
that users run, checked against the original by onnxruntime and re-checked by ``leo audit``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import leo
from leo.cli.main import main
from leo.stability.analysis import StabilityOptions

ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    with torch.no_grad():  # some units stable on the box, some not
        m[0].bias += torch.linspace(-1.5, 1.5, 12)
        m[2].bias += torch.linspace(-1.0, 1.0, 10)
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(m.double()), str(path))
    return path


def _compress(capsys, model: Path, out: Path, *extra: str) -> str:
    code = main(["compress", str(model), "--lower", "0", "--upper", "1", "-o", str(out), "-q", *extra])
    got, err = capsys.readouterr()
    assert code == 0, err
    return got


@pytest.mark.parametrize("form", ["leo", "flat"])
def test_each_form_is_exact_on_the_box_and_audits(capsys, model: Path, tmp_path: Path, form: str) -> None:
    out = tmp_path / f"{form}.onnx"
    _compress(capsys, model, out, "--form", form, "--float64")
    x = np.random.default_rng(0).random((20_000, 4))
    original = leo.io.load_network(model)
    sess = ort.InferenceSession(str(out))
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(y - original(x)).max() < 1e-9
    assert main(["audit", str(out) + ".cert.json"]) == 0, capsys.readouterr()


def test_flat_says_it_bypassed_the_active_units(capsys, model: Path, tmp_path: Path) -> None:
    net = leo.io.load_network(model)
    active = sum(len(lr.active) for lr in leo.verify(net, np.zeros(4), np.ones(4), StabilityOptions()).layers)
    out = _compress(capsys, model, tmp_path / "flat.pt", "--form", "flat")
    assert active and f"{active} stably active units bypassed" in out and "kept" not in out


def test_flat_keeps_exactly_the_unstable_units(capsys, model: Path, tmp_path: Path) -> None:
    net = leo.io.load_network(model)
    report = leo.verify(net, np.zeros(4), np.ones(4), StabilityOptions())
    unstable = sum(len(lr.unstable) for lr in report.layers)
    stable = sum(len(lr.active) + len(lr.inactive) for lr in report.layers)
    assert stable and unstable  # the fixture is a real test of both kinds
    _compress(capsys, model, tmp_path / "flat.pt", "--form", "flat")
    _compress(capsys, model, tmp_path / "leo.pt", "--form", "leo")
    flat = leo.io.load_network(tmp_path / "flat.pt")
    lo = leo.io.load_network(tmp_path / "leo.pt")
    assert sum(flat.hidden) == unstable
    assert sum(flat.hidden) <= sum(lo.hidden)


def test_form_is_refused_where_it_has_no_meaning(capsys, model: Path, tmp_path: Path) -> None:
    for extra, words in ((["--form", "flat", "--method", "pq-index", "--data", "mnist"], "--method exact alone"),):
        code = main(["compress", str(model), "--lower", "0", "--upper", "1", "-o", str(tmp_path / "x.pt"), *extra])
        _, err = capsys.readouterr()
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x.pt").exists()
