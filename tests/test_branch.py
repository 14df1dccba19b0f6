"""leo.bab.input_split against independent truth: exact minima by one LP per activation pattern
(tiny networks), dense sampling, and the network's own forward pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from leo.bab.input_split import Status, property_goal, search, unit_sign
from leo.bounds.batched import goal_bounds
from leo.core.deadline import Deadline, now
from leo.core.domain import Box, make_box
from leo.core.network import Layer, Network, mlp

GAP = 0.05  # thresholds sit this far inside / outside the exact range


def _net(rng: np.random.Generator, sizes: list[int], final_relu: bool = False) -> Network:
    ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=o) * 0.5 for o in sizes[1:]]
    return mlp(ws, bs, final_relu=final_relu)


def _exact_min(net: Network, box: Box, g: np.ndarray, h: float) -> float:
    """min over the box of g . y(x) + h, by enumerating activation patterns of every ReLU
    (hidden and, if present, output): within a pattern the network is affine, so one LP."""
    relus = [ly.width if ly.relu else 0 for ly in net.layers]
    best = np.inf
    for pattern in itertools.product([0, 1], repeat=sum(relus)):
        maps = [(np.eye(net.input_dim), np.zeros(net.input_dim))]  # h_s = A x + c, per source s
        rows, rhs, pos = [], [], 0
        for ly in net.layers:
            za = sum(w @ maps[s][0] for s, w in ly.weights.items())
            zc = sum(w @ maps[s][1] for s, w in ly.weights.items()) + ly.bias
            if ly.relu:
                bits = np.array(pattern[pos:pos + ly.width])
                pos += ly.width
                for j in range(ly.width):
                    rows.append(-za[j] if bits[j] else za[j])
                    rhs.append(zc[j] if bits[j] else -zc[j])
                za, zc = za * bits[:, None], zc * bits
            maps.append((za, zc))
        cost, const = g @ maps[-1][0], float(g @ maps[-1][1] + h)
        scale = float(np.abs(cost).max()) or 1.0
        res = linprog(cost / scale, A_ub=np.array(rows) if rows else None, b_ub=np.array(rhs) if rows else None,
                      bounds=list(zip(box.lower, box.upper)), method="highs")
        if res.status == 0:
            best = min(best, float(cost @ res.x) + const)
    return best


def _skip_net(rng: np.random.Generator) -> Network:
    """2 -> 4 -> 3 -> 1 with a skip connection from the input to the output layer."""
    l1 = Layer({0: rng.normal(size=(4, 2))}, rng.normal(size=4) * 0.5, relu=True)
    l2 = Layer({1: rng.normal(size=(3, 4)) / 2}, rng.normal(size=3) * 0.5, relu=True)
    l3 = Layer({2: rng.normal(size=(1, 3)), 0: rng.normal(size=(1, 2))}, rng.normal(size=1), relu=False)
    return Network(2, (l1, l2, l3))


NETS = [lambda r: _net(r, [2, 5, 4, 1]), lambda r: _net(r, [2, 4, 3, 2], final_relu=True), _skip_net]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("make", range(len(NETS)))
def test_bounds_never_exceed_the_sampled_minimum_on_any_sub_box(seed: int, make: int) -> None:
    rng = np.random.default_rng(seed)
    net = NETS[make](rng)
    g = rng.normal(size=(3, net.output_dim))
    h = rng.normal(size=3)
    centre = rng.uniform(-1, 1, size=(6, 2))
    radius = rng.uniform(0.01, 1.0, size=(6, 2))
    lo, hi = centre - radius, centre + radius
    lower, a0 = goal_bounds(net, lo, hi, g, h)
    assert lower.shape == (6, 3) and a0.shape == (6, 3, 2)
    for b in range(6):
        x = Box(lo[b], hi[b]).sample(20_000, rng)
        x = np.vstack([x, Box(lo[b], hi[b]).corners(4)])
        values = net(x) @ g.T + h
        assert np.all(lower[b] <= values.min(axis=0))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("make", range(len(NETS)))
def test_search_agrees_with_the_exact_minimum(seed: int, make: int) -> None:
    """Threshold GAP below the exact minimum: proven; GAP above: a counterexample that the
    forward pass confirms."""
    rng = np.random.default_rng(100 + seed)
    net = NETS[make](rng)
    box = make_box(-1, 1, 2)
    g = rng.normal(size=net.output_dim)
    m = _exact_min(net, box, g, 0.0)
    for t, expected in ((m - GAP, Status.PROVEN), (m + GAP, Status.COUNTEREXAMPLE)):
        # unsafe: g . y <= t; it is empty exactly when min g . y > t
        r = search(net, box, property_goal([(g[None, :], np.array([t]))]), Deadline.after(60))
        assert r.status is expected, (t, m, r)
        if expected is Status.COUNTEREXAMPLE:
            assert box.contains(r.x)[0] and float(net(r.x[None, :])[0] @ g) - t <= 0
            assert 0 not in r.proven  # the disjunct just shown reachable is never reported excluded
        else:
            assert r.proven == {0}


@pytest.mark.parametrize("seed", range(3))
def test_disjunctions_and_conjunctions_against_brute_force(seed: int) -> None:
    """Unsafe set: (y0 <= t0 and y1 <= t1) or (y1 >= t2). Truth by the exact ranges of y0, y1
    over the box where they decide it, and by dense sampling where they do not."""
    rng = np.random.default_rng(200 + seed)
    net = _net(rng, [2, 4, 4, 2])
    box = make_box(-1, 1, 2)
    lo0, lo1 = _exact_min(net, box, np.array([1.0, 0]), 0), _exact_min(net, box, np.array([0, 1.0]), 0)
    hi1 = -_exact_min(net, box, np.array([0, -1.0]), 0)
    e0, e1 = np.eye(2)
    # both disjuncts out of reach: y0 <= lo0 - GAP never holds, y1 >= hi1 + GAP never holds
    holds = [((np.vstack([e0, e1]), np.array([lo0 - GAP, 10.0]))), ((-e1)[None, :], np.array([-(hi1 + GAP)]))]
    r = search(net, box, property_goal(holds), Deadline.after(60))
    assert r.status is Status.PROVEN and r.proven == {0, 1}
    # the second disjunct reachable: a confirmed point in it
    broken = [holds[0], ((-e1)[None, :], np.array([-(hi1 - GAP)]))]
    r = search(net, box, property_goal(broken), Deadline.after(60))
    y = net(r.x[None, :])[0]
    assert r.status is Status.COUNTEREXAMPLE and r.disjunct == 1 and y[1] >= hi1 - GAP and box.contains(r.x)[0]
    assert lo1 <= y[1] <= hi1 + 1e-9


def test_deadline_gives_timeout_never_a_proof() -> None:
    rng = np.random.default_rng(7)
    net = _net(rng, [5, 30, 30, 30, 1])
    box = make_box(-1, 1, 5)
    m = net(box.sample(200_000, rng))[:, 0].min()
    r = search(net, box, property_goal([(np.ones((1, 1)), np.array([m - 1e-3]))]), Deadline(now() - 1.0))
    assert r.status is Status.TIMEOUT and r.proven == frozenset()


def test_open_budget_gives_unknown_and_names_no_disjunct_proven() -> None:
    rng = np.random.default_rng(8)
    net = _net(rng, [5, 30, 30, 30, 1])
    box = make_box(-1, 1, 5)
    m = net(box.sample(200_000, rng))[:, 0].min()
    goal = property_goal([(np.ones((1, 1)), np.array([m - 1e-4]))])  # just below the sampled minimum
    r = search(net, box, goal, Deadline.after(60), max_open=4, batch=2)
    assert r.status in (Status.UNKNOWN, Status.PROVEN, Status.COUNTEREXAMPLE)
    if r.status is Status.UNKNOWN:
        assert r.proven == frozenset()
    if r.status is Status.COUNTEREXAMPLE:  # the in-leaf attack went below the sampled minimum: a real point
        assert box.contains(r.x)[0] and float(net(r.x[None, :])[0, 0]) <= m - 1e-4 and r.proven == frozenset()


def test_confirm_rejects_a_point_so_no_counterexample_is_claimed() -> None:
    """Only points the caller's check accepts count: with a check that refuses all, an
    easily violated goal is never COUNTEREXAMPLE."""
    rng = np.random.default_rng(9)
    net = _net(rng, [2, 4, 1])
    box = make_box(-1, 1, 2)
    goal = property_goal([(np.ones((1, 1)), np.array([-1e6]))])  # y <= -1e6: unreachable...
    r = search(net, box, goal, Deadline.after(10))
    assert r.status is Status.PROVEN
    goal = property_goal([(np.ones((1, 1)), np.array([1e6]))])  # y <= 1e6: everywhere
    r = search(net, box, goal, Deadline.after(2), confirm=lambda x: None, max_open=64)
    assert r.status in (Status.UNKNOWN, Status.TIMEOUT) and r.x is None


@pytest.mark.parametrize("seed", range(3))
def test_unit_sign_matches_exact_unit_ranges(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    net = _net(rng, [2, 5, 4, 1])
    box = make_box(-1, 1, 2)
    for j in range(4):
        g = np.zeros(4)
        g[j] = 1.0
        sub = Network(2, (net.layers[0], Layer(dict(net.layers[1].weights), net.layers[1].bias, relu=False)))
        lo, hi = _exact_min(sub, box, g, 0.0), -_exact_min(sub, box, -g, 0.0)
        sign = unit_sign(net, box, 2, j, Deadline.after(30))
        if sign == "active":
            assert lo >= 0
        elif sign == "inactive":
            assert hi <= 0
        if lo > 1e-3:
            assert sign == "active"
        if hi < -1e-3:
            assert sign == "inactive"
        if lo < -1e-3 and hi > 1e-3:
            assert sign is None


# -- the hook in check_property: the same answers as the exact ranges, decided by the search --------

@pytest.mark.parametrize("seed", range(3))
def test_check_property_answers_by_branch_and_bound_match_exact_ranges(seed: int) -> None:
    from leo.queries.property import Answer, Inequality, OutputProperty, check_property

    rng = np.random.default_rng(400 + seed)
    net = _net(rng, [3, 5, 3, 1])
    box = make_box(-1, 1, 3)
    lo = _exact_min(net, box, np.ones(1), 0.0)
    hi = -_exact_min(net, box, -np.ones(1), 0.0)
    holds = OutputProperty(1, ((Inequality(np.array([-1.0]), -(hi + GAP)),),  # y >= hi + GAP: never
                               (Inequality(np.array([1.0]), lo - GAP),)))  # y <= lo - GAP: never
    result = check_property(net, box, holds, 30.0)
    assert result.answer is Answer.UNSAT and result.how == "branch and bound"
    # just inside the range at the top: sampling may miss it, the search may not
    broken = OutputProperty(1, ((Inequality(np.array([-1.0]), -(hi - 1e-3)),),))
    result = check_property(net, box, broken, 30.0)
    assert result.answer is Answer.SAT
    assert box.contains(result.counterexample)[0] and net(result.counterexample[None, :])[0, 0] >= hi - 1e-3 - 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_searcher_in_slices_answers_as_one_search_and_exclude_drops_a_disjunct(seed: int) -> None:
    """The resumable search (``Searcher``) given its time in many short slices reaches the
    one-shot search's answer on the same tree (same sub-boxes bounded), the exact truth; a
    disjunct excluded by the caller is never reported proven by the search."""
    from leo.bab.input_split import Searcher

    rng = np.random.default_rng(300 + seed)
    net = _net(rng, [2, 6, 5, 1])
    box = make_box(-1, 1, 2)
    m = _exact_min(net, box, np.ones(1), 0.0)
    goal = property_goal([(np.ones((1, 1)), np.array([m - GAP]))])  # empty: min y > m - GAP
    whole = search(net, box, goal, Deadline.after(60))
    searcher, slices = Searcher(net, box, goal), 0
    while True:
        r = searcher.run(Deadline.after(0.002))
        slices += 1
        if r.status is not Status.TIMEOUT:
            break
    assert whole.status is r.status is Status.PROVEN and r.proven == {0}
    assert r.leaves == whole.leaves and slices > 1
    assert searcher.run(Deadline.after(60)) is r  # decided: no more work
    # two empty disjuncts; the caller proved the first itself: the search proves the second and
    # reports only that one as its own
    two = property_goal([(np.ones((1, 1)), np.array([m - 2 * GAP])), (np.ones((1, 1)), np.array([m - GAP]))])
    s2 = Searcher(net, box, two)
    s2.exclude([0])
    r2 = s2.run(Deadline.after(60))
    assert r2.status is Status.PROVEN and r2.proven == {1}
    # a reachable disjunct: a confirmed point ends the search whatever the caller excluded
    s3 = Searcher(net, box, property_goal([(np.ones((1, 1)), np.array([m + GAP]))]))
    r3 = s3.run(Deadline.after(60))
    assert r3.status is Status.COUNTEREXAMPLE and float(net(r3.x[None, :])[0, 0]) <= m + GAP


@pytest.mark.parametrize("seed", range(3))
def test_floors_from_exact_ranges_keep_the_answer_exact(seed: int) -> None:
    """Whole-box bounds of the hidden layers (``floors``; here the exact ranges) intersect every
    sub-box's own: the answers stay those of the exact minimum, and the root box's layer bounds
    are within the floors."""
    import torch

    from leo.bab.input_split import Searcher
    from leo.bounds.batched import Net as _Net, layer_bounds as _layer_bounds
    from tests.conftest import exact_ranges

    rng = np.random.default_rng(400 + seed)
    net = _net(rng, [2, 5, 4, 1])
    box = make_box(-1, 1, 2)
    floors = [exact_ranges(net, box.lower, box.upper, k) for k in range(len(net.layers) - 1)]
    m = _exact_min(net, box, np.ones(1), 0.0)
    for t, expected in ((m - GAP, Status.PROVEN), (m + GAP, Status.COUNTEREXAMPLE)):
        r = Searcher(net, box, property_goal([(np.ones((1, 1)), np.array([t]))]), floors=floors).run(
            Deadline.after(60))
        assert r.status is expected, (t, m, r)
    # the floors reach the bounding step: the root box's layer bounds lie within them
    pre, _ = _layer_bounds(_Net(net, floors), *(torch.from_numpy(v[None, :]) for v in (box.lower, box.upper)))
    for (zl, zu), (lo, hi) in zip(pre, floors):
        assert np.all(zl.numpy()[0] >= lo) and np.all(zu.numpy()[0] <= hi)


@pytest.mark.parametrize("seed", range(2))
def test_check_property_second_search_after_the_milps_answers_exactly(seed: int, monkeypatch) -> None:
    """Few inputs: when neither the first search (given no time here) nor the MILP (made to time
    out here) decides, the second search, with the analysis's bounds, does: UNSAT only where
    the exact range says so, SAT only with a point the forward pass confirms; the time-outs in
    between prove nothing."""
    import dataclasses

    import leo.queries.property
    import leo.queries.schedules as schedules
    from leo.core.schedule import Decision
    from leo.queries.property import Answer, Inequality, OutputProperty, _Outcome, check_property
    from leo.queries.strategies import DisjunctStatus, StepName

    # the first search's share lives in a frozen Step of the preset: patch the preset, not the constant
    steps = tuple(dataclasses.replace(s, share=0.0) if s.name == StepName.INPUT_SPLIT else s
                  for s in schedules.FEW_INPUTS.steps)
    monkeypatch.setattr(schedules, "FEW_INPUTS", dataclasses.replace(schedules.FEW_INPUTS, steps=steps))
    monkeypatch.setattr(leo.queries.property, "_solve_disjunct",
                        lambda *a, **k: _Outcome(DisjunctStatus.TIMEOUT, reason="made to"))
    records: list = []
    rng = np.random.default_rng(500 + seed)
    net = _net(rng, [3, 6, 4, 1])
    box = make_box(-1, 1, 3)
    lo = _exact_min(net, box, np.ones(1), 0.0)
    holds = OutputProperty(1, ((Inequality(np.array([1.0]), lo - GAP),),))  # y <= lo - GAP: never
    result = check_property(net, box, holds, 30.0, samples=16, observe=records.append)
    assert result.answer is Answer.UNSAT and result.how == "branch and bound", result
    decided = {r.name: r.decision for r in records}
    assert decided[StepName.INPUT_SPLIT] is Decision.NOTHING, records  # the patched share: the first search ran out
    assert Decision.CLOSED_ALL in (decided.get(StepName.FLOORS_RACE), decided.get(StepName.LAST_RACE)), records
    broken = OutputProperty(1, ((Inequality(np.array([1.0]), lo + 1e-3),),))  # y <= lo + 1e-3: somewhere
    result = check_property(net, box, broken, 30.0, samples=16)
    assert result.answer is Answer.SAT, result
    assert box.contains(result.counterexample)[0] and net(result.counterexample[None, :])[0, 0] <= lo + 1e-3 + 1e-9
