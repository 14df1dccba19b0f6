"""leo's network as a ``solvers.Problem``: the one builder, sparse weights, the recorded
h/d columns, and honest solve counts; checked against the network's forward pass and
brute-force ranges (tests/conftest.exact_ranges)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from leo.core.domain import make_box
from leo.bounds.encoding import Encoding, assignment, build_prefix
from leo.core.network import Layer, Network
from leo.stability.analysis import StabilityOptions, analyse
from leo.core.verdicts import Method, Verdict
from solvers.backend import new_model
from solvers.highs_backend import HighsModel
from solvers.problem import Problem, ProblemBuilder, with_columns, with_rows
from tests.conftest import exact_ranges, random_mlp


def _unstable_everywhere(net: Network, box):  # noqa: ANN001, ANN202
    from leo.bounds.propagate import interval_layer

    bounds = []
    for k in range(len(net.layers)):
        bounds.append(interval_layer(net, k, box, bounds))
    states = [[Verdict.UNSTABLE] * ly.width if ly.relu else [] for ly in net.layers]
    return bounds, states


def test_add_relu_writes_the_big_m_rows_once_and_records_them():
    """h = max(0, z) over z in [l, u]: the LP of the four rows has exactly the hull, and
    fixing d gives the two linear pieces."""
    b = ProblemBuilder()
    (z,) = b.add_cols([-2.0], [3.0], "z")
    (row,) = b.add_rows(sp.coo_matrix(([1.0], ([0], [z])), shape=(1, 1)), [-2.0], [3.0])
    h, d = b.add_relu(z, -2.0, 3.0, row)
    p = b.build()
    assert p.relus.tolist() == [[z, h, d, row]] and p.integer.tolist() == [False, False, True]
    assert p.num_rows == 4 and p.num_binaries == 1
    model = HighsModel(p)
    for value in np.linspace(-2, 3, 11):
        model.set_bounds(np.array([z]), np.array([value]), np.array([value]))
        for sign in (1.0, -1.0):
            res = model.minimise(p.cost([h], sign), threshold=None, time_limit=10)
            assert sign * res.bound == pytest.approx(max(value, 0.0), abs=1e-9)


def test_builder_extends_a_problem_and_with_columns_keeps_its_type(rng):
    net = random_mlp(rng, [3, 5, 4, 2])
    box = make_box(-1, 1, 3)
    bounds, states = _unstable_everywhere(net, box)
    enc = build_prefix(net, box, bounds, states, 1)
    more = ProblemBuilder(enc)
    (c,) = more.add_cols([0.0], [1.0], "extra")
    more.add_rows(sp.coo_matrix(([1.0, -1.0], ([0, 0], [c, int(enc.x_cols[0])])), shape=(1, more.num_cols)),
                  [-np.inf], [0.0])
    grown = more.build()
    assert grown.num_cols == enc.num_cols + 1 and grown.num_rows == enc.num_rows + 1
    assert (grown.matrix[: enc.num_rows, : enc.num_cols] != enc.matrix).nnz == 0
    assert np.array_equal(grown.relus, enc.relus) and np.array_equal(grown.x_cols, enc.x_cols)
    joint, cols = with_columns(enc, np.zeros(2), np.ones(2), np.ones(2, dtype=bool), ["a", "b"],
                               sp.coo_matrix((0, enc.num_cols + 2)), np.zeros(0), np.zeros(0))
    assert isinstance(joint, Encoding) and cols.tolist() == [enc.num_cols, enc.num_cols + 1]
    assert joint.z_cols is enc.z_cols and joint.num_binaries == enc.num_binaries + 2
    assert isinstance(with_rows(enc, sp.csr_matrix((1, enc.num_cols)), [0.0], [0.0]), Encoding)


@pytest.mark.parametrize("seed", range(3))
def test_sparse_weights_encode_like_dense_ones(seed):
    """A layer whose weight is a scipy.sparse CSR matrix (as convolutions may give) is
    encoded into the same problem as its dense twin, and its optimum is the exact range."""
    rng = np.random.default_rng(seed)
    dense = random_mlp(rng, [3, 4, 4, 2])
    sparse = Network(3, tuple(Layer(dict(ly.weights), ly.bias, ly.relu) for ly in dense.layers))
    # Layer does not take sparse weights (yet): put one in as encode will meet it
    object.__setattr__(sparse.layers[1], "weights", {s: sp.csr_matrix(w) for s, w in dense.layers[1].weights.items()})
    assert sp.issparse(sparse.layers[1].weights[1])
    box = make_box(-1, 1, 3)
    bounds, states = _unstable_everywhere(dense, box)
    a = build_prefix(dense, box, bounds, states, 2)
    b = build_prefix(sparse, box, bounds, states, 2)
    assert (a.matrix != b.matrix).nnz == 0 and np.array_equal(a.row_lower, b.row_lower)
    lo, hi = exact_ranges(dense, box.lower, box.upper, 2)
    model = new_model(b)
    for j in range(2):
        assert model.minimise(b.objective(2, j, 1.0), None, 30).bound == pytest.approx(lo[j], abs=1e-6)
        assert -model.minimise(b.objective(2, j, -1.0), None, 30).bound == pytest.approx(hi[j], abs=1e-6)


def test_assignment_uses_the_recorded_columns_not_their_names(rng):
    """Renaming every column changes nothing: the assignment comes from h_cols/d_cols."""
    net = random_mlp(rng, [3, 6, 5, 2])
    box = make_box(-1, 1, 3)
    bounds, states = _unstable_everywhere(net, box)
    enc = build_prefix(net, box, bounds, states, 2, with_output=True)
    renamed = dataclasses.replace(enc, names=tuple(f"c{i}" for i in range(enc.num_cols)))
    assert sum(int((h >= 0).sum()) for h in enc.h_cols) == enc.num_binaries > 0
    for x in box.sample(20, rng):
        v = assignment(net, renamed, x)
        av = enc.matrix @ v
        assert np.all(av >= enc.row_lower - 1e-9) and np.all(av <= enc.row_upper + 1e-9)
        assert np.all(v >= enc.col_lower - 1e-9) and np.all(v <= enc.col_upper + 1e-9)
        assert np.allclose(v[enc.out_cols], net(x[None])[0])  # a linear output layer: y = z


def test_problem_knows_nothing_of_networks():
    fields = {f.name for f in dataclasses.fields(Problem)}
    assert fields == {"matrix", "row_lower", "row_upper", "col_lower", "col_upper", "integer", "names", "x_cols",
                      "relus"}


@pytest.mark.parametrize("engine, cuts, lp_bounds", [("unit", True, False), ("unit", False, True),
                                                     ("network", True, False)])
def test_counts_are_the_solves_the_solver_ran(engine, cuts, lp_bounds, monkeypatch):
    """Every HighsModel.minimise call is counted once, as an LP or a MILP by what the model
    is, and the nodes are those HiGHS reported."""
    seen = {"lps": 0, "milps": 0, "nodes": 0}
    original = HighsModel.minimise

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        res = original(self, *args, **kwargs)
        seen["milps" if self.is_mip else "lps"] += 1
        seen["nodes"] += res.nodes if self.is_mip else 0
        return res

    monkeypatch.setattr(HighsModel, "minimise", counting)
    rng = np.random.default_rng(11)
    net = random_mlp(rng, [6, 16, 16, 16, 2], bias_shift=-0.1)
    box = make_box(-1, 1, 6)
    report = analyse(net, box, StabilityOptions(engine=engine, cuts=cuts, lp_bounds=lp_bounds, samples=8,
                                                local_search=False, time_limit=20, branch=False))
    assert seen["lps"] + seen["milps"] > 0, "nothing was solved: the test would not test the counts"
    assert (report.lps, report.milps, report.nodes) == (seen["lps"], seen["milps"], seen["nodes"])
    assert report.solves == report.lps + report.milps
    assert report.to_json()["milps"] == report.milps
    assert all(isinstance(p.method, Method) and isinstance(p.verdict, Verdict)
               for lr in report.layers for p in lr.proofs)
