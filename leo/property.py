"""Exact verification of an output property over the input box, with the same big-M
MILP that proves unit stability.

A property is the *unsafe* set, as in VNN-LIB: a disjunction of conjunctions of
linear inequalities ``a . y <= c`` on the outputs ``y``. "sat" means a counterexample
exists: an input in the box whose output lies in the unsafe set. A sat answer always
comes with a point checked by the network's own forward pass; "unsat" only when
HiGHS proves every disjunct infeasible; anything else (time-out, a solver point that
does not check out) is "unknown" (``sat=None``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from leo.bounds import LayerBounds
from leo.domain import Box
from leo.errors import LeoInputError
from leo.network import Network
from leo.report import StabilityReport
from leo.stability import StabilityOptions, analyse, bounds_and_states
from solvers.formulation import Formulation, build_prefix
from solvers.highs_backend import _to_highs

#: A counterexample must put the outputs in the unsafe set up to this much.
CHECK_TOL = 1e-6
#: When the solver's point misses by more than CHECK_TOL (its feasibility tolerances
#: at work), the disjunct is solved once more with every inequality tightened by this.
RETRY_MARGIN = 1e-5


@dataclass(frozen=True)
class Inequality:
    """``coeffs . y <= bound`` on the network outputs ``y``."""

    coeffs: np.ndarray
    bound: float


@dataclass(frozen=True)
class OutputProperty:
    """The unsafe set: y is in it when it satisfies every inequality of some disjunct."""

    output_dim: int
    disjuncts: tuple[tuple[Inequality, ...], ...]

    def rows(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Disjunct ``i`` as ``A y <= c``."""
        ineqs = self.disjuncts[i]
        a = np.array([q.coeffs for q in ineqs], dtype=np.float64).reshape(len(ineqs), self.output_dim)
        return a, np.array([q.bound for q in ineqs], dtype=np.float64)

    def excess(self, y: np.ndarray, i: int) -> np.ndarray:
        """Per row of ``y``: how far outside disjunct ``i`` it is (<= 0 means inside)."""
        a, c = self.rows(i)
        y = np.atleast_2d(y)
        if not len(c):
            return np.full(len(y), -np.inf)
        return (y @ a.T - c).max(axis=1)

    def violating(self, y: np.ndarray, tol: float = 0.0) -> tuple[int, int] | None:
        """(row of ``y``, disjunct) of the first output in the unsafe set, if any."""
        for i in range(len(self.disjuncts)):
            hits = np.flatnonzero(self.excess(y, i) <= tol)
            if hits.size:
                return int(hits[0]), i
        return None


@dataclass(frozen=True)
class PropertyResult:
    """sat: True (counterexample found and checked), False (proven), None (unknown)."""

    sat: bool | None
    counterexample: np.ndarray | None
    seconds: float
    output: np.ndarray | None = None  # net(counterexample), by the forward pass
    disjunct: int | None = None  # which disjunct the counterexample satisfies
    how: str = ""  # "sampling", "milp", "milp-infeasible", "timeout", "unverified", ...
    solves: int = 0


class _Rows:
    """Columns and rows appended to a formulation: output ReLUs and the property."""

    def __init__(self, f: Formulation) -> None:
        self.f = f
        self.col_lo: list[float] = []
        self.col_hi: list[float] = []
        self.integer: list[bool] = []
        self.entries: list[tuple[int, int, float]] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []

    def col(self, lo: float, hi: float, integer: bool = False) -> int:
        self.col_lo.append(lo)
        self.col_hi.append(hi)
        self.integer.append(integer)
        return self.f.num_cols + len(self.col_lo) - 1

    def row(self, cols: Sequence[int], vals: Sequence[float], lo: float, hi: float) -> None:
        r = len(self.row_lo)
        self.entries.extend((r, c, v) for c, v in zip(cols, vals))
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def build(self) -> Formulation:
        f = self.f
        n = f.num_cols + len(self.col_lo)
        r, c, v = (list(t) for t in zip(*self.entries)) if self.entries else ([], [], [])
        extra = sp.csr_matrix((v, (r, c)), shape=(len(self.row_lo), n))
        old = sp.hstack([f.matrix, sp.csr_matrix((f.matrix.shape[0], len(self.col_lo)))])
        return Formulation(
            matrix=sp.vstack([old, extra]).tocsr(),
            row_lower=np.concatenate([f.row_lower, self.row_lo]),
            row_upper=np.concatenate([f.row_upper, self.row_hi]),
            col_lower=np.concatenate([f.col_lower, self.col_lo]),
            col_upper=np.concatenate([f.col_upper, self.col_hi]),
            integer=np.concatenate([f.integer, np.array(self.integer, dtype=bool)]),
            names=f.names + tuple(f"p{i}" for i in range(len(self.col_lo))),
            x_cols=f.x_cols, z_cols=f.z_cols, relus=f.relus,
        )


def _output_columns(network: Network, f: Formulation, out_bounds: LayerBounds, rows: _Rows) -> np.ndarray:
    """Column of every output ``y_j`` (-1: constantly 0). A final ReLU gets the same
    big-M encoding as hidden units: y >= z, y <= z - l (1 - d), y <= u d."""
    z = f.z_cols[-1]
    if not network.layers[-1].relu:
        return np.asarray(z)
    cols = np.full(z.size, -1)
    for j, zj in enumerate(z):
        l, u = float(out_bounds.lower[j]), float(out_bounds.upper[j])
        if l >= 0:
            cols[j] = zj
        elif u > 0:
            h, d = rows.col(0.0, u), rows.col(0.0, 1.0, integer=True)
            rows.row([zj, h], [1.0, -1.0], -np.inf, 0.0)
            rows.row([h, zj, d], [1.0, -1.0, -l], -np.inf, -l)
            rows.row([h, d], [1.0, -u], -np.inf, 0.0)
            cols[j] = h
    return cols


def _disjunct_model(network: Network, base: Formulation, out_bounds: LayerBounds,
                    a: np.ndarray, c: np.ndarray) -> Formulation:
    rows = _Rows(base)
    y = _output_columns(network, base, out_bounds, rows)
    live = y >= 0
    for ai, ci in zip(a, c):
        rows.row(y[live].tolist(), ai[live].tolist(), -np.inf, float(ci))
    return rows.build()


def _solve(f: Formulation, time_limit: float) -> tuple[str, np.ndarray | None]:
    """Feasibility of ``f``: ("feasible", x), ("infeasible", None) or (why unknown, None)."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("time_limit", float(max(time_limit, 1e-3)))
    h.passModel(_to_highs(f, relax=False))
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kUnboundedOrInfeasible:
        # Presolve could not tell which; every column is bounded, so ask without it.
        h.setOptionValue("presolve", "off")
        h.run()
        status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return "infeasible", None
    if status == highspy.HighsModelStatus.kOptimal:  # zero objective: any feasible point is optimal
        return "feasible", np.asarray(h.getSolution().col_value)[f.x_cols].copy()
    if status == highspy.HighsModelStatus.kTimeLimit:
        return "timeout", None
    return f"solver status {h.modelStatusToString(status)}", None


def check_property(network: Network, box: Box, prop: OutputProperty, time_limit: float = 60.0,
                   *, report: StabilityReport | None = None, samples: int = 1024,
                   seed: int = 0) -> PropertyResult:
    """Is there an input in ``box`` whose output lies in ``prop``'s unsafe set?

    Random box points are tried first (a cheap, checked counterexample); then, per
    disjunct, one MILP feasibility problem over the full network. ``time_limit`` is
    the budget in seconds for those solves (and the per-solve limit of the stability
    analysis, which supplies bounds and unit states unless ``report`` is given).
    """
    t0 = time.perf_counter()
    if box.dim != network.input_dim:
        raise LeoInputError(f"the input box has {box.dim} inputs but the network takes {network.input_dim}")
    if prop.output_dim != network.output_dim:
        raise LeoInputError(f"the property speaks of {prop.output_dim} outputs but the network has "
                            f"{network.output_dim}; check that the property file fits this network")

    def done(sat: bool | None, how: str, x: np.ndarray | None = None, i: int | None = None,
             solves: int = 0) -> PropertyResult:
        y = network(x[None, :])[0] if x is not None else None
        return PropertyResult(sat, x, time.perf_counter() - t0, y, i, how, solves)

    if samples > 0:
        rng = np.random.default_rng(seed)
        pts = np.vstack([box.sample(samples, rng), (box.lower + box.upper)[None, :] / 2, box.lower, box.upper])
        hit = prop.violating(network(pts))
        if hit is not None:
            return done(True, "sampling", pts[hit[0]].copy(), hit[1])
    if not prop.disjuncts:
        return done(False, "empty property")
    if report is None:
        report = analyse(network, box, StabilityOptions(time_limit=time_limit, seed=seed))
    deadline = time.perf_counter() + time_limit
    bounds, states = bounds_and_states(network, box, report)
    base = build_prefix(network, box, bounds, states, upto=len(network.layers) - 1)
    unknown: list[str] = []
    solves = 0
    for i in range(len(prop.disjuncts)):
        a, c = prop.rows(i)
        for margin in (0.0, RETRY_MARGIN):
            left = deadline - time.perf_counter()
            if left <= 0:
                unknown.append("timeout")
                break
            tight = c - margin * np.maximum(1.0, np.abs(c))
            outcome, x = _solve(_disjunct_model(network, base, bounds[-1], a, tight), left)
            solves += 1
            if outcome == "infeasible":
                if margin:  # only the tightened problem is infeasible: no proof either way
                    unknown.append("unverified")
                break
            if x is None:
                unknown.append(outcome)
                break
            x = np.clip(x, box.lower, box.upper)
            if prop.excess(network(x[None, :]), i)[0] <= CHECK_TOL:
                return done(True, "milp", x, i, solves)
            if margin:
                unknown.append("unverified")  # the solver's point fails the forward pass
    if unknown:
        how = "timeout" if "timeout" in unknown else unknown[0]
        return done(None, how, solves=solves)
    return done(False, "milp-infeasible", solves=solves)

