"""``check_property(..., solver=...)``: the MILP per disjunct runs through ``solvers.backend``,
and SCIP answers as HiGHS does, against the exact output range (one LP per activation pattern)
on small networks and against the 2021 answers on VNN-COMP instances (``samples=0``: the MILP
decides). Skipped where pyscipopt is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from leo.core.domain import Box, make_box
from leo.core.network import Network
from leo.errors import LeoInputError
from leo.queries.property import Answer, Inequality, OutputProperty, check_property
from tests.conftest import exact_ranges, random_mlp, vnncomp_answer, vnncomp_dir

GAP = 0.05  # thresholds sit this far inside / outside the exact range


def _scip() -> None:
    from solvers.backend import unavailable

    why = unavailable("scip")
    if why is not None:
        pytest.skip(why)


def _at_least(t: float) -> OutputProperty:
    return OutputProperty(1, ((Inequality(np.array([-1.0]), -t),),))


def _cases(net: Network, box: Box) -> list[tuple[OutputProperty, Answer]]:
    """y >= t just above and just below the exact maximum."""
    _, hi = exact_ranges(net, box.lower, box.upper, len(net.layers) - 1)
    return [(_at_least(hi[0] + GAP), Answer.UNSAT), (_at_least(hi[0] - GAP), Answer.SAT)]


def _checked(net: Network, box: Box, prop: OutputProperty, result) -> None:  # noqa: ANN001
    assert box.contains(result.counterexample, tol=0.0)[0]
    assert prop.excess(net(result.counterexample[None, :]), result.disjunct)[0] <= 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_scip_answers_as_highs_and_the_exact_range(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    _scip()
    import solvers.backend

    made: list[str] = []
    real = solvers.backend.new_model

    def spy(problem, *a, solver="highs", **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        made.append(str(solver))
        return real(problem, *a, solver=solver, **k)

    monkeypatch.setattr(solvers.backend, "new_model", spy)
    net = random_mlp(np.random.default_rng(seed), [3, 5, 4, 1])
    box = make_box(-1, 1, 3)
    for prop, expected in _cases(net, box):
        for solver in ("highs", "scip"):
            made.clear()
            result = check_property(net, box, prop, 30.0, samples=0, solver=solver)
            assert result.answer is expected, (solver, result)
            assert solver in made, made  # the disjunct's MILP ran in that back-end
            assert result.how == ("milp" if expected is Answer.SAT else "milp-infeasible")
            if expected is Answer.SAT:
                _checked(net, box, prop, result)


def test_scip_decides_a_disjunct_whose_model_is_an_lp() -> None:
    """On a box so small that every unit is stable the disjunct's model has no binaries: an
    infeasible LP is the proof, for either back-end."""
    _scip()
    net = random_mlp(np.random.default_rng(0), [3, 6, 1])
    box = Box(np.full(3, -1e-4), np.full(3, 1e-4))
    for prop, expected in _cases(net, box):
        for solver in ("highs", "scip"):
            result = check_property(net, box, prop, 30.0, samples=0, solver=solver)
            assert result.answer is expected, (solver, result)


def test_an_unknown_or_missing_solver_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    import solvers.backend

    net = random_mlp(np.random.default_rng(0), [2, 3, 1])
    box = make_box(-1, 1, 2)
    with pytest.raises(LeoInputError, match="unknown solver 'cplex'"):
        check_property(net, box, _at_least(0.0), 5.0, solver="cplex")
    monkeypatch.setattr(solvers.backend, "unavailable", lambda s: f"solver {s!r} is not installed: pip install x")
    with pytest.raises(LeoInputError, match="not installed"):
        check_property(net, box, _at_least(0.0), 5.0, solver="scip")


def test_check_query_hands_the_solver_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """``check_query`` passes ``solver`` to every region's ``check_property``."""
    import leo.queries.check
    from leo.core.spec import Case, InputRegion, NetworkDecl, Query, TensorDecl

    seen: list[object] = []
    real = leo.queries.check.check_property

    def spy(*a, **k):  # noqa: ANN002, ANN003, ANN202
        seen.append(k.get("solver"))
        return real(*a, **k)

    monkeypatch.setattr(leo.queries.check, "check_property", spy)
    net = random_mlp(np.random.default_rng(1), [2, 4, 1])
    decl = NetworkDecl("N", (TensorDecl("X", (2,)),), (TensorDecl("Y", (1,)),))
    region = InputRegion(np.full(2, -1.0), np.full(2, 1.0))
    query = Query((decl,), (Case(region, np.array([[-1.0]]), np.array([-1e6])),))
    result = leo.queries.check.check_query(query, {"N": net}, 10.0, solver="highs")
    assert result.answer is Answer.UNSAT and seen == ["highs"]


#: ACAS Xu 1_7 property 3 (sat) and MNIST 256x2 image 2 at 0.03 (unsat): with samples=0 the MILPs
#: decide (2026-12-06, loaded machine: 23.5 s HiGHS / 17.1 s SCIP, and 3.6 s / 37.4 s).
INSTANCES = [("acasxu", "ACASXU_run2a_1_7_batch_2000.onnx", "prop_3.vnnlib"),
             ("mnistfc", "mnist-net_256x2.onnx", "prop_2_0.03.vnnlib")]


@pytest.mark.slow
@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
@pytest.mark.parametrize("bench,onnx,spec", INSTANCES)
def test_vnncomp2021_scip_answers_as_highs(bench: str, onnx: str, spec: str) -> None:
    _scip()
    from leo.io.load import load_network
    from leo.io.vnnlib import read_vnnlib

    net = load_network(vnncomp_dir() / bench / onnx)
    box, prop = read_vnnlib(vnncomp_dir() / bench / spec, net.input_dim)
    expected = vnncomp_answer(onnx, spec)
    answers = {s: check_property(net, box, prop, 120.0, samples=0, solver=s) for s in ("highs", "scip")}
    for solver, result in answers.items():
        assert result.answer.value == expected, (solver, result)
        if result.answer is Answer.SAT:
            _checked(net, box, prop, result)
