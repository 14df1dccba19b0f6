"""The papers' experiments benchmark (``benchmarks/seeds.py``) in its quick mode: it runs,
writes the documented row format, and its figures obey what must hold whatever the data:
the exact method never changes an accuracy on data inside its box, one-shot and lottery
ticket keep 80 % of the weights per round, and a fixed-size row that says it reached its
size is at most that size in the paper's count."""

from __future__ import annotations

import json
import re

import pytest

from leo.data import load_mnist
from leo.errors import LeoInputError

KEYS = {"method", "model", "dataset", "setting", "kept_pct_paper", "kept_pct_all", "accuracy_before",
        "accuracy_after", "paper_claim"}


@pytest.fixture(scope="module")
def quick_rows(tmp_path_factory):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    try:
        load_mnist()
    except LeoInputError:
        pytest.skip("MNIST not available")
    from benchmarks.seeds import main

    path = tmp_path_factory.mktemp("seeds") / "seeds.json"
    main(["--quick", "--json", str(path)])
    return path, json.loads(path.read_text())


def test_rows_have_the_documented_keys(quick_rows) -> None:
    path, rows = quick_rows
    assert rows and all(KEYS <= set(r) for r in rows)
    methods = {r["method"] for r in rows}
    for needed in ("linearity", "pq-index sap", "pq-index os", "pq-index lt", "dependence",
                   "dependence (during training)", "exact", "linearity -> exact", "exact -> linearity",
                   "pq-index -> exact", "exact -> pq-index", "dependence -> exact", "exact -> dependence"):
        assert needed in methods, needed
    assert all(r["paper_claim"] for r in rows)
    assert all(0 < r["kept_pct_all"] for r in rows)
    assert path.with_suffix(".md").exists() and path.with_suffix(".png").stat().st_size > 0
    md = path.with_suffix(".md").read_text()
    assert "Does each paper's claim hold here?" in md and md.count("\n|") >= len(rows)


def test_exact_rows_keep_the_accuracy(quick_rows) -> None:
    _, rows = quick_rows
    exact = [r for r in rows if r["method"] == "exact"]
    assert exact and all(r["accuracy_after"] == r["accuracy_before"] for r in exact)


def test_magnitude_baselines_keep_four_fifths_per_round(quick_rows) -> None:
    _, rows = quick_rows
    for r in rows:
        if r["method"] in ("pq-index os", "pq-index lt"):
            rnd = int(re.search(r"round (\d+)", r["setting"]).group(1))
            assert r["kept_pct_paper"] == pytest.approx(100 * 0.8 ** rnd, abs=0.05)


def test_fixed_size_rows_reach_their_size(quick_rows) -> None:
    _, rows = quick_rows
    fixed = [r for r in rows if r["method"] == "linearity" and r["setting"].startswith("fixed size")]
    assert fixed
    for r in fixed:
        rate = int(re.match(r"fixed size (\d+)%", r["setting"]).group(1))
        if r.get("note") == "size reached":
            assert r["kept_pct_paper"] <= rate + 1e-9
