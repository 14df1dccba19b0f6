"""One split tree for many questions (``leo.bab.input_split.search_each``), the in-leaf attack, and the
stability phase that uses both (``leo.stability.analysis._branch_units``).

Independent truth: exact pre-activation ranges by one LP per activation pattern (tiny
networks, ``conftest.exact_ranges``) and numpy's forward pass of the network."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from tests.conftest import exact_ranges, random_mlp
from leo.bab.input_split import Status, property_goal, search, search_each, unit_network
from leo.core.deadline import Deadline, now
from leo.core.domain import make_box
from leo.stability.analysis import _branch_units

torch.set_num_threads(1)

GAP = 0.05  # thresholds sit this far inside / outside the exact range
NETS = [(seed, sizes) for seed, sizes in enumerate([[2, 5, 4, 4], [3, 4, 4, 3], [2, 3, 3, 4, 4]])]


@functools.cache
def _cached(seed: int, sizes: tuple[int, ...]):
    net = random_mlp(np.random.default_rng(500 + seed), list(sizes) + [1], bias_shift=0.2)
    box = make_box(-1, 1, sizes[0])
    k = len(sizes) - 2
    return net, box, k, exact_ranges(net, box.lower, box.upper, k)


def _layer(seed: int, sizes: list[int]):
    """A random net, its box, its last hidden layer (0-based) and that layer's exact ranges
    (enumeration is the slow part: once per net)."""
    return _cached(seed, tuple(sizes))


@pytest.mark.parametrize("seed,sizes", NETS)
def test_each_disjunct_is_proven_or_reached_as_the_exact_range_says(seed: int, sizes: list[int]) -> None:
    """Unit j's disjunct is z_j <= t_j: excluded when t_j is GAP below its exact minimum, reached
    (at a point whose forward pass puts z_j <= t_j) when GAP above; all on one tree."""
    net, box, k, (lo, _) = _layer(seed, sizes)
    sub = unit_network(net, k + 1)
    width = sub.output_dim
    below = np.arange(width) % 2 == 0
    t = np.where(below, lo - GAP, lo + GAP)
    goal = property_goal([(np.eye(width)[[j]], np.array([t[j]])) for j in range(width)])
    r = search_each(sub, box, goal, Deadline.after(60))
    assert r.proven == frozenset(np.flatnonzero(below).tolist())
    assert set(r.found) == set(np.flatnonzero(~below).tolist())
    for j, x in r.found.items():
        assert box.contains(x)[0] and float(sub(x[None, :])[0, j]) <= t[j]
    assert r.status is (Status.COUNTEREXAMPLE if r.found else Status.PROVEN)


@pytest.mark.parametrize("seed,sizes", NETS)
def test_branch_units_claims_match_exact_ranges_and_witnesses_show_the_other_sign(seed: int,
                                                                                   sizes: list[int]) -> None:
    """The stability phase's question for every unit of a layer ("is it active?" where the
    unit can be positive, else "is it inactive?"): a proof only for exactly stable units; for
    every exactly unstable unit (beyond a small gap) a returned point where the forward pass
    shows the other sign."""
    net, box, k, (lo, hi) = _layer(seed, sizes)
    sub = unit_network(net, k + 1)
    units = np.arange(sub.output_dim)
    directions = np.where(hi > 0, 1.0, -1.0)
    proofs, points = _branch_units(sub, box, units, directions, 1e-6, 60.0)
    for j, p in proofs.items():
        assert (str(p.verdict) == "active" and lo[j] >= 0) or (str(p.verdict) == "inactive" and hi[j] <= 0)
    z = sub(points) if len(points) else np.zeros((0, len(units)))
    assert all(box.contains(x)[0] for x in points)
    for j in units:
        if lo[j] > 1e-4 or hi[j] < -1e-4:
            assert j in proofs, (j, lo[j], hi[j])
        if lo[j] < -1e-4 and hi[j] > 1e-4:
            assert j not in proofs and (directions[j] * z[:, j] < 0).any(), (j, lo[j], hi[j])


def test_a_deadline_leaves_every_disjunct_open() -> None:
    net, box, k, (lo, _) = _layer(*NETS[0])
    sub = unit_network(net, k + 1)
    goal = property_goal([(np.eye(sub.output_dim)[[j]], np.array([lo[j] - GAP])) for j in range(sub.output_dim)])
    r = search_each(sub, box, goal, Deadline(now() - 1.0))
    assert r.status is Status.TIMEOUT and r.proven == frozenset() and r.found == {}
    proofs, points = _branch_units(sub, box, np.arange(sub.output_dim), np.ones(sub.output_dim), 1e-6, 0.0)
    assert proofs == {} and len(points) == 0


def test_a_check_that_refuses_every_point_claims_nothing_reached() -> None:
    net, box, k, (lo, _) = _layer(*NETS[1])
    sub = unit_network(net, k + 1)
    goal = property_goal([(np.eye(sub.output_dim)[[j]], np.array([lo[j] + 1.0])) for j in range(sub.output_dim)])
    r = search_each(sub, box, goal, Deadline.after(3), confirm=lambda x, i: False, max_open=64)
    assert r.found == {} and r.proven == frozenset() and r.status in (Status.TIMEOUT, Status.UNKNOWN)


def test_the_in_leaf_attack_finds_counterexamples_that_splitting_alone_does_not() -> None:
    """Threshold just above the exact minimum, and a leaf budget too small for splitting to
    reach it. The attack only adds candidates to the same tree, so it finds a counterexample
    wherever the plain search does, and here in more cases; every point it returns is put in
    the unsafe set by the forward pass (the caller's check, as in check_property) and is never
    below the exact minimum."""
    plain_found, attack_found = set(), set()
    for seed in range(3):
        net = random_mlp(np.random.default_rng(600 + seed), [3, 5, 4, 1], bias_shift=0.1)
        box = make_box(-1, 1, 3)
        sub = unit_network(net, 3)  # the output, as a linear layer
        m = exact_ranges(net, box.lower, box.upper, 2)[0][0]
        t = m + 1e-3
        goal = property_goal([(np.ones((1, 1)), np.array([t]))])  # unsafe: y <= t

        def confirm(x: np.ndarray) -> int | None:
            return 0 if box.contains(x)[0] and float(sub(x[None, :])[0, 0]) <= t else None  # noqa: B023

        plain = search(sub, box, goal, Deadline.after(30), confirm=confirm, attack_steps=0, max_open=2, batch=1)
        r = search(sub, box, goal, Deadline.after(30), confirm=confirm, max_open=2, batch=1)
        assert plain.status in (Status.UNKNOWN, Status.COUNTEREXAMPLE)
        assert r.status in (Status.UNKNOWN, Status.COUNTEREXAMPLE)
        if plain.status is Status.COUNTEREXAMPLE:
            plain_found.add(seed)
        if r.status is Status.COUNTEREXAMPLE:
            attack_found.add(seed)
            y = float(sub(r.x[None, :])[0, 0])
            assert box.contains(r.x)[0] and m - 1e-9 <= y <= t and r.disjunct == 0
    assert plain_found <= attack_found and attack_found - plain_found
