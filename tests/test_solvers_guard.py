"""The one LP-feasibility guard (``solvers.guard``) and its three users: the per-unit prover,
the network-wide engine and ``compare_exact``. A solver made to call every model infeasible
(its status replaced after real runs) would otherwise turn every cutoff solve into a proof;
the truth that the units are unstable comes from exact enumeration (tests/conftest)."""

from __future__ import annotations

import highspy
import numpy as np
import pytest

import leo.queries.equivalence as equivalence
import leo.stability.engine_network as engine_network
import leo.stability.prove as prove
from leo.bounds.encoding import build_prefix
from leo.bounds.propagate import cheap_bounds
from leo.core.deadline import Deadline
from leo.core.domain import make_box
from leo.core.verdicts import Verdict
from leo.stability.stages import NetworkProblem, StabilityOptions
from solvers.backend import new_model
from solvers.guard import Relaxation, check_relaxation
from solvers.highs_backend import HighsModel
from tests.conftest import exact_ranges, random_mlp, random_prefix

S = highspy.HighsModelStatus


def _reporting(status):  # noqa: ANN001, ANN202
    """A ``new_model`` whose HiGHS models run for real but report ``status``."""
    def make(problem, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        model = new_model(problem, *args, **kwargs)
        assert isinstance(model, HighsModel)
        model.highs.getModelStatus = lambda: status
        return model
    return make


@pytest.mark.parametrize("status, state", [(S.kOptimal, Relaxation.SOUND), (S.kTimeLimit, Relaxation.UNDECIDED),
                                           (S.kInfeasible, Relaxation.IN_TROUBLE),
                                           (S.kSolveError, Relaxation.IN_TROUBLE)])
def test_the_guard_reads_the_relaxations_solve(status, state):
    _, _, _, f = random_prefix(0)
    check = check_relaxation(_reporting(status)(f, relax=True), 10.0)
    assert check.state is state and check.in_trouble is (state is Relaxation.IN_TROUBLE)
    assert check_relaxation(new_model(f, relax=True), 10.0).state is Relaxation.SOUND  # the real solve


def _unstable_network_problem(deadline: Deadline = Deadline.never()) -> tuple[NetworkProblem, set]:
    """Every unit of layer 2 that is truly unstable (exact enumeration) as a candidate seen
    active only: the MILP can only prove such a candidate stable by a false cutoff proof."""
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [3, 5, 5, 2])
    box = make_box(-1, 1, 3)
    lo, hi = exact_ranges(net, box.lower, box.upper, 1)
    unstable = [j for j in range(net.layers[1].width) if lo[j] < -1e-3 and hi[j] > 1e-3]
    assert unstable, "no unstable unit: the test would test nothing"
    bounds = cheap_bounds(net, box)
    states = tuple(tuple(Verdict.UNSTABLE for _ in range(ly.width)) if ly.relu else () for ly in net.layers)
    candidates = tuple((1, j) for j in unstable)
    n = len(candidates)
    options = StabilityOptions(samples=0, local_search=False, time_limit=20, branch=False)
    problem = NetworkProblem(net, box, 1, tuple(bounds), states, candidates, np.ones(n), np.full(n, 1e-3),
                             np.ones(n), options, deadline)
    return problem, set(candidates)


def test_network_engine_proves_nothing_when_the_solver_calls_its_relaxation_infeasible(monkeypatch):
    problem, unstable = _unstable_network_problem()
    honest = engine_network.solve_network(problem)
    assert not set(honest.proofs) & unstable  # truly unstable: never proven stable
    monkeypatch.setattr(engine_network, "new_model", _reporting(S.kInfeasible))
    troubled = engine_network.solve_network(problem)
    assert not troubled.proofs, "a solver calling everything infeasible 'proved' unstable units stable"
    assert troubled.counts.lps == 1  # the guard's LP is counted as the solve it is


def test_per_unit_prover_proves_nothing_when_the_solver_calls_its_relaxation_infeasible(monkeypatch):
    problem, unstable = _unstable_network_problem()
    enc = build_prefix(problem.network, problem.box, problem.bounds, problem.states, 1)
    tasks = [prove.Task(j, d, None) for _, j in unstable for d in (1, -1)]
    monkeypatch.setattr(prove, "new_model", _reporting(S.kInfeasible))
    results = prove.prove(problem.network, enc, 1, tasks, problem.options)
    assert len(results) == len(tasks) and not any(r.proven for r in results)


def test_compare_exact_proves_nothing_when_the_solver_calls_its_relaxation_infeasible(monkeypatch):
    rng = np.random.default_rng(5)
    f = random_mlp(rng, [3, 4, 2])
    box = make_box(-1, 1, 3)
    monkeypatch.setattr(equivalence, "new_model", _reporting(S.kInfeasible))
    result = equivalence.compare_exact(f, f, box, tolerance=1e-6, time_limit=10)
    assert result.verdict is equivalence.Verdict.UNDECIDED and "numerical trouble" in result.reason
