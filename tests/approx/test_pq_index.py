"""PQ index and keep count against hand computations; structured pruning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from leo.approx.pq_index import PQOptions, keep_count, pq_index, pq_prune, prune_round, unit_scores
from leo.errors import LeoInputError
from leo.network import mlp


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
    one, info = prune_round(net)
    assert one.hidden[0] < 20 and one.hidden[1] < 15
    assert info[0]["keep"] == one.hidden[0] and info[0]["pq_index"] > 0.5
    out, rep = pq_prune(net, x, y, PQOptions(max_rounds=5))
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
