"""A search for a crossing that moves between linear regions, before a unit's MILP.

Gradient steps stall at the kinks of a ReLU network, and HiGHS's own heuristics find
no better incumbent than the warm start on the hard units of deeper networks. Two
searches move between the network's linear regions instead:

- ``region_walk``: inside one activation pattern the prefix is affine in the input, so
  the best point of that region is an LP over the box; the ReLUs whose sign rows bind
  at its optimum (nonzero dual) are the walls, and a step just across them enters the
  neighbouring region, whose LP goes on from there (``leo.search.region_walk.walk``);
- ``neighbourhood_search``: at the current point every binary ReLU of the MILP is
  fixed to its state there except the ``free`` ones closest to their kink (relative
  to the unit's bound range); the MILP over that neighbourhood is small, and its
  optimum is the best point of all those regions. When a round does not improve,
  the neighbourhood grows by half.

Measured on the 5x100 MNIST net (l1 = 1e-4), analysis state of a run with a 5 s limit:
layer-4 unit 47, a 60 s time-out of the MILP (its dual bound -0.0021, its incumbent the
warm start at +0.037, also with ``mip_heuristic_effort`` 0.5), crossed by the
neighbourhood search in 7 rounds, 19 s (the walk stalled at +0.0002); layer-5 unit 20,
also a time-out, crossed by the walk in 5 LPs, 2.7 s (the neighbourhood search stalled
at +0.0011).

Only a point's forward pass counts: the search returns points, and the caller keeps
them as witnesses only where the network itself shows the other sign.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from leo.bounds.encoding import Encoding, assignment
from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.search.maps import affine_maps
from leo.search.region_walk import Target, walk
from leo.stability.stages import Counts
from solvers.backend import Model

__all__ = ["SearchResult", "affine_maps", "find_crossing", "neighbourhood_search", "region_walk", "relu_units"]

#: Binary ReLUs left free in the first neighbourhood.
FREE = 30
#: Seconds per neighbourhood MILP (its best point so far is used when it stops).
ROUND_LIMIT = 3.0
#: Rounds in a row without improvement before the search gives up.
PATIENCE = 2
#: Most LPs one region walk solves, and LPs in a row without a lower value before it stops.
WALK_ROUNDS, WALK_STALL = 30, 2


@dataclass(frozen=True)
class SearchResult:
    points: tuple[np.ndarray, ...]  # the input of every round's optimum
    best: float  # lowest direction * z seen by the forward pass (< 0: a crossing)
    rounds: int
    seconds: float
    counts: Counts = Counts()  # the LPs (region walk) and MILPs (neighbourhoods) it ran


def relu_units(network: Network, formulation: Encoding) -> tuple[np.ndarray, np.ndarray]:
    """Layer and unit of each binary ReLU of ``formulation`` (rows of ``formulation.relus``)."""
    layer_of = np.full(formulation.num_cols, -1)
    unit_of = np.full(formulation.num_cols, -1)
    for k, cols in enumerate(formulation.z_cols):
        layer_of[cols] = k
        unit_of[cols] = np.arange(cols.size)
    z = formulation.relus[:, 0]
    return layer_of[z], unit_of[z]


def find_crossing(model: Model, encoding: Encoding, network: Network, layer: int, unit: int, direction: int,
                  starts: list[np.ndarray], time_limit: float, solver: str = "highs") -> SearchResult:
    """The region walk from the best of ``starts``, then the neighbourhood search from
    the best point so far, within ``time_limit`` together. ``model`` holds ``encoding``."""
    t0, deadline = time.perf_counter(), Deadline.after(time_limit)
    if not starts or not encoding.num_binaries:
        return SearchResult((), np.inf, 0, 0.0)
    values = network.pre_activations(np.vstack(starts))[layer][:, unit] * direction
    walk = region_walk(network, encoding, layer, unit, direction, starts[int(np.argmin(values))],
                       time_limit, solver)
    if walk.best < 0:
        return walk
    more = neighbourhood_search(model, encoding, network, layer, unit, direction,
                                list(starts) + list(walk.points), deadline.left())
    return SearchResult(walk.points + more.points, min(walk.best, more.best), walk.rounds + more.rounds,
                        time.perf_counter() - t0, walk.counts + more.counts)


def neighbourhood_search(model: Model, encoding: Encoding, network: Network, layer: int, unit: int,
                         direction: int, starts: list[np.ndarray], time_limit: float) -> SearchResult:
    """Look for an input with ``direction * z[layer][unit] < 0``, from the best of ``starts``.

    ``model`` is the unit engine's MILP of the prefix ``encoding`` (with its binary
    indicators); their bounds are restored before returning."""
    t0, deadline = time.perf_counter(), Deadline.after(time_limit)
    f = encoding
    if not f.num_binaries or not starts:
        return SearchResult((), np.inf, 0, 0.0)
    layers, units = relu_units(network, f)
    d_cols = f.relus[:, 2]
    span = np.maximum(f.col_upper[f.relus[:, 0]] - f.col_lower[f.relus[:, 0]], 1e-12)

    def value(x: np.ndarray) -> tuple[float, np.ndarray]:
        pre = network.pre_activations(x[None])
        z = np.array([pre[k][0, u] for k, u in zip(layers, units)]) if len(layers) else np.zeros(0)
        return float(direction * pre[layer][0, unit]), z

    scored = [(value(x)[0], x) for x in starts]
    best, x = min(scored, key=lambda s: s[0])
    cost = f.objective(layer, unit, float(direction))
    free, stale, rounds, points, nodes = FREE, 0, 0, [], 0
    try:
        while best >= 0 and stale < PATIENCE:
            left = deadline.left()
            if left <= 0.05:
                break
            _, z = value(x)
            state = (z > 0).astype(float)
            lower, upper = state.copy(), state.copy()
            near = np.argsort(np.abs(z) / span)[:free]
            lower[near], upper[near] = 0.0, 1.0
            model.set_bounds(d_cols, lower, upper)
            res = model.minimise(cost, threshold=None, time_limit=min(ROUND_LIMIT, left),
                                 start=assignment(network, f, x))
            rounds += 1
            nodes += res.nodes
            if res.point is None:
                break
            point = np.clip(res.point, f.col_lower[f.x_cols], f.col_upper[f.x_cols])
            points.append(point)
            v = value(point)[0]
            if v < best - 1e-12:
                best, x, stale = v, point, 0
            else:
                stale += 1
                free += free // 2
    finally:
        model.set_bounds(d_cols, np.zeros(d_cols.size), np.ones(d_cols.size))
    return SearchResult(tuple(points), best, rounds, time.perf_counter() - t0, Counts(milps=rounds, nodes=nodes))


def region_walk(network: Network, formulation: Encoding, layer: int, unit: int, direction: int,
                start: np.ndarray, time_limit: float, solver: str = "highs") -> SearchResult:
    """Minimise ``direction * z[layer][unit]`` region by region from ``start``
    (``leo.search.region_walk.walk``, the one LP walk).

    Units the formulation has no binary for keep their proven state (their sign cannot
    change over the box: no row in the LPs); the others get the sign of the walk's point."""
    t0 = time.perf_counter()
    f = formulation
    fixed = []
    for k in range(layer):
        zc = f.z_cols[k]
        fixed.append(np.where(f.col_lower[zc] >= 0, 1.0, np.where(f.col_upper[zc] <= 0, 0.0, np.nan)))
    g = np.zeros((1, network.layers[layer].width))
    g[0, unit] = direction
    box = Box(f.col_lower[f.x_cols], f.col_upper[f.x_cols])
    w = walk(network, box, Target(g, np.zeros(1), layer), start, Deadline.after(time_limit), fixed=fixed,
             steps=WALK_ROUNDS, stall=WALK_STALL, solver=solver)
    return SearchResult(w.points, w.value, w.lps, time.perf_counter() - t0, Counts(lps=w.lps))
