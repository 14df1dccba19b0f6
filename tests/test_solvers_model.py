"""What the ``Model`` protocol gained for property verification, on every installed back-end:
row-bound changes (kept relaxations where tiny entries were dropped), warm re-solves after
bound changes (``Tuning.RESOLVE``), and Farkas rays that a numpy recomputation accepts.
Truth: scipy's own LP solver on the changed problem, and weak duality recomputed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from solvers.backend import Tuning, available, new_model
from solvers.highs_backend import TINY
from solvers.problem import Problem
from solvers.result import SolveStatus, Termination

SOLVERS = available()


def _problem(a, lo, hi, col_lo, col_hi) -> Problem:
    a = sp.csr_matrix(np.asarray(a, dtype=float))
    n = a.shape[1]
    return Problem(a, np.asarray(lo, float), np.asarray(hi, float), np.asarray(col_lo, float),
                   np.asarray(col_hi, float), np.zeros(n, bool), tuple(f"v{i}" for i in range(n)))


def _scipy_min(c, a, lo, hi, cl, cu) -> float | None:
    """scipy's LP minimum (None: infeasible)."""
    rows, rhs = [], []
    for r in range(a.shape[0]):
        if np.isfinite(hi[r]):
            rows.append(a[r]), rhs.append(hi[r])
        if np.isfinite(lo[r]):
            rows.append(-a[r]), rhs.append(-lo[r])
    res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=list(zip(cl, cu)), method="highs")
    return None if res.status == 2 else float(res.fun)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("tuning", list(Tuning))
def test_warm_re_solves_after_bound_changes_equal_fresh_solves(solver, tuning):
    """One persistent LP, its column and row bounds changed between solves (as a ReLU-split
    search does), against scipy on each changed problem."""
    rng = np.random.default_rng(7)
    n, m = 6, 8
    a = rng.normal(size=(m, n))
    x0 = rng.uniform(-0.5, 0.5, n)
    lo, hi = a @ x0 - rng.uniform(0.1, 1, m), a @ x0 + rng.uniform(0.1, 1, m)
    cl, cu = -np.ones(n), np.ones(n)
    c = rng.normal(size=n)
    model = new_model(_problem(a, lo, hi, cl, cu), relax=True, solver=solver, tuning=tuning)
    for step in range(6):
        rows = rng.choice(m, 2, replace=False)
        lo[rows] = a[rows] @ x0 - rng.uniform(0.0, 0.5, 2)
        hi[rows] = np.where(rng.random(2) < 0.3, np.inf, a[rows] @ x0 + rng.uniform(0.0, 0.5, 2))
        model.set_row_bounds(rows, lo[rows], hi[rows])
        col = int(rng.integers(n))
        cl[col], cu[col] = min(x0[col], rng.uniform(-1, 0)), max(x0[col], rng.uniform(0, 1))
        model.set_bounds(np.array([col]), cl[[col]], cu[[col]])
        res = model.minimise(c, None, 30)
        assert res.status is SolveStatus.OPTIMAL, step
        assert res.bound == pytest.approx(_scipy_min(c, a, lo, hi, cl, cu), abs=1e-6), step
        v = model.solution()
        assert np.all(a @ v <= hi + 1e-6) and np.all(a @ v >= lo - 1e-6)
        duals = model.row_duals()
        assert duals.shape == (m,)


@pytest.mark.parametrize("solver", SOLVERS)
def test_changed_row_sides_stay_widened_where_a_tiny_entry_was_dropped(solver):
    """x0 + 1e-10 x1 = s, x1 in [0, 1e5]: the back-end drops the tiny entry and widens the row
    by 1e-5; a row side changed later must be widened the same, or the true minimum of x0
    (s - 1e-5) would be cut off."""
    tiny = TINY / 100
    p = _problem([[1.0, tiny]], [0.5], [0.5], [-1.0, 0.0], [1.0, 1e5])
    model = new_model(p, relax=True, solver=solver)
    c = np.array([1.0, 0.0])
    assert model.minimise(c, None, 30).bound <= 0.5 - tiny * 1e5 + 1e-9
    model.set_row_bounds(np.array([0]), np.array([0.0]), np.array([0.0]))
    res = model.minimise(c, None, 30)
    true_min = 0.0 - tiny * 1e5
    assert res.status is SolveStatus.OPTIMAL and res.bound <= true_min + 1e-9


def _farkas_proves(ray: np.ndarray, a: np.ndarray, lo, hi, cl, cu) -> bool:
    """Weak duality recomputed here: y.(A x) lies between the rows' sides for every feasible x,
    and (A^T y).x between its extremes over the box; if those ranges cannot meet, nothing is
    feasible. Tried for y and -y (solvers differ in the ray's sign)."""
    for y in (ray, -ray):
        y = np.where((y > 0) & ~np.isfinite(lo), 0.0, np.where((y < 0) & ~np.isfinite(hi), 0.0, y))
        rows_low = float(np.sum(np.where(y > 0, y * np.where(np.isfinite(lo), lo, 0), 0.0))
                         + np.sum(np.where(y < 0, y * np.where(np.isfinite(hi), hi, 0), 0.0)))
        w = a.T @ y
        box_high = float(np.sum(np.maximum(w * cl, w * cu)))
        if rows_low > box_high + 1e-9 * (1 + abs(rows_low)):
            return True
    return False


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("seed", range(3))
def test_a_dual_ray_proposed_for_an_infeasible_lp_is_a_farkas_proof(solver, seed):
    """After bound changes make a feasible LP infeasible, the ray (where the back-end gives
    one; HiGHS always here) must prove it by weak duality recomputed in numpy."""
    rng = np.random.default_rng(seed)
    n, m = 5, 4
    a = rng.normal(size=(m, n))
    cl, cu = -np.ones(n), np.ones(n)
    lo, hi = np.full(m, -np.inf), np.abs(a).sum(axis=1)  # every box point: feasible
    model = new_model(_problem(a, lo, hi, cl, cu), relax=True, solver=solver, tuning=Tuning.RESOLVE)
    assert model.minimise(np.zeros(n), None, 30).status is SolveStatus.OPTIMAL
    new_lo = np.abs(a[0]).sum() + 0.5  # row 0 >= more than it can reach over the box
    lo[0] = new_lo
    model.set_row_bounds(np.array([0]), np.array([new_lo]), np.array([np.inf]))
    hi[0] = np.inf
    res = model.minimise(np.zeros(n), None, 30)
    assert res.termination in (Termination.INFEASIBLE, Termination.INFEASIBLE_OR_UNBOUNDED)
    assert res.bound == -math.inf
    ray = model.dual_ray()
    if solver == "highs":
        assert ray is not None
    if ray is not None:
        assert _farkas_proves(ray, a, lo, hi, cl, cu)


@pytest.mark.parametrize("solver", SOLVERS)
def test_relu_split_nodes_get_the_same_safe_bounds_on_every_back_end(solver):
    """The ReLU-split LP class on ``solvers``: each back-end's row duals give (through the numpy
    recomputation) the LP optimum scipy finds at every node, and an infeasible node closes only
    on a ray that proves it."""
    from leo.bab.relu_lp import Relaxation
    from leo.bab.relu_split import _Solver
    from leo.bounds.propagate import cheap_bounds
    from leo.core.domain import make_box
    from leo.core.verdicts import Verdict
    from tests.conftest import random_mlp

    rng = np.random.default_rng(1)
    net = random_mlp(rng, [3, 6, 6, 2])
    box = make_box(-1, 1, 3)
    states = [[Verdict.UNSTABLE] * ly.width if ly.relu else [] for ly in net.layers]
    relax = Relaxation(net, box, cheap_bounds(net, box), states, np.array([[1.0, -1.0]]), np.zeros(1))
    lp = relax.program()
    node_solver = _Solver(lp, relax.units, solver=solver)
    kinds = set()
    for k in range(12):
        picked = rng.choice(len(relax.units), 3 if k % 2 else 8, replace=False)  # 8 fixed: often infeasible
        fixed = {int(i): int(rng.choice([-1, 1])) for i in picked}
        node = node_solver.solve(fixed, 30)
        truth = _scipy_min(lp.cost, lp.a.toarray(), node_solver.row_lo, node_solver.row_hi,
                           node_solver.col_lo, node_solver.col_hi)
        kinds.add(truth is None)
        if truth is None:  # an infeasible node: closed (+inf) only on a ray that proves it, else left open
            assert node.v is None and node.bound in (np.inf, -np.inf)
            assert node.bound == np.inf or solver == "scip"  # SCIP keeps no ray where no LP ran
        else:
            assert node.optimal and node.bound == pytest.approx(truth, abs=1e-6)
            assert node.bound <= truth + 1e-9
    assert kinds == {True, False}, "the nodes must include feasible and infeasible ones"
