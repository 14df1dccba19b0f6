"""benchmarks/cnn.py on a tiny CNN (no MNIST needed): the figures it reports are the report's."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.cnn import markdown, run_box
from leo.stability import StabilityOptions

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
