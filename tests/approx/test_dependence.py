"""Linear-dependence elimination: planted redundant units go, outputs stay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leo.approx.dependence import DependenceOptions, dependence_elimination, dependence_training, eliminate_dependent
from leo.approx.finetune import FinetuneOptions
from leo.errors import LeoInputError
from leo.core.network import Network, mlp


def _planted(rng: np.random.Generator) -> tuple[Network, np.ndarray]:
    """5 -> 12 -> 9 -> 3 with ReLUs about half active; in layer 1, unit 10 is 2.5 x unit 3
    (so h10 = 2.5 h3 exactly) and unit 11 is the constant 0.7; nothing else is redundant."""
    w1 = rng.normal(size=(12, 5))
    b1 = rng.normal(size=12) * 0.2
    w1[10], b1[10] = 2.5 * w1[3], 2.5 * b1[3]
    w1[11], b1[11] = 0.0, 0.7
    w2 = rng.normal(size=(9, 12)) / np.sqrt(12)
    w3 = rng.normal(size=(3, 9))
    x = rng.normal(size=(2000, 5))
    b2 = -np.median(np.maximum(x @ w1.T + b1, 0) @ w2.T, axis=0)  # every layer-2 unit half active
    return mlp([w1, w2, w3], [b1, b2, rng.normal(size=3)]), x


def test_planted_units_removed_outputs_unchanged(rng: np.random.Generator) -> None:
    net, x = _planted(rng)
    out, removed = eliminate_dependent(net, x, tol=1e-9)
    assert out.hidden == (10, 9)
    gone = {(r["layer"], r["unit"]) for r in removed}
    assert (1, 11) in gone and ((1, 10) in gone or (1, 3) in gone)
    assert np.abs(out(x) - net(x)).max() <= 1e-9
    # removing a unit that is NOT a combination does change the outputs: the check can fail
    loose, extra = eliminate_dependent(net, x, tol=0.9)
    assert sum(loose.hidden) < 19 and np.abs(loose(x) - net(x)).max() > 1e-3


def test_annealed_elimination_reports(rng: np.random.Generator) -> None:
    net, x = _planted(rng)
    y = np.argmax(net(x), axis=1)
    out, rep = dependence_elimination(net, x, y, DependenceOptions(tol_start=1e-9, tol_max=1e-6, budget=0.0))
    assert out.hidden[0] == 10
    assert rep.lossless is False and rep.to_json()["lossless"] is False
    assert rep.agreement == 1.0 and rep.max_abs_diff <= 1e-9
    assert rep.details["metric"] == "accuracy"
    kept = rep.details["kept_units"][1]  # original indices of the units that stay
    assert len(kept) == 10 and 11 not in kept and (3 in kept) != (10 in kept)
    json.dumps(rep.to_json())
    # a zero budget stops before any inexact removal; a loose one removes more
    loose, rep2 = dependence_elimination(net, x, y, DependenceOptions(tol_start=1e-3, tol_max=0.5, budget=1.0,
                                                                        metric="agreement"))
    assert sum(loose.hidden) < sum(out.hidden) and rep2.agreement < 1.0


def test_finetune_keeps_structure(rng: np.random.Generator) -> None:
    net, x = _planted(rng)
    y = np.argmax(net(x), axis=1)
    opts = DependenceOptions(tol_start=0.05, tol_max=0.2, budget=1.0, finetune=FinetuneOptions(steps=20, lr=1e-3))
    out, rep = dependence_elimination(net, x, y, opts)
    assert any(r["finetuned"] for r in rep.details["rounds"])
    assert out.input_dim == 5 and out.output_dim == 3 and out.is_mlp


def test_bad_inputs(rng: np.random.Generator) -> None:
    net, x = _planted(rng)
    with pytest.raises(LeoInputError, match="5 inputs"):
        dependence_elimination(net, np.zeros((10, 7)))
    with pytest.raises(LeoInputError, match="empty"):
        dependence_elimination(net, np.zeros((0, 5)))
    with pytest.raises(LeoInputError, match="labels"):
        dependence_elimination(net, x, np.zeros(3, dtype=int))
    with pytest.raises(LeoInputError, match="0 .. 2"):
        dependence_elimination(net, x, np.full(len(x), 7))
    with pytest.raises(LeoInputError, match="tol"):
        DependenceOptions(tol_start=0.5, tol_max=0.1)
    with pytest.raises(LeoInputError, match="accuracy"):
        dependence_elimination(net, x, options=DependenceOptions(metric="accuracy"))


def test_elimination_during_training(rng: np.random.Generator) -> None:
    """The planted redundant units go in the first epoch (a tiny learning rate keeps them
    redundant); epochs are logged with an annealed tolerance."""
    net, x = _planted(rng)
    y = np.argmax(net(x), axis=1)
    train = FinetuneOptions(steps=5, lr=1e-9)
    out, rep = dependence_training(net, x, y, train, epochs=3,
                                   options=DependenceOptions(tol_start=1e-6, tol_factor=10, tol_max=1e-4, budget=0.0))
    epochs = rep.details["epochs"]
    assert [e["tolerance"] for e in epochs] == pytest.approx([1e-6, 1e-5, 1e-4])
    assert epochs[0]["removed"] >= 2 and epochs[0]["accepted"]
    assert out.hidden[0] <= 10 and rep.details["removed_units"] == sum(net.hidden) - sum(out.hidden)
    assert rep.agreement > 0.99
    with pytest.raises(LeoInputError, match="epochs"):
        dependence_training(net, x, y, train, epochs=0)
