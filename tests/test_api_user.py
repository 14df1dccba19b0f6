"""The Python API as the README shows it (issue 27, "Also seen"): its snippet runs as written,
``leo.load_network`` takes the ``builtin:`` names ``leo.verify`` takes, API refusals name
``overwrite=True`` (the command line keeps --force), and ``print(report)`` is a summary.

Truth: the shipped TorchScript file run by torch itself, and ``leo audit`` on the certificate.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import leo
from leo.cli.main import main
from leo.errors import LeoInputError
from leo.exitcodes import ExitCode
from leo.core.verdicts import Verdict

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

README = Path(__file__).resolve().parents[1] / "README.md"
BUILTIN = Path(leo.__file__).parent / "models" / "mnist-2x50.pt"


def _snippet() -> str:
    """The first Python block under the README's "## Python API" heading."""
    section = README.read_text().split("\n## Python API\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README's Python API section has no python block"
    return match.group(1)


def _torch_builtin(x: np.ndarray) -> np.ndarray:
    module = torch.jit.load(str(BUILTIN))
    with torch.no_grad():
        return module(torch.as_tensor(x, dtype=torch.float32)).double().numpy()


def test_the_readme_snippet_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leo.certify.audit import audit

    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_snippet(), "README.md", "exec"), {})  # noqa: S102 - the README's own text
    text = printed.getvalue()
    assert 0 < len(text) < 2000 and "layer 1" in text, text  # print(report): a summary, not every proof
    x = np.random.default_rng(0).random((500, 784))
    want = _torch_builtin(x)
    for name in ("small.pt", "small.onnx"):
        got = leo.load_network(tmp_path / name)(x)
        assert np.abs(got - want).max() < 1e-4, name
    assert audit(tmp_path / "small.onnx.cert.json").code is ExitCode.OK


def test_load_network_takes_builtin_names() -> None:
    net = leo.load_network("builtin:mnist-2x50")
    x = np.random.default_rng(1).random((300, 784))
    want = _torch_builtin(x)  # float32 in torch, float64 in leo
    assert np.abs(net(x) - want).max() < 1e-6 * (1 + np.abs(want).max())
    with pytest.raises(LeoInputError, match="no built-in model 'nope'; available: mnist-2x50"):
        leo.load_network("builtin:nope")


def test_api_refusals_name_overwrite_and_the_cli_keeps_force(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    net = leo.load_network("builtin:mnist-2x50")
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"the user's own file")
    with pytest.raises(LeoInputError) as info:
        leo.save_network(net, taken)
    assert "overwrite=True" in str(info.value) and "--force" not in str(info.value)
    result = leo.compress(net, 0.0, 1.0, check_points=1000)
    assert repr(result).startswith(f"<Compression: 100 -> {sum(result.network.hidden)} hidden units")
    with pytest.raises(LeoInputError) as info:
        result.save(taken)
    assert "overwrite=True" in str(info.value) and "--force" not in str(info.value)
    assert taken.read_bytes() == b"the user's own file"
    result.save(taken, overwrite=True)
    assert np.abs(leo.load_network(taken)(np.full((1, 784), 0.5)) - _torch_builtin(np.full((1, 784), 0.5))).max() < 1e-4
    code = main(["compress", "builtin:mnist-2x50", "--lower", "0", "--upper", "1", "-o", str(taken), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--force" in err and "overwrite=True" not in err


def test_print_report_is_a_summary() -> None:
    report = leo.verify("builtin:mnist-2x50", 0.0, 1.0)
    text, line = str(report), repr(report)
    assert len(text) < 1000 and len(line.splitlines()) == 1
    stable = sum(p.verdict in (Verdict.ACTIVE, Verdict.INACTIVE) for r in report.layers for p in r.proofs)
    units = sum(len(r.proofs) for r in report.layers)
    assert f"{stable} of {units} units stable" in line
    for r in report.layers:  # each layer's counts, as its proofs say
        active = sum(p.verdict == Verdict.ACTIVE for p in r.proofs)
        inactive = sum(p.verdict == Verdict.INACTIVE for p in r.proofs)
        assert f"layer {r.name} ({len(r.proofs)}): {active} active, {inactive} inactive" in text
