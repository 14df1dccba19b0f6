"""leo-vnnlib, the VNN-LIB 2.0 solver interface: capabilities from the code, the result line and
assignment format, bad input, and answers checked against onnxruntime on a tiny network whose
exact maximum is known (a convex network: its maximum over a box is at a corner)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from leo.core.spec import Case, InputRegion, NetworkDecl, Query, TensorDecl
from leo.queries.property import Answer
from leo.cli.vnnlib import Variable, assignment_text, main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

HAVE_ENGINE = (importlib.util.find_spec("leo.io.vnnlib") is not None
               and importlib.util.find_spec("leo.queries.check") is not None)
engine = pytest.mark.skipif(not HAVE_ENGINE, reason="leo.io.vnnlib / leo.queries.check not there yet")

W1 = np.array([[1.0, -2.0], [-1.5, 0.5], [0.7, 0.9], [-0.3, -1.1]])
B1 = np.array([0.1, -0.2, 0.05, 0.3])
W2 = np.array([[0.8, 1.2, 0.5, 0.9]])  # non-negative: the output is convex in the input
B2 = np.array([-0.4])
BOX = (-1.0, 1.0)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _convex_onnx(path: Path) -> Path:
    """y = W2 relu(W1 x + B1) + B2 on x of shape [1, 2], float32."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((W1.T, "w1"), (B1, "b1"), (W2.T, "w2"), (B2, "b2"))]
    nodes = [helper.make_node("MatMul", ["X", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["z"]),
             helper.make_node("Relu", ["z"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["o"]),
             helper.make_node("Add", ["o", "b2"], ["Y"])]
    graph = helper.make_graph(nodes, "convex", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": np.asarray(x, dtype=np.float32).reshape(1, 2)})[0].reshape(-1)


def _corner_max(path: Path) -> float:
    corners = [np.array([a, b]) for a in BOX for b in BOX]
    return max(float(_ort(path, c)[0]) for c in corners)


def _query(path: Path, unsafe: str) -> Path:
    path.write_text("(vnnlib-version <2.0>)\n"
                    "(declare-network N (declare-input X float32 [1,2]) (declare-output Y float32 [1,1]))\n"
                    f"(assert (and (>= X[0,0] {BOX[0]}) (<= X[0,0] {BOX[1]}) (>= X[0,1] {BOX[0]}) "
                    f"(<= X[0,1] {BOX[1]})))\n(assert {unsafe})\n")
    return path


def _parse_assignment(lines: list[str]) -> dict[str, tuple[str, list[int], np.ndarray]]:
    """name -> (type, shape, values) from the assignment block."""
    out: dict[str, tuple[str, list[int], np.ndarray]] = {}
    i = 0
    while i < len(lines):
        name, dtype, dims = lines[i].split(" ")
        shape = [int(d) for d in dims.strip("[]").split(",")]
        n = int(np.prod(shape))
        out[name] = (dtype, shape, np.array([float(v) for v in lines[i + 1:i + 1 + n]]))
        i += 1 + n
    return out


# -- supports -------------------------------------------------------------------------------

def test_operators_are_the_onnx_readers_table(capsys):
    from leo.io.onnx_import import supported_ops

    code, out, err = _run(capsys, "supports", "--onnx-operators")
    names = sorted(supported_ops())
    assert code == 0 and out.splitlines() == names
    assert "Relu" in names and "Sigmoid" not in names


def test_version_pairs_and_booleans_have_the_standards_shape(capsys):
    from leo.io.onnx_import import supported_ops

    code, out, _ = _run(capsys, "supports", "--onnx-opset-versions")
    lo, hi = (int(v) for v in out.splitlines())
    assert code == 0 and 1 <= lo <= hi
    ranges = supported_ops().values()  # every op of the table is read in every opset claimed
    assert all(r.first <= lo and hi <= r.last for r in ranges)
    assert _run(capsys, "supports", "--serialise-assignments")[1] == "false\n"
    assert _run(capsys, "supports", "--optimised-disjunctive-reasoning")[1] == "false\n"
    assert _run(capsys, "supports", "--onnx-element-types")[1].split() == ["float16", "float32", "float64"]


@pytest.mark.parametrize("argv", [
    [], ["supports"], ["supports", "--onnx-operators", "--vnnlib-versions"], ["supports", "--no-such"],
    ["verify"], ["verify", "q.vnnlib", "--network", "N"], ["verify", "q.vnnlib", "--network", "=a.onnx"],
    ["verify", "q.vnnlib", "--network", "N=a.onnx", "--network", "N=b.onnx"],
    ["verify", "q.vnnlib", "--timeout", "-1"], ["verify", "q.vnnlib", "--timeout", "soon"],
    ["verify", "q.vnnlib", "--serialise-assignments", "out"], ["frobnicate"],
])
def test_bad_usage_is_one_line_and_exit_2(capsys, argv):
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and err.startswith("leo-vnnlib: error: ")


def test_name_and_version_through_the_installed_entry_point():
    p = subprocess.run([sys.executable, "-m", "leo.cli.vnnlib", "--name"], capture_output=True, text=True)
    assert (p.returncode, p.stdout) == (0, "leo\n")


# -- the result and the assignment ----------------------------------------------------------

def test_assignment_text_is_row_major_with_declared_types():
    text = assignment_text([Variable("X", "float32", (2, 2)), Variable("Y", "float64", (1,))],
                           {"X": np.array([[0.5, -0.0], [1e-20, 3.0]]), "Y": np.array([-1.25])})
    assert text == "X float32 [2,2]\n0.5\n0.0\n1e-20\n3.0\nY float64 [1]\n-1.25\n"
    with pytest.raises(RuntimeError):  # never a shorter block than the declarations ask for
        assignment_text([Variable("X", "float32", (2,))], {"X": np.array([1.0])})


def _stand_in(monkeypatch, query: Query, result: types.SimpleNamespace, seen: dict) -> None:
    """Replace the reader and the checker (other modules) by fakes that return fixed values."""
    reader = types.ModuleType("leo.io.vnnlib")
    reader.read_vnnlib_query = lambda path: query
    reader.V1_NETWORK = "N"
    checker = types.ModuleType("leo.queries.check")

    def check_query(q, networks, time_limit):
        seen.update(networks=dict(networks), time_limit=time_limit)
        return result
    checker.check_query = check_query
    monkeypatch.setitem(sys.modules, "leo.io.vnnlib", reader)
    monkeypatch.setitem(sys.modules, "leo.queries.check", checker)


def _two_networks() -> Query:
    x, y = TensorDecl("X", (1, 2), "float32"), TensorDecl("Y", (1, 1), "float32")
    x2, y2 = TensorDecl("X2", (1, 2), "float32"), TensorDecl("Y2", (1, 1), "float32")
    region = InputRegion(np.zeros(4), np.ones(4))
    return Query((NetworkDecl("N1", (x,), (y,)), NetworkDecl("N2", (x2,), (y2,), equal_to="N1")),
                 (Case(region, np.array([[1.0, -1.0]]), np.array([0.0])),))


def test_sat_prints_every_declared_variable_in_order_and_equal_to_shares_the_model(capsys, monkeypatch, tmp_path):
    model = _convex_onnx(tmp_path / "n.onnx")
    values = types.SimpleNamespace(
        answer=Answer.SAT, inputs={"X": np.array([[0.25, 0.5]]), "X2": np.array([[0.75, 1.0]])},
        outputs={"Y": np.array([[0.125]]), "Y2": np.array([[-0.0]])})
    seen: dict = {}
    _stand_in(monkeypatch, _two_networks(), values, seen)
    code, out, err = _run(capsys, "verify", "q.vnnlib", "--network", f"N1={model}", "--timeout", "30")
    assert code == 0
    assert out == ("sat\nX float32 [1,2]\n0.25\n0.5\nY float32 [1,1]\n0.125\n"
                   "X2 float32 [1,2]\n0.75\n1.0\nY2 float32 [1,1]\n0.0\n")
    assert seen["networks"]["N1"] is seen["networks"]["N2"]
    assert 0 < seen["time_limit"] < 30


@pytest.mark.parametrize("answer, line", [(Answer.UNSAT, "unsat"), (Answer.UNKNOWN, "unknown"),
                                          (Answer.TIMEOUT, "timed-out")])
def test_other_answers_print_one_line(capsys, monkeypatch, tmp_path, answer, line):
    model = _convex_onnx(tmp_path / "n.onnx")
    _stand_in(monkeypatch, _two_networks(), types.SimpleNamespace(answer=answer, inputs=None, outputs=None), {})
    assert _run(capsys, "verify", "q.vnnlib", "--network", f"N1={model}") == (0, line + "\n", "")


@pytest.mark.parametrize("networks, says", [
    ([], "no model file for network 'N1'"),
    (["N1={m}", "N2={m}"], "declares equal-to 'N1'"),
    (["N1={m}", "M={m}"], "'M', which q.vnnlib does not declare"),
])
def test_model_files_must_match_the_declarations(capsys, monkeypatch, tmp_path, networks, says):
    model = _convex_onnx(tmp_path / "n.onnx")
    _stand_in(monkeypatch, _two_networks(), types.SimpleNamespace(answer=Answer.UNSAT), {})
    args = [a for n in networks for a in ("--network", n.format(m=model))]
    code, out, err = _run(capsys, "verify", "q.vnnlib", *args)
    assert (code, out) == (2, "") and says in err and len(err.splitlines()) == 1


# -- real answers (the reader and the checker) ----------------------------------------------

@engine
def test_sat_counterexample_is_confirmed_by_onnxruntime(capsys, tmp_path):
    model = _convex_onnx(tmp_path / "n.onnx")
    top = _corner_max(model)
    code, out, err = _run(capsys, "verify", str(_query(tmp_path / "q.vnnlib", f"(>= Y[0,0] {top - 0.1})")),
                          "--network", f"N={model}", "--timeout", "60")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "sat", err
    got = _parse_assignment(lines[1:])
    assert list(got) == ["X", "Y"] and got["X"][:2] == ("float32", [1, 2]) and got["Y"][:2] == ("float32", [1, 1])
    x = got["X"][2]
    assert np.all((x >= BOX[0]) & (x <= BOX[1]))
    y = _ort(model, x)
    assert y[0] >= top - 0.1 - 1e-5
    assert abs(got["Y"][2][0] - y[0]) <= 1e-5


@engine
def test_unsat_above_the_exact_maximum(capsys, tmp_path):
    model = _convex_onnx(tmp_path / "n.onnx")
    top = _corner_max(model)  # exact: a convex function's maximum over a box is at a corner
    code, out, err = _run(capsys, "verify", str(_query(tmp_path / "q.vnnlib", f"(>= Y[0,0] {top + 0.1})")),
                          "--network", f"N={model}", "--timeout", "60")
    assert (code, out) == (0, "unsat\n"), err


@engine
def test_theories_claimed_are_the_standards_and_poly_is_not(capsys):
    code, out, _ = _run(capsys, "supports", "--arithmetic-complexity-theories")
    claimed = out.split()
    assert code == 0 and set(claimed) <= {"BND", "OUTC", "LIN", "POLY"}
    assert "BND" in claimed and "POLY" not in claimed
    code, out, _ = _run(capsys, "supports", "--vnnlib-versions")
    assert code == 0 and out.splitlines()[-1] == "2.0"


@engine
def test_declared_shape_that_the_model_does_not_have_is_bad_input(capsys, tmp_path):
    model = _convex_onnx(tmp_path / "n.onnx")
    spec = tmp_path / "q.vnnlib"
    spec.write_text("(vnnlib-version <2.0>)\n"
                    "(declare-network N (declare-input X float32 [1,3]) (declare-output Y float32 [1,1]))\n"
                    "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0) "
                    "(>= X[0,2] 0.0) (<= X[0,2] 1.0)))\n(assert (>= Y[0,0] 100.0))\n")
    code, out, err = _run(capsys, "verify", str(spec), "--network", f"N={model}")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "3" in err


# -- integer outputs that are constants, and a transpose of a literal batch of one ---------------

def _graph_onnx(path: Path, nodes: list, in_dims: list[int], out_type: int, out_dims: list[int]) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, in_dims)],
                              [helper.make_tensor_value_info("Y", out_type, out_dims)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _typed_query(path: Path, in_dims: list[int], out_type: str, out_dims: list[int], unsafe: str) -> Path:
    names = [f"X[{','.join(map(str, i))}]" for i in np.ndindex(*in_dims)]
    box = " ".join(f"(>= {n} 0.0) (<= {n} 1.0)" for n in names)
    path.write_text("(vnnlib-version <2.0>)\n"
                    f"(declare-network N (declare-input X float32 [{','.join(map(str, in_dims))}]) "
                    f"(declare-output Y {out_type} [{','.join(map(str, out_dims))}]))\n"
                    f"(assert (and {box}))\n(assert {unsafe})\n")
    return path


def _shape_onnx(path: Path) -> Path:
    from onnx import TensorProto, helper

    return _graph_onnx(path, [helper.make_node("Shape", ["X"], ["Y"])], [2, 3], TensorProto.INT64, [2])


@engine
@pytest.mark.parametrize("index", [0, 1])
def test_an_int64_shape_output_is_answered_exactly(capsys, tmp_path, index):
    model = _shape_onnx(tmp_path / "s.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    value = int(session.run(None, {"X": np.zeros((2, 3), dtype=np.float32)})[0][index])
    above = _typed_query(tmp_path / "u.vnnlib", [2, 3], "int64", [2], f"(>= Y[{index}] {value + 1})")
    assert _run(capsys, "verify", str(above), "--network", f"N={model}")[:2] == (0, "unsat\n")
    at = _typed_query(tmp_path / "s.vnnlib", [2, 3], "int64", [2], f"(>= Y[{index}] {value})")
    code, out, err = _run(capsys, "verify", str(at), "--network", f"N={model}")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "sat", err
    got = _parse_assignment(lines[1:])
    assert got["Y"][:2] == ("int64", [2])
    truth = session.run(None, {"X": got["X"][2].reshape(2, 3).astype(np.float32)})[0]
    assert lines[-2:] == [str(int(v)) for v in truth]


@engine
def test_an_int64_output_that_depends_on_the_input_is_bad_input(capsys, tmp_path):
    from onnx import TensorProto, helper

    model = _graph_onnx(tmp_path / "c.onnx", [helper.make_node("Cast", ["X"], ["Y"], to=TensorProto.INT64)], [2],
                        TensorProto.INT64, [2])
    code, out, err = _run(capsys, "verify", str(_typed_query(tmp_path / "q.vnnlib", [2], "int64", [2], "(>= Y[0] 1)")),
                          "--network", f"N={model}")
    assert (code, out) == (2, "") and "casts the network's data to int64" in err and "not piecewise linear" in err


@engine
@pytest.mark.parametrize("offset, answer", [(0.1, "unsat"), (-0.1, "sat")])
def test_a_transpose_of_a_literal_batch_of_one_is_answered(capsys, tmp_path, offset, answer):
    from onnx import TensorProto, helper

    model = _graph_onnx(tmp_path / "t.onnx", [helper.make_node("Transpose", ["X"], ["Y"], perm=[1, 0])], [1, 2],
                        TensorProto.FLOAT, [2, 1])
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    top = max(float(session.run(None, {"X": np.array([[a, b]], dtype=np.float32)})[0][1, 0])
              for a in (0.0, 1.0) for b in (0.0, 1.0))  # Y[1,0] is linear: its maximum is at a corner
    query = _typed_query(tmp_path / "q.vnnlib", [1, 2], "float32", [2, 1], f"(>= Y[1,0] {top + offset})")
    code, out, err = _run(capsys, "verify", str(query), "--network", f"N={model}")
    assert code == 0 and out.splitlines()[0] == answer, err
    if answer == "sat":
        got = _parse_assignment(out.splitlines()[1:])
        y = session.run(None, {"X": got["X"][2].reshape(1, 2).astype(np.float32)})[0]
        np.testing.assert_allclose(got["Y"][2], y.ravel(), atol=1e-6)
        assert y[1, 0] >= top + offset - 1e-6


@engine
def test_an_int64_declaration_of_a_float_output_that_depends_on_the_input_is_bad_input(capsys, tmp_path):
    model = _convex_onnx(tmp_path / "n.onnx")
    query = _typed_query(tmp_path / "q.vnnlib", [1, 2], "int64", [1, 1], "(>= Y[0,0] 1)")
    code, out, err = _run(capsys, "verify", str(query), "--network", f"N={model}")
    assert (code, out) == (2, "") and "output Y has type int64, but the network's output depends on its input" in err
