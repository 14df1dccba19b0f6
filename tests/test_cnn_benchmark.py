"""benchmarks/cnn.py on a tiny CNN (no MNIST needed): the figures it reports are the report's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.cnn import markdown, run_box
from leo.stability.analysis import StabilityOptions

torch.set_num_threads(1)


def test_run_box_counts_units_and_dead_channels() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2)).eval()
    with torch.no_grad():  # channel 2 is dead on [0, 1] inputs
        module[0].weight[2] = -module[0].weight[2].abs() - 0.01
        module[0].bias[2] = -0.1
    box = run_box(module, np.zeros((1, 4, 4)), np.ones((1, 4, 4)), StabilityOptions(time_limit=5.0))
    assert box["units"] == 48 and box["dead_channels"] == [1]
    layer = box["layers"][0]
    assert box["stable"] == layer["active"] + layer["inactive"] >= 16
    assert box["hidden_after"] <= 48 - 16 and box["max_diff_sampled"] < 1e-9
    unstable = sum(ly["units"] - ly["active"] - ly["inactive"] for ly in box["layers"])
    assert box["bypass_hidden"] == unstable and box["bypass_max_diff"] < 1e-9
    text = markdown({"command": "x", "budget": 1, "time_limit": 1,
                     "rows": [{"l1": 0.0, "accuracy": 0.5, "domain": box, "local": []}]})
    assert "| 48 |" in text and f"{box['stable']} (" in text


def test_vnnlib_written_for_marabou_reads_back_as_the_box_and_the_robustness_property(tmp_path) -> None:
    from benchmarks.cnn import write_vnnlib
    from leo.io.vnnlib import read_vnnlib

    rng = np.random.default_rng(0)
    lower = rng.uniform(0, 0.5, 16)
    upper = lower + rng.uniform(0, 0.5, 16)
    write_vnnlib(tmp_path / "p.vnnlib", lower, upper, label=2, outputs=4)
    box, prop = read_vnnlib(tmp_path / "p.vnnlib", 16)
    assert np.array_equal(box.lower, lower) and np.array_equal(box.upper, upper)  # repr round-trips exactly
    assert prop is not None
    assert prop.violating(np.array([[0.0, 1.0, 2.0, 3.0]])) is not None  # output 3 beats the label
    assert prop.violating(np.array([[0.0, 1.0, 5.0, 3.0]])) is None  # the label is the largest


def test_interval_bounds_of_the_rs_loss_hold_on_samples() -> None:
    """The conv interval bounds the RS loss trains on contain every sampled pre-activation."""
    from benchmarks.cnn import cnn, interval_bounds, rs_loss

    torch.manual_seed(0)
    model = cnn().eval()
    x = torch.rand(2, 1, 28, 28)
    eps = 0.05
    bounds = interval_bounds(model, (x - eps).clamp(min=0), (x + eps).clamp(max=1))
    assert len(bounds) == 3
    with torch.no_grad():
        for _ in range(20):
            pt = (x + (torch.rand_like(x) * 2 - 1) * eps).clamp(0, 1)
            zs, h = [], pt
            for i, mod in enumerate(model):
                h = mod(h)
                if i + 1 < len(model) and isinstance(model[i + 1], nn.ReLU):
                    zs.append(h)
            for z, (lo, hi) in zip(zs, bounds):
                assert (z >= lo - 1e-5).all() and (z <= hi + 1e-5).all()
    loss = rs_loss(model, x, eps)
    loss.backward()  # differentiable; each of the 2416 units adds -tanh(1 + l*u), in (-1, 1)
    assert model[0].weight.grad is not None and -2416 < loss.item() < 2416


def test_agreement_tells_a_contradiction_from_an_undecided_tool() -> None:
    from benchmarks.cnn import agreement

    assert agreement(["unsat", "unsat", "unsat"]) == "identical"
    assert agreement(["timeout", "unsat", "unsat"]) == "consistent"
    assert agreement(["unknown", "timeout"]) == "consistent"
    assert agreement(["sat", "unsat", "timeout"]) == "DIFFER"


@pytest.mark.slow
def test_marabou_and_leo_answer_alike_on_the_original_and_the_flat_compression() -> None:
    """A tiny CNN, two instances whose truth is known without any verifier: one violated at
    the centre itself (the label is not the top output there: sat), one with a margin at the
    centre larger than the interval spread of the outputs over the ball (unsat)."""
    from benchmarks.cnn import _compress_box, run_verifiers

    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, stride=2, padding=1),
                           nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    x = np.random.default_rng(0).uniform(0.2, 0.8, (1, 1, 4, 4))
    with torch.no_grad():
        y = module(torch.tensor(x, dtype=torch.float32))[0].numpy()
    top, low = int(y.argmax()), int(y.argmin())
    for label, eps, truth in ((low, 0.05, "sat"), (top, 1e-4, "unsat")):
        lower, upper = x - eps, x + eps
        if truth == "unsat":  # the margin beats any change of the outputs over the ball: each output moves
            # by at most eps times the product of the layers' L-inf norms (a conv's: its largest kernel sum)
            norms = [float(m.weight.detach().abs().flatten(1).sum(1).max()) for m in module if hasattr(m, "weight")]
            assert np.sort(y)[-1] - np.sort(y)[-2] > 2 * eps * float(np.prod(norms))
        box, flat = _compress_box(module, lower, upper, StabilityOptions(time_limit=5.0))
        v = run_verifiers(module, flat, lower, upper, label, 60.0)
        assert v["agreement"] == "identical", v
        assert v["marabou_original"]["answer"] == v["marabou_flat"]["answer"] == v["leo_property"]["answer"] == truth
