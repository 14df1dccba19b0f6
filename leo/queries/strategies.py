"""The problem every strategy of ``leo property`` works on, and the cheap searches for a
counterexample: box samples, the gradient attack, LP walks across linear regions.

A strategy (``leo.core.schedule.Strategy``) gets the ``PropertyProblem``, the disjuncts
still open and a ``Deadline``; it returns an ``Outcome`` whose ``found`` is a ``Found`` (a
counterexample the original network's forward pass confirms: the answer is SAT) and whose
``closed`` are disjuncts it proved unreachable. The exact strategies (input splitting,
the analysis, ReLU splits, the MILP) are in ``leo.queries.strategies_exact``; which run,
in what order and with what share of the time is ``leo.queries.schedules``'s business.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.schedule import Outcome, Part
from leo.core.spec import REGION_TOL, OutputProperty
from solvers.backend import Solver

if TYPE_CHECKING:  # torch-importing modules: only when a step needs them
    from leo.stability.report import StabilityReport

#: Progress messages: a callable that takes one line of text (the CLI prints it on stderr).
Say = Callable[[str], None]
#: Linear input rows ``a @ x <= b`` (a polytope input region, inside its bounding box).
Polytope = tuple[np.ndarray, np.ndarray]
#: A counterexample must put the outputs in the unsafe set up to this much.
CHECK_TOL = 1e-6


class How(enum.StrEnum):
    """What decided a property, or why it stayed open (the text is what reports print)."""

    SAMPLING = "sampling"
    GRADIENT_SEARCH = "gradient search"
    REGION_WALK = "region walk"
    BRANCH_AND_BOUND = "branch and bound"
    RELU_SPLIT = "relu-split"
    MILP = "milp"  # a MILP's point, confirmed
    MILP_INFEASIBLE = "milp-infeasible"  # every disjunct left to the MILPs proven infeasible
    EMPTY_PROPERTY = "empty property"
    SHARED_UNIT_MILP = "shared-unit milp"  # ``leo.queries.closeness.closeness``
    TIMEOUT = "timeout"
    UNVERIFIED = "unverified"  # solver points that fail the forward pass
    SOLVER_STOPPED = "solver stopped"  # the solver ended without a proof for another reason


class StepName(enum.StrEnum):
    """The strategies of ``leo property``, as schedules and step records name them."""

    SAMPLING = "sampling"
    GRADIENT_SEARCH = "gradient search"
    REGION_WALK = "region walk"
    MORE_REGION_WALKS = "more region walks"
    INPUT_SPLIT = "input split"
    FLOORS_RACE = "branch and bound with floors"
    LAST_RACE = "branch and bound, on"
    ANALYSIS = "stability analysis"
    COMPRESS = "compress"
    RELU_SPLIT = "relu split"
    MILP = "milp"


class DisjunctStatus(enum.StrEnum):
    """What one exact solve of one disjunct decided."""

    INFEASIBLE = "infeasible"  # proven
    SAT = "sat"  # a confirmed point
    TIMEOUT = "timeout"
    UNVERIFIED = "unverified"
    SOLVER_STOPPED = "solver stopped"


@dataclass(frozen=True)
class DisjunctOutcome:
    """One disjunct's exact solve: proven infeasible, a confirmed point, or why it is open."""

    how: DisjunctStatus
    x: np.ndarray | None = None
    disjunct: int | None = None
    reason: str = ""
    solves: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "how", DisjunctStatus(self.how))


@dataclass(frozen=True)
class Found:
    """A counterexample confirmed by the judge's forward pass, and what found it."""

    x: np.ndarray
    disjunct: int
    how: How


#: Decides one disjunct exactly: (problem, the MILP's base, disjunct, seconds) -> its outcome.
DisjunctDecider = Callable[["PropertyProblem", Any, int, float], DisjunctOutcome]


@dataclass(frozen=True, eq=False)
class PropertyProblem:
    """Is some input of ``box`` (inside ``polytope``, when given) mapped by ``network`` into
    ``prop``'s unsafe set? Frozen; a step that computes something for later steps (an
    analysis, a compressed network, bounds, input-split searches that resume where they
    stopped) hands on a copy with it (``dataclasses.replace``)."""

    network: Network  # what the bounds, searches and MILPs work on (smaller after COMPRESS)
    judge: Network  # whose forward pass confirms a counterexample (the original)
    box: Box
    prop: OutputProperty
    time_limit: float
    #: the exact solve of one disjunct: given by the caller (``leo.queries.property``, which owns the
    #: MILP's solver choice), so the MILP strategy needs no import of it
    decide: DisjunctDecider
    seed: int = 0
    samples: int = 1024
    say: Say = field(default=lambda _line: None)
    solver: Solver = Solver.HIGHS
    polytope: Polytope | None = None
    branch: bool = True
    compress_first: bool = False
    report: StabilityReport | None = None  # the stability analysis of ``network``
    searchers: tuple[Any, ...] = ()  # input-split searches (``leo.bab.input_split.Searcher``), in start order
    bounds: tuple[Any, Any] | None = None  # (layer bounds, unit states) of ``network`` from ``report``
    sizes: tuple[int, int] | None = None  # hidden units before and after compression

    def rows(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every disjunct as ``(A, c)``."""
        return [self.prop.rows(i) for i in range(len(self.prop.disjuncts))]

    def inside(self, x: np.ndarray) -> np.ndarray:
        """Per row of ``x``: whether it satisfies the polytope's rows (all do without one)."""
        if self.polytope is None:
            return np.ones(len(x), dtype=bool)
        return np.all(x @ self.polytope[0].T <= self.polytope[1] + REGION_TOL, axis=1)

    def confirmed(self, x: np.ndarray) -> int | None:
        """The disjunct that ``judge``'s forward pass puts ``x`` in, if ``x`` is in the region."""
        if not self.box.contains(x, tol=0.0)[0] or not self.inside(x[None, :])[0]:
            return None
        hit = self.prop.violating(self.judge(x[None, :]), CHECK_TOL)
        return None if hit is None else hit[1]

    def with_(self, **changes: Any) -> PropertyProblem:
        return replace(self, **changes)


def _sat(x: np.ndarray, disjunct: int, how: How) -> Outcome[PropertyProblem]:
    return Outcome(found=Found(np.asarray(x), int(disjunct), how))


@dataclass(frozen=True)
class Sampling:
    """Random box points, the centre and both corners through the judge: SAT on a hit."""

    name: StepName = StepName.SAMPLING

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        p.say(f"sampling {p.samples + 3} box points")
        rng = np.random.default_rng(p.seed)
        box = p.box
        pts = np.vstack([box.sample(p.samples, rng), (box.lower + box.upper)[None, :] / 2, box.lower, box.upper])
        pts = pts[p.inside(pts)]
        hit = p.prop.violating(p.judge(pts), 0.0) if len(pts) else None
        return Outcome() if hit is None else _sat(pts[hit[0]].copy(), hit[1], How.SAMPLING)


#: The gradient attack: starts per disjunct, steps, and its first step as a share of each input's
#: width (halved ATTACK_HALVINGS times, evenly over the steps).
ATTACK_STARTS, ATTACK_STEPS, ATTACK_RATE, ATTACK_HALVINGS = 16, 100, 0.1, 4


@dataclass(frozen=True)
class GradientAttack:
    """Projected signed-gradient descent (``leo.search.attack``) on each open disjunct's excess
    from random box points; the best point per disjunct counts only if the judge confirms it."""

    name: StepName = StepName.GRADIENT_SEARCH

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        from leo.search.attack import AttackOptions, Objective, Schedule, attack

        p.say("gradient search for a counterexample")
        options = AttackOptions(Schedule(ATTACK_STEPS, ATTACK_RATE, 0.5, ATTACK_HALVINGS))
        rng = np.random.default_rng(p.seed + 1)
        for i in range(len(p.prop.disjuncts)):
            a, c = p.prop.rows(i)
            if not len(c) or i not in open_parts:
                continue
            if deadline.passed():
                break
            starts = p.box.sample(ATTACK_STARTS, rng)
            r = attack(p.judge, starts, Objective.disjunct(a, c, ATTACK_STARTS), options,
                       lower=p.box.lower, upper=p.box.upper, deadline=deadline)
            x = r.best[int(r.values.argmin())].copy()
            hit = p.confirmed(x)
            if hit is not None:
                return _sat(x, hit, How.GRADIENT_SEARCH)
        return Outcome()


#: Rounds of LP walks from fresh random points (``leo.search.region_walk``): the first walk
#: step runs round 0, the second the rounds after it.
WALK_ROUNDS = 4


@dataclass(frozen=True)
class RegionWalk:
    """LP walks across linear regions from the lowest of many random box points, on the open
    disjuncts, for ``rounds`` (``leo.search.region_walk.walk_search``), the LPs in the problem's
    solver."""

    name: StepName = StepName.REGION_WALK
    rounds: range = range(1)
    line: str = "LP walks across linear regions for a counterexample"

    def run(self, p: PropertyProblem, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[PropertyProblem]:
        from leo.search.region_walk import walk_search

        if deadline.passed():
            return Outcome()
        p.say(self.line)
        skip = [i for i in range(len(p.prop.disjuncts)) if i not in open_parts]
        walked = walk_search(p.judge, p.box, p.rows(), deadline, p.confirmed, p.seed, rounds=self.rounds, skip=skip,
                             solver=p.solver)
        return Outcome() if walked is None else _sat(walked[0], walked[1], How.REGION_WALK)
