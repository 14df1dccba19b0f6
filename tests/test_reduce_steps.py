"""The reduction's step log: every form's log, replayed by the audit's own interpreter,
gives the reduced network; the per-layer lists are the log's; ``leo audit`` refuses a log
or summary that lies, and still audits a schema 2 certificate of an earlier version.

Independent truth: the original network's own forward pass on dense samples of the box,
the stability report's verdicts, and the compressed file as written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import leo
from leo.api import as_network
from leo.certify.audit import Refuted, compare, replay
from leo.core.choices import Form
from leo.core.verdicts import Verdict
from leo.io.save import certificate_path
from leo.reduction.reduce import reduce_form
from leo.reduction.steps import Bypass, DeleteUnits, Fold, Merge
from leo.stability.analysis import StabilityOptions
from tests.conftest import random_mlp
from tests.test_audit import _audit, _compress, _foldable, _planted, _save, _write

FAST = StabilityOptions(time_limit=5.0)


def _claims(report) -> dict[int, list[str]]:  # noqa: ANN001 - a StabilityReport
    return {lr.layer: [p.verdict for p in lr.proofs] for lr in report.layers}


def _record(red) -> dict:  # noqa: ANN001 - a Reduction: its certificate form (schema 3)
    return {"steps": red.log_json(), "removed_inactive": [list(u) for u in red.removed_inactive],
            "folded_active": [list(u) for u in red.folded_active], "merged_layers": list(red.merged_layers)}


@pytest.mark.parametrize("form", list(Form))
@pytest.mark.parametrize("shift", [-3.0, 0.0, 3.0])  # whole layers inactive, mixed, whole layers active
def test_each_forms_log_replays_to_its_network(form: Form, shift: float) -> None:
    for seed in range(3):
        net = random_mlp(np.random.default_rng(seed), [3, 6, 5, 4, 2], bias_shift=shift)
        lower, upper = np.full(3, -0.5), np.full(3, 0.5)
        report = leo.verify(net, lower, upper, FAST)
        red = reduce_form(net, report, form)
        x = lower + np.random.default_rng(seed).random((5000, 3)) * (upper - lower)
        assert np.abs(red.network(x) - net(x)).max() < 1e-9
        compare(replay(net, _claims(report), _record(red), red.max_fold_residual), red.network)
        # the per-layer lists are the log's, and match the report's verdicts
        for lr in report.layers:
            assert set(red.removed_inactive[lr.layer - 1]) <= set(lr.inactive)
            assert set(red.folded_active[lr.layer - 1]) | set(red.bypassed_active[lr.layer - 1]) <= set(lr.active)
        if form is Form.FLAT:
            assert sorted(u for units in red.bypassed_active for u in units) == sorted(
                u for lr in report.layers for u in lr.active)


def test_the_log_names_each_kind_of_step_in_order() -> None:
    """Layer 1 of _foldable: unit 1's row is twice unit 0's (a fold), unit 3 inactive."""
    net = as_network(_foldable(), like=np.zeros(3))
    report = leo.verify(net, np.zeros(3), np.ones(3), FAST)
    steps = reduce_form(net, report, Form.LEO).steps
    folds = [s for s in steps if isinstance(s, Fold)]
    assert len(folds) == 1 and folds[0].layer == 1 and sorted(folds[0].units + folds[0].basis) == [0, 1]
    deletes = [s for s in steps if isinstance(s, DeleteUnits)]
    assert all(set(s.units) <= set(report.layer(s.layer).inactive) for s in deletes)
    flat = reduce_form(net, report, Form.FLAT).steps
    assert not any(isinstance(s, Fold) for s in flat)
    assert {u for s in flat if isinstance(s, Bypass) for u in s.units} >= {0, 1}
    assert all(isinstance(s.op, str) for s in steps)  # ops serialise as their names


def test_a_merge_of_a_layer_with_an_unstable_unit_is_refuted() -> None:
    net = random_mlp(np.random.default_rng(1), [3, 6, 5, 4, 2])
    report = leo.verify(net, np.full(3, -0.5), np.full(3, 0.5), FAST)
    layer = next(lr for lr in report.layers if lr.unstable and lr.layer < len(net.layers))
    red = reduce_form(net, report, Form.LEO)
    record = {"steps": red.log_json() + [Merge(layer.layer).to_json()]}
    with pytest.raises(Refuted, match=f"layer {layer.layer} is merged, but not all its units"):
        replay(net, _claims(report), record, red.max_fold_residual)


@pytest.fixture
def compressed(capsys, tmp_path: Path) -> tuple[Path, dict]:
    model = _save(_planted(), tmp_path / "net.pt")
    out = tmp_path / "small.pt"
    cert = _compress(capsys, model, out)
    assert cert["schema"] == 3 and any(s["op"] == "delete" for s in cert["reduction"]["steps"])
    return out, cert


def test_a_log_that_omits_a_step_the_model_made_is_refuted(capsys, tmp_path: Path, compressed) -> None:
    """Every claim true and the summary consistent, but the log no longer deletes units the
    compressed file lacks: the replay gives a wider layer than the file's."""
    out, cert = compressed
    i, step = next((i, s) for i, s in enumerate(cert["reduction"]["steps"]) if s["op"] == "delete")
    del cert["reduction"]["steps"][i]
    cert["reduction"]["removed_inactive"][step["layer"] - 1] = sorted(
        set(cert["reduction"]["removed_inactive"][step["layer"] - 1]) - set(step["units"]))
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1 and f"replay: layer {step['layer']} of the compressed file has" in text


def test_a_log_step_against_the_claims_is_refuted(capsys, tmp_path: Path, compressed) -> None:
    """The log deletes a unit the certificate claims unstable (and the file keeps)."""
    out, cert = compressed
    layer = next(e for e in cert["layers"] if any(u["verdict"] == "unstable" for u in e["units"]))
    j = next(j for j, u in enumerate(layer["units"]) if u["verdict"] == "unstable")
    cert["reduction"]["steps"].insert(0, {"op": "delete", "layer": layer["layer"], "units": [j]})
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1 and f"layer {layer['layer']} unit {j} is removed, but not claimed stably inactive" in text


def test_a_summary_that_disagrees_with_the_log_is_refuted(capsys, tmp_path: Path, compressed) -> None:
    out, cert = compressed
    k = next(k for k, units in enumerate(cert["reduction"]["removed_inactive"], start=1) if units)
    lost = cert["reduction"]["removed_inactive"][k - 1].pop()
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1 and f"layer {k}: removed_inactive leaves out unit {lost}" in text


def test_a_step_on_the_output_layer_is_refuted(capsys, tmp_path: Path, compressed) -> None:
    out, cert = compressed
    cert["reduction"]["steps"].append({"op": "drop-relu", "layer": len(cert["original"]["hidden"]) + 1})
    code, text = _audit(capsys, _write(cert, tmp_path / "t.json"), "--compressed", out)
    assert code == 1 and "cannot apply to the output layer" in text


def test_an_unknown_step_is_bad_input(capsys, tmp_path: Path, compressed) -> None:
    from leo.cli.main import main

    out, cert = compressed
    cert["reduction"]["steps"].append({"op": "teleport", "layer": 1})
    code = main(["audit", str(_write(cert, tmp_path / "t.json")), "--compressed", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "teleport" in err and len(err.strip().splitlines()) == 1


def _schema2(cert: dict) -> dict:
    """The certificate as schema 2 wrote it: per-layer lists and the folds, no log."""
    red = cert["reduction"]
    folds = [{k: s[k] for k in ("layer", "units", "basis", "alpha", "residual")} for s in red["steps"]
             if s["op"] == "fold"]
    old = {k: red[k] for k in ("removed_inactive", "merged_layers", "bypassed_active", "form", "dead_channels",
                               "linear_layers", "units_removed", "compression_pct")}
    return {**cert, "schema": 2, "reduction": {**old, "folds": folds}}


@pytest.mark.parametrize("form", ["leo", "flat"])
def test_a_schema_2_certificate_is_still_audited(capsys, tmp_path: Path, form: str) -> None:
    model = _save(_foldable(), tmp_path / "net.pt")
    out = tmp_path / "small.pt"
    cert = _compress(capsys, model, out, "0", "1", "--form", form)
    code, text = _audit(capsys, _write(_schema2(cert), tmp_path / "v2.json"), "--compressed", out)
    assert code == 0, text
    if form == "leo":
        old = _schema2(cert)
        old["reduction"]["folds"][0]["alpha"][0][0] *= 1.25
        code, text = _audit(capsys, _write(old, tmp_path / "bad.json"), "--compressed", out)
        assert code == 1 and "fold coefficients do not reproduce" in text


def test_the_reduction_log_replays_the_compressed_file(capsys, tmp_path: Path) -> None:
    """The file as written equals the audit's replay of the certificate's log, whichever
    schema carries it; the audit counts the claims as the report made them."""
    model = _save(_planted(3), tmp_path / "net.pt")
    out = tmp_path / "small.onnx"
    cert = _compress(capsys, model, out)
    net, small = leo.io.load_network(model), leo.io.load_network(out)
    claims = {e["layer"]: [Verdict(u["verdict"]) for u in e["units"]] for e in cert["layers"]}
    for record in (cert["reduction"], _schema2(cert)["reduction"]):
        compare(replay(net, claims, record, cert["tolerances"]["fold_residual"]), small)


def test_audit_reads_a_builtin_original_by_name(capsys, tmp_path: Path) -> None:
    """``--original builtin:NAME`` names the model shipped in ``leo/models``."""
    out = tmp_path / "m.onnx"
    _compress(capsys, "builtin:mnist-2x50", out, "0.45", "0.5")
    code, text = _audit(capsys, certificate_path(out), "--original", "builtin:mnist-2x50")
    assert code == 0, text
    assert _audit(capsys, certificate_path(out), "--original", "builtin:no-such-model")[0] == 2
