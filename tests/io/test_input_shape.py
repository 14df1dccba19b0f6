"""A user's model is read with its input shape (issue 27, item 1).

Small pooled CNNs built the way users build them (an ``nn.Sequential`` LeNet and a custom
residual class) are saved as traced TorchScript, scripted TorchScript, ONNX (torch.onnx) and
``.pt2`` (torch.export). The shape comes from the file where it records one, from
``--input-shape`` / ``input_shape=`` otherwise, and a shape that disagrees with the file or
that the model does not run on is one line, exit 2. Truth: the module's own forward pass in
torch, and onnxruntime on what ``compress`` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import leo
from leo.cli.main import main
from leo.errors import LeoInputError
from leo.stability.analysis import StabilityOptions

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

SHAPE = (1, 14, 14)  # the LeNet's flat guesses (16,), (8,) are wrong, as (784,), (32,) were for 28x28
RES_SHAPE = (1, 8, 8)
FORMS = ("trace", "script", "onnx", "pt2")
QUICK = StabilityOptions(time_budget=1.5, samples=256)


def _lenet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 4, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


class ResidualCNN(nn.Module):
    """A user's own class: a conv stem, a residual block, pooling, then dense."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.body = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + torch.relu(self.body(h))
        return self.head(self.pool(h).flatten(1))


def _save(module: nn.Module, shape: tuple[int, ...], form: str, folder: Path) -> Path:
    example = torch.zeros(1, *shape)
    path = folder / {"trace": "m.ts", "script": "m.pt", "onnx": "m.onnx", "pt2": "m.pt2"}[form]
    if form == "trace":
        torch.jit.trace(module, example).save(str(path))
    elif form == "script":
        torch.jit.script(module).save(str(path))
    elif form == "onnx":
        with torch.no_grad():
            torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}}, opset_version=17)
    else:
        torch.export.save(torch.export.export(module, (example,)), str(path))
    return path


def _torch(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(x, dtype=torch.float32)).reshape(len(x), -1).double().numpy()


def _assert_reads_as(net: leo.Network, module: nn.Module, shape: tuple[int, ...]) -> None:
    assert net.input_shape == shape
    x = np.random.default_rng(5).uniform(-1, 2, size=(300, *shape))
    assert np.abs(net(x.reshape(len(x), -1)) - _torch(module, x)).max() < 1e-4


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("build, shape", [(_lenet, SHAPE), (ResidualCNN, RES_SHAPE)], ids=["lenet", "residual"])
def test_each_form_is_read_with_its_shape(build, shape: tuple[int, ...], form: str, tmp_path: Path) -> None:
    """The recorded shape where the file has one; a scripted archive needs input_shape=."""
    module = build()
    path = _save(module, shape, form, tmp_path)
    if form == "script":
        with pytest.raises(LeoInputError, match=r"--input-shape C,H,W \(input_shape="):
            leo.load_network(path)
        net = leo.load_network(path, input_shape=shape)
    else:
        net = leo.load_network(path)
    _assert_reads_as(net, module, shape)


def test_traced_lenet_given_scalar_bounds_goes_through_verify_and_compress(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case: `leo verify pool.ts --lower 0 --upper 1` said it could not find an input shape."""
    module = _lenet()
    model = _save(module, SHAPE, "trace", tmp_path)
    box = ["--lower", "0", "--upper", "1", "--time-budget", "1.5", "--samples", "256", "-q"]
    assert main(["verify", str(model), *box, "--json", str(tmp_path / "r.json")]) == 0
    small = tmp_path / "small.onnx"
    assert main(["compress", str(model), *box, "-o", str(small), "--form", "flat"]) == 0
    x = np.random.default_rng(6).random((2000, *SHAPE))
    sess = ort.InferenceSession(str(small), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert list(inp.shape[1:]) == list(SHAPE)  # it takes the user's shape
    got = sess.run(None, {inp.name: x.astype(np.float32)})[0]
    assert np.abs(got - _torch(module, x)).max() < 1e-4


def test_scripted_model_takes_input_shape_on_the_command_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    module = ResidualCNN()
    model = _save(module, RES_SHAPE, "script", tmp_path)
    box = ["--lower", "0", "--upper", "1", "-q"]
    err = _one_line_error(capsys, main(["verify", str(model), *box]))
    assert "records no input shape" in err and "--input-shape" in err and "input_shape=" in err
    out = tmp_path / "small.onnx"
    assert main(["compress", str(model), *box, "--time-budget", "1.5", "--input-shape", "1,8,8", "-o", str(out)]) == 0
    x = np.random.default_rng(7).random((500, *RES_SHAPE))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    assert np.abs(got - _torch(module, x)).max() < 1e-4
    # check reads both with the same option; the box is the model's
    assert main(["check", str(model), str(out), *box, "--input-shape", "1,8,8", "--points", "2000"]) == 0


@pytest.mark.parametrize("form", ["trace", "onnx", "pt2"])
def test_a_shape_that_disagrees_with_the_file_is_refused(form: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    model = _save(_lenet(), SHAPE, form, tmp_path)
    out = tmp_path / "o.onnx"
    code = main(["compress", str(model), "--lower", "0", "--upper", "1", "--input-shape", "1,16,16",
                 "-o", str(out), "-q"])
    err = _one_line_error(capsys, code)
    assert "1,16,16 disagrees with the input shape 1,14,14" in err
    assert not out.exists()
    code = main(["verify", str(model), "--lower", "0", "--upper", "1", "--input-shape", "1,1,14,14", "-q"])
    assert "without the batch dimension" in _one_line_error(capsys, code)


@pytest.mark.parametrize("shape, says", [
    ("3,14,14", "does not run on inputs of shape 3,14,14"),  # wrong channels
    ("1,1,14,14", "without the batch dimension"),
    ("1,a,14", "positive integers"),
    ("0,14,14", "positive integers"),
])
def test_a_shape_the_model_does_not_run_on_is_one_line(shape: str, says: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = _save(_lenet(), SHAPE, "script", tmp_path)
    code = main(["verify", str(model), "--lower", "0", "--upper", "1", "--input-shape", shape, "-q"])
    assert says in _one_line_error(capsys, code)


def test_input_shape_in_the_api(tmp_path: Path) -> None:
    """An in-memory module that records no shape: input_shape= (or shaped bounds) gives it."""
    module = _lenet()
    with pytest.raises(LeoInputError, match="input_shape="):
        leo.verify(module, 0.0, 1.0, QUICK)
    report = leo.verify(module, 0.0, 1.0, QUICK, input_shape=SHAPE)
    assert report.box.dim == int(np.prod(SHAPE))
    result = leo.compress(module, 0.0, 1.0, QUICK, input_shape=[1, 14, 14], check_points=2000)
    x = np.random.default_rng(8).random((500, *SHAPE))
    with torch.no_grad():
        got = result.module()(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    assert np.abs(got - _torch(module, x)).max() < 1e-4
    with pytest.raises(LeoInputError, match="does not run on"):
        leo.as_network(module, input_shape=(1, 10, 10))
    # a traced module in memory records the shape it was traced on; a different one is refused
    traced = torch.jit.trace(module, torch.zeros(2, *SHAPE))
    _assert_reads_as(leo.as_network(traced), module, SHAPE)
    with pytest.raises(LeoInputError, match="disagrees"):
        leo.as_network(traced, input_shape=(1, 16, 16))


def test_traced_on_a_vector_and_state_dicts(tmp_path: Path) -> None:
    """A Linear model traced on an unbatched vector, and a state_dict (flat, no shape recorded)."""
    torch.manual_seed(2)
    mlp = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).eval()

    class Skip(nn.Module):  # not a plain chain: read through its graph
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(x + torch.relu(self.a(x)))

    skip = Skip().eval()
    path = tmp_path / "v.ts"
    torch.jit.trace(skip, torch.zeros(6)).save(str(path))
    _assert_reads_as(leo.load_network(path), skip, (6,))
    ckpt = tmp_path / "sd.pt"
    torch.save(mlp.state_dict(), ckpt)
    with pytest.raises(LeoInputError, match="holds 4 values but"):
        leo.load_network(ckpt, input_shape=(2, 2))
    net = leo.load_network(ckpt, input_shape=(1, 2, 3))  # the Flatten a state_dict cannot record
    assert net.input_shape == (1, 2, 3)
    x = np.random.default_rng(3).random((100, 1, 2, 3))
    assert np.abs(net(x.reshape(100, -1)) - _torch(mlp, x.reshape(100, 6))).max() < 1e-5


def test_property_takes_input_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`leo property` on a scripted archive: refused without a shape, read with one (an unsafe
    set every input reaches, so the answer is a counterexample the forward pass confirms)."""
    module = ResidualCNN()
    model = _save(module, RES_SHAPE, "script", tmp_path)
    n = int(np.prod(RES_SHAPE))
    text = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))\n" for i in range(n))
    spec = tmp_path / "p.vnnlib"
    spec.write_text(text + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (<= Y_0 1000000.0))\n")
    assert "--input-shape" in _one_line_error(capsys, main(["property", str(model), str(spec), "-q"]))
    cx = tmp_path / "cx.npy"
    assert main(["property", str(model), str(spec), "--input-shape", "1,8,8", "--counterexample", str(cx),
                 "--time-limit", "20", "-q"]) == 1
    assert capsys.readouterr().out.split()[0].rstrip(":") == "sat"
    x = np.load(cx).reshape(1, *RES_SHAPE)
    assert (x >= 0).all() and (x <= 1).all() and _torch(module, x)[0, 0] <= 1e6
