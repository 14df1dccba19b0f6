"""The analysis's time budget: no solve may run past it, what it cuts short stays
unproven (never stable, so compression stays lossless), and a budget that is never
reached changes no verdict."""

from __future__ import annotations

import time

import numpy as np
import pytest

from leo.domain import make_box
from leo.errors import LeoInputError
from leo.report import UNSTABLE
from leo.stability import StabilityOptions, analyse
from tests.conftest import random_mlp

#: A network whose exact analysis takes seconds (a few MILPs per layer), so that a
#: budget of a fraction of a second binds.
SIZES = [8, 20, 20, 20, 2]
FAST = dict(samples=0, local_search=False)


def _hard():
    net = random_mlp(np.random.default_rng(7), SIZES, bias_shift=-0.2)
    return net, make_box(0, 1, SIZES[0])


@pytest.fixture(scope="module")
def full():
    net, box = _hard()
    return analyse(net, box, StabilityOptions(**FAST))


def _record_solves(monkeypatch) -> list[tuple[float, float]]:
    from solvers.highs_backend import HighsModel

    calls: list[tuple[float, float]] = []
    original = HighsModel.minimise

    def recording(self, cost, threshold, time_limit, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append((time.time(), float(time_limit)))
        return original(self, cost, threshold, time_limit, *args, **kwargs)

    monkeypatch.setattr(HighsModel, "minimise", recording)
    return calls


def _assert_sound_subset(report, full, net, box) -> None:
    """Budgeted verdicts: stable only where the exact analysis says so, and never
    contradicted by a dense sample; what the budget cut short is unstable without witnesses."""
    zs = net.pre_activations(box.sample(100_000, np.random.default_rng(0)))
    for lr, ref in zip(report.layers, full.layers):
        z = zs[lr.layer - 1]
        assert set(lr.active) <= set(ref.active) and set(lr.inactive) <= set(ref.inactive)
        assert np.all(z[:, lr.active] >= 0) and np.all(z[:, lr.inactive] <= 0)
        for p in lr.proofs:
            if p.method in ("budget", "timeout"):
                assert p.verdict == UNSTABLE and p.witness is None


@pytest.mark.parametrize("engine", ["unit", "network"])
def test_no_solve_runs_past_the_budget(engine, full, monkeypatch):
    net, box = _hard()
    budget = 0.3
    calls = _record_solves(monkeypatch)
    end = time.time() + budget
    report = analyse(net, box, StabilityOptions(engine=engine, time_budget=budget, **FAST))
    assert calls, "no solver call: the test would not see the budget"
    late = [(t, limit) for t, limit in calls if t + limit > end + 0.05]
    assert not late, f"solves allowed past the budget: {late[:3]}"
    # the budget binds here: the exact analysis proves more
    assert report.num_unproven > 0 and report.num_stable < full.num_stable
    _assert_sound_subset(report, full, net, box)


def test_spent_budget_marks_open_units_budget(full):
    net, box = _hard()
    report = analyse(net, box, StabilityOptions(time_budget=1e-4, **FAST))
    methods = [p.method for lr in report.layers for p in lr.proofs]
    assert "budget" in methods and "milp" not in methods and "lp-cuts" not in methods
    assert report.num_unproven == methods.count("budget")
    _assert_sound_subset(report, full, net, box)


@pytest.mark.parametrize("workers", [1, 2])
def test_unreached_budget_changes_nothing(workers):
    """A generous budget gives the verdicts of no budget, on one process and on two
    (where a budget gives one chunk per worker instead of two)."""
    net = random_mlp(np.random.default_rng(7), [6, 16, 16, 16, 2], bias_shift=-0.2)
    box = make_box(0, 1, 6)
    plain = analyse(net, box, StabilityOptions(**FAST))
    budgeted = analyse(net, box, StabilityOptions(time_budget=1e4, workers=workers, **FAST))
    assert plain.solves > 0
    assert budgeted.settings["time_budget"] == 1e4
    for a, b in zip(plain.layers, budgeted.layers):
        assert (a.active, a.inactive) == (b.active, b.inactive)
        assert "budget" not in b.methods()


@pytest.mark.parametrize("budget", [0.0, -1.0])
def test_budget_must_be_positive(budget):
    with pytest.raises(LeoInputError, match="budget"):
        StabilityOptions(time_budget=budget)
