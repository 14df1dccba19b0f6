"""A proven dead channel behind a MaxPool is removed by ``--form structured`` (issue 27,
item 10): the conv reading a MaxPool's output lost its structure when the pool's linear
layer was merged into it, so its dead channel went unit by unit, was not named in the
reduction's ``dead_channels`` and stayed in the user's pruned module.

Truth: the planted channel (a bias of -5 on [0, 1] inputs after a ReLU and a MaxPool, so
every pre-activation is below 0: each weight times its input is at most the weight's
positive part times the largest pooled input, bounded here by hand), the user's own module
(its forward pass against the pruned module's and onnxruntime's on the written file).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import leo
from leo.cli.main import main
from leo.stability.analysis import StabilityOptions

torch.set_num_threads(1)
SHAPE = (1, 8, 8)
DEAD = 2  # the planted channel of the second conv


def _pooled() -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 2), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        m[3].bias[DEAD] = -5.0
    return m.eval()


def _planted_channel_is_dead(m: nn.Sequential) -> bool:
    """By hand: conv1's outputs on [0, 1] inputs are at most sum(w+) + b, so the pooled ReLU
    values are in [0, that]; channel DEAD's pre-activation is at most its bias plus the
    positive weights times those maxima."""
    w1, b1 = m[0].weight.detach().double(), m[0].bias.detach().double()
    top = torch.clamp(w1.clamp(min=0).sum(dim=(1, 2, 3)) + b1, min=0)  # per channel of conv1
    w2, b2 = m[3].weight.detach().double()[DEAD], m[3].bias.detach().double()[DEAD]
    return bool(b2 + (w2.clamp(min=0) * top[:, None, None]).sum() < 0)


def _points(n: int) -> np.ndarray:
    return np.random.default_rng(1).uniform(0.0, 1.0, (n, *SHAPE))


def test_the_planted_channel_is_dead_by_hand():
    assert _planted_channel_is_dead(_pooled())


def test_api_structured_names_and_prunes_the_channel_behind_the_maxpool():
    pytest.importorskip("torch_pruning")
    m = _pooled()
    result = leo.compress(m, np.zeros(SHAPE), np.ones(SHAPE), StabilityOptions(time_budget=3), form="structured",
                          check_points=1000)
    named = [c for chans in result.reduction.dead_channels for c in chans]
    assert DEAD in named
    pruned = result.module()
    skipped = [s for s in result.pruned.skipped if DEAD in s.channels]
    assert pruned[3].out_channels == 3 or skipped, "kept without being listed in pruned.skipped"
    x = torch.tensor(_points(2000))
    with torch.no_grad():
        assert torch.allclose(pruned.double()(x), m.double()(x), atol=1e-9)


def test_cli_structured_removes_the_channel_and_the_file_computes_the_same(capsys, tmp_path):
    m = _pooled()
    model = tmp_path / "pool.onnx"
    with torch.no_grad():
        torch.onnx.export(m, (torch.zeros(1, *SHAPE),), str(model), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}}, opset_version=17)
    out = tmp_path / "small.onnx"
    code = main(["compress", str(model), "--lower", "0", "--upper", "1", "--time-budget", "4", "--form", "structured",
                 "-o", str(out), "-q"])
    text = capsys.readouterr().out
    assert code == 0
    cert = json.loads(out.with_name(out.name + ".cert.json").read_text())
    dead = {k: c for k, c in enumerate(cert["reduction"]["dead_channels"], start=1) if c}
    assert any(DEAD in c for c in dead.values()), dead
    layer = next(k for k, c in dead.items() if DEAD in c)
    assert f"layer {layer}: {DEAD}" in text
    x = _points(2000)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    with torch.no_grad():
        want = m(torch.tensor(x, dtype=torch.float32)).numpy()
    assert np.abs(got - want).max() < 1e-4
