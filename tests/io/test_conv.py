"""Convolutional and residual networks (issue 15): reading, stability, compression.

Truth is independent of leo: onnxruntime running the very ONNX file leo read, the torch
module's own forward, and dense sampling of the box. Networks are tiny (a few channels,
4x4 or 5x5 inputs) so every test runs in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import leo
import leo.io.load
from leo.cli.main import main
from leo.errors import LeoInputError
from leo.io.onnx_import import load_onnx
from leo.core.network import Layer, Network, channel_summary
from leo.stability.report import ACTIVE, INACTIVE, UNSTABLE
from leo.stability.analysis import StabilityOptions
from tests.conftest import seeded_module as _seeded

torch.set_num_threads(1)


def _export(module: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}}, opset_version=17)
    return path


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float64 if inp.type == "tensor(double)" else np.float32
    return sess.run(None, {inp.name: x.astype(dtype)})[0].reshape(len(x), -1)


def _torch(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(x, dtype=torch.float32)).reshape(len(x), -1).double().numpy()


class Residual(nn.Module):
    """A user's own class: conv, BatchNorm, a residual block, pooling, then dense."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.body = nn.Conv2d(2, 2, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.stem(x)))
        h = torch.relu(self.body(h) + h)
        return self.head(self.pool(h).flatten(1))


class Branches(nn.Module):
    """Concat of two branches along channels, a max pool and a transpose before the head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 1, 1)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.cat([self.a(x), self.b(x)], dim=1))
        h = nn.functional.max_pool2d(h, 2)
        return self.head(h.transpose(2, 3).flatten(1))


class Picks(nn.Module):
    """Slicing (with a step), squeeze/unsqueeze and indexing of conv channels: index ops on the data."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))[:, 1:3, ::2, 1:]
        h = h.unsqueeze(2).squeeze(2)[:, :, 1]
        return self.head(h.flatten(1))


def _cases() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    return {
        "padding": (nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2)), (1, 4, 4)),
        "stride": (nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(27, 2)),
                   (2, 5, 5)),
        "dilation": (nn.Sequential(nn.Conv2d(1, 2, 2, dilation=2, padding=(1, 0)), nn.ReLU(), nn.Flatten(),
                                   nn.Linear(30, 2)), (1, 5, 5)),
        "groups": (nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Conv2d(4, 2, 1, groups=2, bias=False),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)), (2, 4, 4)),
        "batchnorm": (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3),
                                    nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)), (1, 4, 4)),
        "avgpool": (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(3, stride=2, padding=1),
                                  nn.Flatten(), nn.Linear(8, 2)), (1, 4, 4)),
        "globalavgpool": (nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(3, 2)), (1, 4, 4)),
        "maxpool": (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
                                  nn.Flatten(), nn.Linear(8, 2)), (1, 4, 4)),
        "maxpool-before-relu": (nn.Sequential(nn.Conv2d(1, 2, 2), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                                              nn.Linear(2, 2)), (1, 4, 4)),
        "pad": (nn.Sequential(nn.ConstantPad2d((1, -1, 2, 0), 0.5), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.ZeroPad2d(1),
                              nn.Conv2d(2, 2, 3), nn.ReLU(), nn.ReflectionPad2d(1), nn.ReplicationPad2d((1, 0, 0, 1)),
                              nn.Flatten(), nn.Linear(70, 2)), (1, 4, 4)),
        "residual": (Residual(), (1, 4, 4)),
        "slice-gather": (Picks(), (1, 4, 4)),
        "concat-transpose": (Branches(), (2, 4, 4)),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_reading_equals_onnxruntime_and_torch(case: str, tmp_path: Path) -> None:
    module, shape = _cases()[case]
    module = _seeded(module)
    path = _export(module, shape, tmp_path / "m.onnx")
    net = load_onnx(path)
    x = np.random.default_rng(1).uniform(-1, 1, size=(256, *shape))
    got = net(x.reshape(len(x), -1))
    assert np.abs(got - _ort(path, x)).max() < 1e-5
    assert np.abs(got - _torch(module, x)).max() < 1e-5
    assert net.input_shape == shape


def test_conv_layer_keeps_its_shape_and_structure(tmp_path: Path) -> None:
    module = _seeded(nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                                   nn.Flatten(), nn.Linear(27, 2)))
    net = load_onnx(_export(module, (2, 5, 5), tmp_path / "m.onnx"))
    first = net.layers[0]
    assert first.shape == (3, 3, 3) and first.width == 27
    assert dict(first.structure or {})["strides"] == [2, 2]
    assert dict(first.structure or {})["pads"] == [1, 1, 1, 1]
    assert net.layers[1].shape is None
    verdicts = [ACTIVE] * 9 + [INACTIVE] * 9 + [UNSTABLE, ACTIVE] * 4 + [INACTIVE]
    summary = channel_summary(first, verdicts)
    assert summary is not None and [s.get(INACTIVE, 0) for s in summary] == [0, 9, 1]
    assert channel_summary(net.layers[1], [ACTIVE, ACTIVE]) is None
    # a pickled layer (process workers) keeps its shape
    import pickle

    again = pickle.loads(pickle.dumps(net))
    assert again.layers[0].shape == (3, 3, 3) and again.layers[0].structure == first.structure


def test_layer_shape_must_hold_its_units() -> None:
    with pytest.raises(LeoInputError, match="does not hold"):
        Layer({0: np.ones((4, 2))}, np.zeros(4), True, shape=(2, 3))


def _stable_claims_hold(net: Network, report, lower: np.ndarray, upper: np.ndarray) -> int:
    """Every stable claim against 10^5 box samples; every unstable unit either proven by two
    witness points whose forward passes show both signs, or recorded as unproven."""
    rng = np.random.default_rng(7)
    pts = lower + rng.random((100_000, lower.size)) * (upper - lower)
    zs = net.pre_activations(pts)
    checked = 0
    for lr in report.layers:
        z = zs[lr.layer - 1]
        for j, proof in enumerate(lr.proofs):
            if proof.verdict == ACTIVE:
                assert z[:, j].min() >= 0.0, (lr.layer, j)
            elif proof.verdict == INACTIVE:
                assert z[:, j].max() <= 0.0, (lr.layer, j)
            elif proof.witness is not None:
                wz = net.pre_activations(report.witness_points[list(proof.witness)])[lr.layer - 1][:, j]
                assert wz[0] > 0 > wz[1], (lr.layer, j, wz)
            checked += 1
    return checked


@pytest.mark.parametrize("case", ["maxpool", "residual", "concat-transpose", "groups"])
def test_stability_agrees_with_sampling_and_witnesses(case: str) -> None:
    module, shape = _cases()[case]
    module = _seeded(module, seed=3)
    lower, upper = np.zeros(shape), np.ones(shape)
    report = leo.verify(module, lower, upper, StabilityOptions(time_limit=5.0))
    net = leo.api.as_network(module, like=lower)
    relu_units = sum(layer.width for layer in net.layers[:-1] if layer.relu)
    assert _stable_claims_hold(net, report, lower.ravel(), upper.ravel()) == relu_units


def _compressed_equals(module: nn.Module, result, lower: np.ndarray, upper: np.ndarray, tmp_path: Path) -> None:
    """The written ONNX (onnxruntime) and TorchScript (torch) equal the module on the box."""
    onnx_path, _ = result.save(tmp_path / "small.onnx")
    pt_path, _ = result.save(tmp_path / "small.pt")
    rng = np.random.default_rng(5)
    x = lower + rng.random((2000, *lower.shape)) * (upper - lower)
    want = _torch(module, x)
    assert np.abs(_ort(onnx_path, x) - want).max() < 1e-4
    loaded = torch.jit.load(str(pt_path))
    with torch.no_grad():
        got = loaded(torch.as_tensor(x, dtype=torch.float32)).reshape(len(x), -1).double().numpy()
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("case", ["padding", "batchnorm", "maxpool", "residual", "concat-transpose"])
def test_compressed_equals_original_under_onnxruntime_and_torch(case: str, tmp_path: Path) -> None:
    module, shape = _cases()[case]
    module = _seeded(module, seed=2)
    center = np.random.default_rng(0).random(shape)
    lower, upper = np.clip(center - 0.1, 0, 1), np.clip(center + 0.1, 0, 1)
    result = leo.compress(module, lower[None], upper[None], StabilityOptions(time_limit=5.0))
    assert result.network.input_shape == shape
    _compressed_equals(module, result, lower, upper, tmp_path)


def test_planted_dead_channel_is_removed(tmp_path: Path) -> None:
    """Channel 1 of the first conv reads only negative weights and a negative bias: on
    [0,1] inputs all of its units are stably inactive, and compression drops them all."""
    module = _seeded(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, stride=2), nn.ReLU(),
                                   nn.Flatten(), nn.Linear(2, 2)), seed=4)
    with torch.no_grad():
        module[0].weight[1] = -module[0].weight[1].abs() - 0.01
        module[0].bias[1] = -0.1
    lower, upper = np.zeros((1, 4, 4)), np.ones((1, 4, 4))
    result = leo.compress(module, lower, upper, StabilityOptions(time_limit=5.0))
    dead = set(range(16, 32))
    assert dead <= set(result.reduction.removed_inactive[0])
    assert not dead & set(result.reduction.kept[0]) if result.reduction.kept else True
    summary = channel_summary(result.original.layers[0], [p.verdict for p in result.report.layer(1).proofs])
    assert summary is not None and summary[1].get(INACTIVE) == 16
    _compressed_equals(module, result, lower, upper, tmp_path)


class BatchSlice(nn.Module):
    """Slices the batch dimension: right for a batch of one, wrong for more; refused."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x[0:1].flatten(1))


@pytest.mark.parametrize("module, op", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Hardswish(), nn.Flatten(), nn.Linear(8, 2)), "HardSwish"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(8, 2)), "Sigmoid"),
    (nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(36, 2)), "Resize"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.LPPool2d(2, 2), nn.Flatten(), nn.Linear(2, 2)), "Pow"),
    (BatchSlice(), "Slice"),
])
def test_unsupported_op_exits_2_naming_op_and_node(module: nn.Module, op: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = _export(module, (1, 4, 4), tmp_path / "m.onnx")
    code = main(["verify", str(path), "--lower", "0", "--upper", "1", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and op in err and "node" in err and "Traceback" not in err


def test_ceil_mode_pool_is_read_exactly(tmp_path: Path) -> None:
    module = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(),
                           nn.Linear(8, 2))
    path = _export(module, (1, 4, 4), tmp_path / "m.onnx")
    x = np.random.default_rng(0).uniform(0, 1, (50, 1, 4, 4))
    with torch.no_grad():
        want = module.double()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(load_onnx(path)(x.reshape(50, -1)), want, atol=1e-9)


# -- a custom residual module through the API and the CLI ------------------------------------

def test_custom_residual_module_through_the_api(tmp_path: Path) -> None:
    module = _seeded(Residual(), seed=6)
    center = np.random.default_rng(2).random((1, 4, 4))
    lower, upper = np.clip(center - 0.05, 0, 1), np.clip(center + 0.05, 0, 1)
    report = leo.verify(module, lower[None], upper[None])  # with a leading batch dimension of 1
    net = leo.api.as_network(module, like=lower)
    _stable_claims_hold(net, report, lower.ravel(), upper.ravel())
    result = leo.compress(module, lower, upper)
    assert sum(result.network.hidden) < sum(net.hidden)
    _compressed_equals(module, result, lower, upper, tmp_path)


def _vnnlib(path: Path, lower: np.ndarray, upper: np.ndarray, unsafe: str) -> Path:
    n = lower.size
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(n))
    text += "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    text += "".join(f"(assert (>= X_{i} {float(lo)!r}))\n(assert (<= X_{i} {float(hi)!r}))\n"
                    for i, (lo, hi) in enumerate(zip(lower.ravel(), upper.ravel())))
    path.write_text(text + f"(assert {unsafe})\n")
    return path


def test_custom_residual_module_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _seeded(Residual(), seed=6)
    model = tmp_path / "res.pt"
    torch.jit.trace(module, torch.zeros(1, 1, 4, 4)).save(str(model))
    center = np.random.default_rng(2).random((1, 4, 4))
    np.save(tmp_path / "x.npy", center)
    ball = ["--center", str(tmp_path / "x.npy"), "--eps", "0.05", "--lower", "0", "--upper", "1"]
    assert main(["verify", str(model), *ball, "-q"]) == 0
    small = tmp_path / "small.onnx"
    assert main(["compress", str(model), *ball, "-o", str(small), "--float64", "-q"]) == 0
    lower, upper = np.clip(center - 0.05, 0, 1), np.clip(center + 0.05, 0, 1)
    x = lower + np.random.default_rng(3).random((500, 1, 4, 4)) * (upper - lower)
    assert np.abs(_ort(small, x) - _torch(module, x)).max() < 1e-4
    assert main(["check", str(model), str(small), *ball, "--exact", "--tolerance", "1e-3", "-q"]) == 0
    assert main(["audit", str(small) + ".cert.json"]) == 0
    # property: the output at the center's class stays the larger one on the ball (or a confirmed counterexample)
    y = _torch(module, center[None])[0]
    hi, lo = (0, 1) if y[0] > y[1] else (1, 0)
    spec = _vnnlib(tmp_path / "p.vnnlib", lower, upper, f"(>= Y_{lo} Y_{hi})")
    capsys.readouterr()
    # a TorchScript archive records no input shape and a VNN-LIB box is flat: give the ONNX file
    onnx_model = _export(module, (1, 4, 4), tmp_path / "res.onnx")
    code = main(["property", str(onnx_model), str(spec), "-q"])
    captured = capsys.readouterr()
    answer = (captured.out.split() or [captured.err])[0].rstrip(":")
    assert (code, answer) in ((0, "unsat"), (1, "sat"))
    # compressing first (flat form) gives the same answer
    assert main(["property", str(onnx_model), str(spec), "--compress-first", "-q"]) == code
    assert capsys.readouterr().out.split()[0].rstrip(":") == answer
    x_all = lower + np.random.default_rng(4).random((20_000, 1, 4, 4)) * (upper - lower)
    out = _torch(module, x_all)
    if answer == "unsat":  # sampling must not refute a proof
        assert (out[:, hi] > out[:, lo]).all()


# -- local boxes ---------------------------------------------------------------------------

def test_center_eps_box_is_the_clipped_ball(tmp_path: Path) -> None:
    from leo.core.domain import ball, make_box

    x = np.array([[0.0, 0.5], [0.98, 0.3]])
    box = ball(x, 0.05, 4, make_box(0, 1, 4))
    assert np.allclose(box.lower, [0.0, 0.45, 0.93, 0.25]) and np.allclose(box.upper, [0.05, 0.55, 1.0, 0.35])
    free = ball(x, 0.05, 4)
    assert np.allclose(free.lower, [-0.05, 0.45, 0.93, 0.25])


@pytest.mark.parametrize("args, says", [
    (["--center", "X", "--eps", "-0.1"], "--eps"),
    (["--center", "X"], "together"),
    (["--eps", "0.1", "--lower", "0", "--upper", "1"], "together"),
    (["--center", "BAD", "--eps", "0.1"], "--center has 5 values"),
    (["--center", "X", "--eps", "0.1", "--vnnlib", "V"], "not both"),
    (["--center", "X", "--eps", "0.1", "--lower", "0"], "both --lower and --upper"),
    (["--center", "MISSING", "--eps", "0.1"], "no such file"),
])
def test_bad_local_box_exits_2_with_one_line(args: list[str], says: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    module = _seeded(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)))
    model = _export(module, (1, 4, 4), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.full((1, 4, 4), 0.5))
    np.save(tmp_path / "bad.npy", np.zeros(5))
    (tmp_path / "v.vnnlib").write_text("(declare-const X_0 Real)\n")
    files = {"X": tmp_path / "x.npy", "BAD": tmp_path / "bad.npy", "V": tmp_path / "v.vnnlib",
             "MISSING": tmp_path / "nope.npy"}
    args = [str(files.get(a, a)) for a in args]
    out = tmp_path / "o.onnx"
    code = main(["compress", str(model), *args, "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert not out.exists()


def test_center_file_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _seeded(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)))
    model = _export(module, (1, 4, 4), tmp_path / "m.onnx")
    center = tmp_path / "x.npy"
    np.save(center, np.full((1, 4, 4), 0.5))
    before = center.read_bytes()
    code = main(["check", str(model), str(model), "--center", str(center), "--eps", "0.1",
                 "--counterexample", str(center), "--force"])
    assert code == 2 and center.read_bytes() == before


@pytest.mark.parametrize("form", ["script", "pt2"])
def test_torchscript_and_torch_export_cnns_are_read(form: str, tmp_path: Path) -> None:
    """A scripted TorchScript archive (given a shaped bound) and a torch.export program
    (which records its input shape) of a residual CNN read as the module computes."""
    module = _seeded(Residual(), seed=8)
    if form == "script":
        path = tmp_path / "m.pt"
        torch.jit.script(module).save(str(path))
        net = leo.io.load.load_network(path, shapes=((1, 4, 4),))
    else:
        path = tmp_path / "m.pt2"
        torch.export.save(torch.export.export(module, (torch.zeros(1, 1, 4, 4),)), str(path))
        net = leo.io.load.load_network(path)
    assert net.input_shape == (1, 4, 4)
    x = np.random.default_rng(9).uniform(0, 1, size=(200, 1, 4, 4))
    assert np.abs(net(x.reshape(200, -1)) - _torch(module, x)).max() < 1e-5


@pytest.mark.parametrize("op, attrs", [
    ("Conv", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("Conv", {"auto_pad": "SAME_LOWER", "kernel_shape": [2, 2]}),
    ("Conv", {"auto_pad": "VALID", "dilations": [2, 1]}),
    ("MaxPool", {"auto_pad": "SAME_UPPER", "kernel_shape": [2, 3], "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 0, 1, 2], "count_include_pad": 0}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 0, 1, 2], "count_include_pad": 1}),
])
def test_onnx_window_attributes_match_onnxruntime(op: str, attrs: dict, tmp_path: Path) -> None:
    """auto_pad and asymmetric pads, which torch never writes, in graphs built by hand."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    inits = []
    inputs = ["x"]
    if op == "Conv":
        kernel = attrs.get("kernel_shape", [3, 3])
        inits = [numpy_helper.from_array(rng.normal(size=(3, 2, *kernel)).astype(np.float32), "K")]
        inputs.append("K")
    nodes = [helper.make_node(op, inputs, ["h"], name="win", **attrs),
             helper.make_node("Flatten", ["h"], ["y"], name="flat")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2, 5, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "n"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "w.onnx"
    onnx.save(model, str(path))
    x = rng.uniform(-1, 1, size=(64, 2, 5, 6))
    want = _ort(path, x)
    got = load_onnx(path)(x.reshape(64, -1))
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_a_conv_too_large_to_lower_is_bad_input_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import leo.io.conv

    monkeypatch.setattr(leo.io.conv, "MAX_DENSE", 100)  # a 48 x 16 conv matrix is then too large
    path = _export(_cases()["padding"][0], (1, 4, 4), tmp_path / "m.onnx")
    assert main(["verify", str(path), "--lower", "0", "--upper", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "Conv" in err and "dense" in err and len(err.strip().splitlines()) == 1


# -- REDNet's flat form: every stable unit removed, active ones bypassed --------------------

def _reduction_record(reduction) -> dict:  # noqa: ANN001 - the certificate's form of a Reduction
    return {"removed_inactive": [list(u) for u in reduction.removed_inactive], "folds": [],
            "merged_layers": list(reduction.merged_layers),
            "bypassed_active": [list(u) for u in reduction.bypassed_active]}


@pytest.mark.parametrize("case", ["residual", "maxpool", "batchnorm", "concat-transpose"])
def test_bypass_removes_every_stable_unit_and_audit_replays_it(case: str) -> None:
    from leo.certify.audit import compare, replay
    from leo.reduction.reduce import reduce

    module, shape = _cases()[case]
    module = _seeded(module, seed=12)
    center = np.random.default_rng(1).random(shape)
    lower, upper = np.clip(center - 0.15, 0, 1), np.clip(center + 0.15, 0, 1)
    net = leo.api.as_network(module, like=lower)
    report = leo.verify(net, lower, upper, StabilityOptions(time_limit=5.0))
    red = reduce(net, report, bypass_active=True)
    unstable = sum(lr.width - len(lr.active) - len(lr.inactive) for lr in report.layers)
    assert sum(red.network.hidden) == unstable < sum(lr.width for lr in report.layers)
    assert sorted(u for units in red.bypassed_active for u in units) == sorted(
        u for lr in report.layers for u in lr.active)
    x = lower.ravel() + np.random.default_rng(2).random((20_000, lower.size)) * (upper - lower).ravel()
    assert np.abs(red.network(x) - _torch(module, x.reshape(-1, *shape))).max() < 1e-5
    claims = {lr.layer: [p.verdict for p in lr.proofs] for lr in report.layers}
    replayed = replay(net, claims, _reduction_record(red), 0.0)
    compare(replayed, red.network)


def test_audit_refutes_a_bypassed_unit_not_claimed_active() -> None:
    from leo.certify.audit import Refuted, replay
    from leo.reduction.reduce import reduce

    module, shape = _cases()["residual"]
    module = _seeded(module, seed=12)
    net = leo.api.as_network(module, like=np.zeros(shape))
    report = leo.verify(net, np.zeros(shape), np.ones(shape), StabilityOptions(time_limit=5.0))
    red = reduce(net, report, bypass_active=True)
    record = _reduction_record(red)
    claims = {lr.layer: [p.verdict for p in lr.proofs] for lr in report.layers}
    lr = next(lr for lr in report.layers if lr.unstable)
    record["bypassed_active"][lr.layer - 1] = sorted(record["bypassed_active"][lr.layer - 1] + [lr.unstable[0]])
    with pytest.raises(Refuted, match="bypassed, but not claimed stably active"):
        replay(net, claims, record, 0.0)


@pytest.mark.parametrize("shift", [-3.0, 0.0, 3.0])  # whole layers inactive, mixed, whole layers active
def test_bypass_on_mlps_equals_the_original_and_replays(shift: float) -> None:
    from leo.certify.audit import compare, replay
    from leo.reduction.reduce import reduce
    from tests.conftest import random_mlp

    for seed in range(4):
        net = random_mlp(np.random.default_rng(seed), [3, 6, 5, 4, 2], bias_shift=shift)
        lower, upper = np.full(3, -0.5), np.full(3, 0.5)
        report = leo.verify(net, lower, upper, StabilityOptions(time_limit=5.0))
        red = reduce(net, report, bypass_active=True)
        unstable = sum(lr.width - len(lr.active) - len(lr.inactive) for lr in report.layers)
        assert sum(red.network.hidden) == unstable
        x = lower + np.random.default_rng(seed).random((5000, 3)) * (upper - lower)
        assert np.abs(red.network(x) - net(x)).max() < 1e-9
        claims = {lr.layer: [p.verdict for p in lr.proofs] for lr in report.layers}
        compare(replay(net, claims, _reduction_record(red), 0.0), red.network)
