"""``leo check``: exit 0 only when equivalent (with --exact: proven), 1 only with a
counterexample the forward passes confirm, 3 when the exact check cannot decide."""

from __future__ import annotations

import re

import numpy as np
import pytest

from leo.api import resolve_path
from leo.cli.main import main
from leo.exitcodes import ExitCode
from leo.io.load import load_network
from tests.test_equivalence import BUILTIN, perturbed_builtin, scaled_unit

BOX = ("--lower", "0", "--upper", "1")


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _proven_bound(out: str) -> float:
    match = re.search(r"proven max \|f-g\| <= (\S+)", out)
    assert match, out
    return float(match.group(1))


@pytest.fixture(scope="module")
def builtin():
    from leo.api import as_network

    return as_network(BUILTIN)


@pytest.fixture(scope="module")
def compressed(builtin, tmp_path_factory):
    """The built-in model compressed and written as .pt and as .onnx."""
    import leo
    from leo.io.save import save_network

    small = leo.compress(builtin, 0.0, 1.0).network
    folder = tmp_path_factory.mktemp("compressed")
    return [save_network(small, folder / name) for name in ("small.pt", "small.onnx")]


@pytest.mark.slow
def test_builtin_model_is_proven_equivalent_to_itself(capsys):
    code, out, err = run(capsys, "check", BUILTIN, BUILTIN, *BOX, "--points", "1000", "--exact")
    assert code == ExitCode.OK, out + err
    assert _proven_bound(out) <= 1e-4 and "proven by MILP" in out
    assert "exact:" in err and "maximising" in err  # progress on stderr


@pytest.mark.slow
def test_builtin_model_is_proven_equivalent_to_its_compressed_files(capsys, compressed):
    for path in compressed:
        code, out, err = run(capsys, "check", BUILTIN, path, *BOX, "--points", "1000", "--exact", "-q")
        assert code == ExitCode.OK, (path, out, err)
        assert _proven_bound(out) <= 1e-4
        assert "exact:" not in err  # --quiet: no progress


def test_sampled_only_says_it_is_not_a_proof(capsys, compressed):
    code, out, _ = run(capsys, "check", BUILTIN, compressed[1], *BOX, "--points", "1000")
    assert code == ExitCode.OK and "not a proof" in out and "proven" not in out


@pytest.mark.slow
def test_perturbed_copy_gets_a_confirmed_counterexample(capsys, builtin, tmp_path):
    from leo.io.save import save_network

    bad = save_network(perturbed_builtin(builtin), tmp_path / "bad.pt", float64=True)
    cx = tmp_path / "cx.npy"
    # two sampled points miss the difference: the counterexample comes from the MILP
    code, out, _ = run(capsys, "check", BUILTIN, bad, *BOX, "--points", "1", "--exact", "-q",
                       "--counterexample", cx)
    assert code == ExitCode.REFUTED and "NOT equivalent" in out
    assert "f(x) =" in out and "g(x) =" in out
    assert not re.search(r"-0\.(?!\d)", out)  # no negative zeros printed
    x = np.load(cx)
    assert x.shape == (784,) and x.min() >= 0.0 and x.max() <= 1.0
    f, g = load_network(resolve_path(BUILTIN)), load_network(bad)
    assert np.abs(f(x[None]) - g(x[None])).max() > 1e-4  # recomputed here, by forward passes


@pytest.mark.slow
def test_a_proof_cut_short_exits_undecided(capsys, builtin, tmp_path):
    from leo.io.save import save_network

    same = save_network(scaled_unit(builtin, 0, 5, 2.0), tmp_path / "scaled.pt", float64=True)
    code, out, err = run(capsys, "check", BUILTIN, same, *BOX, "--points", "1000", "--exact", "-q",
                         "--time-limit", "0.05")
    assert code == ExitCode.UNDECIDED, out + err
    lines = [line for line in out.splitlines() if line.startswith("undecided")]
    assert len(lines) == 1 and "time limit" in lines[0]
    assert "proven" not in out


def test_counterexample_never_overwrites_an_input(capsys, tmp_path):
    lower = tmp_path / "lower.npy"
    np.save(lower, np.zeros(784))
    before = lower.read_bytes()
    code, _, err = run(capsys, "check", BUILTIN, BUILTIN, "--lower", lower, "--upper", "1",
                       "--points", "10", "--counterexample", lower)
    assert code == ExitCode.BAD_INPUT and "overwrite" in err and len(err.strip().splitlines()) == 1
    assert lower.read_bytes() == before
