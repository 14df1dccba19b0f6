"""The stability report knows each layer's shape and, for conv layers, its channels
(issue 15): ``leo verify`` prints a shape column and one folded line per conv layer
naming its dead and all-active channels; ``--json`` holds every channel's counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from leo.cli.main import main
from leo.exitcodes import ExitCode
from leo.stability.report import LayerReport, UnitProof, _runs
from leo.core.verdicts import Method, Verdict

torch.set_num_threads(1)
DEAD, ALIVE = 1, 2  # planted: channel 1 is zero on [0, 1]^16, channel 2 is positive there


def _module() -> nn.Module:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(4, 2, 3, stride=2, padding=1), nn.ReLU(),
                           nn.Flatten(), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        module[0].weight[DEAD] = -module[0].weight[DEAD].abs() - 0.01
        module[0].bias[DEAD] = -0.1
        module[0].weight[ALIVE] = module[0].weight[ALIVE].abs() + 0.01
        module[0].bias[ALIVE] = 0.1
    return module


@pytest.fixture(scope="module")
def verified(tmp_path_factory) -> tuple[dict, str, Path]:
    """``leo verify`` of the CNN (as ONNX with Conv nodes) on [0, 1]^16: its JSON, its text, the model."""
    folder: Path = tmp_path_factory.mktemp("shapes")
    model, report = folder / "cnn.onnx", folder / "report.json"
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings():  # torch's note that this exporter is the legacy one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_module(), (torch.zeros(1, 1, 4, 4),), str(model), dynamo=False, input_names=["x"],
                          output_names=["y"])

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["verify", str(model), "--lower", "0", "--upper", "1", "--json", str(report), "-q",
                     "--time-limit", "5"])
    assert code == ExitCode.OK
    return json.loads(report.read_text()), out.getvalue(), model


def test_json_has_each_layers_shape_and_channel_counts_equal_to_the_verdicts(verified):
    payload, _, _ = verified
    layers = payload["layers"]
    assert [ly["shape"] for ly in layers] == [[4, 4, 4], [2, 2, 2]]
    for ly in layers:
        statuses = [p["status"] for p in ly["proofs"]]
        per = ly["units"] // ly["shape"][0]
        assert len(ly["channels"]) == ly["shape"][0]
        for c, counts in enumerate(ly["channels"]):
            mine = ly["proofs"][c * per:(c + 1) * per]  # flat (C, H, W) order: a channel's units are contiguous
            assert counts["units"] == per == len(mine)
            for verdict in ("active", "inactive", "unstable"):
                assert counts[verdict] == sum(p["status"] == verdict for p in mine)
            assert counts["open"] == sum(p["status"] == "unstable" and "witness" not in p for p in mine)
        assert sum(c["inactive"] for c in ly["channels"]) == statuses.count("inactive") == len(ly["inactive"])


def test_planted_channels_are_found_and_true_on_samples(verified):
    payload, _, _ = verified
    first = payload["layers"][0]["channels"]
    assert first[DEAD]["inactive"] == first[DEAD]["units"] == 16
    assert first[ALIVE]["active"] == 16
    with torch.no_grad():  # independent truth: the module's own forward pass on the box
        z = _module()[0](torch.rand(5000, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    assert (z[:, DEAD] <= 0).all() and (z[:, ALIVE] > 0).all()


def test_text_names_the_shapes_and_folds_the_channels(verified):
    _, text, _ = verified
    assert "4x4x4" in text and "2x2x2" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("layer 1 (4x4x4)"))
    assert f"dead channels: {DEAD};" in line and f"all-active channels: {ALIVE};" in line


def test_compress_prints_the_channels_too(verified, tmp_path, capsys):
    _, _, model = verified
    code = main(["compress", str(model), "--lower", "0", "--upper", "1", "--form", "flat", "--time-limit", "5",
                 "-q", "-o", str(tmp_path / "small.onnx")])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert f"layer 1 (4x4x4), 4 channels: dead channels: {DEAD}; all-active channels: {ALIVE};" in out


def test_channel_counts_separate_open_units_from_witnessed_ones():
    proofs = ([UnitProof(Verdict.INACTIVE, Method.INTERVAL, bound=-1.0)] * 2
              + [UnitProof(Verdict.UNSTABLE, Method.WITNESS, witness=(0, 1)), UnitProof(Verdict.UNSTABLE, Method.TIMEOUT)])
    layer = LayerReport(1, tuple(proofs), None, 0.0, shape=(2, 1, 2))  # type: ignore[arg-type]
    assert layer.channels() == [
        {"channel": 0, "units": 2, "active": 0, "inactive": 2, "unstable": 0, "open": 0},
        {"channel": 1, "units": 2, "active": 0, "inactive": 0, "unstable": 2, "open": 1}]
    assert layer.shape_text == "2x1x2"
    assert "dead channels: 0; all-active channels: none; 1 mixed" in (layer.channel_line() or "")
    assert LayerReport(2, tuple(proofs), None, 0.0).channels() is None  # type: ignore[arg-type]


def test_runs_fold_consecutive_channels():
    assert _runs([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert _runs([]) == "none"
    assert _runs([3]) == "3"
