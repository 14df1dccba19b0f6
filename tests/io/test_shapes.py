"""Models come back with the input shape they came with (issue 13, defect 4).

A model whose first layer is nn.Flatten on [1, 1, 5, 5] inputs: its compression, as a
module, as TorchScript and as ONNX, takes [batch, 1, 5, 5] and computes what the
original computes (truth: the original module in torch; onnxruntime for ONNX).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import leo
from leo.api import _shape_candidates, as_network
from leo.core.domain import make_box
from leo.errors import LeoInputError
from leo.io.load import load_network
from leo.io.save import save_network
from leo.core.network import Network
from leo.reduction.reduce import reduce
from leo.stability.analysis import StabilityOptions, analyse

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
SHAPE = (1, 5, 5)


def _flatten_first(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(25, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():  # some units stable on [0, 1]^25, so compression changes the network
        model[1].bias[:4] += 3.0
        model[1].bias[4:7] -= 3.0
    return model.eval()


class FlatResidual(nn.Module):
    """x.flatten(1), then a residual block: compresses to a network with a skip."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.fc1, self.fc2, self.fc3 = nn.Linear(25, 10), nn.Linear(10, 10), nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(h + torch.relu(self.fc2(h)))


def _inputs(n: int = 500) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(3))


def _close(got: torch.Tensor | np.ndarray, want: torch.Tensor) -> None:
    got = torch.as_tensor(np.asarray(got, dtype=np.float32))
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5 * (1 + want.abs().max().item())


def _ort(path: Path, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert list(inp.shape[1:]) == list(SHAPE)
    return sess.run(None, {inp.name: x.numpy().astype(np.float32)})[0]


@pytest.mark.parametrize("bound_shape", [SHAPE, (1, *SHAPE)])
def test_compressed_module_takes_the_original_shape(bound_shape: tuple[int, ...]) -> None:
    model = _flatten_first()
    result = leo.compress(model, np.zeros(bound_shape), np.ones(bound_shape))
    assert result.network.input_shape == SHAPE
    assert sum(result.network.hidden) < 20  # it did compress
    x = _inputs()
    with torch.no_grad():
        _close(result.module()(x), model(x))


def test_saved_models_take_the_original_shape(tmp_path: Path) -> None:
    model = _flatten_first()
    result = leo.compress(model, np.zeros(SHAPE), np.ones(SHAPE))
    x = _inputs()
    with torch.no_grad():
        want = model(x)
    save_network(result.network, tmp_path / "small.pt")
    save_network(result.network, tmp_path / "small.onnx")
    with torch.no_grad():
        _close(torch.jit.load(str(tmp_path / "small.pt"))(x), want)  # no leo needed
    _close(_ort(tmp_path / "small.onnx", x), want)
    # and leo reads both back with the shape
    for name in ("small.pt", "small.onnx"):
        assert load_network(tmp_path / name).input_shape == SHAPE


def test_network_with_skips_keeps_the_shape(tmp_path: Path) -> None:
    model = FlatResidual().eval()
    result = leo.compress(model, np.zeros(SHAPE), np.ones(SHAPE))
    assert not result.network.is_mlp and result.network.input_shape == SHAPE
    x = _inputs()
    with torch.no_grad():
        want = model(x)
        _close(result.module()(x), want)
    save_network(result.network, tmp_path / "skip.onnx")
    save_network(result.network, tmp_path / "skip.pt")
    _close(_ort(tmp_path / "skip.onnx", x), want)
    with torch.no_grad():
        _close(torch.jit.load(str(tmp_path / "skip.pt"))(x), want)


def test_scalar_bounds_still_give_a_module_for_the_original_shape() -> None:
    """Without a shaped bound the shape is unknown; the module flattens what it gets."""
    model = _flatten_first()
    result = leo.compress(model, 0.0, 1.0)
    assert result.network.input_shape is None
    x = _inputs()
    with torch.no_grad():
        _close(result.module()(x), model(x))
        _close(result.module()(x.reshape(len(x), -1)), model(x))


def test_onnx_import_records_the_shape(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    torch.onnx.export(_flatten_first(), (torch.zeros(1, *SHAPE),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    net = load_network(path)
    assert net.input_shape == SHAPE and net.metadata["architecture_source"] == "onnx"
    box = make_box(0.0, 1.0, net.input_dim)
    small = reduce(net, analyse(net, box, StabilityOptions(samples=128))).network
    assert small.input_shape == SHAPE  # reduce keeps it
    save_network(small, tmp_path / "small.onnx")
    x = _inputs(100)
    _close(_ort(tmp_path / "small.onnx", x), torch.as_tensor(_ort(path, x)))


def test_export_program_records_the_shape(tmp_path: Path) -> None:
    model = _flatten_first()
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(2, *SHAPE),)), str(path))
    net = load_network(path)
    assert net.input_shape == SHAPE
    x = _inputs(64)
    with torch.no_grad():
        _close(net(x.reshape(len(x), -1).double().numpy()), model(x))


def test_network_checks_the_shape() -> None:
    net = as_network(_flatten_first())
    with pytest.raises(LeoInputError, match="input shape"):
        net.with_metadata(input_shape="2,5,5")
    assert net.with_metadata(input_shape="5,5").input_shape == (5, 5)


def test_bounds_in_the_input_shape() -> None:
    for lo in (np.zeros(SHAPE), np.zeros((1, *SHAPE)), torch.zeros(1, *SHAPE), np.zeros(25)):
        assert make_box(lo, 1.0, 25).dim == 25
    with pytest.raises(LeoInputError, match="entries"):
        make_box(np.zeros((2, 5, 5)), 1.0, 25)
    # a leading 1 is a batch dimension for 2-D and 4-D bounds, part of the input otherwise
    assert _shape_candidates(np.zeros((1, 1, 5, 5)))[0] == (1, 5, 5)
    assert _shape_candidates(np.zeros((1, 5, 5)))[0] == (1, 5, 5)
    assert _shape_candidates(np.zeros((1, 25)))[0] == (25,)
    assert _shape_candidates(np.float64(0.0)) == []


def test_network_pickles_with_its_shape() -> None:
    import pickle

    net = as_network(_flatten_first(), like=np.zeros(SHAPE))
    again = pickle.loads(pickle.dumps(net))
    assert isinstance(again, Network) and again.input_shape == SHAPE
