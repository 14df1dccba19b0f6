"""Output properties against the exact output range (one LP per activation pattern,
from tests.conftest), so every expected answer is known independently of leo's MILP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leo.core.domain import Box, make_box
from leo.errors import LeoInputError
from leo.io.onnx_export import save_onnx
from leo.io.onnx_import import load_onnx
from leo.core.network import Layer, Network, mlp
from leo.queries.property import Answer, Inequality, OutputProperty, PropertyResult, check_property, describe, number, results_text
from leo.reduction.reduce import reduce
from leo.stability.analysis import StabilityOptions, analyse
from leo.io.vnnlib import read_vnnlib
from tests.conftest import exact_ranges, random_mlp

GAP = 0.05  # thresholds sit this far inside / outside the exact range


def _at_least(outputs: int, j: int, t: float) -> tuple[Inequality, ...]:
    """Y_j >= t, i.e. -Y_j <= -t."""
    a = np.zeros(outputs)
    a[j] = -1.0
    return (Inequality(a, -t),)


def _at_most(outputs: int, j: int, t: float) -> tuple[Inequality, ...]:
    a = np.zeros(outputs)
    a[j] = 1.0
    return (Inequality(a, t),)


def _range(net: Network, box: Box) -> tuple[np.ndarray, np.ndarray]:
    return exact_ranges(net, box.lower, box.upper, len(net.layers) - 1)


def _assert_checked(net: Network, box: Box, prop: OutputProperty, result) -> None:  # noqa: ANN001
    """A sat answer's point is in the box and really in the unsafe set."""
    assert result.sat is True
    x = result.counterexample
    assert box.contains(x, tol=0.0)[0]
    assert prop.excess(net(x[None, :]), result.disjunct)[0] <= 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_thresholds_around_the_exact_range(seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [2, 5, 4, 1])
    box = make_box(-1, 1, 2)
    lo, hi = _range(net, box)
    report = analyse(net, box)
    cases = [(_at_least(1, 0, hi[0] + GAP), False), (_at_least(1, 0, hi[0] - GAP), True),
             (_at_most(1, 0, lo[0] - GAP), False), (_at_most(1, 0, lo[0] + GAP), True)]
    for disjunct, expected in cases:
        prop = OutputProperty(1, (disjunct,))
        result = check_property(net, box, prop, 30.0, report=report, samples=0)  # the MILP must decide
        assert result.sat is expected, (disjunct, result)
        assert result.how == ("milp" if expected else "milp-infeasible")
        if expected:
            _assert_checked(net, box, prop, result)


def test_linear_combination_of_outputs() -> None:
    """Y_0 - Y_1 >= t, with the exact range of Y_0 - Y_1 from a network that outputs it."""
    rng = np.random.default_rng(7)
    net = random_mlp(rng, [3, 5, 4, 2])
    box = make_box(-1, 1, 3)
    last = net.layers[-1]
    diff = mlp([ly.weights[k] for k, ly in enumerate(net.layers[:-1])] + [last.weights[2][[0]] - last.weights[2][[1]]],
               [ly.bias for ly in net.layers[:-1]] + [last.bias[[0]] - last.bias[[1]]])
    _, hi = _range(diff, box)
    row = np.array([-1.0, 1.0])  # -(Y_0 - Y_1) <= -t
    for t, expected in ((hi[0] + GAP, False), (hi[0] - GAP, True)):
        prop = OutputProperty(2, ((Inequality(row, -t),),))
        result = check_property(net, box, prop, 30.0, samples=0)
        assert result.sat is expected
        if expected:
            _assert_checked(net, box, prop, result)


def test_disjunction_finds_the_satisfiable_disjunct() -> None:
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [2, 6, 2])
    box = make_box(-1, 1, 2)
    lo, hi = _range(net, box)
    prop = OutputProperty(2, (_at_least(2, 0, hi[0] + GAP), _at_most(2, 1, lo[1] - GAP), _at_least(2, 1, hi[1] - GAP)))
    result = check_property(net, box, prop, 30.0, samples=0)
    assert result.sat is True and result.disjunct == 2
    _assert_checked(net, box, prop, result)
    unsat = OutputProperty(2, prop.disjuncts[:2])
    assert check_property(net, box, unsat, 30.0, samples=0).sat is False


def test_final_relu_is_encoded() -> None:
    """With a final ReLU the output is relu(z): below zero is impossible even where z < 0."""
    rng = np.random.default_rng(4)
    plain = random_mlp(rng, [2, 6, 1])
    box = make_box(-1, 1, 2)
    lo, hi = _range(plain, box)
    assert lo[0] < -GAP and hi[0] > GAP  # z takes both signs, so the ReLU matters
    out = plain.layers[1]
    relu_net = Network(plain.input_dim, (plain.layers[0], Layer(dict(out.weights), out.bias, relu=True)))
    below = OutputProperty(1, (_at_most(1, 0, -GAP),))
    assert check_property(plain, box, below, 30.0, samples=0).sat is True
    assert check_property(relu_net, box, below, 30.0, samples=0).sat is False
    at_zero = OutputProperty(1, (_at_most(1, 0, 0.0),))
    result = check_property(relu_net, box, at_zero, 30.0, samples=0)
    _assert_checked(relu_net, box, at_zero, result)
    for t, expected in ((hi[0] + GAP, False), (hi[0] - GAP, True)):
        assert check_property(relu_net, box, OutputProperty(1, (_at_least(1, 0, t),)), 30.0,
                              samples=0).sat is expected


@pytest.mark.parametrize("seed", [7, 10, 11])  # seeds whose compression removes units
def test_compression_leaves_the_answer_unchanged(seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 5, 4, 1], bias_shift=0.8)  # many stable units to remove
    box = make_box(0, 1, 3)
    small = reduce(net, analyse(net, box)).network
    assert small.num_parameters < net.num_parameters
    lo, hi = _range(net, box)
    for t, expected in ((hi[0] + GAP, False), (hi[0] - GAP, True)):
        prop = OutputProperty(1, (_at_least(1, 0, t),))
        before = check_property(net, box, prop, 30.0, samples=0)
        after = check_property(small, box, prop, 30.0, samples=0)
        assert before.sat is after.sat is expected
        if expected:  # the compressed network's counterexample is one for the original too
            _assert_checked(net, box, prop, after)


def test_sampling_finds_easy_counterexamples_and_budget_zero_is_unknown() -> None:
    rng = np.random.default_rng(5)
    net = random_mlp(rng, [2, 4, 1])
    box = make_box(-1, 1, 2)
    lo, hi = _range(net, box)
    easy = OutputProperty(1, (_at_least(1, 0, (lo[0] + hi[0]) / 2),))
    result = check_property(net, box, easy, 30.0)
    assert result.how == "sampling"
    _assert_checked(net, box, easy, result)
    hard = OutputProperty(1, (_at_least(1, 0, hi[0] + GAP),))
    result = check_property(net, box, hard, 0.0, report=analyse(net, box), samples=0)
    assert result.sat is None and result.answer is Answer.TIMEOUT and "time limit" in result.reason


def test_output_count_must_match() -> None:
    net = random_mlp(np.random.default_rng(0), [2, 3, 2])
    with pytest.raises(LeoInputError, match="3 outputs but the network has 2"):
        check_property(net, make_box(0, 1, 2), OutputProperty(3, ((Inequality(np.ones(3), 0.0),),)))


def test_onnx_and_vnnlib_end_to_end(tmp_path: Path) -> None:
    """A query as VNN-COMP ships it: an .onnx network and a .vnnlib property."""
    rng = np.random.default_rng(21)
    net = random_mlp(rng, [2, 5, 4, 2])
    box = make_box(-0.5, 0.5, 2)
    save_onnx(net, tmp_path / "net.onnx", dtype=np.float64)
    loaded = load_onnx(tmp_path / "net.onnx")
    last = net.layers[-1]
    diff = mlp([ly.weights[k] for k, ly in enumerate(net.layers[:-1])] + [last.weights[2][[0]] - last.weights[2][[1]]],
               [ly.bias for ly in net.layers[:-1]] + [last.bias[[0]] - last.bias[[1]]])
    lo, hi = _range(diff, box)
    for t, expected in ((lo[0] - GAP, False), (lo[0] + GAP, True)):
        # unsafe: Y_0 - Y_1 <= t, written as (<= Y_0 (+ Y_1 t))
        text = "\n".join(["(declare-const X_0 Real)", "(declare-const X_1 Real)", "(declare-const Y_0 Real)",
                          "(declare-const Y_1 Real)", "(assert (>= X_0 -0.5))", "(assert (<= X_0 0.5))",
                          "(assert (>= 0.5 X_1))", "(assert (<= -0.5 X_1))", f"(assert (<= Y_0 (+ Y_1 {float(t)!r})))"])
        (tmp_path / "q.vnnlib").write_text(text)
        qbox, prop = read_vnnlib(tmp_path / "q.vnnlib", loaded.input_dim)
        np.testing.assert_array_equal(qbox.lower, box.lower)
        assert prop is not None
        result = check_property(loaded, qbox, prop, 30.0, samples=0)
        assert result.sat is expected
        if expected:
            _assert_checked(loaded, qbox, prop, result)


def test_a_report_of_another_network_is_refused() -> None:
    """The report passed in is used as is: a wrong one is refused, not trusted silently."""
    net = random_mlp(np.random.default_rng(1), [2, 3, 1])
    other = random_mlp(np.random.default_rng(2), [2, 3, 3, 1])
    box = make_box(0, 1, 2)
    with pytest.raises(LeoInputError, match="no entry for ReLU layer 2"):
        check_property(other, box, OutputProperty(1, (_at_least(1, 0, 100.0),)), 5.0,
                       report=analyse(net, box, StabilityOptions(samples=8)), samples=0)


def test_linear_hidden_layer_gets_bounds_without_a_report_entry() -> None:
    """A hidden layer without ReLU (two Gemms in a row in ONNX) has no stability entry."""
    rng = np.random.default_rng(13)
    w0, b0 = rng.normal(size=(3, 2)), rng.normal(size=3) * 0.5
    w1, b1 = rng.normal(size=(5, 3)) / np.sqrt(3), rng.normal(size=5) * 0.5
    w2, b2 = rng.normal(size=(1, 5)) / np.sqrt(5), rng.normal(size=1) * 0.5
    net = Network(2, (Layer({0: w0}, b0, relu=False), Layer({1: w1}, b1, relu=True), Layer({2: w2}, b2, relu=False)))
    folded = mlp([w1 @ w0, w2], [w1 @ b0 + b1, b2])  # the same function, for the exact range
    box = make_box(-1, 1, 2)
    _, hi = _range(folded, box)
    for t, expected in ((hi[0] + GAP, False), (hi[0] - GAP, True)):
        prop = OutputProperty(1, (_at_least(1, 0, t),))
        assert check_property(net, box, prop, 30.0, samples=0).sat is expected


def test_a_solver_point_that_fails_the_forward_pass_is_not_sat(monkeypatch: pytest.MonkeyPatch) -> None:
    import leo.queries.property as prop_module

    net = random_mlp(np.random.default_rng(5), [2, 4, 1])
    box = make_box(-1, 1, 2)
    _, hi = _range(net, box)
    monkeypatch.setattr(prop_module, "_solve", lambda f, t: ("feasible", box.lower.copy()))
    result = check_property(net, box, OutputProperty(1, (_at_least(1, 0, hi[0] + GAP),)), 30.0, samples=0)
    assert result.sat is None and result.how == "unverified"
    assert result.answer is Answer.UNKNOWN and "forward pass" in result.reason


# -- the answer type: timeout versus unknown, the original network as judge, compress-first -----

def test_a_solver_that_stops_without_proof_is_unknown_not_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """HiGHS stopping for another reason than the clock (numerical trouble) is UNKNOWN, exit 3."""
    import leo.queries.property as prop_module

    net = random_mlp(np.random.default_rng(5), [2, 4, 1])
    box = make_box(-1, 1, 2)
    monkeypatch.setattr(prop_module, "_solve", lambda f, t: ("solver status Unknown", None))
    result = check_property(net, box, OutputProperty(1, (_at_least(1, 0, 100.0),)), 30.0, samples=0)
    assert result.answer is Answer.UNKNOWN and result.sat is None
    assert "Unknown" in result.reason and int(result.answer.exit_code) == 3


def test_a_solve_that_hits_the_time_limit_is_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import leo.queries.property as prop_module

    net = random_mlp(np.random.default_rng(5), [2, 4, 1])
    box = make_box(-1, 1, 2)
    calls: list[float] = []

    def slow(f, t):  # noqa: ANN001, ANN202 - a solve that uses up its time
        calls.append(t)
        import time

        time.sleep(min(t, 0.2))
        return "timeout", None

    monkeypatch.setattr(prop_module, "_solve", slow)
    result = check_property(net, box, OutputProperty(1, (_at_least(1, 0, 100.0),)), 1.0, samples=0)
    assert result.answer is Answer.TIMEOUT and int(result.answer.exit_code) == 3
    assert len(calls) >= 2  # the disjunct that timed out got a second go with the time left


def test_a_point_that_fails_on_the_original_network_is_never_sat() -> None:
    """The MILP runs on ``network``; the counterexample must also hold on ``original``.
    Here ``original`` computes -y, so no point of the MILP on ``network`` can be confirmed."""
    rng = np.random.default_rng(8)
    net = random_mlp(rng, [2, 5, 1])
    box = make_box(-1, 1, 2)
    lo, hi = _range(net, box)
    last = net.layers[-1]
    negated = Network(net.input_dim, (net.layers[0], Layer({1: -last.weights[1]}, -last.bias, relu=False)))
    prop = OutputProperty(1, (_at_least(1, 0, hi[0] - GAP),))  # reachable on net; on -net only if -lo >= hi - GAP
    assert -lo[0] < hi[0] - GAP - 1e-3
    alone = check_property(net, box, prop, 30.0, samples=0)
    assert alone.answer is Answer.SAT
    judged = check_property(net, box, prop, 30.0, samples=0, original=negated)
    assert judged.answer is Answer.UNKNOWN and judged.how == "unverified" and judged.counterexample is None


@pytest.mark.parametrize("seed", [7, 10])
def test_compress_first_answers_like_the_full_network(seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 5, 4, 1], bias_shift=0.8)
    box = make_box(0, 1, 3)
    lo, hi = _range(net, box)
    for t, expected in ((hi[0] + GAP, Answer.UNSAT), (hi[0] - GAP, Answer.SAT)):
        prop = OutputProperty(1, (_at_least(1, 0, t),))
        result = check_property(net, box, prop, 30.0, samples=0, compress_first=True)
        assert result.answer is expected
        before, after = result.hidden_units
        assert before == sum(net.hidden) and after < before
        if expected is Answer.SAT:  # checked on, and its output from, the ORIGINAL network
            _assert_checked(net, box, prop, result)
            np.testing.assert_array_equal(result.output, net(result.counterexample[None, :])[0])


def test_gradient_search_finds_a_counterexample_sampling_misses() -> None:
    """A narrow unsafe set near the maximum: 4 random points miss it, the gradient search not."""
    rng = np.random.default_rng(2)
    net = random_mlp(rng, [6, 16, 16, 1])
    box = make_box(-1, 1, 6)
    hi = net(box.sample(50_000, np.random.default_rng(9)))[:, 0].max()
    prop = OutputProperty(1, (_at_least(1, 0, hi - 0.02),))
    result = check_property(net, box, prop, 30.0, samples=1)
    assert result.answer is Answer.SAT and result.how == "gradient search"
    _assert_checked(net, box, prop, result)


def test_progress_names_the_phases() -> None:
    net = random_mlp(np.random.default_rng(5), [2, 4, 1])
    box = make_box(-1, 1, 2)
    _, hi = _range(net, box)
    lines: list[str] = []
    prop = OutputProperty(1, (_at_least(1, 0, hi[0] + GAP),))
    result = check_property(net, box, prop, 30.0, progress=lines.append)
    assert result.answer is Answer.UNSAT and "branch and bound" in "\n".join(lines)
    lines.clear()  # without the branch and bound (which decides this one), the MILP path's phases
    result = check_property(net, box, prop, 30.0, progress=lines.append, branch=False)
    assert result.answer is Answer.UNSAT
    text = "\n".join(lines)
    for phase in ("sampling", "gradient search", "stability analysis", "MILP for disjunct 1 of 1"):
        assert phase in text, text


def test_results_text_round_trips_the_point_exactly() -> None:
    """VNN-COMP format; every value reads back as the same float, so the point re-checks."""
    x = np.array([-0.0, 1 / 3, -2.5e-7, 0.1 + 0.2])
    y = np.array([np.pi, -0.0])
    result = PropertyResult(Answer.SAT, x, 0.1, y, 0, "milp")
    lines = results_text(result).splitlines()
    assert lines[:2] == ["sat", "("] and lines[-1] == ")"
    pairs = [line.strip("()").split() for line in lines[2:-1]]
    assert [p[0] for p in pairs] == ["X_0", "X_1", "X_2", "X_3", "Y_0", "Y_1"]
    values = np.array([float(p[1]) for p in pairs])
    np.testing.assert_array_equal(values, np.concatenate([x, y]))  # bit for bit (and -0.0 == 0.0)
    assert "-0.0" not in results_text(result)
    for answer in (Answer.UNSAT, Answer.UNKNOWN, Answer.TIMEOUT):
        assert results_text(PropertyResult(answer, None, 0.1)) == answer.value + "\n"


def test_describe_is_readable_and_summarises_big_inputs() -> None:
    assert number(-0.0) == "0.0" and float(number(1 / 3)) == 1 / 3
    prop = OutputProperty(1, (_at_least(1, 0, 0.5),))
    small = PropertyResult(Answer.SAT, np.array([-0.0, 0.25]), 0.1, np.array([0.75]), 0, "milp")
    text = "\n".join(describe(small, prop, make_box(-1, 1, 2)))
    assert text.startswith("sat: the property is VIOLATED") and "X_0 = 0.0, X_1 = 0.25" in text
    assert "-0." not in text and "Y_0 = 0.75" in text and "inside by 0.25" in text
    big = PropertyResult(Answer.SAT, np.linspace(0, 1, 100), 0.1, np.array([0.75]), 0, "milp")
    text = "\n".join(describe(big, prop, make_box(0, 1, 100), saved=["r.txt"]))
    assert "X_50" not in text and "100 inputs" in text and "r.txt" in text
    for answer, first in ((Answer.UNSAT, "unsat: the property holds (proven)"),
                          (Answer.TIMEOUT, "timeout: not decided"), (Answer.UNKNOWN, "unknown: not decided")):
        assert describe(PropertyResult(answer, None, 0.1), prop, make_box(0, 1, 1))[0].startswith(first)
