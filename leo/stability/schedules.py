"""The stability analysis's schedules (``leo.core.schedule``): the steps each ReLU layer runs
on its open units, cheapest first, on the layer's share of the budget.

A part is one unit of the layer; a step closes the units it *decides*: stable on a proven
bound (interval, symbolic, LP, branch and bound, MILP), unstable on two box points whose
forward passes show both signs, or, at the end, unproven (a time-out or the budget: kept, never
called stable). The problem a step gets (``LayerTurn``) is a handle on the run, not a copy:
the witnesses one step adds are every later step's, which is what makes the cheap steps pay.

Presets:

- ``STABILITY`` (per-unit engine): bounds, witnesses, local search, LP bounds of earlier
  layers (``lp_bounds``), input-splitting branch and bound (``options.branches``: few
  inputs; half the time left), ReLU-split branch and bound per unit (``options.relu_split``,
  off by default; half the time left), one MILP per open unit;
- ``STABILITY_CHEAP`` (network-wide engine): bounds, witnesses, local search and the input
  split; the network-wide MILP then runs on every layer's open units at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from leo.core.deadline import Deadline
from leo.core.schedule import Outcome, Part, Schedule, Step
from leo.core.verdicts import Verdict
from leo.stability.branch_phase import BRANCH_SHARE
from leo.stability.layer_work import LayerWork
from leo.stability.relu_phase import RELU_SHARE
from leo.stability.run_state import AnalysisRun
from leo.stability.stages import Counts, Phase


@dataclass(frozen=True)
class LayerTurn:
    """One ReLU layer's turn: the run and the layer's work (both written by the steps)."""

    run: AnalysisRun
    work: LayerWork


def _outcome(turn: LayerTurn, open_parts: frozenset[Part], solves: int = 0) -> Outcome[LayerTurn]:
    """The units of ``open_parts`` that ``turn``'s work has decided by now."""
    decided = {j for j in open_parts if turn.work.proofs[j] is not None}
    return Outcome(closed=frozenset(decided), solves=solves)


@dataclass(frozen=True)
class Bounds:
    """The layer's interval/symbolic bounds (computed when its work starts) decide what they can."""

    name: str = "bounds"

    def run(self, turn: LayerTurn, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[LayerTurn]:
        turn.work.decide_by_bounds()
        return _outcome(turn, open_parts)


@dataclass(frozen=True)
class SeenSigns:
    """The witness points so far (box samples, data, earlier layers' searches): a unit seen
    with both signs is unstable."""

    name: str = "witnesses"

    def run(self, turn: LayerTurn, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[LayerTurn]:
        turn.work.progress(turn.run.progress, Phase.WITNESSES)
        turn.work.mark_witnessed(turn.run.witnesses)
        return _outcome(turn, open_parts)


@dataclass(frozen=True)
class LocalSearch:
    """Projected-gradient search toward each open unit's unseen sign (``leo.search.witnesses``)."""

    name: str = "local search"

    def run(self, turn: LayerTurn, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[LayerTurn]:
        turn.run.search(turn.work, deadline)
        return _outcome(turn, open_parts)


@dataclass(frozen=True)
class LpBounds:
    """LP bounds of the earlier layers' unstable units, then this layer's bounds again."""

    name: str = "LP"

    def run(self, turn: LayerTurn, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[LayerTurn]:
        run, work = turn.run, turn.work
        if run.expired():
            return Outcome()
        work.progress(run.progress, Phase.LP)
        lps = run.tighten_with_lp(work.k, deadline)
        work.counts = work.counts + Counts(lps=lps)
        work.retighten(run.layer_bounds(work.k))
        work.mark_witnessed(run.witnesses)
        return _outcome(turn, open_parts, lps)


@dataclass(frozen=True)
class InputSplit:
    """Input-splitting branch and bound on all open units at once (``leo.stability.branch_phase``)."""

    name: str = "branch and bound"

    def run(self, turn: LayerTurn, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[LayerTurn]:
        turn.run.branch_phase(turn.work, deadline)
        return _outcome(turn, open_parts)


@dataclass(frozen=True)
class ReluSplit:
    """ReLU-split branch and bound per open unit (``leo.stability.relu_phase``)."""

    name: str = "ReLU split"

    def run(self, turn: LayerTurn, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[LayerTurn]:
        turn.run.relu_split_phase(turn.work, deadline)
        return _outcome(turn, open_parts)


@dataclass(frozen=True)
class UnitMilps:
    """One early-stopped MILP per open unit (``leo.stability.engine_unit``); what it cannot
    decide in time stays unproven. With the budget spent, every open unit is unproven."""

    name: str = "MILP"

    def run(self, turn: LayerTurn, open_parts: frozenset[Part], deadline: Deadline) -> Outcome[LayerTurn]:
        run, work = turn.run, turn.work
        milps = work.counts.milps
        if run.expired():
            work.mark_budget()
        else:
            run.solve_open_units(work, deadline)
        return _outcome(turn, open_parts, work.counts.milps - milps)


def _lp_bounds_on(turn: LayerTurn) -> bool:
    """LP bounds need earlier layers with unstable units, and are asked for (``--lp-bounds``)."""
    return turn.run.options.lp_bounds and turn.work.k > 1


def _binaries(turn: LayerTurn) -> int:
    """The binaries the layer's MILPs would carry: the unstable units of the layers before it."""
    return sum(st == Verdict.UNSTABLE for states in turn.run.states[:turn.work.k] for st in states)


def _branches(turn: LayerTurn) -> bool:
    """The options' rule (``StabilityOptions.branches``) on this layer's MILP size."""
    return turn.run.options.branches(turn.run.network.input_dim, _binaries(turn))


def _relu_splits(turn: LayerTurn) -> bool:
    """Asked for (``StabilityOptions.relu_split``), on a layer with unstable units before it."""
    return turn.run.options.relu_split and _binaries(turn) > 0


_CHEAP = (Step(Bounds()), Step(SeenSigns()), Step(LocalSearch()))
STABILITY: Schedule[LayerTurn] = Schedule("stability", _CHEAP + (
    Step(LpBounds(), when=_lp_bounds_on), Step(InputSplit(), share=BRANCH_SHARE, when=_branches),
    Step(ReluSplit(), share=RELU_SHARE, when=_relu_splits), Step(UnitMilps())))
STABILITY_CHEAP: Schedule[LayerTurn] = Schedule("stability (before a network-wide MILP)", _CHEAP + (
    Step(InputSplit(), share=BRANCH_SHARE, when=_branches),))
