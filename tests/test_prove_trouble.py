"""A solver that calls a prefix's LP relaxation infeasible is in numerical trouble (every box
point with the network's values satisfies it), and its cutoff solves would read as proofs: the
per-unit prover then proves nothing for that prefix. The truth here: the same tasks without the
trouble prove units whose sign dense sampling confirms."""

from __future__ import annotations

import numpy as np

import leo.stability.prove as prove_module
from leo.bounds.propagate import cheap_bounds
from leo.core.domain import make_box
from leo.bounds.encoding import build_prefix
from leo.stability.prove import Task, prove
from leo.stability.stages import StabilityOptions
from leo.core.verdicts import Verdict
from tests.conftest import random_mlp


def _tasks():
    net = random_mlp(np.random.default_rng(3), [3, 8, 8, 1])
    box = make_box(-1.0, 1.0, 3)
    bounds = cheap_bounds(net, box, symbolic=False)
    states = [[Verdict.UNSTABLE] * layer.width for layer in net.layers[:-1]]
    enc = build_prefix(net, box, bounds, states, upto=1)
    tasks = [Task(u, d, None) for u in range(8) for d in (1, -1)]
    return net, box, enc, tasks


def test_a_prefix_the_solver_calls_infeasible_proves_nothing(monkeypatch) -> None:
    net, box, enc, tasks = _tasks()
    options = StabilityOptions(time_limit=5.0)
    honest = prove(net, enc, 1, tasks, options)
    proven = [r for r in honest if r.proven]
    assert proven  # without trouble some signs are proven ...
    z = net.pre_activations(box.sample(20_000, np.random.default_rng(0)))[1]
    assert all((r.direction * z[:, r.unit]).min() >= 0 for r in proven)  # ... and sampling agrees
    monkeypatch.setattr(prove_module._Prover, "_in_trouble", lambda self, limit: True)
    assert not any(r.proven for r in prove(net, enc, 1, tasks, options))


def test_the_trouble_check_passes_on_a_sound_prefix() -> None:
    net, _, enc, _ = _tasks()
    for threads in (1, 2):
        options = StabilityOptions(time_limit=5.0, threads=threads)
        assert not prove_module._Prover(net, enc, 1, options)._in_trouble(5.0)
