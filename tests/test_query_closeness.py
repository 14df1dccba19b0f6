"""ε-closeness of two networks on one tied input, through a VNN-LIB 2.0 file and check_query,
goes to the shared-unit MILPs (leo.queries.closeness.closeness). The truth is exact by construction:
g is f with its output bias shifted by DELTA on one output, so max |f - g| over any box is DELTA."""

from __future__ import annotations

import numpy as np
import pytest

from leo.io.vnnlib import read_vnnlib_query
from leo.core.network import Layer, Network
from leo.queries.property import Answer
from leo.queries import check as check_module
from leo.queries.check import check_query
from tests.conftest import random_mlp

DELTA = 0.2


def _pair() -> tuple[Network, Network]:
    f = random_mlp(np.random.default_rng(11), [3, 8, 8, 2])
    last = f.layers[-1]
    shifted = Layer(dict(last.weights), last.bias + np.array([0.0, DELTA]), last.relu)
    return f, Network(f.input_dim, f.layers[:-1] + (shifted,))


def _query(tmp_path, eps: float):
    ties = " ".join(f"(== X2[0,{i}] X[0,{i}])" for i in range(3))
    box = " ".join(f"(>= X[0,{i}] -1.0) (<= X[0,{i}] 1.0)" for i in range(3))
    far = " ".join(f"(>= (- Y[0,{j}] Y2[0,{j}]) {eps!r}) (<= (- Y[0,{j}] Y2[0,{j}]) {-eps!r})" for j in range(2))
    text = ("(vnnlib-version <2.0>)\n"
            "(declare-network f (declare-input X float32 [1,3]) (declare-output Y float32 [1,2]))\n"
            "(declare-network g (isomorphic-to f) (declare-input X2 float32 [1,3]) (declare-output Y2 float32 [1,2]))\n"
            f"(assert (and {box}))\n(assert (and {ties}))\n(assert (or {far}))\n")
    path = tmp_path / "close.vnnlib"
    path.write_text(text)
    return read_vnnlib_query(path)


@pytest.mark.parametrize("eps, answer", [(DELTA + 0.05, Answer.UNSAT), (DELTA - 0.05, Answer.SAT)])
def test_closeness_query_is_answered_by_the_shared_unit_path(tmp_path, monkeypatch, eps, answer) -> None:
    f, g = _pair()
    calls = []
    real = check_module._closeness
    monkeypatch.setattr(check_module, "_closeness", lambda *a: calls.append(real(*a)) or calls[-1])
    result = check_query(_query(tmp_path, eps), {"f": f, "g": g}, time_limit=60.0)
    assert calls == [pytest.approx(eps)]  # recognised as ε-closeness
    assert result.answer is answer, result
    if answer is Answer.SAT:
        x, x2 = result.inputs["X"].ravel(), result.inputs["X2"].ravel()
        np.testing.assert_array_equal(x, x2)
        assert np.abs(f(x[None])[0] - g(x2[None])[0]).max() >= eps - 1e-6
