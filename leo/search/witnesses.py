"""Points of the box that show a unit takes both signs, so it needs no proof.

Every unstable verdict keeps its witness pair (a point where the pre-activation is
> 0 and one where it is < 0), evaluated by the network's own forward pass.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import numpy as np
import torch

from leo.core.domain import Box
from leo.io.conv import conv_kernel
from leo.core.network import Layer, Network

#: One source's term of a layer as a torch function of that source's output (batch, n).
Term = Callable[[torch.Tensor], torch.Tensor]
_terms: dict[int, tuple[weakref.ref, Term, bool]] = {}


def _conv_term(kernel: np.ndarray, layer: Layer) -> Term:
    """The term of a conv layer as the convolution itself: on a 9.5k-unit MNIST CNN the
    product with the lowered matrix (20M entries, 5 % nonzero) made the local search's
    forward and backward passes most of the witness phase."""
    st = layer.structure
    assert st is not None
    dims = len(st["kernel"])
    pads = [int(p) for p in st["pads"]]
    pad = [p for d in reversed(range(dims)) for p in (pads[d], pads[dims + d])]  # torch: last dim first
    conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[dims]
    weight = torch.tensor(kernel)
    in_shape = tuple(int(d) for d in st["in_shape"])
    strides, dilations, group = list(st["strides"]), list(st["dilations"]), int(st["group"])

    def term(h: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.pad(h.reshape(h.shape[0], *in_shape), pad)
        return conv(x, weight, stride=strides, dilation=dilations, groups=group).reshape(h.shape[0], -1)

    return term


def _term(layer: Layer, source: int) -> Term:
    """How witnesses apply ``layer``'s weight from ``source`` in torch (cached per weight
    array, which is frozen): as a convolution when the weight is exactly the conv its
    ``structure`` names (``leo.io.conv.conv_kernel`` checks entry for entry), else as a product."""
    w = layer.weights[source]
    hit = _terms.get(id(w))
    if hit is not None and hit[0]() is w:
        return hit[1]
    kernel = None
    if layer.structure is not None and len(layer.weights) == 1 and len(layer.structure.get("kernel", ())) in (1, 2, 3):
        kernel = conv_kernel(w, layer.structure)
    if kernel is not None:
        term = _conv_term(kernel, layer)
    else:
        wt = torch.tensor(w).T

        def term(h: torch.Tensor) -> torch.Tensor:
            return h @ wt

    key = id(w)
    _terms[key] = (weakref.ref(w, lambda _, k=key: _terms.pop(k, None)), term, kernel is not None)
    return term


def runs_as_conv(layer: Layer, source: int) -> bool:
    """Whether ``_term`` runs ``layer``'s weight from ``source`` as a convolution."""
    _term(layer, source)
    return _terms[id(layer.weights[source])][2]


def torch_layers(network: Network, upto: int) -> list[tuple[dict[int, Term], torch.Tensor, bool]]:
    """Layers ``0..upto`` as (terms per source, bias, relu) for torch forward passes."""
    return [({s: _term(lyr, s) for s in lyr.weights}, torch.tensor(lyr.bias), lyr.relu)
            for lyr in network.layers[: upto + 1]]


def torch_forward(layers: list[tuple[dict[int, Term], torch.Tensor, bool]], x: torch.Tensor) -> list[torch.Tensor]:
    """Pre-activations of ``layers`` on the batch ``x`` (float64)."""
    outs, zs = [x], []
    for terms, bias, relu in layers:
        z = bias + sum(term(outs[s]) for s, term in terms.items())
        zs.append(z)
        outs.append(torch.relu(z) if relu else z)
    return zs


def pre_activations(network: Network, x: np.ndarray) -> list[np.ndarray]:
    """``network.pre_activations(x)``, computed with ``torch_forward`` (equal up to float
    rounding of the sums' order) when some layer runs as a convolution."""
    if not any(runs_as_conv(lyr, s) for lyr in network.layers for s in lyr.weights):
        return network.pre_activations(x)  # no convolution: the network's own pass, as before
    layers = torch_layers(network, len(network.layers) - 1)
    with torch.no_grad():
        zs = torch_forward(layers, torch.as_tensor(np.asarray(x, dtype=np.float64)))
    return [z.numpy() for z in zs]


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
    # the dense size, also for a layer run as a convolution: per multiply-add a float64 conv2d
    # is slower than a matrix product, and counting its nonzeros let one search run 30 s
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
    params = torch_layers(network, layer)
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
        z = torch_forward(params, x)[-1]
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
