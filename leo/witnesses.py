"""Points of the box that show a unit takes both signs, so it needs no proof.

Every unstable verdict keeps its witness pair (a point where the pre-activation is
> 0 and one where it is < 0), evaluated by the network's own forward pass.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from leo.domain import Box
from leo.network import Network


class Witnesses:
    """A growing set of box points and, per layer, the extreme points seen per unit.

    The pre-activations of every point are kept, computed once when the point is added:
    ``signs`` used to run the whole set through the network on every call (twice or
    more per layer), 0.3 s a call for 2,200 points on a 16x24 net, 20 s of a 27 s run."""

    def __init__(self, network: Network, box: Box) -> None:
        self.network = network
        self.box = box
        self._points = np.zeros((0, box.dim))
        self._z: list[np.ndarray] = [np.zeros((0, layer.width)) for layer in network.layers]
        self._pending: list[tuple[np.ndarray, list[np.ndarray]]] = []
        #: ``signs`` per layer until the next ``add``: the orchestrator asks for one layer's
        #: signs several times between adds (directions, starts, marks)
        self._signs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(self, points: np.ndarray) -> None:
        pts = np.clip(np.atleast_2d(np.asarray(points, dtype=np.float64)), self.box.lower, self.box.upper)
        if pts.size:
            self._pending.append((pts, self.network.pre_activations(pts)))
            self._signs.clear()

    def _merge(self) -> None:
        """Join the points added since the last look (one copy, not one per ``add``)."""
        if self._pending:
            self._points = np.vstack([self._points] + [p for p, _ in self._pending])
            self._z = [np.vstack([z] + [zs[k] for _, zs in self._pending]) for k, z in enumerate(self._z)]
            self._pending.clear()

    @property
    def points(self) -> np.ndarray:
        self._merge()
        return self._points

    def signs(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per unit of ``layer``: (max z seen, argmax point, min z seen, argmin point)."""
        if layer not in self._signs:
            self._merge()
            if not len(self._points):
                w = self.network.layers[layer].width
                self._signs[layer] = (np.full(w, -np.inf), np.zeros(w, int), np.full(w, np.inf), np.zeros(w, int))
            else:
                z = self._z[layer]
                self._signs[layer] = (z.max(axis=0), z.argmax(axis=0), z.min(axis=0), z.argmin(axis=0))
            for a in self._signs[layer]:
                a.flags.writeable = False  # shared by every caller until the next add
        return self._signs[layer]


def seed_points(box: Box, samples: int, rng: np.random.Generator, data: np.ndarray | None) -> np.ndarray:
    """Random points, the centre, the corners when few, and in-box data points."""
    parts = [box.sample(samples, rng), ((box.lower + box.upper) / 2)[None, :]]
    corners = box.corners(limit=1024)
    if corners is not None:
        parts.append(corners)
    else:
        parts.append(box.lower[None, :])
        parts.append(box.upper[None, :])
    if data is not None and len(data):
        flat = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
        if flat.shape[1] == box.dim:
            parts.append(flat[box.contains(flat)])
    return np.vstack(parts)


#: Multiply-adds one local search may spend (rows x steps x prefix weights): about a
#: second on one core. Without it, 16 starts x 200 steps on a 2x800 layer took 60 s.
WORK = 4e9


def local_search(
    network: Network,
    box: Box,
    layer: int,
    units: np.ndarray,
    starts: np.ndarray,
    directions: np.ndarray,
    steps: int = 200,
    restarts: int = 16,
    seed: int = 0,
    deadline: float | None = None,
) -> np.ndarray:
    """Projected Adam steps that push ``direction * z[layer][unit]`` above 0, from the
    given start of each unit and ``restarts - 1`` random box points.

    Multi-start matters: on an l1-trained 5x100 MNIST net, 30 steps from one start
    left 6 unstable units of layers 3-4 (crossings within 0.03 of 0) to the MILPs, which
    timed out on most; 16 starts found all 6. A unit leaves the batch once it has
    crossed. At ``deadline`` (``time.time()``) it stops with the best points so far:
    on a 2-core machine with torch's default threads one search took tens of seconds
    and ran past a time budget. Returns the best point per unit (one row per unit).
    """
    if len(units) == 0:
        return np.zeros((0, box.dim))
    n = len(units)
    size = sum(w.size for lyr in network.layers[: layer + 1] for w in lyr.weights.values())
    r = max(1, min(restarts, int(WORK // (size * steps * n))))  # wide layers, many units: fewer starts
    steps = max(10, min(steps, int(WORK // (size * n * r))))  # ... and fewer steps
    rng = np.random.default_rng(seed)
    lo = torch.tensor(box.lower)
    hi = torch.tensor(box.upper)
    x0 = np.concatenate([np.asarray(starts, dtype=np.float64)[:, None, :],
                         box.sample(n * (r - 1), rng).reshape(n, r - 1, box.dim)], axis=1)
    span = hi - lo
    # optimise u in [0, 1]^d with x = lo + span * u, so one step size suits every input
    u0 = (torch.as_tensor(x0.reshape(n * r, box.dim)) - lo) / torch.where(span > 0, span, 1.0)
    u = u0.clamp(0.0, 1.0)
    params = [
        ({s: torch.tensor(w) for s, w in lyr.weights.items()}, torch.tensor(lyr.bias), lyr.relu)
        for lyr in network.layers[: layer + 1]
    ]
    idx = torch.as_tensor(np.repeat(units, r), dtype=torch.long)
    dirs = torch.as_tensor(np.repeat(directions, r), dtype=torch.float64)
    # Adam written out: constructing torch.optim.Adam costs 1.7 s on first use (it imports
    # torch's compiler stack), more than the whole analysis of a 2x100 network
    lr, beta1, beta2 = 0.05, 0.9, 0.999
    m1 = torch.zeros_like(u)
    m2 = torch.zeros_like(u)
    best = u.detach().clone()
    best_val = torch.full((n * r,), -torch.inf, dtype=torch.float64)
    rows = torch.arange(n * r)  # the rows of units that have not crossed yet
    for step in range(1, steps + 1):
        if deadline is not None and time.time() >= deadline:
            break
        ur = u[rows].detach().requires_grad_(True)
        x = lo + span * ur
        outs = [x]
        z = x
        for weights, bias, relu in params:
            z = bias + sum(outs[s] @ w.T for s, w in weights.items())
            outs.append(torch.relu(z) if relu else z)
        target = dirs[rows] * z.gather(1, idx[rows, None]).squeeze(1)
        with torch.no_grad():
            improved = target > best_val[rows]
            best[rows[improved]] = ur[improved].detach()
            best_val[rows[improved]] = target[improved].detach()
            crossed = best_val.view(n, r).max(dim=1).values > 0
            if bool(crossed.all()):
                break
        (grad,) = torch.autograd.grad(target.sum(), ur)
        with torch.no_grad():  # one Adam ascent step, then back into the box
            m1[rows] = m1[rows] * beta1 + grad * (1 - beta1)
            m2[rows] = m2[rows] * beta2 + grad * grad * (1 - beta2)
            rate = lr * 0.3 ** (3 * (step - 1) // max(steps, 1))  # 0.05, then x0.3 at each third
            u[rows] = (ur + rate * (m1[rows] / (1 - beta1**step)) / ((m2[rows] / (1 - beta2**step)).sqrt() + 1e-12)
                       ).clamp(0.0, 1.0)
            rows = rows[~crossed[rows // r]]  # drop the units that have crossed
    pick = best_val.view(n, r).argmax(dim=1) + torch.arange(n) * r
    return (lo + span * best[pick]).numpy()
