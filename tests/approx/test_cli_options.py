"""``leo compress --method M`` options: each one reaches its method and changes the
outcome (checked against counts made here, from the written model or the paper's
formulas, not from leo's code); bad values and options of another method are one line
on stderr with exit code 2 and no output; each step says what it did.

The ``trained`` fixture (a 12-48-48-4 MLP and its data) is in conftest.py.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from leo.cli.main import main
from leo.exitcodes import ExitCode


def _compress(capsys: pytest.CaptureFixture[str], trained: tuple[Path, Path], out: Path, method: str,
              *args: str, model: Path | None = None, lower: str = "0") -> tuple[int, str, str, dict[str, Any] | None]:
    folder, ckpt = trained
    code = main(["compress", str(model or ckpt), "--lower", lower, "--upper", "1", "-o", str(out),
                 "--method", method, "--data", str(folder / "d.npz"), "-q", *args])
    cap = capsys.readouterr()
    side = out.with_name(out.name + ".report.json")
    return code, cap.out, cap.err, json.loads(side.read_text()) if code == 0 else None


def _step(report: dict[str, Any], method: str) -> dict[str, Any]:
    return next(s for s in report["steps"] if s["method"] == method)


def _weights(trained: tuple[Path, Path]) -> list[np.ndarray]:
    state = torch.load(trained[1], weights_only=True)
    return [v.double().numpy() for k, v in state.items() if k.endswith("weight")]


def _written(out: Path) -> list[torch.Tensor]:
    return [p.detach() for p in torch.jit.load(str(out)).parameters()]


def _plain_hidden(out: Path) -> list[int]:
    """Hidden widths of a written plain MLP (weights are the 2-D parameters, in order)."""
    return [int(p.shape[0]) for p in _written(out) if p.dim() == 2][:-1]


# -- the paper's SAP count, written out here ----------------------------------------------
def _sap_count(w: np.ndarray, p: float = 0.5, q: float = 1.0, eta: float = 0.0, gamma: float = 1.0,
               beta: float = 0.9) -> int:
    """c = floor(d min(gamma (1 - r/d), beta)), r = ceil(d (1+eta)^(-q/(q-p)) (1-I)^(qp/(q-p))),
    I = 1 - d^(1/q - 1/p) ||w||_p / ||w||_q (Diao et al. 2023)."""
    a = np.abs(w.ravel())
    d = a.size
    index = 1 - d ** (1 / q - 1 / p) * np.sum(a ** p) ** (1 / p) / np.sum(a ** q) ** (1 / q)
    r = math.ceil(d * (1 + eta) ** (-q / (q - p)) * (1 - index) ** (q * p / (q - p)))
    return math.floor(min(Fraction(gamma) * (d - r), Fraction(beta) * d))  # exact: no rounding at integers


def _sap_pruned(report: dict[str, Any]) -> int:
    d = _step(report, "pq-index")["details"]
    return d["weights"] - d["kept_weights"]


# -- linearity -----------------------------------------------------------------------------
def test_rate_sets_the_target_size(capsys, trained, tmp_path) -> None:
    sizes = {}
    for rate in ("0.5", "0.25"):
        out = tmp_path / f"r{rate}.pt"
        code, text, _, report = _compress(capsys, trained, out, "linearity", "--rate", rate)
        assert code == 0, text
        step = _step(report, "linearity")
        paper = step["details"]["paper_size"]
        assert step["details"]["target_reached"]
        assert paper["after"] <= float(rate) * paper["before"]
        # the report's parameter count is the written model's
        assert sum(int(p.numel()) for p in _written(out)) == report["summary"]["parameters_count"]["after"]
        sizes[rate] = paper["after"]
    assert sizes["0.25"] < sizes["0.5"]


def test_step_sets_the_threshold_grid(capsys, trained, tmp_path) -> None:
    used = {}
    for step in ("0.05", "0.3"):
        code, text, _, report = _compress(capsys, trained, tmp_path / f"s{step}.pt", "linearity", "--step", step)
        assert code == 0, text
        t = _step(report, "linearity")["parameters"]["threshold_used"]
        k = (1 - t) / float(step)
        assert t == 0.0 or abs(k - round(k)) < 1e-9  # 1 - k * step
        used[step] = t
    assert used["0.05"] != used["0.3"]


def test_threshold_selects_threshold_mode(capsys, trained, tmp_path) -> None:
    fused = {}
    for t in ("0.9", "0.3"):
        code, text, _, report = _compress(capsys, trained, tmp_path / f"t{t}.pt", "linearity", "--threshold", t)
        assert code == 0, text
        step = _step(report, "linearity")
        assert step["parameters"]["mode"] == "threshold"
        assert step["parameters"]["threshold_used"] == float(t)
        assert all(ly["min_rate_fused"] >= float(t) for ly in step["details"]["layers"] if ly["rewritten"])
        fused[t] = step["details"]["fused_units"]
    assert fused["0.3"] > fused["0.9"]


@pytest.mark.parametrize("rule, low, high", [("count", "0", "1000"), ("fraction", "0", "0.99")])
def test_layer_rule_and_min(capsys, trained, tmp_path, rule: str, low: str, high: str) -> None:
    params = {}
    for layer_min in (low, high):
        out = tmp_path / f"{rule}{layer_min}.pt"
        code, text, _, report = _compress(capsys, trained, out, "linearity", "--threshold", "0.3",
                                          "--layer-rule", rule, "--layer-min", layer_min)
        assert code == 0, text
        assert _step(report, "linearity")["parameters"]["layer_rule"] == rule
        params[layer_min] = sum(int(p.numel()) for p in _written(out))
    original = sum(int(v.numel()) for v in torch.load(trained[1], weights_only=True).values())
    assert params[high] == original  # no layer has that many linear units: nothing rewritten
    assert params[low] < original  # any linear unit counts: layers rewritten


def test_only_proven_fuses_exactly(capsys, trained, tmp_path) -> None:
    """Three units of layer 1 have bias 5 and small weights: active on the whole box
    [-1, 1]^4, so the exact step proves them and linearity --only-proven fuses just them;
    the written model then equals the original on dense box samples."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[:3] *= 0.1
        model[0].bias[:3] = 5.0
        model[0].bias[3:] = 0.0
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 4)), str(path))
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    np.savez(folder / "d.npz", x=rng.uniform(-1, 1, (400, 4)))
    out = tmp_path / "o.pt"
    code, text, _, report = _compress(capsys, (folder, path), out, "exact,linearity", "--only-proven", lower="-1")
    assert code == 0, text
    step = _step(report, "linearity")
    assert step["exact_on_box"] and step["details"]["fused_units"] == step["details"]["fused_exact"] >= 3
    x = torch.tensor(rng.uniform(-1, 1, (20000, 4)), dtype=torch.float32)
    with torch.no_grad():
        assert float((torch.jit.load(str(out))(x) - model(x)).abs().max()) < 1e-4


# -- pq-index -----------------------------------------------------------------------------
def test_sap_default_matches_the_formula(capsys, trained, tmp_path) -> None:
    code, text, _, report = _compress(capsys, trained, tmp_path / "o.pt", "pq-index")
    assert code == 0, text
    assert _sap_pruned(report) == _sap_count(np.concatenate([w.ravel() for w in _weights(trained)]))


@pytest.mark.parametrize("flag, value, key", [("--p", "0.25", "p"), ("--q", "2", "q"), ("--eta-r", "0.5", "eta"),
                                              ("--gamma", "0.5", "gamma"), ("--beta", "0.1", "beta")])
def test_pq_parameters_reach_sap(capsys, trained, tmp_path, flag: str, value: str, key: str) -> None:
    flat = np.concatenate([w.ravel() for w in _weights(trained)])
    expected = _sap_count(flat, **{key: float(value)})
    assert expected != _sap_count(flat)  # the option changes the outcome
    code, text, _, report = _compress(capsys, trained, tmp_path / "o.pt", "pq-index", flag, value)
    assert code == 0, text
    assert _sap_pruned(report) == expected


@pytest.mark.parametrize("scope", ["layer", "neuron"])
def test_scope(capsys, trained, tmp_path, scope: str) -> None:
    ws = _weights(trained)
    groups = ws if scope == "layer" else [row for w in ws for row in w]
    expected = sum(_sap_count(g) for g in groups)
    assert expected != _sap_count(np.concatenate([w.ravel() for w in ws]))
    code, text, _, report = _compress(capsys, trained, tmp_path / "o.pt", "pq-index", "--scope", scope)
    assert code == 0, text
    assert _sap_pruned(report) == expected


def test_rounds_prune_what_is_left(capsys, trained, tmp_path) -> None:
    left = np.sort(np.abs(np.concatenate([w.ravel() for w in _weights(trained)])))
    for _ in range(3):
        left = left[_sap_count(left):]  # each round drops the smallest magnitudes left
    code, text, _, report = _compress(capsys, trained, tmp_path / "o.pt", "pq-index", "--rounds", "3")
    assert code == 0, text
    assert _step(report, "pq-index")["details"]["kept_weights"] == left.size


def test_structure_units_shrinks_the_layers(capsys, trained, tmp_path) -> None:
    code, text, _, report = _compress(capsys, trained, tmp_path / "u.pt", "pq-index", "--structure", "units")
    assert code == 0, text
    hidden = _plain_hidden(tmp_path / "u.pt")
    assert sum(hidden) < 96 and hidden == _step(report, "pq-index")["hidden_units"]["widths_after"]
    code, text, _, _ = _compress(capsys, trained, tmp_path / "w.pt", "pq-index")
    assert code == 0, text
    assert _plain_hidden(tmp_path / "w.pt") == [48, 48]  # SAP zeroes weights, every unit keeps some


# -- dependence ---------------------------------------------------------------------------
def test_budget(capsys, trained, tmp_path) -> None:
    units = {}
    for budget in ("0", "0.3"):
        out = tmp_path / f"b{budget}.pt"
        code, text, _, report = _compress(capsys, trained, out, "dependence", "--budget", budget, "--tol-max", "0.9")
        assert code == 0, text
        details = _step(report, "dependence")["details"]
        base = details["validation_base"]
        assert all(base - r["validation_accuracy"] <= float(budget) for r in details["rounds"] if r["accepted"])
        units[budget] = sum(_plain_hidden(out))
    assert units["0.3"] < units["0"]


def test_tolerance_schedule(capsys, trained, tmp_path) -> None:
    code, text, _, report = _compress(capsys, trained, tmp_path / "o.pt", "dependence", "--budget", "1",
                                      "--tol-start", "0.01", "--tol-factor", "3", "--tol-max", "0.5")
    assert code == 0, text
    tols = [r["tolerance"] for r in _step(report, "dependence")["details"]["rounds"]]
    assert tols == pytest.approx([0.01, 0.03, 0.09, 0.27, 0.5])  # budget 1 accepts every round


def test_metric_and_validation_share(capsys, trained, tmp_path) -> None:
    code, text, _, report = _compress(capsys, trained, tmp_path / "o.pt", "dependence", "--metric", "agreement",
                                      "--validation", "0.5")
    assert code == 0, text
    details = _step(report, "dependence")["details"]
    assert details["metric"] == "agreement" and "validation_agreement" in details["rounds"][0]
    assert details["validation_samples"] == details["fit_samples"] == 1200  # 3000 - 20 % held out, halved


def test_holdout(capsys, trained, tmp_path) -> None:
    code, text, _, report = _compress(capsys, trained, tmp_path / "o.pt", "pq-index", "--holdout", "0.5")
    assert code == 0, text
    assert _step(report, "pq-index")["held_out"]["samples"] == 1500


def test_seed_picks_the_held_out_samples(capsys, trained, tmp_path) -> None:
    """--seed draws the held-out (and validation) samples: other seeds, other samples, so
    the original's held-out accuracy (counted here from the data) changes with it."""
    folder, ckpt = trained
    data = np.load(folder / "d.npz")
    model = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 4))
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    with torch.no_grad():
        correct = (model(torch.tensor(data["x"], dtype=torch.float32)).argmax(1).numpy() == data["y"])
    accuracies = set()
    for seed in ("0", "1", "2"):
        code, text, _, report = _compress(capsys, trained, tmp_path / f"s{seed}.pt", "dependence", "--seed", seed)
        assert code == 0, text
        step = _step(report, "dependence")
        assert step["parameters"]["seed"] == int(seed)
        held = np.sort(np.random.default_rng(int(seed)).permutation(3000)[:600])  # the documented split
        assert step["held_out"]["accuracy_before"] == pytest.approx(correct[held].mean(), abs=1e-6)
        accuracies.add(step["held_out"]["accuracy_before"])
    assert len(accuracies) > 1


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize("method, args", [
    ("linearity", ["--rate", "0"]), ("linearity", ["--rate", "1.5"]), ("linearity", ["--rate", "nan"]),
    ("linearity", ["--step", "0"]), ("linearity", ["--threshold", "1.2"]),
    ("linearity", ["--threshold", "0.5", "--layer-rule", "count", "--layer-min", "-1"]),
    ("linearity", ["--threshold", "0.5", "--layer-rule", "fraction", "--layer-min", "1"]),
    ("linearity", ["--threshold", "0.5", "--layer-min", "nan"]),
    ("pq-index", ["--p", "1"]), ("pq-index", ["--q", "inf"]), ("pq-index", ["--eta-r", "-1"]),
    ("pq-index", ["--gamma", "0"]), ("pq-index", ["--gamma", "inf"]), ("pq-index", ["--eta-r", "inf"]),
    ("pq-index", ["--beta", "0"]), ("pq-index", ["--beta", "1.5"]),
    ("pq-index", ["--rounds", "0"]), ("pq-index", ["--scope", "row"]), ("pq-index", ["--rounds", "two"]),
    ("dependence", ["--budget", "2"]), ("dependence", ["--budget", "-0.1"]), ("dependence", ["--tol-factor", "1"]),
    ("dependence", ["--tol-start", "0.5", "--tol-max", "0.1"]), ("dependence", ["--tol-max", "inf"]),
    ("dependence", ["--validation", "1"]), ("dependence", ["--metric", "loss"]),
    ("pq-index", ["--holdout", "0"]), ("pq-index", ["--holdout", "1"]),
    # options of another method, or of no method in the chain
    ("linearity", ["--scope", "layer"]), ("pq-index", ["--rate", "0.5"]), ("dependence", ["--threshold", "0.5"]),
    ("pq-index", ["--budget", "0.1"]), ("exact", ["--rate", "0.5"]), ("exact", ["--holdout", "0.5"]),
    ("exact", ["--only-proven"]), ("exact,pq-index", ["--tol-max", "0.5"]),
    # linearity's two modes
    ("linearity", ["--threshold", "0.5", "--rate", "0.5"]), ("linearity", ["--layer-rule", "count"]),
])
def test_bad_option_is_one_line_exit_2(capsys, trained, tmp_path, method: str, args: list[str]) -> None:
    out = tmp_path / "o.pt"
    code, text, err, _ = _compress(capsys, trained, out, method, *args)
    assert code == ExitCode.BAD_INPUT
    lines = [ln for ln in err.splitlines() if ln.strip() and "WARNING" not in ln]
    assert len(lines) == 1 and lines[0].startswith("leo: error:"), err
    assert text == "" and not out.exists() and not out.with_name(out.name + ".report.json").exists()


def test_options_of_a_chained_method_are_accepted(capsys, trained, tmp_path) -> None:
    code, text, _, report = _compress(capsys, trained, tmp_path / "o.pt", "pq-index,dependence",
                                      "--scope", "layer", "--budget", "0")
    assert code == 0, text
    assert _step(report, "pq-index")["parameters"]["scope"] == "layer"
    assert _step(report, "dependence")["parameters"]["budget"] == 0


def test_help_groups_the_options_per_method(capsys) -> None:
    assert main(["compress", "--help"]) == 0
    text = capsys.readouterr().out
    sections = {title: text.index(title) for title in ("Options of --method linearity", "Options of --method pq-index",
                                                       "Options of --method dependence")}
    for title, flags in (("Options of --method linearity", ["--rate", "--step", "--threshold", "--layer-rule",
                                                            "--layer-min", "--only-proven"]),
                         ("Options of --method pq-index", ["--structure", "--scope", "--rounds", "--p ", "--q ",
                                                           "--eta-r", "--gamma", "--beta"]),
                         ("Options of --method dependence", ["--budget", "--tol-start", "--tol-factor", "--tol-max",
                                                             "--metric", "--validation"])):
        start = sections[title]
        end = min([v for v in sections.values() if v > start] + [len(text)])
        for flag in flags:
            assert flag in text[start:end], (title, flag)


# -- what each step did -------------------------------------------------------------------
def test_pq_index_says_the_dense_shape_is_kept(capsys, trained, tmp_path) -> None:
    out = tmp_path / "o.pt"
    code, text, _, _ = _compress(capsys, trained, out, "pq-index")
    assert code == 0, text
    m = re.search(r"^step 1 pq-index: dense shape kept, (\d+) weights zeroed \((\d+) of (\d+) parameters nonzero\)",
                  text, re.M)
    assert m, text
    params = _written(out)
    assert int(m.group(1)) == _sap_count(np.concatenate([w.ravel() for w in _weights(trained)]))
    assert int(m.group(2)) == sum(int(torch.count_nonzero(p)) for p in params)
    assert int(m.group(3)) == sum(int(p.numel()) for p in params)


def test_dependence_says_how_many_units_went(capsys, trained, tmp_path) -> None:
    out = tmp_path / "o.pt"
    code, text, _, _ = _compress(capsys, trained, out, "dependence")
    assert code == 0, text
    m = re.search(r"^step 1 dependence: eliminated (\d+) units \(([^)]*)\); tolerance reached ([0-9.e-]+)", text, re.M)
    assert m, text
    hidden = _plain_hidden(out)
    assert int(m.group(1)) == 96 - sum(hidden) > 0
    per_layer = dict(re.findall(r"layer (\d+): (\d+)", m.group(2)))
    assert [48 - int(per_layer.get(str(k), 0)) for k in (1, 2)] == hidden


def test_linearity_says_what_it_fused(capsys, trained, tmp_path) -> None:
    out = tmp_path / "o.pt"
    code, text, _, report = _compress(capsys, trained, out, "linearity")
    assert code == 0, text
    m = re.search(r"^step 1 linearity: fused (\d+) units into skip connections \(([^)]*)\); threshold ([0-9.]+)",
                  text, re.M)
    assert m, text
    step = _step(report, "linearity")
    assert int(m.group(1)) == step["hidden_units"]["before"] - step["hidden_units"]["after"] > 0
    assert sum(int(n) for n in re.findall(r"layer \d+: (\d+)", m.group(2))) == int(m.group(1))
    assert float(m.group(3)) == step["parameters"]["threshold_used"]
