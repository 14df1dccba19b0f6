"""``leo property`` as a script sees it: the exit code (0 holds, 1 violated, 3 undecided,
2 bad input), the first word on stdout, the VNN-COMP results file, and a witness that a
forward pass of the model file read independently (onnxruntime) confirms.

Expected answers come from exact output ranges (one LP per activation pattern,
tests.conftest) and, on real instances, from the VNN-COMP 2021 results."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from leo.cli.main import main
from leo.core.domain import Box, make_box
from leo.io.onnx_export import save_onnx
from leo.core.network import Network
from tests.conftest import exact_ranges, random_mlp, vnncomp_answer, vnncomp_dir

GAP = 0.05  # thresholds sit this far inside / outside the exact range
BOX = (-1.0, 1.0)


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _onnx(net: Network, path: Path) -> Path:
    save_onnx(net, path, dtype=np.float64)
    return path


def _vnnlib(path: Path, inputs: int, outputs: int, unsafe: str) -> Path:
    """The box BOX on every input; ``unsafe`` asserted on the outputs."""
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(inputs))
    text += "".join(f"(declare-const Y_{j} Real)\n" for j in range(outputs))
    text += "".join(f"(assert (>= X_{i} {BOX[0]}))\n(assert (<= X_{i} {BOX[1]}))\n" for i in range(inputs))
    path.write_text(text + f"(assert {unsafe})\n")
    return path


def _ort(model: Path, x: np.ndarray) -> np.ndarray:
    """The model file's output at ``x``, by onnxruntime (independent of leo's forward pass)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    dtype = np.float64 if inp.type == "tensor(double)" else np.float32
    return np.asarray(sess.run(None, {inp.name: x.astype(dtype).reshape(shape)})[0], dtype=np.float64).ravel()


def _parse_results(path: Path) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """A VNN-COMP results file: the answer, and for sat the X and Y values of the witness."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if lines[0] != "sat":
        assert len(lines) == 1, lines
        return lines[0], None, None
    assert lines[1] == "(" and lines[-1] == ")", lines
    xs: dict[int, float] = {}
    ys: dict[int, float] = {}
    for line in lines[2:-1]:
        assert line.startswith("(") and line.endswith(")"), line
        name, value = line[1:-1].split()
        (xs if name[0] == "X" else ys)[int(name[2:])] = float(value)
    assert sorted(xs) == list(range(len(xs))) and sorted(ys) == list(range(len(ys)))
    return "sat", np.array([xs[i] for i in range(len(xs))]), np.array([ys[j] for j in range(len(ys))])


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 3-8-2 network as float64 ONNX, and the exact range of its output Y_0 over the box."""
    tmp = tmp_path_factory.mktemp("prop")
    net = random_mlp(np.random.default_rng(3), [3, 8, 2])
    box = make_box(*BOX, 3)
    lo, hi = exact_ranges(net, box.lower, box.upper, 1)
    model = _onnx(net, tmp / "net.onnx")
    holds = _vnnlib(tmp / "holds.vnnlib", 3, 2, f"(>= Y_0 {float(hi[0] + GAP)!r})")
    violated = _vnnlib(tmp / "violated.vnnlib", 3, 2, f"(>= Y_0 {float(hi[0] - GAP)!r})")
    return {"net": net, "box": box, "hi": float(hi[0]), "model": model, "holds": holds, "violated": violated}


def test_holds_exits_0_and_says_so(capsys, case, tmp_path):
    results = tmp_path / "r.txt"
    code, out, _ = run(capsys, "property", case["model"], case["holds"], "--results", results, "-q")
    assert code == 0
    assert out.startswith("unsat: the property holds (proven)")
    assert _parse_results(results)[0] == "unsat"


def test_violated_exits_1_with_a_witness_onnxruntime_confirms(capsys, case, tmp_path):
    results, npy = tmp_path / "r.txt", tmp_path / "x.npy"
    code, out, _ = run(capsys, "property", case["model"], case["violated"], "--results", results,
                       "--counterexample", npy, "-q")
    assert code == 1
    assert out.startswith("sat: the property is VIOLATED")
    assert not re.search(r"-0\.0*(?![0-9])", out)  # no negative zero such as "-0." or "-0.0"
    answer, x, y = _parse_results(results)
    assert answer == "sat" and x is not None and y is not None and (x.size, y.size) == (3, 2)
    box: Box = case["box"]
    assert box.contains(x, tol=0.0)[0]
    y_ort = _ort(case["model"], x)
    assert y_ort[0] >= case["hi"] - GAP  # the unsafe set, by onnxruntime
    np.testing.assert_allclose(y, y_ort, rtol=0, atol=1e-9)  # the Y lines are the network's output at X
    np.testing.assert_array_equal(np.load(npy), x)


def _no_branch_and_bound(monkeypatch) -> None:
    """The input-splitting search decides these small cases first; switch it off so that the
    MILP path (compression, solver status) is what the test sees."""
    from leo.bab.input_split import Result, Status

    off = Result(Status.UNKNOWN, 0.0, reason="off in this test")
    monkeypatch.setattr("leo.bab.input_split.search", lambda *a, **k: off)
    monkeypatch.setattr("leo.bab.input_split.Searcher.run", lambda *a, **k: off)  # the second try after the MILPs


def test_compress_first_still_confirms_on_the_original(capsys, tmp_path, monkeypatch):
    """Many stable units: compression removes them; the answers and the witness are the original's."""
    _no_branch_and_bound(monkeypatch)
    net = random_mlp(np.random.default_rng(0), [3, 8, 1], bias_shift=1.0)  # 3 of 8 units stable
    box = make_box(*BOX, 3)
    _, hi = exact_ranges(net, box.lower, box.upper, 1)
    model = _onnx(net, tmp_path / "net.onnx")
    holds = _vnnlib(tmp_path / "holds.vnnlib", 3, 1, f"(>= Y_0 {float(hi[0] + GAP)!r})")
    code, out, _ = run(capsys, "property", model, holds, "--compress-first", "-q")
    assert code == 0 and "unsat: the property holds (proven)" in out
    before, after = (int(n) for n in out.split("hidden units ")[1].split()[0:3:2])
    assert before == 8 and after < before
    violated = _vnnlib(tmp_path / "violated.vnnlib", 3, 1, f"(>= Y_0 {float(hi[0] - GAP)!r})")
    results = tmp_path / "r.txt"
    code, out, _ = run(capsys, "property", model, violated, "--compress-first", "--results", results, "-q")
    assert code == 1 and out.startswith("sat")
    _, x, _ = _parse_results(results)
    assert box.contains(x, tol=0.0)[0] and _ort(model, x)[0] >= hi[0] - GAP


def test_time_limit_ran_out_exits_3_timeout(capsys, case, tmp_path):
    """The holding property needs the MILP; with a 1 ms limit it is never started."""
    results = tmp_path / "r.txt"
    code, out, _ = run(capsys, "property", case["model"], case["holds"], "--time-limit", "0.001",
                       "--results", results, "-q")
    assert code == 3
    assert out.startswith("timeout: not decided") and "time limit" in out
    assert results.read_text() == "timeout\n"


def test_solver_without_proof_exits_3_unknown(capsys, case, tmp_path, monkeypatch):
    import leo.queries.property as prop_module

    monkeypatch.setattr(prop_module, "_solve", lambda f, t: ("solver status Unknown", None))
    _no_branch_and_bound(monkeypatch)
    results = tmp_path / "r.txt"
    code, out, _ = run(capsys, "property", case["model"], case["holds"], "--results", results, "-q")
    assert code == 3 and out.startswith("unknown: not decided")
    assert results.read_text() == "unknown\n"


def test_outputs_never_over_the_inputs(capsys, case, tmp_path):
    model, spec = case["model"], case["holds"]
    digests = (_digest(model), _digest(spec))
    for args in (["--results", model], ["--results", spec], ["--counterexample", model],
                 ["--counterexample", tmp_path / "x.txt"], ["--results", tmp_path / "a.npy",
                                                            "--counterexample", tmp_path / "a.npy"]):
        code, out, err = run(capsys, "property", model, spec, "-q", *args)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (args, err)
    assert (_digest(model), _digest(spec)) == digests
    existing = tmp_path / "old.txt"
    existing.write_text("keep me\n")
    code, _, _ = run(capsys, "property", model, spec, "-q", "--results", existing)
    assert code == 2 and existing.read_text() == "keep me\n"
    code, _, _ = run(capsys, "property", model, spec, "-q", "--results", existing, "--force")
    assert code == 0 and existing.read_text() == "unsat\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]  # no partial or stray file


def test_progress_on_stderr_unless_quiet(capsys, case):
    code, out, err = run(capsys, "property", case["model"], case["holds"])
    assert code == 0 and out.startswith("unsat")
    phases = [line for line in err.splitlines() if line.startswith("leo: [")]
    assert any("sampling" in p for p in phases)
    assert any("branch and bound" in p for p in phases) or any("MILP for disjunct" in p for p in phases)
    assert not any("leo: [" in line for line in out.splitlines())  # stdout: the result only
    code, out, err = run(capsys, "property", case["model"], case["holds"], "-q")
    assert code == 0 and err == ""


# -- real instances: VNN-COMP 2021, answers from results_2021.csv -------------------------------

#: Quick ones here: ACAS Xu 1_7 p3 (sat), MNIST image 1 at 0.05 (sat), image 2 at 0.03 (unsat).
INSTANCES = [("acasxu", "ACASXU_run2a_1_7_batch_2000.onnx", "prop_3.vnnlib"),
             ("mnistfc", "mnist-net_256x2.onnx", "prop_1_0.05.vnnlib"),
             ("mnistfc", "mnist-net_256x2.onnx", "prop_2_0.03.vnnlib")]


@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
@pytest.mark.parametrize("bench,onnx,spec", INSTANCES)
def test_vnncomp2021_answers(capsys, tmp_path, bench, onnx, spec):
    from leo.io.vnnlib import read_vnnlib

    data = vnncomp_dir()
    expected = vnncomp_answer(onnx, spec)
    model, prop_file, results = data / bench / onnx, data / bench / spec, tmp_path / "r.txt"
    code, out, _ = run(capsys, "property", model, prop_file, "--time-limit", "60", "--results", results, "-q")
    assert out.split(":")[0] == expected and code == {"sat": 1, "unsat": 0}[expected]
    answer, x, y = _parse_results(results)
    assert answer == expected
    if answer == "sat":  # the witness, re-checked by onnxruntime on the competition's own file
        box, prop = read_vnnlib(prop_file, x.size)
        assert box.contains(x, tol=0.0)[0]
        y_ort = _ort(model, x)
        np.testing.assert_allclose(y, y_ort, rtol=1e-4, atol=1e-5)
        assert prop.violating(y_ort[None, :], 1e-5) is not None
