"""The branch-and-bound phase of the stability analysis (``leo.bab.input_split`` before the MILPs).

Independent truth: exact pre-activation ranges by one LP per activation pattern (tiny
networks, ``conftest.exact_ranges``), dense sampling with numpy's forward pass, and
``leo audit`` (scipy, no code shared with the prover) on a certificate with branch claims."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import exact_ranges, random_mlp
from leo.cli.main import main
from leo.core.domain import make_box
from leo.io.save import certificate_path
from leo.core.network import Network
from leo.stability.report import StabilityReport
from leo.stability.analysis import StabilityOptions, analyse
from leo.stability.stages import BRANCH_BINARIES, Phase
from leo.core.verdicts import Verdict

torch.set_num_threads(1)

#: Few witness samples and no local search, so units reach the branch phase; no budget, so the
#: analysis is exact (the MILP decides what the phase leaves open).
OPTS = dict(samples=16, local_search=False, seed=0)
NETS = [(seed, sizes, shift) for seed, (sizes, shift) in enumerate(
    [([2, 4, 4, 3, 1], 0.3), ([3, 4, 4, 3, 2], -0.3), ([4, 5, 4, 1], 0.5), ([2, 4, 5, 3, 1], -0.5),
     ([3, 5, 5, 1], 0.0), ([4, 4, 4, 4, 2], 0.2)])]


@functools.cache
def _ranges(seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ranges of layer ``k`` of net ``seed`` (enumeration is the slow part: once per layer)."""
    net, box = _net(*NETS[seed])
    return exact_ranges(net, box.lower, box.upper, k)


def _net(seed: int, sizes: list[int], shift: float) -> tuple[Network, object]:
    net = random_mlp(np.random.default_rng(100 + seed), sizes, bias_shift=shift)
    return net, make_box(-1, 1, sizes[0])


def _claims(report: StabilityReport) -> dict[tuple[int, int], tuple[str, str]]:
    """(layer 0-based, unit) -> (verdict, method) of every unit."""
    return {(lr.layer - 1, j): (str(p.verdict), str(p.method)) for lr in report.layers for j, p in enumerate(lr.proofs)}


def _truth(seed: int, net: Network) -> dict[tuple[int, int], str]:
    """Exact verdicts: active when the exact minimum is >= 0, inactive when the maximum is <= 0."""
    out = {}
    for k, ly in enumerate(net.layers):
        if not ly.relu:
            continue
        lo, hi = _ranges(seed, k)
        for j in range(ly.width):
            out[(k, j)] = "active" if lo[j] >= 0 else "inactive" if hi[j] <= 0 else "unstable"
    return out


def _agrees(claims: dict, seed: int, net: Network) -> None:
    """Stable claims are exactly right; units exactly stable beyond a small gap are claimed."""
    truth = _truth(seed, net)
    for key, (verdict, method) in claims.items():
        if verdict != "unstable":
            assert verdict == truth[key], f"{key}: claimed {verdict} by {method}, exact {truth[key]}"
    gap = 1e-4
    for k, ly in enumerate(net.layers):
        if not ly.relu:
            continue
        lo, hi = _ranges(seed, k)
        for j in range(ly.width):
            if lo[j] > gap or hi[j] < -gap:
                assert claims[(k, j)][0] != "unstable", f"{(k, j)} exactly stable, range [{lo[j]}, {hi[j]}]"


def test_verdicts_with_the_phase_agree_with_enumeration_and_branch_claims_are_right() -> None:
    branch_claims = 0
    for seed, sizes, shift in NETS:
        net, box = _net(seed, sizes, shift)
        claims = _claims(analyse(net, box, StabilityOptions(branch=True, **OPTS)))
        truth = _truth(seed, net)
        _agrees(claims, seed, net)
        for key, (verdict, method) in claims.items():
            if method == "branch":
                branch_claims += 1
                assert verdict in ("active", "inactive") and verdict == truth[key]
    assert branch_claims >= 3  # the phase did decide units (else this test checks nothing about it)


def test_no_stable_claim_is_contradicted_by_dense_sampling() -> None:
    rng = np.random.default_rng(1)
    for seed, sizes, shift in NETS:
        net, box = _net(seed, sizes, shift)
        report = analyse(net, box, StabilityOptions(branch=True, **OPTS))
        zs = net.pre_activations(np.vstack([box.sample(100_000, rng), box.corners(16)]))
        for lr in report.layers:
            z = zs[lr.layer - 1]
            for j in lr.active:
                assert z[:, j].min() >= 0, (seed, lr.layer, j, str(lr.proofs[j].method))
            for j in lr.inactive:
                assert z[:, j].max() <= 0, (seed, lr.layer, j, str(lr.proofs[j].method))


def test_no_branch_changes_nothing_and_runs_no_branch_phase() -> None:
    for seed, sizes, shift in NETS:
        net, box = _net(seed, sizes, shift)
        events: list = []
        off = _claims(analyse(net, box, StabilityOptions(branch=False, **OPTS), progress=events.append))
        assert all(e.phase != Phase.BRANCH for e in events)
        assert all(method != "branch" for _, method in off.values())
        _agrees(off, seed, net)
        on = _claims(analyse(net, box, StabilityOptions(branch=True, **OPTS)))
        assert {key: v for key, (v, _) in off.items()} == {key: v for key, (v, _) in on.items()}


def test_auto_turns_the_phase_on_for_few_inputs_and_hard_milps_only() -> None:
    auto = StabilityOptions()  # the default is auto
    assert auto.branch is None
    assert auto.branches(5, BRANCH_BINARIES) and not auto.branches(5, BRANCH_BINARIES - 1)
    assert not auto.branches(784, 10 * BRANCH_BINARIES)
    assert not StabilityOptions(branch=False).branches(5, 100) and StabilityOptions(branch=True).branches(784, 0)
    net = random_mlp(np.random.default_rng(3), [20, 8, 8, 1], bias_shift=0.3)
    events: list = []
    report = analyse(net, make_box(-1, 1, 20), StabilityOptions(branch=None, **OPTS), progress=events.append)
    assert all(e.phase != Phase.BRANCH for e in events)
    assert all(str(p.method) != "branch" for lr in report.layers for p in lr.proofs)


def test_the_phase_respects_the_budget() -> None:
    net = random_mlp(np.random.default_rng(4), [3, 30, 30, 30, 30, 1], bias_shift=0.2)
    t0 = time.perf_counter()
    analyse(net, make_box(-1, 1, 3), StabilityOptions(branch=True, time_budget=3.0, **OPTS))
    assert time.perf_counter() - t0 < 3.0 + 2.0


# -- leo audit ---------------------------------------------------------------------

def _model() -> nn.Sequential:
    """x in [-1,1]^2; layer 1 = (x0, -x0, x0, -x0, x1) (unstable); layer 2 unit 0 = 0.5 + h0 + h1 - h2 - h3
    is 0.5 everywhere (h0 = h2, h1 = h3), unit 1 = -0.5 + the same, unit 2 = h4 - 0.2 (unstable).
    Interval and symbolic bounds treat h0 and h2 as independent; splitting x0 at 0 proves both."""
    w1 = np.array([[1.0, 0], [-1, 0], [1, 0], [-1, 0], [0, 1]])
    w2 = np.array([[1.0, 1, -1, -1, 0], [1, 1, -1, -1, 0], [0, 0, 0, 0, 1]])
    layers = [(w1, np.zeros(5)), (w2, np.array([0.5, -0.5, -0.2])), (np.array([[1.0, -1.0, 1.0]]), np.zeros(1))]
    mods: list[nn.Module] = []
    for w, b in layers:
        lin = nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w))
            lin.bias.copy_(torch.tensor(b))
        mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods[:-1])


def _run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out + err


@pytest.fixture
def branch_certificate(capsys, tmp_path) -> tuple[Path, Path, dict]:
    model = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(_model(), torch.zeros(1, 2, dtype=torch.float64)), str(model))
    out = tmp_path / "small.pt"
    code, text = _run(capsys, "compress", model, "--lower", "-1", "--upper", "1", "-o", out, "-q", "--branch")
    assert code == 0, text
    cert = json.loads(certificate_path(out).read_text())
    return out, certificate_path(out), cert


def _branch_units(cert: dict) -> list[tuple[dict, int]]:
    return [(entry, j) for entry in cert["layers"] for j, u in enumerate(entry["units"]) if u["method"] == "branch"]


def test_audit_accepts_a_certificate_with_branch_claims(capsys, branch_certificate) -> None:
    out, path, cert = branch_certificate
    claimed = {(e["layer"], j): e["units"][j]["verdict"] for e, j in _branch_units(cert)}
    assert claimed == {(2, 0): "active", (2, 1): "inactive"}  # as the model is built
    code, text = _run(capsys, "audit", path, "--compressed", out)
    assert code == 0, text


def test_audit_rejects_a_flipped_branch_verdict(capsys, tmp_path, branch_certificate) -> None:
    out, _, cert = branch_certificate
    entry, j = _branch_units(cert)[0]
    unit = entry["units"][j]
    unit["verdict"] = "inactive" if unit["verdict"] == "active" else "active"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(cert))
    code, text = _run(capsys, "audit", forged, "--compressed", out)
    assert code == 1, text


def test_network_engine_with_the_phase_agrees_with_enumeration() -> None:
    for seed, sizes, shift in NETS[:3]:
        net, box = _net(seed, sizes, shift)
        _agrees(_claims(analyse(net, box, StabilityOptions(engine="network", branch=True, **OPTS))), seed, net)


def test_auto_runs_the_phase_by_default_on_a_layer_with_many_binaries_before_it() -> None:
    """Five inputs and a first layer of 40 units, most of them unstable on the box: layer 2's
    MILPs carry >= BRANCH_BINARIES binaries, so the default (auto) runs the phase there, not on
    layer 1 (no binaries before it); its claims agree with the exact truth."""
    net = random_mlp(np.random.default_rng(5), [5, 40, 6, 1], bias_shift=0.0)
    box = make_box(-1, 1, 5)
    events: list = []
    report = analyse(net, box, StabilityOptions(**OPTS), progress=events.append)
    assert sum(v == Verdict.UNSTABLE for v in report.layers[0].states) >= BRANCH_BINARIES
    assert {e.layer for e in events if e.phase == Phase.BRANCH} == {2}
    z = net.pre_activations(box.sample(20_000, np.random.default_rng(0)))
    for k, lr in enumerate(report.layers):  # every stable claim holds on dense samples
        for j, v in enumerate(lr.states):
            assert v != Verdict.ACTIVE or z[k][:, j].min() >= 0
            assert v != Verdict.INACTIVE or z[k][:, j].max() <= 0
