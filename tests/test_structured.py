"""``--form structured``: dead channels deleted whole, conv layers kept as Conv nodes.

Truth is independent of leo's reduction: the torch module's own forward pass (against
onnxruntime on the written ONNX and torch on the written TorchScript, on 2,000 points of
the box), the Conv nodes' weight shapes read with ``onnx``, and kernels built by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import leo
from leo.cli.main import main
from leo.io.conv import Window, conv_matrix
from leo.core.network import mlp
from leo.reduction.structured import conv_kernel, reduce_structured
from tests.conftest import seeded_module as _seeded

torch.set_num_threads(1)
SHAPE = (1, 6, 6)
POINTS = 2000


def _plant(bias: torch.Tensor, channels: list[int], value: float) -> None:
    with torch.no_grad():
        for c in channels:
            bias[c] = value


def _export(module: nn.Module, path: Path) -> Path:
    with torch.no_grad():
        torch.onnx.export(module, (torch.zeros(1, *SHAPE),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}}, opset_version=17)
    return path


def _points(n: int = POINTS) -> np.ndarray:
    return np.random.default_rng(1).uniform(0.0, 1.0, (n, *SHAPE))


def _truth(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.tensor(x, dtype=torch.float32)).numpy().reshape(len(x), -1)


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float64 if inp.type == "tensor(double)" else np.float32
    return sess.run(None, {inp.name: x.astype(dtype)})[0].reshape(len(x), -1)


def _conv_out_channels(path: Path) -> list[int]:
    """Output channels of each Conv node, in graph order, from its weight initializer."""
    model = onnx.load(str(path))
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return [inits[n.input[1]][0] for n in model.graph.node if n.op_type == "Conv"]


def _dead(out: Path) -> list[list[int]]:
    return json.loads(out.with_name(out.name + ".cert.json").read_text())["reduction"]["dead_channels"]


def _compress(capsys: pytest.CaptureFixture[str], model: Path, out: Path, *extra: str) -> str:
    code = main(["compress", str(model), "--lower", "0", "--upper", "1", "--form", "structured",
                 "-o", str(out), "-q", *extra])
    text = capsys.readouterr().out
    assert code == 0, text
    return text


def _audit(capsys: pytest.CaptureFixture[str], cert: Path) -> tuple[int, str]:
    code = main(["audit", str(cert)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# -- kernels back from matrices ---------------------------------------------------------

@pytest.mark.parametrize("geometry", [
    dict(kernel=(3, 3), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1),
    dict(kernel=(2, 3), strides=(2, 1), pads=(1, 0, 1, 2), dilations=(1, 1), group=1),
    dict(kernel=(2, 2), strides=(1, 2), pads=(1, 1, 1, 1), dilations=(2, 1), group=2),
    dict(kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=4),
])
def test_conv_kernel_reads_back_the_kernel_and_refuses_non_convs(geometry: dict) -> None:
    rng = np.random.default_rng(0)
    channels, out_channels, spatial = 4, 4, (5, 6)
    kernel = rng.normal(size=(out_channels, channels // geometry["group"], *geometry["kernel"]))
    n = len(spatial)
    window = Window(spatial, geometry["kernel"], geometry["strides"], geometry["pads"][:n],
                    geometry["pads"][n:], geometry["dilations"])
    matrix = conv_matrix(kernel, channels, window, geometry["group"])
    structure = {"op": "Conv", **{k: list(v) if isinstance(v, tuple) else v for k, v in geometry.items()},
                 "in_shape": [channels, *spatial], "out_shape": [out_channels, *window.out_spatial]}
    back = conv_kernel(matrix, structure)
    assert back is not None and np.array_equal(back, kernel)  # every tap is inside the input somewhere
    broken = matrix.copy()
    row, col = np.argwhere(matrix != 0)[0]
    broken[row, col] += 1.0  # one position's tap no longer shares the kernel entry
    assert conv_kernel(broken, structure) is None
    stray = matrix.copy()
    r, c = np.argwhere(matrix == 0)[0]
    stray[r, c] = 0.5  # an entry no tap reaches
    assert conv_kernel(stray, structure) is None
    if geometry["group"] == 1:  # a dense kernel read as grouped misses the cross-group taps
        assert conv_kernel(matrix, {**structure, "group": 2}) is None
    else:  # a grouped conv is a plain one whose cross-group taps are zero
        plain = conv_kernel(matrix, {**structure, "group": 1})
        assert plain is not None and np.array_equal(conv_matrix(plain, channels, window, 1), matrix)


# -- dead channels ------------------------------------------------------------------------

def _cnn(variant: str) -> tuple[nn.Module, list[list[int]]]:
    """A tiny CNN and its planted dead channels, per conv layer (0-based channel indices)."""
    if variant == "stride-padding":
        m = _seeded(nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 2, stride=2, padding=1),
                                  nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)))
        _plant(m[0].bias, [1], -20.0)
        _plant(m[2].bias, [2], -30.0)
        return m, [[1], [2]]
    if variant == "dilation":
        m = _seeded(nn.Sequential(nn.Conv2d(1, 4, 2, dilation=2, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3),
                                  nn.ReLU(), nn.Flatten(), nn.Linear(48, 2)))
        _plant(m[0].bias, [0, 3], -20.0)
        return m, [[0, 3], []]
    if variant == "groups":
        m = _seeded(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 2, groups=2), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(36, 2)))
        _plant(m[2].bias, [1, 3], -30.0)  # one per group: the grouped conv stays rectangular
        return m, [[], [1, 3]]
    if variant == "batchnorm":
        m = _seeded(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                                  nn.Conv2d(3, 2, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)))
        _plant(m[1].bias, [2], -40.0)
        return m, [[2], []]
    raise ValueError(variant)


def _relu_outputs(module: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    """The module's own activations after each ReLU, (n, C, H, W), on the points ``x``."""
    out, h = [], torch.tensor(x, dtype=torch.float32)
    with torch.no_grad():
        for layer in module:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                out.append(h.numpy())
    return out


@pytest.mark.parametrize("variant", ["stride-padding", "dilation", "groups", "batchnorm"])
def test_dead_channels_leave_the_written_onnx_which_equals_the_module(
        variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module, planted = _cnn(variant)
    model = _export(module, tmp_path / "m.onnx")
    out = tmp_path / "small.onnx"
    text = _compress(capsys, model, out)
    dead = _dead(out)
    x = _points()
    for k, (want, relu) in enumerate(zip(planted, _relu_outputs(module, x))):
        assert set(want) <= set(dead[k])  # the planted ones are found ...
        assert all(not relu[:, c].any() for c in dead[k])  # ... and every channel removed is zero on the samples
    convs = [c.out_channels for c in module if isinstance(c, nn.Conv2d)]
    assert _conv_out_channels(out) == [c - len(d) for c, d in zip(convs, dead)]
    assert f"structured: removed {sum(len(d) for d in dead)} channels" in text
    assert np.abs(_ort(out, x) - _truth(module, x)).max() <= 1e-5
    code, said = _audit(capsys, out.with_name(out.name + ".cert.json"))
    assert code == 0, said


def test_torchscript_and_float64_outputs_equal_the_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module, _ = _cnn("stride-padding")  # dead: channel 1 of the first conv, 2 of the second
    expected = [2, 3]
    model = _export(module, tmp_path / "m.onnx")
    x = _points()
    pt = tmp_path / "small.pt"
    _compress(capsys, model, pt)
    scripted = torch.jit.load(str(pt))
    assert [c.out_channels for c in scripted.modules() if getattr(c, "original_name", "") == "Conv2d"] == expected
    with torch.no_grad():
        got = scripted(torch.tensor(x, dtype=torch.float32)).numpy().reshape(len(x), -1)
    assert np.abs(got - _truth(module, x)).max() <= 1e-5
    assert _audit(capsys, pt.with_name(pt.name + ".cert.json"))[0] == 0
    net = leo.io.load_network(model)  # float64 truth: leo's own network of the original file
    want = net(x.reshape(len(x), -1))
    wide = tmp_path / "small64.onnx"  # float64 ONNX: dense layers (onnxruntime has no float64 Conv)
    _compress(capsys, model, wide, "--float64")
    assert np.abs(_ort(wide, x) - want).max() <= 1e-9
    wide_pt = tmp_path / "small64.pt"
    _compress(capsys, model, wide_pt, "--float64")
    with torch.no_grad():
        got = torch.jit.load(str(wide_pt))(torch.tensor(x, dtype=torch.float64)).numpy().reshape(len(x), -1)
    assert np.abs(got - want).max() <= 1e-9


def test_reduction_names_the_dead_channels(tmp_path: Path) -> None:
    module, _ = _cnn("stride-padding")
    result = leo.compress(module, np.zeros(SHAPE), np.ones(SHAPE), form="structured")
    red = result.reduction
    assert red.form == "structured" and red.dead_channels == ((1,), (2,), ())
    assert set(range(16, 32)) <= set(red.removed_inactive[0])  # channel 1 of a 2x4x4... of 3x4x4 layer
    cert = result.certificate["reduction"]
    assert cert["dead_channels"] == [[1], [2], []] and cert["form"] == "structured"


def test_a_grouped_reader_keeps_a_lone_dead_channel_and_stays_exact(tmp_path: Path) -> None:
    module = _seeded(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 2, groups=2), nn.ReLU(),
                                   nn.Flatten(), nn.Linear(36, 2)))
    _plant(module[0].bias, [0], -20.0)  # group 0 of the reader would lose one of its two inputs
    result = leo.compress(module, np.zeros(SHAPE), np.ones(SHAPE), form="structured")
    assert result.reduction.dead_channels[0] == ()
    out = tmp_path / "small.onnx"
    result.save(out)
    assert _conv_out_channels(out) == [4, 4]
    x = _points()
    assert np.abs(_ort(out, x) - _truth(module, x)).max() <= 1e-5


def test_audit_refuses_a_dead_channel_with_a_unit_not_claimed_inactive(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module, _ = _cnn("stride-padding")
    model = _export(module, tmp_path / "m.onnx")
    out = tmp_path / "small.onnx"
    _compress(capsys, model, out)
    cert_path = out.with_name(out.name + ".cert.json")
    cert = json.loads(cert_path.read_text())
    layer1 = next(e for e in cert["layers"] if e["layer"] == 1)
    tampered = json.loads(json.dumps(cert))
    next(e for e in tampered["layers"] if e["layer"] == 1)["units"][16 + 5]["verdict"] = "unstable"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tampered))
    code, said = _audit(capsys, bad)
    assert code == 1 and "channel 1" in said and "not claimed stably inactive" in said
    live = next(c for c in range(3) if any(u["verdict"] != "inactive" for u in layer1["units"][c * 16:(c + 1) * 16]))
    tampered = json.loads(json.dumps(cert))
    tampered["reduction"]["dead_channels"][0].append(live)
    bad.write_text(json.dumps(tampered))
    code, said = _audit(capsys, bad)
    assert code == 1 and f"channel {live}" in said


# -- all-active layers -------------------------------------------------------------------

def _active_first(padding: int) -> nn.Module:
    m = _seeded(nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 2, stride=2, padding=padding),
                              nn.ReLU(), nn.Flatten(), nn.Linear(4 * (2 + padding) ** 2, 2)), seed=3)
    _plant(m[0].bias, [0, 1, 2], 20.0)  # every unit of the first conv stably active
    return m


def test_all_active_conv_without_padding_merges_into_one_conv(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    module = _active_first(padding=0)
    model = _export(module, tmp_path / "m.onnx")
    out = tmp_path / "small.onnx"
    text = _compress(capsys, model, out)
    assert "merged 1 linear layer into the next (layer 1)" in text
    left = 4 - len(_dead(out)[1])
    kernels = [i for i in onnx.load(str(out)).graph.initializer if i.name.startswith("K")]
    assert [tuple(k.dims) for k in kernels] == [(left, 1, 4, 4)]  # 2x2 stride 2 after 3x3: a 4x4 kernel
    x = _points()
    assert np.abs(_ort(out, x) - _truth(module, x)).max() <= 1e-5
    assert _audit(capsys, out.with_name(out.name + ".cert.json"))[0] == 0


def test_all_active_conv_with_padding_after_it_stays_two_convs(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    module = _active_first(padding=1)  # the second conv reads zeros where the first conv has none
    model = _export(module, tmp_path / "m.onnx")
    out = tmp_path / "small.onnx"
    text = _compress(capsys, model, out)
    assert "kept without ReLU (layer 1" in text
    assert _conv_out_channels(out) == [3, 4 - len(_dead(out)[1])]
    relus = [n for n in onnx.load(str(out)).graph.node if n.op_type == "Relu"]
    assert len(relus) == 1
    x = _points()
    assert np.abs(_ort(out, x) - _truth(module, x)).max() <= 1e-5
    cert_path = out.with_name(out.name + ".cert.json")
    assert _audit(capsys, cert_path)[0] == 0
    cert = json.loads(cert_path.read_text())
    assert cert["reduction"]["linear_layers"] == [1]
    next(e for e in cert["layers"] if e["layer"] == 1)["units"][0]["verdict"] = "unstable"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(cert))
    code, said = _audit(capsys, bad)
    assert code == 1 and "loses its ReLU" in said


# -- dense layers ---------------------------------------------------------------------

def test_a_dense_mlp_gets_the_same_network_as_form_leo() -> None:
    rng = np.random.default_rng(4)
    sizes = [4, 8, 8, 3]
    ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=8) + np.r_[np.full(3, 3.0), np.full(3, -3.0), 0, 0], rng.normal(size=8) * 0.5,
          rng.normal(size=3)]
    net = mlp(ws, bs)
    lo, hi = np.zeros(4), np.ones(4)
    base = leo.compress(net, lo, hi, form="leo")
    structured = reduce_structured(net, base.report)
    assert sum(len(u) for u in base.reduction.removed_inactive) > 0  # the fixture removes something
    assert structured.removed_inactive == base.reduction.removed_inactive
    assert structured.merged_layers == base.reduction.merged_layers
    assert structured.folded_active == base.reduction.folded_active
    assert len(structured.network.layers) == len(base.network.layers)
    for a, b in zip(structured.network.layers, base.network.layers):
        assert a.relu == b.relu and set(a.weights) == set(b.weights)
        assert np.array_equal(a.bias, b.bias)
        assert all(np.array_equal(a.weights[s], b.weights[s]) for s in a.weights)
    via_api = leo.compress(net, lo, hi, form="structured")
    x = np.random.default_rng(5).uniform(0, 1, (POINTS, 4))
    assert np.abs(via_api.network(x) - net(x)).max() <= 1e-9


def test_written_parameters_count_conv_kernels_as_torch_does(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    module, _ = _cnn("stride-padding")
    model = _export(module, tmp_path / "m.onnx")
    out = tmp_path / "small.onnx"
    text = _compress(capsys, model, out)
    before = sum(p.numel() for p in module.parameters())
    floats = [i for i in onnx.load(str(out)).graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    after = sum(int(np.prod(i.dims)) for i in floats)
    assert f"parameters as written (conv layers by their kernels) {before} -> {after}" in text
    written = json.loads(out.with_name(out.name + ".cert.json").read_text())["reduction"]["parameters_as_written"]
    assert written == {"original": before, "compressed": after}
    pt = tmp_path / "small.pt"  # TorchScript: the convs carry their per-channel biases too
    _compress(capsys, model, pt)
    assert sum(p.numel() for p in torch.jit.load(str(pt)).parameters()) == after
    assert after < before


def test_exact_step_refuses_an_unknown_form() -> None:
    from leo.api import exact_step
    from leo.core.domain import make_box
    from leo.errors import LeoInputError

    net = mlp([np.eye(2)], [np.zeros(2)])
    with pytest.raises(LeoInputError, match="unknown form"):  # was a NameError: LeoInputError not imported
        exact_step(net, make_box(0.0, 1.0, 2), form="bogus")


class _Residual(nn.Module):
    """conv -> relu -> (conv + skip) -> relu -> dense: the block's layer reads two sources."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3, padding=1)
        self.c2 = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c1(x))
        return self.fc(torch.relu(self.c2(h) + h).flatten(1))


def test_a_residual_block_loses_a_dead_channel_and_stays_exact(tmp_path: Path) -> None:
    module = _seeded(_Residual())
    _plant(module.c1.bias, [1], -20.0)
    result = leo.compress(module, np.zeros(SHAPE), np.ones(SHAPE), form="structured")
    assert 1 in result.reduction.dead_channels[0]
    x = _points()
    assert not _truth_relu1(module, x)[:, 1].any()  # the channel is dead on the samples too
    for name in ("small.onnx", "small.pt"):
        result.save(tmp_path / name)
    assert _conv_out_channels(tmp_path / "small.onnx")[0] == 3 - len(result.reduction.dead_channels[0])
    assert np.abs(_ort(tmp_path / "small.onnx", x) - _truth(module, x)).max() <= 1e-5
    with torch.no_grad():
        got = torch.jit.load(str(tmp_path / "small.pt"))(torch.tensor(x, dtype=torch.float32)).numpy()
    assert np.abs(got - _truth(module, x)).max() <= 1e-5


def _truth_relu1(module: _Residual, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.relu(module.c1(torch.tensor(x, dtype=torch.float32))).numpy()


def test_asymmetric_pads_are_written_exactly(tmp_path: Path) -> None:
    """Pads (top 1, left 0, bottom 0, right 2), as ONNX auto_pad can make: torch's Conv2d
    pads symmetrically, so the TorchScript pads first; both files equal leo's network."""
    from leo.core.network import INPUT_SHAPE, Layer, Network

    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(2, 1, 2, 3))
    window = Window((6, 6), (2, 3), (1, 2), (1, 0), (0, 2), (1, 1))
    out_shape = (2, *window.out_spatial)
    structure = {"op": "Conv", "kernel": [2, 3], "strides": [1, 2], "pads": [1, 0, 0, 2], "dilations": [1, 1],
                 "group": 1, "in_shape": [1, 6, 6], "out_shape": list(out_shape)}
    conv = Layer({0: conv_matrix(kernel, 1, window, 1)}, np.repeat([0.5, -0.25], np.prod(out_shape[1:])), True,
                 out_shape, structure)
    dense = Layer({1: rng.normal(size=(2, conv.width))}, np.zeros(2), False)
    net = Network(36, (conv, dense), {INPUT_SHAPE: "1,6,6"})
    x = _points()
    want = net(x.reshape(len(x), -1))
    leo.save_network(net, tmp_path / "a.onnx")
    leo.save_network(net, tmp_path / "a.pt")
    assert _conv_out_channels(tmp_path / "a.onnx") == [2]
    assert np.abs(_ort(tmp_path / "a.onnx", x) - want).max() <= 1e-5
    with torch.no_grad():
        got = torch.jit.load(str(tmp_path / "a.pt"))(torch.tensor(x, dtype=torch.float32)).numpy()
    assert np.abs(got - want).max() <= 1e-5
    back = leo.io.load_network(tmp_path / "a.pt")
    assert dict(back.layers[0].structure) == structure


def test_a_written_model_larger_than_the_users_file_is_said_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A MaxPool is lowered to ReLU layers and its reader written dense: fewer units, a much bigger file.
    The note compares the two files' real sizes; a model that got smaller gets no note."""
    torch.manual_seed(1)
    pooled = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                           nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)).eval()
    model = _export(pooled, tmp_path / "pooled.onnx")
    out = tmp_path / "small.onnx"
    text = _compress(capsys, model, out, "--form", "leo")  # structured keeps an intact MaxPool as a MaxPool
    assert out.stat().st_size > 2 * model.stat().st_size
    assert f"note: {out} (" in text and "is larger than" in text and ".module()" in text
    mlp_ = nn.Sequential(nn.Flatten(), nn.Linear(36, 40), nn.ReLU(), nn.Linear(40, 3)).eval()
    _plant(mlp_[1].bias, list(range(30)), -100.0)  # 30 of 40 units dead: a model that gets smaller
    dense = _export(mlp_, tmp_path / "dense.onnx")
    small = tmp_path / "dense-small.onnx"
    text = _compress(capsys, dense, small)
    assert small.stat().st_size <= dense.stat().st_size and "note:" not in text
