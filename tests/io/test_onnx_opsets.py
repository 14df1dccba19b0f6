"""Every opset form of every op the ONNX reader reads, against onnxruntime.

Each case builds one op family's graph with onnx's helpers in one opset (every version
the table lists), checks it with onnx's checker, runs it, and compares leo's network
on the same random inputs. Where onnxruntime does not run an opset (too old or too
new for it), onnx's own reference evaluator (numpy) is the truth instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx.defs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from leo.errors import LeoInputError
from leo.io.onnx.table import REVIEWED_OPSET, supported_ops, table, versions
from leo.io.onnx_import import network_from_onnx

F32 = TensorProto.FLOAT
#: leo computes in float64, onnxruntime in float32.
ATOL = 1e-4


def _init(name: str, a: object) -> onnx.TensorProto:
    arr = np.asarray(a)
    return numpy_helper.from_array(arr.astype(np.float32) if arr.dtype.kind == "f" else arr, name)


def model(nodes: list, inits: list, shape: list, opset: int, batched: bool = True) -> onnx.ModelProto:
    dims = ["N", *shape] if batched else list(shape)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, dims)],
                              [helper.make_tensor_value_info("y", F32, None)], initializer=inits)
    opsets = [helper.make_opsetid("", opset)]
    m = helper.make_model(graph, opset_imports=opsets, ir_version=8 if opset <= 17 else
                          helper.find_min_ir_version_for(opsets))
    m = onnx.shape_inference.infer_shapes(m)  # fills the output's shape, which the model checker requires
    if m.graph.output[0].type.tensor_type.HasField("shape"):
        onnx.checker.check_model(m)
    else:  # no shape inference for this op in this opset: check each node against its schema
        ctx = onnx.checker.C.CheckerContext()
        ctx.ir_version, ctx.opset_imports = m.ir_version, {"": opset}
        for node in m.graph.node:
            onnx.checker.check_node(node, ctx)
    return m


#: The truth where neither onnxruntime nor onnx's reference evaluator runs an opset's form:
#: the operator's documented semantics in numpy, (opset, x) -> y.
NUMPY: dict[str, Callable[[int, np.ndarray], np.ndarray]] = {}


def truth(m: onnx.ModelProto, x: np.ndarray, op: str = "") -> tuple[np.ndarray, str]:
    """The model's output on ``x`` by onnxruntime, else by onnx's reference evaluator, else by
    the op's numpy semantics (``NUMPY``); and which one ran it."""
    try:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0], "onnxruntime"
    except Exception:  # noqa: BLE001 - onnxruntime refuses opsets it does not implement
        pass
    try:
        return np.asarray(ReferenceEvaluator(m).run(None, {"x": x})[0]), "reference"
    except Exception:  # noqa: BLE001 - nor does the reference evaluator implement every version
        if op not in NUMPY:
            raise
        return NUMPY[op](m.opset_import[0].version, x.astype(np.float64)), "numpy"


#: Which engine gave the truth per case (for the record; see the module docstring).
ENGINES: dict[str, str] = {}


def check(m: onnx.ModelProto, shape: tuple[int, ...], batched: bool = True, seed: int = 0, op: str = "") -> str:
    """leo's reading of ``m`` equals the truth on random inputs; returns which engine was the truth."""
    rng = np.random.default_rng(seed)
    net = network_from_onnx(m)
    samples = rng.uniform(-1, 1, size=(5, *shape)).astype(np.float32)
    if batched:
        want, engine = truth(m, samples, op)
        want = want.reshape(len(samples), -1)
    else:
        runs = [truth(m, s, op) for s in samples]
        want, engine = np.stack([r[0].ravel() for r in runs]), runs[0][1]
    got = net(samples.reshape(len(samples), -1).astype(np.float64))
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-4)
    return engine


def _n(op: str, inputs: list[str], outputs: list[str] | None = None, **attrs: object) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs or ["y"], name=f"{op.lower()}_node", **attrs)


# -- one builder per op family: (opset) -> (nodes, initializers, per-sample input shape) -----------

Case = tuple[list, list, list]
RNG = np.random.default_rng(7)
W23 = RNG.normal(size=(2, 3))
C2 = np.array([0.5, -2.0])


def _gemm(v: int) -> Case:
    attrs = {"broadcast": 1} if v < 7 else {}
    return [_n("Gemm", ["x", "W", "b"], transB=1, alpha=0.5, beta=2.0, **attrs)], \
        [_init("W", W23), _init("b", C2)], [3]


NUMPY["Gemm"] = lambda v, x: 0.5 * x @ W23.T.astype(np.float32) + 2.0 * C2


def _matmul(v: int) -> Case:  # per-sample (2, 3) @ (3, 2): the weight on the last axis
    return [_n("MatMul", ["x", "W"])], [_init("W", W23.T)], [2, 3]


def _elementwise(op: str) -> Callable[[int], Case]:
    def build(v: int) -> Case:
        if v < 7:  # a per-channel constant aligned at axis 1 (the legacy broadcast)
            return [_n(op, ["x", "c"], broadcast=1, axis=1)], [_init("c", C2)], [2, 3, 3]
        return [_n(op, ["x", "c"])], [_init("c", C2.reshape(2, 1, 1))], [2, 3, 3]
    return build


for _op, _fn in (("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply), ("Div", np.divide)):
    NUMPY[_op] = lambda v, x, fn=_fn: fn(x, C2.astype(np.float32).reshape(2, 1, 1))  # axis=1 aligns (2,) there
NUMPY["Dropout"] = lambda v, x: x
NUMPY["Cast"] = lambda v, x: x
NUMPY["Relu"] = lambda v, x: np.maximum(x, 0)
NUMPY["Neg"] = lambda v, x: -x


def _unary(op: str) -> Callable[[int], Case]:
    return lambda v: ([_n(op, ["x"])], [], [2, 3])


def _clip(v: int) -> Case:
    if v < 11:
        return [_n("Clip", ["x"], min=-0.3, max=0.4)], [], [6]
    return [_n("Clip", ["x", "lo", "hi"])], [_init("lo", np.float32(-0.3)), _init("hi", np.float32(0.4))], [6]


def _batchnorm_numpy(v: int, x: np.ndarray) -> np.ndarray:
    s, b, m, var = (np.array(a).reshape(2, 1, 1) for a in ([1.5, 0.5], [0.1, -0.2], [0.3, 0.0], [2.0, 0.5]))
    return (x - m) / np.sqrt(var + 1e-3) * s + b


NUMPY["BatchNormalization"] = _batchnorm_numpy
NUMPY["Clip"] = lambda v, x: np.clip(x, -0.3, 0.4)


def _batchnorm(v: int) -> Case:
    attrs: dict[str, object] = {"epsilon": 1e-3}
    if v == 1:
        attrs["consumed_inputs"] = [0, 0, 0, 1, 1]
    if v < 7:
        attrs["is_test"] = 1
    stats = [_init("s", [1.5, 0.5]), _init("b", [0.1, -0.2]), _init("m", [0.3, 0.0]), _init("v", [2.0, 0.5])]
    return [_n("BatchNormalization", ["x", "s", "b", "m", "v"], **attrs)], stats, [2, 3, 3]


def _flatten(v: int) -> Case:
    return [_n("Flatten", ["x"], axis=1)], [], [2, 3, 2]


def _reshape(v: int) -> Case:
    if v < 5:
        return [_n("Reshape", ["x"], shape=[0, 3, -1])], [], [2, 3, 2]
    return [_n("Reshape", ["x", "s"])], [_init("s", np.array([0, 3, -1], dtype=np.int64))], [2, 3, 2]


def _identity(v: int) -> Case:
    return [_n("Identity", ["x"])], [], [4]


def _dropout(v: int) -> Case:
    attrs = {"is_test": 1} if v < 7 else {}
    return [_n("Dropout", ["x"], **attrs)], [], [4]


def _constant(v: int) -> Case:
    value = {"value": numpy_helper.from_array(np.array([1.0, -2.0, 3.0, 0.5], dtype=np.float32))} if v < 12 \
        else {"value_floats": [1.0, -2.0, 3.0, 0.5]}
    return [_n("Constant", [], ["c"], **value), _n("Add", ["x", "c"], **({"broadcast": 1} if v < 7 else {}))], [], [4]


NUMPY["Constant"] = lambda v, x: x + np.array([1.0, -2.0, 3.0, 0.5])


def _shape(v: int) -> Case:  # y = x * (x's last dimension), through Shape, Gather and Cast
    attrs, index = ({"start": 1}, 1) if v >= 15 else ({}, 2)
    nodes = [_n("Shape", ["x"], ["s"], **attrs), helper.make_node("Gather", ["s", "i"], ["d"], name="g", axis=0),
             helper.make_node("Cast", ["d"], ["f"], name="c", to="FLOAT" if v < 6 else TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "f"], ["y"], name="m", **({"broadcast": 1} if v < 7 else {}))]
    return nodes, [_init("i", np.array([index], dtype=np.int64))], [2, 3]


NUMPY["Shape"] = lambda v, x: 3 * x


def _constant_of_shape(v: int) -> Case:
    fill = numpy_helper.from_array(np.array([0.25], dtype=np.float32))
    return [_n("ConstantOfShape", ["s"], ["c"], value=fill), _n("Add", ["x", "c"])], \
        [_init("s", np.array([1, 4], dtype=np.int64))], [4]


def _cast(v: int) -> Case:
    to = "FLOAT" if v < 6 else TensorProto.FLOAT
    return [_n("Cast", ["x"], to=to)], [], [4]


def _gather(v: int) -> Case:
    return [_n("Gather", ["x", "i"], axis=1)], [_init("i", np.array([2, 0, 2], dtype=np.int64))], [4]


def _transpose(v: int) -> Case:
    return [_n("Transpose", ["x"], perm=[0, 2, 1])], [], [2, 3]


def _unsqueeze(v: int) -> Case:
    if v < 13:
        return [_n("Unsqueeze", ["x"], axes=[1])], [], [2, 3]
    return [_n("Unsqueeze", ["x", "a"])], [_init("a", np.array([1], dtype=np.int64))], [2, 3]


def _squeeze(v: int) -> Case:
    if v < 13:
        return [_n("Squeeze", ["x"], axes=[2])], [], [2, 1, 3]
    return [_n("Squeeze", ["x", "a"])], [_init("a", np.array([2], dtype=np.int64))], [2, 1, 3]


def _slice(v: int) -> Case:
    if v < 10:  # the form that ended in an IndexError before: starts/ends/axes as attributes
        return [_n("Slice", ["x"], starts=[1, 0], ends=[3, -1], axes=[1, 2])], [], [4, 3]
    ints = {k: _init(k, np.array(a, dtype=np.int64)) for k, a in
            [("st", [1, 0]), ("en", [4, -1]), ("ax", [1, 2]), ("sp", [2, 1])]}
    return [_n("Slice", ["x", "st", "en", "ax", "sp"])], list(ints.values()), [4, 3]


def _split(v: int) -> Case:
    outs = ["a", "b", "c"]
    if v >= 18:
        node = _n("Split", ["x"], outs, axis=1, num_outputs=3)  # 7 entries: parts of 3, 3, 1
    elif v >= 13:
        node = _n("Split", ["x", "s"], outs, axis=1)
    else:
        node = _n("Split", ["x"], outs, axis=1, split=[3, 3, 1])
    inits = [_init("s", np.array([3, 3, 1], dtype=np.int64))] if 13 <= v < 18 else []
    return [node, helper.make_node("Concat", ["c", "a", "b"], ["y"], name="cat", axis=1)], inits, [7]


NUMPY["Concat"] = lambda v, x: np.concatenate([x, -x, x], axis=1)
NUMPY["Split"] = lambda v, x: np.concatenate([x[:, 6:], x[:, :3], x[:, 3:6]], axis=1)


def _concat(v: int) -> Case:
    attrs = {} if v < 4 else {"axis": 1}  # opset 1's default axis is 1
    return [_n("Neg", ["x"], ["n"]), _n("Concat", ["x", "n", "x"], **attrs)], [], [2, 3]


NUMPY["Pad"] = lambda v, x: np.pad(x, [(0, 0), (1, 2), (2, 1)], constant_values=0.5)  # opsets 1 and 2


def _pad(v: int) -> Case:
    pads = [0, 1, 2, 0, 2, 1]
    if v == 1:
        return [_n("Pad", ["x"], paddings=pads, value=0.5)], [], [3, 2]
    if v < 11:
        return [_n("Pad", ["x"], pads=pads, value=0.5)], [], [3, 2]
    if v < 18:
        return [_n("Pad", ["x", "p", "v"], mode="reflect" if v == 13 else "constant")], \
            [_init("p", np.array(pads if v != 13 else [0, 1, 1, 0, 2, 1], dtype=np.int64)),
             _init("v", np.float32(0.5))], [3, 2]
    return [_n("Pad", ["x", "p", "", "a"], mode="edge" if v < 19 else "wrap")], \
        [_init("p", np.array([1, 2, 2, 1], dtype=np.int64)), _init("a", np.array([1, 2], dtype=np.int64))], [3, 2]


def _conv(v: int) -> Case:
    w = RNG.normal(size=(4, 1, 2, 3))
    return [_n("Conv", ["x", "w", "b"], group=2, strides=[2, 1], pads=[1, 0, 0, 1], dilations=[1, 2])], \
        [_init("w", w), _init("b", RNG.normal(size=4))], [2, 5, 6]


def _conv_transpose(v: int) -> Case:
    w = RNG.normal(size=(2, 3, 3, 2))
    return [_n("ConvTranspose", ["x", "w", "b"], strides=[2, 1], pads=[1, 0, 0, 1], output_padding=[1, 0])], \
        [_init("w", w), _init("b", RNG.normal(size=3))], [2, 3, 4]


def _average_pool(v: int) -> Case:
    # no pads in opset 1: its windows divide by the entries inside the input, which onnx's
    # reference evaluator gets wrong (it divides by the kernel's size)
    attrs: dict[str, object] = {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [1, 1, 0, 1] if v > 1 else [0] * 4}
    if v >= 7:
        attrs["count_include_pad"] = 1
    if v >= 10:
        attrs.update(count_include_pad=0, ceil_mode=1)
    if v >= 19:
        attrs["dilations"] = [1, 2]
    return [_n("AveragePool", ["x"], **attrs)], [], [2, 5, 7]


def _global_average_pool(v: int) -> Case:
    return [_n("GlobalAveragePool", ["x"])], [], [2, 3, 4]


def _max_pool(v: int) -> Case:
    attrs: dict[str, object] = {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 0, 0, 0]}
    if v >= 8:
        attrs["storage_order"] = 0
    if v >= 10:
        attrs.update(ceil_mode=1, dilations=[1, 2])
    return [_n("MaxPool", ["x"], **attrs)], [], [2, 5, 6]


def _expand(v: int) -> Case:  # per-sample (2, 1) broadcast against (2, 3)
    return [_n("Expand", ["x", "s"])], [_init("s", np.array([2, 3], dtype=np.int64))], [2, 1]


def _reduce(op: str, first_input_form: int) -> Callable[[int], Case]:
    def build(v: int) -> Case:  # the last axis of a per-sample (2, 3, 2), dropped
        if v >= first_input_form:
            return [_n(op, ["x", "axes"], keepdims=0)], [_init("axes", np.array([-1], dtype=np.int64))], [2, 3, 2]
        return [_n(op, ["x"], axes=[-1], keepdims=0)], [], [2, 3, 2]
    return build


BUILDERS: dict[str, Callable[[int], Case]] = {
    "Gemm": _gemm, "MatMul": _matmul, "Add": _elementwise("Add"), "Sub": _elementwise("Sub"),
    "Mul": _elementwise("Mul"), "Div": _elementwise("Div"), "Neg": _unary("Neg"), "Relu": _unary("Relu"),
    "Clip": _clip, "BatchNormalization": _batchnorm, "Flatten": _flatten, "Reshape": _reshape,
    "Identity": _identity, "Dropout": _dropout, "Constant": _constant, "Shape": _shape,
    "ConstantOfShape": _constant_of_shape, "Cast": _cast, "Gather": _gather, "Transpose": _transpose,
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Slice": _slice, "Split": _split, "Concat": _concat,
    "Pad": _pad, "Conv": _conv, "ConvTranspose": _conv_transpose, "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool, "MaxPool": _max_pool,
    "Expand": _expand, "ReduceSum": _reduce("ReduceSum", 13), "ReduceMean": _reduce("ReduceMean", 18),
}

CASES = [(op, v) for op in sorted(BUILDERS) for v in versions(op)]


@pytest.mark.parametrize("op, version", CASES, ids=[f"{op}-{v}" for op, v in CASES])
def test_every_opset_form_reads_as_onnx_computes_it(op: str, version: int) -> None:
    nodes, inits, shape = BUILDERS[op](version)
    ENGINES[f"{op}-{version}"] = check(model(nodes, inits, shape, version), tuple(shape), op=op)


def test_every_op_of_the_table_has_a_test_and_every_version_a_form() -> None:
    ops = {op for op, _ in table()}
    assert ops == set(BUILDERS)
    for op in ops:
        published = {onnx.defs.get_schema(op, v, "").since_version for v in range(1, REVIEWED_OPSET + 1)
                     if _exists(op, v)}
        assert set(versions(op)) == published, op


def _exists(op: str, opset: int) -> bool:
    try:
        onnx.defs.get_schema(op, opset, "")
    except Exception:  # noqa: BLE001
        return False
    return True


def test_supported_ops_reports_the_opset_range_per_op() -> None:
    ops = supported_ops()
    assert "Slice" in ops and ops["Slice"].first == 1 and ops["Slice"].last == REVIEWED_OPSET
    assert ops["ConstantOfShape"].first == 9
    assert ", ".join(ops).count(",") == len(ops) - 1  # iterates as op names


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Softmax"])
def test_non_piecewise_linear_ops_are_refused_naming_op_and_node(op: str) -> None:
    m = model([_n("Relu", ["x"], ["h"]), helper.make_node(op, ["h"], ["y"], name="act7")], [], [3], 17)
    with pytest.raises(LeoInputError, match=f"unsupported ONNX op {op} at node 'act7'.*not piecewise linear"):
        network_from_onnx(m)


def test_an_op_version_newer_than_the_table_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import leo.io.onnx.table as t

    monkeypatch.setattr(t, "_TABLE", {k: h for k, h in t._TABLE.items() if k != ("Relu", 14)})
    with pytest.raises(LeoInputError, match="Relu at node 'relu_node'.*version 14"):
        network_from_onnx(model([_n("Relu", ["x"])], [], [3], 17))


def test_opset_9_slice_model_through_the_cli(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case: an opset-9 Slice (attributes, not inputs) ended in exit 4."""
    from leo.cli.main import main

    nodes = [_n("Slice", ["x"], ["s"], starts=[1], ends=[7], axes=[1]), _n("Flatten", ["s"], ["f"]),
             _n("Gemm", ["f", "W1", "b1"], ["h"], transB=1), _n("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["g"], name="out", transB=1),
             helper.make_node("Identity", ["g"], ["y"], name="id")]
    rng = np.random.default_rng(3)
    inits = [_init("W1", rng.normal(size=(4, 6))), _init("b1", rng.normal(size=4)), _init("W2", rng.normal(size=(2, 4))),
             _init("b2", rng.normal(size=2))]
    m = model(nodes, inits, [8], 9)
    assert check(m, (8,)) == "onnxruntime"
    onnx.save(m, str(tmp_path / "slice9.onnx"))
    assert main(["verify", str(tmp_path / "slice9.onnx"), "--lower", "0", "--upper", "1", "-q"]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("opset", [6, 7])
def test_batchnorm_per_element_statistics(opset: int) -> None:
    """``spatial=0`` (opsets 1-7): one statistic per (C, H, W) entry instead of per channel."""
    rng = np.random.default_rng(5)
    stats = [_init("s", rng.uniform(0.5, 2, (2, 3))), _init("b", rng.normal(size=(2, 3))),
             _init("m", rng.normal(size=(2, 3))), _init("v", rng.uniform(0.5, 2, (2, 3)))]
    attrs = {"spatial": 0, **({"is_test": 1} if opset < 7 else {})}
    m = model([_n("BatchNormalization", ["x", "s", "b", "m", "v"], **attrs)], stats, [2, 3], opset)
    NUMPY["BatchNormalization-spatial0"] = lambda v, x: ((x - _arr(stats[2])) / np.sqrt(_arr(stats[3]) + 1e-5)
                                                         * _arr(stats[0]) + _arr(stats[1]))
    check(m, (2, 3), op="BatchNormalization-spatial0")


def _arr(t: onnx.TensorProto) -> np.ndarray:
    return numpy_helper.to_array(t).astype(np.float64)
