"""The named schedules of ``leo property``, and every time share they give, in one place.

A step's share is of the time *left when it starts* (``leo.core.schedule.Step``), so a
schedule always fits the budget: what a step does not use goes to the steps after it.
``pick`` chooses the preset; ``check_property`` runs it.

- FEW_INPUTS (at most ``leo.bab.input_split.SPLIT_INPUTS`` inputs, e.g. ACAS Xu's five): cheap
  searches, LP walks across linear regions, input splitting, a short analysis for floors, a
  race of the split searches with and without them, more walks, the MILPs, a last race.
- IMAGES (more inputs): cheap searches, a short input-splitting try, a shortened analysis,
  ReLU-split branch and bound with LP bounds, the MILPs.
- NO_SEARCH (``samples=0``): the analysis and the MILPs only, so that the MILP decides.
"""

from __future__ import annotations

from leo.core.schedule import Schedule, Step
from leo.queries.strategies import WALK_ROUNDS, GradientAttack, PropertyProblem, RegionWalk, Sampling, StepName
from leo.queries.strategies_exact import (Analysis, Compress, FloorsRace, InputSplit, LastRace, MilpPerDisjunct,
                                          ReluSplit)

#: The stability analysis (bounds and unit states for the MILPs) gets this share.
ANALYSIS_SHARE = 0.4
#: On few inputs the analysis only supplies floors to the second input-splitting search, which
#: needs no MILP-tight bounds: a smaller share.
FEW_INPUTS_ANALYSIS_SHARE = 0.15
#: On images the analysis gets ANALYSIS_SCALE of ANALYSIS_SHARE: its per-unit MILPs rarely finish on
#: such inputs (MNIST 256x2: its layer-2 MILPs decided nothing in 40 s, while the ReLU split's LP
#: tightening made 30 units stable in 7 s).
ANALYSIS_SCALE = 0.3
#: The projected-gradient search for a counterexample.
ATTACK_SHARE = 0.1
#: LP walks across linear regions (one round of starts: about 2 s on ACAS Xu; 1_9 property 7, sat,
#: found by one round in 5 of 8 seeds, undecided in 116 s without), and the further rounds when the
#: input-splitting searches end without an answer.
WALK_SHARE, WALK_AGAIN_SHARE = 0.05, 0.1
#: The first input-splitting search: on few inputs it goes on later (the races), on images it is a
#: short try (the root bound often excludes some disjuncts).
FIRST_SPLIT_SHARE, IMAGES_SPLIT_SHARE = 0.15, 0.1
#: On few inputs, the race of the first search and the one with the analysis's bounds as floors.
FLOORS_SHARE = 0.6
#: On few inputs, the share of the time left before the MILPs that the last race keeps back.
SECOND_TRY_SHARE = 0.5
#: The re-analysis of the compressed network (``compress_first``).
RECHECK_SHARE = 0.05
#: On images, ReLU-split branch and bound (the MILPs get the rest).
RELU_SPLIT_SHARE = 0.8
#: Every analysis gets at least this many seconds (it still computes the bounds the MILPs need).
ANALYSIS_FLOOR = 1e-3


def _branch(p: PropertyProblem) -> bool:
    """input splitting is on (branch=True)"""
    return p.branch


def _no_branch(p: PropertyProblem) -> bool:
    """input splitting is off (branch=False: a polytope region)"""
    return not p.branch


def _unanalysed(p: PropertyProblem) -> bool:
    """no analysis was given (report=None)"""
    return p.report is None


def _compress(p: PropertyProblem) -> bool:
    """compress_first"""
    return p.compress_first


def _analysis_before_floors(p: PropertyProblem) -> bool:
    """no analysis was given and input splitting is on"""
    return p.report is None and p.branch


def _analysis_without_floors(p: PropertyProblem) -> bool:
    """no analysis was given and input splitting is off"""
    return p.report is None and not p.branch


_COMPRESS = Step(Compress(), RECHECK_SHARE, ANALYSIS_FLOOR, _compress)

FEW_INPUTS: Schedule[PropertyProblem] = Schedule("few inputs", (
    Step(Sampling()),
    Step(GradientAttack(), ATTACK_SHARE),
    Step(RegionWalk(), WALK_SHARE),
    Step(InputSplit(), FIRST_SPLIT_SHARE, when=_branch),
    Step(Analysis(), FEW_INPUTS_ANALYSIS_SHARE, ANALYSIS_FLOOR, _analysis_before_floors),
    Step(Analysis(), ANALYSIS_SHARE, ANALYSIS_FLOOR, _analysis_without_floors),
    Step(FloorsRace(), FLOORS_SHARE, when=_branch),
    Step(RegionWalk(StepName.MORE_REGION_WALKS, range(1, WALK_ROUNDS), "more LP walks"), WALK_AGAIN_SHARE,
         when=_branch),
    _COMPRESS,
    Step(MilpPerDisjunct(), 1.0 - SECOND_TRY_SHARE, when=_branch),
    Step(MilpPerDisjunct(), 1.0, when=_no_branch),
    Step(LastRace(), 1.0, when=_branch),
))

IMAGES: Schedule[PropertyProblem] = Schedule("images", (
    Step(Sampling()),
    Step(GradientAttack(), ATTACK_SHARE),
    Step(InputSplit(), IMAGES_SPLIT_SHARE, when=_branch),
    Step(Analysis(), ANALYSIS_SHARE * ANALYSIS_SCALE, ANALYSIS_FLOOR, _unanalysed),
    _COMPRESS,
    Step(ReluSplit(), RELU_SPLIT_SHARE),
    Step(MilpPerDisjunct(), 1.0),
))

NO_SEARCH: Schedule[PropertyProblem] = Schedule("no search", (
    Step(Analysis(), ANALYSIS_SHARE, ANALYSIS_FLOOR, _unanalysed),
    _COMPRESS,
    Step(MilpPerDisjunct(), 1.0),
))


def pick(inputs: int, samples: int) -> Schedule[PropertyProblem]:
    """The preset for a property over ``inputs`` inputs; ``samples=0`` asks for no search."""
    from leo.bab.input_split import SPLIT_INPUTS

    if samples <= 0:
        return NO_SEARCH
    return FEW_INPUTS if inputs <= SPLIT_INPUTS else IMAGES


def describe(schedule: Schedule[PropertyProblem]) -> list[str]:
    """A line per step: its name, share of the time left, floor and condition."""
    out = []
    for k, s in enumerate(schedule.steps, start=1):
        when = f", when {s.when.__doc__}" if s.when.__doc__ else ""
        floor = f", at least {s.floor:g} s" if s.floor else ""
        out.append(f"{k}. {s.name}: {s.share:.3g} of the time left{floor}{when}")
    return out
