"""benchmarks/equivalence.py: its pruned copies, its queries, one instance end to end, and the
committed results (every sat confirmed by onnxruntime, every unsat consistent with sampling)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import vnncomp_dir

pytestmark = pytest.mark.skipif(vnncomp_dir() is None, reason="needs $LEO_DATA/vnncomp2021")
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "equivalence.json"


@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_pruned_copy(tmp_path, fraction):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    from benchmarks.equivalence import acas_onnx, prune_onnx
    from leo.api import as_network

    src, dst = acas_onnx("1_2"), tmp_path / "pruned.onnx"
    prune_onnx(src, dst, fraction)
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(src)).graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(dst)).graph.initializer}
    for name, w in before.items():
        if w.ndim != 2:
            np.testing.assert_array_equal(after[name], w)
            continue
        cut = int(round(fraction * w.size))
        zeroed = (after[name] == 0) & (w != 0)
        assert zeroed.sum() == cut  # ACAS Xu weights have no zeros of their own
        kept = np.abs(w[~zeroed])
        assert kept.min() >= np.abs(w[zeroed]).max()  # the smallest magnitudes went
        np.testing.assert_array_equal(after[name][~zeroed], w[~zeroed])
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(1, 1, 1, 5)).astype(np.float32)
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(as_network(str(dst))(x.reshape(1, 5).astype(np.float64)), ref, atol=1e-5)


def test_domain_is_the_whole_normalised_input_domain():
    """Every shared property box lies in it, each of its bounds is some box's, and it holds property
    7's box (the whole domain, rounded inward on two inputs)."""
    from benchmarks.equivalence import acas_dir, domain
    from leo.io.vnnlib import read_vnnlib

    lower, upper = domain()
    boxes = [read_vnnlib(p, 5)[0] for p in sorted(acas_dir().glob("prop_*.vnnlib"))]
    assert len(boxes) >= 5
    for b in boxes:
        assert (lower <= b.lower).all() and (b.upper <= upper).all()
    assert all(any(b.lower[i] == lower[i] for b in boxes) and any(b.upper[i] == upper[i] for b in boxes)
               for i in range(5))
    np.testing.assert_allclose(lower, [-0.328422877, -0.5, -0.5, -0.5, -0.5])
    np.testing.assert_allclose(upper, [0.679857769, 0.5, 0.5, 0.5, 0.5])


def test_query_reads_back_as_the_closeness_query(tmp_path):
    """The VNN-LIB 2.0 file, read by leo's reader: two networks, g's inputs tied to f's over the
    box, and a case per output and sign whose rows test f_i - g_i >= ε (checked on random outputs)."""
    from benchmarks.equivalence import vnnlib2
    from leo.io.vnnlib import read_vnnlib_query

    lower, upper = np.array([-0.3, -0.5, -0.5, -0.5, -0.5]), np.array([0.6, 0.5, 0.5, 0.5, 0.5])
    path = tmp_path / "q.vnnlib"
    path.write_text(vnnlib2(0.05, lower, upper))
    query = read_vnnlib_query(path)
    assert [d.name for d in query.networks] == ["f", "g"] and query.networks[1].isomorphic_to == "f"
    assert len(query.cases) == 10
    region = query.cases[0].region
    x = np.r_[lower, lower]
    assert region.contains(x, 0.0)[0] and not region.contains(np.r_[lower, upper], 1e-9)[0]
    y = np.random.default_rng(0).normal(size=(300, 10)) * 0.05
    inside = np.array([any(c.excess(row[None])[0] <= 0 for c in query.cases) for row in y])
    np.testing.assert_array_equal(inside, np.abs(y[:, :5] - y[:, 5:]).max(axis=1) >= 0.05)


def test_one_sat_instance_end_to_end(tmp_path):
    """1_1 against its 30 %-pruned copy at ε = 0.05: sampling shows a larger difference, so the
    answer must be sat, with a witness that onnxruntime confirms on both files."""
    pytest.importorskip("onnxruntime")
    from benchmarks.equivalence import run

    grid = {"networks": ("1_1",), "prunes": (0.3,), "epsilons": (0.05,), "leo_eps": ()}
    rows = run(grid, timeout=30, exact=False, work=tmp_path, budget=10)
    assert len(rows) == 1 and rows[0]["answer"] == "sat"
    assert rows[0]["max_diff_sampled"] > 0.05
    assert rows[0]["confirmation"].startswith("confirmed")
    assert (tmp_path / "1_1_vs_pruned_30pc_eps0.05.vnnlib").is_file()


def test_update_replaces_only_the_rows_run_again():
    from benchmarks.equivalence import merged

    old = [{"instance": "a", "eps": 0.05, "entry": "e", "answer": "error"},
           {"instance": "b", "eps": 0.05, "entry": "e", "answer": "sat"}]
    new = [{"instance": "a", "eps": 0.05, "entry": "e", "answer": "unsat"},
           {"instance": "a", "eps": 0.5, "entry": "e", "answer": "unsat"}]
    assert [(r["instance"], r["eps"], r["answer"]) for r in merged(old, new)] == [
        ("a", 0.05, "unsat"), ("b", 0.05, "sat"), ("a", 0.5, "unsat")]


@pytest.mark.skipif(not RESULTS.is_file(), reason="no committed results")
def test_committed_results_are_confirmed():
    data = json.loads(RESULTS.read_text())
    assert data["command"].startswith("python -m benchmarks.equivalence")
    answers = {r["answer"] for r in data["rows"]}
    assert {"sat", "unsat"} <= answers  # the ε values split the instances
    for r in data["rows"]:
        if r["answer"] == "sat":
            assert r["confirmation"].startswith("confirmed"), r
        if r["answer"] == "unsat":
            assert r["confirmation"].startswith("consistent") and r["max_diff_sampled"] < r["eps"], r
            assert "REFUTED" not in r["exact"], r
