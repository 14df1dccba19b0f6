"""Linearity-based layer fusion: exactness on proven-active units, the paper's three layer
rules, its fixed-size mode and size count, and export of the fused (skip-connected) network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leo.approx.linearity import LinearityOptions, activation_rates, fuse_units, linearity_fusion, paper_size
from leo.core.domain import make_box
from leo.errors import LeoInputError
from leo.io.torch_io import to_module
from leo.core.network import Layer, Network, mlp
from leo.stability.analysis import StabilityOptions, analyse


def _mixed_net(rng: np.random.Generator) -> Network:
    """3 -> 10 -> 8 -> 2 with five strongly active units in each hidden layer."""
    w1 = rng.normal(size=(10, 3)) / np.sqrt(3)
    b1 = np.r_[np.full(5, 6.0), rng.normal(size=5) * 0.1]
    w2 = rng.normal(size=(8, 10)) / np.sqrt(10)
    b2 = np.r_[np.full(5, 30.0), rng.normal(size=3) * 0.1]
    w3 = rng.normal(size=(2, 8))
    return mlp([w1, w2, w3], [b1, b2, np.zeros(2)])


def test_proven_active_fusion_is_exact_on_the_box(rng: np.random.Generator) -> None:
    net = _mixed_net(rng)
    box = make_box(-1.0, 1.0, 3)
    report = analyse(net, box, StabilityOptions(time_limit=10, samples=256))
    proven = {lr.layer: lr.active for lr in report.layers}
    assert all(len(v) >= 5 for v in proven.values())  # the planted active units were proven
    data = box.sample(2000, np.random.default_rng(1))
    fused, rep = linearity_fusion(net, data, options=LinearityOptions(only_proven=True), stability=report)
    assert rep.details["fused_units"] > 0 and rep.details["fused_units"] == rep.details["fused_exact"]
    assert rep.exact_on_box and rep.lossless is False
    assert fused.num_parameters < net.num_parameters and not fused.is_mlp  # a skip was added
    dense = box.sample(200_000, np.random.default_rng(2))
    assert np.abs(fused(dense) - net(dense)).max() <= 1e-9
    # the check can fail: fusing a unit that is not always active changes the function
    unstable = report.layers[0].unstable[0]
    wrong = fuse_units(net, 1, [unstable])
    assert np.abs(wrong(dense) - net(dense)).max() > 1e-3


def _rule_net(rng: np.random.Generator, linear: int, skip: bool) -> tuple[Network, np.ndarray]:
    """4 -> 3 -> 4 -> 2; the first ``linear`` units of layer 1 are always active on the
    data, the rest and layer 2 are centred (about half active)."""
    x = rng.uniform(-1, 1, size=(4000, 4))
    w1 = rng.normal(size=(3, 4))
    b1 = np.r_[np.full(linear, 20.0), np.zeros(3 - linear)]
    h1 = np.maximum(x @ w1.T + b1, 0)
    w2 = rng.normal(size=(4, 3))
    b2 = -np.median(h1 @ w2.T, axis=0)
    layers = [Layer({0: w1}, b1, True)]
    weights2 = {1: w2}
    if skip:
        weights2[0] = rng.normal(size=(4, 4))
        b2 = -np.median(h1 @ w2.T + x @ weights2[0].T, axis=0)
    layers.append(Layer(weights2, b2, True))
    layers.append(Layer({2: rng.normal(size=(2, 4))}, np.zeros(2), False))
    return Network(4, tuple(layers)), x


@pytest.mark.parametrize(("linear", "skip", "rewrite"), [
    (1, False, False),  # (4 + 4 + 1) * 1 = 9  <= 4 * 4 = 16: the skip costs more than it saves
    (2, False, True),   # (4 + 4 + 1) * 2 = 18 >  16
    (1, True, True),    # the skip 0 -> 2 exists already: it costs nothing
])
def test_saving_rule(rng: np.random.Generator, linear: int, skip: bool, rewrite: bool) -> None:
    net, x = _rule_net(rng, linear, skip)
    rates = activation_rates(net, x)
    assert np.all(rates[1][:linear] == 1.0) and np.all(rates[1][linear:] < 0.9)
    assert np.all(rates[2] < 0.9)
    out, rep = linearity_fusion(net, x, options=LinearityOptions(mode="threshold", threshold=0.99))
    layer1 = rep.details["layers"][0]
    assert layer1["linear"] == linear
    assert layer1["skip_cost"] == (0 if skip else 16)
    assert layer1["saved"] == linear * 9
    assert layer1["rewritten"] is rewrite
    assert out.hidden[0] == (3 - linear if rewrite else 3)
    expect = net.num_parameters - linear * 9 + layer1["skip_cost"] if rewrite else net.num_parameters
    assert out.num_parameters == expect
    # units always active on the data: the fused network agrees there up to rounding
    assert np.abs(out(x) - net(x)).max() < 1e-9


@pytest.mark.parametrize(("rule", "layer_min", "linear", "rewrite"), [
    ("count", 0, 1, True),  # the paper's integer layer threshold 0: any linear unit, even at a loss
    ("count", 1, 1, False),  # more than one needed
    ("fraction", 0.5, 1, False),  # 1/3 of the layer is not more than half
    ("fraction", 0.5, 2, True),  # 2/3 is
])
def test_count_and_fraction_rules(rng: np.random.Generator, rule: str, layer_min: float, linear: int,
                                  rewrite: bool) -> None:
    net, x = _rule_net(rng, linear, False)
    out, rep = linearity_fusion(net, x, options=LinearityOptions(mode="threshold", threshold=0.99,
                                                                 layer_rule=rule, layer_min=layer_min))
    assert rep.details["layers"][0]["rewritten"] is rewrite
    assert out.hidden[0] == (3 - linear if rewrite else 3)
    assert np.abs(out(x) - net(x)).max() < 1e-9


def test_paper_size_by_hand(rng: np.random.Generator) -> None:
    net, x = _rule_net(rng, 2, False)  # 4 -> 3 -> 4 -> 2
    assert paper_size(net) == (3 * 4 + 4) + (4 * 2 + 2)  # all but the first Linear layer
    out, rep = linearity_fusion(net, x, options=LinearityOptions(mode="threshold", threshold=0.99))
    # layer 1 keeps 1 unit; layer 2 reads it (4 x 1 + 4) and the input through a bias-free skip (4 x 4)
    assert out.hidden == (1, 4)
    assert paper_size(out) == (4 * 1 + 4 + 4 * 4) + (4 * 2 + 2)
    assert rep.details["paper_size"] == {"before": 26, "after": 34, "definition": rep.details["paper_size"]["definition"]}


def test_fixed_size_mode_lowers_the_threshold_in_steps(rng: np.random.Generator) -> None:
    net = mlp([rng.normal(size=(30, 10)), rng.normal(size=(30, 30)) / 5, rng.normal(size=(3, 30))],
              [rng.normal(size=30) + 1.0, rng.normal(size=30) + 1.0, np.zeros(3)])
    x = rng.normal(size=(3000, 10)) * 0.3
    rates = activation_rates(net, x)
    for rate, step in ((0.75, 0.05), (0.5, 0.1), (0.25, 0.05)):
        out, rep = linearity_fusion(net, x, options=LinearityOptions(rate=rate, step=step))
        aim = rate * paper_size(net)
        search = rep.details["threshold_search"]
        ts = [s["threshold"] for s in search]
        assert ts == pytest.approx([1 - step * i for i in range(1, len(ts) + 1)])  # from 1 - step down
        assert rep.details["target_reached"] and paper_size(out) <= aim
        assert all(s["paper_size"] > aim for s in search[:-1])  # the first threshold that reaches it
        t = rep.parameters["threshold_used"]
        assert t == search[-1]["threshold"]
        # independent check of what was fused: exactly the units whose rate is >= t, in the
        # layers the cost rule accepted
        for d in rep.details["layers"]:
            if d["rewritten"]:
                assert d["fused_units"] == [int(j) for j in np.flatnonzero(rates[d["layer"]] >= t)]
        assert rep.params_after == out.num_parameters and rep.lossless is False
        json.dumps(rep.to_json())


def test_fixed_size_not_reachable_says_so(rng: np.random.Generator) -> None:
    # 10 -> 3 -> 2: the only hidden layer feeds a 2-unit output; fusing it needs a 10 x 2
    # skip, so the paper-counted size (the 2 x 3 + 2 output layer) can never reach 25 %
    net = mlp([rng.normal(size=(3, 10)), rng.normal(size=(2, 3))], [np.full(3, 5.0), np.zeros(2)])
    x = rng.normal(size=(500, 10)) * 0.1
    out, rep = linearity_fusion(net, x, options=LinearityOptions(rate=0.25, step=0.1))
    assert rep.details["target_reached"] is False
    assert any("not reachable" in n for n in rep.notes)
    assert out.num_parameters == net.num_parameters


def test_consecutive_layers_count_earlier_skip_inputs(rng: np.random.Generator) -> None:
    # 4 -> 6 -> 6 -> 6 -> 2; four units of layer 1 and all of layer 2 always active: once
    # layer 1 is fused, layer 2 reads its 2 remaining units and the input (skip): n_prev = 2 + 4
    ws = [rng.normal(size=(6, 4)), rng.normal(size=(6, 6)) / 6, rng.normal(size=(6, 6)), rng.normal(size=(2, 6))]
    x = rng.uniform(-1, 1, size=(2000, 4))
    b1 = np.r_[np.full(4, 20.0), np.zeros(2)]
    h2 = np.maximum(np.maximum(x @ ws[0].T + b1, 0) @ ws[1].T + 40, 0)
    bs = [b1, np.full(6, 40.0), -np.median(h2 @ ws[2].T, axis=0), np.zeros(2)]
    net = mlp(ws, bs)
    out, rep = linearity_fusion(net, x, options=LinearityOptions(mode="threshold", threshold=1.0,
                                                                 layer_rule="count"))
    d1, d2, d3 = rep.details["layers"]
    assert d1["rewritten"] and d1["n_prev"] == 4 and d1["fused_units"] == [0, 1, 2, 3]
    assert d2["rewritten"] and d2["n_prev"] == 2 + 4
    assert not d3["rewritten"]
    assert np.abs(out(x) - net(x)).max() < 1e-8


def _fused(rng: np.random.Generator) -> tuple[Network, np.ndarray]:
    net = _mixed_net(rng)
    x = make_box(-1.0, 1.0, 3).sample(500, rng)
    fused, rep = linearity_fusion(net, x, options=LinearityOptions(mode="threshold", threshold=0.999))
    assert not fused.is_mlp and rep.details["skip_connections"] > 0
    return fused, x


def test_fused_network_exports_to_torch_and_onnx(tmp_path, rng: np.random.Generator) -> None:
    fused, x = _fused(rng)
    with torch.no_grad():
        got = to_module(fused, torch.float64)(torch.tensor(x, dtype=torch.float64)).numpy()
    assert np.abs(got - fused(x)).max() < 1e-5  # SkipNet stores float32 weights before casting
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from leo.io.onnx_export import save_onnx

    save_onnx(fused, tmp_path / "fused.onnx")
    sess = ort.InferenceSession(str(tmp_path / "fused.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    assert np.abs(out - fused(x)).max() < 1e-4


def test_fused_network_exports_to_torchscript(tmp_path, rng: np.random.Generator) -> None:
    fused, x = _fused(rng)
    assert not fused.is_mlp
    path = tmp_path / "fused.pt"
    torch.jit.save(torch.jit.script(to_module(fused, torch.float64)), str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        got = loaded(torch.tensor(x, dtype=torch.float64)).numpy()
    assert np.abs(got - fused(x)).max() < 1e-10
    # and leo reads its own skip archive back
    from leo.io.load import load_network

    back = load_network(path)
    assert np.abs(back(x) - fused(x)).max() < 1e-10


def test_bad_inputs(rng: np.random.Generator) -> None:
    net = _mixed_net(rng)
    with pytest.raises(LeoInputError, match="3 inputs"):
        linearity_fusion(net, np.zeros((10, 4)))
    with pytest.raises(LeoInputError, match="empty"):
        linearity_fusion(net, np.zeros((0, 3)))
    with pytest.raises(LeoInputError, match="threshold"):
        LinearityOptions(threshold=1.5)
    with pytest.raises(LeoInputError, match="rate"):
        LinearityOptions(rate=0.0)
    with pytest.raises(LeoInputError, match="mode"):
        LinearityOptions(mode="magic")
    with pytest.raises(LeoInputError, match="layer_rule"):
        LinearityOptions(layer_rule="magic")
    with pytest.raises(LeoInputError, match="out of range"):
        linearity_fusion(net, np.zeros((10, 3)), stability={1: [99]})


def test_whole_layer_fused_drops_the_layer(rng: np.random.Generator) -> None:
    # 6 -> 8 -> 8 -> 8 -> 2, the middle layer always active on the data: it is fused away
    ws = [rng.normal(size=(8, 6)), rng.normal(size=(8, 8)) / 4, rng.normal(size=(8, 8)), rng.normal(size=(2, 8))]
    x = rng.normal(size=(3000, 6))
    h2 = np.maximum(x @ ws[0].T, 0) @ ws[1].T + 50.0
    bs = [np.zeros(8), np.full(8, 50.0), -np.median(h2 @ ws[2].T, axis=0), np.zeros(2)]  # layer 3 half active
    net = mlp(ws, bs)
    out, rep = linearity_fusion(net, x, options=LinearityOptions(mode="threshold", threshold=1.0))
    assert len(out.layers) == 3 and out.hidden == (8, 8) and out.is_mlp  # 1 -> 3 became 1 -> 2
    assert [d["rewritten"] for d in rep.details["layers"]] == [False, True, False]
    assert np.abs(out(x) - net(x)).max() < 1e-9
