"""Exact verification of an output property over the input box, with the same big-M
MILP that proves unit stability.

A property is the *unsafe* set, as in VNN-LIB: a disjunction of conjunctions of
linear inequalities ``a . y <= c`` on the outputs ``y``. The answer (``Answer``) uses
VNN-COMP's words: SAT means a counterexample exists (an input in the box whose output
lies in the unsafe set: the property is VIOLATED), and always comes with a point that
the network's own forward pass confirms; UNSAT (the property HOLDS) only when HiGHS
proves every disjunct infeasible; TIMEOUT when the time limit ran out, UNKNOWN when a
solve stopped without a proof or its point failed the forward pass. An interrupted
solve proves nothing.
"""

from __future__ import annotations

import enum
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import scipy.sparse as sp

from leo.bounds.propagate import LayerBounds
from leo.core.spec import REGION_TOL, Inequality, OutputProperty  # noqa: F401  (the unsafe-set types, re-exported)
from leo.core.domain import Box
from leo.errors import LeoInputError
from leo.exitcodes import ExitCode
from leo.core.network import Network, excess_and_gradient
from leo.stability.report import StabilityReport
from leo.bounds.encoding import Encoding, build_prefix
from solvers.highs_backend import solve_feasibility
from solvers.problem import Problem, ProblemBuilder

if TYPE_CHECKING:  # leo.stability.analysis (and its witnesses, branch and bound) import torch: only when a step needs it
    from leo.stability.analysis import Progress

#: A counterexample must put the outputs in the unsafe set up to this much.
CHECK_TOL = 1e-6
#: Linear input rows ``a @ x <= b`` (a polytope input region, inside its bounding box).
Polytope = tuple[np.ndarray, np.ndarray]
#: When the solver's point misses by more than CHECK_TOL (its feasibility tolerances
#: at work), the disjunct is solved once more with every inequality tightened by this.
RETRY_MARGIN = 1e-5


class Answer(enum.Enum):
    """The answer to "is there a counterexample?", in VNN-COMP's words (the value)."""

    UNSAT = "unsat"  # no input in the box reaches the unsafe set: the property HOLDS (proven)
    SAT = "sat"  # a counterexample, confirmed by the network's forward pass: the property is VIOLATED
    UNKNOWN = "unknown"  # the solver stopped without a proof (numerical trouble, a point that fails the check)
    TIMEOUT = "timeout"  # the time limit ran out before a proof or a counterexample

    @property
    def exit_code(self) -> ExitCode:
        """0 holds, 1 violated (confirmed counterexample), 3 not decided."""
        return {Answer.UNSAT: ExitCode.OK, Answer.SAT: ExitCode.REFUTED}.get(self, ExitCode.UNDECIDED)

    @property
    def meaning(self) -> str:
        return {Answer.UNSAT: "the property holds (proven)", Answer.SAT: "the property is VIOLATED"}.get(
            self, "not decided")


@dataclass(frozen=True)
class PropertyResult:
    """The answer, and for SAT the counterexample with the output the forward pass gives."""

    answer: Answer
    counterexample: np.ndarray | None
    seconds: float
    output: np.ndarray | None = None  # net(counterexample), by the (original) network's forward pass
    disjunct: int | None = None  # which disjunct the counterexample satisfies
    how: str = ""  # "sampling", "gradient search", "region walk", "milp", "milp-infeasible", "timeout", "unverified", ...
    solves: int = 0
    reason: str = ""  # for UNKNOWN / TIMEOUT: why nothing was decided, in words
    hidden_units: tuple[int, int] | None = None  # (before, after) when the network was compressed first

    @property
    def sat(self) -> bool | None:
        """True (violated), False (holds, proven), None (not decided)."""
        return {Answer.SAT: True, Answer.UNSAT: False}.get(self.answer)


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


def _disjunct_model(network: Network, base: Encoding, out_bounds: LayerBounds,
                    a: np.ndarray, c: np.ndarray, polytope: Polytope | None = None) -> Problem:
    """The MILP of one disjunct; a polytope input region adds its rows on the input columns
    (exact: the box the rest of the model was built on is only its bounding box)."""
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


def _solve(f: Problem, time_limit: float) -> tuple[str, np.ndarray | None]:
    """Feasibility of ``f``: ("feasible", x), ("infeasible", None) or (why unknown, None);
    "timeout" when HiGHS stopped at the time limit."""
    return solve_feasibility(f, time_limit, threads=1)


#: Progress messages: a callable that takes one line of text (the CLI prints it on stderr).
Say = Callable[[str], None]
#: Of the time left, the stability analysis (bounds and unit states for the MILP) gets this share.
ANALYSIS_SHARE = 0.4
#: On few inputs the analysis only supplies floors to the second input-splitting search, which
#: needs no MILP-tight bounds: a smaller share.
FEW_INPUTS_ANALYSIS_SHARE = 0.15
#: On few inputs, the share of the time left after the analysis that the second branch-and-bound
#: try (with the analysis's bounds as floors) gets before the MILPs, and the share of what is then
#: left that it keeps back from the MILPs to go on afterwards.
FLOORS_SHARE, SECOND_TRY_SHARE = 0.6, 0.5
#: During the analysis, a progress line at least this often (seconds) even if nothing changes.
PROGRESS_EVERY = 5.0


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


def _check_sizes(network: Network, box: Box, prop: OutputProperty) -> None:
    if box.dim != network.input_dim:
        raise LeoInputError(f"the input box has {box.dim} inputs but the network takes {network.input_dim}")
    if prop.output_dim != network.output_dim:
        raise LeoInputError(f"the property speaks of {prop.output_dim} outputs but the network has "
                            f"{network.output_dim}; check that the property file fits this network")


def _analyse(network: Network, box: Box, deadline: float, seed: int, say: Say, label: str,
             share: float = ANALYSIS_SHARE) -> StabilityReport:
    """Stability analysis within ANALYSIS_SHARE of the time left (units it cannot decide
    in time stay unstable, which costs the MILP binaries, never soundness)."""
    from leo.stability.analysis import StabilityOptions, analyse

    budget = max(share * (deadline - time.perf_counter()), 1e-3)
    say(f"{label} (up to {budget:.1f} s)")
    options = StabilityOptions(time_limit=budget, seed=seed, time_budget=budget)
    return analyse(network, box, options, progress=_AnalysisProgress(say, label))


#: Of the time left after the analysis, the re-analysis of the compressed network gets this share.
RECHECK_SHARE = 0.05


def _compressed(network: Network, box: Box, report: StabilityReport, deadline: float, seed: int,
                say: Say) -> tuple[Network, StabilityReport, tuple[int, int]]:
    """The network made smaller losslessly by ``report`` (the one analysis the MILPs would use
    anyway, so compressing first costs only the reduction and a short re-analysis for the
    smaller network's bounds: never a second full analysis), with that re-analysis."""
    from leo.reduction.reduce import reduce
    from leo.stability.analysis import StabilityOptions, analyse

    small = reduce(network, report).network
    sizes = (sum(network.hidden), sum(small.hidden))
    say(f"compressed: hidden units {sizes[0]} -> {sizes[1]}")
    budget = max(RECHECK_SHARE * (deadline - time.perf_counter()), 1e-3)
    options = StabilityOptions(time_limit=budget, seed=seed, time_budget=budget)
    return small, analyse(small, box, options, progress=_AnalysisProgress(say, "bounds of the compressed network")), \
        sizes


#: On few inputs, LP walks across linear regions (``leo.search.region_walk``) get this share of the
#: time limit after the gradient search (one round of starts: about 2 s on ACAS Xu), and this share
#: of the time left, for up to WALK_ROUNDS - 1 more rounds, when the first input-splitting search
#: ends without an answer. ACAS Xu 1_9 property 7 (sat): no counterexample in 116 s before, found
#: by one round in 5 of 8 seeds (WALK_STARTS).
WALK_SHARE, WALK_AGAIN_SHARE, WALK_ROUNDS = 0.05, 0.1, 4
#: A projected-gradient search for a counterexample gets this share of the time limit.
ATTACK_SHARE = 0.1
ATTACK_STARTS, ATTACK_STEPS = 16, 100


def _attack(network: Network, box: Box, prop: OutputProperty, seconds: float, seed: int) -> np.ndarray:
    """Candidate counterexamples from projected signed-gradient descent (PGD) on each
    disjunct's excess (max over its rows of a . y - c), from random box points; one
    candidate per disjunct tried. Only candidates: the caller confirms them by the forward pass."""
    deadline = time.perf_counter() + seconds
    rng = np.random.default_rng(seed + 1)
    lo, hi = box.lower, box.upper
    found: list[np.ndarray] = []
    for i in range(len(prop.disjuncts)):
        a, c = prop.rows(i)
        if not len(c):
            continue
        x = box.sample(ATTACK_STARTS, rng)
        best, best_val = x.copy(), np.full(ATTACK_STARTS, np.inf)
        for step in range(ATTACK_STEPS):
            if time.perf_counter() >= deadline:
                return np.array(found).reshape(-1, box.dim)
            excess, grad = excess_and_gradient(network, x, a, c)
            better = excess < best_val
            best[better], best_val[better] = x[better], excess[better]
            if bool((best_val < 0).any()):
                break
            rate = 0.1 * 0.5 ** (4 * step // ATTACK_STEPS)  # 0.1 of the box, halved each quarter
            x = np.minimum(np.maximum(x - rate * (hi - lo) * np.sign(grad), lo), hi)
        found.append(best[int(best_val.argmin())].copy())
    return np.array(found).reshape(-1, box.dim)


@dataclass(frozen=True)
class _Outcome:
    """One disjunct: "infeasible" (proven), "sat" (a confirmed point), or why it is open."""

    how: str  # "infeasible", "sat", "timeout", "unverified" or "solver status ..."
    x: np.ndarray | None = None
    disjunct: int | None = None
    reason: str = ""
    solves: int = 0


def _solve_disjunct(network: Network, box: Box, base: Encoding, out_bounds: LayerBounds,
                    prop: OutputProperty, i: int, seconds: float,
                    confirmed: Callable[[np.ndarray], int | None], polytope: Polytope | None = None) -> _Outcome:
    """Is disjunct ``i`` reachable? A solver point counts only when ``confirmed`` (the forward
    pass) agrees; one that fails is retried once on the disjunct (and the polytope) tightened
    by RETRY_MARGIN."""
    deadline = time.perf_counter() + seconds
    a, c = prop.rows(i)
    n = len(prop.disjuncts)
    solves = 0
    for margin in (0.0, RETRY_MARGIN):
        left = deadline - time.perf_counter()
        if left <= 0:
            return _Outcome("timeout", reason=f"disjunct {i + 1} of {n}: the time limit ran out", solves=solves)
        tight = c - margin * np.maximum(1.0, np.abs(c))
        rows = None if polytope is None else (polytope[0], polytope[1] - margin * np.maximum(1.0, np.abs(polytope[1])))
        outcome, x = _solve(_disjunct_model(network, base, out_bounds, a, tight, rows), left)
        solves += 1
        if outcome == "infeasible":
            if margin:  # only the tightened problem is infeasible: no proof either way
                return _Outcome("unverified", reason=f"disjunct {i + 1} of {n}: the solver's point fails the "
                                "network's forward pass and the tightened problem is infeasible (numerical trouble)",
                                solves=solves)
            return _Outcome("infeasible", solves=solves)
        if x is None:
            why = "the time limit ran out" if outcome == "timeout" else f"HiGHS stopped with {outcome}"
            return _Outcome(outcome, reason=f"disjunct {i + 1} of {n}: {why} without a proof", solves=solves)
        x = np.clip(x, box.lower, box.upper)
        hit = confirmed(x)
        if hit is not None:
            return _Outcome("sat", x, hit, solves=solves)
    return _Outcome("unverified", reason=f"disjunct {i + 1} of {n}: the solver's points are not counterexamples "
                    "by the network's forward pass (numerical trouble)", solves=solves)


#: Two input-splitting searches (without and with the analysis's bounds as floors) take turns in
#: slices of this many seconds: neither is faster everywhere (ACAS Xu 1_4 property 1: 14 s with
#: floors, no proof in 40 s without; 1_8 property 2 the other way round), and taking turns costs
#: at most twice the faster one.
RACE_SLICE = 2.0


def _race(searchers: Sequence[Any], until: float) -> Any:
    """The first PROVEN or COUNTEREXAMPLE of ``searchers`` (``leo.bab.input_split.Searcher``s that go on
    from where they stopped) run in turns until ``until``; else the last result."""
    from leo.bab.input_split import Status

    live, last = list(searchers), None
    while live and time.perf_counter() < until:
        for s in list(live):
            last = s.run(min(until, time.perf_counter() + RACE_SLICE))
            if last.status in (Status.PROVEN, Status.COUNTEREXAMPLE):
                return last
            if last.status is not Status.TIMEOUT:
                live.remove(s)
    return last if last is not None else searchers[-1].run(until)


def check_property(network: Network, box: Box, prop: OutputProperty, time_limit: float = 60.0,
                   *, report: StabilityReport | None = None, samples: int = 1024, seed: int = 0,
                   original: Network | None = None, compress_first: bool = False,
                   progress: Say | None = None, branch: bool = True,
                   polytope: Polytope | None = None) -> PropertyResult:
    """Is there an input in ``box`` whose output lies in ``prop``'s unsafe set?

    Random box points and a gradient search are tried first (cheap counterexamples;
    ``samples=0`` skips them, the LP walks and the branch and bound, so that the MILP
    decides), on few inputs LP walks across linear regions (``leo.search.region_walk``); then
    branch and bound over the input box (``leo.bab.input_split``, unless ``branch=False``), which
    may prove the property, find a confirmed counterexample, or exclude some disjuncts;
    then, per disjunct still open, one MILP feasibility problem over the full network. ``time_limit`` is the
    budget in seconds for all of it: the stability analysis that supplies bounds and unit
    states (unless ``report`` is given) gets ANALYSIS_SHARE of it, the MILPs the rest; when
    it runs out the answer is TIMEOUT. With ``compress_first`` the MILPs run on the network
    made smaller losslessly by that analysis. A point is a counterexample only when the
    forward pass of ``original`` (default: ``network``) puts it in the unsafe set; a solver
    point that fails this is never SAT (the answer becomes UNKNOWN with the reason).
    With ``polytope`` (rows ``a @ x <= b``) the inputs are those of ``box`` that satisfy
    them: every proof on the box holds a fortiori, the MILPs carry the rows, and a point
    counts only inside them (up to REGION_TOL).
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    say: Say = progress or (lambda _line: None)
    _check_sizes(network, box, prop)
    judge = original if original is not None else network
    if original is not None:
        _check_sizes(original, box, prop)

    def done(answer: Answer, how: str, x: np.ndarray | None = None, i: int | None = None,
             solves: int = 0, reason: str = "", sizes: tuple[int, int] | None = None) -> PropertyResult:
        y = judge(x[None, :])[0] if x is not None else None
        return PropertyResult(answer, x, time.perf_counter() - t0, y, i, how, solves, reason, sizes)

    def inside(x: np.ndarray) -> np.ndarray:
        """Per row of ``x``: whether it satisfies the polytope's rows (all do without one)."""
        if polytope is None:
            return np.ones(len(x), dtype=bool)
        return np.all(x @ polytope[0].T <= polytope[1] + REGION_TOL, axis=1)

    def confirmed(x: np.ndarray) -> int | None:
        """The disjunct that ``judge``'s forward pass puts ``x`` in, if it is in the box."""
        if not box.contains(x, tol=0.0)[0] or not inside(x[None, :])[0]:
            return None
        hit = prop.violating(judge(x[None, :]), CHECK_TOL)
        return None if hit is None else hit[1]

    if samples > 0:
        say(f"sampling {samples + 3} box points")
        rng = np.random.default_rng(seed)
        pts = np.vstack([box.sample(samples, rng), (box.lower + box.upper)[None, :] / 2, box.lower, box.upper])
        pts = pts[inside(pts)]
        hit = prop.violating(judge(pts), 0.0) if len(pts) else None
        if hit is not None:
            return done(Answer.SAT, "sampling", pts[hit[0]].copy(), hit[1])
    if not prop.disjuncts:
        return done(Answer.UNSAT, "empty property")
    if samples > 0:
        say("gradient search for a counterexample")
        for x in _attack(judge, box, prop, ATTACK_SHARE * time_limit, seed):
            hit = confirmed(x)
            if hit is not None:
                return done(Answer.SAT, "gradient search", x, hit)
    from leo.bab.input_split import SPLIT_INPUTS

    rows = [prop.rows(i) for i in range(len(prop.disjuncts))]
    walks = samples > 0 and box.dim <= SPLIT_INPUTS  # an LP per step: for few inputs
    if walks:
        from leo.search.region_walk import walk_search

        say("LP walks across linear regions for a counterexample")
        walked = walk_search(judge, box, rows, time.perf_counter() + WALK_SHARE * time_limit, confirmed, seed)
        if walked is not None:
            return done(Answer.SAT, "region walk", *walked)
    proven: frozenset[int] = frozenset()  # disjuncts the branch and bound excluded on the whole box
    if samples > 0 and branch:
        from leo.bab.input_split import Searcher, Status, budget_share, property_goal

        share = max(budget_share(box.dim) * (deadline - time.perf_counter()), 0.0)
        say(f"branch and bound over the input box (up to {share:.1f} s)")
        goal = property_goal(rows)
        first = Searcher(network, box, goal, confirm=confirmed)
        bab = first.run(time.perf_counter() + share)
        say(f"branch and bound: {bab.status.value} after {bab.leaves} sub-boxes, "
            f"{len(bab.proven)}/{len(prop.disjuncts)} disjuncts excluded")
        if bab.status is Status.COUNTEREXAMPLE:
            return done(Answer.SAT, "branch and bound", bab.x, bab.disjunct)
        if bab.status is Status.PROVEN:
            return done(Answer.UNSAT, "branch and bound")
        proven = bab.proven
    # few inputs: after the analysis, the first search and a second one with the analysis's bounds as floors
    # take turns (_race), before the MILPs and again after them
    second_try = samples > 0 and branch and box.dim <= SPLIT_INPUTS
    searched, floors = network, None  # the network the search bounds (before any compression), its bounds
    sizes = None
    splits = samples > 0 and box.dim > SPLIT_INPUTS  # image-size inputs: ReLU splits with LP bounds before the MILPs
    if report is None:
        from leo.bab.relu_split import ANALYSIS_SCALE

        # with ReLU splits to come, the analysis's share shrinks (its per-unit MILPs rarely finish on such inputs)
        until = time.perf_counter() + ANALYSIS_SCALE * (deadline - time.perf_counter()) if splits else deadline
        share = FEW_INPUTS_ANALYSIS_SHARE if second_try else ANALYSIS_SHARE
        report = _analyse(network, box, until, seed, say, "stability analysis", share)
    from leo.stability.analysis import bounds_and_states

    floored = None  # the second input-splitting search, with the analysis's bounds as floors
    if second_try:
        from leo.bab.input_split import Searcher

        floors = [(b.lower, b.upper) for b in bounds_and_states(network, box, report)[0][:-1]]
        share = FLOORS_SHARE * (deadline - time.perf_counter())
        say(f"branch and bound with the analysis's bounds (up to {share:.1f} s)")
        floored = Searcher(searched, box, goal, confirm=confirmed, floors=floors)  # the first search's goal
        floored.exclude(sorted(proven))
        bab = _race((first, floored), time.perf_counter() + share)
        say(f"branch and bound: {bab.status.value} after {bab.leaves} sub-boxes")
        if bab.status is Status.COUNTEREXAMPLE:
            return done(Answer.SAT, "branch and bound", bab.x, bab.disjunct)
        if bab.status is Status.PROVEN:
            return done(Answer.UNSAT, "branch and bound")
        if walks and deadline > time.perf_counter():  # more walks, from fresh points, before the MILPs
            say("more LP walks")
            until = time.perf_counter() + WALK_AGAIN_SHARE * (deadline - time.perf_counter())
            walked = walk_search(judge, box, rows, until, confirmed, seed, rounds=range(1, WALK_ROUNDS),
                                 skip=sorted(proven))
            if walked is not None:
                return done(Answer.SAT, "region walk", *walked)
    if compress_first:
        network, report, sizes = _compressed(network, box, report, deadline, seed, say)
    bounds, states = bounds_and_states(network, box, report)
    if splits:
        from leo.bab.relu_split import PROPERTY_SHARE, decide

        split = decide(network, box, rows,
                       [i for i in range(len(prop.disjuncts)) if i not in proven], bounds, states,
                       time.perf_counter() + PROPERTY_SHARE * (deadline - time.perf_counter()), confirmed, say)
        if split.x is not None:
            return done(Answer.SAT, "relu-split", split.x, split.disjunct, sizes=sizes)
        proven = proven | split.proven
        if len(proven) == len(prop.disjuncts):
            return done(Answer.UNSAT, "relu-split", sizes=sizes)
    base = build_prefix(network, box, bounds, states, upto=len(network.layers) - 1)
    n = len(prop.disjuncts)
    undecided: dict[int, _Outcome] = {}
    solves = 0
    pending = [i for i in range(n) if i not in proven]
    milp_end = deadline - SECOND_TRY_SHARE * (deadline - time.perf_counter()) if second_try else deadline
    for again in (False, True):  # disjuncts that time out get a second go with the time the others left
        timed_out: list[int] = []
        for k, i in enumerate(pending):
            left = milp_end - time.perf_counter()
            if left <= 0:
                out = _Outcome("timeout", reason=f"the time limit of {time_limit:g} s ran out before "
                                                 f"disjunct {i + 1} of {n} was decided")
            else:
                share = left / (len(pending) - k)  # the disjuncts still to solve share what is left
                say(f"MILP for disjunct {i + 1} of {n}{' (again)' if again else ''}, up to {share:.1f} s")
                out = _solve_disjunct(network, box, base, bounds[-1], prop, i, share, confirmed, polytope)
            solves += out.solves
            if out.how == "sat":
                return done(Answer.SAT, "milp", out.x, out.disjunct, solves, sizes=sizes)
            if out.how == "infeasible":
                undecided.pop(i, None)
                continue
            undecided[i] = out
            if out.how == "timeout":
                timed_out.append(i)
        pending = timed_out
        if not pending or milp_end - time.perf_counter() <= 0:
            break
    if undecided and floored is not None and deadline - time.perf_counter() > 0:
        say(f"branch and bound with the analysis's bounds, on (up to {deadline - time.perf_counter():.1f} s)")
        for searcher in (first, floored):
            searcher.exclude([i for i in range(n) if i not in undecided])
        bab = _race((first, floored), deadline)
        say(f"branch and bound: {bab.status.value} after {bab.leaves} sub-boxes")
        if bab.status is Status.COUNTEREXAMPLE:
            return done(Answer.SAT, "branch and bound", bab.x, bab.disjunct, solves, sizes=sizes)
        if bab.status is Status.PROVEN:
            return done(Answer.UNSAT, "branch and bound", solves=solves, sizes=sizes)
    if undecided:
        left_open = sorted(undecided.items())
        timed = [o for _, o in left_open if o.how == "timeout"]
        first = (timed or [o for _, o in left_open])[0]
        return done(Answer.TIMEOUT if timed else Answer.UNKNOWN, first.how, solves=solves, reason=first.reason,
                    sizes=sizes)
    return done(Answer.UNSAT, "milp-infeasible", solves=solves, sizes=sizes)


# -- reporting: progress lines, the answer in words, the VNN-COMP results file -----------

#: While one phase lasts (a long MILP), its progress line is repeated this often (seconds).
HEARTBEAT = 15.0
#: Counterexamples with more inputs than this are summarised on stdout, not listed.
LIST_AT_MOST = 16


class ProgressLines:
    """Progress on a stream (stderr): ``leo: [  12.3 s] phase``, and the phase again every
    ``heartbeat`` seconds while it lasts, so a minutes-long solve is visibly alive."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, heartbeat: float = HEARTBEAT) -> None:
        self.quiet, self.stream, self.heartbeat = quiet, stream or sys.stderr, heartbeat
        self.t0 = time.perf_counter()
        self.phase = "starting"
        self.printed = self.t0  # when the last line was printed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressLines:
        if not self.quiet:
            self._thread = threading.Thread(target=self._beat, name="leo-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __call__(self, line: str) -> None:
        self.phase = line
        self._print(line)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.heartbeat)):
            if time.perf_counter() - self.printed >= self.heartbeat:
                self._print(f"{self.phase} (still running)")

    def _print(self, line: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self.printed = time.perf_counter()
            print(f"leo: [{self.printed - self.t0:7.1f} s] {line}", file=self.stream, flush=True)


def number(v: float) -> str:
    """The shortest text that reads back as exactly ``v`` (Python's repr), never ``-0.0``."""
    return repr(float(v) + 0.0)


def results_text(result: PropertyResult) -> str:
    """The VNN-COMP results file: the answer on line 1; for sat the witness
    ``(``, ``(X_i v)`` for every input, ``(Y_j v)`` for every output, ``)``."""
    lines = [result.answer.value]
    if result.answer is Answer.SAT:
        assert result.counterexample is not None and result.output is not None
        lines.append("(")
        lines += [f"(X_{i} {number(v)})" for i, v in enumerate(result.counterexample)]
        lines += [f"(Y_{j} {number(v)})" for j, v in enumerate(result.output)]
        lines.append(")")
    return "\n".join(lines) + "\n"


def _values(name: str, v: np.ndarray) -> str:
    return ", ".join(f"{name}_{i} = {number(x)}" for i, x in enumerate(v))


def _summary(x: np.ndarray, box: Box) -> str:
    at_lo = int(np.count_nonzero(x == box.lower))
    at_hi = int(np.count_nonzero(x == box.upper))
    centre = (box.lower + box.upper) / 2
    return (f"{x.size} inputs in [{number(x.min())}, {number(x.max())}]; {at_lo} at their lower bound, "
            f"{at_hi} at their upper bound; largest move from the box centre {number(np.abs(x - centre).max())}")


def describe(result: PropertyResult, prop: OutputProperty, box: Box, saved: Sequence[str] = ()) -> list[str]:
    """The answer in words for stdout; the first word is the answer (sat, unsat, unknown, timeout)."""
    took = f"[{result.how}, {result.solves} MILP solves, {result.seconds:.2f} s]"
    head = f"{result.answer.value}: {result.answer.meaning}"
    lines: list[str] = []
    if result.hidden_units is not None:
        lines.append(f"compressed first: hidden units {result.hidden_units[0]} -> {result.hidden_units[1]}")
    if result.answer is Answer.UNSAT:
        return lines + [f"{head}: no input in the box gives outputs in the unsafe set {took}"]
    if result.answer is not Answer.SAT:
        return lines + [f"{head} ({result.reason or result.how}) {took}"]
    x, y, i = result.counterexample, result.output, result.disjunct
    assert x is not None and y is not None and i is not None
    lines.append(f"{head}: a counterexample, confirmed by the network's forward pass {took}")
    if x.size <= LIST_AT_MOST:
        lines.append(f"  input:  {_values('X', x)}")
    else:
        where = f"; the full point is in {' and '.join(saved)}" if saved else \
            "; use --results FILE or --counterexample FILE.npy for the full point"
        lines.append(f"  input:  {_summary(x, box)}{where}")
    lines.append(f"  output: {_values('Y', y)}")
    depth = -float(prop.excess(y, i)[0])
    lines.append(f"  the output is in disjunct {i + 1} of {len(prop.disjuncts)} of the unsafe set "
                 f"(inside by {depth:.3g})")
    return lines


def save_outputs(result: PropertyResult, results: str | None, counterexample: str | None,
                 overwrite: bool = False) -> list[str]:
    """Write the results file (always) and the counterexample .npy (when sat), atomically;
    the paths written. The point goes first: one refused (an existing file without
    ``overwrite``) leaves no results file behind."""
    from leo.io.files import atomic_write, save_point

    point = counterexample if counterexample and result.counterexample is not None else None
    if point:
        save_point(point, result.counterexample, overwrite=overwrite)
    if results:
        with atomic_write(results) as tmp:
            tmp.write_text(results_text(result))
    return [p for p in (results, point) if p]
