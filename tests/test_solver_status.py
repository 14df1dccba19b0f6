"""Every HiGHS status maps to an explicit outcome, and only a proof gives a bound.

Reachable statuses are produced by real solves; the others are injected into a real
model's run (HiGHS cannot be made to fail on demand), so the mapping code that runs is
the production ``HighsModel.minimise``.
"""

import math
import os
import subprocess
import sys

import highspy
import numpy as np
import pytest

from solvers.highs_backend import STATUS_OUTCOME, HighsModel, new_highs, outcome
from solvers.result import SolveStatus
from tests.conftest import random_prefix

S = highspy.HighsModelStatus
ALL_STATUSES = [getattr(S, n) for n in dir(S) if n.startswith("k")]


def _unit_cost(formulation, rng):
    """Minimise a random unit of the last layer of the prefix."""
    return formulation.objective(2, int(rng.integers(4)), 1.0)


def test_every_highs_status_is_mapped():
    missing = [s for s in ALL_STATUSES if s not in STATUS_OUTCOME]
    assert not missing, f"statuses without an explicit outcome: {missing}"


def test_unknown_status_proves_nothing():
    assert outcome(object()) is SolveStatus.ERROR


def test_optimal_gives_the_true_minimum():
    rng, net, box, f = random_prefix(0)
    cost = _unit_cost(f, rng)
    res = HighsModel(f).minimise(cost, threshold=None, time_limit=30)
    assert res.status is SolveStatus.OPTIMAL
    assert res.bound == pytest.approx(res.incumbent, abs=1e-7)


def test_infeasible_under_cutoff_proves_the_threshold():
    rng, net, box, f = random_prefix(1)
    cost = _unit_cost(f, rng)
    model = HighsModel(f)
    true_min = model.minimise(cost, threshold=None, time_limit=30).incumbent
    res = model.minimise(cost, threshold=true_min - 0.5, time_limit=30)
    assert res.status is SolveStatus.OPTIMAL and res.bound == pytest.approx(true_min - 0.5)
    assert res.bound <= true_min


def test_interrupt_on_an_incumbent_below_the_threshold_proves_nothing_above_the_minimum():
    rng, net, box, f = random_prefix(2)
    cost = _unit_cost(f, rng)
    model = HighsModel(f)
    true_min = model.minimise(cost, threshold=None, time_limit=30).incumbent
    res = model.minimise(cost, threshold=true_min + 10.0, time_limit=30)
    assert res.status in (SolveStatus.INTERRUPTED, SolveStatus.OPTIMAL)
    assert res.bound <= true_min + 1e-7


@pytest.mark.parametrize("relax", [False, True])
def test_time_limit_gives_no_bound_above_the_minimum(relax):
    rng, net, box, f = random_prefix(3)
    cost = _unit_cost(f, rng)
    model = HighsModel(f, relax=relax)
    true_min = HighsModel(f, relax=relax).minimise(cost, threshold=None, time_limit=30).incumbent
    res = model.minimise(cost, threshold=None, time_limit=1e-9)
    if res.status is SolveStatus.TIME_LIMIT:
        assert res.bound <= true_min + 1e-7
        if relax:
            assert res.bound == -math.inf  # an LP stopped early proves nothing
    else:  # solved before the clock was read
        assert res.status is SolveStatus.OPTIMAL


@pytest.mark.parametrize("status", [s for s in ALL_STATUSES
                                    if s not in (S.kOptimal, S.kInterrupt, S.kHighsInterrupt, S.kTimeLimit)])
@pytest.mark.parametrize("relax", [False, True])
def test_other_statuses_prove_nothing(status, relax, monkeypatch):
    """Each non-proving status, as HiGHS would report it after a run: no bound, no proof."""
    rng, net, box, f = random_prefix(4)
    cost = _unit_cost(f, rng)
    model = HighsModel(f, relax=relax)
    monkeypatch.setattr(model.highs, "getModelStatus", lambda: status)
    res = model.minimise(cost, threshold=None, time_limit=30)
    assert res.status is SolveStatus.ERROR
    assert res.bound == -math.inf


def test_infeasible_without_cutoff_is_an_error_not_a_proof(monkeypatch):
    rng, net, box, f = random_prefix(5)
    model = HighsModel(f)
    monkeypatch.setattr(model.highs, "getModelStatus", lambda: S.kInfeasible)
    res = model.minimise(_unit_cost(f, rng), threshold=None, time_limit=30)
    assert res.status is SolveStatus.ERROR and res.bound == -math.inf


def test_no_banner_on_stdout():
    """HiGHS 1.16 prints a banner from C when a process makes its first instance."""
    code = "from solvers.highs_backend import new_highs; new_highs(); new_highs(); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout == "ok\n"


def test_new_highs_is_quiet_and_usable():
    h = new_highs()
    assert h.getOptionValue("output_flag")[1] is False
