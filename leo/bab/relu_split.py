"""Branch and bound over ReLU phases with LP bounds, for one disjunct of an output property.

The question is the one ``leo.queries.property`` asks of each disjunct ``A y <= c``: is there an
input in the box whose output satisfies every row? Equivalently, is

    t* = min over the box of max_r (a_r . y(x) - c_r)

at most 0? One LP (HiGHS, warm-started dual simplex on one model) relaxes the network with
the stability analysis's proven bounds: stable units are linear or zero, unstable ones get
the triangle relaxation. A *node* fixes the phases of some unstable units (active:
``z >= 0, h = z``; inactive: ``z <= 0, h = 0``), by bound changes only. A node is closed
when its LP proves ``t > 0`` there; the two children of an open node fix the two phases of
the unit whose triangle costs the LP bound most (its dual times its height, BaBSR-like), so
the leaves always cover the whole box. Open nodes are taken lowest bound first. Before the
search, ``tighten`` bounds the later layers' unstable units again by LP, once for all disjuncts.

Soundness: a node is closed only by a bound recomputed in numpy from the LP's duals
(weak duality, any dual vector gives a valid bound: the Neumaier-Shcherbina safe bound,
widened for float rounding), or, for an infeasible LP, by a Farkas certificate (HiGHS's
dual ray) recomputed the same way. A solve that is not optimal closes nothing. A point is
a counterexample only when the caller's ``confirmed`` (the original network's forward
pass) accepts it. Running out of time proves nothing (TIMEOUT).
"""

from __future__ import annotations

import enum
import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from leo.bab.relu_lp import LinearProgram, Relaxation as _Relaxation, Unit as _Unit, safe_bound
from leo.bounds.propagate import LayerBounds
from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.verdicts import Verdict
from leo.search.attack import AttackOptions, Objective, Schedule, attack
from solvers.backend import Solver, Tuning, new_model
from solvers.problem import Problem
from solvers.result import SolveStatus, Termination

#: Projected-gradient steps tried from each node's LP optimum when its bound is <= 0.
PGD_STEPS = 8
#: Give up (UNKNOWN) when this many nodes are waiting.
MAX_OPEN = 200_000

Confirm = Callable[[np.ndarray], "int | None"]


class SplitStatus(enum.Enum):
    """How one disjunct's search ended."""

    PROVEN = "proven"  # every leaf's safe LP bound is > 0: the disjunct is unreachable
    COUNTEREXAMPLE = "counterexample"  # a point confirmed by the caller's forward pass
    TIMEOUT = "timeout"  # the deadline came first: proves nothing
    UNKNOWN = "unknown"  # a leaf with every phase fixed that its LP could not close, or too many nodes


@dataclass(frozen=True)
class SplitResult:
    """One disjunct's search: its status, a confirmed point for COUNTEREXAMPLE, and its cost."""

    status: SplitStatus
    x: np.ndarray | None = None
    disjunct: int | None = None
    nodes: int = 0
    seconds: float = 0.0
    lp_seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class _Solved:
    """One node's LP: a proven bound (-inf: none), and the optimum when there is one."""

    bound: float
    v: np.ndarray | None
    optimal: bool
    duals: np.ndarray | None = None


class _Solver:
    """One LP model (``solvers``, warm-started dual simplex without presolve or scaling:
    ``Tuning.RESOLVE``); a node is solved by changing the bounds that differ from the last one."""

    def __init__(self, lp: LinearProgram, units: Sequence[_Unit], solver: Solver | str = Solver.HIGHS) -> None:
        self.lp, self.units = lp, units
        n = lp.cost.size
        problem = Problem(matrix=lp.a, row_lower=lp.row_lo, row_upper=lp.row_hi, col_lower=lp.col_lo,
                          col_upper=lp.col_hi, integer=np.zeros(n, dtype=bool), names=tuple(f"v{i}" for i in range(n)))
        self.model = new_model(problem, relax=True, threads=1, solver=solver, tuning=Tuning.RESOLVE)
        self.col_lo, self.col_hi = lp.col_lo.copy(), lp.col_hi.copy()
        self.row_lo, self.row_hi = lp.row_lo.copy(), lp.row_hi.copy()
        self.fixed: dict[int, int] = {}

    def _set_unit(self, i: int, phase: int) -> None:
        """phase +1: active, -1: inactive, 0: free (the relaxation)."""
        u = self.units[i]
        zlo, zhi = (0.0, u.upper) if phase > 0 else (u.lower, 0.0) if phase < 0 else (u.lower, u.upper)
        hhi = 0.0 if phase < 0 else u.upper
        rhi = 0.0 if phase > 0 else np.inf
        self.col_lo[u.z], self.col_hi[u.z], self.col_hi[u.h] = zlo, zhi, hhi
        self.row_hi[u.row] = rhi
        self.model.set_bounds(np.array([u.z, u.h]), np.array([zlo, 0.0]), np.array([zhi, hhi]))
        self.model.set_row_bounds(np.array([u.row]), np.array([0.0]), np.array([rhi]))

    def solve(self, fixed: dict[int, int], seconds: float) -> _Solved:
        """The node whose fixed phases are ``fixed`` (unit index -> +1 active / -1 inactive),
        warm from the last basis; its bound is the numpy-recomputed one, never the solver's objective."""
        for i in set(self.fixed) | set(fixed):
            if self.fixed.get(i, 0) != fixed.get(i, 0):
                self._set_unit(i, fixed.get(i, 0))
        self.fixed = dict(fixed)
        res = self.model.minimise(self.lp.cost, None, seconds)
        if res.termination is Termination.INFEASIBLE:
            return _Solved(self._farkas(), None, False)
        if res.status is not SolveStatus.OPTIMAL:
            return _Solved(-np.inf, None, False)
        duals = self.model.row_duals()
        bound = safe_bound(self.lp, duals, self.col_lo, self.col_hi, self.row_lo, self.row_hi)
        return _Solved(bound, self.model.solution(), True, duals)

    def minimise(self, cost: np.ndarray, seconds: float) -> float:
        """A proven lower bound on ``cost . v`` over the relaxation (-inf: none)."""
        if self.model.minimise(cost, None, seconds).status is not SolveStatus.OPTIMAL:
            return -np.inf
        duals = self.model.row_duals()
        return safe_bound(self.lp, duals, self.col_lo, self.col_hi, self.row_lo, self.row_hi, cost)

    def _farkas(self) -> float:
        """+inf when the solver's dual ray, recomputed in numpy, proves the node infeasible."""
        ray = self.model.dual_ray()
        if ray is None:
            return -np.inf
        zero = np.zeros_like(self.lp.cost)
        for y in (ray, -ray):
            if safe_bound(self.lp, y, self.col_lo, self.col_hi, self.row_lo, self.row_hi, zero) > 0:
                return np.inf
        return -np.inf


def tighten(network: Network, box: Box, bounds: Sequence[LayerBounds], states: Sequence[Sequence[Verdict]],
            deadline: Deadline) -> list[LayerBounds]:
    """The analysis's bounds, with each unstable unit of the ReLU layers after the first
    bounded again by the LP relaxation (min and max of its z, each a safe dual bound), layer
    by layer (a tightened layer makes the next one's LP tighter), until ``deadline``. On MNIST
    256x2 this made 30 of 132 open layer-2 units stable and raised the root bounds of
    prop_1_0.03 from -0.69..-1.81 to -0.36..-1.47, in 7 s. Any bound kept is proven."""
    out = list(bounds)
    relu_layers = [k for k, layer in enumerate(network.layers[:-1]) if layer.relu]
    for k in relu_layers[1:]:
        zero = (np.zeros((1, network.output_dim)), np.zeros(1))
        relax = _Relaxation(network, box, out, states, *zero)
        lp = relax.program()
        solver = _Solver(lp, relax.units)
        lo, hi = out[k].lower.copy(), out[k].upper.copy()
        cost = np.zeros(lp.cost.size)
        for j in np.flatnonzero((lo < 0) & (hi > 0)):
            if k < len(states) and len(states[k]) and states[k][j] != Verdict.UNSTABLE:
                continue
            col = relax.z_cols[k][j]
            for sign in (1.0, -1.0):
                left = deadline.left()
                if left <= 0:
                    out[k] = _tightened(out[k], lo, hi)
                    return out
                cost[col] = sign
                bound = solver.minimise(cost, left)
                cost[col] = 0.0
                if sign > 0:
                    lo[j] = max(lo[j], bound)
                else:
                    hi[j] = min(hi[j], -bound)
        out[k] = _tightened(out[k], lo, hi)
    return out


def _tightened(old: LayerBounds, lo: np.ndarray, hi: np.ndarray) -> LayerBounds:
    """``old`` tightened by ``lo``/``hi``; proven bounds cannot cross on a non-empty box, so a
    unit where they do (numerical trouble) keeps its old ones."""
    crossed = lo > hi
    lo[crossed], hi[crossed] = old.lower[crossed], old.upper[crossed]
    return old.tightened(lo, hi, "lp")


#: The attack from a node's LP optimum: PGD_STEPS signed-gradient steps, the first 2 % of each
#: input's width, times 0.7 each step; a point within 1e-5 of the disjunct goes to the caller's
#: forward pass (the judge; this network's excess only saves its calls).
PGD_OPTIONS = AttackOptions(Schedule(PGD_STEPS, 0.02, 0.7), stop_below=None, accept_below=1e-5)


def _pgd(network: Network, box: Box, x: np.ndarray, a: np.ndarray, c: np.ndarray,
         confirmed: Confirm) -> tuple[np.ndarray, int] | None:
    """``x``, then a few signed-gradient steps on the disjunct's excess from it
    (``leo.search.attack``); the first point that ``confirmed`` accepts, if any."""
    r = attack(network, x[None, :], Objective.disjunct(a, c, 1), PGD_OPTIONS, lower=box.lower, upper=box.upper,
               accept=confirmed)
    return None if r.accepted is None else (r.accepted[0], int(r.accepted[1]))


def _branch_unit(node: _Solved, units: Sequence[_Unit], fixed: dict[int, int]) -> int | None:
    """The unfixed unit whose triangle costs the bound most: the dual of its upper side times
    that side's height ``-u l / (u - l)`` (BaBSR-like; either child removes that side), ties
    broken by the gap ``h* - max(z*, 0)`` at the optimum. On prop_1_0.03's first disjunct the
    gap alone left 1,169 of 2,347 nodes open after 30 s; this closed it in 45 nodes, 0.9 s."""
    v, duals = node.v, node.duals
    assert v is not None and duals is not None
    best, best_score = None, -1.0
    for i, u in enumerate(units):
        if i in fixed:
            continue
        gap = v[u.h] - max(v[u.z], 0.0)
        score = abs(duals[u.row + 1]) * u.upper * -u.lower / (u.upper - u.lower) + 1e-9 * gap
        if score > best_score:
            best, best_score = i, score
    return best


class Search:
    """The branch and bound on one disjunct ``A y <= c``, resumable: ``run`` continues where the
    last call stopped. ``bounds``/``states``: proven pre-activation bounds and unit states per
    layer (``leo.stability.analysis.bounds_and_states``, or ``tighten``'s)."""

    def __init__(self, network: Network, box: Box, bounds: Sequence[LayerBounds],
                 states: Sequence[Sequence[Verdict]], a: np.ndarray, c: np.ndarray, confirmed: Confirm) -> None:
        self.network, self.box, self.confirmed = network, box, confirmed
        self.a = np.atleast_2d(np.asarray(a, dtype=np.float64))
        self.c = np.atleast_1d(np.asarray(c, dtype=np.float64))
        self.relax = _Relaxation(network, box, bounds, states, self.a, self.c)
        self.solver = _Solver(self.relax.program(), self.relax.units)
        self.heap: list[tuple[float, int, dict[int, int]]] = [(-np.inf, 0, {})]
        self.nodes, self.counter, self.seconds, self.lp_seconds = 0, 1, 0.0, 0.0
        self.stuck = ""

    def root_value(self, seconds: float) -> float:
        """The root LP's optimum as HiGHS reports it (-inf if not solved): for ordering the
        disjuncts only, never a proof. The warm basis it leaves makes the root node's solve cheap."""
        node = self.solver.solve({}, seconds)
        return float(node.v[self.relax.t]) if node.v is not None else -np.inf

    def _result(self, status: SplitStatus, x: np.ndarray | None = None, hit: int | None = None,
                reason: str = "") -> SplitResult:
        return SplitResult(status, x, hit, self.nodes, self.seconds, self.lp_seconds, reason)

    def run(self, deadline: Deadline) -> SplitResult:
        """Continue until a proof, a confirmed counterexample or ``deadline`` (TIMEOUT)."""
        t0 = time.perf_counter()
        r = self._run(deadline)
        self.seconds += time.perf_counter() - t0
        return SplitResult(r.status, r.x, r.disjunct, self.nodes, self.seconds, self.lp_seconds, r.reason)

    def _run(self, deadline: Deadline) -> SplitResult:
        heap = self.heap
        while heap:
            left = deadline.left()
            if left <= 0:
                return self._result(SplitStatus.TIMEOUT, reason=f"the time ran out with {len(heap)} of "
                                    f"{self.nodes + len(heap)} ReLU-split nodes open")
            if len(heap) > MAX_OPEN:
                return self._result(SplitStatus.UNKNOWN, reason=f"more than {MAX_OPEN} ReLU-split nodes open")
            parent_bound, _, fixed = heapq.heappop(heap)
            t1 = time.perf_counter()
            node = self.solver.solve(fixed, left)
            self.lp_seconds += time.perf_counter() - t1
            if node.v is None and node.bound <= 0 and deadline.passed():
                heapq.heappush(heap, (parent_bound, self.counter, fixed))  # cut short by the deadline: again later
                self.counter += 1
                continue
            self.nodes += 1
            if node.bound > 0:
                continue  # closed on a proven bound
            if node.v is not None:
                if node.v[self.relax.t] <= 0:
                    x = np.clip(node.v[:self.box.dim], self.box.lower, self.box.upper)
                    found = _pgd(self.network, self.box, x, self.a, self.c, self.confirmed)
                    if found is not None:
                        return self._result(SplitStatus.COUNTEREXAMPLE, found[0], found[1])
                unit = _branch_unit(node, self.relax.units, fixed)
            else:  # not solved to optimality, or infeasible without a proof: split all the same
                unit = next((i for i in range(len(self.relax.units)) if i not in fixed), None)
            if unit is None:
                self.stuck = "a ReLU-split leaf with every phase fixed is neither closed nor a confirmed counterexample"
                continue
            key = max(node.bound, parent_bound)
            for phase in (1, -1):
                heapq.heappush(heap, (key, self.counter, {**fixed, unit: phase}))
                self.counter += 1
        if self.stuck:
            return self._result(SplitStatus.UNKNOWN, reason=self.stuck)
        return self._result(SplitStatus.PROVEN)


def search(network: Network, box: Box, bounds: Sequence[LayerBounds], states: Sequence[Sequence[Verdict]],
           a: np.ndarray, c: np.ndarray, deadline: Deadline, confirmed: Confirm) -> SplitResult:
    """Is ``A y <= c`` reachable from ``box``? (One ``Search`` run to ``deadline``.)"""
    return Search(network, box, bounds, states, a, c, confirmed).run(deadline)


@dataclass(frozen=True)
class Decision:
    """What the search decided over a property's disjuncts."""

    proven: frozenset[int]  # disjuncts shown unreachable
    x: np.ndarray | None = None  # a confirmed counterexample
    disjunct: int | None = None  # the disjunct ``confirmed`` put it in
    nodes: int = 0
    reasons: tuple[str, ...] = ()


#: Rounds of ``decide``: the disjuncts still open after one share the time left in the next.
ROUNDS = 4
#: Of the search's time, the LP bound tightening of later layers (shared by the disjuncts) may take this much.
TIGHTEN_SHARE = 0.15


def decide(network: Network, box: Box, disjuncts: Sequence[tuple[np.ndarray, np.ndarray]], pending: Sequence[int],
           bounds: Sequence[LayerBounds], states: Sequence[Sequence[Verdict]], deadline: Deadline,
           confirmed: Confirm, say: Callable[[str], None] = lambda _line: None) -> Decision:
    """The search on each disjunct of ``pending`` (``(A, c)`` of ``disjuncts``), after one LP
    tightening of the bounds for all of them: rounds in which the disjuncts still open share
    the time left equally, each search resuming where it stopped (an easy disjunct's leftover
    time goes to the hard ones)."""
    if not pending:
        return Decision(frozenset())
    share = TIGHTEN_SHARE * deadline.left()
    say(f"ReLU split: LP bounds of later layers (up to {share:.1f} s)")
    bounds = tighten(network, box, bounds, states, deadline.share(TIGHTEN_SHARE))
    everyone = {i: Search(network, box, bounds, states, *disjuncts[i], confirmed) for i in pending}
    # the most violated root first: a counterexample is likelier there (prop_0_0.05's is in the last disjunct)
    roots = {i: everyone[i].root_value(deadline.left() / len(pending)) for i in pending}
    pending = sorted(pending, key=lambda i: roots[i])
    searches = dict(everyone)
    proven: set[int] = set()
    reasons: dict[int, str] = {}
    for round_ in range(ROUNDS):
        open_now = [i for i in pending if i in searches]
        for k, i in enumerate(open_now):
            left = deadline.left()
            if left <= 0:
                break
            each = left / ((len(open_now) - k) * (ROUNDS - round_))
            say(f"ReLU split on disjunct {i + 1} of {len(disjuncts)}, up to {each:.1f} s")
            r = searches[i].run(Deadline.after(each))
            say(f"ReLU split on disjunct {i + 1}: {r.status.value} after {r.nodes} nodes, {r.seconds:.1f} s")
            if r.status is SplitStatus.COUNTEREXAMPLE:
                return Decision(frozenset(proven), r.x, r.disjunct, sum(s.nodes for s in everyone.values()))
            if r.status is SplitStatus.TIMEOUT:
                reasons[i] = f"disjunct {i + 1}: {r.reason}"
                continue
            del searches[i]
            reasons.pop(i, None)
            if r.status is SplitStatus.PROVEN:
                proven.add(i)
            else:
                reasons[i] = f"disjunct {i + 1}: {r.reason}"
        if not searches or deadline.passed():
            break
    nodes = sum(s.nodes for s in everyone.values())
    return Decision(frozenset(proven), nodes=nodes, reasons=tuple(reasons[i] for i in sorted(reasons)))
