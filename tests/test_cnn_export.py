"""Written models proportional to the user's (issue 27 item 4): a MaxPool that leo lowered
to ReLU layers is written as a MaxPool again while those layers are still exactly that
pool, convolutions stay Conv nodes, and the matrices a reduction leaves mostly zero
(selections, bypasses) are written by their nonzeros, in ONNX and in TorchScript.

Truth is independent of the writer: the user's own torch module (or leo's numpy forward
pass of the network that was written) against onnxruntime and torch on the written files,
on dense samples of the box; onnx's own reading of the graph; file sizes on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from leo.core.network import Layer, Network
from leo.io.load import load_network
from leo.io.pool_export import pool_runs
from leo.io.save import save_network

torch.set_num_threads(1)
POINTS = 20_000


def _lenet() -> nn.Sequential:
    """The LeNet-like model of the issue: conv, ReLU, MaxPool, conv, ReLU, MaxPool, Flatten,
    Linear, ReLU, Linear, as a user writes it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 24), nn.ReLU(), nn.Linear(24, 10)).eval()


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> tuple[nn.Module, Path, Network]:
    """The user's module, its traced archive, and leo's reading of it."""
    path = tmp_path_factory.mktemp("user") / "pool.ts"
    model = _lenet()
    torch.jit.trace(model, torch.zeros(1, 1, 28, 28)).save(str(path))
    return model, path, load_network(path)


def _box_points(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """``n`` points of [0, 1]^d, a tenth of them corners."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0.0, 1.0, (n, *shape))
    pts[: n // 10] = rng.integers(0, 2, (n // 10, *shape))
    return pts


def _onnx_outputs(path: Path, pts: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: c.astype(np.float32)})[0] for c in np.array_split(pts, 10)])


def _torch_outputs(module: nn.Module, pts: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([module(torch.tensor(c, dtype=torch.float32)).numpy() for c in np.array_split(pts, 10)])


def _close(x: np.ndarray, y: np.ndarray, scale: float) -> bool:
    """Equal up to float32 rounding (the tolerance ``leo audit`` compares a written file with)."""
    return bool(np.all(np.abs(x - y) <= 2.0**-23 * np.abs(x) + 1e-12 * scale))


def _same_layers(a: Network, b: Network) -> bool:
    """What ``leo audit`` requires of a written file: the same layers, weights to float32."""
    def scale(layer: Layer) -> float:
        return max(float(np.abs(layer.bias).max()), *(float(np.abs(w).max()) for w in layer.weights.values()))

    return len(a.layers) == len(b.layers) and all(
        x.relu == y.relu and set(x.weights) == set(y.weights) and _close(x.bias, y.bias, scale(x))
        and all(_close(x.weights[s], y.weights[s], scale(x)) for s in x.weights)
        for x, y in zip(a.layers, b.layers))


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_pool_model_is_written_with_its_pools_and_convs(traced, tmp_path, suffix):
    """The user's LeNet-like model as leo reads it (MaxPools lowered to 4 ReLU layers) is
    written with MaxPool and Conv ops, at most 4x the user's traced archive (dense: ~50x),
    computes what the user's module computes on 20,000 box points, and reads back the same."""
    model, user_file, net = traced
    assert len(net.layers) == 10 and len(pool_runs(net)) == 2
    out = save_network(net, tmp_path / f"m{suffix}")
    assert out.stat().st_size <= 4 * user_file.stat().st_size
    pts = _box_points(POINTS, (1, 28, 28))
    got = _onnx_outputs(out, pts) if suffix == ".onnx" else _torch_outputs(torch.jit.load(str(out)), pts)
    assert np.abs(got - _torch_outputs(model, pts)).max() <= 1e-4
    assert _same_layers(net, load_network(out))
    if suffix == ".onnx":
        ops = [n.op_type for n in onnx.load(str(out)).graph.node]
        assert ops.count("MaxPool") == 2 and ops.count("Conv") == 2


def _without_unit(net: Network, k: int, unit: int) -> Network:
    """``net`` with unit ``unit`` of layer ``k`` removed (its row, and its column where read),
    as a reduction removes a stably inactive unit: the pool is no longer exactly a MaxPool."""
    layers = []
    for j, layer in enumerate(net.layers, start=1):
        weights = {s: np.delete(w, unit, axis=1) if s == k else w for s, w in layer.weights.items()}
        bias = layer.bias
        if j == k:
            weights = {s: np.delete(w, unit, axis=0) for s, w in weights.items()}
            bias = np.delete(bias, unit)
        keep = j != k and layer.shape is not None and (layer.structure is None or "pool_kernel" not in layer.structure)
        layers.append(Layer(weights, bias, layer.relu, layer.shape if keep else None,
                            layer.structure if keep else None))
    return Network(net.input_dim, tuple(layers), dict(net.metadata))


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_a_changed_pool_is_written_by_its_nonzeros(traced, tmp_path, suffix, monkeypatch):
    """A pool that lost a unit is no MaxPool: its layers and the layers reading it are written
    sparsely, so the file is proportional to the nonzeros (12 bytes each at most, plus the
    conv kernels and a little structure), not to the dense matrices; it still computes the
    network's function and reads back the same. (This model's matrices are below the size
    from which a user's are written sparsely: the threshold is lowered to reach that path.)"""
    monkeypatch.setattr("leo.io.sparse.SPARSE_MIN_BYTES", 0)
    _, _, original = traced
    net = _without_unit(original, 2, 5)
    assert 2 not in pool_runs(net)
    out = save_network(net, tmp_path / f"m{suffix}")
    dense_bytes = 4 * sum(w.size for ly in net.layers for w in ly.weights.values())
    nonzeros = sum(np.count_nonzero(w) for ly in net.layers[1:] for w in ly.weights.values())
    assert out.stat().st_size <= 12 * nonzeros + 4 * 104 + 64 * 1024 < dense_bytes / 10
    pts = _box_points(2_000, (1, 28, 28), seed=1)
    got = _onnx_outputs(out, pts) if suffix == ".onnx" else _torch_outputs(torch.jit.load(str(out)), pts)
    want = net(pts.reshape(len(pts), -1))
    assert np.abs(got - want).max() <= 1e-4 * (1 + np.abs(want).max())
    assert _same_layers(net, load_network(out))


def test_sparse_skip_network_round_trips_in_float64(tmp_path, monkeypatch):
    """A skip network of mostly-zero matrices in float64: sparse initializers and sparse
    TorchScript buffers keep every entry exactly (the size threshold lowered to reach them)."""
    monkeypatch.setattr("leo.io.sparse.SPARSE_MIN_BYTES", 0)
    rng = np.random.default_rng(3)

    def sparse(rows: int, cols: int) -> np.ndarray:
        return rng.normal(size=(rows, cols)) * (rng.uniform(size=(rows, cols)) < 0.05)

    net = Network(40, (Layer({0: sparse(30, 40)}, rng.normal(size=30), True),
                       Layer({0: sparse(20, 40), 1: sparse(20, 30)}, rng.normal(size=20), True),
                       Layer({1: sparse(5, 30), 2: rng.normal(size=(5, 20))}, np.zeros(5), False)))
    pts = rng.uniform(size=(500, 40))
    for suffix in (".onnx", ".pt"):
        out = save_network(net, tmp_path / f"m{suffix}", float64=True)
        back = load_network(out)
        assert all(np.array_equal(a.weights[s], b.weights[s]) for a, b in zip(net.layers, back.layers)
                   for s in a.weights)
        if suffix == ".onnx":
            assert len(onnx.load(str(out)).graph.sparse_initializer) >= 3
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            got = session.run(None, {"input": pts})[0]
        else:
            with torch.no_grad():
                got = torch.jit.load(str(out))(torch.tensor(pts)).numpy()
        assert np.abs(got - net(pts)).max() <= 1e-12


class _Residual(nn.Module):
    """A residual block as users write one: relu(h + conv(relu(conv(h))))."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1))
        self.head = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(8 * 4 * 4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(torch.relu(h + self.block(h)))


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_a_residual_add_keeps_its_convolutions(tmp_path, suffix):
    """The layer of a residual Add reads the block's input and a conv's output; both are
    written as convolutions (the identity is one too), so the file stays near the user's
    (dense, the Add layer alone is 2 x 384 x 384 entries), computes what the module
    computes and reads back the same."""
    model = _Residual().eval()
    user_file = tmp_path / "res.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 2, 8, 8),), str(user_file), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    traced = tmp_path / "res.ts"  # the user's file to compare a TorchScript archive with (code included)
    torch.jit.trace(model, torch.zeros(1, 2, 8, 8)).save(str(traced))
    net = load_network(user_file)
    assert any(len(layer.weights) == 2 and layer.structure is None for layer in net.layers)  # the Add
    out = save_network(net, tmp_path / f"small{suffix}")
    assert out.stat().st_size <= 4 * (user_file if suffix == ".onnx" else traced).stat().st_size
    pts = _box_points(2_000, (2, 8, 8), seed=2)
    got = _onnx_outputs(out, pts) if suffix == ".onnx" else _torch_outputs(torch.jit.load(str(out)), pts)
    assert np.abs(got - _torch_outputs(model, pts)).max() <= 1e-4
    assert _same_layers(net, load_network(out))
    if suffix == ".onnx":
        ops = [n.op_type for n in onnx.load(str(out)).graph.node]
        assert ops.count("Conv") >= 4 and ops.count("MatMul") == 1


def test_small_matrices_stay_dense_for_other_readers(tmp_path):
    """Below SPARSE_MIN_BYTES a mostly-zero matrix is written as a dense initializer, which every
    ONNX consumer reads (Marabou's parser reads ``graph.initializer`` only)."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(30, 40)) * (rng.uniform(size=(30, 40)) < 0.05)
    net = Network(40, (Layer({0: w}, rng.normal(size=30), True), Layer({1: rng.normal(size=(5, 30))}, np.zeros(5), False)))
    out = save_network(net, tmp_path / "m.onnx")
    graph = onnx.load(str(out)).graph
    assert len(graph.sparse_initializer) == 0 and len(graph.initializer) >= 2
    pts = rng.uniform(size=(200, 40)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": pts})[0]
    assert np.abs(got - net(pts.astype(np.float64))).max() <= 1e-4

