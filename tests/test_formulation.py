"""The MILP's forward pass equals the network, and every back-end solves the same model."""

import numpy as np
import pytest

from leo.core.domain import Box, make_box
from leo.stability.analysis import StabilityOptions, analyse, prefix_formulation
from leo.bounds.encoding import assignment, build_prefix
from leo.core.verdicts import Verdict as UnitState
from solvers.highs_backend import HighsModel
from tests.conftest import random_mlp


def _all_unstable(net, box):
    from leo.bounds.propagate import cheap_bounds

    bounds = cheap_bounds(net, box, symbolic=False)
    states = [[UnitState.UNSTABLE] * ly.width if ly.relu else [] for ly in net.layers]
    return bounds, states


@pytest.mark.parametrize("seed", range(4))
def test_milp_forward_pass_equals_network(seed):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 6, 5, 2])
    box = make_box(-1, 1, 3)
    bounds, states = _all_unstable(net, box)
    last = len(net.layers) - 1
    for x in box.sample(5, rng):
        fixed = Box(x, x)
        f = build_prefix(net, fixed, bounds, states, last, with_output=True)
        model = HighsModel(f)
        y = net(x[None])[0]
        for i in range(net.output_dim):
            for sign in (1.0, -1.0):
                cost = np.zeros(f.num_cols)
                cost[f.out_cols[i]] = sign
                res = model.minimise(cost, threshold=None, time_limit=30)
                assert res.status.value == "optimal"
                assert sign * res.incumbent == pytest.approx(y[i], abs=1e-6)


def test_assignment_is_feasible(rng):
    net = random_mlp(rng, [3, 6, 5, 2])
    box = make_box(-1, 1, 3)
    bounds, states = _all_unstable(net, box)
    f = build_prefix(net, box, bounds, states, 2, with_output=True)
    for x in box.sample(20, rng):
        v = assignment(net, f, x)
        av = f.matrix @ v
        assert np.all(av >= f.row_lower - 1e-9) and np.all(av <= f.row_upper + 1e-9)
        assert np.all(v >= f.col_lower - 1e-9) and np.all(v <= f.col_upper + 1e-9)


def test_stable_units_get_no_binary(rng):
    net = random_mlp(rng, [4, 10, 10, 2], bias_shift=-1.0)
    box = make_box(0, 1, 4)
    report = analyse(net, box)
    f = prefix_formulation(net, box, 1)
    assert f.num_binaries == len(report.layers[0].unstable)


def test_pyomo_model_gives_the_same_optimum(rng, tmp_path):
    pyo = pytest.importorskip("pyomo.environ")
    from solvers.pyomo_model import to_pyomo, write_model

    net = random_mlp(rng, [3, 6, 4, 2])
    box = make_box(-1, 1, 3)
    f = prefix_formulation(net, box, 1)
    cost = f.objective(1, 0, -1.0)
    ours = HighsModel(f).minimise(cost, threshold=None, time_limit=60)
    model = to_pyomo(f, cost)
    solver = pyo.SolverFactory("appsi_highs")
    solver.solve(model)
    assert pyo.value(model.obj) == pytest.approx(ours.incumbent, abs=1e-6)
    for suffix in (".lp", ".mps"):
        write_model(f, cost, tmp_path / f"m{suffix}")
        assert (tmp_path / f"m{suffix}").stat().st_size > 0
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(tmp_path / "m.mps"))
    h.run()
    assert h.getInfo().objective_function_value == pytest.approx(ours.incumbent, abs=1e-6)


def test_tiny_weights_are_dropped_soundly(rng):
    """Weights below DROP_TOL leave the rows, which widen instead: every real point stays feasible."""
    from leo.bounds.encoding import DROP_TOL

    net = random_mlp(rng, [3, 6, 5, 2])
    w = dict(net.layers[1].weights)
    tiny = w[1].copy()
    tiny[:, :3] = DROP_TOL / 10 * rng.choice([-1.0, 1.0], size=(tiny.shape[0], 3))  # both signs
    first = net.layers[0].weights[0].copy()
    first[:, 0] = -DROP_TOL / 3  # on an input whose range straddles 0
    from leo.core.network import Layer, Network

    net = Network(3, (Layer({0: first}, net.layers[0].bias, True), Layer(w | {1: tiny}, net.layers[1].bias, True),
                      net.layers[2]))
    box = make_box(-1, 1, 3)
    bounds, states = _all_unstable(net, box)
    f = build_prefix(net, box, bounds, states, 2, with_output=True)
    assert np.abs(f.matrix.data).min() >= DROP_TOL
    for x in box.sample(50, rng):
        v = assignment(net, f, x)
        av = f.matrix @ v
        assert np.all(av >= f.row_lower - 1e-12) and np.all(av <= f.row_upper + 1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_threshold_answers_agree_with_the_optimum(seed):
    """The cutoff answer to "is min >= t?" is yes exactly when the optimum (solved with
    no threshold) is above t; a yes reports t as its bound, a no comes with a point below t."""
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 6, 5, 2])
    box = make_box(-1, 1, 3)
    bounds, states = _all_unstable(net, box)
    f = build_prefix(net, box, bounds, states, 2)
    model = HighsModel(f)
    for unit in range(2):
        for sign in (1.0, -1.0):
            cost = f.objective(2, unit, sign)
            best = model.minimise(cost, threshold=None, time_limit=30).incumbent
            for t in (best - 0.05, best + 0.05):
                res = model.minimise(cost, threshold=t, time_limit=30)
                if t < best:  # proven, and only t is: HiGHS's bound above a cutoff can exceed the optimum
                    assert res.status.value in ("optimal", "interrupted") and res.bound == t
                else:
                    assert res.bound < t and res.point is not None
                    assert sign * net.pre_activations(res.point[None])[2][0, unit] < t + 1e-9


def test_time_limit_is_per_solve_on_a_reused_model(rng):
    """HiGHS counts an LP's time limit from the instance's first run; every solve on a
    persistent model must still get its own limit (seen: after 2 s in all, each 2 s LP
    stopped at once, so cut loops and LP bounds silently gave up)."""
    net = random_mlp(rng, [30, 60, 60, 20])
    box = make_box(0, 1, 30)
    bounds, states = _all_unstable(net, box)
    f = build_prefix(net, box, bounds, states, 2)
    lp = HighsModel(f, relax=True)
    limit, solves = 0.05, 0
    while lp.highs.getRunTime() < 4 * limit and solves < 5000:
        res = lp.minimise(rng.normal(size=f.num_cols), threshold=None, time_limit=limit)
        assert res.status.value == "optimal", (solves, lp.highs.getRunTime())
        solves += 1
    assert lp.highs.getRunTime() >= 4 * limit
