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

import highspy
import numpy as np
import scipy.sparse as sp

from leo.bounds.propagate import LayerBounds
from leo.core.domain import Box
from leo.core.network import Network, excess_and_gradient
from leo.core.verdicts import Verdict

#: Relative widening of the recomputed dual bound for float rounding (the sums have at most
#: ~10^5 terms, each rounding error ~1e-16 of the magnitudes: 1e-10 covers them many times).
DUAL_SLACK = 1e-10
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
class LinearProgram:
    """``min cost . v`` s.t. ``row_lo <= A v <= row_hi``, ``col_lo <= v <= col_hi``."""

    a: sp.csr_matrix
    cost: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray

    @property
    def abs_a_t(self) -> sp.csr_matrix:
        """|A|^T, for the rounding slack (made once)."""
        if "_abs_a_t" not in self.__dict__:
            object.__setattr__(self, "_abs_a_t", abs(self.a).T.tocsr())
        return self.__dict__["_abs_a_t"]


def safe_bound(lp: LinearProgram, row_dual: np.ndarray, col_lo: np.ndarray, col_hi: np.ndarray,
               row_lo: np.ndarray, row_hi: np.ndarray, cost: np.ndarray | None = None) -> float:
    """A proven lower bound on ``lp``'s objective (with these bounds) from any row duals, by
    weak duality: ``c.v = y.(A v) + (c - A^T y).v``, each part bounded below over the bounds,
    widened for rounding. A dual on an infinite side counts as 0 (still a valid dual vector).
    With ``cost`` = 0 and a dual ray, a bound > 0 is a Farkas proof of infeasibility."""
    c = lp.cost if cost is None else cost
    y = np.where(np.isfinite(row_dual), row_dual, 0.0)
    y = np.where((y > 0) & ~np.isfinite(row_lo), 0.0, y)
    y = np.where((y < 0) & ~np.isfinite(row_hi), 0.0, y)
    row_side = np.where(y > 0, row_lo, np.where(y < 0, row_hi, 0.0))
    row_terms = np.where(y != 0, y * row_side, 0.0)
    reduced = c - lp.a.T @ y
    col_side = np.where(reduced > 0, col_lo, np.where(reduced < 0, col_hi, 0.0))
    if not np.isfinite(col_side[reduced != 0]).all():
        return -np.inf
    col_terms = np.where(reduced != 0, reduced * col_side, 0.0)
    scale = np.maximum(np.abs(col_lo), np.abs(col_hi))
    err = float(np.abs(row_terms).sum() + ((np.abs(c) + lp.abs_a_t @ np.abs(y)) * scale).sum())
    return float(row_terms.sum() + col_terms.sum()) - DUAL_SLACK * err


@dataclass(frozen=True)
class _Unit:
    """An unstable unit: its z and h columns and its ``h - z >= 0`` row."""

    z: int
    h: int
    row: int
    lower: float
    upper: float


class _Relaxation:
    """The network's LP relaxation for one disjunct, as arrays (see LinearProgram), with the
    unstable units and the columns of the inputs and of ``t``."""

    def __init__(self, network: Network, box: Box, bounds: Sequence[LayerBounds],
                 states: Sequence[Sequence[Verdict]], a: np.ndarray, c: np.ndarray) -> None:
        self.col_lo: list[float] = list(box.lower)
        self.col_hi: list[float] = list(box.upper)
        self.entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (rows, cols, values)
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.units: list[_Unit] = []
        outs: list[np.ndarray] = [np.arange(box.dim)]  # per layer: column of each output (-1: zero)
        self.z_cols: list[np.ndarray] = []
        for k, layer in enumerate(network.layers):
            lb = bounds[k]
            st = states[k] if k < len(states) and len(states[k]) else [Verdict.UNSTABLE] * layer.width
            # a stably inactive unit is constantly 0 and its row is implied by the box: neither is in
            # the LP (dropping rows only relaxes it; the dense first-layer rows cost the simplex most)
            live = np.ones(layer.width, dtype=bool) if not layer.relu else \
                ~((np.asarray(st) == Verdict.INACTIVE) | (np.asarray(lb.upper) <= 0))
            z = np.full(layer.width, -1)
            z[live] = self._cols(lb.lower[live], lb.upper[live])
            self.z_cols.append(z)
            rows = np.full(layer.width, -1)
            rows[live] = np.arange(len(self.row_lo), len(self.row_lo) + int(live.sum()))
            self._add(rows[live], z[live], np.ones(int(live.sum())))
            for s, w in layer.weights.items():
                coo = sp.coo_matrix(w[live])
                keep = outs[s][coo.col] >= 0
                self._add(rows[live][coo.row[keep]], outs[s][coo.col[keep]], -coo.data[keep])
            self.row_lo += list(layer.bias[live])
            self.row_hi += list(layer.bias[live])
            outs.append(self._relus(z, lb, st) if layer.relu else z)
        self.y = outs[-1]
        self.t = self._t_column(lb_out=bounds[-1], final_relu=network.layers[-1].relu, a=a, c=c)

    def _cols(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        start = len(self.col_lo)
        self.col_lo += list(np.asarray(lo, dtype=np.float64))
        self.col_hi += list(np.asarray(hi, dtype=np.float64))
        return np.arange(start, len(self.col_lo))

    def _add(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        self.entries.append((np.asarray(rows), np.asarray(cols), np.asarray(values, dtype=np.float64)))

    def _row(self, cols: Sequence[int], values: Sequence[float], lo: float, hi: float) -> int:
        r = len(self.row_lo)
        self._add(np.full(len(cols), r), np.asarray(cols), np.asarray(values))
        self.row_lo.append(lo)
        self.row_hi.append(hi)
        return r

    def _relus(self, z: np.ndarray, lb: LayerBounds, states: Sequence[Verdict]) -> np.ndarray:
        """Columns of the layer's outputs: z itself (active), -1 (inactive: no z column either) or a new h."""
        out = np.full(z.size, -1)
        for j, zj in enumerate(z):
            if zj < 0:  # stably inactive: no column
                continue
            lo, hi = float(lb.lower[j]), float(lb.upper[j])
            if states[j] == Verdict.ACTIVE or lo >= 0:
                self.col_lo[zj] = max(lo, 0.0)
                out[j] = zj
            else:
                out[j] = self._unstable(int(zj), lo, hi)
        return out

    def _unstable(self, z: int, lo: float, hi: float) -> int:
        """h in [0, hi], h >= z, and the triangle's upper side h - s z <= rhs, with rhs the
        largest of h - s z over the two kinks (so the rounded row cuts off no true point)."""
        h = int(self._cols(np.array([0.0]), np.array([hi]))[0])
        row = self._row([h, z], [1.0, -1.0], 0.0, np.inf)
        s = hi / (hi - lo)
        rhs = max(-s * lo, hi - s * hi)
        self._row([h, z], [1.0, -s], -np.inf, rhs * (1 + 1e-12) + 1e-15)
        self.units.append(_Unit(z, h, row, lo, hi))
        return h

    def _t_column(self, lb_out: LayerBounds, final_relu: bool, a: np.ndarray, c: np.ndarray) -> int:
        """``t >= a_r . y - c_r`` for every row r; t's bounds hold for every true point."""
        ylo, yhi = np.asarray(lb_out.lower, dtype=np.float64), np.asarray(lb_out.upper, dtype=np.float64)
        if final_relu:
            ylo, yhi = np.maximum(ylo, 0.0), np.maximum(yhi, 0.0)
        least = (np.minimum(a * ylo, a * yhi).sum(axis=1) - c)
        most = (np.maximum(a * ylo, a * yhi).sum(axis=1) - c)
        err = 1e-9 * (np.abs(a) * np.maximum(np.abs(ylo), np.abs(yhi))).sum(axis=1) + 1e-9 * np.abs(c) + 1e-12
        t = int(self._cols(np.array([float((least - err).max())]), np.array([float((most + err).max()) + 1.0]))[0])
        live = self.y >= 0
        for ar, cr in zip(a, c):
            self._row(list(self.y[live]) + [t], list(ar[live]) + [-1.0], -np.inf, float(cr))
        return t

    def program(self) -> LinearProgram:
        """The relaxation as one sparse LP minimising ``t``."""
        rows = np.concatenate([e[0] for e in self.entries])
        cols = np.concatenate([e[1] for e in self.entries])
        vals = np.concatenate([e[2] for e in self.entries])
        n = len(self.col_lo)
        a = sp.csr_matrix((vals, (rows, cols)), shape=(len(self.row_lo), n))
        cost = np.zeros(n)
        cost[self.t] = 1.0
        return LinearProgram(a, cost, np.array(self.col_lo), np.array(self.col_hi),
                             np.array(self.row_lo), np.array(self.row_hi))


@dataclass(frozen=True)
class _Solved:
    """One node's LP: a proven bound (-inf: none), and the optimum when there is one."""

    bound: float
    v: np.ndarray | None
    optimal: bool
    duals: np.ndarray | None = None


class _Solver:
    """One HiGHS model; a node is solved by changing the bounds that differ from the last one."""

    def __init__(self, lp: LinearProgram, units: Sequence[_Unit]) -> None:
        self.lp, self.units = lp, units
        self.h = highspy.Highs()
        # no scaling: on MNIST 256x2's LP, HiGHS's default scaling took 4-10 s (7,000-22,000
        # iterations, some stopped at 10 s) for a root solve that takes 0.1 s (700) without it
        for name, value in (("output_flag", False), ("threads", 1), ("presolve", "off"),
                            ("solver", "simplex"), ("simplex_scale_strategy", 0)):
            self.h.setOptionValue(name, value)
        inf = highspy.kHighsInf
        a = lp.a.tocsc()
        self.h.passModel(self._model(a, inf))
        self.col_lo, self.col_hi = lp.col_lo.copy(), lp.col_hi.copy()
        self.row_lo, self.row_hi = lp.row_lo.copy(), lp.row_hi.copy()
        self.fixed: dict[int, int] = {}

    def _model(self, a: sp.csc_matrix, inf: float) -> highspy.HighsLp:
        m = highspy.HighsLp()
        m.num_col_, m.num_row_ = a.shape[1], a.shape[0]
        m.col_cost_ = self.lp.cost
        m.col_lower_, m.col_upper_ = self.lp.col_lo, self.lp.col_hi
        m.row_lower_ = np.where(np.isfinite(self.lp.row_lo), self.lp.row_lo, -inf)
        m.row_upper_ = np.where(np.isfinite(self.lp.row_hi), self.lp.row_hi, inf)
        m.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        m.a_matrix_.start_ = a.indptr
        m.a_matrix_.index_ = a.indices
        m.a_matrix_.value_ = a.data
        return m

    def _set_unit(self, i: int, phase: int) -> None:
        """phase +1: active, -1: inactive, 0: free (the relaxation)."""
        u = self.units[i]
        zlo, zhi = (0.0, u.upper) if phase > 0 else (u.lower, 0.0) if phase < 0 else (u.lower, u.upper)
        hhi = 0.0 if phase < 0 else u.upper
        rhi = 0.0 if phase > 0 else np.inf
        self.col_lo[u.z], self.col_hi[u.z], self.col_hi[u.h] = zlo, zhi, hhi
        self.row_hi[u.row] = rhi
        self.h.changeColBounds(u.z, zlo, zhi)
        self.h.changeColBounds(u.h, 0.0, hhi)
        self.h.changeRowBounds(u.row, 0.0, highspy.kHighsInf if rhi == np.inf else rhi)

    def solve(self, fixed: dict[int, int], seconds: float) -> _Solved:
        """The node whose fixed phases are ``fixed`` (unit index -> +1 active / -1 inactive),
        warm from the last basis; its bound is the numpy-recomputed one, never HiGHS's objective."""
        for i in set(self.fixed) | set(fixed):
            if self.fixed.get(i, 0) != fixed.get(i, 0):
                self._set_unit(i, fixed.get(i, 0))
        self.fixed = dict(fixed)
        self._limit(seconds)
        self.h.run()
        status = self.h.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible:
            return _Solved(self._farkas(), None, False)
        if status != highspy.HighsModelStatus.kOptimal:
            return _Solved(-np.inf, None, False)
        sol = self.h.getSolution()
        duals = np.asarray(sol.row_dual)
        bound = safe_bound(self.lp, duals, self.col_lo, self.col_hi, self.row_lo, self.row_hi)
        return _Solved(bound, np.asarray(sol.col_value), True, duals)

    def _limit(self, seconds: float) -> None:
        """HiGHS's time_limit counts the object's run time over all its solves, not this one's."""
        self.h.setOptionValue("time_limit", self.h.getRunTime() + max(seconds, 1e-3))

    def minimise(self, cost: np.ndarray, seconds: float) -> float:
        """A proven lower bound on ``cost . v`` over the relaxation (-inf: none)."""
        self.h.changeColsCost(cost.size, np.arange(cost.size, dtype=np.int32), cost)
        self._limit(seconds)
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return -np.inf
        duals = np.asarray(self.h.getSolution().row_dual)
        return safe_bound(self.lp, duals, self.col_lo, self.col_hi, self.row_lo, self.row_hi, cost)

    def _farkas(self) -> float:
        """+inf when HiGHS's dual ray, recomputed in numpy, proves the node infeasible."""
        _, has, ray = self.h.getDualRay()
        if not has:
            return -np.inf
        ray = np.asarray(ray)
        zero = np.zeros_like(self.lp.cost)
        for y in (ray, -ray):
            if safe_bound(self.lp, y, self.col_lo, self.col_hi, self.row_lo, self.row_hi, zero) > 0:
                return np.inf
        return -np.inf


def tighten(network: Network, box: Box, bounds: Sequence[LayerBounds], states: Sequence[Sequence[Verdict]],
            deadline: float) -> list[LayerBounds]:
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
                left = deadline - time.perf_counter()
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


def _pgd(network: Network, box: Box, x: np.ndarray, a: np.ndarray, c: np.ndarray,
         confirmed: Confirm) -> tuple[np.ndarray, int] | None:
    """``x``, then a few signed-gradient steps on the disjunct's excess from it; the first
    point that ``confirmed`` accepts, if any (asked only when this network's excess is about
    <= 0: the caller's forward pass is the judge, this one only saves its calls)."""
    lo, hi = box.lower, box.upper
    for step in range(PGD_STEPS + 1):
        excesses, grads = excess_and_gradient(network, x[None, :], a, c)
        excess, grad = float(excesses[0]), grads[0]
        if excess <= 1e-5:
            hit = confirmed(x)
            if hit is not None:
                return x, hit
        if step == PGD_STEPS:
            return None
        rate = 0.02 * 0.7 ** step
        x = np.minimum(np.maximum(x - rate * (hi - lo) * np.sign(grad), lo), hi)
    return None


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

    def run(self, deadline: float) -> SplitResult:
        """Continue until a proof, a confirmed counterexample or ``deadline`` (TIMEOUT)."""
        t0 = time.perf_counter()
        r = self._run(deadline)
        self.seconds += time.perf_counter() - t0
        return SplitResult(r.status, r.x, r.disjunct, self.nodes, self.seconds, self.lp_seconds, r.reason)

    def _run(self, deadline: float) -> SplitResult:
        heap = self.heap
        while heap:
            left = deadline - time.perf_counter()
            if left <= 0:
                return self._result(SplitStatus.TIMEOUT, reason=f"the time ran out with {len(heap)} of "
                                    f"{self.nodes + len(heap)} ReLU-split nodes open")
            if len(heap) > MAX_OPEN:
                return self._result(SplitStatus.UNKNOWN, reason=f"more than {MAX_OPEN} ReLU-split nodes open")
            parent_bound, _, fixed = heapq.heappop(heap)
            t1 = time.perf_counter()
            node = self.solver.solve(fixed, left)
            self.lp_seconds += time.perf_counter() - t1
            if node.v is None and node.bound <= 0 and time.perf_counter() >= deadline:
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
           a: np.ndarray, c: np.ndarray, deadline: float, confirmed: Confirm) -> SplitResult:
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


#: Of the time left after the stability analysis, ``leo.queries.property.check_property`` gives the
#: search this share on image-size inputs (the MILPs get the rest).
PROPERTY_SHARE = 0.8
#: On image-size inputs ``check_property`` gives the stability analysis this fraction of its usual
#: share (``leo.queries.property.ANALYSIS_SHARE``): on MNIST 256x2 its layer-2 MILPs decided nothing in 40 s,
#: while the LP tightening here made 30 units stable in 7 s.
ANALYSIS_SCALE = 0.3
#: Rounds of ``decide``: the disjuncts still open after one share the time left in the next.
ROUNDS = 4
#: Of the search's time, the LP bound tightening of later layers (shared by the disjuncts) may take this much.
TIGHTEN_SHARE = 0.15


def decide(network: Network, box: Box, disjuncts: Sequence[tuple[np.ndarray, np.ndarray]], pending: Sequence[int],
           bounds: Sequence[LayerBounds], states: Sequence[Sequence[Verdict]], deadline: float,
           confirmed: Confirm, say: Callable[[str], None] = lambda _line: None) -> Decision:
    """The search on each disjunct of ``pending`` (``(A, c)`` of ``disjuncts``), after one LP
    tightening of the bounds for all of them: rounds in which the disjuncts still open share
    the time left equally, each search resuming where it stopped (an easy disjunct's leftover
    time goes to the hard ones)."""
    if not pending:
        return Decision(frozenset())
    share = TIGHTEN_SHARE * (deadline - time.perf_counter())
    say(f"ReLU split: LP bounds of later layers (up to {share:.1f} s)")
    bounds = tighten(network, box, bounds, states, time.perf_counter() + share)
    everyone = {i: Search(network, box, bounds, states, *disjuncts[i], confirmed) for i in pending}
    # the most violated root first: a counterexample is likelier there (prop_0_0.05's is in the last disjunct)
    roots = {i: everyone[i].root_value(max(deadline - time.perf_counter(), 0.0) / len(pending)) for i in pending}
    pending = sorted(pending, key=lambda i: roots[i])
    searches = dict(everyone)
    proven: set[int] = set()
    reasons: dict[int, str] = {}
    for round_ in range(ROUNDS):
        open_now = [i for i in pending if i in searches]
        for k, i in enumerate(open_now):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            each = left / ((len(open_now) - k) * (ROUNDS - round_))
            say(f"ReLU split on disjunct {i + 1} of {len(disjuncts)}, up to {each:.1f} s")
            r = searches[i].run(time.perf_counter() + each)
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
        if not searches or deadline - time.perf_counter() <= 0:
            break
    nodes = sum(s.nodes for s in everyone.values())
    return Decision(frozenset(proven), nodes=nodes, reasons=tuple(reasons[i] for i in sorted(reasons)))
