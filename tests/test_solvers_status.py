"""Typed statuses: why a solve stopped (``Termination``) apart from what it holds
(``SolutionStatus``) and from what leo may conclude (``SolveStatus``), on every installed
back-end, against independent truth (problems infeasible, unbounded or feasible by
construction, and scipy's own LP/MILP solvers)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from solvers import backend
from solvers.backend import available, new_model
from solvers.problem import Problem
from solvers.result import (CONCLUSION, PROVES_CUTOFF, Raw, SolutionStatus, SolveStatus, Termination, conclude)

SOLVERS = available()


def _problem(a, lo, hi, col_lo, col_hi, integer=None) -> Problem:
    a = sp.csr_matrix(np.atleast_2d(np.asarray(a, dtype=float)))
    n = a.shape[1]
    return Problem(a, np.asarray(lo, float), np.asarray(hi, float), np.asarray(col_lo, float),
                   np.asarray(col_hi, float), np.zeros(n, bool) if integer is None else np.asarray(integer, bool),
                   tuple(f"v{i}" for i in range(n)))


@pytest.mark.parametrize("solver", SOLVERS)
def test_every_native_status_has_a_termination_and_the_conclusion_follows_from_it(solver):
    module = importlib.import_module(backend._MODULES[solver])
    assert set(module.TERMINATION) == set(module.STATUS_OUTCOME)
    for status, why in module.TERMINATION.items():
        assert isinstance(why, Termination)
        assert module.outcome(status) is CONCLUSION[why]
    assert module.termination(object()) is Termination.UNKNOWN
    # the table tells infeasible apart from the other failures
    assert Termination.INFEASIBLE in module.TERMINATION.values()


def test_every_termination_has_a_conclusion():
    assert set(CONCLUSION) == set(Termination)
    proving = {t for t, s in CONCLUSION.items() if s is not SolveStatus.ERROR}
    assert proving == {Termination.OPTIMAL, Termination.TIME_LIMIT, Termination.INTERRUPTED}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("relax", [True, False])
def test_an_infeasible_model_is_infeasible_not_an_error_and_proves_nothing_to_minimise(solver, relax):
    """x0 + x1 >= 3 with x in [0, 1]^2 (x1 binary unless relaxed): no point at all."""
    p = _problem([[1.0, 1.0]], [3.0], [np.inf], [0, 0], [1, 1], [False, True])
    res = new_model(p, relax=relax, solver=solver).minimise(np.array([1.0, 0.0]), None, 30)
    assert res.termination in (Termination.INFEASIBLE, Termination.INFEASIBLE_OR_UNBOUNDED)
    assert res.status is SolveStatus.ERROR and res.bound == -math.inf  # minimise trusts no infeasibility
    assert res.solution is SolutionStatus.NONE and res.point is None
    answer = new_model(p, relax=relax, solver=solver).feasibility(30)
    assert answer.proven_infeasible and answer.point is None


@pytest.mark.parametrize("solver", SOLVERS)
def test_an_unbounded_lp_proves_no_bound(solver):
    p = _problem([[1.0, -1.0]], [-np.inf], [0.0], [-np.inf, -np.inf], [np.inf, np.inf])
    res = new_model(p, relax=True, solver=solver).minimise(np.array([-1.0, 0.0]), None, 30)
    assert res.termination in (Termination.UNBOUNDED, Termination.INFEASIBLE_OR_UNBOUNDED)
    assert res.bound == -math.inf and res.status is SolveStatus.ERROR


def _random_lp(seed: int):
    rng = np.random.default_rng(seed)
    n, m = 5, 6
    a = rng.normal(size=(m, n))
    x0 = rng.uniform(-1, 1, n)
    slack = rng.uniform(0, 0.5, m)
    return a, a @ x0 - slack, a @ x0 + slack, -np.ones(n), np.ones(n), rng.normal(size=n)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("seed", range(3))
def test_an_lp_optimum_is_optimal_in_both_statuses_and_equals_scipy(solver, seed):
    a, lo, hi, cl, cu, c = _random_lp(seed)
    truth = linprog(c, A_ub=np.vstack([a, -a]), b_ub=np.concatenate([hi, -lo]), bounds=list(zip(cl, cu)),
                    method="highs")
    res = new_model(_problem(a, lo, hi, cl, cu), relax=True, solver=solver).minimise(c, None, 30)
    assert res.termination is Termination.OPTIMAL and res.solution is SolutionStatus.OPTIMAL
    assert res.bound == pytest.approx(truth.fun, abs=1e-6) and res.incumbent == pytest.approx(truth.fun, abs=1e-6)


def _random_milp(seed: int):
    rng = np.random.default_rng(100 + seed)
    n, m = 6, 5
    a = rng.normal(size=(m, n))
    integer = np.arange(n) % 2 == 1
    cl, cu = -np.ones(n), np.ones(n)
    cl[integer], cu[integer] = 0.0, 1.0
    hi = rng.normal(size=m) * 0.8 - 0.6  # tight: some seeds have no point at all
    return a, np.full(m, -np.inf), hi, cl, cu, integer


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("seed", range(8))
def test_feasibility_agrees_with_scipy(solver, seed):
    a, lo, hi, cl, cu, integer = _random_milp(seed)
    truth = milp(np.zeros(a.shape[1]), constraints=LinearConstraint(a, lo, hi), integrality=integer.astype(int),
                 bounds=Bounds(cl, cu))
    model = new_model(_problem(a, lo, hi, cl, cu, integer), solver=solver)
    answer = model.feasibility(30)
    if truth.status == 2:  # scipy: infeasible
        assert answer.proven_infeasible
    else:
        assert truth.status == 0 and answer.point is not None and answer.solution is SolutionStatus.OPTIMAL
        x = answer.point
        assert np.all(a @ x <= hi + 1e-6) and np.all(x >= cl - 1e-9) and np.all(x <= cu + 1e-9)
        assert np.allclose(x[integer], np.round(x[integer]), atol=1e-6)
        assert not answer.proven_infeasible


def test_the_shared_post_processing():
    """``conclude``'s rule, once for every back-end: a cutoff proven by a search that found
    nothing below it; a MIP's dual bound kept on a stop leo asked for (capped at the cutoff);
    an LP's only at an optimum; nothing on an error; an incumbent never a bound."""
    for why in PROVES_CUTOFF:
        res = conclude(Raw(why, True, -5.0, math.inf, None, 0.1), cutoff=0.25)
        assert (res.status, res.bound, res.solution) == (SolveStatus.OPTIMAL, 0.25, SolutionStatus.NONE)
        res = conclude(Raw(why, True, -5.0, math.inf, None, 0.1), cutoff=None)
        assert res.status is SolveStatus.ERROR and res.bound == -math.inf and res.termination is why
    res = conclude(Raw(Termination.TIME_LIMIT, True, 0.9, 1.5, np.zeros(2), 0.1), cutoff=0.5)
    assert res.bound == 0.5 and res.solution is SolutionStatus.FEASIBLE and res.incumbent == 1.5
    res = conclude(Raw(Termination.TIME_LIMIT, False, 0.9, 1.5, np.zeros(2), 0.1), cutoff=None)
    assert res.bound == -math.inf
    res = conclude(Raw(Termination.OPTIMAL, False, -math.inf, 1.5, np.zeros(2), 0.1), cutoff=None)
    assert res.bound == 1.5 and res.solution is SolutionStatus.OPTIMAL
    res = conclude(Raw(Termination.NUMERICAL_ERROR, True, 0.9, 1.5, np.zeros(2), 0.1), cutoff=None)
    assert res.bound == -math.inf and res.status is SolveStatus.ERROR and res.point is not None
    res = conclude(Raw(Termination.OPTIMAL, True, 1e30, math.inf, None, 0.1), cutoff=None, infinity=1e30)
    assert res.bound == -math.inf  # the solver's infinity is no bound
