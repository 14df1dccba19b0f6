"""benchmarks/vnncomp.py --quick on the real instances (skipped without the data or
maraboupy), and benchmarks/acasxu.py's sampling check on a tiny network."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from leo.core.domain import make_box
from leo.core.network import mlp
from tests.conftest import vnncomp_dir


@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
@pytest.mark.skipif(importlib.util.find_spec("maraboupy") is None, reason="maraboupy not installed")
def test_quick_run_answers_agree_with_2021_and_json_is_shaped(tmp_path) -> None:
    from benchmarks import vnncomp

    out = tmp_path / "v.json"
    code = vnncomp.main(["--quick", "--cap", "30", "--json", str(out), "--markdown", str(tmp_path / "v.md")])
    data = json.loads(out.read_text())
    assert code == 0 and len(data["instances"]) == 3
    for row in data["instances"]:
        assert {"onnx", "vnnlib", "expected", "leo", "leo_compress_first", "marabou"} <= set(row)
        for tool in ("leo", "leo_compress_first", "marabou"):
            assert row[tool]["answer"] in ("sat", "unsat", "unknown", "timeout")
            assert row[tool]["seconds"] > 0
        for tool in ("leo", "leo_compress_first"):
            assert row[tool]["answer"] in (row["expected"], "unknown", "timeout")
    sat = [r for r in data["instances"] if r["expected"] == "sat"]
    assert sat and all(r["leo"]["answer"] == "sat" for r in sat)  # found by sampling in seconds
    assert "| leo |" in (tmp_path / "v.md").read_text()


@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
def test_from_json_merges_runs_in_csv_order_and_counts_a_contradiction(tmp_path) -> None:
    """Two runs' JSON as one table: every row once, in results_2021.csv's order, naming its run;
    totals over all rows; a leo answer against the 2021 answer makes the exit code 1."""
    from benchmarks import vnncomp

    def row(onnx: str, vnnlib: str, expected: str, answer: str) -> dict:
        tool = {"answer": answer, "seconds": 2.0, "contradicts": answer in ("sat", "unsat") and answer != expected}
        return {"benchmark": "acasxu", "onnx": onnx, "vnnlib": vnnlib, "expected": expected, "timeout": 116.0,
                "leo": tool, "leo_compress_first": tool, "marabou": dict(tool, answer="timeout", contradicts=False)}

    net = "ACASXU_run2a_1_{}_batch_2000.onnx"
    load = {"before": [1.0, 1.0, 1.0], "after": [2.0, 2.0, 2.0]}
    first = {"command": "run one", "commit": "abc", "load_average": load,
             "instances": [row(net.format(2), "prop_2.vnnlib", "sat", "sat")]}
    second = {"command": "run two", "load_average": load,
              "instances": [row(net.format(1), "prop_1.vnnlib", "unsat", "unsat")]}
    paths = []
    for k, run in enumerate((first, second)):
        paths.append(tmp_path / f"r{k}.json")
        paths[-1].write_text(json.dumps(run))
    out = tmp_path / "all.json"
    assert vnncomp.main(["--from-json", *map(str, paths), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(r["onnx"], r["run"]) for r in data["instances"]] == [(net.format(1), 2), (net.format(2), 1)]
    assert data["totals"]["leo"]["decided"] == 2 and data["totals"]["marabou"]["timeout"] == 2
    assert [r["commit"] for r in data["runs"]] == ["abc", None]
    second["instances"] = [row(net.format(1), "prop_1.vnnlib", "unsat", "sat")]  # a wrong answer
    paths[1].write_text(json.dumps(second))
    assert vnncomp.main(["--from-json", *map(str, paths)]) == 1


def test_acasxu_sampling_check_flags_a_false_claim() -> None:
    from benchmarks.acasxu import contradicted, sampled_signs

    # z1 = x (unstable on [-1, 1]), z2 = x + 2 (active), z3 = -x - 2 (inactive)
    net = mlp([np.array([[1.0], [1.0], [-1.0]]), np.ones((1, 3))], [np.array([0.0, 2.0, -2.0]), np.zeros(1)])
    signs = sampled_signs(net, make_box(-1, 1, 1), 10_000, seed=0)
    assert contradicted({(1, 1): "active", (1, 2): "inactive"}, signs) == []
    bad = contradicted({(1, 0): "active", (1, 2): "active"}, signs)
    assert len(bad) == 2 and "unit 0" in bad[0] and "unit 2" in bad[1]


def test_nnenum_result_words_map_to_vnncomp_answers_and_a_missing_nnenum_is_said(tmp_path, monkeypatch) -> None:
    """nnenum runs as its own program: its result file's first word becomes the answer (a
    stand-in interpreter plays it here; nnenum itself is GPL and never imported), and an
    interpreter that cannot import nnenum is reported, not used."""
    import sys

    from benchmarks import vnncomp

    inst = {"onnx_path": tmp_path / "n.onnx", "vnnlib_path": tmp_path / "p.vnnlib"}
    for word, answer in (("holds", "unsat"), ("violated", "sat"), ("timeout", "timeout"), ("garbage", "unknown")):
        fake = tmp_path / f"fake_{word}.py"
        fake.write_text(f"import sys\nopen(sys.argv[-1], 'w').write('{word}\\n')\n")
        shim = tmp_path / f"python_{word}"
        shim.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
        shim.chmod(0o755)
        assert vnncomp.run_nnenum(inst, 5.0, shim)["answer"] == answer
    monkeypatch.delenv("LEO_NNENUM_PYTHON", raising=False)
    found, how = vnncomp.nnenum_python(sys.executable)  # this interpreter has no nnenum
    assert found is None and "cannot import nnenum" in how
