"""The network-wide engine (Serra, Yu, Kumar, Ramalingam, NeurIPS 2021): one MILP over
all layers asks "can any open unit take the sign it has never been seen with?".

Each open unit ``j`` gets an indicator ``f_j`` that can be 1 only if ``z_j`` crosses
to the other side of its margin (z_j <= m for a unit seen active, z_j >= -m for one
seen inactive); the model maximises the number of indicators. Every incumbent is
checked by the network's forward pass and its flipped units leave the candidate set
(their indicators are fixed to 0); the model is solved again until the proven bound
shows that no candidate can flip. HiGHS has no lazy constraints, so "shrinking" is
done by re-solving the same persistent model with changed column bounds. When a
network-wide solve runs out of time, the candidates left go to the per-unit engine
(one prefix model per layer), which often decides most of them quickly.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from leo.engine_unit import MIN_SOLVE_SECONDS, mark_budget, solve_open_units
from leo.report import ACTIVE, INACTIVE, UNSTABLE, LayerReport, UnitProof
from leo.stability import DONE, MILP, Analysis, LayerWork, Progress
from leo.threads import highs_threads
from solvers.formulation import UnitState, build_prefix, with_columns
from solvers.highs_backend import HighsModel
from solvers.result import SolveStatus


def run_network(state: Analysis) -> list[LayerReport]:
    net = state.network
    relu_layers = [k for k, ly in enumerate(net.layers) if ly.relu]
    if not relu_layers:
        return []
    works: dict[int, LayerWork] = {}
    for k, layer in enumerate(net.layers[: relu_layers[-1] + 1]):
        if not layer.relu:
            state.push_linear(k)
            continue
        work = state.cheap_pass(k)
        works[k] = work
        # open units stay in the model as unstable (with a binary) until proven otherwise
        state.bounds.append(work.bounds)
        state.states.append([UnitState.UNSTABLE if p is None else UnitState(p.verdict) for p in work.proofs])
    candidates = [(k, int(j)) for k, w in works.items() for j in w.open_units()]
    if candidates and not state.expired():
        _solve_network(state, works, candidates, relu_layers[-1])
    for k, work in works.items():  # what the network-wide solve left (a time-out): per unit
        if work.open_units().size and state.expired():
            mark_budget(work)
        elif work.open_units().size:
            solve_open_units(state, work, build_prefix(net, state.box, state.bounds[: k + 1], state.states[:k], k))
            state.states[k] = [UnitState(p.verdict) for p in work.proofs]  # later layers see the new proofs
            work.progress(state.progress, DONE)
    reports = []
    for k in relu_layers:
        reports.append(works[k].finish())
    return reports


def _solve_network(state: Analysis, works: dict[int, LayerWork], candidates: list[tuple[int, int]],
                   last: int) -> None:
    net, opts, m = state.network, state.options, state.options.margin
    base = build_prefix(net, state.box, state.bounds, state.states, last)
    directions = {k: dict(zip(works[k].open_units().tolist(), state.directions(k, works[k].open_units())))
                  for k in works}
    rows, cols, vals, lo, hi = [], [], [], [], []
    n = len(candidates)
    for i, (k, j) in enumerate(candidates):
        z = int(base.z_cols[k][j])
        l, u = float(state.bounds[k].lower[j]), float(state.bounds[k].upper[j])
        f = base.num_cols + i
        rows += [i, i]
        cols += [z, f]
        if directions[k][j] > 0:  # seen active only: f = 1 forces z <= m
            vals += [1.0, u - m]
            lo.append(-np.inf)
            hi.append(u)
        else:  # seen inactive only: f = 1 forces z >= -m
            vals += [1.0, l + m]
            lo.append(l)
            hi.append(np.inf)
    extra = sp.coo_matrix((vals, (rows, cols)), shape=(n, base.num_cols + n))
    formulation, f_cols = with_columns(base, np.zeros(n), np.ones(n), np.ones(n, dtype=bool),
                                       [f"flip{k + 1}_{j}" for k, j in candidates], extra, np.array(lo), np.array(hi))
    model = HighsModel(formulation, threads=highs_threads())
    live = np.ones(n, dtype=bool)
    cost = np.zeros(formulation.num_cols)
    cost[f_cols] = -1.0
    t0 = time.perf_counter()
    solves = 0
    found: list[np.ndarray] = []
    x_cols = formulation.x_cols
    while live.any():
        found.clear()
        left = min(opts.time_limit, state.seconds_left())
        if left < MIN_SOLVE_SECONDS:
            break  # the budget is spent: what is open stays open (the per-unit phase marks it)
        res = model.minimise(cost, threshold=-0.5, time_limit=left,
                             on_point=lambda v: found.append(v.copy()))
        solves += 1
        if res.bound >= -0.5:  # proven: no live candidate can flip
            for i in np.flatnonzero(live):
                k, j = candidates[i]
                d = directions[k][j]
                works[k].proofs[j] = UnitProof(ACTIVE if d > 0 else INACTIVE, "milp-network", float(d * m),
                                               seconds=res.seconds)
            live[:] = False
            break
        solutions = list(found)
        if res.point is not None:
            solutions.append(model.solution())
        if solutions:
            state.witnesses.add(np.vstack([v[x_cols] for v in solutions]))
        for k in works:
            works[k].mark_witnessed(state.witnesses, "milp-witness")
        flipped = np.zeros(n, dtype=bool)
        for v in solutions:
            flipped |= v[f_cols] > 0.5
        for i in np.flatnonzero(live):
            k, j = candidates[i]
            if works[k].proofs[j] is not None:
                live[i] = False
            elif flipped[i]:  # the MILP says it crosses, the forward pass says only within the margin
                works[k].proofs[j] = UnitProof(UNSTABLE, "not-proven", seconds=res.seconds)
                live[i] = False
        if res.status is SolveStatus.TIME_LIMIT or res.status is SolveStatus.ERROR or not flipped.any():
            break  # unanswered: the caller asks per unit
        model.set_bounds(f_cols[~live], np.zeros(int((~live).sum())), np.zeros(int((~live).sum())))
        if state.progress is not None:
            done = n - int(live.sum())
            state.progress(Progress(0, done, n, {"milp-network": done}, time.perf_counter() - t0, MILP,
                                    None if state.deadline is None else state.seconds_left()))
    for k in works:
        works[k].solves += solves if k == last else 0
