"""The command line contract: outputs, exit codes, and bad input (exit 2, one line,
no partial output, the input untouched)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from leo.cli.main import main
from leo.io.load import load_network
from leo.io.save import certificate_path
from leo.core.verdicts import Method


def _model(seed: int = 0, sizes=(4, 12, 10, 3), shift: float = -0.3) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.bias += shift if i < len(sizes) - 2 else 0.0
        mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods[:-1])


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "net.pt"
    torch.save(_model().state_dict(), path)
    return path


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_prints_table_and_writes_json(capsys, ckpt, tmp_path):
    code, out, _ = run(capsys, "verify", ckpt, "--lower", "0", "--upper", "1", "--json", tmp_path / "r.json", "-q")
    assert code == 0 and "stably active" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["layers"]) == 2
    for layer, width in zip(report["layers"], (12, 10)):
        units = sorted(layer["active"] + layer["inactive"] + layer["unstable"])
        assert units == list(range(width))


def test_compress_writes_torchscript_and_certificate(capsys, ckpt, tmp_path):
    out_path = tmp_path / "small.pt"
    before = _digest(ckpt)
    code, out, _ = run(capsys, "compress", ckpt, "--lower", "0", "--upper", "1", "-o", out_path, "-q")
    assert code == 0, out
    assert _digest(ckpt) == before
    scripted = torch.jit.load(str(out_path))  # no leo needed to load it
    x = torch.rand(2000, 4)
    original = _model()
    torch.testing.assert_close(scripted(x), original(x), atol=1e-5, rtol=1e-5)
    cert = json.loads(certificate_path(out_path).read_text())
    assert cert["lossless"] is True
    assert sum(cert["original"]["hidden"]) == 22
    assert sum(cert["compressed"]["hidden"]) == sum(load_network(out_path).hidden)
    assert cert["tolerances"]["solver_margin"] > 0
    assert cert["original"]["sha256"] == before
    removed = sum(len(u) for u in cert["reduction"]["removed_inactive"])
    inactive = sum(unit["verdict"] == "inactive" for layer in cert["layers"] for unit in layer["units"])
    assert removed == inactive
    for layer in cert["layers"]:
        for unit in layer["units"]:
            assert unit["method"] in {m.value for m in Method}
            if unit["verdict"] != "unstable":
                assert "bound" in unit


def test_compress_to_onnx_runs_in_onnxruntime(capsys, ckpt, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out_path = tmp_path / "small.onnx"
    code, _, _ = run(capsys, "compress", ckpt, "--lower", "0", "--upper", "1", "-o", out_path, "-q")
    assert code == 0
    sess = ort.InferenceSession(str(out_path))
    x = np.random.default_rng(0).random((500, 4)).astype(np.float32)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(y, _model()(torch.tensor(x)).detach().numpy(), atol=1e-5)


def test_check_equivalent_and_counterexample(capsys, ckpt, tmp_path):
    small = tmp_path / "small.pt"
    assert run(capsys, "compress", ckpt, "--lower", "0", "--upper", "1", "-o", small, "-q")[0] == 0
    code, out, _ = run(capsys, "check", ckpt, small, "--lower", "0", "--upper", "1", "--points", "5000", "--exact")
    assert code == 0 and "equivalent" in out and "proven by MILP" in out
    other = tmp_path / "other.pt"
    torch.save(_model(seed=1).state_dict(), other)
    code, out, _ = run(capsys, "check", ckpt, other, "--lower", "0", "--upper", "1", "--points", "1000",
                       "--counterexample", tmp_path / "cx.npy")
    assert code == 1 and "NOT equivalent" in out
    x = np.load(tmp_path / "cx.npy")
    f, g = load_network(ckpt), load_network(other)
    assert np.abs(f(x[None]) - g(x[None])).max() > 1e-4


def test_export_lp_and_mps_read_back(capsys, ckpt, tmp_path):
    import highspy

    for suffix in (".lp", ".mps"):
        path = tmp_path / f"unit{suffix}"
        code, out, _ = run(capsys, "export", ckpt, "--lower", "0", "--upper", "1", "--layer", "2", "--unit", "3",
                           "-o", path)
        assert code == 0 and path.is_file()
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        assert h.readModel(str(path)) == highspy.HighsStatus.kOk
        assert h.getNumCol() > 4


def test_builtin_model_and_console_script(tmp_path):
    out = tmp_path / "c.pt"
    proc = subprocess.run([sys.executable, "-m", "leo.cli.main", "compress", "builtin:mnist-2x50", "--lower", "0",
                           "--upper", "1", "-o", str(out), "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "hidden units 100 ->" in proc.stdout
    assert out.is_file()


@pytest.mark.parametrize("command", ["verify", "compress", "check", "export", "property", "train", "audit"])
def test_help_on_every_command(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "Usage" in out


# -- bad input ------------------------------------------------------------------

def _bad(capsys, tmp_path, *args) -> str:
    before = {p: _digest(p) for p in tmp_path.iterdir() if p.is_file()}
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("leo: error:"), err
    assert "Traceback" not in err
    after = {p: _digest(p) for p in tmp_path.iterdir() if p.is_file()}
    assert after == before, "an input changed or an output was left behind"
    return lines[0]


def test_time_budget_is_recorded_and_unproven_units_are_counted(capsys, ckpt, tmp_path):
    code, out, _ = run(capsys, "verify", ckpt, "--lower", "0", "--upper", "1", "--samples", "0",
                       "--time-budget", "1e-4", "--json", tmp_path / "r.json", "-q")
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["settings"]["time_budget"] == 1e-4
    unproven = sum(1 for layer in report["layers"] for p in layer["proofs"]
                   if p["status"] == "unstable" and "witness" not in p)
    budget = sum(layer["methods"].get("budget", 0) for layer in report["layers"])
    assert unproven >= budget > 0  # the budget is spent before any solve, so some unit is left open
    assert f"({unproven} unit{'s' if unproven != 1 else ''} not proven either way, kept)" in out


def test_bad_time_budget(capsys, ckpt, tmp_path):
    assert "--time-budget" in _bad(capsys, tmp_path, "verify", ckpt, "--lower", "0", "--upper", "1",
                                   "--time-budget", "0")


def test_missing_file(capsys, tmp_path):
    assert "no such model file" in _bad(capsys, tmp_path, "verify", tmp_path / "nope.pt", "--lower", "0", "--upper", "1")


def test_corrupt_file(capsys, tmp_path):
    p = tmp_path / "corrupt.pt"
    p.write_bytes(b"not a checkpoint at all")
    _bad(capsys, tmp_path, "compress", p, "--lower", "0", "--upper", "1", "-o", tmp_path / "out.pt")


def test_unsupported_layer(capsys, tmp_path):
    p = tmp_path / "conv.pt"
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).state_dict(), p)
    assert "Linear" in _bad(capsys, tmp_path, "verify", p, "--lower", "0", "--upper", "1")
    ts = tmp_path / "conv_ts.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())), str(ts))
    assert "Sigmoid" in _bad(capsys, tmp_path, "verify", ts, "--lower", "0", "--upper", "1")


def test_nan_weights(capsys, tmp_path):
    m = _model()
    with torch.no_grad():
        m[0].weight[0, 0] = float("nan")
    p = tmp_path / "nan.pt"
    torch.save(m.state_dict(), p)
    assert "NaN" in _bad(capsys, tmp_path, "compress", p, "--lower", "0", "--upper", "1", "-o", tmp_path / "o.pt")


def test_lower_above_upper(capsys, ckpt):
    assert "lower > upper" in _bad(capsys, ckpt.parent, "verify", ckpt, "--lower", "1", "--upper", "0")


def test_wrong_domain_dimension(capsys, ckpt):
    np.save(ckpt.parent / "lo.npy", np.zeros(7))
    assert "7 entries" in _bad(capsys, ckpt.parent, "compress", ckpt, "--lower", ckpt.parent / "lo.npy",
                               "--upper", "1", "-o", ckpt.parent / "o.pt")


def test_missing_domain_and_bad_suffix(capsys, ckpt):
    assert "domain" in _bad(capsys, ckpt.parent, "verify", ckpt)
    assert ".pt" in _bad(capsys, ckpt.parent, "compress", ckpt, "--lower", "0", "--upper", "1", "-o",
                         ckpt.parent / "o.txt")


def test_output_never_overwrites_input(capsys, ckpt):
    assert "overwrite" in _bad(capsys, ckpt.parent, "compress", ckpt, "--lower", "0", "--upper", "1", "-o", ckpt)


def test_unknown_option_is_one_line(capsys, ckpt):
    _bad(capsys, ckpt.parent, "verify", ckpt, "--lower", "0", "--upper", "1", "--no-such-option")


def test_pickled_module_needs_opt_in(capsys, tmp_path):
    p = tmp_path / "whole.pt"
    torch.save(_model(), p)
    assert "--allow-pickle" in _bad(capsys, tmp_path, "verify", p, "--lower", "0", "--upper", "1")
    code, out, _ = run(capsys, "verify", p, "--lower", "0", "--upper", "1", "--allow-pickle", "-q")
    assert code == 0


def test_property_command_sat_and_unsat(capsys, ckpt, tmp_path):
    """Y_0 >= c is sat for c below the sampled maximum and unsat above the proven bound."""
    from leo.bounds.propagate import cheap_bounds
    from leo.core.domain import make_box

    net = load_network(ckpt)
    box = make_box(0, 1, 4)
    seen = net(box.sample(20_000, np.random.default_rng(0)))[:, 0].max()
    proven = cheap_bounds(net, box)[-1].upper[0]
    header = "".join(f"(declare-const X_{i} Real)\n" for i in range(4))
    header += "".join(f"(declare-const Y_{i} Real)\n" for i in range(3))
    header += "".join(f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))\n" for i in range(4))
    sat_file, unsat_file = tmp_path / "sat.vnnlib", tmp_path / "unsat.vnnlib"
    sat_file.write_text(header + f"(assert (>= Y_0 {seen - 0.05}))\n")
    unsat_file.write_text(header + f"(assert (>= Y_0 {proven + 0.05}))\n")
    code, out, _ = run(capsys, "property", ckpt, sat_file)
    assert code == 1 and out.startswith("sat") and "counterexample" in out  # 1: violated, with a witness
    for extra in ([], ["--compress-first"]):
        code, out, _ = run(capsys, "property", ckpt, unsat_file, *extra)
        assert code == 0 and "unsat" in out


def test_approximate_method_writes_report_not_certificate(capsys, ckpt, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((400, 4))
    y = _model()(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "approx.pt"
    code, text, _ = run(capsys, "compress", ckpt, "--lower", "0", "--upper", "1", "-o", out, "--method",
                        "exact,linearity", "--data", tmp_path / "d.npz", "-q")
    assert code == 0 and "NOT lossless" in text
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["lossless"] is False
    assert not certificate_path(out).exists()
    assert [s["method"] for s in report["steps"]] == ["exact", "linearity"]
    _bad(capsys, tmp_path, "compress", ckpt, "--lower", "0", "--upper", "1", "-o", tmp_path / "x.pt",
         "--method", "pq-index")
    _bad(capsys, tmp_path, "compress", ckpt, "--lower", "0", "--upper", "1", "-o", tmp_path / "x.pt",
         "--method", "magic")
