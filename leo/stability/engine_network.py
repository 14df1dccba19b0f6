"""The network-wide engine (Serra, Yu, Kumar, Ramalingam, NeurIPS 2021): one MILP over
all layers asks "can any open unit take the sign it has never been seen with?".

Each open unit ``j`` gets an indicator ``f_j`` that can be 1 only if ``z_j`` crosses
to the other side of its margin (z_j <= m for a unit seen active, z_j >= -m for one
seen inactive); the model maximises the number of indicators. Every incumbent is
checked by the network's forward pass and its flipped units leave the candidate set
(their indicators are fixed to 0); the model is solved again until the proven bound
shows that no candidate can flip. HiGHS has no lazy constraints, so "shrinking" is
done by re-solving the same persistent model with changed column bounds. When a
network-wide solve runs out of time, the candidates left go back to the orchestrator,
which asks the per-unit engine (one prefix model per layer).

``solve_network`` takes an immutable ``NetworkProblem`` and returns a ``NetworkResult``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from leo.bounds.encoding import Encoding, build_prefix
from leo.core.deadline import Deadline
from leo.stability.prove import MIN_SOLVE_SECONDS
from leo.stability.report import UnitProof
from leo.stability.stages import Counts, NetworkProblem, NetworkResult, Phase, Progress, ProgressFn
from leo.core.threads import highs_threads
from leo.core.verdicts import Method, Verdict
from solvers.backend import new_model
from solvers.guard import check_relaxation
from solvers.problem import with_columns
from solvers.result import SolveStatus


def _with_flip_indicators(problem: NetworkProblem, base: Encoding) -> tuple[Encoding, np.ndarray]:
    """``base`` with one binary per candidate that may be 1 only if the candidate crosses."""
    p, m = problem, problem.options.margin
    rows, cols, vals, lo, hi = [], [], [], [], []
    n = len(p.candidates)
    for i, (k, j) in enumerate(p.candidates):
        z = int(base.z_cols[k][j])
        l, u = float(p.bounds[k].lower[j]), float(p.bounds[k].upper[j])
        rows += [i, i]
        cols += [z, base.num_cols + i]
        if p.directions[i] > 0:  # seen active only: f = 1 forces z <= m
            vals += [1.0, u - m]
            lo.append(-np.inf)
            hi.append(u)
        else:  # seen inactive only: f = 1 forces z >= -m
            vals += [1.0, l + m]
            lo.append(l)
            hi.append(np.inf)
    extra = sp.coo_matrix((vals, (rows, cols)), shape=(n, base.num_cols + n))
    joint, f_cols = with_columns(base, np.zeros(n), np.ones(n), np.ones(n, dtype=bool),
                                 [f"flip{k + 1}_{j}" for k, j in p.candidates], extra, np.array(lo), np.array(hi))
    return joint, f_cols  # type: ignore[return-value]  # with_columns keeps the Encoding


def _witnessed(problem: NetworkProblem, points: list[np.ndarray]) -> np.ndarray:
    """Per candidate: whether ``points`` (with what was seen before) show both signs."""
    p = problem
    if not points:
        return np.zeros(len(p.candidates), dtype=bool)
    zs = p.network.pre_activations(np.clip(np.vstack(points), p.box.lower, p.box.upper))
    low = np.array([zs[k][:, j].min() for k, j in p.candidates])
    high = np.array([zs[k][:, j].max() for k, j in p.candidates])
    return (np.maximum(high, p.seen_max) > 0) & (np.minimum(low, p.seen_min) < 0)


def solve_network(problem: NetworkProblem, progress: ProgressFn | None = None) -> NetworkResult:
    """Re-solve the network-wide MILP, removing the candidates its incumbents flip, until
    its bound proves that none of the rest can flip, the time runs out, or a solve ends
    unanswered; what is still open then is in neither ``proofs`` nor ``fallback``."""
    p, m = problem, problem.options.margin
    base = build_prefix(p.network, p.box, p.bounds, p.states, p.last)
    encoding, f_cols = _with_flip_indicators(p, base)
    model = new_model(encoding, threads=highs_threads(), solver=p.options.solver)
    n = len(p.candidates)
    live = np.ones(n, dtype=bool)
    cost = encoding.cost(f_cols, -1.0)
    t0 = time.perf_counter()
    counts = Counts()
    proofs: dict[tuple[int, int], UnitProof] = {}
    fallback: dict[tuple[int, int], UnitProof] = {}
    if p.deadline.limit(p.options.time_limit) >= MIN_SOLVE_SECONDS:  # solvers.guard: else cutoffs read as proofs
        relaxation = new_model(encoding, relax=True, threads=highs_threads(), solver=p.options.solver)
        counts = Counts(lps=1)
        if check_relaxation(relaxation, p.deadline.limit(p.options.time_limit)).in_trouble:
            return NetworkResult(proofs, fallback, np.zeros((0, p.box.dim)), counts)
    found: list[np.ndarray] = []
    points: list[np.ndarray] = []
    while live.any():
        found.clear()
        left = p.deadline.limit(p.options.time_limit)
        if left < MIN_SOLVE_SECONDS:
            break  # the budget is spent: what is open stays open (the orchestrator marks it)
        res = model.minimise(cost, threshold=-0.5, time_limit=left, on_point=lambda v: found.append(v.copy()))
        counts = counts + Counts(milps=1, nodes=res.nodes)
        if res.bound >= -0.5:  # proven: no live candidate can flip
            for i in np.flatnonzero(live):
                k, j = p.candidates[i]
                d = p.directions[i]
                proofs[k, j] = UnitProof(Verdict.ACTIVE if d > 0 else Verdict.INACTIVE, Method.MILP_NETWORK,
                                         float(d * m), seconds=res.seconds)
            live[:] = False
            break
        solutions = list(found)
        if res.point is not None:
            solutions.append(model.solution())
        points += [v[encoding.x_cols] for v in solutions]
        witnessed = _witnessed(p, points)
        flipped = np.zeros(n, dtype=bool)
        for v in solutions:
            flipped |= v[f_cols] > 0.5
        for i in np.flatnonzero(live):
            if witnessed[i]:
                live[i] = False
            elif flipped[i]:  # the MILP says it crosses, the forward pass says only within the margin
                fallback[p.candidates[i]] = UnitProof(Verdict.UNSTABLE, Method.NOT_PROVEN, seconds=res.seconds)
                live[i] = False
        if res.status is SolveStatus.TIME_LIMIT or res.status is SolveStatus.ERROR or not flipped.any():
            break  # unanswered: the orchestrator asks per unit
        model.set_bounds(f_cols[~live], np.zeros(int((~live).sum())), np.zeros(int((~live).sum())))
        _report(progress, n, live, t0, p.deadline)
    found_points = np.vstack(points) if points else np.zeros((0, p.box.dim))
    return NetworkResult(proofs, fallback, found_points, counts)


def _report(progress: Callable[[Progress], None] | None, n: int, live: np.ndarray, t0: float,
            deadline: Deadline) -> None:
    if progress is not None:
        done = n - int(live.sum())
        progress(Progress(0, done, n, {str(Method.MILP_NETWORK): done}, time.perf_counter() - t0, Phase.MILP,
                          deadline.left() if deadline.bounded else None))
