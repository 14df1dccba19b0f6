"""Exact baselines for the speed benchmark: the ways to prove ReLU stability that
leo is measured against.

* ``naive``: the LEO (CPAIOR 2020) way. For each hidden layer in order, a Pyomo big-M
  MILP of the network prefix, with big-M values from interval arithmetic only (no
  symbolic bounds, no witnesses, no early stop); units that interval arithmetic or an
  earlier MILP proved stable are fixed (active: h = z, inactive: h = 0). Every unit
  the intervals leave open gets two solves to optimality, max z and min z.
* ``omlt``: the same questions asked of OMLT's ``ReluBigMFormulation`` (OMLT 1.2),
  which computes its big-M values from its own interval bounds (Pyomo FBBT) and gives
  every hidden unit a binary. Per ReLU layer one OMLT block of the prefix network
  (the target layer linear), then max and min of each open unit's pre-activation.

Both solve with HiGHS through Pyomo's persistent ``appsi`` interface (the model is
built and passed to HiGHS once per layer; between solves only the objective changes,
and the interface is told to look for nothing else), with
``mip_rel_gap = 0`` and one thread, as leo's own HiGHS models use. A unit is stable
when a *proven* bound clears the margin: max z <= -margin (inactive) or
min z >= margin (active); units the interval bounds decide (upper <= 0 or lower >= 0)
need no solve. A whole-method time cap stops the run: the result then says
``capped`` and its ``seconds`` are a lower bound on the time the method needs.

Both return the same dictionary::

    {"seconds", "solves", "stable", "capped", "active": [[...] per ReLU layer],
     "inactive": [[...] per ReLU layer]}
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from leo.bounds.propagate import LayerBounds, interval_layer
from leo.core.domain import Box
from leo.core.network import Network

MARGIN = 1e-6  # leo's StabilityOptions.margin


class _Cap(Exception):
    """The method's time cap was reached."""


class _Clock:
    def __init__(self, cap: float | None) -> None:
        self.start = time.perf_counter()
        self.cap = cap

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        if self.cap is None:
            return math.inf
        left = self.cap - self.elapsed()
        if left <= 0:
            raise _Cap
        return left


def _solver(threads: int):  # noqa: ANN202 - a pyomo appsi Highs instance
    from pyomo.contrib.appsi.solvers import Highs

    opt = Highs()
    opt.config.load_solution = False
    opt.config.stream_solver = False
    opt.config.mip_gap = 0.0
    opt.highs_options = {"threads": threads, "output_flag": False}
    # only the objective changes between the solves on one model: skip re-scanning the rest
    cfg = opt.update_config
    cfg.check_for_new_or_removed_constraints = False
    cfg.check_for_new_or_removed_vars = False
    cfg.check_for_new_or_removed_params = False
    cfg.update_constraints = False
    cfg.update_vars = False
    cfg.update_params = False
    cfg.update_named_expressions = False
    return opt


def _bound_unit(opt, model, target, states: dict, j: int, margin: float, clock, tally: list[int]) -> None:  # noqa: ANN001
    """Maximise then minimise ``target`` to optimality; record a proven sign in ``states``.

    ``tally[0]`` counts solves as they finish (a cap may stop between the two). The
    model gets its objective on the first call.
    """
    import pyomo.environ as pyo

    if not hasattr(model, "obj"):
        model.obj = pyo.Objective(expr=target, sense=pyo.maximize)
    for sense in (pyo.maximize, pyo.minimize):
        model.obj.set_value(target)
        model.obj.sense = sense
        bound = _solve(opt, model, clock)
        tally[0] += 1
        if sense == pyo.maximize and bound <= -margin:
            states[j] = "inactive"
        elif sense == pyo.minimize and bound >= margin:
            states[j] = "active"


def _solve(opt, model, clock: _Clock):  # noqa: ANN001, ANN202
    """Solve to optimality within the cap; returns the proven bound (max: upper, min: lower)."""
    from pyomo.contrib.appsi.base import TerminationCondition

    opt.config.time_limit = clock.remaining()
    res = opt.solve(model)
    if res.termination_condition == TerminationCondition.maxTimeLimit:
        raise _Cap  # the solver's time limit is what is left of the cap
    if res.termination_condition != TerminationCondition.optimal or res.best_objective_bound is None:
        raise RuntimeError(f"HiGHS ended with {res.termination_condition}")
    return float(res.best_objective_bound)


def _result(clock: _Clock, solves: int, active: list[list[int]], inactive: list[list[int]],
            capped: bool, **extra: Any) -> dict[str, Any]:
    return {
        "seconds": clock.elapsed(),
        "solves": solves,
        "stable": sum(len(a) for a in active) + sum(len(i) for i in inactive),
        "capped": capped,
        "active": active,
        "inactive": inactive,
        **extra,
    }


# -- naive: LEO 2020 -----------------------------------------------------------
def _naive_prefix_model(network: Network, box: Box, bounds: list[LayerBounds],
                        fixed: list[dict[int, str]], upto: int):  # noqa: ANN202
    """Pyomo model of layers 0..upto: Var per unit, Constraint per equation, big-M
    ReLUs for the units not known stable; ``m.target`` is layer ``upto``'s z."""
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    d = network.input_dim
    m.x = pyo.Var(range(d), bounds=lambda _m, i: (float(box.lower[i]), float(box.upper[i])))
    outputs: list[dict[int, Any]] = [{i: m.x[i] for i in range(d)}]  # unit -> var (absent: constant 0)
    for k in range(upto + 1):
        layer = network.layers[k]
        lb = bounds[k]
        n = layer.width
        z = pyo.Var(range(n), bounds=lambda _m, j: (float(lb.lower[j]), float(lb.upper[j])))
        m.add_component(f"z{k + 1}", z)

        def equation(_m, j, layer=layer, z=z):  # noqa: ANN001, ANN202
            terms = [float(w[j, i]) * outputs[s][i] for s, w in layer.weights.items()
                     for i in outputs[s] if w[j, i] != 0.0]
            return z[j] == sum(terms) + float(layer.bias[j])

        m.add_component(f"layer{k + 1}", pyo.Constraint(range(n), rule=equation))
        if k == upto:
            m.target = pyo.Reference(z)
            break
        if not layer.relu:
            outputs.append({j: z[j] for j in range(n)})
            continue
        out: dict[int, Any] = {}
        relu_units = []
        for j in range(n):
            state = fixed[k].get(j)
            if state == "inactive":
                continue
            if state == "active":
                out[j] = z[j]
                continue
            relu_units.append(j)
        h = pyo.Var(relu_units, bounds=lambda _m, j: (0.0, float(lb.upper[j])))
        dvar = pyo.Var(relu_units, domain=pyo.Binary)
        m.add_component(f"h{k + 1}", h)
        m.add_component(f"d{k + 1}", dvar)
        lo = {j: float(lb.lower[j]) for j in relu_units}
        up = {j: float(lb.upper[j]) for j in relu_units}
        m.add_component(f"relu{k + 1}_ge_z", pyo.Constraint(relu_units, rule=lambda _m, j: h[j] >= z[j]))
        m.add_component(f"relu{k + 1}_le_z", pyo.Constraint(
            relu_units, rule=lambda _m, j: h[j] <= z[j] - lo[j] * (1 - dvar[j])))
        m.add_component(f"relu{k + 1}_le_ud", pyo.Constraint(
            relu_units, rule=lambda _m, j: h[j] <= up[j] * dvar[j]))
        for j in relu_units:
            out[j] = h[j]
        outputs.append(out)
    return m


def naive(network: Network, box: Box, cap: float | None = 3600.0, margin: float = MARGIN,
          threads: int = 1) -> dict[str, Any]:
    """LEO-2020 stability analysis: interval big-M, two MILPs per open unit, solved to optimality."""
    clock = _Clock(cap)
    opt = _solver(threads)
    bounds: list[LayerBounds] = []
    fixed: list[dict[int, str]] = []  # per layer: unit -> "active" / "inactive" (proven so far)
    layer_seconds: list[float] = []
    tally = [0]  # solves finished
    try:
        for k, layer in enumerate(network.layers):
            t0 = clock.elapsed()
            lb = interval_layer(network, k, box, bounds)
            states: dict[int, str] = {}
            fixed.append(states)
            if not layer.relu:
                bounds.append(lb)
                continue
            states.update({j: "active" for j in range(layer.width) if lb.lower[j] >= 0})
            states.update({j: "inactive" for j in range(layer.width) if lb.upper[j] <= 0})
            open_units = [j for j in range(layer.width) if j not in states]
            if open_units:
                clock.remaining()
                model = _naive_prefix_model(network, box, bounds + [lb], fixed, k)
                for j in open_units:
                    _bound_unit(opt, model, model.target[j], states, j, margin, clock, tally)
                    if states.get(j) == "active":
                        lb = lb.with_unit(j, 0.0, None, "milp")
                    elif states.get(j) == "inactive":
                        lb = lb.with_unit(j, None, 0.0, "milp")
            bounds.append(lb)
            layer_seconds.append(clock.elapsed() - t0)
    except _Cap:
        return _result(clock, tally[0], *_sets(network, fixed), True, layer_seconds=layer_seconds)
    return _result(clock, tally[0], *_sets(network, fixed), False, layer_seconds=layer_seconds)


def _sets(network: Network, states: list[dict[int, str]]) -> tuple[list[list[int]], list[list[int]]]:
    """Sorted active and inactive units per ReLU layer reached (from per-layer states)."""
    relu = [k for k, layer in enumerate(network.layers) if layer.relu and k < len(states)]
    return ([sorted(j for j, s in states[k].items() if s == "active") for k in relu],
            [sorted(j for j, s in states[k].items() if s == "inactive") for k in relu])


# -- OMLT ----------------------------------------------------------------------
def _omlt_prefix(network: Network, box: Box, upto: int):  # noqa: ANN202
    """A ConcreteModel holding OMLT's ReluBigMFormulation of layers 0..upto (the last
    one linear); returns (model, the target layer's pre-activation Var)."""
    import pyomo.environ as pyo
    from omlt import OmltBlock
    from omlt.neuralnet import NetworkDefinition, ReluBigMFormulation
    from omlt.neuralnet.layer import DenseLayer, InputLayer

    d = network.input_dim
    net = NetworkDefinition(scaled_input_bounds={i: (float(box.lower[i]), float(box.upper[i])) for i in range(d)})
    prev = InputLayer([d])
    net.add_layer(prev)
    target = None
    for k in range(upto + 1):
        layer = network.layers[k]
        (w,) = layer.weights.values()
        act = "relu" if layer.relu and k < upto else "linear"
        dense = DenseLayer([w.shape[1]], [w.shape[0]], activation=act,
                           weights=np.ascontiguousarray(w.T), biases=np.array(layer.bias))
        net.add_layer(dense)
        net.add_edge(prev, dense)
        prev = dense
        target = dense
    m = pyo.ConcreteModel()
    m.nn = OmltBlock()
    m.nn.build_formulation(ReluBigMFormulation(net))
    return m, m.nn.layer[id(target)].zhat


def omlt(network: Network, box: Box, cap: float | None = 3600.0, margin: float = MARGIN,
         threads: int = 1) -> dict[str, Any]:
    """OMLT big-M stability analysis: per ReLU layer, max and min of every open unit."""
    if not network.is_mlp:
        raise ValueError("the OMLT baseline reads plain MLPs only")
    clock = _Clock(cap)
    opt = _solver(threads)
    per_layer: list[dict[int, str]] = []
    layer_seconds: list[float] = []
    tally = [0]  # solves finished
    try:
        for k, layer in enumerate(network.layers):
            t0 = clock.elapsed()
            states: dict[int, str] = {}
            per_layer.append(states)
            if not layer.relu:
                continue
            clock.remaining()
            model, zhat = _omlt_prefix(network, box, k)
            for j in range(layer.width):
                lo, hi = zhat[j].bounds
                if lo is not None and lo >= 0:
                    states[j] = "active"
                elif hi is not None and hi <= 0:
                    states[j] = "inactive"
            open_units = [j for j in range(layer.width) if j not in states]
            if open_units:
                for j in open_units:
                    _bound_unit(opt, model, zhat[j], states, j, margin, clock, tally)
            layer_seconds.append(clock.elapsed() - t0)
    except _Cap:
        return _result(clock, tally[0], *_sets(network, per_layer), True, layer_seconds=layer_seconds)
    return _result(clock, tally[0], *_sets(network, per_layer), False, layer_seconds=layer_seconds)

METHODS = {"naive": naive, "omlt": omlt}
