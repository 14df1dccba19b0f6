"""Reports and commands that tell the truth: the verify table keeps proven-unstable and
unproven units apart, a layer's seconds count all of its work, a MaxPool's ReLU layers
are not shown as the user's hidden layers, compress counts the parameters the files hold,
the certificate records the budget the user gave, and the command line's small promises
(help, suggestions, quiet .lp export, progress without a terminal, readable sound bounds).

Truth is independent of the report code: the user's torch module (its ReLU modules, its
parameter count), forward passes of the witness points, onnx's own reading of the
written file, and the clock around a deliberately slow step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import leo
from leo.cli.check import bound_text
from leo.cli.main import main
from leo.cli.progress import ProgressDisplay as _ProgressDisplay
from leo.core.domain import make_box
from leo.io.load import load_network
from leo.io.save import save_network
from leo.core.network import mlp
from leo.stability.analysis import Progress, StabilityOptions, analyse

torch.set_num_threads(1)
SHAPE = (1, 8, 8)


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _pooled() -> nn.Sequential:
    """A LeNet-like CNN as a user writes it: two conv-ReLU-MaxPool blocks, then a Linear."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 2), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        m[3].bias[2] = -5.0  # a dead channel after the first MaxPool
    return m.eval()


@pytest.fixture(scope="module")
def pooled_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pool") / "pool.onnx"
    with torch.no_grad():
        torch.onnx.export(_pooled(), (torch.zeros(1, *SHAPE),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}}, opset_version=17)
    return path


def _small_mlp(path: Path, seed: int = 0) -> Path:
    net = mlp([np.random.default_rng(seed).normal(size=(8, 4)), np.random.default_rng(seed + 1).normal(size=(3, 8))],
              [np.full(8, -0.3), np.zeros(3)])
    save_network(net, path)
    return path


# -- item 11: the table, the seconds, the layers, the parameters, the budget ----------

def test_table_and_json_keep_proven_unstable_and_unproven_apart(capsys, tmp_path):
    """A budget spent at once leaves units unproven: they are not counted "unstable"; the
    unstable ones have witness points whose forward passes show both signs."""
    g = np.random.default_rng(0)
    model = tmp_path / "m.onnx"
    save_network(mlp([g.normal(size=(20, 6)), g.normal(size=(20, 20)), g.normal(size=(3, 20))],
                     [np.full(20, -2.0), np.full(20, -2.0), np.zeros(3)]), model)
    code, out, _ = run(capsys, "verify", model, "--lower", "0", "--upper", "1", "--time-budget", "1e-4",
                       "--samples", "16", "--json", tmp_path / "r.json", "-q")
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    layer = report["layers"][1]
    assert layer["proven_unstable"], "no witness pair: the test shows half of it"
    unproven = [j for j, p in enumerate(layer["proofs"]) if p["status"] == "unstable" and "witness" not in p]
    assert unproven, "the budget did not bind: the test shows nothing"
    assert layer["unproven"] == unproven
    assert sorted(layer["proven_unstable"] + layer["unproven"]) == layer["unstable"]
    w = report["witness_points"]
    import base64

    points = np.frombuffer(base64.b64decode(w["base64"]), dtype="<f8").reshape(w["shape"])
    z = load_network(model).pre_activations(points)[1]
    for j in layer["proven_unstable"]:
        a, b = layer["proofs"][j]["witness"]
        assert z[a, j] > 0 > z[b, j]
    row = next(line for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip() == "2")
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[5] == str(len(layer["proven_unstable"])) and cells[6] == str(len(unproven))
    assert "unproven" in out


def test_layer_seconds_count_the_bounds_also_after_the_deadline(monkeypatch):
    """A slow bound computation (0.3 s a layer) is the layer's time, with or without a spent
    budget; the layers' seconds add up to the analysis's, less its set-up and output layer."""
    import leo.stability.analysis as stability

    original = stability._Run.layer_bounds

    def slow(self, k):  # noqa: ANN001, ANN202
        time.sleep(0.3)
        return original(self, k)

    monkeypatch.setattr(stability._Run, "layer_bounds", slow)
    net = mlp([np.random.default_rng(0).normal(size=(6, 3)), np.random.default_rng(1).normal(size=(5, 6)),
               np.random.default_rng(2).normal(size=(2, 5))], [np.zeros(6), np.zeros(5), np.zeros(2)])
    for budget in (None, 1e-4):
        start = time.perf_counter()
        report = analyse(net, make_box(0, 1, 3), StabilityOptions(samples=32, time_budget=budget, time_limit=5))
        took = time.perf_counter() - start
        seconds = [lr.seconds for lr in report.layers]
        assert all(s >= 0.3 for s in seconds), seconds
        # outside the hidden layers: the set-up and the output layer's bounds (0.3 s of sleep)
        assert took - 0.3 - 0.2 <= sum(seconds) <= took


def test_maxpool_relu_layers_are_not_hidden_layers(capsys, pooled_onnx, tmp_path):
    """The user's module has 2 ReLU modules: the table shows layers 1 and 2 and nothing
    else; the MaxPools' ReLU layers are in the JSON, marked internal."""
    user_relus = sum(isinstance(m, nn.ReLU) for m in _pooled().modules())
    code, out, _ = run(capsys, "verify", pooled_onnx, "--lower", "0", "--upper", "1", "--time-budget", "3",
                       "--json", tmp_path / "r.json", "-q")
    assert code == 0
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert rows == [str(i) for i in range(1, user_relus + 1)]
    report = json.loads((tmp_path / "r.json").read_text())
    hidden = [lr for lr in report["layers"] if lr["internal"] is None]
    internal = [lr for lr in report["layers"] if lr["internal"] == "MaxPool"]
    assert [lr["hidden_layer"] for lr in hidden] == list(range(1, user_relus + 1))
    assert len(internal) == 4  # two 2x2 pools: 4 candidates each, paired in 2 levels
    assert "not in the table: 4 ReLU layers" in out and "layer 2 (4x2x2), 4 channels: dead channels: 2" in out


def test_compress_summary_counts_the_parameters_the_files_hold(capsys, pooled_onnx, tmp_path):
    """Before: the user's parameters (torch counts them); after: what the written file holds."""
    out_path = tmp_path / "small.pt"
    code, out, _ = run(capsys, "compress", pooled_onnx, "--lower", "0", "--upper", "1", "--time-budget", "4",
                       "-o", out_path, "-q")
    assert code == 0
    before = sum(p.numel() for p in _pooled().parameters())
    written = torch.jit.load(str(out_path))
    after = sum(t.numel() for t in list(written.parameters()) + list(written.buffers()) if t.is_floating_point())
    assert f"parameters {before:,} -> {after:,}" in out
    assert load_network(pooled_onnx).num_parameters > 10 * before  # the lowering, which the line no longer shows


def test_certificate_records_the_budget_the_user_gave(capsys, tmp_path):
    model = _small_mlp(tmp_path / "m.onnx")
    code, _, _ = run(capsys, "compress", model, "--lower", "0", "--upper", "1", "--time-budget", "8",
                     "-o", tmp_path / "s.onnx", "-q")
    assert code == 0
    settings = json.loads((tmp_path / "s.onnx.cert.json").read_text())["settings"]
    assert settings["time_budget"] == 8.0
    assert 0 < settings["analysis_time_budget"] <= 8.0


# -- item 10's neighbour in the API: the written ONNX counts like the user's model ------

def test_written_onnx_parameters_are_its_initializers(capsys, tmp_path):
    model = _small_mlp(tmp_path / "m.onnx")
    code, out, _ = run(capsys, "compress", model, "--lower", "0", "--upper", "1", "-o", tmp_path / "s.onnx", "-q")
    assert code == 0
    count = {p: sum(int(np.prod(t.dims)) for t in onnx.load(str(p)).graph.initializer
                    if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE))
             for p in (model, tmp_path / "s.onnx")}
    assert f"parameters {count[model]:,} -> {count[tmp_path / 's.onnx']:,}" in out


# -- item 5: no run without end in sight -------------------------------------------------

def _events(decided: int, total: int = 40) -> list[Progress]:
    return [Progress(2, decided, total, {"witness": decided}, 1.0, "local search"),
            Progress(2, decided, total, {"witness": decided}, 3.0, "MILP", eta=300.0),
            Progress(2, decided + 1, total, {"witness": decided, "milp": 1}, 9.0, "MILP", eta=680.0)]


def test_long_milp_phase_without_budget_says_so_early_and_names_the_option(capsys):
    display = _ProgressDisplay(False, StabilityOptions(time_limit=60.0), tty=False)
    for e in _events(10):
        display(e)
    err = capsys.readouterr().err
    first_milp = next(i for i, line in enumerate(err.splitlines()) if "MILP" in line)
    assert "--time-budget" in err.splitlines()[first_milp]  # said when the phase starts, not at the end
    assert "30 units left for MILPs" in err and "30 min or more" in err
    assert "680" not in err and "300" not in err, "a pace-based ETA shown without a budget"
    assert "30 open x --time-limit 60 s" in err


def test_with_a_budget_the_eta_is_the_analysis_and_no_warning(capsys):
    display = _ProgressDisplay(False, StabilityOptions(time_limit=60.0, time_budget=100.0), tty=False)
    for e in _events(10):
        display(e)
    err = capsys.readouterr().err
    assert "--time-budget" not in err and "eta 300 s" in err


# -- "also seen": the command line --------------------------------------------------------

def test_bare_leo_prints_help_and_exits_0(capsys):
    code, out, err = run(capsys)
    assert code == 0 and out.startswith("Usage: leo") and "verify" in out and err == ""


def test_a_misspelt_command_points_to_leo_help(capsys):
    code, _, err = run(capsys, "verfy")
    assert code == 2 and "Did you mean 'verify'" in err and "(see 'leo --help')" in err and "leo cli" not in err
    code, _, err = run(capsys, "verify", "--bogus")
    assert code == 2 and "(see 'leo verify --help')" in err


@pytest.mark.parametrize("suffix", [".lp", ".mps"])
def test_export_warns_about_nothing(capsys, caplog, tmp_path, suffix):
    model = _small_mlp(tmp_path / "m.onnx")
    code, out, err = run(capsys, "export", model, "--lower", "0", "--upper", "1", "--layer", "1", "--unit", "0",
                         "-o", tmp_path / f"u{suffix}")
    assert code == 0 and (tmp_path / f"u{suffix}").stat().st_size > 0
    assert "likely does not match" not in err + caplog.text


def test_progress_without_a_terminal_is_lines_not_bars(capsys, pooled_onnx):
    """stderr is not a terminal here (pytest captures it): no bar redraws (carriage returns)."""
    code, _, err = run(capsys, "verify", pooled_onnx, "--lower", "0", "--upper", "1", "--time-budget", "3")
    assert code == 0
    assert "\r" not in err and "%|" not in err
    lines = [line for line in err.splitlines() if line.startswith("leo: ")]
    assert any(line.startswith("leo: layer 1 ") for line in lines) and len(err) < 20_000


def test_bound_text_is_never_below_the_bound():
    rng = np.random.default_rng(0)
    values = np.concatenate([10.0 ** rng.uniform(-300, 300, 20_000), rng.uniform(0, 1e-3, 5_000),
                             [5e-324, 3.95e-323, np.finfo(float).tiny, 1e-4, 0.1, 1.0000000001]])
    for b in values:
        assert float(bound_text(float(b)).split()[0]) >= b or bound_text(float(b)).startswith("0 in exact arithmetic")
    assert bound_text(3.95e-323).startswith("0 ") and bound_text(0.0) == "0"
    assert bound_text(1.234e-5) == "1.24e-05"  # .3g would print 1.23e-05, below the bound


def test_check_exact_prints_zero_for_identical_models(capsys, tmp_path):
    a, b = _small_mlp(tmp_path / "a.onnx"), _small_mlp(tmp_path / "b.onnx")
    code, out, _ = run(capsys, "check", a, b, "--lower", "0", "--upper", "1", "--exact", "--points", "1000", "-q")
    assert code == 0
    line = next(line for line in out.splitlines() if "proven max |f-g| <=" in line)
    assert "e-32" not in line and line.split("<=")[1].split()[0] == "0"


# -- item 9: long commands show progress and take a budget ----------------------------------

def test_audit_prints_its_steps_and_keeps_a_budget(capsys, tmp_path):
    model = _small_mlp(tmp_path / "m.onnx")
    assert run(capsys, "compress", model, "--lower", "0", "--upper", "1", "-o", tmp_path / "s.onnx", "-q")[0] == 0
    cert = tmp_path / "s.onnx.cert.json"
    code, out, err = run(capsys, "audit", cert)
    assert code == 0 and out.startswith("VALID") and "audit: layer 1:" in err and "audit: replaying" in err
    code, out, err = run(capsys, "audit", cert, "--time-budget", "1e-9", "-q")
    assert code == 3 and out.startswith("UNDECIDED") and "time budget" in out and err == ""


def test_check_sampling_stops_at_its_budget(capsys, tmp_path):
    a, b = _small_mlp(tmp_path / "a.onnx"), _small_mlp(tmp_path / "b.onnx")
    code, out, err = run(capsys, "check", a, b, "--lower", "0", "--upper", "1", "--time-budget", "1e-9")
    sampled = int(out.split("sampled ")[1].split()[0])
    assert code == 0 and 0 < sampled < 100_000 and "the time budget ran out" in out and "check: sampled" in err
    code, out, _ = run(capsys, "check", a, b, "--lower", "0", "--upper", "1", "--points", "5000", "-q")
    assert code == 0 and "sampled 50" in out and "budget" not in out
