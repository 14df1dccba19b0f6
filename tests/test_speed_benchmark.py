"""The speed harness on a tiny network: every method runs, agrees, and the JSON,
markdown and plot come out in their documented shape."""

import json

import numpy as np
import pytest

from benchmarks import speed
from leo.core.domain import make_box
from leo.stability.analysis import StabilityOptions
from tests.conftest import random_mlp

METHOD_KEYS = {"seconds", "solves", "stable", "capped"}


def _methods():
    methods = ["naive", "omlt", "leo"]
    if "engine" in StabilityOptions.__dataclass_fields__:
        methods.append("leo-network")
    try:
        import omlt.neuralnet  # noqa: F401
    except Exception:  # noqa: BLE001
        methods.remove("omlt")
    return methods


@pytest.fixture(scope="module")
def tiny():
    net = random_mlp(np.random.default_rng(7), [4, 6, 5, 2], bias_shift=-0.3)
    return net, make_box(0, 1, 4)


def test_harness_schema_and_agreement(tiny, tmp_path):
    net, box = tiny
    methods = _methods()
    entries = speed.benchmark([("tiny", net)], methods, {m: 30.0 for m in methods}, box=box,
                              isolate=False, log=None)
    data = {"networks": entries, "machine": speed.machine(), "command": "test", "quick": True,
            "caps": {m: 30.0 for m in methods}}
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(data))
    back = json.loads(path.read_text())
    (entry,) = back["networks"]
    assert entry["name"] == "tiny" and entry["hidden"] == [6, 5]
    assert set(entry["methods"]) == set(methods)
    for m, r in entry["methods"].items():
        assert "error" not in r, (m, r)
        assert METHOD_KEYS <= set(r)
        assert r["capped"] is False and r["seconds"] > 0 and isinstance(r["solves"], int)
        assert len(r["active_per_layer"]) == 2
    assert entry["agree"] is True
    assert sorted(entry["compared"]) == sorted(methods)
    assert {"machine", "command"} <= set(back)
    md = speed.to_markdown(back)
    assert "| naive |" in md and "speedup vs naive" in md
    speed.plot(back, tmp_path / "speed.png")
    assert (tmp_path / "speed.png").stat().st_size > 0


def test_isolated_run_reports_memory(tiny):
    net, box = tiny
    r = speed.measure("naive", net, box, cap=30.0, isolate=True)
    assert "error" not in r, r
    assert r["peak_mib"] >= r["baseline_mib"] > 0
    assert r["capped"] is False and r["stable"] >= 0


def test_compare_flags_differences():
    a = {"active": [[1], []], "inactive": [[0], [2]], "capped": False}
    b = {"active": [[1], []], "inactive": [[0], []], "capped": False}
    capped = {"active": [[]], "inactive": [[]], "capped": True}
    out = speed.compare({"x": a, "y": b, "z": capped})
    assert out["agree"] is False and out["compared"] == ["x", "y"] and out["differences"]
    assert speed.compare({"x": a, "y": dict(a)})["agree"] is True
    assert speed.compare({"x": a, "z": capped})["agree"] is None


def test_compare_checks_inexact_runs_are_subsets():
    exact = {"active": [[1, 3], []], "inactive": [[0], [2]], "capped": False, "unproven": 0}
    part = {"active": [[1], []], "inactive": [[0], []], "capped": False, "unproven": 2}
    out = speed.compare({"leo": exact, "leo-60s": part})
    assert out["agree"] is None and out["inexact"] == {"leo-60s": 2} and out["subsets_checked"] == ["leo-60s"]
    wrong = dict(part, inactive=[[0], [4]])  # claims a unit the exact run calls unstable
    out = speed.compare({"leo": exact, "naive": dict(exact), "leo-60s": wrong})
    assert out["agree"] is False and any("leo-60s claims [4]" in d for d in out["differences"])


def test_cli_rejects_unknown_method():
    with pytest.raises(SystemExit):
        speed.parse_args(["--methods", "naive,nope"])


def test_plot_goes_beside_the_markdown_unless_named(tmp_path) -> None:
    """A run that writes its tables elsewhere must not replace the committed plot (it did: a
    one-network run rewrote benchmarks/results/speed.png)."""
    from benchmarks import speed
    from benchmarks.common import RESULTS

    assert speed.parse_args([]).plot == RESULTS / "speed.png"
    assert speed.parse_args(["--markdown", str(tmp_path / "x.md")]).plot == tmp_path / "x.png"
    assert speed.parse_args(["--markdown", str(tmp_path / "x.md"), "--plot", str(tmp_path / "p.png")]).plot \
        == tmp_path / "p.png"
