"""``leo property``'s schedules (leo.queries.schedules): which preset runs, in what order, and
that a run's record says what each step decided; answers against the exact range."""

from __future__ import annotations

import numpy as np
import pytest

from leo.core.domain import make_box
from leo.core.schedule import Decision, StepRecord
from leo.queries import schedules
from leo.queries.property import Answer, Inequality, OutputProperty, check_property
from leo.queries.strategies import StepName
from tests.conftest import exact_ranges, random_mlp

GAP = 0.05


def _at_least(t: float) -> OutputProperty:
    return OutputProperty(1, ((Inequality(np.array([-1.0]), -t),),))


def test_the_preset_follows_the_inputs_and_samples() -> None:
    assert schedules.pick(5, 1024) is schedules.FEW_INPUTS
    assert schedules.pick(784, 1024) is schedules.IMAGES
    assert schedules.pick(5, 0) is schedules.NO_SEARCH and schedules.pick(784, 0) is schedules.NO_SEARCH


@pytest.mark.parametrize("preset", [schedules.FEW_INPUTS, schedules.IMAGES, schedules.NO_SEARCH])
def test_every_preset_ends_in_the_milp_and_names_its_steps(preset) -> None:  # noqa: ANN001
    names = [s.name for s in preset.steps]
    assert all(isinstance(n, StepName) for n in names)
    assert all(0.0 <= s.share <= 1.0 for s in preset.steps)
    assert StepName.MILP in names and StepName.SAMPLING not in names[names.index(StepName.MILP):]
    assert len(schedules.describe(preset)) == len(preset.steps)


def _records(net, box, prop, **kw) -> tuple[object, list[StepRecord]]:  # noqa: ANN001
    seen: list[StepRecord] = []
    return check_property(net, box, prop, 30.0, observe=seen.append, **kw), seen


@pytest.mark.parametrize("seed", range(2))
def test_no_search_runs_the_analysis_then_the_milp(seed: int) -> None:
    net = random_mlp(np.random.default_rng(seed), [2, 5, 4, 1])
    box = make_box(-1, 1, 2)
    _, hi = exact_ranges(net, box.lower, box.upper, len(net.layers) - 1)
    for t, expected in ((hi[0] + GAP, Answer.UNSAT), (hi[0] - GAP, Answer.SAT)):
        result, seen = _records(net, box, _at_least(t), samples=0)
        assert result.answer is expected
        assert [r.name for r in seen] == [StepName.ANALYSIS, StepName.COMPRESS, StepName.MILP]
        assert seen[1].decision is Decision.SKIPPED
        assert seen[2].decision is (Decision.CLOSED_ALL if expected is Answer.UNSAT else Decision.FOUND)
        assert result.solves == seen[2].solves >= 1


def test_few_inputs_stops_at_the_first_step_that_decides() -> None:
    """A property that holds: the cheap searches find nothing, input splitting proves it and
    nothing after it runs; a violated one is found by sampling."""
    net = random_mlp(np.random.default_rng(3), [2, 5, 4, 1])
    box = make_box(-1, 1, 2)
    _, hi = exact_ranges(net, box.lower, box.upper, len(net.layers) - 1)
    result, seen = _records(net, box, _at_least(hi[0] + GAP))
    assert result.answer is Answer.UNSAT and result.how == "branch and bound"
    assert [r.name for r in seen] == [StepName.SAMPLING, StepName.GRADIENT_SEARCH, StepName.REGION_WALK,
                                      StepName.INPUT_SPLIT]
    assert [r.decision for r in seen] == [Decision.NOTHING] * 3 + [Decision.CLOSED_ALL]
    low = net(box.sample(100, np.random.default_rng(0)))[:, 0].min()
    result, seen = _records(net, box, _at_least(low))
    assert result.answer is Answer.SAT and result.how == "sampling" and len(seen) == 1


def test_a_polytope_region_skips_input_splitting() -> None:
    """With ``branch=False`` (a polytope: splitting cannot use its rows) the split steps are
    skipped, and the MILP with the rows decides."""
    net = random_mlp(np.random.default_rng(4), [2, 5, 1])
    box = make_box(-1, 1, 2)
    _, hi = exact_ranges(net, box.lower, box.upper, len(net.layers) - 1)
    polytope = (np.array([[1.0, 1.0]]), np.array([2.0]))  # x0 + x1 <= 2: the whole box
    result, seen = _records(net, box, _at_least(hi[0] + GAP), branch=False, polytope=polytope)
    assert result.answer is Answer.UNSAT and result.how == "milp-infeasible"
    skipped = {r.name for r in seen if r.decision is Decision.SKIPPED}
    assert {StepName.INPUT_SPLIT, StepName.FLOORS_RACE, StepName.MORE_REGION_WALKS} <= skipped
    assert StepName.LAST_RACE not in {r.name for r in seen if r.decision is not Decision.SKIPPED}
