"""PQ index, SAP's retain bound and pruning count against hand computations; SAP rounds
against a brute-force sort; exact removal of dead units; our structured variant."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from leo.approx.finetune import FinetuneOptions, finetune
from leo.approx.pq_index import (PQOptions, apply_masks, drop_dead_units, full_masks, keep_count, magnitude_round,
                                 pq_index, pq_prune, prune_count, prune_round, retain_bound, sap_round, unit_scores)
from leo.errors import LeoInputError
from leo.core.network import Layer, Network, mlp


def test_pq_index_by_hand() -> None:
    # p = 1/2, q = 1: d^(1/q - 1/p) = 1/d, ||w||_1/2 = (sum sqrt|w_i|)^2
    assert pq_index(np.array([0.0, 0.0, 3.0, 0.0])) == pytest.approx(1 - 1 / 4)  # one-hot: 1 - d^(1-2)
    assert pq_index(np.full(7, 2.5)) == pytest.approx(0.0, abs=1e-15)  # constant: no sparsity
    # (1, 1, 0, 0): ||w||_1/2 = (1 + 1)^2 = 4, ||w||_1 = 2 -> 1 - 4 / (4 * 2) = 0.5
    assert pq_index(np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(0.5)
    # (4, 1, 0, 0): (2 + 1)^2 = 9, ||w||_1 = 5 -> 1 - 9 / 20 = 0.55
    assert pq_index(np.array([4.0, -1.0, 0.0, 0.0])) == pytest.approx(0.55)
    # p = 1, q = 2, one-hot of length 9: 1 - 9^(1/2 - 1) = 1 - 1/3
    assert pq_index(np.eye(9)[4], p=1.0, q=2.0) == pytest.approx(2 / 3)
    # (3, 4) with p = 1, q = 2: 1 - 2^(-1/2) * 7 / 5
    assert pq_index(np.array([3.0, 4.0]), p=1.0, q=2.0) == pytest.approx(1 - 7 / (5 * math.sqrt(2)))
    with pytest.raises(LeoInputError):
        pq_index(np.ones(3), p=1.0, q=1.0)


def test_keep_count_by_hand() -> None:
    # p = 1/2, q = 1: m = ceil(d (1 + eta)^-2 (1 - I))
    assert keep_count(4, 0.75) == 1  # one-hot of 4
    assert keep_count(4, 0.5) == 2
    assert keep_count(4, 0.55) == 2  # ceil(1.8)
    assert keep_count(10, 0.0) == 10
    assert keep_count(10, 0.0, eta=1.0) == 3  # ceil(10 / 4)
    assert keep_count(10, 0.99) == 1  # ceil(0.1) = 1
    assert keep_count(10, 1.0) == 1  # clamped to at least one
    # p = 1, q = 2: m = ceil(d (1 + eta)^-2 (1 - I)^2)
    assert keep_count(9, 2 / 3, p=1.0, q=2.0) == 1
    assert keep_count(8, 0.5, p=1.0, q=2.0) == 2
    # SAP's beta caps the pruned share: at most 30 % of 10 per round
    assert keep_count(10, 0.9, beta=0.3) == 7
    assert keep_count(10, 0.5, gamma=0.5) == 8  # prune floor(0.5 * (10 - 5)) = 2


def test_unit_scores_by_hand() -> None:
    w1 = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]])
    w2 = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    net = mlp([w1, w2], [np.zeros(3), np.zeros(2)])
    assert unit_scores(net, 1) == pytest.approx([5.0 * 1.0, 0.0, 1.0 * 2.0])


def test_structured_pruning_reduces_widths(rng: np.random.Generator) -> None:
    # a few strong units per layer, the others tiny: the index is high, most units go
    w1 = rng.normal(size=(20, 6)) * np.r_[np.ones(4), np.full(16, 1e-3)][:, None]
    w2 = rng.normal(size=(15, 20)) * np.r_[np.ones(3), np.full(12, 1e-3)][:, None]
    w3 = rng.normal(size=(4, 15))
    # distinct output biases: where every strong unit is off, the argmax is still decided
    net = mlp([w1, w2, w3], [np.zeros(20), np.zeros(15), np.array([1.0, 0.5, 0.0, -0.5])])
    x = rng.normal(size=(600, 6))
    y = np.argmax(net(x), axis=1)
    one, info = prune_round(net, PQOptions(structure="units", beta=1.0))
    assert one.hidden[0] < 20 and one.hidden[1] < 15
    assert info[0]["keep"] == one.hidden[0] and info[0]["pq_index"] > 0.5
    out, rep = pq_prune(net, x, y, PQOptions(structure="units", rounds=5, beta=1.0))
    assert out.hidden[0] <= one.hidden[0] and out.hidden[1] <= one.hidden[1]
    assert out.hidden == (4, 3) and out.num_parameters < net.num_parameters / 2
    assert rep.lossless is False and rep.to_json()["lossless"] is False
    assert rep.agreement > 0.95  # only near-silent units went
    kept = rep.details["kept_units"]
    assert len(kept[1]) == out.hidden[0] and set(range(4)) <= set(kept[1])  # the strong units stay
    json.dumps(rep.to_json())


def test_bad_inputs(rng: np.random.Generator) -> None:
    net = mlp([rng.normal(size=(5, 3)), rng.normal(size=(2, 5))], [np.zeros(5), np.zeros(2)])
    with pytest.raises(LeoInputError, match="3 inputs"):
        pq_prune(net, np.zeros((10, 2)))
    with pytest.raises(LeoInputError, match="empty"):
        pq_prune(net, np.zeros((0, 3)))
    with pytest.raises(LeoInputError, match="0 < p < q"):
        PQOptions(p=2.0, q=1.0)
    with pytest.raises(LeoInputError, match="scope"):
        PQOptions(scope="magic")
    with pytest.raises(LeoInputError, match="structure"):
        PQOptions(structure="magic")


def test_prune_count_by_hand() -> None:
    # p = 1/2, q = 1: r = ceil(d (1 + eta)^-2 (1 - I)), c = floor(d min(gamma (1 - r/d), beta))
    assert retain_bound(100, 0.5) == 50 and prune_count(100, 0.5) == 50
    assert prune_count(100, 0.0) == 0
    assert prune_count(10, 0.99) == 9  # r = 1, but beta = 0.9 caps the share
    assert prune_count(10, 0.99, beta=1.0) == 9
    assert prune_count(100, 0.5, gamma=1.5) == 75
    assert prune_count(100, 0.0, eta=1.0) == 75  # r = ceil(100 / 4) = 25


def _sap_by_hand(values: np.ndarray, opts: PQOptions) -> set[int]:
    """Indices of ``values`` SAP prunes, computed from the formulas directly."""
    a = np.abs(values)
    d = a.size
    index = 1 - d ** (1 / opts.q - 1 / opts.p) * np.sum(a ** opts.p) ** (1 / opts.p) / np.sum(a ** opts.q) ** (1 / opts.q)
    r = math.ceil(d * (1 + opts.eta) ** (-opts.q / (opts.q - opts.p)) * (1 - index) ** (opts.q * opts.p / (opts.q - opts.p)))
    c = math.floor(d * min(max(Fraction(opts.gamma) * Fraction(d - r, d), Fraction(0)), Fraction(opts.beta)))
    return set(np.argsort(a, kind="stable")[:c].tolist())


@pytest.mark.parametrize("scope", ["global", "layer", "neuron"])
def test_sap_round_matches_the_formulas(rng: np.random.Generator, scope: str) -> None:
    # heavy-tailed weights: a clear PQ index
    net = mlp([rng.standard_t(2, size=(7, 5)), rng.standard_t(2, size=(3, 7))], [rng.normal(size=7), np.zeros(3)])
    opts = PQOptions(scope=scope)
    masks, info = sap_round(net, full_masks(net), opts)
    w1, w2 = net.layers[0].weights[0], net.layers[1].weights[1]
    if scope == "global":
        flat = np.concatenate([w1.ravel(), w2.ravel()])
        drop = _sap_by_hand(flat, opts)
        got = set(np.flatnonzero(~np.concatenate([masks[(1, 0)].ravel(), masks[(2, 1)].ravel()])).tolist())
        assert got == drop and len(drop) > 0 and info[0]["pruned"] == len(drop)
    elif scope == "layer":
        for key, w in (((1, 0), w1), ((2, 1), w2)):
            assert set(np.flatnonzero(~masks[key].ravel()).tolist()) == _sap_by_hand(w.ravel(), opts)
    else:
        for key, w in (((1, 0), w1), ((2, 1), w2)):
            for i in range(w.shape[0]):
                assert set(np.flatnonzero(~masks[key][i]).tolist()) == _sap_by_hand(w[i], opts)
    # a second round works on the kept weights only: pruned ones stay pruned
    again, _ = sap_round(apply_masks(net, masks), masks, opts)
    assert all(np.all(again[k] <= masks[k]) for k in masks)


def test_magnitude_round_prunes_a_fifth(rng: np.random.Generator) -> None:
    net = mlp([rng.normal(size=(10, 10)), rng.normal(size=(4, 10))], [np.zeros(10), np.zeros(4)])
    masks = magnitude_round(net, full_masks(net), 0.2)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == 140 - 28  # 20 % of 140 distinct magnitudes
    smallest = np.sort(np.abs(np.concatenate([w.ravel() for ly in net.layers for w in ly.weights.values()])))[:28]
    pruned = np.concatenate([np.abs(net.layers[k - 1].weights[s])[~m] for (k, s), m in masks.items()])
    assert np.allclose(np.sort(pruned), smallest)


def test_dead_units_are_removed_exactly(rng: np.random.Generator) -> None:
    w1 = rng.normal(size=(5, 3))
    w1[1] = 0.0  # unit 1 reads nothing: outputs relu(b) = 2, a constant
    w2 = rng.normal(size=(4, 5))
    w2[:, 3] = 0.0  # unit 3 feeds nothing
    b1 = np.array([0.1, 2.0, -0.3, 0.5, 0.0])
    net = Network(3, (Layer({0: w1}, b1, True), Layer({1: w2}, rng.normal(size=4), True),
                      Layer({2: rng.normal(size=(2, 4))}, np.zeros(2), False)))
    out, removed, kept = drop_dead_units(net)
    assert removed == 2 and out.hidden == (3, 4) and kept[1] == [0, 2, 4]
    x = rng.normal(size=(5000, 3)) * 3
    assert np.abs(out(x) - net(x)).max() < 1e-12


def test_sap_with_rewinding_keeps_pruned_weights_at_zero(rng: np.random.Generator) -> None:
    init = mlp([rng.normal(size=(16, 6)) / 3, rng.normal(size=(3, 16)) / 4], [np.zeros(16), np.zeros(3)])
    x = rng.normal(size=(800, 6))
    y = np.argmax(x[:, :3], axis=1)
    trained = finetune(init, x, y, FinetuneOptions(steps=200, lr=0.05))
    opts = PQOptions(rounds=3, retrain=FinetuneOptions(steps=50, lr=0.05))
    out, rep = pq_prune(trained, x, y, opts, init=init)
    rounds = rep.details["rounds"]
    assert len(rounds) == 3 and all(r["rewound"] for r in rounds)
    kept = [r["kept_weights"] for r in rounds]
    assert kept == sorted(kept, reverse=True) and kept[-1] < 6 * 16 + 16 * 3
    assert rep.details["kept_weights"] == kept[-1]
    nonzero = sum(int(np.count_nonzero(w)) for ly in out.layers for w in ly.weights.values())
    assert nonzero <= kept[-1]  # pruned weights stayed zero through retraining
    assert rep.accuracy_after is not None and rep.accuracy_after > 0.5
    with pytest.raises(LeoInputError, match="shapes"):
        pq_prune(trained, x, y, opts, init=mlp([np.zeros((4, 6)), np.zeros((3, 4))], [np.zeros(4), np.zeros(3)]))


def test_default_is_one_sap_round_on_the_weights(rng: np.random.Generator) -> None:
    net = mlp([rng.standard_t(3, size=(20, 8)), rng.standard_t(3, size=(3, 20))], [np.zeros(20), np.zeros(3)])
    x = rng.normal(size=(500, 8))
    out, rep = pq_prune(net, x)
    assert len(rep.details["rounds"]) == 1 and rep.details["scope"] == "global"
    total = 8 * 20 + 20 * 3
    assert rep.details["kept_weights"] == total - len(_sap_by_hand(
        np.concatenate([net.layers[0].weights[0].ravel(), net.layers[1].weights[1].ravel()]), PQOptions()))
    assert rep.details["nonzero_parameters"]["after"] < rep.details["nonzero_parameters"]["before"]
