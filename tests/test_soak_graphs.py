"""The graph soak (benchmarks/soak_nets.py): its generators, its enumeration truth and its
answer checks can each fail (the seed-fixed slice through leo is in tests/test_soak.py)."""

import numpy as np
import pytest

from benchmarks import soak
from benchmarks.soak_draw import Kind, draw
from benchmarks.soak_enum import enumerate_regions, max_abs, min_excess
from benchmarks.soak_graph import Graph, Node, Op, from_leo, graph_of, module, torch_forward
from benchmarks.soak_queries import Verdict, equivalence_query, property_query
from leo.core.network import mlp
from tests.conftest import exact_ranges as brute_force_ranges


@pytest.mark.parametrize("kind", list(Kind))
def test_graph_and_leo_reader_agree_with_torch(kind):
    """The torch-measured graph and leo's reading of the module both compute the module's
    forward pass (on the box, and off it), for every generator."""
    from leo.io.torch_io import from_module

    for index in range(2):
        drawn = draw(kind, 3, index)
        mod = module(drawn)
        rng = np.random.default_rng(index)
        x = drawn.lower + rng.uniform(-1, 2, (300, drawn.lower.size)) * (drawn.upper - drawn.lower + 1)
        y = torch_forward(mod, drawn.shape, x)
        scale = 1.0 + np.abs(y).max()
        assert np.abs(graph_of(drawn, mod)(x) - y).max() <= 1e-9 * scale
        assert np.abs(from_module(mod, drawn.shape)(x) - y).max() <= 1e-9 * scale


@pytest.mark.parametrize("index", range(4))
def test_enumerated_ranges_match_brute_force(index):
    """The graph enumeration's ReLU input ranges equal those of all 2^n patterns
    (tests/conftest.py, a separate implementation) on the dense soak's awkward cases."""
    case = soak.random_case(9, index)
    while sum(case.hidden) > 8 or np.all(case.lower == case.upper):
        index += 100
        case = soak.random_case(9, index)
    net = mlp(list(case.weights), list(case.biases))
    graph = from_leo(net)
    found = enumerate_regions(graph, case.lower, case.upper, lp_cap=100_000)
    assert found is not None
    regions = found[1]
    relu_inputs = [i for i, n in enumerate(graph.nodes, start=1) if n.op is Op.RELU]
    for k, node in enumerate(relu_inputs):
        lo, hi = brute_force_ranges(net, case.lower, case.upper, k)
        tol = 1e-6 * (1.0 + np.abs(lo).max() + np.abs(hi).max())
        assert np.allclose(regions.lower[node], lo, rtol=0, atol=tol)
        assert np.allclose(regions.upper[node], hi, rtol=0, atol=tol)


@pytest.mark.parametrize("kind", [Kind.MAXPOOL, Kind.CONV, Kind.RESIDUAL])
def test_min_excess_is_attained_and_below_every_sample(kind):
    """On max-pool, conv and residual graphs the enumerated minimum of a random row's value
    is attained (its point's forward pass gives it) and no sampled point goes below it."""
    checked = 0
    for index in range(8):
        drawn = draw(kind, 4, index)
        mod = module(drawn)
        found = enumerate_regions(graph_of(drawn, mod), drawn.lower, drawn.upper, lp_cap=300)
        if found is None:
            continue
        rng = np.random.default_rng(index)
        y0 = torch_forward(mod, drawn.shape, drawn.lower[None, :])
        p = rng.normal(size=(1, y0.shape[1]))
        best = min_excess(*found, p, np.zeros(1))
        xs = drawn.lower + rng.random((5000, drawn.lower.size)) * (drawn.upper - drawn.lower)
        sampled = torch_forward(mod, drawn.shape, xs) @ p[0]
        at = float(torch_forward(mod, drawn.shape, best[1][None, :])[0] @ p[0])
        scale = 1.0 + np.abs(sampled).max()
        assert abs(at - best[0]) <= 1e-6 * scale
        assert sampled.min() >= best[0] - 1e-6 * scale
        checked += 1
    assert checked >= 3


def test_max_pool_enumeration_counts_every_argmax():
    """max(x1, x2) - 0.5 x1 on [-1, 1]^2: two regions (which input is larger); the largest
    |y| is 1.5 at (-1, 1), found only when the branch x2 >= x1 is kept."""
    graph = Graph(2, (Node(Op.MAX, (0,), groups=np.array([[0, 1]])),
                      Node(Op.AFFINE, (0, 1), (np.array([[-0.5, 0.0]]), np.ones((1, 1))), np.zeros(1))))
    found = enumerate_regions(graph, -np.ones(2), np.ones(2))
    assert len(found[1].leaves) == 2
    value, x = max_abs(*found)
    assert value == pytest.approx(1.5) and np.allclose(x, [-1, 1])


def _fake_property(answer, x=None):
    from leo.queries.property import Answer, PropertyResult

    return lambda *a, **k: PropertyResult(Answer(answer), x, 0.0, how="fake")


def _mlp_drawn():
    for index in range(3, 400, 4):
        drawn = draw(Kind.MLP, 2, index)
        mod = module(drawn)
        graph = graph_of(drawn, mod)
        if graph.relus > 6 or graph.relus < 2 or not np.any(drawn.upper > drawn.lower):
            continue
        found = enumerate_regions(graph, drawn.lower, drawn.upper)
        if found is not None and len(found[1].leaves) > 1:
            return drawn, mod, found
    raise AssertionError("no small network")


def test_property_check_catches_wrong_answers(monkeypatch):
    """A stand-in for check_property that always says UNSAT is wrong on a reachable query,
    and one that says SAT with the box centre is wrong where the centre is not unsafe."""
    import leo.queries.property

    drawn, mod, found = _mlp_drawn()
    pts = drawn.lower + np.random.default_rng(0).random((200, drawn.lower.size)) * (drawn.upper - drawn.lower)

    def ask(fake, seed):
        monkeypatch.setattr(leo.queries.property, "check_property", fake)
        return property_query(np.random.default_rng(seed), *found, lambda x: torch_forward(mod, drawn.shape, x),
                              pts, None, 1.0, 0)

    outcomes = [ask(_fake_property("unsat"), s) for s in range(8)]
    assert {o.verdict for o in outcomes if o.truth} == {Verdict.WRONG}
    assert {o.verdict for o in outcomes if o.truth is False} == {Verdict.RIGHT}
    centre = (drawn.lower + drawn.upper) / 2
    outcomes = [ask(_fake_property("sat", centre), s) for s in range(8)]
    assert {o.verdict for o in outcomes if o.truth is False} == {Verdict.WRONG}
    assert Verdict.UNDECIDED in {ask(_fake_property("timeout"), 0).verdict}


def test_equivalence_check_catches_wrong_answers(monkeypatch):
    """compare_exact stand-ins: PROVEN is wrong exactly where the copy (the output shifted by
    0.25) differs by more than the drawn epsilon; REFUTED with a point where the copies
    agree is wrong."""
    import leo.queries.equivalence
    from leo.queries.equivalence import CheckResult, Verdict as Check

    drawn, mod, found = _mlp_drawn()
    graph = found[0].graph
    shifted = Graph(graph.inputs, (*graph.nodes, Node(Op.AFFINE, (len(graph.nodes),), (np.eye(graph.width(len(
        graph.nodes))),), np.full(graph.width(len(graph.nodes)), 0.25))))
    f = lambda x: torch_forward(mod, drawn.shape, x)  # noqa: E731
    pts = drawn.lower + np.random.default_rng(0).random((200, drawn.lower.size)) * (drawn.upper - drawn.lower)
    monkeypatch.setattr(leo.queries.equivalence, "compare_exact", lambda *a, **k: CheckResult(Check.PROVEN, 0.0, 0))
    outs = [equivalence_query(np.random.default_rng(s), graph, shifted, drawn.lower, drawn.upper, f, shifted,
                              (None, None), pts, 1.0, "test") for s in range(8)]
    assert {o.truth for o in outs} == {True, False}
    assert all(o.verdict is (Verdict.RIGHT if o.truth else Verdict.WRONG) for o in outs)
    assert all(o.detail["max_diff"] == pytest.approx(0.25) for o in outs)
    centre = (drawn.lower + drawn.upper) / 2
    monkeypatch.setattr(leo.queries.equivalence, "compare_exact",
                        lambda *a, **k: CheckResult(Check.REFUTED, 1.0, 0, centre, 0))
    out = equivalence_query(np.random.default_rng(0), graph, graph, drawn.lower, drawn.upper, f, graph,
                            (None, None), pts, 1.0, "test")
    assert out.truth is True and out.verdict is Verdict.WRONG
