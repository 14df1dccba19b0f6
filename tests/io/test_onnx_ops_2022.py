"""Forms that VNN-COMP 2022-2024 networks use and leo once refused though they are
piecewise linear: Split (nn4sys), ConvTranspose (cgan), an input without a batch
dimension (cctsdb), constants that broadcast over a sample (lsnc, ml4acopf). Each graph
is built with onnx's helpers and compared with onnxruntime on random inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from leo.errors import LeoInputError
from leo.io.onnx_import import load_onnx, network_from_onnx

from tests.io.test_onnx_opsets import _init, _n, check, model

RNG = np.random.default_rng(11)


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape)


# -- Split (nn4sys: one input cut into parts, each part its own branch) -------------------------

@pytest.mark.parametrize("opset", [13, 18])
def test_split_into_branches(opset: int) -> None:
    split = (_n("Split", ["x", "s"], ["a", "b"], axis=1) if opset == 13
             else _n("Split", ["x"], ["a", "b"], axis=1, num_outputs=2))
    nodes = [split,
             helper.make_node("Gemm", ["a", "Wa"], ["ha"], name="fa", transB=1),
             helper.make_node("Relu", ["ha"], ["ra"], name="relu_a"),
             helper.make_node("Gemm", ["b", "Wb"], ["hb"], name="fb", transB=1),
             helper.make_node("Relu", ["hb"], ["rb"], name="relu_b"),
             helper.make_node("Concat", ["rb", "ra"], ["c"], name="cat", axis=1),
             helper.make_node("Gemm", ["c", "Wo"], ["y"], name="out", transB=1)]
    inits = [_init("s", np.array([3, 3], dtype=np.int64)), _init("Wa", _w(4, 3)), _init("Wb", _w(5, 3)),
             _init("Wo", _w(2, 9))]
    check(model(nodes, inits, [6], opset), (6,))


def test_split_of_a_conv_output_along_channels() -> None:
    nodes = [_n("Conv", ["x", "k"], ["c"]), _n("Split", ["c"], ["a", "b", "d"], axis=1, num_outputs=3),
             helper.make_node("Relu", ["a"], ["ra"], name="r"), helper.make_node("Sub", ["ra", "d"], ["y"], name="s")]
    check(model(nodes, [_init("k", _w(7, 2, 2, 2))], [2, 4, 4], 18), (2, 4, 4))


# -- ConvTranspose (cgan's generator) -----------------------------------------------------------

TRANSPOSED = {
    "plain": dict(w=(2, 3, 3, 3), attrs={}),
    "stride-pad-outpad": dict(w=(2, 3, 3, 3), attrs=dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),
    "asymmetric": dict(w=(2, 2, 2, 3), attrs=dict(strides=[3, 2], pads=[0, 2, 1, 0], output_padding=[2, 1])),
    "dilated": dict(w=(2, 2, 3, 2), attrs=dict(dilations=[2, 3], strides=[1, 2])),
    "groups": dict(w=(4, 3, 2, 2), attrs=dict(group=2, strides=[2, 1])),
    "output-shape": dict(w=(2, 3, 3, 3), attrs=dict(strides=[2, 2], output_shape=[8, 7])),
    "output-shape-same-upper": dict(w=(2, 3, 3, 3), attrs=dict(strides=[2, 2], output_shape=[8, 7],
                                                              auto_pad="SAME_UPPER")),
    "output-shape-same-lower": dict(w=(2, 3, 3, 3), attrs=dict(strides=[2, 2], output_shape=[8, 7],
                                                              auto_pad="SAME_LOWER")),
}


@pytest.mark.parametrize("name", sorted(TRANSPOSED))
def test_conv_transpose_equals_onnxruntime(name: str) -> None:
    case = TRANSPOSED[name]
    channels = case["w"][0]
    nodes = [_n("ConvTranspose", ["x", "w", "b"], ["t"], **case["attrs"]),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    inits = [_init("w", _w(*case["w"])), _init("b", _w(case["w"][1] * case["attrs"].get("group", 1)))]
    check(model(nodes, inits, [channels, 4, 4], 17), (channels, 4, 4))


def test_conv_transpose_1d_in_a_generator_chain() -> None:
    nodes = [_n("Gemm", ["x", "W"], ["h"], transB=1), _n("Reshape", ["h", "s"], ["r"]),
             _n("ConvTranspose", ["r", "k"], ["t"], strides=[2], pads=[1, 0]),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    inits = [_init("W", _w(12, 4)), _init("s", np.array([-1, 3, 4], dtype=np.int64)), _init("k", _w(3, 2, 3))]
    check(model(nodes, inits, [4], 17), (4,))


def test_conv_transpose_output_padding_not_below_stride_is_refused() -> None:
    nodes = [_n("ConvTranspose", ["x", "w"], strides=[2, 2], output_padding=[2, 0])]
    m = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [_init("w", _w(2, 3, 3, 3))]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(LeoInputError, match="ConvTranspose at node 'convtranspose_node'.*output_padding"):
        network_from_onnx(m)


# -- inputs without a batch dimension (cctsdb) --------------------------------------------------

def test_flat_input_without_batch_dimension() -> None:
    nodes = [_n("MatMul", ["x", "W1"], ["h"]), _n("Add", ["h", "b1"], ["z"]), _n("Relu", ["z"], ["r"]),
             _n("MatMul", ["r", "W2"], ["y"])]
    inits = [_init("W1", _w(5, 6)), _init("b1", _w(6)), _init("W2", _w(6, 2))]
    m = model(nodes, inits, [5], 17, batched=False)
    check(m, (5,), batched=False)
    assert network_from_onnx(m).input_dim == 5


def test_image_without_batch_dimension_unsqueezed_into_a_conv(tmp_path) -> None:
    nodes = [_n("Unsqueeze", ["x", "ax"], ["u"]), _n("Conv", ["u", "k", "kb"], ["c"], pads=[1, 1, 1, 1]),
             _n("Relu", ["c"], ["r"]), _n("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             _n("Flatten", ["p"], ["f"]), _n("Gemm", ["f", "W"], ["y"], transB=1)]
    inits = [_init("ax", np.array([0], dtype=np.int64)), _init("k", _w(2, 3, 3, 3)), _init("kb", _w(2)),
             _init("W", _w(2, 2 * 3 * 3))]
    m = model(nodes, inits, [3, 6, 6], 17, batched=False)
    check(m, (3, 6, 6), batched=False)
    onnx.save(m, str(tmp_path / "cctsdb-like.onnx"))
    net = load_onnx(tmp_path / "cctsdb-like.onnx")
    assert net.input_shape == (3, 6, 6) and net.input_dim == 108


def test_matrix_input_without_batch_dimension() -> None:
    """A [2, 5] input is one tensor: the weight applies to each row, then rows are joined."""
    nodes = [_n("MatMul", ["x", "W1"], ["h"]), _n("Relu", ["h"], ["r"]), _n("Reshape", ["r", "s"], ["f"]),
             _n("MatMul", ["f", "W2"], ["y"])]
    inits = [_init("W1", _w(5, 3)), _init("s", np.array([-1], dtype=np.int64)), _init("W2", _w(6, 2))]
    check(model(nodes, inits, [2, 5], 17, batched=False), (2, 5), batched=False)


def test_unbatched_constant_widens_the_rank() -> None:
    nodes = [_n("Add", ["x", "c"], ["a"]), _n("Gemm", ["a", "W"], ["g"], transB=1), _n("Relu", ["g"], ["y"])]
    inits = [_init("c", _w(1, 5)), _init("W", _w(3, 5))]
    check(model(nodes, inits, [5], 17, batched=False), (5,), batched=False)


# -- constants that broadcast over one sample (lsnc, ml4acopf) ----------------------------------

@pytest.mark.parametrize("shape, const", [((5,), (1, 5)), ((5,), (5,)), ((2, 3, 3), (1, 1, 3, 3)),
                                          ((2, 3, 3), (3, 1)), ((1, 3, 3), (1, 2, 1, 1)), ((2, 1), (1, 4))])
@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_constant_broadcast_over_a_sample(shape: tuple[int, ...], const: tuple[int, ...], op: str) -> None:
    c = RNG.uniform(0.5, 2.0, size=const)  # away from 0 for Div
    nodes = [_n(op, ["x", "c"], ["a"]), _n("Relu", ["a"], ["y"])]
    check(model(nodes, [_init("c", c)], list(shape), 17), shape)


def test_branches_of_different_shapes_broadcast_against_each_other() -> None:
    nodes = [_n("Slice", ["x", "s0", "e0", "ax"], ["a"]), _n("Slice", ["x", "s1", "e1", "ax"], ["b"]),
             _n("Transpose", ["b"], ["bt"], perm=[0, 2, 1]), _n("Add", ["a", "bt"], ["y"])]
    ints = {k: _init(k, np.array(v, dtype=np.int64)) for k, v in
            [("s0", [0]), ("e0", [1]), ("s1", [1]), ("e1", [2]), ("ax", [1])]}
    check(model(nodes, list(ints.values()), [2, 3], 17), (2, 3))


def test_a_constant_over_the_batch_dimension_is_refused() -> None:
    m = model([_n("Add", ["x", "c"])], [_init("c", _w(3, 1, 5))], [5], 17)
    with pytest.raises(LeoInputError, match="Add at node 'add_node'.*batch"):
        network_from_onnx(m)


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_non_piecewise_linear_op_in_an_unbatched_graph_is_refused(op: str) -> None:
    m = model([_n("MatMul", ["x", "W"], ["h"]), helper.make_node(op, ["h"], ["y"], name="act")],
              [_init("W", _w(5, 2))], [5], 17, batched=False)
    with pytest.raises(LeoInputError, match=f"{op} at node 'act'.*not piecewise linear"):
        network_from_onnx(m)
