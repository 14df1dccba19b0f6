"""An ONNX file that leaves its image dimensions open (only the batch should be) is read with
``--input-shape`` / ``input_shape=``, checked against onnxruntime; without it the one-line refusal
says how to give the shape."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from leo.cli.main import main  # noqa: E402
from leo.errors import LeoInputError  # noqa: E402
from leo.io.load import load_network  # noqa: E402


def _open_dims_model(path) -> np.ndarray:
    """Conv (2 channels, 3x3) -> Relu -> Flatten -> Gemm on an input declared [N, 1, H, W]."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    d = rng.normal(size=(3, 2 * 4 * 4)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "d"], ["y"], name="dense", transB=1)]
    graph = helper.make_graph(nodes, "open", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(d, "d")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return rng.random((5, 1, 6, 6)).astype(np.float32)


def test_open_image_dims_read_with_the_given_shape_match_onnxruntime(tmp_path) -> None:
    path = tmp_path / "open.onnx"
    xs = _open_dims_model(path)
    net = load_network(path, input_shape=(1, 6, 6))
    want = ort.InferenceSession(str(path)).run(None, {"x": xs})[0]
    got = net(xs.reshape(len(xs), -1).astype(np.float64))
    assert net.input_shape == (1, 6, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_open_image_dims_without_a_shape_or_with_a_disagreeing_one_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "open.onnx"
    _open_dims_model(path)
    with pytest.raises(LeoInputError, match="--input-shape"):
        load_network(path)
    with pytest.raises(LeoInputError):
        load_network(path, input_shape=(3, 6, 6))  # the file fixes one channel
    assert main(["verify", str(path), "--lower", "0", "--upper", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--input-shape" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["verify", str(path), "--lower", "0", "--upper", "1", "--input-shape", "1,6,6", "-q"]) == 0
