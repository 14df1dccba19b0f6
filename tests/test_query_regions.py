"""Queries with several input regions and linear input constraints, answered against exact
truth: on a one-hidden-layer network the output is affine on each activation pattern, so
the largest value of ``d . y`` over a polytope is the largest of one LP per pattern
(``scipy.optimize.linprog``, sharing no code with leo). Thresholds sit GAP inside or
outside that maximum, so each answer is known; a sat witness is checked with onnxruntime
and against the file's own region."""

from __future__ import annotations

import functools
import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

from leo.cli.main import main
from leo.core.spec import Inequality, InputRegion, OutputProperty
from leo.core.domain import Box
from leo.io.onnx_export import save_onnx
from leo.io.vnnlib import read_vnnlib_query
from leo.core.network import Layer, Network
from leo.queries.property import Answer, check_property
from leo.queries.check import check_query
from tests.conftest import random_mlp

GAP = 0.05
HEAD = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
D = np.array([1.0, -1.0])  # the unsafe set: Y_0 - Y_1 >= t
#: ACAS Xu property 6's form: an 'or' of two input boxes
BOXES = [((-1.0, -0.5), (-1.0, 1.0)), ((0.5, 1.0), (0.0, 1.0))]
POLY = (np.array([[1.0, 1.0], [-1.0, 1.0]]), np.array([0.3, 0.6]))  # X_0 + X_1 <= 0.3, X_1 - X_0 <= 0.6


def exact_max(net: Network, lower: np.ndarray, upper: np.ndarray, a_in: np.ndarray | None = None,
              b_in: np.ndarray | None = None) -> float:
    """max of D . net(x) over the box and ``a_in x <= b_in``: one LP per activation pattern."""
    (w1, b1), (w2, b2) = [(ly.weights[k], ly.bias) for k, ly in enumerate(net.layers)]
    best = -np.inf
    for bits in itertools.product([0.0, 1.0], repeat=len(b1)):
        on = np.array(bits)
        sign = np.where(on > 0, -1.0, 1.0)  # active: -(w1 x + b1) <= 0; inactive: w1 x + b1 <= 0
        rows, rhs = [sign[:, None] * w1], [-sign * b1]
        if a_in is not None:
            rows.append(a_in)
            rhs.append(b_in)
        gain = (D @ w2) * on
        res = linprog(-(gain @ w1), A_ub=np.vstack(rows), b_ub=np.concatenate(rhs),
                      bounds=list(zip(lower, upper)), method="highs")
        if res.status == 0:
            best = max(best, -res.fun + gain @ b1 + D @ b2)
    return float(best)


def _net(seed: int) -> Network:
    return random_mlp(np.random.default_rng(seed), [2, 7, 2])


def _or_file(path: Path, t: float) -> Path:
    boxes = " ".join("(and " + " ".join(f"(>= X_{i} {lo}) (<= X_{i} {hi})" for i, (lo, hi) in enumerate(b)) + ")"
                     for b in BOXES)
    path.write_text(HEAD + f"(assert (or {boxes}))\n(assert (>= (- Y_0 Y_1) {t!r}))\n")
    return path


def _poly_file(path: Path, t: float) -> Path:
    box = "".join(f"(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(2))
    path.write_text(HEAD + box + "(assert (<= (+ X_0 X_1) 0.3))\n(assert (<= (- X_1 X_0) 0.6))\n"
                    f"(assert (>= (- Y_0 Y_1) {t!r}))\n")
    return path


def _ort(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: x.reshape(1, -1)})[0], dtype=np.float64).ravel()


def _witness(results: Path) -> np.ndarray:
    lines = results.read_text().split("\n")
    return np.array([float(line.strip("()").split()[1]) for line in lines if line.startswith("(X_")])


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@functools.cache
def _poly_case() -> tuple[Network, float]:
    """A network whose maximum over the polytope lies clearly below that over its box, so
    that an answer which ignores the linear rows is wrong; and that maximum."""
    net, box = _net(3), (np.full(2, -1.0), np.full(2, 1.0))
    inside = exact_max(net, *box, *POLY)
    assert exact_max(net, *box) > inside + 4 * GAP, "the polytope must matter for this network"
    return net, inside


@pytest.mark.parametrize("sat", [True, False])
def test_or_of_input_boxes_matches_exact_truth(capsys, tmp_path, sat) -> None:
    net = _net(3)
    best = max(exact_max(net, np.array([b[0] for b in box]), np.array([b[1] for b in box])) for box in BOXES)
    spec = _or_file(tmp_path / "p6.vnnlib", best - GAP if sat else best + GAP)
    model, results = tmp_path / "n.onnx", tmp_path / "r.txt"
    save_onnx(net, model, dtype=np.float64)
    code, out, _ = _run(capsys, "property", model, spec, "--results", results, "--time-limit", 30, "-q")
    assert (code, out.split(":")[0]) == ((1, "sat") if sat else (0, "unsat")), out
    if sat:
        x = _witness(results)
        assert any(all(lo <= v <= hi for v, (lo, hi) in zip(x, box)) for box in BOXES), x
        assert D @ _ort(model, x) >= best - GAP - 1e-6


@pytest.mark.parametrize("sat", [True, False])
def test_linear_input_constraint_matches_exact_truth(capsys, tmp_path, sat) -> None:
    net, inside = _poly_case()
    spec = _poly_file(tmp_path / "poly.vnnlib", inside - GAP if sat else inside + GAP)
    model, results = tmp_path / "n.onnx", tmp_path / "r.txt"
    save_onnx(net, model, dtype=np.float64)
    code, out, _ = _run(capsys, "property", model, spec, "--results", results, "--time-limit", 30, "-q")
    assert (code, out.split(":")[0]) == ((1, "sat") if sat else (0, "unsat")), out
    if sat:
        x = _witness(results)
        assert np.all(POLY[0] @ x <= POLY[1] + 1e-9) and np.all(np.abs(x) <= 1.0), x
        assert D @ _ort(model, x) >= inside - GAP - 1e-6


def test_query_regions_and_bounding_box(tmp_path) -> None:
    query = read_vnnlib_query(_or_file(tmp_path / "p6.vnnlib", 0.0))
    assert len(query.cases) == 2 and len(query.groups()) == 2
    for case, box in zip(query.cases, BOXES):
        np.testing.assert_array_equal(case.region.lower, [b[0] for b in box])
        assert case.region.is_box
    poly = read_vnnlib_query(_poly_file(tmp_path / "poly.vnnlib", 0.0)).cases[0].region
    assert not poly.is_box
    pts = np.random.default_rng(0).uniform(-1, 1, size=(4000, 2))
    inside = np.all(pts @ POLY[0].T <= POLY[1], axis=1)
    np.testing.assert_array_equal(poly.contains(pts), inside)
    assert np.all(poly.box().contains(pts[inside]))  # the bounding box holds the polytope
    assert poly.upper[0] == 1.0 and 0.45 <= poly.upper[1] <= 0.45 + 1e-5  # max X_1 = 0.45, at X_0 = -0.15, by LP


def test_gzipped_file_reads_like_the_plain_one(capsys, tmp_path) -> None:
    plain = _or_file(tmp_path / "p6.vnnlib", 0.1)
    packed = tmp_path / "p6.vnnlib.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_vnnlib_query(plain), read_vnnlib_query(packed)
    assert len(a.cases) == len(b.cases) == 2
    for ca, cb in zip(a.cases, b.cases):
        assert ca.region.key() == cb.region.key()
        np.testing.assert_array_equal(ca.a, cb.a)
        np.testing.assert_array_equal(ca.c, cb.c)
    model = tmp_path / "n.onnx"
    save_onnx(_net(3), model, dtype=np.float64)
    code, out, _ = _run(capsys, "property", model, packed, "--time-limit", 30, "-q")
    assert code in (0, 1) and out.split(":")[0] in ("sat", "unsat")


def _one_layer(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> Network:
    return Network(w1.shape[1], (Layer({0: w1}, b1, True), Layer({1: w2}, b2, False)))


@pytest.mark.parametrize("sat", [True, False])
def test_two_networks_with_tied_inputs_match_exact_truth(tmp_path, sat) -> None:
    """f - g over a box, through a VNN-LIB 2.0 file with two networks and tied inputs;
    the truth is the exact maximum over one hand-built network computing (f, g)."""
    rng = np.random.default_rng(7)
    f, g = random_mlp(rng, [2, 4, 1]), random_mlp(rng, [2, 4, 1])
    (fw1, fb1), (fw2, fb2) = [(ly.weights[k], ly.bias) for k, ly in enumerate(f.layers)]
    (gw1, gb1), (gw2, gb2) = [(ly.weights[k], ly.bias) for k, ly in enumerate(g.layers)]
    both = _one_layer(np.vstack([fw1, gw1]), np.concatenate([fb1, gb1]),
                      np.block([[fw2, np.zeros((1, 4))], [np.zeros((1, 4)), gw2]]), np.concatenate([fb2, gb2]))
    lower, upper = np.array([-1.0, 0.0]), np.array([1.0, 1.0])
    best = exact_max(both, lower, upper)
    t = best - GAP if sat else best + GAP
    text = ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [1,2]) (declare-output Y float32 [1,1]))\n"
            "(declare-network g (declare-input X2 float32 [1,2]) (declare-output Y2 float32 [1,1]))\n"
            "(assert (and (>= X[0,0] -1.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))\n"
            "(assert (and (== X2[0,0] X[0,0]) (== X2[0,1] X[0,1])))\n"
            f"(assert (>= (- Y[0,0] Y2[0,0]) {t!r}))\n")
    spec = tmp_path / "fg.vnnlib"
    spec.write_text(text)
    query = read_vnnlib_query(spec)
    result = check_query(query, {"f": f, "g": g}, time_limit=30.0)
    assert result.answer is (Answer.SAT if sat else Answer.UNSAT), result
    if sat:
        x, x2 = result.inputs["X"].ravel(), result.inputs["X2"].ravel()
        np.testing.assert_array_equal(x, x2)
        assert np.all((lower <= x) & (x <= upper))
        assert f(x[None])[0, 0] - g(x2[None])[0, 0] >= t - 1e-6
        assert result.outputs["Y"].shape == (1, 1)


def test_polytope_region_rejects_points_outside_its_rows() -> None:
    region = InputRegion(np.full(2, -1.0), np.full(2, 1.0), *POLY)
    assert region.contains(np.array([0.0, 0.0]))[0]
    assert not region.contains(np.array([0.2, 0.2]))[0]  # in the box, outside X_0 + X_1 <= 0.3


BAD = {
    "unbounded": HEAD + "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (<= (+ X_0 X_1) 1))\n(assert (>= Y_0 0))\n",
    "undeclared": ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [2]) (declare-output Y float32 [2]))\n"
                   "(assert (<= Q[0] 1.0))\n"),
    "twice": ("(declare-network f (declare-input X float32 [2]) (declare-output Y float32 [2]))\n"
              "(declare-network f (declare-input X2 float32 [2]) (declare-output Y2 float32 [2]))\n"),
    "shape": ("(declare-network f (declare-input X float32 [1,3]) (declare-output Y float32 [2]))\n"
              "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)"
              " (>= X[0,2] 0.0) (<= X[0,2] 1.0)))\n(assert (or (>= Y[0] 1.0) (and (<= (+ X[0,0] X[0,1]) 1.0) (>= Y[1] 0.0))))\n"),
    "two networks": ("(declare-network f (declare-input X float32 [2]) (declare-output Y float32 [2]))\n"
                     "(declare-network g (isomorphic-to f) (declare-input X2 float32 [2]) (declare-output Y2 float32 [2]))\n"
                     "(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0)))\n"
                     "(assert (and (== X2[0] X[0]) (== X2[1] X[1])))\n(assert (>= (- Y[0] Y2[0]) 0.1))\n"),
    "not-equal": HEAD + "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (!= X_1 0))\n",
}


@pytest.mark.parametrize("kind, message", [
    ("unbounded", "line 7: the linear input constraints leave X_1 unbounded"),
    ("undeclared", "line 3: 'Q[0]' is not a declared variable"),
    ("twice", "line 2: network f is declared twice"),
    ("shape", "takes 2 inputs"),
    ("two networks", "declares 2 networks; leo property checks one"),
    ("not-equal", "line 7: (!= ...) is not supported"),
])
def test_bad_queries_exit_2_with_one_line_and_no_results(capsys, tmp_path, kind, message) -> None:
    spec = tmp_path / "bad.vnnlib"
    spec.write_text(BAD[kind])
    model, results = tmp_path / "n.onnx", tmp_path / "r.txt"
    save_onnx(_net(3), model, dtype=np.float64)
    code, out, err = _run(capsys, "property", model, spec, "--results", results, "-q")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, err
    assert str(spec) in err or kind in ("shape", "two networks")
    assert not results.exists()


@pytest.mark.parametrize("sat", [True, False])
def test_milp_alone_carries_the_polytope_rows(sat) -> None:
    """``samples=0``: no sampling, attacks, walks or input splitting, so the MILP with the
    polytope's rows on its input columns decides alone."""
    net, inside = _poly_case()
    t = inside - GAP if sat else inside + GAP
    prop = OutputProperty(2, ((Inequality(-D, -t),),))  # -(Y_0 - Y_1) <= -t
    result = check_property(net, Box(np.full(2, -1.0), np.full(2, 1.0)), prop, time_limit=30.0, samples=0,
                            polytope=POLY)
    assert result.answer is (Answer.SAT if sat else Answer.UNSAT) and result.how.startswith("milp"), result
    if sat:
        x = result.counterexample
        assert np.all(POLY[0] @ x <= POLY[1] + 1e-9) and D @ net(x[None])[0] >= t - 1e-6


def test_box_query_answers_like_check_property() -> None:
    """A box and a property as the one query type: the exact answer, and a counterexample
    that is the network's own."""
    from leo.core.spec import box_query

    net, inside = _poly_case()
    box = Box(np.full(2, -1.0), np.full(2, 1.0))
    for t, answer in ((inside - GAP, Answer.SAT), (exact_max(net, box.lower, box.upper) + GAP, Answer.UNSAT)):
        prop = OutputProperty(2, ((Inequality(-D, -t),),))
        result = check_query(box_query(box, prop), {"N": net}, time_limit=30.0)
        assert result.answer is answer, result
        if answer is Answer.SAT:
            np.testing.assert_array_equal(result.outputs["Y"], net(result.inputs["X"][None])[0])


@pytest.mark.parametrize("sat", [True, False])
def test_equal_to_network_on_its_own_inputs_matches_exact_truth(tmp_path, sat) -> None:
    """``(equal-to f)`` with separate, untied inputs: f(x) - f(x2) over two boxes, one network
    given for both names; the truth is one hand-built network computing (f(x), f(x2))."""
    f = random_mlp(np.random.default_rng(11), [1, 5, 1])
    (w1, b1), (w2, b2) = [(ly.weights[k], ly.bias) for k, ly in enumerate(f.layers)]
    z = np.zeros_like(w1)
    both = _one_layer(np.block([[w1, z], [z, w1]]), np.concatenate([b1, b1]),
                      np.block([[w2, np.zeros_like(w2)], [np.zeros_like(w2), w2]]), np.concatenate([b2, b2]))
    lower, upper = np.array([0.0, 2.0]), np.array([1.0, 3.0])
    best = exact_max(both, lower, upper)
    t = best - GAP if sat else best + GAP
    spec = tmp_path / "eq.vnnlib"
    spec.write_text("(vnnlib-version <2.0>)\n(declare-network N1 (declare-input X float32 [1]) (declare-output Y float32 [1]))\n"
                    "(declare-network N2 (equal-to N1) (declare-input X2 float32 [1]) (declare-output Y2 float32 [1]))\n"
                    "(assert (>= X[0] 0.0))\n(assert (<= X[0] 1.0))\n(assert (>= X2[0] 2.0))\n(assert (<= X2[0] 3.0))\n"
                    f"(assert (>= (- Y[0] Y2[0]) {t!r}))\n")
    result = check_query(read_vnnlib_query(spec), {"N1": f}, time_limit=30.0)
    assert result.answer is (Answer.SAT if sat else Answer.UNSAT), result
    if sat:
        x, x2 = result.inputs["X"], result.inputs["X2"]
        assert 0.0 <= x[0] <= 1.0 and 2.0 <= x2[0] <= 3.0
        assert f(x[None])[0, 0] - f(x2[None])[0, 0] >= t - 1e-6
