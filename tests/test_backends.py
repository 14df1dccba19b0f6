"""Every installed solver back-end (solvers/backend.py) against independent truth.

Truth: exact ranges of a unit by enumerating activation patterns with scipy's linprog
(tests/conftest.exact_ranges), dense sampling, and the network's own forward pass. The
problems are leo's production encodings (``leo.stability.analysis.prefix_formulation``), small
enough for Gurobi's size-limited pip licence. A back-end that is not installed here is
skipped (``available()``), never faked.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math

import numpy as np
import pytest
import scipy.sparse as sp

from leo.core.domain import make_box
from leo.stability.analysis import StabilityOptions, prefix_formulation
from solvers import backend
from solvers.backend import available, backend_version, new_model
from solvers.result import SolveStatus
from tests.conftest import exact_ranges, random_mlp

SOLVERS = available()
LAYER = 2  # the unit layer of the 3-3-4-3 networks below (0-based)
TOL = 1e-6


def _each_solver(test):
    return pytest.mark.parametrize("solver", SOLVERS)(test)


@functools.cache
def _case(seed: int):
    """A 3-3-4-3 network on [-1, 1]^3, the production MILP of its layer 3 and the exact
    range of every unit of that layer (2^7 activation patterns, one LP each)."""
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 3, 4, 3], bias_shift=float(rng.choice([-0.3, 0.0, 0.3])))
    box = make_box(-1, 1, 3)
    options = StabilityOptions(samples=0, local_search=False, time_limit=30)
    problem = prefix_formulation(net, box, LAYER, options)
    lo, hi = exact_ranges(net, box.lower, box.upper, LAYER)
    return net, box, problem, lo, hi


def _cost(problem, unit: int, sign: float) -> np.ndarray:
    c = np.zeros(problem.num_cols)
    c[problem.z_cols[LAYER][unit]] = sign
    return c


class _Status:
    """Forwards everything to a solver object but reports a chosen status."""

    def __init__(self, inner, name: str, value) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_value", value)

    def __getattr__(self, attr):
        if attr == self._name:
            value = self._value
            return (lambda: value) if callable(getattr(self._inner, attr)) else value
        return getattr(self._inner, attr)

    def __setattr__(self, attr, value) -> None:
        setattr(self._inner, attr, value)


# -- the registry --------------------------------------------------------------------

def test_highs_is_always_available_and_listed_first():
    assert SOLVERS[0] == "highs"
    assert set(SOLVERS) <= set(backend.SOLVERS)


def test_available_matches_what_imports():
    for name, package in (("scip", "pyscipopt"), ("gurobi", "gurobipy")):
        if importlib.util.find_spec(package) is None:
            assert name not in SOLVERS


def test_unknown_solver_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="unknown solver 'cplex'; choose one of highs, scip, gurobi") as info:
        new_model(_case(0)[2], solver="cplex")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("solver, package", [("scip", "pyscipopt"), ("gurobi", "gurobipy")])
def test_missing_solver_names_the_pip_extra(solver, package, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(ValueError, match=rf"pip install 'leo\[{solver}\]'"):
        new_model(_case(0)[2], solver=solver)
    with pytest.raises(ValueError, match=rf"pip install 'leo\[{solver}\]'"):
        backend_version(solver)
    assert solver not in available()


@pytest.mark.skipif(importlib.util.find_spec("gurobipy") is None, reason="gurobipy not installed")
def test_gurobi_without_a_working_licence_is_not_available(monkeypatch):
    import gurobipy

    def refuse(*args, **kwargs):
        raise gurobipy.GurobiError(10009, "No Gurobi license found\n(details)")

    backend._gurobi_licensed.cache_clear()
    monkeypatch.setattr(gurobipy, "Env", refuse)
    try:
        assert "gurobi" not in available()
        with pytest.raises(ValueError, match="gurobi is installed but cannot solve under its licence") as info:
            new_model(_case(0)[2], solver="gurobi")
        assert "\n" not in str(info.value)
    finally:
        backend._gurobi_licensed.cache_clear()


@_each_solver
@pytest.mark.parametrize("relax", [False, True])
def test_every_backend_has_the_model_surface(solver, relax):
    from solvers.backend import Model

    model = new_model(_case(0)[2], relax=relax, solver=solver)
    assert isinstance(model, Model)
    assert model.num_rows == _case(0)[2].matrix.shape[0]


@_each_solver
def test_backend_version_names_the_solver(solver):
    text = backend_version(solver)
    assert text.split()[0].lower() == solver and any(ch.isdigit() for ch in text)


# -- solves against independent truth ------------------------------------------------

@_each_solver
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_and_max_of_every_unit_equal_the_exact_range(solver, seed):
    net, box, problem, lo, hi = _case(seed)
    model = new_model(problem, solver=solver)
    sampled = net.pre_activations(box.sample(20_000, np.random.default_rng(seed)))[LAYER]
    for j in range(lo.size):
        low = model.minimise(_cost(problem, j, 1.0), threshold=None, time_limit=30)
        high = model.minimise(_cost(problem, j, -1.0), threshold=None, time_limit=30)
        assert low.status is SolveStatus.OPTIMAL and high.status is SolveStatus.OPTIMAL
        assert low.bound == pytest.approx(lo[j], abs=TOL) and -high.bound == pytest.approx(hi[j], abs=TOL)
        assert low.bound <= sampled[:, j].min() + TOL and -high.bound >= sampled[:, j].max() - TOL


@_each_solver
@pytest.mark.parametrize("seed", [0, 1])
def test_lp_relaxation_is_a_lower_bound_and_agrees_across_backends(solver, seed):
    net, box, problem, lo, hi = _case(seed)
    model = new_model(problem, relax=True, solver=solver)
    reference = new_model(problem, relax=True, solver="highs")
    for j in range(lo.size):
        res = model.minimise(_cost(problem, j, 1.0), threshold=None, time_limit=30)
        ref = reference.minimise(_cost(problem, j, 1.0), threshold=None, time_limit=30)
        assert res.status is SolveStatus.OPTIMAL and res.nodes == 0
        assert res.bound <= lo[j] + TOL and res.bound == pytest.approx(ref.bound, abs=TOL)


@_each_solver
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("offset", [-0.3, -1e-3, 1e-3, 0.3])
def test_threshold_early_stops_are_sound(solver, seed, offset):
    """Below the minimum the answer is yes (a proven bound of at least the threshold);
    above it no bound above the minimum, and an incumbent below the threshold is a real
    input whose forward pass confirms it."""
    net, box, problem, lo, hi = _case(seed)
    model = new_model(problem, solver=solver)
    for j in range(lo.size):
        threshold = lo[j] + offset
        points: list[np.ndarray] = []
        res = model.minimise(_cost(problem, j, 1.0), threshold=threshold, time_limit=30, on_point=points.append)
        assert res.bound <= lo[j] + TOL
        if offset < 0:
            assert res.bound >= threshold - TOL
        else:
            assert res.bound < threshold
        if math.isfinite(res.incumbent):
            z = net.pre_activations(res.point[None, :])[LAYER][0, j]
            assert np.all(res.point >= box.lower - TOL) and np.all(res.point <= box.upper + TOL)
            assert z == pytest.approx(res.incumbent, abs=1e-5)
        for v in points:  # incumbents as full column vectors, inputs inside the box
            assert v.shape == (problem.num_cols,)
            x = v[problem.x_cols]
            assert np.all(x >= box.lower - TOL) and np.all(x <= box.upper + TOL)


@_each_solver
def test_set_bounds_fixing_the_input_gives_the_forward_pass(solver):
    net, box, problem, lo, hi = _case(0)
    model = new_model(problem, solver=solver)
    rng = np.random.default_rng(7)
    for x in box.sample(3, rng):
        model.set_bounds(problem.x_cols, x, x)
        z = net.pre_activations(x[None, :])[LAYER][0]
        for j in range(z.size):
            res = model.minimise(_cost(problem, j, 1.0), threshold=None, time_limit=30)
            assert res.status is SolveStatus.OPTIMAL and res.bound == pytest.approx(z[j], abs=1e-5)
    model.set_bounds(problem.x_cols, box.lower, box.upper)
    res = model.minimise(_cost(problem, 0, 1.0), threshold=None, time_limit=30)
    assert res.bound == pytest.approx(lo[0], abs=TOL)


@_each_solver
@pytest.mark.parametrize("relax", [False, True])
def test_added_rows_cut_and_truncated_rows_restore(solver, relax):
    """A row z_j >= t raises the minimum to t; truncating it restores the old one."""
    net, box, problem, lo, hi = _case(1)
    model = new_model(problem, relax=relax, solver=solver)
    if not hasattr(model, "add_rows"):
        pytest.skip(f"{type(model).__name__} has no add_rows yet")
    cost = _cost(problem, 0, 1.0)
    before = model.minimise(cost, threshold=None, time_limit=30).bound
    count = model.num_rows
    target = 0.5 * (before + hi[0])
    row = sp.csr_matrix(cost[None, :])
    model.add_rows(row, np.array([target]), np.array([np.inf]))
    assert model.num_rows == count + 1
    assert model.minimise(cost, threshold=None, time_limit=30).bound == pytest.approx(target, abs=TOL)
    model.truncate_rows(count)
    assert model.num_rows == count
    assert model.minimise(cost, threshold=None, time_limit=30).bound == pytest.approx(before, abs=TOL)


@_each_solver
def test_row_duals_are_complementary_to_the_lp_optimum(solver):
    net, box, problem, lo, hi = _case(2)
    model = new_model(problem, relax=True, solver=solver)
    res = model.minimise(_cost(problem, 1, 1.0), threshold=None, time_limit=30)
    duals, v = model.row_duals(), model.solution()
    assert duals.shape == (model.num_rows,) and v.shape == (problem.num_cols,)
    activity = problem.matrix @ v
    binding = np.isclose(activity, problem.row_lower, atol=1e-6) | np.isclose(activity, problem.row_upper, atol=1e-6)
    assert np.any(np.abs(duals) > 1e-9)
    assert np.all(binding[np.abs(duals) > 1e-9])
    assert float(_cost(problem, 1, 1.0) @ v) == pytest.approx(res.bound, abs=TOL)


@_each_solver
def test_warm_start_keeps_the_answer(solver):
    """A start (the optimum of another unit: a full feasible column vector) changes no answer."""
    net, box, problem, lo, hi = _case(0)
    model = new_model(problem, solver=solver)
    model.minimise(_cost(problem, 0, -1.0), threshold=None, time_limit=30)
    start = model.solution()
    for j in (1, 2):
        res = model.minimise(_cost(problem, j, 1.0), threshold=None, time_limit=30, start=start)
        assert res.status is SolveStatus.OPTIMAL and res.bound == pytest.approx(lo[j], abs=TOL)


@_each_solver
@pytest.mark.parametrize("relax", [False, True])
def test_a_timed_out_solve_gives_no_bound_above_the_minimum(solver, relax):
    rng = np.random.default_rng(11)
    net = random_mlp(rng, [6, 14, 14, 6])
    box = make_box(-1, 1, 6)
    problem = prefix_formulation(net, box, 2, StabilityOptions(samples=0, local_search=False, symbolic=False))
    cost = _cost(problem, 0, 1.0)
    true_min = new_model(problem, relax=relax, solver=solver).minimise(cost, None, 60).bound
    res = new_model(problem, relax=relax, solver=solver).minimise(cost, None, time_limit=1e-6)
    if res.status is SolveStatus.OPTIMAL:  # solved before the clock was read
        return
    assert res.status is SolveStatus.TIME_LIMIT and res.bound <= true_min + TOL
    if relax:
        assert res.bound == -math.inf


# -- status tables --------------------------------------------------------------------

def _statuses(solver: str) -> list:
    """Every status the solver can report, read from its own enum."""
    if solver == "scip":
        import pyscipopt

        return [n.lower() for n in dir(pyscipopt.SCIP_STATUS) if n.isupper()]
    if solver == "gurobi":
        from gurobipy import GRB

        return [getattr(GRB.Status, n) for n in dir(GRB.Status) if n.isupper()]
    import highspy

    return [getattr(highspy.HighsModelStatus, n) for n in dir(highspy.HighsModelStatus) if n.startswith("k")]


def _backend_module(solver: str):
    return importlib.import_module(backend._MODULES[solver])


@_each_solver
def test_every_status_of_the_solver_is_mapped(solver):
    module = _backend_module(solver)
    statuses = _statuses(solver)
    assert len(statuses) >= 10
    missing = [s for s in statuses if s not in module.STATUS_OUTCOME]
    assert not missing, f"{solver} statuses without an explicit outcome: {missing}"
    assert module.outcome(object()) is SolveStatus.ERROR


_STATUS_ATTR = {"scip": ("scip", "getStatus"), "gurobi": ("model", "Status")}


@pytest.mark.parametrize("solver", [s for s in SOLVERS if s != "highs"])  # HiGHS: tests/test_solver_status.py
@pytest.mark.parametrize("relax", [False, True])
def test_statuses_that_prove_nothing_give_no_bound(solver, relax):
    """Each status mapped to ERROR, as the solver would report it after a real run of the
    production ``minimise``: no bound, no proof (also "infeasible" without a cutoff)."""
    module = _backend_module(solver)
    net, box, problem, lo, hi = _case(0)
    holder, attr = _STATUS_ATTR[solver]
    for status, kind in module.STATUS_OUTCOME.items():
        if kind is not SolveStatus.ERROR:
            continue
        model = new_model(problem, relax=relax, solver=solver)
        setattr(model, holder, _Status(getattr(model, holder), attr, status))
        res = model.minimise(_cost(problem, 0, 1.0), threshold=None, time_limit=30)
        assert res.status is SolveStatus.ERROR and res.bound == -math.inf, status


@pytest.mark.parametrize("solver", [s for s in SOLVERS if s != "highs"])
def test_a_time_limit_status_on_an_lp_gives_no_bound(solver):
    module = _backend_module(solver)
    net, box, problem, lo, hi = _case(0)
    holder, attr = _STATUS_ATTR[solver]
    time_limit = next(s for s, k in module.STATUS_OUTCOME.items() if k is SolveStatus.TIME_LIMIT)
    model = new_model(problem, relax=True, solver=solver)
    setattr(model, holder, _Status(getattr(model, holder), attr, time_limit))
    res = model.minimise(_cost(problem, 0, 1.0), threshold=None, time_limit=30)
    assert res.status is SolveStatus.TIME_LIMIT and res.bound == -math.inf


# -- the analysis and the speed benchmark on every back-end ----------------------------

@pytest.mark.parametrize("solver", [s for s in SOLVERS if s != "highs"])
def test_analysis_with_each_backend_gives_the_same_sound_verdicts(solver):
    """``analyse(..., StabilityOptions(solver=...))`` decides the same units as HiGHS, with
    MILPs actually run, and every stable claim holds by the exact range."""
    import leo

    rng = np.random.default_rng(5)
    net = random_mlp(rng, [3, 4, 4, 3, 1], bias_shift=0.3)
    box = make_box(-1, 1, 3)
    quiet = dict(samples=0, local_search=False, neighbourhood=False, cuts=False, time_limit=30, branch=False)
    ref = leo.analyse(net, box, leo.StabilityOptions(**quiet))
    got = leo.analyse(net, box, leo.StabilityOptions(solver=solver, **quiet))
    assert got.settings["solver"].split()[0].lower() == solver
    assert sum(lr.milps for lr in got.layers) > 0
    for k in range(3):
        lo, hi = exact_ranges(net, box.lower, box.upper, k)
        a, b = ref.layer(k + 1), got.layer(k + 1)
        assert a.active == b.active and a.inactive == b.inactive
        assert all(lo[j] >= -1e-9 for j in b.active) and all(hi[j] <= 1e-9 for j in b.inactive)


def test_speed_benchmark_runs_every_installed_backend(monkeypatch):
    """The speed benchmark's default methods include leo on every installed back-end, and
    those runs report the same stable set as leo on HiGHS."""
    from benchmarks import speed

    methods = [m for m in speed.default_methods() if m.startswith("leo") and m != "leo-60s"]
    assert {speed.BACKEND_METHODS[m] for m in methods if m in speed.BACKEND_METHODS} == set(SOLVERS) - {"highs"}
    import leo.stability.stages

    monkeypatch.setattr(leo.stability.stages, "BRANCH_INPUTS", 0)  # the solvers' path: no branch and bound on 4 inputs
    net = random_mlp(np.random.default_rng(7), [4, 8, 8, 2], bias_shift=0.3)  # needs solver calls
    (entry,) = speed.benchmark([("tiny", net)], methods, {m: 60.0 for m in methods}, box=make_box(0, 1, 4),
                               isolate=False, log=None)
    for m in methods:
        assert "error" not in entry["methods"][m], entry["methods"][m]
        assert entry["methods"][m]["solves"] > 0
    assert entry["agree"] is True and sorted(entry["compared"]) == sorted(methods)
    md = speed.to_markdown({"networks": [entry], "machine": speed.machine(), "command": "test", "quick": False,
                            "caps": {m: 60.0 for m in methods}})
    for m in methods:
        assert f"| {m} |" in md


def test_backends_write_nothing_on_stdout():
    """leo's stdout carries results only (``--json -``): no solver banner or licence line."""
    import os
    import subprocess
    import sys

    code = ("from tests.conftest import random_prefix\n"
            "from solvers.backend import available, new_model\n"
            "rng, net, box, f = random_prefix(0)\n"
            "for s in available():\n"
            "    for relax in (False, True):\n"
            "        new_model(f, relax=relax, solver=s).minimise(f.objective(2, 0, 1.0), 0.0, 10)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout == "ok\n"
