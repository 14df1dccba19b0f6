"""A compressed CNN keeps its Conv and MaxPool nodes where the reduction left a layer's
computation unchanged (``Editable.network`` keeps the original ``shape`` and ``structure``
only then), in every form, and the written file still computes the user's function and
audits valid.

Truth is independent of the reduction: the user's torch module against onnxruntime on
the written file over dense samples of the box, onnx's own node list, and ``leo audit``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from leo.cli.main import main
from leo.core.network import Network
from leo.io.load import load_network
from leo.io.save import certificate_path
from leo.reduction.editable import Editable

torch.set_num_threads(1)
POINTS = 20_000
BOX = (0.0, 1.0)


def _model() -> nn.Sequential:
    """conv, ReLU, MaxPool, conv, ReLU, Flatten, Linear, seeded: on [0, 1] no unit of either conv
    is stable, so no form changes the first conv, and the structured form changes none of the
    conv and pool layers (it keeps an intact MaxPool whole and unmerged)."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 5)).eval()


def _module_outputs(model: nn.Module, pts: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(pts, dtype=torch.float32)).numpy()


def _onnx_outputs(path: Path, pts: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: c.astype(np.float32)})[0] for c in np.array_split(pts, 10)])


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> tuple[nn.Module, Path]:
    path = tmp_path_factory.mktemp("user") / "cnn.onnx"
    model = _model()
    torch.onnx.export(model, torch.zeros(1, 1, 10, 10), str(path), dynamo=False)
    return model, path


def _nodes(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


# -- the working copy -----------------------------------------------------------------------

def _structured(network: Network) -> list[tuple[tuple[int, ...] | None, dict] | None]:
    return [None if ly.structure is None else (ly.shape, dict(ly.structure)) for ly in network.layers]


def test_unedited_layers_keep_shape_and_structure_and_edited_ones_lose_it(user) -> None:
    _, path = user
    network = load_network(path)
    assert any(ly.structure is not None for ly in network.layers)
    ed = Editable(network)
    assert _structured(ed.network()) == _structured(network)
    conv = next(k for k, ly in enumerate(network.layers, start=1) if ly.structure and ly.structure["op"] == "Conv")
    readers = {k for k, ly in enumerate(network.layers, start=1) if conv in ly.weights}
    ed.delete_units(conv, [0])  # one unit of the first conv: it and every layer reading it change
    out = ed.network()
    for k, (before, after) in enumerate(zip(network.layers, out.layers), start=1):
        if k == conv or k in readers:
            assert after.structure is None and after.shape is None
        else:
            assert after.shape == before.shape and after.structure == before.structure
    ed = Editable(network)
    ed.layer(conv).bias = ed.layer(conv).bias + 0.5  # same units, other values: no longer the original
    assert ed.network().layers[conv - 1].structure is None
    ed = Editable(network)
    w = ed.layer(conv).weights[0]
    w[0, np.flatnonzero(w[0])[0]] += 1e-9  # one entry off: no longer the original conv
    assert ed.network().layers[conv - 1].structure is None


# -- compressed files -------------------------------------------------------------------------

#: Conv and MaxPool nodes each form must keep on ``_model`` (the user's file has 2 and 1): the
#: leo and flat forms multiply the pool's linear output layer into the second conv, so only
#: the first conv is unchanged there; the structured form changes none of them.
KEPT = {"leo": (1, 0), "flat": (1, 0), "structured": (2, 1)}


@pytest.mark.parametrize("form", sorted(KEPT))
def test_compressed_cnn_keeps_unchanged_convs_and_pools_and_audits(capsys, tmp_path, user, form) -> None:
    model, path = user
    assert (_nodes(path)["Conv"], _nodes(path)["MaxPool"]) == (2, 1)
    out = tmp_path / f"small-{form}.onnx"
    code = main(["compress", str(path), "--lower", str(BOX[0]), "--upper", str(BOX[1]), "-o", str(out), "-q",
                 "--form", form])
    capsys.readouterr()
    assert code == 0
    nodes = _nodes(out)
    assert (nodes["Conv"], nodes["MaxPool"]) == KEPT[form], nodes
    if KEPT[form] == (2, 1):  # every conv and pool kept: within issue 27's 4x the user's file
        assert out.stat().st_size <= 4 * path.stat().st_size
    rng = np.random.default_rng(0)
    pts = rng.uniform(*BOX, (POINTS, 1, 10, 10))
    pts[: POINTS // 10] = rng.integers(0, 2, (POINTS // 10, 1, 10, 10))
    got, want = _onnx_outputs(out, pts), _module_outputs(model, pts)
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))
    code = main(["audit", str(certificate_path(out))])
    text = capsys.readouterr()
    assert code == 0, text  # ExitCode.OK: the audit re-proved every claim and replayed the log onto this file
