"""The JSON stability report keeps every unstable claim checkable: ``witness_points`` holds
each point a proof names, once, as exact float64 bytes (base64), so ``leo verify --json`` on a
9,508-unit CNN writes 24 MiB in under a second instead of 42 MiB of decimal lists."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leo.cli.main import main
from leo.core.domain import Box
from leo.exitcodes import ExitCode
from leo.stability.report import LayerReport, StabilityReport, UnitProof
from leo.core.verdicts import Method, Verdict

from tests.conftest import seeded_module

torch.set_num_threads(1)


def _decode(points: dict) -> np.ndarray:
    """The decoder the report documents, written out here (not leo's code)."""
    return np.frombuffer(base64.b64decode(points["base64"]), dtype="<f8").reshape(points["shape"])


def _cnn() -> nn.Sequential:
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(4, 3, 3, stride=2, padding=1), nn.ReLU(),
                           nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2))
    return seeded_module(module, seed=3)


def _pre_activations(module: nn.Sequential, x: np.ndarray) -> list[np.ndarray]:
    """Each ReLU's input, flat per sample, by the torch module's own forward pass."""
    out, h = [], torch.tensor(x, dtype=torch.float64).reshape(-1, 1, 4, 4)
    with torch.no_grad():
        for layer in module.double():
            if isinstance(layer, nn.ReLU):
                out.append(h.reshape(len(h), -1).numpy().copy())
            h = layer(h)
    return out


def test_verify_json_witnesses_decode_to_points_where_the_network_shows_both_signs(tmp_path: Path) -> None:
    module = _cnn()
    model, report = tmp_path / "cnn.onnx", tmp_path / "report.json"
    with warnings.catch_warnings():  # torch's note that this exporter is the legacy one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (torch.zeros(1, 1, 4, 4),), str(model), dynamo=False)
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["verify", str(model), "--lower", "-1", "--upper", "1", "--json", str(report), "-q",
                     "--time-limit", "5"])
    assert code == ExitCode.OK
    payload = json.loads(report.read_text())
    points = _decode(payload["witness_points"])
    assert points.shape[1] == 16 and np.all(np.abs(points) <= 1)
    zs = _pre_activations(module, points)
    checked = [0] * len(zs)
    for k, layer in enumerate(payload["layers"]):
        assert layer["shape"] == [[4, 4, 4], [3, 2, 2], [6]][k]  # report layer k + 1: the module's k-th ReLU
        assert layer["units"] == zs[k].shape[1]
        for j, proof in enumerate(layer["proofs"]):
            if proof["status"] == "unstable" and "witness" in proof:
                pos, neg = proof["witness"]
                assert zs[k][pos, j] > 0 > zs[k][neg, j], (k, j)
                checked[k] += 1
    assert all(n > 0 for n in checked), checked
    used = {i for layer in payload["layers"] for p in layer["proofs"] for i in p.get("witness", ())}
    assert used == set(range(len(points)))  # every written point is some proof's, once


def test_points_are_written_once_bit_exact_and_proofs_renumbered() -> None:
    tiny = np.nextafter(0.0, 1.0)  # a subnormal: decimal text would need 17 digits to keep it
    points = np.array([[0.1, 1 / 3], [5.0, 6.0], [0.1, 1 / 3], [tiny, -0.0], [2.0, 2.0]])
    proofs = (UnitProof(Verdict.UNSTABLE, Method.WITNESS, witness=(2, 3)),   # point 2 equals point 0
              UnitProof(Verdict.UNSTABLE, Method.WITNESS, witness=(0, 4)),
              UnitProof(Verdict.ACTIVE, Method.INTERVAL, bound=0.5),
              UnitProof(Verdict.UNSTABLE, Method.TIMEOUT))                       # point 1: used by none
    lower, upper = np.zeros(2), np.ones(2)
    layer = LayerReport(1, proofs, None, 0.0)  # type: ignore[arg-type]  # bounds are not written
    report = StabilityReport(Box(lower, upper), (layer,), points)
    payload = json.loads(json.dumps(report.to_json()))
    written = _decode(payload["witness_points"])
    assert written.shape == (3, 2)  # points 0 (= 2), 3 and 4
    assert written.tobytes() == points[[0, 3, 4]].tobytes()  # bit for bit, -0.0 and the subnormal too
    for proof, out in zip(proofs, payload["layers"][0]["proofs"]):
        if proof.witness is None:
            assert "witness" not in out
        else:
            assert written[out["witness"]].tobytes() == points[list(proof.witness)].tobytes()


def test_a_report_without_witnesses_writes_an_empty_array() -> None:
    proofs = (UnitProof(Verdict.INACTIVE, Method.INTERVAL, bound=-1.0),)
    report = StabilityReport(Box(np.zeros(3), np.ones(3)), (LayerReport(1, proofs, None, 0.0),),  # type: ignore[arg-type]
                             np.zeros((0, 3)))
    written = _decode(json.loads(json.dumps(report.to_json()))["witness_points"])
    assert written.shape == (0, 3)
    assert "witness_points" not in report.to_json(witnesses=False)
