"""Linear ops the reader gained for the VNN-LIB conformance suite, each form against
onnxruntime on random inputs: Expand, ReduceSum and ReduceMean (axes as an attribute in
the older opsets, as an input in the newer; keepdims; noop_with_empty_axes); transposes
and reshapes that move a literal batch axis of 1; constant (integer) outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from leo.errors import LeoInputError
from leo.io.onnx import network_from_onnx, supported_ops

RNG = np.random.default_rng(25)


def _model(nodes: list, dims: list, opset: int, inits: tuple = (),
           out_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", out_type, None)], initializer=list(inits))
    opsets = [helper.make_opsetid("", opset)]
    m = helper.make_model(graph, opset_imports=opsets, ir_version=min(8, helper.find_min_ir_version_for(opsets))
                          if opset <= 17 else helper.find_min_ir_version_for(opsets))
    m = onnx.shape_inference.infer_shapes(m)
    if m.graph.output[0].type.tensor_type.HasField("shape"):  # the checker needs the output's shape
        onnx.checker.check_model(m)
    return m


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _agrees(m: onnx.ModelProto, shape: tuple[int, ...], samples: int = 4) -> None:
    """leo's network equals onnxruntime on random inputs of the graph's (per-sample) shape."""
    net = network_from_onnx(m)
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for _ in range(samples):
        x = RNG.uniform(-2, 2, size=shape).astype(np.float32)
        want = np.asarray(session.run(None, {"x": x})[0], dtype=np.float64).ravel()
        got = net(x.reshape(1, -1).astype(np.float64)).ravel()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_table_reports_the_new_ops() -> None:
    ops = supported_ops()
    assert {"Expand", "ReduceSum", "ReduceMean"} <= set(ops)
    assert ops["Expand"].first == 8 and ops["ReduceSum"].first == 1 and ops["ReduceMean"].first == 1


# -- Expand -------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [8, 13, 18])
@pytest.mark.parametrize("dims, target", [([2, 1], [2, 3]), ([3], [2, 3]), ([2, 1, 3], [1, 4, 1]),
                                          (["N", 2, 1], [1, 1, 4])])
def test_expand_broadcasts_like_onnxruntime(opset: int, dims: list, target: list[int]) -> None:
    nodes = [helper.make_node("Expand", ["x", "s"], ["e"], name="ex"),
             helper.make_node("Relu", ["e"], ["y"], name="r")]
    m = _model(nodes, dims, opset, (_ints("s", target),))
    _agrees(m, tuple(1 if d == "N" else d for d in dims))


# -- ReduceSum / ReduceMean -----------------------------------------------------------------------

#: (axes or None, keepdims, noop_with_empty_axes or None)
FORMS = [([1], 1, None), ([1], 0, None), ([-1], 0, None), ([0], 1, None), ([0, 2], 0, None), (None, 1, None),
         (None, 0, None), ([], 1, 1), ([], 0, 0)]


def _reduce_model(op: str, opset: int, axes: list[int] | None, keepdims: int, noop: int | None,
                  dims: list) -> onnx.ModelProto:
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    attrs: dict = {"keepdims": keepdims}
    inputs, inits = ["x"], []
    if noop is not None:
        if not as_input:
            pytest.skip(f"{op} has no noop_with_empty_axes in opset {opset}")
        attrs["noop_with_empty_axes"] = noop
    if axes is not None and as_input:
        inputs.append("axes")
        inits.append(_ints("axes", axes))
    elif axes:
        attrs["axes"] = axes
    elif axes is not None:
        pytest.skip("an empty axes attribute is not a form the older opsets have")
    nodes = [helper.make_node(op, inputs, ["s"], name="red", **attrs), helper.make_node("Neg", ["s"], ["y"], name="n")]
    return _model(nodes, dims, opset, tuple(inits))


@pytest.mark.parametrize("op, opset", [("ReduceSum", 11), ("ReduceSum", 13), ("ReduceMean", 11),
                                       ("ReduceMean", 13), ("ReduceMean", 18)])
@pytest.mark.parametrize("axes, keepdims, noop", FORMS)
def test_reductions_in_every_form_agree_with_onnxruntime(op: str, opset: int, axes, keepdims: int, noop) -> None:
    _agrees(_reduce_model(op, opset, axes, keepdims, noop, [2, 3, 2]), (2, 3, 2))


@pytest.mark.parametrize("op, opset", [("ReduceSum", 13), ("ReduceMean", 18)])
def test_a_reduction_after_a_layer_starts_a_new_linear_layer(op: str, opset: int) -> None:
    w = numpy_helper.from_array(RNG.normal(size=(3, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node(op, ["h", "axes"], ["s"], name="red", keepdims=0),
             helper.make_node("Relu", ["s"], ["y"], name="r")]
    _agrees(_model(nodes, ["N", 2, 3], opset, (w, _ints("axes", [2]))), (1, 2, 3))


def test_a_reduction_over_a_symbolic_batch_is_refused() -> None:
    m = _reduce_model("ReduceSum", 13, [0], 1, None, ["N", 3])
    with pytest.raises(LeoInputError, match="ReduceSum at node 'red': reduces over the batch dimension"):
        network_from_onnx(m)


def test_a_reduction_over_a_literal_batch_of_one_is_exact() -> None:
    _agrees(_reduce_model("ReduceSum", 13, [0], 0, None, [1, 3]), (1, 3))


# -- moving a literal batch axis of 1 ------------------------------------------------------------

@pytest.mark.parametrize("nodes, inits, dims", [
    ([helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[1, 0])], (), [1, 2]),
    ([helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[2, 0, 1]),
      helper.make_node("Relu", ["t"], ["y"], name="r")], (), [1, 3, 2]),
    ([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], (_ints("s", [3, 2]),), [1, 6]),
    ([helper.make_node("Flatten", ["x"], ["y"], name="f", axis=0)], (), [1, 2, 3]),
])
def test_moving_a_literal_batch_axis_of_one_reads_exactly(nodes: list, inits: tuple, dims: list) -> None:
    _agrees(_model(nodes, dims, 18, inits), tuple(dims))


def test_moving_a_symbolic_batch_axis_is_still_refused() -> None:
    m = _model([helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[1, 0])], ["N", 2], 18)
    with pytest.raises(LeoInputError, match="moves or slices the batch dimension"):
        network_from_onnx(m)


# -- constant outputs and casts -------------------------------------------------------------------

@pytest.mark.parametrize("dims", [[3], [2, 3], [1, 4, 2]])
def test_a_shape_output_is_the_exact_integer_constant(dims: list) -> None:
    m = _model([helper.make_node("Shape", ["x"], ["y"], name="sh")], dims, 18, out_type=TensorProto.INT64)
    _agrees(m, tuple(dims), samples=2)


def test_a_cast_of_a_constant_to_int_is_exact() -> None:
    nodes = [helper.make_node("Cast", ["c"], ["i"], name="cast", to=TensorProto.INT64),
             helper.make_node("Add", ["i", "z"], ["y"], name="add")]
    c = numpy_helper.from_array(np.array([3.7, -2.2], dtype=np.float32), "c")
    _agrees(_model(nodes, [2], 18, (c, _ints("z", [5, 0])), out_type=TensorProto.INT64), (2,), samples=2)


def test_a_cast_of_the_networks_data_to_int_is_refused_as_not_piecewise_linear() -> None:
    m = _model([helper.make_node("Cast", ["x"], ["y"], name="cast", to=TensorProto.INT64)], [2], 18,
               out_type=TensorProto.INT64)
    with pytest.raises(LeoInputError, match="Cast at node 'cast': casts the network's data to int64.*not piecewise"):
        network_from_onnx(m)
