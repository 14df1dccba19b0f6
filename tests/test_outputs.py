"""Nothing a user owns is lost: no output replaces an input or another output, each output
has its own certificate, the Python API keeps the same guard, and stdout carries results only."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import leo
from leo.cli.main import main
from leo.errors import LeoInputError
from leo.io.save import certificate_path

REPO = Path(__file__).resolve().parent.parent


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(m), str(path))
    return path


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, folder: Path, *args) -> str:
    before = {p: _digest(p) for p in folder.iterdir() if p.is_file()}
    code, out, err = _run(capsys, *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    after = {p: _digest(p) for p in folder.iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing changed
    return err


def test_certificate_may_not_be_the_model_output(capsys, model, tmp_path):
    out = tmp_path / "out.pt"
    err = _refused(capsys, tmp_path, "compress", model, "--lower", "0", "--upper", "1", "-o", out,
                   "--certificate", out, "-q")
    assert "same file" in err


def test_certificate_may_not_be_the_input(capsys, model, tmp_path):
    err = _refused(capsys, tmp_path, "compress", model, "--lower", "0", "--upper", "1", "-o", tmp_path / "o.onnx",
                   "--certificate", model, "-q")
    assert "input" in err


def test_bounds_file_is_an_input_too(capsys, model, tmp_path):
    import numpy as np

    np.save(tmp_path / "lo.npy", np.zeros(4))
    err = _refused(capsys, tmp_path, "compress", model, "--lower", tmp_path / "lo.npy", "--upper", "1",
                   "-o", tmp_path / "o.pt", "--certificate", tmp_path / "lo.npy", "-q")
    assert "input" in err


def test_each_output_keeps_its_own_certificate(capsys, model, tmp_path):
    for name in ("m.pt", "m.onnx"):
        code, out, err = _run(capsys, "compress", model, "--lower", "0", "--upper", "1", "-o", tmp_path / name, "-q")
        assert code == 0, err
    first = json.loads(certificate_path(tmp_path / "m.pt").read_text())
    second = json.loads(certificate_path(tmp_path / "m.onnx").read_text())
    assert first["compressed"]["path"].endswith("m.pt") and second["compressed"]["path"].endswith("m.onnx")
    # the certificate names the file it certifies by its hash (written after the model)
    assert first["compressed"]["sha256"] == _digest(tmp_path / "m.pt")
    assert second["compressed"]["sha256"] == _digest(tmp_path / "m.onnx")


def test_existing_output_needs_force(capsys, model, tmp_path):
    out = tmp_path / "m.onnx"
    assert _run(capsys, "compress", model, "--lower", "0", "--upper", "1", "-o", out, "-q")[0] == 0
    err = _refused(capsys, tmp_path, "compress", model, "--lower", "-1", "--upper", "1", "-o", out, "-q")
    assert "--force" in err
    code, _, err = _run(capsys, "compress", model, "--lower", "-1", "--upper", "1", "-o", out, "-q", "--force")
    assert code == 0, err
    cert = json.loads(certificate_path(out).read_text())
    lower = cert["domain"]["lower"]
    assert (lower if isinstance(lower, float) else lower[0]) == -1.0


def test_force_never_replaces_the_input(capsys, model, tmp_path):
    err = _refused(capsys, tmp_path, "compress", model, "--lower", "0", "--upper", "1", "-o", model, "-q", "--force")
    assert "input" in err


def test_verify_json_refuses_to_replace_the_model(capsys, model, tmp_path):
    _refused(capsys, tmp_path, "verify", model, "--lower", "0", "--upper", "1", "--json", model, "-q", "--force")


def test_export_guard(capsys, model, tmp_path):
    out = tmp_path / "u.lp"
    assert _run(capsys, "export", model, "--lower", "0", "--upper", "1", "--layer", "1", "--unit", "0", "-o", out)[0] == 0
    _refused(capsys, tmp_path, "export", model, "--lower", "0", "--upper", "1", "--layer", "1", "--unit", "1", "-o", out)


def test_python_api_never_overwrites_the_model_it_read(model, tmp_path):
    net = leo.load_network(model)
    before = _digest(model)
    with pytest.raises(LeoInputError, match="input"):
        leo.save_network(net, model, overwrite=True)
    assert _digest(model) == before


def test_python_api_refuses_an_existing_file_unless_asked(model, tmp_path):
    net = leo.load_network(model)
    out = tmp_path / "copy.onnx"
    leo.save_network(net, out)
    first = _digest(out)
    with pytest.raises(LeoInputError, match="exists"):
        leo.save_network(net, out)
    assert _digest(out) == first
    leo.save_network(net, out, overwrite=True)


def test_stdout_of_json_dash_is_json_only():
    """Run as a user would: a new process (HiGHS prints its banner at a process's first
    instance), on the README's model (decided without a MILP, so only the report's solver
    version query makes an instance)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "leo.cli.main", "verify", "builtin:mnist-2x50", "--lower", "0", "--upper", "1",
                           "-q", "--json", "-"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [layer["layer"] for layer in report["layers"]] == [1, 2]
    assert "stably active" in proc.stderr  # the table still reaches the user, on stderr


def test_check_counterexample_never_replaces_an_existing_file(capsys, model, tmp_path):
    (tmp_path / "cx.npy").write_bytes(b"the user's own file")
    err = _refused(capsys, tmp_path, "check", model, model, "--lower", "0", "--upper", "1", "--points", "10",
                   "--counterexample", tmp_path / "cx.npy")
    assert "--force" in err


def test_compression_save_never_puts_the_certificate_over_the_model_it_read(model, tmp_path):
    net = leo.load_network(model)  # a Network: the certificate learns its file from the metadata only
    before = _digest(model)
    result = leo.compress(net, 0.0, 1.0)
    with pytest.raises(LeoInputError, match="input"):
        result.save(tmp_path / "small.onnx", certificate=model, overwrite=True)
    assert _digest(model) == before and not (tmp_path / "small.onnx").exists()
