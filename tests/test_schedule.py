"""The schedule runner (leo.core.schedule): order, time shares, conditions, hand-over, stopping."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from leo.core.deadline import Deadline
from leo.core.schedule import Decision, Outcome, Schedule, Step, run_schedule


@dataclass(frozen=True)
class Toy:
    """Closes ``closes`` (of the parts open), may find ``finds``, and logs what it saw."""

    name: str
    closes: frozenset = frozenset()
    finds: object = None
    hand_on: object = None
    why: dict = field(default_factory=dict)
    log: list = field(default_factory=list)

    def run(self, problem, open_parts, deadline):
        self.log.append((self.name, problem, open_parts, deadline.left()))
        return Outcome(closed=self.closes, found=self.finds, problem=self.hand_on, why_open=self.why)


def test_steps_run_in_order_with_their_share_of_the_time_left():
    log: list = []
    a = Toy("a", frozenset({1}), log=log)
    b = Toy("b", log=log, why={2: "timeout", 3: "timeout"})
    c = Toy("c", frozenset({2, 3}), log=log)
    run = run_schedule(Schedule("s", (Step(a, 0.25), Step(b, 0.5), Step(c))), "p", frozenset({1, 2, 3}),
                       Deadline.after(100.0))
    assert [e[0] for e in log] == ["a", "b", "c"]
    assert [e[2] for e in log] == [frozenset({1, 2, 3}), frozenset({2, 3}), frozenset({2, 3})]
    assert log[0][3] == pytest.approx(25.0, abs=1.0)
    assert log[1][3] == pytest.approx(50.0, abs=1.0)
    assert log[2][3] == pytest.approx(100.0, abs=1.0)
    assert [r.decision for r in run.records] == [Decision.CLOSED_SOME, Decision.NOTHING, Decision.CLOSED_ALL]
    assert run.open_parts == frozenset() and run.found is None and run.why_open == {}
    assert run.last_to_close().name == "c"


def test_a_floor_gives_a_step_at_least_that_but_never_beyond_the_deadline():
    log: list = []
    run_schedule(Schedule("s", (Step(Toy("a", log=log), 0.0, floor=5.0),)), None, frozenset({0}),
                 Deadline.after(100.0))
    run_schedule(Schedule("s", (Step(Toy("b", log=log), 0.0, floor=50.0),)), None, frozenset({0}),
                 Deadline.after(10.0))
    assert log[0][3] == pytest.approx(5.0, abs=0.5)
    assert log[1][3] == pytest.approx(10.0, abs=0.5)


def test_a_step_whose_condition_fails_is_skipped_and_recorded():
    log: list = []
    run = run_schedule(Schedule("s", (Step(Toy("a", log=log), when=lambda p: p == "other"),
                                      Step(Toy("b", frozenset({0}), log=log)))), "p", frozenset({0}),
                       Deadline.never())
    assert [e[0] for e in log] == ["b"]
    assert [(r.name, r.decision) for r in run.records] == [("a", Decision.SKIPPED), ("b", Decision.CLOSED_ALL)]


def test_evidence_stops_the_run_and_nothing_runs_when_nothing_is_open():
    log: list = []
    steps = (Step(Toy("a", finds="x", log=log)), Step(Toy("b", log=log)))
    run = run_schedule(Schedule("s", steps), None, frozenset({0, 1}), Deadline.never())
    assert run.found == "x" and [e[0] for e in log] == ["a"] and run.records[0].decision is Decision.FOUND
    assert run.open_parts == frozenset({0, 1}) and run.last_to_close() is None
    empty = run_schedule(Schedule("s", steps), None, frozenset(), Deadline.never())
    assert empty.records == () and len(log) == 1


def test_a_step_hands_its_problem_on_and_reasons_follow_the_open_parts():
    log: list = []
    steps = (Step(Toy("a", hand_on="bounds", why={0: "t", 1: "t"}, log=log)),
             Step(Toy("b", frozenset({0}), why={1: "u", 7: "not open"}, log=log)))
    run = run_schedule(Schedule("s", steps), "start", frozenset({0, 1}), Deadline.never())
    assert [e[1] for e in log] == ["start", "bounds"]
    assert run.problem == "bounds" and run.open_parts == frozenset({1}) and run.why_open == {1: "u"}


def test_a_share_outside_zero_one_is_refused():
    with pytest.raises(ValueError):
        Step(Toy("a"), 1.5)
