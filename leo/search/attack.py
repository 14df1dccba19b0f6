"""The one gradient attack: projected descent on an excess, from many starts at once.

Every search for a point in leo asks the same question: find ``x`` in a box where, for
the rows ``r`` of one group, ``max_r (g_r . v(x) + h_r)`` is small (<= 0: ``x`` is in the
set the rows describe). ``v`` is the network's output (a VNN-LIB disjunct ``A y <= c`` is
``g = A, h = -c``; an input-split goal ``g y + h <= 0`` is itself) or one layer's
pre-activation (a unit's sign: one row ``-direction * e_unit``, so a value < 0 is a
crossing). Counterexamples of ``leo property`` (``leo.queries.property``), the in-leaf
attack of input splitting (``leo.bab.input_split``), the attack from ReLU-split LP optima
(``leo.bab.relu_split``) and the witnesses' local search (``leo.search.witnesses``) are
all this one function with different options.

API::

    result = attack(network, starts, objective, options, lower=lo, upper=hi,
                    deadline=Deadline.after(s), accept=check)

- ``starts`` (P, n): one row per start; ``lower``/``upper``: the box, (n,) or one row per
  start (P, n) (a leaf of a split tree); starts are clipped into it, steps projected on it.
- ``objective``: ``Objective(g, h, owner, target)``; start ``p`` minimises the largest
  ``g_r . v + h_r`` over the rows with ``owner[r] == target[p]`` (its *group*).
  ``Objective.disjunct(a, c, starts)`` and ``Objective.units(units, directions, starts)``
  build the two common forms; ``layer`` in the options picks ``v``.
- ``options``: ``AttackOptions`` -- the step ``Schedule`` (steps, first rate as a share of
  each input's width, how it shrinks), the ``Rule`` (signed gradient, or Adam), the
  ``Backend`` (numpy: no torch import, ``leo property`` starts fast; torch: conv layers
  run as convolutions), ``stop_below`` (a group stops once one of its starts is below it;
  None: every step runs) and ``accept_below``.
- ``accept(x)``: the caller's judge (the network's own forward pass, usually), asked in
  order about every point evaluated at or below ``accept_below``; the first point it
  answers with something other than None ends the attack (``AttackResult.accepted``).
- ``deadline``: a ``Deadline``; the attack stops at it with what it has.

The result holds per start its best point evaluated and value, and where it ended.
Only candidates: nothing here proves anything, and a point counts only when the caller's
forward pass confirms it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from leo.core.deadline import Deadline
from leo.core.network import Network, input_gradient


class Rule(enum.Enum):
    """How a step follows the gradient."""

    SIGN = "sign"  # x -= rate * width * sign(grad): scale-free, the PGD step
    ADAM = "adam"  # Adam on x scaled to [0, 1]^n (momentum helps through flat regions)


class Backend(enum.Enum):
    """Who computes values and gradients."""

    NUMPY = "numpy"  # no torch: the property checker starts without it
    TORCH = "torch"  # conv layers as convolutions (``leo.search.forward.torch_layers``)


@dataclass(frozen=True)
class Schedule:
    """``steps`` steps; the first moves ``rate`` of each input's width, and the rate is
    multiplied by ``factor`` ``pieces`` times evenly over the steps (None: after every step)."""

    steps: int
    rate: float
    factor: float = 1.0
    pieces: int | None = None

    def rate_at(self, k: int) -> float:
        """The rate of step ``k`` (0-based)."""
        times = k if self.pieces is None else self.pieces * k // max(self.steps, 1)
        return self.rate * self.factor ** times


@dataclass(frozen=True)
class AttackOptions:
    """One attack's settings (see the module docstring)."""

    schedule: Schedule
    rule: Rule = Rule.SIGN
    backend: Backend = Backend.NUMPY
    stop_below: float | None = 0.0
    accept_below: float = 0.0
    #: the layer (0-based) whose values are attacked: None, the network's output; an index,
    #: that layer's pre-activation
    layer: int | None = None


@dataclass(frozen=True)
class Objective:
    """Start ``p`` minimises ``max over r with owner[r] == target[p] of g[r] . v + h[r]``."""

    g: np.ndarray  # (m, width of v)
    h: np.ndarray  # (m,)
    owner: np.ndarray  # (m,) the group of each row
    target: np.ndarray  # (P,) the group of each start

    @staticmethod
    def disjunct(a: np.ndarray, c: np.ndarray, starts: int) -> Objective:
        """Every start on one disjunct ``a v <= c``."""
        a = np.atleast_2d(np.asarray(a, dtype=np.float64))
        c = np.atleast_1d(np.asarray(c, dtype=np.float64))
        return Objective(a, -c, np.zeros(len(c), int), np.zeros(starts, int))

    @staticmethod
    def units(units: np.ndarray, directions: np.ndarray, width: int, per_unit: int) -> Objective:
        """``per_unit`` starts per unit (consecutive), each pushing ``direction * z[unit]``
        above 0 (value ``-direction * z[unit]`` below 0); groups are positions in ``units``."""
        n = len(units)
        g = np.zeros((n, width))
        g[np.arange(n), np.asarray(units, int)] = -np.asarray(directions, dtype=np.float64)
        return Objective(g, np.zeros(n), np.arange(n), np.repeat(np.arange(n), per_unit))

    def values(self, v: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per start (rows of ``v``, indices ``starts``): its value and the row that attains it."""
        groups = self.target[starts]
        counts = np.bincount(self.owner, minlength=int(self.owner.max(initial=-1)) + 1)
        if len(counts) and (counts <= 1).all():  # one row per group: gather, no (P, m) product
            row_of = np.full(len(counts), -1)
            row_of[self.owner] = np.arange(len(self.owner))
            rows = row_of[groups]
            return np.einsum("pj,pj->p", v, self.g[rows]) + self.h[rows], rows
        all_rows = v @ self.g.T + self.h
        all_rows = np.where(self.owner[None, :] == groups[:, None], all_rows, -np.inf)
        rows = all_rows.argmax(axis=1)
        return all_rows[np.arange(len(rows)), rows], rows


@dataclass(frozen=True)
class AttackResult:
    """Per start: the best point evaluated and its value, and where it ended; the first point
    ``accept`` took (with its answer), if any; the steps taken."""

    best: np.ndarray
    values: np.ndarray
    final: np.ndarray
    accepted: tuple[np.ndarray, Any] | None = None
    steps: int = 0

    def best_per_group(self, target: np.ndarray, groups: int) -> np.ndarray:
        """Per group ``0..groups-1`` the best point of its starts (the first start's on ties)."""
        out = np.zeros((groups, self.best.shape[1]))
        for i in range(groups):
            mine = np.flatnonzero(target == i)
            if len(mine):
                out[i] = self.best[mine[int(np.argmin(self.values[mine]))]]
        return out


#: (network, points, objective, start indices, options, with gradient) -> (values, gradients or None)
Evaluate = Callable[[Network, np.ndarray, Objective, np.ndarray, AttackOptions, bool],
                    tuple[np.ndarray, np.ndarray | None]]


def _numpy(network: Network, x: np.ndarray, obj: Objective, idx: np.ndarray, opts: AttackOptions,
           grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    output = opts.layer is None
    zs = network.pre_activations(x, opts.layer)
    v = np.maximum(zs[-1], 0.0) if output and network.layers[-1].relu else zs[-1]
    values, rows = obj.values(v, idx)
    if not grad:
        return values, None
    return values, input_gradient(network, zs, obj.g[rows], through_last_relu=output)


def _torch(network: Network, x: np.ndarray, obj: Objective, idx: np.ndarray, opts: AttackOptions,
           grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    import torch

    from leo.search.forward import torch_forward, torch_layers

    layer = len(network.layers) - 1 if opts.layer is None else opts.layer
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(grad)
    with torch.enable_grad() if grad else torch.no_grad():
        v = torch_forward(torch_layers(network, layer), xt)[-1]
        if opts.layer is None and network.layers[-1].relu:
            v = torch.relu(v)
        _, rows = obj.values(v.detach().numpy(), idx)  # the row attaining each start's max
        rows_t = torch.from_numpy(rows)
        values = (v * torch.from_numpy(obj.g)[rows_t]).sum(dim=1) + torch.from_numpy(obj.h)[rows_t]
        if not grad:
            return values.numpy(), None
        (gx,) = torch.autograd.grad(values.sum(), xt)
    return values.detach().numpy(), gx.numpy()


_EVALUATE: dict[Backend, Evaluate] = {Backend.NUMPY: _numpy, Backend.TORCH: _torch}

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-12


@dataclass(frozen=True)
class _Adam:
    """Adam's moments per start (on x scaled to [0, 1]^n)."""

    m1: np.ndarray
    m2: np.ndarray


def _step(x: np.ndarray, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray, rate: float, rule: Rule,
          adam: _Adam | None, rows: np.ndarray, t: int) -> np.ndarray:
    """One projected step down the gradient for the starts ``rows`` (x, lo, hi: theirs)."""
    width = hi - lo
    if rule is Rule.SIGN:
        return np.minimum(np.maximum(x - rate * width * np.sign(grad), lo), hi)
    assert adam is not None
    b1, b2 = ADAM_BETAS
    gu = grad * width  # the gradient in the scaled coordinates
    adam.m1[rows] = adam.m1[rows] * b1 + gu * (1 - b1)
    adam.m2[rows] = adam.m2[rows] * b2 + gu * gu * (1 - b2)
    move = (adam.m1[rows] / (1 - b1 ** t)) / (np.sqrt(adam.m2[rows] / (1 - b2 ** t)) + ADAM_EPS)
    return np.minimum(np.maximum(x - rate * width * move, lo), hi)


def attack(network: Network, starts: np.ndarray, objective: Objective, options: AttackOptions, *,
           lower: np.ndarray, upper: np.ndarray, deadline: Deadline = Deadline.never(),
           accept: Callable[[np.ndarray], Any] | None = None) -> AttackResult:
    """Projected gradient descent from every start on its group's excess (module docstring)."""
    x = np.array(np.atleast_2d(starts), dtype=np.float64)
    p = len(x)
    lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), x.shape)
    hi = np.broadcast_to(np.asarray(upper, dtype=np.float64), x.shape)
    x = np.minimum(np.maximum(x, lo), hi)
    best, best_val = x.copy(), np.full(p, np.inf)
    evaluate = _EVALUATE[options.backend]
    adam = _Adam(np.zeros_like(x), np.zeros_like(x)) if options.rule is Rule.ADAM else None
    rows = np.arange(p)  # the starts still moving
    steps = options.schedule.steps
    taken = 0
    for k in range(steps + 1):
        if deadline.passed() or not len(rows):
            break
        last = k == steps
        values, grad = evaluate(network, x[rows], objective, rows, options, not last)
        better = values < best_val[rows]
        best[rows[better]], best_val[rows[better]] = x[rows[better]], values[better]
        if accept is not None:
            for j in np.flatnonzero(values <= options.accept_below):
                answer = accept(x[rows[j]].copy())
                if answer is not None:
                    return AttackResult(best, best_val, x, (x[rows[j]].copy(), answer), taken)
        moving = np.ones(len(rows), dtype=bool)
        if options.stop_below is not None:
            done = np.unique(objective.target[best_val < options.stop_below])
            moving = ~np.isin(objective.target[rows], done)
        rows, grad = rows[moving], None if grad is None else grad[moving]
        if last or not len(rows):
            break
        assert grad is not None
        x[rows] = _step(x[rows], grad, lo[rows], hi[rows], options.schedule.rate_at(k), options.rule, adam, rows,
                        k + 1)
        taken += 1
    return AttackResult(best, best_val, x, None, taken)
