"""VNN-LIB 2.0 reading (typed, shaped declarations, indexed names, several networks), the
errors that name file, line and construct, and the 2021 files through the new reader: the
same box and property as the 1.0 reader, and the competition's answers from ``check_query``."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from leo.errors import LeoInputError
from leo.io.vnnlib import V1_NETWORK, read_vnnlib, read_vnnlib_query
from leo.core.network import Network
from leo.queries.property import Answer
from leo.queries.check import check_query, query_networks
from tests.conftest import random_mlp, vnncomp_answer, vnncomp_dir

V2 = """(vnnlib-version <2.0>)
; two networks: f over a 2x2 input, g the same function as f with its own input
(declare-network f
    (declare-input  X float32 [2, 2] "input")
    (declare-output Y float32 [1,3]))
(declare-network g
    (equal-to f)
    (declare-input  X2 float32 [2,2])
    (declare-output Y2 float32 [1,3]))
(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] -1.0) (<= X[0,1] 1.0)))
(assert (and (>= X[1,0] 0.5) (<= X[1,0] 0.75) (>= X[1,1] 0.0) (<= X[1,1] 2e-1)))
(assert (and (>= X2[0,0] 0.0) (<= X2[0,0] 1.0) (>= X2[0,1] 0.0) (<= X2[0,1] 1.0)))
(assert (and (>= X2[1,0] 0.0) (<= X2[1,0] 1.0) (>= X2[1,1] 0.0) (<= X2[1,1] 1.0)))
(assert (or (<= Y[0,2] -3.0) (and (>= (- Y[0,0] Y2[0,1]) 0.5) (<= (* 2.0 Y2[0,2]) 1.0))))
"""


def _write(tmp_path: Path, text: str, name: str = "q.vnnlib") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_declarations_shapes_and_indexed_names(tmp_path) -> None:
    q = read_vnnlib_query(_write(tmp_path, V2))
    f, g = q.networks
    assert (f.name, g.name, g.equal_to, f.equal_to) == ("f", "g", "f", None)
    assert f.inputs[0].shape == (2, 2) and f.inputs[0].dtype == "float32" and f.inputs[0].onnx_name == "input"
    assert (q.input_dim, q.output_dim) == (8, 6)
    region = q.cases[0].region
    np.testing.assert_array_equal(region.lower, [0, -1, 0.5, 0, 0, 0, 0, 0])  # row-major: X[1,0] is entry 2
    np.testing.assert_array_equal(region.upper, [1, 1, 0.75, 0.2, 1, 1, 1, 1])
    assert len(q.cases) == 2 and len(q.groups()) == 1
    a0, a1 = q.cases[0].a, q.cases[1].a
    np.testing.assert_array_equal(a0, [[0, 0, 1, 0, 0, 0]])  # Y[0,2] <= -3
    np.testing.assert_array_equal(q.cases[0].c, [-3.0])
    np.testing.assert_array_equal(a1, [[-1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 2]])  # Y2 entries follow Y's
    np.testing.assert_array_equal(q.cases[1].c, [-0.5, 1.0])


def test_v1_and_v2_spellings_give_one_query(tmp_path) -> None:
    v1 = ("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"
          "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 -1))(assert (<= X_1 1))\n"
          "(assert (or (and (<= X_0 0.5) (>= Y_0 Y_1)) (and (>= X_0 0.25) (<= Y_1 -1))))\n")
    v2 = ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float64 [2]) (declare-output Y float64 [2]))\n"
          "(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] -1.0) (<= X[1] 1.0)))\n"
          "(assert (or (and (<= X[0] 0.5) (>= Y[0] Y[1])) (and (>= X[0] 0.25) (<= Y[1] -1.0))))\n")
    a, b = read_vnnlib_query(_write(tmp_path, v1, "a.vnnlib")), read_vnnlib_query(_write(tmp_path, v2, "b.vnnlib"))
    assert a.networks[0].name == V1_NETWORK and len(a.cases) == len(b.cases) == 2
    for ca, cb in zip(a.cases, b.cases):
        assert ca.region.key() == cb.region.key()
        np.testing.assert_array_equal(ca.a, cb.a)
        np.testing.assert_array_equal(ca.c, cb.c)
    np.testing.assert_array_equal(a.cases[0].region.upper, [0.5, 1.0])  # each case its own box
    np.testing.assert_array_equal(a.cases[1].region.lower, [0.25, -1.0])


def test_empty_disjunct_region_is_dropped(tmp_path) -> None:
    text = ("(declare-const X_0 Real)(declare-const Y_0 Real)\n(assert (>= X_0 0))(assert (<= X_0 1))\n"
            "(assert (or (and (>= X_0 2) (>= Y_0 0)) (and (<= X_0 0.5) (>= Y_0 1))))\n")
    q = read_vnnlib_query(_write(tmp_path, text))
    assert len(q.cases) == 1 and q.cases[0].region.upper[0] == 0.5


@pytest.mark.parametrize("body, match", [
    ("(assert (<= Q[0] 1.0))", r"q.vnnlib: VNN-LIB line 4: 'Q\[0\]' is not a declared variable"),
    ("(assert (<= X[2] 1.0))", r"line 4: 'X\[2\]': X has shape \[2\]"),
    ("(assert (<= X[0,0] 1.0))", r"line 4: 'X\[0,0\]': X has shape"),
    ("(assert (<= (* X[0] X[1]) 1.0))", r"line 4: a product of variables"),
    ("(assert (<= X[0] Y[0]))", r"line 4: a constraint mixing inputs and outputs"),
    ("(assert (!= X[0] 1.0))", r"line 4: \(!= \.\.\.\) is not supported"),
    ("(declare-const X_0 Real)", r"line 4: declare-const \(VNN-LIB 1.0\) cannot follow declare-network"),
    ("(declare-network f (declare-input Z float32 [2]) (declare-output W float32 [1]))",
     r"line 4: network f is declared twice"),
    ("(declare-network g (declare-input X float32 [2]) (declare-output W float32 [1]))",
     r"line 4: X is declared twice"),
    ("(declare-network g (isomorphic-to h) (declare-input Z float32 [2]) (declare-output W float32 [1]))",
     r"line 4: \(isomorphic-to h\): network h is not declared before"),
    ("(declare-network g (declare-input Z float32 [2]) (declare-hidden H float32 [3] \"h\") "
     "(declare-output W float32 [1]))", r"line 4: network g: constraints on hidden nodes \(declare-hidden\)"),
    ("(declare-network g (declare-input Z int8 [2]) (declare-output W float32 [1]))",
     r"line 4: Z has type int8; only floating-point"),
    ("(declare-network g (declare-input Z float32 [2]))", r"line 4: network g needs at least one declare-input"),
    ("(declare-network g (declare-input Z float32 2) (declare-output W float32 [1]))",
     r"line 4: Z: expected a shape such as \[1,5\]"),
])
def test_bad_v2_files_name_file_line_and_construct(tmp_path, body, match) -> None:
    head = "(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [2])\n (declare-output Y float32 [2]))\n"
    bounds = "(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0)))\n(assert (>= Y[0] 0.0))\n"
    with pytest.raises(LeoInputError, match=match):
        read_vnnlib_query(_write(tmp_path, head + body + "\n" + bounds))


def test_networks_must_match_their_declarations(tmp_path) -> None:
    q = read_vnnlib_query(_write(tmp_path, V2))
    f = random_mlp(np.random.default_rng(0), [4, 3, 3])
    assert len(query_networks(q, {"f": f})) == 2  # g is equal-to f: f's network serves both
    with pytest.raises(LeoInputError, match="no network given for 'f'"):
        query_networks(q, {"g": f})
    with pytest.raises(LeoInputError, match="network 'f' takes 5 inputs and gives 3 outputs, but the query "
                                            "declares 4 and 3"):
        query_networks(q, {"f": random_mlp(np.random.default_rng(0), [5, 3, 3])})
    shaped = f.with_metadata(input_shape="4,1")
    with pytest.raises(LeoInputError, match=r"takes inputs of shape \[4, 1\], but the query declares X with shape"):
        query_networks(q, {"f": shaped})


def test_gzipped_v2_file(tmp_path) -> None:
    packed = tmp_path / "q.vnnlib.gz"
    packed.write_bytes(gzip.compress(V2.encode()))
    assert len(read_vnnlib_query(packed).cases) == 2
    (tmp_path / "bad.vnnlib.gz").write_bytes(gzip.compress(V2.encode())[:20])
    with pytest.raises(LeoInputError, match="cannot read .* as a VNN-LIB text file"):
        read_vnnlib_query(tmp_path / "bad.vnnlib.gz")


def test_the_single_box_reader_refuses_several_networks(tmp_path) -> None:
    with pytest.raises(LeoInputError, match="declares 2 networks; read it with read_vnnlib_query"):
        read_vnnlib(_write(tmp_path, V2), 8)


def test_single_network_v2_file_through_the_old_reader(tmp_path) -> None:
    text = ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [1,2]) (declare-output Y float32 [2]))\n"
            "(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] -1.0) (<= X[0,1] 1.0)))\n(assert (>= Y[1] 0.5))\n")
    box, prop = read_vnnlib(_write(tmp_path, text), 2)
    np.testing.assert_array_equal(box.lower, [0, -1])
    assert prop is not None and prop.rows(0)[0].tolist() == [[0, -1]]


# -- the 2021 files --------------------------------------------------------------------------

def _files() -> list[Path]:
    data = vnncomp_dir()
    return [] if data is None else sorted(data.glob("*/*.vnnlib"))


@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
def test_2021_files_read_the_same_through_the_query_reader() -> None:
    files = _files()
    assert len(files) >= 5
    for path in files:
        q = read_vnnlib_query(path)
        box, prop = read_vnnlib(path, q.input_dim)
        groups = q.groups()
        assert len(groups) == 1 and groups[0].region.is_box, path
        np.testing.assert_array_equal(groups[0].region.lower, box.lower)
        np.testing.assert_array_equal(groups[0].region.upper, box.upper)
        assert prop is not None and len(groups[0].prop.disjuncts) == len(prop.disjuncts), path
        for i in range(len(prop.disjuncts)):
            for new, old in zip(groups[0].prop.rows(i), prop.rows(i)):
                np.testing.assert_array_equal(new, old)


def _ort(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    dtype = np.float64 if inp.type == "tensor(double)" else np.float32
    return np.asarray(sess.run(None, {inp.name: x.astype(dtype).reshape(shape)})[0], dtype=np.float64).ravel()


def _answer(bench: str, onnx: str, spec: str) -> None:
    from leo.io.load import load_network

    data = vnncomp_dir()
    model, prop_file = data / bench / onnx, data / bench / spec
    net: Network = load_network(model)
    q = read_vnnlib_query(prop_file)
    result = check_query(q, {V1_NETWORK: net}, time_limit=60.0)
    assert result.answer.value == vnncomp_answer(onnx, spec)
    if result.answer is Answer.SAT:  # the witness, by onnxruntime on the competition's file
        x = result.inputs["X"]
        assert q.cases[result.case].region.contains(x)[0]
        y = _ort(model, x)
        np.testing.assert_allclose(result.outputs["Y"], y, rtol=1e-4, atol=1e-5)
        assert q.cases[result.case].excess(y)[0] <= 1e-5


@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
def test_2021_answer_through_check_query() -> None:
    _answer("acasxu", "ACASXU_run2a_1_7_batch_2000.onnx", "prop_3.vnnlib")


@pytest.mark.slow
@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
@pytest.mark.parametrize("onnx, spec", [("mnist-net_256x2.onnx", "prop_1_0.05.vnnlib"),
                                        ("mnist-net_256x2.onnx", "prop_2_0.03.vnnlib")])
def test_2021_mnist_answers_through_check_query(onnx, spec) -> None:
    _answer("mnistfc", onnx, spec)


def _split(src: Path, dst: Path, i: int, rows: bool) -> Path:
    """``src`` with input ``i``'s bounds written as an 'or' of two halves (ACAS Xu property
    6's form); with ``rows``, also a linear constraint the box already implies (a polytope
    region that is its box), so the file takes the query path either way."""
    box = read_vnnlib(src, _inputs(src))[0]
    lo, hi = float(box.lower[i]), float(box.upper[i])
    mid = (lo + hi) / 2
    text = re.sub(rf"\(assert \((<=|>=) X_{i} [^()]*\)\)", "", src.read_text())
    text += f"(assert (or (and (>= X_{i} {lo!r}) (<= X_{i} {mid!r})) (and (>= X_{i} {mid!r}) (<= X_{i} {hi!r}))))\n"
    if rows:
        text += f"(assert (<= (+ X_{i} X_{i + 1}) {abs(lo) + abs(hi) + 10!r}))\n"
    dst.write_text(text)
    return dst


def _inputs(path: Path) -> int:
    return read_vnnlib_query(path).input_dim


@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
@pytest.mark.parametrize("rows", [False, True])
def test_2021_sat_instance_split_into_regions_keeps_its_answer(tmp_path, rows) -> None:
    from leo.io.load import load_network

    data = vnncomp_dir()
    onnx, spec = "ACASXU_run2a_1_7_batch_2000.onnx", "prop_3.vnnlib"
    split = _split(data / "acasxu" / spec, tmp_path / "split.vnnlib", 0, rows)
    q = read_vnnlib_query(split)
    assert len(q.groups()) == 2 and all(g.region.is_box is not rows for g in q.groups())
    result = check_query(q, {V1_NETWORK: load_network(data / "acasxu" / onnx)}, time_limit=60.0)
    assert result.answer.value == vnncomp_answer(onnx, spec)
    x = result.inputs["X"]
    box, prop = read_vnnlib(data / "acasxu" / spec, 5)
    assert box.contains(x)[0] and q.cases[result.case].region.contains(x)[0]
    assert prop.violating(_ort(data / "acasxu" / onnx, x)[None], 1e-5) is not None


@pytest.mark.slow
@pytest.mark.skipif(vnncomp_dir() is None, reason="VNN-COMP 2021 data not found (LEO_DATA)")
def test_2021_unsat_instance_split_into_regions_keeps_its_answer(tmp_path) -> None:
    from leo.io.load import load_network

    data = vnncomp_dir()
    onnx, spec = "mnist-net_256x2.onnx", "prop_2_0.03.vnnlib"
    q = read_vnnlib_query(_split(data / "mnistfc" / spec, tmp_path / "split.vnnlib", 300, False))
    assert len(q.groups()) == 2
    result = check_query(q, {V1_NETWORK: load_network(data / "mnistfc" / onnx)}, time_limit=120.0)
    assert result.answer.value == vnncomp_answer(onnx, spec)


def test_an_empty_input_set_is_unsat_not_bad_input(tmp_path) -> None:
    """Linear input constraints no input meets: no counterexample (the standard's reading)."""
    text = ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X real [2]) (declare-output Y float32 [2]))\n"
            "(assert (>= X[0] 0.0))\n(assert (<= X[0] 2.0))\n(assert (>= X[1] 0.0))\n(assert (<= X[1] 2.0))\n"
            "(assert (>= (+ (* 0.5 X[0]) (* 0.75 X[1])) 3.0))\n(assert (>= Y[0] 0.0))\n")
    q = read_vnnlib_query(_write(tmp_path, text))
    assert q.cases == () and q.networks[0].inputs[0].dtype == "real"
    net = random_mlp(np.random.default_rng(0), [2, 3, 2])
    assert check_query(q, {"N": net}, time_limit=10.0).answer is Answer.UNSAT
    reachable = text.replace("3.0))\n(assert (>= Y", "2.5))\n(assert (>= Y")  # the corner (2, 2) only
    q = read_vnnlib_query(_write(tmp_path, reachable, "corner.vnnlib"))
    assert len(q.cases) == 1 and not q.cases[0].region.is_box
    assert q.cases[0].region.contains(np.array([2.0, 2.0]))[0]


def test_an_integer_output_is_read_with_its_type_and_an_integer_input_is_not(tmp_path) -> None:
    q = tmp_path / "int.vnnlib"
    q.write_text("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [2]) "
                 "(declare-output Y int64 [1]))\n(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) "
                 "(<= X[1] 1.0)))\n(assert (>= Y[0] 3))\n")
    query = read_vnnlib_query(q)
    assert [(t.name, t.dtype, t.shape) for t in query.networks[0].outputs] == [("Y", "int64", (1,))]
    q.write_text(q.read_text().replace("declare-input X float32", "declare-input X int64"))
    with pytest.raises(LeoInputError, match=r"line 2: X has type int64; only floating-point"):
        read_vnnlib_query(q)
