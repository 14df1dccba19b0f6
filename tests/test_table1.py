"""The Table 1 benchmark's row logic on one tiny row (width 10, a few hundred steps)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

torch = pytest.importorskip("torch")

from benchmarks import common, table1  # noqa: E402
from leo.errors import LeoInputError  # noqa: E402

try:
    common.mnist()
    HAVE_MNIST = True
except LeoInputError:
    HAVE_MNIST = False

needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="MNIST files not found (set LEO_DATA)")

ROW_KEYS = {
    "width", "l1", "networks", "accuracy_mean", "accuracy_sem", "accuracy_after_mean",
    "removed_layer1", "removed_layer2", "compression_pct", "seconds_median", "paper", "data", "steps",
}


def test_names_and_cache_paths(tmp_path: Path) -> None:
    assert common.network_name((100, 100), 1e-4) == "2x100-l1=1e-4"
    assert common.network_name((25, 25), 0.0) == "2x25-l1=0"
    assert common.network_name((100, 100), 1e-4, rs=1e-3) == "2x100-l1=1e-4-rs=1e-3"
    assert common.network_path((100, 100), 2e-4, 3, 56_250, folder=tmp_path).name == \
        "100x100-l1=0.0002-seed=3-steps=56250.pt"
    assert common.network_path((50, 50), 0.0, 0, 10, rs=0.001, folder=tmp_path).name == \
        "50x50-l1=0-seed=0-steps=10-rs=0.001.pt"
    assert common.sem([1.0]) == 0.0
    assert common.sem([1.0, 3.0]) == pytest.approx(1.0)


def test_paper_rows() -> None:
    assert len(table1.PAPER_ROWS) == 9
    for spec in table1.PAPER_ROWS:  # compression = removed units / all hidden units
        p = spec.paper
        assert p is not None
        assert 100 * (p["removed_layer1"] + p["removed_layer2"]) / (2 * spec.width) == \
            pytest.approx(p["compression_pct"], abs=0.6)
    assert all(spec.paper is None and spec.note for spec in table1.EXTRA_ROWS)
    assert table1.parse_row("100:1e-4").paper == table1.PAPER_ROWS[7].paper
    assert table1.parse_row("10:0.5:0.1").rs == 0.1


@needs_mnist
@pytest.mark.parametrize(("l1", "steps", "min_accuracy"), [
    (1e-2, 600, 50.0),  # a few units deleted as stably inactive, most unstable
    (5e-2, 300, 0.0),  # l1 so strong that both layers are stable and merged away: all 20 units count
])
def test_tiny_row(tmp_path: Path, l1: float, steps: int, min_accuracy: float) -> None:
    spec = table1.RowSpec(10, l1, note="test row")
    row = table1.run_row(spec, seeds=[0], steps=steps, folder=tmp_path)
    assert ROW_KEYS <= row.keys()
    assert row["width"] == 10 and row["l1"] == l1 and row["networks"] == 1 and row["steps"] == steps
    assert row["paper"] is None and row["note"] == "test row"
    assert row["data"] == common.mnist().description
    json.dumps(row)  # JSON-ready as it is
    assert row["accuracy_mean"] == row["accuracy_after_mean"]
    assert min_accuracy < row["accuracy_mean"] <= 100  # percent
    assert row["max_abs_diff"] < 1e-6

    (net,) = row["per_network"]
    assert net["accuracy"] == net["accuracy_after"]
    assert net["predictions_changed"] == 0
    # removed = original width - width after reduction, and the parts add up
    assert net["widths"] == [10, 10]
    for k in range(2):
        assert net["removed"][k] == 10 - net["widths_after"][k]
        assert row[f"removed_layer{k + 1}"] == net["removed"][k]
        merged = (k + 1) in net["merged_layers"]
        parts = net["removed_inactive"][k] + net["folded_active"][k]
        assert net["removed"][k] == (10 if merged else parts)
        assert net["stable_active"][k] + net["stable_inactive"][k] + net["unstable"][k] == 10
    assert row["compression_pct"] == pytest.approx(100 * sum(net["removed"]) / 20)
    assert sum(net["removed"]) > 0  # the counting is exercised
    assert (tmp_path / f"10x10-l1={l1:g}-seed=0-steps={steps}.pt").is_file()

    # the same network, reduced again by hand: the widths match the counts
    module, _ = common.get_network((10, 10), l1, 0, steps, folder=tmp_path)
    from leo.core.domain import make_box
    from leo.io.torch_io import from_module
    from leo.reduction.reduce import reduce
    from leo.stability.analysis import analyse

    original = from_module(module)
    reduced = reduce(original, analyse(original, make_box(0, 1, 784))).network
    assert sum(reduced.hidden) == sum(net["widths_after"])
    assert sum(original.hidden) - sum(reduced.hidden) == sum(net["removed"])
    x = common.mnist().x_test[:200]
    assert np.abs(original(x) - reduced(x)).max() < 1e-6

    # outputs: markdown names the split and the command; the plot is a PNG
    md = table1.markdown([row], "python -m benchmarks.table1 --test")
    assert "python -m benchmarks.table1 --test" in md and row["data"] in md and "| 10 |" in md
    pytest.importorskip("matplotlib")
    table1.plot([row], tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
