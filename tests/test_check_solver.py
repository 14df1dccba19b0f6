"""``compare_exact(..., solver=...)`` (``leo check --exact --solver``): SCIP's answers equal
HiGHS's on an equivalent pair and on a pair that differs, with the truth known by
construction and every counterexample confirmed by both forward passes."""

from __future__ import annotations

import numpy as np
import pytest

from leo.core.domain import make_box
from leo.core.network import mlp
from leo.errors import LeoInputError
from leo.queries.equivalence import Verdict, compare_exact
from solvers.backend import Solver

TOLERANCE = 1e-6


def _pairs():
    """(f, g, equivalent): g = f rescaled through its ReLUs (relu(2z)/2 = relu(z), so no unit
    of g matches one of f and the MILPs decide it); and g = f with one hidden weight moved."""
    rng = np.random.default_rng(4)
    ws = [rng.normal(size=(5, 3)), rng.normal(size=(4, 5)), rng.normal(size=(2, 4))]
    bs = [rng.normal(size=5) * 0.5, rng.normal(size=4) * 0.5, rng.normal(size=2)]
    f = mlp(ws, bs)
    same = mlp([2 * ws[0], ws[1] / 2, ws[2]], [2 * bs[0], bs[1], bs[2]])
    moved = [w.copy() for w in ws]
    moved[1][0] += 0.3
    return [(f, same, True), (f, mlp(moved, bs), False)]


@pytest.mark.parametrize("case", [0, 1])
def test_scip_answers_as_highs_does(case):
    pytest.importorskip("pyscipopt")
    f, g, equivalent = _pairs()[case]
    box = make_box(-1, 1, 3)
    answers = {s: compare_exact(f, g, box, tolerance=TOLERANCE, time_limit=30, solver=s)
               for s in (Solver.HIGHS, "scip")}
    verdicts = {s: r.verdict for s, r in answers.items()}
    assert verdicts[Solver.HIGHS] is (Verdict.PROVEN if equivalent else Verdict.REFUTED)
    assert verdicts["scip"] is verdicts[Solver.HIGHS], answers
    for r in answers.values():
        if r.verdict is Verdict.REFUTED:
            x = r.counterexample
            assert np.all(x >= box.lower) and np.all(x <= box.upper)
            assert float(np.abs(f(x[None]) - g(x[None])).max()) > TOLERANCE
        else:
            assert r.proven_bound is not None and r.proven_bound <= TOLERANCE


def test_an_unknown_solver_is_bad_input():
    f, g, _ = _pairs()[0]
    with pytest.raises(LeoInputError, match="unknown solver 'cplex'"):
        compare_exact(f, g, make_box(-1, 1, 3), solver="cplex")
