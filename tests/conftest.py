"""Shared helpers: small random networks with known structure, brute-force truth."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

from leo.bounds.propagate import cheap_bounds
from leo.core.domain import make_box
from leo.core.network import Network, mlp
from leo.bounds.encoding import build_prefix
from leo.core.verdicts import Verdict as UnitState


def random_mlp(rng: np.random.Generator, sizes: list[int], bias_shift: float = 0.0) -> Network:
    ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=o) * 0.5 + (bias_shift if k < len(sizes) - 2 else 0.0) for k, o in enumerate(sizes[1:])]
    return mlp(ws, bs)


def exact_ranges(net: Network, lower: np.ndarray, upper: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact min and max of every pre-activation of ``layer`` (0-based) over the box, by
    enumerating the activation patterns of the layers before it and solving an LP each.

    Independent of leo's MILP: within one pattern the network is affine, so the
    region is a polyhedron and z is linear on it.
    """
    d = net.input_dim
    widths = [net.layers[k].width for k in range(layer)]
    lo = np.full(net.layers[layer].width, np.inf)
    hi = np.full(net.layers[layer].width, -np.inf)
    for pattern in itertools.product([0, 1], repeat=sum(widths)):
        # affine maps: h = A x + c through the pattern
        a, c = np.eye(d), np.zeros(d)
        rows, rhs = [], []
        pos = 0
        for k in range(layer):
            ly = net.layers[k]
            za, zc = ly.weights[k] @ a, ly.weights[k] @ c + ly.bias
            bits = np.array(pattern[pos:pos + ly.width])
            pos += ly.width
            for j in range(ly.width):
                if bits[j]:  # z >= 0  ->  -z <= 0
                    rows.append(-za[j]); rhs.append(zc[j])
                else:  # z <= 0
                    rows.append(za[j]); rhs.append(-zc[j])
            a, c = za * bits[:, None], zc * bits
        ly = net.layers[layer]
        za, zc = ly.weights[layer] @ a, ly.weights[layer] @ c + ly.bias
        a_ub = np.array(rows) if rows else None
        b_ub = np.array(rhs) if rows else None
        for j in range(ly.width):
            for sign in (1.0, -1.0):
                # costs are normalised: HiGHS treats cost entries below its dual tolerance (1e-7) as 0
                scale = float(np.abs(za[j]).max()) or 1.0
                res = linprog(sign * za[j] / scale, A_ub=a_ub, b_ub=b_ub, bounds=list(zip(lower, upper)),
                              method="highs")
                if res.status == 0:
                    val = float(za[j] @ res.x) + zc[j]  # the value at the optimum
                    lo[j] = min(lo[j], val) if sign > 0 else lo[j]
                    hi[j] = max(hi[j], val) if sign < 0 else hi[j]
    return lo, hi


def random_prefix(seed: int):
    """A 3-5-4-4 network on [-1, 1]^3, every unit given a binary, and the big-M MILP of its
    prefix up to layer 3 (index 2), from interval bounds."""
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 5, 4, 4], bias_shift=float(rng.choice([-0.5, 0.0, 0.5])))
    box = make_box(-1, 1, 3)
    bounds = cheap_bounds(net, box, symbolic=False)
    states = [[UnitState.UNSTABLE] * ly.width if ly.relu else [] for ly in net.layers]
    return rng, net, box, build_prefix(net, box, bounds, states, 2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def seeded_module(module, seed: int = 0):  # noqa: ANN001, ANN201 - a torch nn.Module, imported lazily
    """``module`` with seeded parameters and BatchNorm statistics away from the identity, in eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return module.eval()


def vnncomp_dir() -> Path | None:
    """The VNN-COMP 2021 folder of the shared data (``leo.data.data_dir``: $LEO_DATA, else
    ../shared/data), or None where it or its results_2021.csv is missing."""
    from leo.data import data_dir
    from leo.errors import LeoInputError

    try:
        root = data_dir() / "vnncomp2021"
    except LeoInputError:  # no data folder at all
        return None
    return root if (root / "results_2021.csv").is_file() else None


def vnncomp_answer(onnx: str, vnnlib: str) -> str:
    """What the 2021 competitors answered for one instance (results_2021.csv)."""
    with open(vnncomp_dir() / "results_2021.csv", newline="") as fh:
        return {(r["onnx"], r["vnnlib"]): r["answer"] for r in csv.DictReader(fh)}[(onnx, vnnlib)]
