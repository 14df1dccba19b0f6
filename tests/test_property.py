"""Output properties against the exact output range (one LP per activation pattern,
from tests.conftest), so every expected answer is known independently of leo's MILP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leo.domain import Box, make_box
from leo.errors import LeoInputError
from leo.io.onnx_export import save_onnx
from leo.io.onnx_import import load_onnx
from leo.network import Layer, Network, mlp
from leo.property import Inequality, OutputProperty, check_property
from leo.reduce import reduce
from leo.stability import StabilityOptions, analyse
from leo.vnnlib import read_vnnlib
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
    assert check_property(net, box, hard, 0.0, report=analyse(net, box), samples=0).sat is None


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
    import leo.property as prop_module

    net = random_mlp(np.random.default_rng(5), [2, 4, 1])
    box = make_box(-1, 1, 2)
    _, hi = _range(net, box)
    monkeypatch.setattr(prop_module, "_solve", lambda f, t: ("feasible", box.lower.copy()))
    result = check_property(net, box, OutputProperty(1, (_at_least(1, 0, hi[0] + GAP),)), 30.0, samples=0)
    assert result.sat is None and result.how == "unverified"
