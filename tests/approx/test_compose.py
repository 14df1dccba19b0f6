"""Chains of exact and approximate steps: they run, and only exact steps claim losslessness."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leo.approx.linearity import LinearityOptions
from leo.approx.report import ApproxReport
from leo.reduction.compose import METHODS, ChainOptions, ExactReport, chain_summary, interference, run_chain
from leo.core.domain import make_box
from leo.errors import LeoInputError
from leo.core.network import Network, mlp
from leo.stability.analysis import StabilityOptions

FAST = StabilityOptions(time_limit=10, samples=256)


def _net(rng: np.random.Generator) -> Network:
    """4 -> 12 -> 10 -> 3 with some strongly active and some dead units over [-1, 1]^4."""
    w1 = rng.normal(size=(12, 4)) / 2
    b1 = np.r_[np.full(4, 4.0), np.full(2, -4.0), rng.normal(size=6) * 0.1]
    w2 = rng.normal(size=(10, 12)) / np.sqrt(12)
    b2 = np.r_[np.full(4, 8.0), np.full(2, -8.0), rng.normal(size=4) * 0.1]
    return mlp([w1, w2, rng.normal(size=(3, 10))], [b1, b2, np.zeros(3)])


def _data(net: Network, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1, 1, size=(1500, 4))
    return x, np.argmax(net(x), axis=1)


@pytest.mark.parametrize("methods", [["exact", "linearity"], ["pq-index", "exact"], ["exact", "dependence"],
                                     ["exact"], ["linearity", "pq-index", "dependence"]])
def test_chains_run_and_only_exact_is_lossless(rng: np.random.Generator, methods: list[str]) -> None:
    net = _net(rng)
    box = make_box(-1.0, 1.0, 4)
    data = _data(net, rng)
    out, reports = run_chain(net, box, methods, data, ChainOptions(stability=FAST))
    assert [r.method for r in reports] == methods
    approx_seen = False
    for r in reports:
        if r.method == "exact":
            assert isinstance(r, ExactReport) and r.lossless is True
            assert r.certified is (not approx_seen)  # certified only while every step before was exact
            assert r.to_json()["stable"]["total"] == r.num_stable
        else:
            assert isinstance(r, ApproxReport) and r.lossless is False
            assert r.to_json()["lossless"] is False and r.to_json()["certified"] is False
            approx_seen = True
        json.dumps(r.to_json())
    summary = chain_summary(net, out, reports, data)
    assert summary["lossless"] is (not approx_seen)
    assert out.num_parameters <= net.num_parameters
    if methods == ["exact"]:
        pts = box.sample(20_000, np.random.default_rng(3))
        assert np.abs(out(pts) - net(pts)).max() < 1e-9
        assert reports[0].num_stable >= 12  # the planted active and dead units


def test_exact_then_linearity_fuses_proven_units_exactly(rng: np.random.Generator) -> None:
    net = _net(rng)
    box = make_box(-1.0, 1.0, 4)
    opts = ChainOptions(stability=FAST, linearity=LinearityOptions(only_proven=True))
    out, (exact, lin) = run_chain(net, box, ["exact", "linearity"], _data(net, rng), opts)
    assert exact.num_stable > 0
    assert lin.details["fused_units"] > 0 and lin.exact_on_box  # the surviving proven-active units
    assert not out.is_mlp and out.num_parameters < exact.params_after
    pts = box.sample(20_000, np.random.default_rng(4))
    assert np.abs(out(pts) - net(pts)).max() < 1e-9
    assert lin.lossless is False


def test_methods_table_and_errors(rng: np.random.Generator) -> None:
    assert set(METHODS) == {"exact", "linearity", "dependence", "pq-index"}
    net = _net(rng)
    box = make_box(-1.0, 1.0, 4)
    with pytest.raises(LeoInputError, match="unknown compression method"):
        run_chain(net, box, ["exact", "magic"], None)
    with pytest.raises(LeoInputError, match="need data"):
        run_chain(net, box, "exact,pq-index", None)
    with pytest.raises(LeoInputError, match="box"):
        run_chain(net, None, ["exact"], _data(net, rng))
    with pytest.raises(LeoInputError, match="box has 3 inputs"):
        run_chain(net, make_box(-1.0, 1.0, 3), ["exact"])
    with pytest.raises(LeoInputError, match="values per sample"):
        run_chain(net, box, ["linearity"], np.zeros((20, 5)))
    with pytest.raises(LeoInputError, match="no compression method"):
        run_chain(net, box, [], None)


def test_interference_counts(rng: np.random.Generator) -> None:
    net = _net(rng)
    box = make_box(-1.0, 1.0, 4)
    result = interference(net, box, _data(net, rng), "pq-index", ChainOptions(stability=FAST))
    before = result["exact_alone"]["stable"]
    assert before > 0
    assert result["stable_units_removed"] + result["stable_units_surviving_removal"] == before
    assert 0 <= result["still_stable"] <= result["stable_units_surviving_removal"]
    json.dumps(result)


def test_exact_step_is_the_apis(rng: np.random.Generator) -> None:
    """The chain's exact step and ``leo.compress`` run one function: same verdicts, same
    reduced network; and the reduced network matches the original on dense box samples."""
    from leo.api import compress

    net = _net(rng)
    box = make_box(-1.0, 1.0, 4)
    final, (step,) = run_chain(net, box, ["exact"], None, ChainOptions(stability=FAST))
    api = compress(net, -1.0, 1.0, FAST)
    assert [(lr.active, lr.inactive) for lr in step.stability.layers] == \
           [(lr.active, lr.inactive) for lr in api.report.layers]
    assert final.hidden == api.network.hidden and final.hidden != net.hidden
    for a, b in zip(final.layers, api.network.layers):
        assert a.weights.keys() == b.weights.keys()
        assert all(np.array_equal(a.weights[s], b.weights[s]) for s in a.weights) and np.array_equal(a.bias, b.bias)
    x = box.sample(20000, np.random.default_rng(1))
    assert float(np.abs(final(x) - net(x)).max()) < 1e-9
    assert step.check_points == api.check.points


def test_chain_options_refuse_a_bad_holdout() -> None:
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(LeoInputError, match="holdout"):
            ChainOptions(holdout=bad)
