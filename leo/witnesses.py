"""Points of the box that show a unit takes both signs, so it needs no proof.

Every unstable verdict keeps its witness pair (a point where the pre-activation is
> 0 and one where it is < 0), evaluated by the network's own forward pass.
"""

from __future__ import annotations

import numpy as np
import torch

from leo.domain import Box
from leo.network import Network


class Witnesses:
    """A growing set of box points and, per layer, the extreme points seen per unit."""

    def __init__(self, network: Network, box: Box) -> None:
        self.network = network
        self.box = box
        self.points = np.zeros((0, box.dim))

    def add(self, points: np.ndarray) -> None:
        pts = np.clip(np.atleast_2d(np.asarray(points, dtype=np.float64)), self.box.lower, self.box.upper)
        if pts.size:
            self.points = np.vstack([self.points, pts])

    def signs(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per unit of ``layer``: (max z seen, argmax point, min z seen, argmin point)."""
        if not len(self.points):
            w = self.network.layers[layer].width
            return np.full(w, -np.inf), np.zeros(w, int), np.full(w, np.inf), np.zeros(w, int)
        z = self.network.pre_activations(self.points)[layer]
        return z.max(axis=0), z.argmax(axis=0), z.min(axis=0), z.argmin(axis=0)


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


def local_search(
    network: Network,
    box: Box,
    layer: int,
    units: np.ndarray,
    starts: np.ndarray,
    directions: np.ndarray,
    steps: int = 30,
) -> np.ndarray:
    """Projected signed-gradient steps that push ``direction * z[layer][unit]`` up.

    One start point per unit; returns the final points (one per unit).
    """
    if len(units) == 0:
        return np.zeros((0, box.dim))
    lo = torch.tensor(box.lower)
    hi = torch.tensor(box.upper)
    x = torch.as_tensor(starts, dtype=torch.float64).clone()
    step = (hi - lo) / 8
    params = [
        ({s: torch.tensor(w) for s, w in lyr.weights.items()}, torch.tensor(lyr.bias), lyr.relu)
        for lyr in network.layers[: layer + 1]
    ]
    idx = torch.as_tensor(units, dtype=torch.long)
    dirs = torch.as_tensor(directions, dtype=torch.float64)
    best = x.clone()
    best_val = torch.full((len(units),), -torch.inf, dtype=torch.float64)
    for it in range(steps):
        x.requires_grad_(True)
        outs = [x]
        z = x
        for weights, bias, relu in params:
            z = bias + sum(outs[s] @ w.T for s, w in weights.items())
            outs.append(torch.relu(z) if relu else z)
        target = dirs * z.gather(1, idx[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(target.sum(), x)
        with torch.no_grad():
            improved = target > best_val
            best[improved] = x[improved].detach()
            best_val = torch.where(improved, target.detach(), best_val)
            x = torch.minimum(torch.maximum(x + step * torch.sign(grad), lo), hi)
            if it % 10 == 9:
                step = step / 2
    return best.numpy()
