"""The VNN-COMP tool scripts (vnncomp/*.sh) with the competition's arguments, on shared 2021
instances: the results file against the 2021 answers, and a sat witness against onnxruntime."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import vnncomp_answer, vnncomp_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "vnncomp"
DATA = vnncomp_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="no VNN-COMP 2021 data ($LEO_DATA/vnncomp2021)")

#: Fast instances (benchmarks/results/vnncomp.md): sat in about 1 s, unsat in about 6 s.
SAT = ("acasxu", "ACASXU_run2a_1_7_batch_2000.onnx", "prop_3.vnnlib")
UNSAT = ("acasxu", "ACASXU_run2a_1_5_batch_2000.onnx", "prop_4.vnnlib")


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LEO_PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def _instance(bench: str, onnx: str, spec: str) -> tuple[str, str]:
    assert DATA is not None
    return str(DATA / bench / onnx), str(DATA / bench / spec)


def _witness(text: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = re.findall(r"\(([XY])_(\d+)\s+([^()\s]+)\)", text)
    x = [float(v) for n, i, v in sorted((p for p in pairs if p[0] == "X"), key=lambda p: int(p[1]))]
    y = [float(v) for n, i, v in sorted((p for p in pairs if p[0] == "Y"), key=lambda p: int(p[1]))]
    return np.array(x), np.array(y)


@needs_data
def test_sat_instance_writes_a_witness_that_onnxruntime_confirms(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx, spec = _instance(*SAT)
    assert _script("prepare_instance.sh", "v1", SAT[0], onnx, spec).returncode == 0
    results = tmp_path / "out.txt"
    p = _script("run_instance.sh", "v1", SAT[0], onnx, spec, str(results), "116")
    assert p.returncode == 0, p.stderr
    text = results.read_text()
    assert text.split()[0] == vnncomp_answer(SAT[1], SAT[2]) == "sat"
    x, y = _witness(text)
    assert x.size == 5 and y.size == 5
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = session.run(None, {name: x.astype(np.float32).reshape(session.get_inputs()[0].shape)})[0].reshape(-1)
    assert np.allclose(got, y, atol=1e-4)
    # property 3 is violated when Y_0 is the smallest output (COC is minimal); and x is in its box
    assert np.argmin(got) == 0
    box = dict(re.findall(r"\(assert \((<=|>=) X_0 ([-\d.e]+)\)\)", Path(spec).read_text()))
    assert float(box[">="]) <= x[0] <= float(box["<="])


@needs_data
def test_unsat_instance_writes_unsat_and_refuses_to_overwrite(tmp_path):
    onnx, spec = _instance(*UNSAT)
    results = tmp_path / "out.txt"
    p = _script("run_instance.sh", "v1", UNSAT[0], onnx, spec, str(results), "116")
    assert p.returncode == 0, p.stderr
    assert results.read_text() == vnncomp_answer(UNSAT[1], UNSAT[2]) + "\n" == "unsat\n"
    again = _script("run_instance.sh", "v1", UNSAT[0], onnx, spec, str(results), "116")
    assert again.returncode == 2 and results.read_text() == "unsat\n"


@pytest.mark.parametrize("script, args", [
    ("install_tool.sh", ["v2"]), ("prepare_instance.sh", ["v1", "b", "a.onnx"]),
    ("prepare_instance.sh", ["v1", "b", "/no/such.onnx", "/no/such.vnnlib"]),
    ("run_instance.sh", ["v1", "b", "a.onnx", "a.vnnlib", "r.txt"]),
    ("run_instance.sh", ["v1", "b", "a.onnx", "a.vnnlib", "r.txt", "-5"]),
])
def test_wrong_arguments_are_refused_with_one_line(tmp_path, script, args):
    p = subprocess.run(["bash", str(SCRIPTS / script), *args], capture_output=True, text=True, cwd=tmp_path,
                       env=dict(os.environ, LEO_PYTHON=sys.executable), timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.txt").exists()


def test_bad_model_writes_no_results(tmp_path):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not an onnx file")
    spec = tmp_path / "q.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n"
                    "(assert (<= X_0 1))\n(assert (>= Y_0 1))\n")
    results = tmp_path / "r.txt"
    assert _script("prepare_instance.sh", "v1", "b", str(model), str(spec)).returncode == 2
    p = _script("run_instance.sh", "v1", "b", str(model), str(spec), str(results), "20")
    assert p.returncode == 2 and not results.exists()


def test_vnnlib2_query_writes_the_standards_assignment(tmp_path):
    pytest.importorskip("onnxruntime")
    from tests.test_vnnlib_cli import HAVE_ENGINE, _convex_onnx, _corner_max, _ort, _parse_assignment, _query

    if not HAVE_ENGINE:
        pytest.skip("leo.io.vnnlib / leo.queries.check not there yet")
    model = _convex_onnx(tmp_path / "n.onnx")
    spec = _query(tmp_path / "q.vnnlib", f"(>= Y[0,0] {_corner_max(model) - 0.1})")
    results = tmp_path / "r.txt"
    p = _script("run_instance.sh", "v1", "tiny", str(model), str(spec), str(results), "60")
    assert p.returncode == 0, p.stderr
    lines = results.read_text().splitlines()
    assert lines[0] == "sat"
    got = _parse_assignment(lines[1:])
    assert abs(_ort(model, got["X"][2])[0] - got["Y"][2][0]) <= 1e-5
