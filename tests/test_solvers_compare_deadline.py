"""``compare_exact`` stops at one deadline, whatever its per-solve limit: every solve of a cheap
query is made slow (it takes its whole time limit, up to SLOW seconds, as a hard solve
would), so the comparison without a deadline takes about 7 * SLOW, and with one must end
near it, undecided on the time limit, never proven."""

from __future__ import annotations

import time

import numpy as np
import pytest

import leo.queries.equivalence as equivalence
from leo.core.deadline import Deadline
from leo.core.domain import make_box
from leo.core.network import mlp
from leo.stability.analysis import StabilityOptions, analyse
from solvers.highs_backend import HighsModel

SLOW = 1.0
BUDGET = 1.0
#: How far past the deadline the comparison may end (one solve's start-up, the encodings, a busy machine).
MARGIN = 3.0


@pytest.fixture
def slow_solves(monkeypatch):  # noqa: ANN201
    calls: list[float] = []
    original = HighsModel.minimise

    def slow(self, cost, threshold, time_limit, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(time_limit)
        time.sleep(min(SLOW, time_limit))
        return original(self, cost, threshold, time_limit, *args, **kwargs)

    monkeypatch.setattr(HighsModel, "minimise", slow)
    return calls


def _query():
    """f and g = f with its hidden units scaled by 2 and their outgoing weights by 1/2: the same
    function (relu(2z) / 2 = relu(z)), but no unit of g matches one of f, so each output's two
    MILPs must run."""
    rng = np.random.default_rng(2)
    ws = [rng.normal(size=(6, 3)), rng.normal(size=(3, 6))]
    bs = [rng.normal(size=6) * 0.5, rng.normal(size=3)]
    f = mlp(ws, bs)
    g = mlp([2 * ws[0], ws[1] / 2], [2 * bs[0], bs[1]])
    box = make_box(-1, 1, 3)
    options = StabilityOptions(samples=16, time_limit=10, branch=False)
    return f, g, box, (analyse(f, box, options), analyse(g, box, options))


def test_compare_exact_ends_at_its_deadline(slow_solves):
    f, g, box, reports = _query()
    t0 = time.perf_counter()
    result = equivalence.compare_exact(f, g, box, tolerance=1e-6, time_limit=60, reports=reports,
                                       deadline=Deadline.after(BUDGET))
    elapsed = time.perf_counter() - t0
    assert result.verdict is equivalence.Verdict.UNDECIDED and "time limit" in result.reason, result
    assert elapsed < BUDGET + MARGIN, f"{elapsed:.1f} s for a {BUDGET} s deadline"
    assert all(limit <= BUDGET + 1e-6 for limit in slow_solves)


def test_without_a_deadline_the_same_query_runs_every_solve(slow_solves):
    """The control: the query needs 2 * 3 MILPs and the guard's LP, and is proven."""
    f, g, box, reports = _query()
    t0 = time.perf_counter()
    result = equivalence.compare_exact(f, g, box, tolerance=1e-6, time_limit=60, reports=reports)
    assert result.verdict is equivalence.Verdict.PROVEN
    assert len(slow_solves) >= 7 and time.perf_counter() - t0 >= 7 * SLOW
