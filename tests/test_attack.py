"""The one gradient attack (``leo.search.attack``): its values and gradients against the
network's own forward pass and finite differences, numpy against torch, and what it finds
against dense sampling of the box."""

from __future__ import annotations

import numpy as np
import pytest

from leo.core.deadline import Deadline
from leo.core.network import Layer, Network
from leo.core.spec import excess
from leo.search.attack import (AttackOptions, Backend, Objective, Rule, Schedule, _numpy, _torch, attack)
from tests.conftest import random_mlp


def _skip_net(rng: np.random.Generator) -> Network:
    """A net with a skip connection and a final relu: every source kind the passes handle."""
    l1 = Layer({0: rng.normal(size=(6, 3))}, rng.normal(size=6), relu=True)
    l2 = Layer({1: rng.normal(size=(5, 6)), 0: rng.normal(size=(5, 3))}, rng.normal(size=5), relu=True)
    l3 = Layer({2: rng.normal(size=(2, 5)), 1: rng.normal(size=(2, 6))}, rng.normal(size=2), relu=True)
    return Network(3, (l1, l2, l3))


@pytest.mark.parametrize("layer", [None, 0, 1])
def test_values_and_gradients_agree_with_forward_pass_and_finite_differences(layer: int | None) -> None:
    rng = np.random.default_rng(1)
    net = _skip_net(rng)
    width = net.output_dim if layer is None else net.layers[layer].width
    g, h = rng.normal(size=(5, width)), rng.normal(size=5)
    owner = np.array([0, 0, 1, 1, 1])
    x = rng.uniform(-1, 1, size=(40, 3))
    obj = Objective(g, h, owner, rng.integers(0, 2, size=40))
    opts = AttackOptions(Schedule(1, 0.1), layer=layer)
    idx = np.arange(40)
    v = net(x) if layer is None else net.pre_activations(x)[layer]
    truth = np.array([(v[p] @ g[owner == obj.target[p]].T + h[owner == obj.target[p]]).max() for p in idx])
    val_np, grad_np = _numpy(net, x, obj, idx, opts, True)
    val_t, grad_t = _torch(net, x, obj, idx, opts, True)
    np.testing.assert_allclose(val_np, truth, atol=1e-12)
    np.testing.assert_allclose(val_t, truth, atol=1e-12)
    np.testing.assert_allclose(grad_np, grad_t, atol=1e-10)
    eps = 1e-7
    for d in range(3):
        step = np.zeros(3)
        step[d] = eps
        up, _ = _numpy(net, x + step, obj, idx, opts, False)
        down, _ = _numpy(net, x - step, obj, idx, opts, False)
        fd = (up - down) / (2 * eps)
        smooth = np.abs(fd - grad_np[:, d]) < 1e-4
        assert smooth.mean() > 0.9  # a kink between x +- eps spoils a few rows, no more


@pytest.mark.parametrize("backend", list(Backend))
@pytest.mark.parametrize("rule", list(Rule))
def test_attack_reaches_a_disjunct_that_sampling_shows_reachable(backend: Backend, rule: Rule) -> None:
    rng = np.random.default_rng(2)
    net = random_mlp(rng, [4, 16, 16, 3])
    lo, hi = -np.ones(4), np.ones(4)
    dense = rng.uniform(lo, hi, size=(200_000, 4))
    a = np.array([[1.0, -1.0, 0.0]])
    c = np.array([float(np.quantile(net(dense) @ a[0], 1e-4))])  # reachable: 20 sampled points reach it
    starts = rng.uniform(lo, hi, size=(16, 4))
    assert excess(a, c, net(starts)).min() > 0
    r = attack(net, starts, Objective.disjunct(a, c, 16), AttackOptions(Schedule(100, 0.1, 0.5, 4), rule, backend),
               lower=lo, upper=hi)
    i = int(np.argmin(r.values))
    assert r.values[i] < 0
    np.testing.assert_allclose(r.values, excess(a, c, net(r.best)), atol=1e-12)  # the forward pass agrees
    assert np.all((r.best >= lo) & (r.best <= hi))
    assert r.steps < 100  # stopped once a start was inside


def test_unit_objective_pushes_each_unit_its_way_and_stops_per_group() -> None:
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [5, 12, 12, 2])
    lo, hi = np.zeros(5), np.ones(5)
    z = net.pre_activations(rng.uniform(lo, hi, size=(100_000, 5)))[1]
    units = np.flatnonzero((z.max(axis=0) > 1e-3) & (z.min(axis=0) < -1e-3))[:4]
    assert len(units)
    starts_z = net.pre_activations(np.repeat(((lo + hi) / 2)[None], len(units), axis=0))[1]
    directions = -np.sign(starts_z[np.arange(len(units)), units])  # toward the sign the centre lacks
    starts = np.repeat(((lo + hi) / 2)[None], 3 * len(units), axis=0)
    starts[1:] = rng.uniform(lo, hi, size=(len(starts) - 1, 5))
    obj = Objective.units(units, directions, net.layers[1].width, 3)
    r = attack(net, starts, obj, AttackOptions(Schedule(200, 0.05, 0.3, 3), Rule.ADAM, layer=1), lower=lo, upper=hi)
    best = r.best_per_group(obj.target, len(units))
    zb = net.pre_activations(best)[1][np.arange(len(units)), units]
    assert np.all(directions * zb > 0)  # every unit crossed, checked by the forward pass


def test_accept_takes_the_first_confirmed_point_and_deadline_stops_before_work() -> None:
    rng = np.random.default_rng(4)
    net = random_mlp(rng, [3, 10, 2])
    lo, hi = -np.ones(3), np.ones(3)
    a, c = np.array([[1.0, 0.0]]), np.array([float(np.median(net(rng.uniform(lo, hi, (1000, 3)))[:, 0]))])
    seen: list[np.ndarray] = []

    def judge(x: np.ndarray) -> int | None:
        seen.append(x)
        return 7 if excess(a, c, net(x[None]))[0] <= 0 else None

    starts = rng.uniform(lo, hi, size=(8, 3))
    r = attack(net, starts, Objective.disjunct(a, c, 8), AttackOptions(Schedule(20, 0.05), stop_below=None),
               lower=lo, upper=hi, accept=judge)
    assert r.accepted is not None and r.accepted[1] == 7
    assert excess(a, c, net(r.accepted[0][None]))[0] <= 0 and len(seen) >= 1
    late = attack(net, starts, Objective.disjunct(a, c, 8), AttackOptions(Schedule(20, 0.05)), lower=lo, upper=hi,
                  deadline=Deadline.after(0.0))
    assert late.steps == 0 and np.isinf(late.values).all()


def test_per_start_boxes_are_respected() -> None:
    rng = np.random.default_rng(5)
    net = random_mlp(rng, [2, 8, 1])
    lo = rng.uniform(-1, 0, size=(6, 2))
    hi = lo + rng.uniform(0, 0.3, size=(6, 2))
    r = attack(net, (lo + hi) / 2, Objective.disjunct(np.array([[1.0]]), np.array([-100.0]), 6),
               AttackOptions(Schedule(6, 0.25, 0.7)), lower=lo, upper=hi)
    assert np.all((r.final >= lo) & (r.final <= hi)) and r.steps == 6
    assert np.all(r.values <= excess(np.array([[1.0]]), np.array([-100.0]), net((lo + hi) / 2)) + 1e-12)


def test_schedule_rates() -> None:
    s = Schedule(100, 0.1, 0.5, 4)
    assert [s.rate_at(k) for k in (0, 24, 25, 99)] == [0.1, 0.1, 0.05, 0.1 * 0.5 ** 3]
    assert Schedule(6, 0.25, 0.7).rate_at(2) == pytest.approx(0.25 * 0.49)
