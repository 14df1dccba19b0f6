"""``leo audit`` accepts every certificate ``leo compress`` writes, and rejects tampered ones.

Independent truth: whether a tampered claim is false is decided here by the test's own dense
sampling of the network (numpy forward pass), not by the audit; which proof a claim needed is
read from the prover's certificate (``milp``) and from the audit's own count."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import leo
from leo.cli.main import main
from leo.io.load import load_network
from leo.io.save import certificate_path

torch.set_num_threads(1)


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _sequential(weights: list[np.ndarray], biases: list[np.ndarray]) -> nn.Sequential:
    mods: list[nn.Module] = []
    for w, b in zip(weights, biases):
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w))
            lin.bias.copy_(torch.tensor(b))
        mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def _save(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def _planted(seed: int = 0) -> nn.Sequential:
    """4-12-10-3 MLP on [0,1]^4: units 0-2 of layer 1 planted stably active (bias +3),
    units 3-5 stably inactive (bias -3), the rest random (mostly unstable)."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(0, 0.5, (12, 4)), rng.normal(0, 0.3, 12)
    b1[:3], b1[3:6] = 3.0, -3.0
    w2, b2 = rng.normal(0, 0.5, (10, 12)), rng.normal(0, 0.3, 10)
    b2[:2], b2[2:4] = 4.0, -4.0
    w3, b3 = rng.normal(0, 0.5, (3, 10)), rng.normal(0, 0.3, 3)
    return _sequential([w1, w2, w3], [b1, b2, b3])


def _milp_needed() -> nn.Sequential:
    """x in [-1,1]; layer 1 = (x, -x, x, -x) (unstable); layer 2 unit 0 = 0.5 + h0 + h1 - h2 - h3
    is 0.5 everywhere (h0 = h2, h1 = h3), unit 1 = -0.5 + the same. Interval and the triangle LP
    treat h0 and h2 as independent (LP: min of unit 0 is -0.5 at x = 0), so only a MILP proves them."""
    w1 = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    w2 = np.array([[1.0, 1.0, -1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    w3 = np.array([[1.0, -1.0]])
    return _sequential([w1, w2, w3], [np.zeros(4), np.array([0.5, -0.5]), np.zeros(1)])


def _foldable() -> nn.Sequential:
    """Layer 1 unit 1's row is twice unit 0's, both stably active on [0,1]^3: a fold."""
    w1 = np.array([[1.0, 2.0, -1.0], [2.0, 4.0, -2.0], [1.0, -1.0, 0.5], [-1.0, 1.0, 1.0]])
    b1 = np.array([5.0, 3.0, 0.0, -0.5])
    rng = np.random.default_rng(3)
    return _sequential([w1, rng.normal(0, 0.5, (3, 4)), rng.normal(0, 0.5, (2, 3))],
                       [b1, rng.normal(0, 0.2, 3), np.zeros(2)])


def _compress(capsys, model: Path | str, out: Path, lower: str = "0", upper: str = "1", *extra: str) -> dict:
    code, text, err = _run(capsys, "compress", model, "--lower", lower, "--upper", upper, "-o", out, "-q", *extra)
    assert code == 0, (text, err)
    return json.loads(certificate_path(out).read_text())


def _audit(capsys, cert: Path, *extra) -> tuple[int, str]:
    code, out, err = _run(capsys, "audit", cert, *extra)
    assert "Traceback" not in err
    return code, out + err


def _write(cert: dict, path: Path) -> Path:
    path.write_text(json.dumps(cert))
    return path


def _folds(cert: dict) -> list[dict]:
    """The fold steps of a certificate's step log (schema 3), as the certificate holds them."""
    return [step for step in cert["reduction"]["steps"] if step["op"] == "fold"]


def _z(model: nn.Sequential, layer: int, x: np.ndarray) -> np.ndarray:
    """Pre-activations of ReLU layer ``layer`` (1-based), by torch: the test's own truth."""
    with torch.no_grad():
        return model[: 2 * layer - 1](torch.tensor(x, dtype=torch.float32)).double().numpy()


def _stable_units(cert: dict, verdict: str) -> list[tuple[int, int]]:
    return [(entry["layer"], j) for entry in cert["layers"] for j, u in enumerate(entry["units"])
            if u["verdict"] == verdict]


# -- accepted -------------------------------------------------------------------

def test_builtin_mnist_certificate_is_valid(capsys, tmp_path):
    out = tmp_path / "m.onnx"
    cert = _compress(capsys, "builtin:mnist-2x50", out)
    code, text = _audit(capsys, certificate_path(out))
    assert code == 0, text
    claims = len(_stable_units(cert, "active")) + len(_stable_units(cert, "inactive"))
    assert claims > 0 and f"{claims} stable claims re-proved" in text


@pytest.mark.parametrize("suffix,extra", [(".pt", ()), (".onnx", ()), (".onnx", ("--float64",))])
def test_planted_stable_units_certificate_is_valid(capsys, tmp_path, suffix, extra):
    model = _save(_planted(), tmp_path / "net.pt")
    out = tmp_path / f"small{suffix}"
    cert = _compress(capsys, model, out, "0", "1", *extra)
    active, inactive = _stable_units(cert, "active"), _stable_units(cert, "inactive")
    assert {(1, 0), (1, 1), (1, 2)} <= set(active) and {(1, 3), (1, 4), (1, 5)} <= set(inactive)
    code, text = _audit(capsys, certificate_path(out))
    assert code == 0, text
    assert f"{len(active) + len(inactive)} stable claims re-proved" in text
    assert ("float64 tolerance" if extra else "float32 tolerance") in text


def test_certificate_that_needed_milps_is_valid(capsys, tmp_path):
    model = _save(_milp_needed(), tmp_path / "net.pt")
    out = tmp_path / "small.pt"
    cert = _compress(capsys, model, out, "-1", "1", "--no-branch")  # the MILP path, not branch and bound
    layer2 = cert["layers"][1]["units"]
    assert [u["verdict"] for u in layer2] == ["active", "inactive"]
    assert {u["method"] for u in layer2} == {"milp"}  # the prover needed MILPs too
    code, text = _audit(capsys, certificate_path(out))
    assert code == 0, text
    assert "milp 2" in text  # interval and LP could not: the audit's own MILPs re-proved both


def test_certificate_with_a_fold_is_valid(capsys, tmp_path):
    model = _save(_foldable(), tmp_path / "net.pt")
    out = tmp_path / "small.onnx"
    cert = _compress(capsys, model, out)
    (fold,) = _folds(cert)
    assert fold["layer"] == 1 and sorted(fold["units"] + fold["basis"]) == [0, 1]
    assert abs(abs(fold["alpha"][0][0]) - (2.0 if fold["basis"] == [0] else 0.5)) < 1e-12
    code, text = _audit(capsys, certificate_path(out))
    assert code == 0, text


def test_python_api_writes_the_model_then_a_certificate_audit_accepts(tmp_path):
    model = _save(_planted(1), tmp_path / "net.pt")
    result = leo.compress(str(model), 0.0, 1.0)
    out, cert_path = result.save(tmp_path / "api.onnx")
    assert cert_path == certificate_path(out)
    cert = json.loads(cert_path.read_text())
    from leo.io.files import sha256

    assert cert["compressed"]["sha256"] == sha256(out) and cert["original"]["sha256"] == sha256(model)
    from leo.certify.audit import audit

    assert audit(cert_path).code == 0
    with pytest.raises(leo.LeoInputError, match="exists"):
        result.save(out)


class _Mine(nn.Module):
    """A user's own module class, compressed from memory (no file behind it)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _planted(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_in_memory_module_certificate_audits_with_no_other_file(tmp_path, suffix):
    """The original is written beside the model (as leo read it, float64) and named by sha256."""
    from leo.api import original_path
    from leo.certify.audit import audit
    from leo.io.files import sha256

    module = _Mine()
    result = leo.compress(module, 0.0, 1.0)
    out, cert_path = result.save(tmp_path / f"small{suffix}")
    copy = original_path(out)
    assert copy.name == f"small.original{suffix}"
    cert = json.loads(cert_path.read_text())
    assert cert["original"]["path"] == str(copy) and cert["original"]["sha256"] == sha256(copy)
    x = np.random.default_rng(0).random((500, 4))
    with torch.no_grad():
        want = module(torch.tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(load_network(copy)(x), want, rtol=1e-5, atol=1e-5)  # the module's function
    assert audit(cert_path).code == 0
    before = {p.name: sha256(p) for p in tmp_path.iterdir()}
    with pytest.raises(leo.LeoInputError, match="exists"):  # again: refused, nothing written or changed
        result.save(out)
    assert {p.name: sha256(p) for p in tmp_path.iterdir()} == before
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1  # a changed original copy (a zip's last byte is a comment length): its hash no longer matches
    copy.write_bytes(bytes(data))
    assert audit(cert_path).code == 1


# -- rejected -------------------------------------------------------------------

@pytest.fixture
def planted(capsys, tmp_path) -> tuple[nn.Sequential, Path, dict]:
    net = _planted()
    model = _save(net, tmp_path / "net.pt")
    out = tmp_path / "small.pt"
    return net, out, _compress(capsys, model, out)


def test_unstable_flipped_to_stable_is_refuted(capsys, tmp_path, planted):
    net, out, cert = planted
    x = np.random.default_rng(5).random((20_000, 4))
    for entry in cert["layers"]:  # an unstable unit that dense sampling shows taking both signs
        z = _z(net, entry["layer"], x)
        seen = [j for j, u in enumerate(entry["units"])
                if u["verdict"] == "unstable" and z[:, j].min() < -1e-3 and z[:, j].max() > 1e-3]
        if seen:
            layer, j = entry["layer"], seen[0]
            break
    entry["units"][j] = {"verdict": "active", "method": "interval", "bound": 0.0}
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1
    assert f"layer {layer} unit {j}: claimed stably active, but z = -" in text


def test_active_flipped_to_inactive_is_refuted(capsys, tmp_path, planted):
    net, out, cert = planted
    layer, j = _stable_units(cert, "active")[0]
    x = np.random.default_rng(6).random((2000, 4))
    assert _z(net, layer, x)[:, j].min() > 0  # truly active: the flipped claim is false
    cert["layers"][layer - 1]["units"][j]["verdict"] = "inactive"
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1 and f"layer {layer} unit {j}: claimed stably inactive, but z = " in text


def test_swapped_compressed_file_is_refuted(capsys, tmp_path, planted):
    _, out, cert = planted
    other_model = _save(_planted(7), tmp_path / "other.pt")
    other = tmp_path / "other_small.pt"
    _compress(capsys, other_model, other)
    code, text = _audit(capsys, certificate_path(out), "--compressed", other)
    assert code == 1 and "sha256" in text
    from leo.io.files import sha256

    cert["compressed"]["sha256"] = sha256(other)  # a forger edits the hash too: the replay catches it
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", other)
    assert code == 1 and "replay" in text


def test_edited_weight_in_compressed_file_is_refuted(capsys, tmp_path, planted):
    """Same shapes, one weight off by 1e-4 (far above float32 rounding), hash re-recorded."""
    from leo.io.files import sha256
    from leo.core.network import Layer, Network

    _, out, cert = planted
    small = load_network(out)
    first = small.layers[0]
    w = dict(first.weights)
    w[0] = w[0].copy()
    w[0][0, 0] += 1e-4
    layers = (Layer(w, first.bias, first.relu),) + small.layers[1:]
    forged = leo.save_network(Network(small.input_dim, layers), tmp_path / "forged.pt")
    cert["compressed"]["sha256"] = sha256(forged)
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", forged)
    assert code == 1 and "replay: layer 1 weight from 0 (0, 0)" in text


def test_changed_fold_coefficient_is_refuted(capsys, tmp_path):
    model = _save(_foldable(), tmp_path / "net.pt")
    out = tmp_path / "small.pt"
    cert = _compress(capsys, model, out)
    _folds(cert)[0]["alpha"][0][0] *= 1.25
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1 and "fold coefficients do not reproduce" in text


def test_wider_domain_is_refuted(capsys, tmp_path, planted):
    net, out, cert = planted
    x = np.random.default_rng(8).uniform(-5, 5, (20_000, 4))
    broken = [(k, j) for k, j in _stable_units(cert, "active") if _z(net, k, x)[:, j].min() < 0]
    assert broken  # on the wider box some claim is false (the test's own sampling)
    cert["domain"] = {"dim": 4, "lower": -5.0, "upper": 5.0}
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1 and "claimed stably" in text


def test_claim_within_the_margin_is_not_proven(capsys, tmp_path):
    """Layer 2 unit 0 of this net is h0 + h1 - h2 - h3 = 0 everywhere: no point refutes "active",
    but no bound clears the margin either, so a forged "active" claim is not proven (exit 1)."""
    net = _milp_needed()
    with torch.no_grad():
        net[2].bias.zero_()
    model = _save(net, tmp_path / "net.pt")
    out = tmp_path / "small.pt"
    cert = _compress(capsys, model, out, "-1", "1")
    assert cert["layers"][1]["units"][0]["verdict"] == "unstable"
    assert np.abs(_z(net, 2, np.linspace(-1, 1, 1001)[:, None])[:, 0]).max() == 0.0
    cert["layers"][1]["units"][0] = {"verdict": "active", "method": "milp", "bound": 1e-6}
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1 and "not proven: layer 2 unit 0: claimed stably active" in text


def test_undecided_when_the_milp_runs_out_of_time(capsys, tmp_path, monkeypatch):
    model = _save(_milp_needed(), tmp_path / "net.pt")
    out = tmp_path / "small.pt"
    _compress(capsys, model, out, "-1", "1")
    import leo.certify.audit as audit_module

    def no_time(self, prob, c, cutoff):  # noqa: ANN001 - a MILP that stopped at its limit with a weak bound
        return -1.0, None, False

    monkeypatch.setattr(audit_module.Prover, "milp_bound", no_time)
    code, text = _audit(capsys, certificate_path(out))
    assert code == 3 and "UNDECIDED" in text


def test_bad_certificates_are_bad_input(capsys, tmp_path, planted):
    _, out, cert = planted
    (tmp_path / "junk.json").write_text("{not json")
    for bad in (tmp_path / "junk.json", _write({**cert, "schema": 1}, tmp_path / "old.json"), tmp_path / "none.json"):
        code, out_text, err = _run(capsys, "audit", bad)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_audit_finds_files_beside_the_certificate(capsys, tmp_path, planted):
    _, out, _ = planted
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(out, moved / out.name)
    shutil.copy(certificate_path(out), moved / certificate_path(out).name)
    out.unlink()
    code, text = _audit(capsys, moved / certificate_path(out).name)
    assert code == 0, text


@pytest.mark.parametrize("module", sorted(p.name for p in (Path(leo.__file__).parent / "certify").glob("audit*.py")))
def test_audit_shares_no_code_with_the_prover(module):
    """Every audit module (``leo/certify/audit*.py``): none imports the prover's packages."""
    tree = ast.parse((Path(leo.__file__).parent / "certify" / module).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    forbidden = [m for m in imported if m.startswith(("leo.stability", "leo.bounds", "leo.search", "leo.bab", "solvers",
                                                       "leo.reduction", "leo.certify.certificate", "leo.queries",
                                                       "leo.api")) or m == "leo"]
    assert not forbidden


def test_the_audit_is_split_into_its_modules():
    names = {p.name for p in (Path(leo.__file__).parent / "certify").glob("audit*.py")}
    assert {"audit.py", "audit_bounds.py", "audit_claims.py", "audit_replay.py"} <= names


def test_in_memory_conv_module_structured_to_onnx_audits(tmp_path):
    """A structured compression of an in-memory conv module saved as ONNX: the original copy keeps
    its channel layout (written as ``.pt``: float64 ONNX has no Conv), so the audit can replay
    the dead channels; it failed with "dead channels listed, but no channels" before."""
    from leo.certify.audit import audit

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(),
                                 torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with torch.no_grad():
        module[0].bias[:2] = -50.0  # two dead channels on [0, 0.1]
    result = leo.compress(module, 0.0, 0.1, form="structured", input_shape=(1, 8, 8))
    out, cert_path = result.save(tmp_path / "r.onnx")
    cert = json.loads(cert_path.read_text())
    assert Path(cert["original"]["path"]).name == "r.onnx.original.pt"
    assert audit(cert_path).code == 0
