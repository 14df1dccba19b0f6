"""Schedules: which strategies run, in what order, with what share of one deadline.

Every question leo answers (a property's disjuncts, a layer's units, ``f - g``) is split into
*parts* that are open until a strategy proves them, and is answered at once when a strategy
finds evidence (a counterexample the network's own forward pass confirms). A strategy is
one way of working on the open parts; a schedule names the strategies to try, in order, each
with its share of the time left, so no caller hard-codes its order or its time shares.

API
---
- ``Strategy`` (protocol): a ``name`` and ``run(problem, open_parts, deadline) -> Outcome``.
  It works on ``open_parts`` only, stops by ``deadline`` (a ``leo.core.deadline.Deadline``)
  and never claims a part closed without a proof.
- ``Outcome``: ``closed`` (the parts it proved), ``found`` (evidence that answers the whole
  question: the run stops), ``problem`` (None, or the problem the later steps work on: a
  strategy that computes bounds hands them on this way, results not state), ``why_open``
  (per part it tried and left open, the caller's typed reason), ``solves`` and ``note``.
- ``Step``: a strategy, its ``share`` of the time left when the step starts, a ``floor`` in
  seconds (the step gets at least this, never beyond the run's deadline) and ``when``, a
  condition on the problem (False: the step is skipped, and recorded as such).
- ``Schedule``: a name and its steps.
- ``run_schedule(schedule, problem, open_parts, deadline, observe=None) -> Run``: walks the
  steps on the one deadline; stops when a step finds evidence or nothing is open. ``Run``
  holds the final problem, the parts still open, the evidence, the latest reason per open
  part and a ``StepRecord`` per step (its ``Decision``, the parts it closed, its seconds).

Steps are not skipped when the deadline has passed: a strategy given no time returns at
once, and some (bounds a later step needs, a reason for the answer) must still run.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from leo.core.deadline import Deadline

P = TypeVar("P")
#: A part of the question (a disjunct's index, a unit's (layer, index)): any hashable id.
Part = Hashable


@dataclass(frozen=True)
class Outcome(Generic[P]):
    """What one strategy decided about the open parts it was given."""

    closed: frozenset[Part] = frozenset()  # proven: never on an incumbent or a time-out
    found: Any = None  # evidence that answers the whole question (the run stops)
    problem: P | None = None  # the problem for the steps after this one (None: unchanged)
    why_open: Mapping[Part, Any] = field(default_factory=dict)  # parts tried and left open: why
    solves: int = 0  # solver calls made
    note: str = ""  # one line for the record


class Strategy(Protocol[P]):
    """One way of working on the open parts of a problem."""

    @property
    def name(self) -> str: ...

    def run(self, problem: P, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[P]: ...


def always(_problem: Any) -> bool:
    return True


@dataclass(frozen=True)
class Step(Generic[P]):
    """A strategy with its slice of the time: ``share`` of what is left when it starts (at
    least ``floor`` seconds), run only when ``when(problem)`` holds."""

    strategy: Strategy[P]
    share: float = 1.0
    floor: float = 0.0
    when: Callable[[P], bool] = always

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0 or self.floor < 0.0:
            raise ValueError(f"step {self.name}: share {self.share} must lie in [0, 1], floor {self.floor} >= 0")

    @property
    def name(self) -> str:
        return self.strategy.name


@dataclass(frozen=True)
class Schedule(Generic[P]):
    """A named order of steps."""

    name: str
    steps: tuple[Step[P], ...]


class Decision(enum.Enum):
    """What a step decided."""

    SKIPPED = "skipped"  # its condition did not hold
    FOUND = "found"  # evidence that answers the question: the run stopped
    CLOSED_ALL = "closed all"  # every part still open was proven
    CLOSED_SOME = "closed some"
    NOTHING = "nothing"  # ran, proved nothing (a later step may still use what it handed on)


@dataclass(frozen=True)
class StepRecord:
    """One step of a run: its name, what it decided, the parts it closed and its seconds."""

    name: str
    decision: Decision
    closed: frozenset[Part] = frozenset()
    seconds: float = 0.0
    solves: int = 0
    note: str = ""


@dataclass(frozen=True)
class Run(Generic[P]):
    """The end of a schedule's run."""

    schedule: str
    problem: P
    open_parts: frozenset[Part]
    found: Any
    why_open: Mapping[Part, Any]
    records: tuple[StepRecord, ...]

    @property
    def solves(self) -> int:
        return sum(r.solves for r in self.records)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def last_to_close(self) -> StepRecord | None:
        """The step that closed the last open part (None when the run ended otherwise)."""
        if self.open_parts or self.found is not None:
            return None
        closing = [r for r in self.records if r.decision is Decision.CLOSED_ALL]
        return closing[-1] if closing else None


def _decision(outcome: Outcome[Any], closed: frozenset[Part], left: frozenset[Part]) -> Decision:
    if outcome.found is not None:
        return Decision.FOUND
    if closed and not left:
        return Decision.CLOSED_ALL
    return Decision.CLOSED_SOME if closed else Decision.NOTHING


def run_schedule(schedule: Schedule[P], problem: P, open_parts: frozenset[Part], deadline: Deadline,
                 observe: Callable[[StepRecord], None] | None = None) -> Run[P]:
    """Run ``schedule``'s steps in order on ``deadline`` until evidence is found or no part is
    open; ``observe`` gets each step's record as it ends."""
    open_now = frozenset(open_parts)
    why: dict[Part, Any] = {}
    records: list[StepRecord] = []
    found: Any = None
    for step in schedule.steps:
        if not open_now:
            break
        if not step.when(problem):
            record = StepRecord(step.name, Decision.SKIPPED)
        else:
            t0 = time.monotonic()
            outcome = step.strategy.run(problem, open_now, deadline.share(step.share, step.floor))
            seconds = time.monotonic() - t0
            closed = frozenset(outcome.closed) & open_now
            open_now -= closed
            for part in closed:
                why.pop(part, None)
            why.update({k: v for k, v in outcome.why_open.items() if k in open_now})
            if outcome.problem is not None:
                problem = outcome.problem
            found = outcome.found
            record = StepRecord(step.name, _decision(outcome, closed, open_now), closed, seconds,
                                outcome.solves, outcome.note)
        records.append(record)
        if observe is not None:
            observe(record)
        if found is not None:
            break
    return Run(schedule.name, problem, open_now, found, dict(why), tuple(records))
