"""The stability analysis on the engine's types: its options take the named choices (strings
converted), its phases are one enum in run order, its per-layer order is a named schedule
(``leo.stability.schedules``), and the ReLU-split phase claims a sign only where exact
enumeration (one LP per activation pattern) agrees."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from tests.conftest import exact_ranges, random_mlp
from leo.core.choices import Engine
from leo.core.deadline import Deadline
from leo.core.domain import make_box
from leo.core.verdicts import Method, Verdict
from leo.errors import LeoInputError
from leo.stability.analysis import PHASES, StabilityOptions, analyse, bounds_and_states
from leo.stability.relu_phase import split_units
from leo.stability.schedules import STABILITY, STABILITY_CHEAP
from leo.stability.stages import Phase
from solvers.backend import Solver

torch.set_num_threads(1)

NETS = [([3, 4, 4, 3, 1], 0.2, 11), ([3, 5, 3, 4, 2], -0.2, 12), ([4, 5, 5, 1], 0.4, 13)]


def test_options_take_the_choices_as_enums_and_strings():
    o = StabilityOptions(engine="network", solver="highs")
    assert o.engine is Engine.NETWORK and o.solver is Solver.HIGHS and o.engine == "network"
    assert StabilityOptions().engine is Engine.UNIT
    with pytest.raises(LeoInputError, match="unknown engine 'fast'; choose one of unit, network"):
        StabilityOptions(engine="fast")
    with pytest.raises(LeoInputError, match="unknown solver 'cplex'"):
        StabilityOptions(solver="cplex")


def test_phases_are_one_enum_in_run_order_and_read_as_the_strings_the_display_prints():
    assert PHASES == tuple(Phase)
    assert [str(p) for p in PHASES] == ["bounds", "witnesses", "local search", "LP", "branch and bound",
                                        "ReLU split", "MILP", "done"]
    assert f"{Phase.MILP}" == "MILP" and Phase.MILP == "MILP"


def test_the_schedules_name_the_layer_steps_in_order():
    assert [s.name for s in STABILITY.steps] == ["bounds", "witnesses", "local search", "LP", "branch and bound",
                                                 "ReLU split", "MILP"]
    assert [s.name for s in STABILITY_CHEAP.steps] == ["bounds", "witnesses", "local search", "branch and bound"]


@functools.cache
def _case(i: int):
    sizes, shift, seed = NETS[i]
    net = random_mlp(np.random.default_rng(seed), sizes, bias_shift=shift)
    box = make_box(-1, 1, sizes[0])
    ranges = {k: exact_ranges(net, box.lower, box.upper, k) for k, ly in enumerate(net.layers) if ly.relu}
    return net, box, ranges


def _check(claims: dict[tuple[int, int], tuple[Verdict, Method]], ranges: dict) -> None:
    for (k, j), (verdict, method) in claims.items():
        lo, hi = ranges[k][0][j], ranges[k][1][j]
        if verdict is Verdict.ACTIVE:
            assert lo >= 0, (k, j, method, lo)
        elif verdict is Verdict.INACTIVE:
            assert hi <= 0, (k, j, method, hi)


def test_relu_split_phase_claims_agree_with_exact_enumeration():
    """With the phase forced on (and input splitting off, few samples, no local search) every
    stable claim is exactly right, the analysis stays exact (no budget), and the phase decides
    some unit itself."""
    by_phase = 0
    for i in range(len(NETS)):
        net, box, ranges = _case(i)
        report = analyse(net, box, StabilityOptions(samples=16, local_search=False, seed=0, branch=False,
                                                    relu_split=True))
        claims = {(lr.layer - 1, j): (p.verdict, p.method) for lr in report.layers for j, p in enumerate(lr.proofs)}
        _check(claims, ranges)
        for (k, j), (verdict, method) in claims.items():  # exact: every unit decided, none left open
            if verdict is Verdict.UNSTABLE:
                assert method in (Method.WITNESS, Method.MILP_WITNESS, Method.SEARCH), (i, k, j, method)
        by_phase += sum(method is Method.RELU_SPLIT for _, method in claims.values())
    assert by_phase > 0


def test_split_units_proves_exactly_stable_units_and_its_points_show_the_other_sign():
    """Each unit of a deep layer asked both ways: a proof only where the exact range agrees, a
    point only where the forward pass shows the sign asked against; some units get a proof."""
    proven = 0
    for i in range(len(NETS)):
        net, box, ranges = _case(i)
        report = analyse(net, box, StabilityOptions(samples=16, seed=0))
        bounds, states = bounds_and_states(net, box, report)
        k = max(ranges)
        units = np.arange(net.layers[k].width)
        for d in (1, -1):
            proofs, points = split_units(net, box, k, bounds[:k + 1], states[:k], units, np.full(units.size, d),
                                         1e-6, Deadline.after(30.0), 5.0)
            for j, p in proofs.items():
                assert (ranges[k][0][j] if d > 0 else -ranges[k][1][j]) >= 0, (i, j, d)
                assert p.method is Method.RELU_SPLIT
            proven += len(proofs)
            if len(points):
                z = net.pre_activations(points)[k]
                assert ((d * z) < 0).any(axis=1).all()
    assert proven > 0
