"""Points of the box that show a unit takes both signs, so it needs no proof.

Every unstable verdict keeps its witness pair (a point where the pre-activation is
> 0 and one where it is < 0), evaluated by the network's own forward pass.
"""

from __future__ import annotations

import numpy as np

from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.search.attack import AttackOptions, Backend, Objective, Rule, Schedule, attack
from leo.search.forward import pre_activations

__all__ = ["Witnesses", "local_search", "pre_activations", "seed_points"]


class Witnesses:
    """A growing set of box points and, per layer, the extreme points seen per unit.

    The extremes per unit are updated as points come (the pre-activations of a point are
    computed once, when it is added): ``signs`` used to run the whole set through the
    network on every call, 0.3 s a call for 2,200 points on a 16x24 net, 20 s of a 27 s
    run; keeping every point's pre-activations instead took 0.8 GB and 18 s of copies and
    arg-extremes on a 9.5k-unit CNN with 10k witness points."""

    def __init__(self, network: Network, box: Box) -> None:
        self.network = network
        self.box = box
        self._points = np.zeros((0, box.dim))
        self._count = 0  # points added so far (merged or pending)
        self._pending: list[np.ndarray] = []
        #: per layer (max z, its point, min z, its point); the earliest point wins a tie
        self._extremes: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = [
            (np.full(ly.width, -np.inf), np.zeros(ly.width, int), np.full(ly.width, np.inf), np.zeros(ly.width, int))
            for ly in network.layers]
        #: ``signs`` per layer until the next ``add``: the orchestrator asks for one layer's
        #: signs several times between adds (directions, starts, marks)
        self._signs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(self, points: np.ndarray) -> None:
        pts = np.clip(np.atleast_2d(np.asarray(points, dtype=np.float64)), self.box.lower, self.box.upper)
        if not pts.size:
            return
        for k, z in enumerate(pre_activations(self.network, pts)):
            zmax, amax, zmin, amin = self._extremes[k]
            up, down = z.max(axis=0), z.min(axis=0)
            higher, lower = up > zmax, down < zmin
            self._extremes[k] = (np.where(higher, up, zmax), np.where(higher, z.argmax(axis=0) + self._count, amax),
                                 np.where(lower, down, zmin), np.where(lower, z.argmin(axis=0) + self._count, amin))
        self._pending.append(pts)
        self._count += len(pts)
        self._signs.clear()

    def _merge(self) -> None:
        """Join the points added since the last look (one copy, not one per ``add``)."""
        if self._pending:
            self._points = np.vstack([self._points] + self._pending)
            self._pending.clear()

    @property
    def points(self) -> np.ndarray:
        self._merge()
        return self._points

    def signs(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per unit of ``layer``: (max z seen, argmax point, min z seen, argmin point)."""
        if layer not in self._signs:
            self._signs[layer] = tuple(a.copy() for a in self._extremes[layer])  # type: ignore[assignment]
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


#: The local search's steps: Adam, the first moving 5 % of each input's width, the rate times 0.3
#: at each third of the steps.
LOCAL_RATE, LOCAL_FACTOR, LOCAL_PIECES = 0.05, 0.3, 3


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
    deadline: Deadline = Deadline.never(),
) -> np.ndarray:
    """Projected Adam steps (``leo.search.attack``) that push ``direction * z[layer][unit]``
    above 0, from the given start of each unit and ``restarts - 1`` random box points.

    Multi-start matters: on an l1-trained 5x100 MNIST net, 30 steps from one start
    left 6 unstable units of layers 3-4 (crossings within 0.03 of 0) to the MILPs, which
    timed out on most; 16 starts found all 6. A unit leaves the batch once it has
    crossed. At ``deadline`` it stops with the best points so far: on a 2-core machine with
    torch's default threads one search took tens of seconds and ran past a time budget.
    Returns the best point per unit (one row per unit).
    """
    if len(units) == 0:
        return np.zeros((0, box.dim))
    n = len(units)
    # the dense size, also for a layer run as a convolution: per multiply-add a float64 conv2d
    # is slower than a matrix product, and counting its nonzeros let one search run 30 s
    size = sum(w.size for lyr in network.layers[: layer + 1] for w in lyr.weights.values())
    r = max(1, min(restarts, int(WORK // (size * steps * n))))  # wide layers, many units: fewer starts
    steps = max(10, min(steps, int(WORK // (size * n * r))))  # ... and fewer steps
    rng = np.random.default_rng(seed)
    x0 = np.concatenate([np.asarray(starts, dtype=np.float64)[:, None, :],
                         box.sample(n * (r - 1), rng).reshape(n, r - 1, box.dim)], axis=1).reshape(n * r, box.dim)
    objective = Objective.units(np.asarray(units), np.asarray(directions), network.layers[layer].width, r)
    options = AttackOptions(Schedule(steps, LOCAL_RATE, LOCAL_FACTOR, LOCAL_PIECES), Rule.ADAM, Backend.TORCH,
                            layer=layer)
    result = attack(network, x0, objective, options, lower=box.lower, upper=box.upper, deadline=deadline)
    return result.best_per_group(objective.target, n)

