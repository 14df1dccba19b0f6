"""The strategies of ``leo property`` that can prove a disjunct unreachable: input-splitting
branch and bound (and a race of two such searches), the stability analysis that supplies
bounds (and the lossless compression it allows), ReLU-split branch and bound and one MILP per
disjunct. Each works on ``leo.queries.strategies.PropertyProblem`` (see there) and closes a
disjunct only on a proof; every point it reports is confirmed by the judge's forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from leo.core.deadline import Deadline
from leo.core.schedule import Outcome, Part
from leo.queries.strategies import (DisjunctOutcome, DisjunctStatus, Found, How, Polytope, PropertyProblem, Say,
                                    StepName)

if TYPE_CHECKING:
    from leo.bounds.encoding import Encoding
    from leo.bounds.propagate import LayerBounds
    from leo.core.network import Network
    from leo.stability.analysis import Progress
    from solvers.problem import Problem, ProblemBuilder

#: During the analysis, a progress line at least this often (seconds) even if nothing changes.
PROGRESS_EVERY = 5.0
#: An analysis is given at least this many seconds (its options need a positive budget; with
#: no time left it still computes the interval and symbolic bounds the MILPs need).
MIN_ANALYSIS = 1e-3


def _sat(x: np.ndarray, disjunct: int, how: How) -> Outcome[PropertyProblem]:
    return Outcome(found=Found(np.asarray(x), int(disjunct), how))


def _others(p: PropertyProblem, open_parts: frozenset[Part]) -> list[int]:
    return [i for i in range(len(p.prop.disjuncts)) if i not in open_parts]


# -- input-splitting branch and bound ---------------------------------------------------------

def _bab_outcome(p: PropertyProblem, bab: Any, open_parts: frozenset[Part]) -> Outcome[PropertyProblem] | None:
    """A search's result as an outcome: SAT on its point, every open disjunct on PROVEN."""
    from leo.bab.input_split import Status

    if bab.status is Status.COUNTEREXAMPLE:
        return _sat(bab.x, bab.disjunct, How.BRANCH_AND_BOUND)
    if bab.status is Status.PROVEN:
        return Outcome(closed=open_parts)
    return None


@dataclass(frozen=True)
class InputSplit:
    """Branch and bound over the input box with CROWN bounds (``leo.bab.input_split``): proves
    the property, finds a confirmed point, or excludes some disjuncts; the search is handed
    on, so later races resume it."""

    name: StepName = StepName.INPUT_SPLIT

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        from leo.bab.input_split import Searcher

        p.say(f"branch and bound over the input box (up to {deadline.left():.1f} s)")
        first = Searcher(p.network, p.box, p.prop, confirm=p.confirmed)
        first.exclude(_others(p, open_parts))
        bab = first.run(deadline)
        p.say(f"branch and bound: {bab.status.value} after {bab.leaves} sub-boxes, "
              f"{len(bab.proven)}/{len(p.prop.disjuncts)} disjuncts excluded")
        done = _bab_outcome(p, bab, open_parts)
        after = p.with_(searchers=(first,))
        return Outcome(done.closed, done.found, after) if done else Outcome(frozenset(bab.proven), problem=after)


#: Two input-splitting searches (without and with the analysis's bounds as floors) take turns in
#: slices of this many seconds: neither is faster everywhere (ACAS Xu 1_4 property 1: 14 s with
#: floors, no proof in 40 s without; 1_8 property 2 the other way round), and taking turns costs
#: at most twice the faster one.
RACE_SLICE = 2.0


def race(searchers: Sequence[Any], deadline: Deadline) -> Any:
    """The first PROVEN or COUNTEREXAMPLE of ``searchers`` (``leo.bab.input_split.Searcher``s that go on
    from where they stopped) run in turns until ``deadline``; else the last result."""
    from leo.bab.input_split import Status

    live, last = list(searchers), None
    while live and not deadline.passed():
        for s in list(live):
            last = s.run(deadline.cap(RACE_SLICE))
            if last.status in (Status.PROVEN, Status.COUNTEREXAMPLE):
                return last
            if last.status is not Status.TIMEOUT:
                live.remove(s)
    return last if last is not None else searchers[-1].run(deadline)


@dataclass(frozen=True)
class FloorsRace:
    """A second input-splitting search, with the analysis's proven bounds as floors on every
    sub-box, taking turns (``race``) with the first; it is handed on for a last race."""

    name: StepName = StepName.FLOORS_RACE

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        from leo.bab.input_split import Searcher
        from leo.stability.analysis import bounds_and_states

        assert p.report is not None
        floors = [(b.lower, b.upper) for b in bounds_and_states(p.network, p.box, p.report)[0][:-1]]
        p.say(f"branch and bound with the analysis's bounds (up to {deadline.left():.1f} s)")
        floored = Searcher(p.network, p.box, p.prop, confirm=p.confirmed, floors=floors)
        floored.exclude(_others(p, open_parts))
        bab = race((*p.searchers, floored), deadline)
        p.say(f"branch and bound: {bab.status.value} after {bab.leaves} sub-boxes")
        after = p.with_(searchers=(*p.searchers, floored))
        done = _bab_outcome(p, bab, open_parts)
        return Outcome(done.closed, done.found, after) if done else Outcome(frozenset(bab.proven), problem=after)


@dataclass(frozen=True)
class LastRace:
    """The searches handed on, raced once more over the disjuncts the MILPs left open."""

    name: StepName = StepName.LAST_RACE

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        if deadline.passed():
            return Outcome()
        p.say(f"branch and bound with the analysis's bounds, on (up to {deadline.left():.1f} s)")
        for searcher in p.searchers:
            searcher.exclude(_others(p, open_parts))
        bab = race(p.searchers, deadline)
        p.say(f"branch and bound: {bab.status.value} after {bab.leaves} sub-boxes")
        return _bab_outcome(p, bab, open_parts) or Outcome()


# -- the stability analysis, and the compression it allows --------------------------------------

class _AnalysisProgress:
    """Turns the analysis's frequent progress events into a line per phase change."""

    def __init__(self, say: Say, label: str) -> None:
        self.say, self.label = say, label
        self.key: tuple[int, str] | None = None
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.perf_counter()
        if (p.layer, p.phase) == self.key and now - self.last < PROGRESS_EVERY:
            return
        self.key, self.last = (p.layer, p.phase), now
        where = f"layer {p.layer}" if p.layer else "network-wide MILP"
        self.say(f"{self.label}: {where}, {p.phase}, {p.decided}/{p.total} units decided")


def _analysis(network: Network, p: PropertyProblem, seconds: float, label: str) -> Any:
    from leo.stability.analysis import StabilityOptions, analyse

    options = StabilityOptions(time_limit=seconds, seed=p.seed, time_budget=seconds, solver=p.solver)
    return analyse(network, p.box, options, progress=_AnalysisProgress(p.say, label))


@dataclass(frozen=True)
class Analysis:
    """The stability analysis (bounds and unit states for the MILPs) within its share, its MILPs
    in the problem's solver; units it cannot decide in time stay unstable, which costs MILP
    binaries, never soundness."""

    name: StepName = StepName.ANALYSIS

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        budget = max(deadline.left(), MIN_ANALYSIS)
        p.say(f"stability analysis (up to {budget:.1f} s)")
        return Outcome(problem=p.with_(report=_analysis(p.network, p, budget, "stability analysis")))


@dataclass(frozen=True)
class Compress:
    """The network made smaller losslessly by the analysis the MILPs would use anyway, and a
    short re-analysis for its bounds (never a second full analysis); the judge stays."""

    name: StepName = StepName.COMPRESS

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        from leo.reduction.reduce import reduce

        assert p.report is not None
        small = reduce(p.network, p.report).network
        sizes = (sum(p.network.hidden), sum(small.hidden))
        p.say(f"compressed: hidden units {sizes[0]} -> {sizes[1]}")
        report = _analysis(small, p, max(deadline.left(), MIN_ANALYSIS), "bounds of the compressed network")
        return Outcome(problem=p.with_(network=small, report=report, sizes=sizes, bounds=None))


def with_bounds(p: PropertyProblem) -> PropertyProblem:
    """``p`` with its network's layer bounds and unit states from its analysis."""
    from leo.stability.analysis import bounds_and_states

    if p.bounds is not None:
        return p
    assert p.report is not None
    return p.with_(bounds=tuple(bounds_and_states(p.network, p.box, p.report)))


@dataclass(frozen=True)
class ReluSplit:
    """Branch and bound over ReLU phases with LP bounds (``leo.bab.relu_split.decide``) on
    each open disjunct."""

    name: StepName = StepName.RELU_SPLIT

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        from leo.bab.relu_split import decide

        p = with_bounds(p)
        bounds, states = p.bounds
        split = decide(p.network, p.box, p.rows(), sorted(open_parts), bounds, states, deadline, p.confirmed, p.say)
        if split.x is not None:
            return Outcome(found=Found(split.x, int(split.disjunct), How.RELU_SPLIT), problem=p)
        return Outcome(closed=frozenset(split.proven), problem=p)


# -- one MILP per disjunct ----------------------------------------------------------------------

def _output_columns(network: Network, f: Encoding, out_bounds: LayerBounds, rows: ProblemBuilder) -> np.ndarray:
    """Column of every output ``y_j`` (-1: constantly 0). A final ReLU gets the same
    big-M encoding as hidden units (``ProblemBuilder.add_relu``)."""
    z = f.z_cols[-1]
    if not network.layers[-1].relu:
        return np.asarray(z)
    cols = np.full(z.size, -1)
    for j, zj in enumerate(z):
        l, u = float(out_bounds.lower[j]), float(out_bounds.upper[j])
        if l >= 0:
            cols[j] = zj
        elif u > 0:
            cols[j] = rows.add_relu(int(zj), l, u, int(f.z_rows[-1][j]), (f"p_h{j}", f"p_d{j}"))[0]
    return cols


def disjunct_model(network: Network, base: Encoding, out_bounds: LayerBounds,
                   a: np.ndarray, c: np.ndarray, polytope: Polytope | None = None) -> Problem:
    """The MILP of one disjunct; a polytope input region adds its rows on the input columns
    (exact: the box the rest of the model was built on is only its bounding box)."""
    from solvers.problem import ProblemBuilder

    rows = ProblemBuilder(base)
    y = _output_columns(network, base, out_bounds, rows)
    live = y >= 0
    for ai, ci in zip(a, c):
        coo = sp.coo_matrix((ai[live], (np.zeros(int(live.sum()), dtype=int), y[live])), shape=(1, rows.num_cols))
        rows.add_rows(coo, np.array([-np.inf]), np.array([float(ci)]))
    if polytope is not None:
        pa, pb = polytope
        full = sp.csr_matrix(pa)
        cols = sp.coo_matrix((np.ones(len(base.x_cols)), (np.arange(len(base.x_cols)), base.x_cols)),
                             shape=(len(base.x_cols), rows.num_cols))
        rows.add_rows((full @ cols).tocoo(), np.full(len(pb), -np.inf), np.asarray(pb, dtype=np.float64))
    return rows.build()


@dataclass(frozen=True)
class MilpBase:
    """The big-M encoding of the network up to its outputs, shared by every disjunct's MILP."""

    encoding: Encoding
    out_bounds: LayerBounds


@dataclass(frozen=True)
class MilpPerDisjunct:
    """One MILP feasibility problem per open disjunct over the whole network (``p.decide``),
    the disjuncts still to solve sharing the time left; those that time out get a second go
    with what the others left. Why each disjunct stays open is handed on."""

    name: StepName = StepName.MILP

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        from leo.bounds.encoding import build_prefix

        p = with_bounds(p)
        bounds, states = p.bounds
        base = MilpBase(build_prefix(p.network, p.box, bounds, states, upto=len(p.network.layers) - 1), bounds[-1])
        n = len(p.prop.disjuncts)
        why: dict[Part, Any] = {}
        closed: set[int] = set()
        solves = 0
        pending = sorted(open_parts)
        for again in (False, True):  # disjuncts that time out get a second go with the time the others left
            timed_out: list[int] = []
            for k, i in enumerate(pending):
                out = self._one(p, base, i, n, k, len(pending), again, deadline)
                solves += out.solves
                if out.how is DisjunctStatus.SAT:
                    return Outcome(frozenset(closed), Found(out.x, int(out.disjunct), How.MILP), p, solves=solves)
                if out.how is DisjunctStatus.INFEASIBLE:
                    why.pop(i, None)
                    closed.add(i)
                    continue
                why[i] = out
                if out.how is DisjunctStatus.TIMEOUT:
                    timed_out.append(i)
            pending = timed_out
            if not pending or deadline.passed():
                break
        return Outcome(frozenset(closed), problem=p, why_open=why, solves=solves)

    @staticmethod
    def _one(p: PropertyProblem, base: MilpBase, i: int, n: int, k: int, count: int, again: bool,
             deadline: Deadline) -> DisjunctOutcome:
        left = deadline.left()
        if left <= 0:
            return DisjunctOutcome(DisjunctStatus.TIMEOUT, reason=f"the time limit of {p.time_limit:g} s ran out "
                                                                  f"before disjunct {i + 1} of {n} was decided")
        share = left / (count - k)  # the disjuncts still to solve share what is left
        p.say(f"MILP for disjunct {i + 1} of {n}{' (again)' if again else ''}, up to {share:.1f} s")
        return p.decide(p, base, i, share)
