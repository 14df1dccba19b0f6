"""A report is reused, not redone: given one, the prefix MILP, the exact comparison and
property verification run no second analysis, and give what they give without it."""

from __future__ import annotations

import numpy as np
import pytest

import leo.queries.equivalence
import leo.queries.property
import leo.stability.report
import leo.stability.analysis
from leo.core.domain import make_box
from leo.queries.property import Inequality, OutputProperty, check_property
from leo.stability.analysis import StabilityOptions, analyse, prefix_formulation
from leo.search.witnesses import Witnesses
from tests.conftest import random_mlp


def _no_analysis(monkeypatch) -> None:  # noqa: ANN001
    def forbidden(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a second analysis ran although a report was given")

    for module in (leo.stability.analysis, leo.queries.equivalence):  # leo.queries.property imports it from leo.stability.analysis when it runs
        monkeypatch.setattr(module, "analyse", forbidden)


def _case(seed: int = 3):  # noqa: ANN202
    net = random_mlp(np.random.default_rng(seed), [3, 6, 6, 2], bias_shift=-0.2)
    box = make_box(-1, 1, 3)
    return net, box, analyse(net, box, StabilityOptions(samples=64, time_limit=20))


def test_prefix_formulation_reuses_a_report(monkeypatch):
    net, box, report = _case()
    fresh = prefix_formulation(net, box, 2)
    _no_analysis(monkeypatch)
    reused = prefix_formulation(net, box, 2, report=report)
    assert (fresh.matrix != reused.matrix).nnz == 0 and fresh.num_binaries == reused.num_binaries


def test_compare_exact_reuses_reports(monkeypatch):
    net, box, report = _case()
    fresh = leo.queries.equivalence.compare_exact(net, net, box, time_limit=30)
    _no_analysis(monkeypatch)
    reused = leo.queries.equivalence.compare_exact(net, net, box, time_limit=30, reports=(report, report))
    assert fresh.verdict == reused.verdict == leo.queries.equivalence.Verdict.PROVEN


def test_check_property_with_a_report_runs_no_analysis(monkeypatch):
    net, box, report = _case()
    y = net(box.sample(2000, np.random.default_rng(0)))
    prop = OutputProperty(2, ((Inequality(np.array([-1.0, 0.0]), -(y[:, 0].max() + 10.0)),),))  # y0 >= max + 10
    _no_analysis(monkeypatch)
    result = check_property(net, box, prop, 60.0, report=report, samples=0)
    assert result.sat is False  # proven: y0 never gets that high


@pytest.mark.parametrize("engine", ["unit", "network"])
def test_the_report_carries_every_layers_bounds(monkeypatch, engine):
    """Linear layers too (the output layer here): bounds_and_states computes none, and they
    are the bounds the analysis's own layer bounds give, sound on sampled points."""
    net, box = _case()[:2]
    report = analyse(net, box, StabilityOptions(samples=64, time_limit=20, engine=engine))
    assert len(report.all_bounds) == len(net.layers)
    bare = leo.stability.report.StabilityReport(report.box, report.layers, report.witness_points)  # no all_bounds
    expected = leo.stability.analysis.bounds_and_states(net, box, bare)[0]

    def forbidden(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("bounds recomputed although the report carries them")

    monkeypatch.setattr(leo.stability.analysis, "layer_bounds", forbidden)
    bounds, _ = leo.stability.analysis.bounds_and_states(net, box, report)
    for got, want in zip(bounds, expected):
        assert np.array_equal(got.lower, want.lower) and np.array_equal(got.upper, want.upper)
    zs = net.pre_activations(box.sample(20_000, np.random.default_rng(1)))
    for b, z in zip(bounds, zs):
        assert (z >= b.lower - 1e-9).all() and (z <= b.upper + 1e-9).all()


def test_witness_signs_are_cached_until_points_are_added(rng):
    net = random_mlp(rng, [3, 5, 4, 2])
    box = make_box(-1, 1, 3)
    wit = Witnesses(net, box)
    wit.add(box.sample(50, rng))
    first = wit.signs(1)
    assert all(a is b for a, b in zip(first, wit.signs(1)))  # cached
    wit.add(box.sample(50, rng))
    again = wit.signs(1)
    z = net.pre_activations(wit.points)[1]
    for got, want in zip(again, (z.max(0), z.argmax(0), z.min(0), z.argmin(0))):
        assert np.array_equal(got, want)  # recomputed after the add, over every point
    with pytest.raises(ValueError):
        again[0][0] = 1.0  # shared: read-only
