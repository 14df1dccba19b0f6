"""ONNX import against onnxruntime (and torch), then compress, export and compare again.

Every graph is built here, by torch.onnx or by hand with onnx.helper, so the truth is
onnxruntime running the very file leo read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from leo.core.domain import make_box
from leo.errors import LeoInputError
from leo.io.load import load_network
from leo.io.onnx_export import save_onnx
from leo.io.onnx_import import load_onnx
from leo.core.network import Network
from leo.reduction.reduce import reduce
from leo.stability.analysis import StabilityOptions, analyse

F32 = TensorProto.FLOAT


# -- helpers ---------------------------------------------------------------------------

def _init(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)


def _model(path: Path, nodes: list, shape: list, inits: list, out: str = "y", opset: int = 17,
           weights_as_inputs: bool = False, ir_version: int = 8) -> Path:
    inputs = [helper.make_tensor_value_info("x", F32, ["batch", *shape])]
    if weights_as_inputs:  # the old convention: every initializer is also a graph input
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    output = helper.make_tensor_value_info(out, F32, ["batch", "outputs"])
    graph = helper.make_graph(nodes, "g", inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = next(i.name for i in sess.get_inputs() if i.name in ("x", "input") or len(sess.get_inputs()) == 1)
    return sess.run(None, {name: x.astype(np.float32)})[0].reshape(len(x), -1)


def _check(path: Path, shape: tuple[int, ...], lo: float = -1.0, hi: float = 1.0, seed: int = 0) -> Network:
    """leo's network equals onnxruntime on the file; its compression, exported, still does."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, size=(64, *shape)).astype(np.float32)
    net = load_onnx(path)
    assert net.input_dim == int(np.prod(shape))
    truth = _ort(path, x)
    flat = x.reshape(len(x), -1).astype(np.float64)
    assert np.abs(net(flat) - truth).max() < 1e-5

    box = make_box(lo, hi, net.input_dim)
    small = reduce(net, analyse(net, box, StabilityOptions(samples=256))).network
    out = path.with_name(path.stem + "_compressed.onnx")
    save_onnx(small, out)
    onnx.checker.check_model(onnx.load(str(out)))
    pts = box.sample(200, rng).astype(np.float32)
    original = _ort(path, pts.reshape(len(pts), *shape))
    # the compressed model takes the original's input shape (issue 13, defect 4)
    assert np.abs(_ort(out, pts.reshape(len(pts), *shape)) - original).max() < 1e-5
    return net


def _dense(rng: np.random.Generator, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(n_out, n_in)) / np.sqrt(n_in), rng.normal(size=n_out) * 0.5


# -- torch exports -------------------------------------------------------------------------

class _Normalised(torch.nn.Module):
    """Input normalisation, x.view(batch, -1) (Shape/Gather/Unsqueeze/Concat/Reshape), a
    Linear without bias (MatMul) and a BatchNorm1d after a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([[0.1, -0.2], [0.3, 0.0]]))
        self.l1 = torch.nn.Linear(4, 8)
        self.bn = torch.nn.BatchNorm1d(8)
        self.l2 = torch.nn.Linear(8, 6, bias=False)
        self.l3 = torch.nn.Linear(6, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.3, 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 0.25
        x = x.view(x.size(0), -1)
        x = torch.relu(self.bn(self.l1(x)))
        return self.l3(torch.relu(self.l2(x)))


def _export(module: torch.nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    module.eval()
    try:
        torch.onnx.export(module, (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    except Exception as exc:  # the legacy exporter may be missing from a torch build
        pytest.skip(f"torch.onnx.export(dynamo=False) does not work here: {exc}")
    return path


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.parametrize("kind", ["sequential", "normalised"])
def test_torch_export(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    if kind == "sequential":
        module: torch.nn.Module = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
            torch.nn.ReLU(), torch.nn.Linear(8, 3))
        shape: tuple[int, ...] = (2, 3)
    else:
        module, shape = _Normalised(), (2, 2)
    net = _check(_export(module, shape, tmp_path / "m.onnx"), shape)
    # and against torch itself in float64: the import loses nothing to float32
    x = torch.rand(50, *shape, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        truth = module.double()(x).numpy()
    assert np.abs(net(x.reshape(50, -1).numpy()) - truth).max() < 1e-10
    assert [ly.relu for ly in net.layers] == [True, True, False]


# -- hand-built graphs ------------------------------------------------------------------------

def test_sub_div_normalisation_folds_into_first_layer(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w1, b1 = _dense(rng, 12, 10)
    w2, b2 = _dense(rng, 10, 2)
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "std"], ["n"], name="div"),
        helper.make_node("Flatten", ["n"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "W1", "b1"], ["z1"], name="fc1", transB=1),
        helper.make_node("Relu", ["z1"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [_init("mean", [[[0.5]], [[0.4]], [[0.3]]]), _init("std", np.array([0.2, 0.3, 0.25]).reshape(1, 3, 1, 1)),
             _init("W1", w1), _init("b1", b1), _init("W2", w2), _init("b2", b2)]
    net = _check(_model(tmp_path / "norm.onnx", nodes, [3, 2, 2], inits), (3, 2, 2), lo=0.0, hi=1.0)
    assert len(net.layers) == 2 and [ly.relu for ly in net.layers] == [True, False]


def test_weights_listed_as_graph_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    w1, b1 = _dense(rng, 5, 7)
    w2, b2 = _dense(rng, 7, 2)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"], name="fc1", transB=1),
        helper.make_node("Relu", ["z1"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [_init("W1", w1), _init("b1", b1), _init("W2", w2), _init("b2", b2)]
    path = _model(tmp_path / "inputs.onnx", nodes, [5], inits, weights_as_inputs=True, opset=9, ir_version=3)
    assert len(onnx.load(str(path)).graph.input) == 5
    net = _check(path, (5,))
    np.testing.assert_allclose(net.layers[0].weights[0], w1.astype(np.float32))


def test_gemm_transposes_alpha_beta(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    w1, b1 = _dense(rng, 4, 6)
    w2, b2 = _dense(rng, 6, 3)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"], name="fc1", transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["z1"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "W2t", "b2"], ["y"], name="fc2", transB=0, alpha=-1.5, beta=0.25),
    ]
    inits = [_init("W1", w1), _init("b1", b1.reshape(1, 6)), _init("W2t", w2.T), _init("b2", b2)]
    net = _check(_model(tmp_path / "gemm.onnx", nodes, [4], inits), (4,))
    np.testing.assert_allclose(net.layers[1].weights[1], -1.5 * w2.astype(np.float32), rtol=1e-6)


def test_final_relu_is_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    w1, b1 = _dense(rng, 3, 6)
    w2, b2 = _dense(rng, 6, 2)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"], name="fc1", transB=1),
        helper.make_node("Relu", ["z1"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["z2"], name="fc2", transB=1),
        helper.make_node("Relu", ["z2"], ["y"], name="relu_out"),
    ]
    inits = [_init("W1", w1), _init("b1", b1), _init("W2", w2), _init("b2", b2)]
    net = _check(_model(tmp_path / "final.onnx", nodes, [3], inits), (3,))
    assert [ly.relu for ly in net.layers] == [True, True]
    assert net(np.random.default_rng(0).uniform(-1, 1, (500, 3))).min() >= 0.0


def test_batchnorm_after_gemm_folds_into_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    w1, b1 = _dense(rng, 4, 6)
    w2, b2 = _dense(rng, 6, 2)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"], name="fc1", transB=1),
        helper.make_node("BatchNormalization", ["z1", "g", "beta", "mu", "var"], ["bn"], name="bn1",
                         epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [_init("W1", w1), _init("b1", b1), _init("W2", w2), _init("b2", b2),
             _init("g", rng.uniform(0.5, 2, 6)), _init("beta", rng.normal(size=6) * 0.3),
             _init("mu", rng.normal(size=6) * 0.3), _init("var", rng.uniform(0.2, 2, 6))]
    net = _check(_model(tmp_path / "bn.onnx", nodes, [4], inits), (4,))
    assert len(net.layers) == 2


@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_then_add(tmp_path: Path, bias_first: bool) -> None:
    rng = np.random.default_rng(6)
    w1, b1 = _dense(rng, 5, 8)
    w2, b2 = _dense(rng, 8, 3)

    def add(a: str, b: str, out: str, name: str) -> onnx.NodeProto:
        return helper.make_node("Add", [b, a] if bias_first else [a, b], [out], name=name)

    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["m1"], name="mm1"), add("m1", "b1", "z1", "add1"),
        helper.make_node("Relu", ["z1"], ["h1"], name="relu1"),
        helper.make_node("MatMul", ["h1", "W2"], ["m2"], name="mm2"), add("m2", "b2", "y", "add2"),
    ]
    inits = [_init("W1", w1.T), _init("b1", b1), _init("W2", w2.T), _init("b2", b2)]
    net = _check(_model(tmp_path / "mm.onnx", nodes, [5], inits), (5,))
    assert len(net.layers) == 2


def test_flatten_reshape_and_constant_nodes(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    w1, b1 = _dense(rng, 6, 8)
    w2, b2 = _dense(rng, 8, 2)
    const = lambda name, a: helper.make_node(  # noqa: E731
        "Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(np.asarray(a), name))
    nodes = [
        const("shape1", np.array([0, 3, 2], dtype=np.int64)),
        helper.make_node("Reshape", ["x", "shape1"], ["r1"], name="reshape1"),
        helper.make_node("Flatten", ["r1"], ["f"], name="flat"),
        const("W1", w1.T.astype(np.float32)), const("b1", b1.astype(np.float32)),
        helper.make_node("MatMul", ["f", "W1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["m1", "b1"], ["z1"], name="add1"),
        helper.make_node("Constant", [], ["two"], name="const_two", value_float=2.0),
        helper.make_node("Mul", ["z1", "two"], ["z1s"], name="scale"),  # after a layer: folds into its rows
        helper.make_node("Relu", ["z1s"], ["h1"], name="relu1"),
        const("shape2", np.array([-1, 2, 4], dtype=np.int64)),
        helper.make_node("Reshape", ["h1", "shape2"], ["r2"], name="reshape2"),
        const("shape3", np.array([0, -1], dtype=np.int64)),
        helper.make_node("Reshape", ["r2", "shape3"], ["r3"], name="reshape3"),
        helper.make_node("Identity", ["r3"], ["r4"], name="ident"),
        helper.make_node("Gemm", ["r4", "W2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [_init("W2", w2), _init("b2", b2)]
    net = _check(_model(tmp_path / "shapes.onnx", nodes, [1, 6, 1], inits), (1, 6, 1))
    np.testing.assert_allclose(net.layers[0].weights[0], 2 * w1.astype(np.float32), rtol=1e-6)


def test_consecutive_gemms_become_a_linear_layer(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    w1, b1 = _dense(rng, 4, 3)
    w2, b2 = _dense(rng, 3, 6)
    w3, b3 = _dense(rng, 6, 2)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"], name="fc1", transB=1),
        helper.make_node("Gemm", ["z1", "W2", "b2"], ["z2"], name="fc2", transB=1),
        helper.make_node("Relu", ["z2"], ["h2"], name="relu2"),
        helper.make_node("Gemm", ["h2", "W3", "b3"], ["y"], name="fc3", transB=1),
    ]
    inits = [_init("W1", w1), _init("b1", b1), _init("W2", w2), _init("b2", b2), _init("W3", w3), _init("b3", b3)]
    net = _check(_model(tmp_path / "linear.onnx", nodes, [4], inits), (4,))
    assert [(ly.width, ly.relu) for ly in net.layers] == [(3, False), (6, True), (2, False)]


def test_residual_add_gives_a_skip_connection(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    w1, b1 = _dense(rng, 4, 6)
    w2, b2 = _dense(rng, 6, 6)
    w3, b3 = _dense(rng, 6, 2)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"], name="fc1", transB=1),
        helper.make_node("Relu", ["z1"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["z2"], name="fc2", transB=1),
        helper.make_node("Add", ["z2", "h1"], ["r2"], name="res"),  # same source: W2 + I
        helper.make_node("Relu", ["r2"], ["h2"], name="relu2"),
        helper.make_node("Add", ["h2", "h1"], ["s"], name="skip"),  # two sources
        helper.make_node("Gemm", ["s", "W3", "b3"], ["y"], name="fc3", transB=1),
    ]
    inits = [_init("W1", w1), _init("b1", b1), _init("W2", w2), _init("b2", b2), _init("W3", w3), _init("b3", b3)]
    net = _check(_model(tmp_path / "skip.onnx", nodes, [4], inits), (4,))
    assert net.layers[-1].sources == (1, 2)


# -- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["LpPool", "Sigmoid"])  # Conv and ConvTranspose are read (tests/io/test_conv.py,
def test_unsupported_op_names_op_and_node(tmp_path: Path, op: str) -> None:  # tests/io/test_onnx_ops_2022.py)
    if op == "LpPool":
        nodes = [helper.make_node("LpPool", ["x"], ["y"], name="conv1", kernel_shape=[2, 2])]
        inits, shape = [], [1, 3, 3]
    else:
        nodes = [helper.make_node("Gemm", ["x", "W"], ["z"], name="fc", transB=1),
                 helper.make_node("Sigmoid", ["z"], ["y"], name="act1")]
        inits, shape = [_init("W", np.ones((2, 3)))], [3]
    path = _model(tmp_path / "bad.onnx", nodes, shape, inits)
    name = "conv1" if op == "LpPool" else "act1"
    with pytest.raises(LeoInputError, match=f"unsupported ONNX op {op} at node '{name}'"):
        load_onnx(path)


def test_nonlinear_product_is_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("Mul", ["x", "x"], ["y"], name="square")]
    with pytest.raises(LeoInputError, match="Mul at node 'square'.*not linear"):
        load_onnx(_model(tmp_path / "sq.onnx", nodes, [3], []))


@pytest.mark.parametrize("content", [b"", b"hello, not a model\n", bytes(range(256)) * 4])
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(LeoInputError, match="ONNX"):
        load_onnx(path)
    with pytest.raises(LeoInputError):
        load_network(path)


def test_load_network_dispatches_onnx(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc", transB=1)]
    path = _model(tmp_path / "one.onnx", nodes, [3], [_init("W", np.eye(2, 3)), _init("b", [1.0, 2.0])])
    net = load_network(path)
    np.testing.assert_allclose(net(np.array([[1.0, 2.0, 3.0]])), [[2.0, 4.0]])
