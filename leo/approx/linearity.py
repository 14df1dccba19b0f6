"""Linearity-based layer fusion (Dobler & Lemmerich, "Linearity-based neural network
compression", arXiv 2506.21146, 2025).

A ReLU unit that is active on (almost) every input behaves like the identity, h = z.
Such *linear* units can be removed: their contribution to each layer ``r`` that reads
layer ``l`` is an affine function of layer ``l``'s own inputs, so for the set ``L`` of
linear units and every source ``s`` of layer ``l``

    W_{r,s} += W_{r,l}[:, L] W_{l,s}[L, :]      (a skip connection s -> r when r did not read s)
    b_r     += W_{r,l}[:, L] b_l[L]

and rows ``L`` of layer ``l`` and columns ``L`` of its readers are deleted.

*Activation rate* of a unit: the share of data samples on which z > 0. A unit is
treated as linear when its rate is at least the threshold, or when the exact stability
analysis proved it active on the box (pass the StabilityReport): those count as rate 1
and their fusion is exact on the box.

*Is it worth it?* Removing k units of layer l saves k·(sum of source widths + sum of
reader widths + 1) parameters; the new skips cost width(r)·width(s) for every reader r
and source s of layer l that r does not read yet. For a plain MLP this is the rule
(n_prev + n_next + 1)·k > n_prev·n_next; a skip that already exists costs nothing.
The layer is rewritten only when the saving is strictly larger than the cost.

Layers are visited from the last hidden layer back to the first, so the activation
rates measured on the original network stay the rates of the layer being decided (the
layers before it are untouched). The output layer is never compressed.

Modes: a fixed ``threshold``, or a ``target`` share of the original parameters: the
thresholds tried are the distinct activation rates, from the highest down, and the
first (highest, so the fewest units fused) whose network has at most ``target`` × the
original parameters is used.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from leo.approx.editing import Editable
from leo.approx.report import ApproxReport, DataSplit, make_report, split_data
from leo.errors import LeoInputError
from leo.network import Network
from leo.report import StabilityReport

ProvenActive = StabilityReport | Mapping[int, Iterable[int]] | None


@dataclass(frozen=True)
class LinearityOptions:
    """``threshold``: minimal activation rate of a linear unit (fixed mode); ``target``:
    when set, the share of the original parameters to reach (threshold searched).
    ``only_proven``: fuse only units the stability analysis proved active (exact)."""

    threshold: float = 0.99
    target: float | None = None
    only_proven: bool = False
    holdout: float = 0.2  # share of the data held out for the report (when no held-out set is given)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise LeoInputError(f"linearity threshold={self.threshold}: give an activation rate in [0, 1]")
        if self.target is not None and not 0.0 < self.target <= 1.0:
            raise LeoInputError(f"linearity target={self.target}: give the share of parameters to keep, in (0, 1]")
        if self.target is not None and self.only_proven:
            raise LeoInputError("linearity: only_proven fuses exactly the proven units, it cannot aim at a target size")


def activation_rates(network: Network, x: np.ndarray) -> dict[int, np.ndarray]:
    """Per hidden layer (1-based), the share of rows of ``x`` on which each unit has z > 0.
    A hidden layer without ReLU is linear: rate 1 for all its units."""
    zs = network.pre_activations(x)
    return {k: (np.mean(zs[k - 1] > 0, axis=0) if network.layers[k - 1].relu else np.ones(network.layers[k - 1].width))
            for k in range(1, len(network.layers))}


def proven_active(network: Network, stability: ProvenActive) -> dict[int, frozenset[int]]:
    """Units proven active on the box, per hidden layer (1-based); non-ReLU hidden layers
    are linear everywhere, so all their units count."""
    out: dict[int, frozenset[int]] = {
        k: frozenset(range(ly.width)) for k, ly in enumerate(network.layers[:-1], start=1) if not ly.relu
    }
    if stability is None:
        return out
    if isinstance(stability, StabilityReport):
        for lr in stability.layers:
            if not 1 <= lr.layer <= len(network.layers) or network.layers[lr.layer - 1].width != lr.width:
                raise LeoInputError(
                    f"the stability report has {lr.width} units in layer {lr.layer}, which does not match "
                    "this network: pass the report of analysing this very network")
        items = {lr.layer: lr.active for lr in stability.layers}
    else:
        items = {int(k): list(v) for k, v in stability.items()}
    for k, units in items.items():
        if not 1 <= k < len(network.layers):
            continue  # the output layer is never compressed
        units = frozenset(int(u) for u in units)
        width = network.layers[k - 1].width
        if any(not 0 <= u < width for u in units):
            raise LeoInputError(f"proven-active unit out of range for layer {k} ({width} units)")
        out[k] = out.get(k, frozenset()) | units
    return out


@dataclass(frozen=True)
class _Plan:
    network: Network
    layers: list[dict[str, Any]]
    fused: int
    fused_exact: int


def _fuse(network: Network, rates: Mapping[int, np.ndarray], exact: Mapping[int, frozenset[int]],
          threshold: float | None) -> _Plan:
    """Fuse, from the last hidden layer back, the linear units of every layer where it
    saves parameters. ``threshold=None``: only the proven units are linear."""
    ed = Editable(network)
    decisions: list[dict[str, Any]] = []
    fused = fused_exact = 0
    for k in range(len(network.layers) - 1, 0, -1):
        ly = ed.layer(k)  # layers before k are untouched: index and units are the original ones
        proven = exact.get(k, frozenset())
        rate = np.array(rates[k], dtype=np.float64)
        linear = set(proven)
        if threshold is not None:
            linear |= {int(j) for j in np.flatnonzero(rate >= threshold)}
        units = np.array(sorted(linear), dtype=int)
        n = int(units.size)
        readers = ed.readers(k)
        saved = n * (sum(ed.width(s) for s in ly.weights) + sum(ed.width(r) for r in readers) + 1)
        cost = sum(ed.width(r) * ed.width(s) for r in readers for s in ly.weights if s not in ed.layer(r).weights)
        rewrite = n > 0 and saved > cost
        n_exact = sum(1 for j in units if int(j) in proven)
        decisions.append({
            "layer": k, "units": ly.width, "linear": n, "exact": n_exact,
            "saved": int(saved), "skip_cost": int(cost), "rewritten": bool(rewrite),
            "fused_units": [int(j) for j in units] if rewrite else [],
            "min_rate_fused": float(min((1.0 if int(j) in proven else rate[j]) for j in units)) if rewrite else None,
        })
        if rewrite:
            ed.fuse_linear(k, units)
            fused += n
            fused_exact += n_exact
    decisions.reverse()
    return _Plan(ed.network(), decisions, fused, fused_exact)


def fuse_units(network: Network, layer: int, units: Iterable[int]) -> Network:
    """Fold the given units of hidden ``layer`` (1-based) into its readers as linear units
    (no saving rule, no data): exact wherever those units are active."""
    if not 1 <= layer < len(network.layers):
        raise LeoInputError(f"layer {layer}: only hidden layers 1..{len(network.layers) - 1} can be fused")
    sel = sorted({int(u) for u in units})
    if any(not 0 <= u < network.layers[layer - 1].width for u in sel):
        raise LeoInputError(f"unit index out of range for layer {layer}")
    ed = Editable(network)
    ed.fuse_linear(layer, sel)
    return ed.network()


def linearity_fusion(network: Network, x: Any, y: Any = None, options: LinearityOptions = LinearityOptions(), *,
                     stability: ProvenActive = None, x_eval: Any = None, y_eval: Any = None,
                     split: DataSplit | None = None) -> tuple[Network, ApproxReport]:
    """Fuse (nearly) always-active units into skip connections; the new network and its report.

    ``x`` (and optional labels ``y``): activation rates are measured on it, minus a
    held-out share (``options.holdout``) unless ``x_eval`` is given; the report compares
    the networks on the held-out data. ``stability``: the StabilityReport of this network
    (or ``{layer: [unit, ...]}``) — proven-active units are fused exactly.
    """
    start = time.perf_counter()
    if len(network.layers) < 2:
        raise LeoInputError("linearity fusion needs at least one hidden layer")
    if split is None:
        split = split_data(network, x, y, x_eval, y_eval, options.holdout, options.seed)
    rates = activation_rates(network, split.x_fit)
    exact = proven_active(network, stability)
    notes: list[str] = []
    searched: list[dict[str, Any]] = []
    if options.only_proven:
        plan, threshold = _fuse(network, rates, exact, None), None
    elif options.target is None:
        threshold = options.threshold
        plan = _fuse(network, rates, exact, threshold)
    else:
        goal = options.target * network.num_parameters
        candidates = sorted({float(v) for r in rates.values() for v in r} | {1.0}, reverse=True)
        plan, threshold = None, None
        best: tuple[_Plan, float] | None = None
        for t in candidates:
            trial = _fuse(network, rates, exact, t)
            searched.append({"threshold": t, "parameters": trial.network.num_parameters})
            if best is None or trial.network.num_parameters < best[0].network.num_parameters:
                best = (trial, t)
            if trial.network.num_parameters <= goal:
                plan, threshold = trial, t
                break
        if plan is None:
            assert best is not None
            plan, threshold = best
            notes.append(f"target {options.target:g} of the parameters not reachable by fusion: "
                         f"smallest found is {plan.network.num_parameters} of {network.num_parameters}")
    all_exact = plan.fused == plan.fused_exact
    if plan.fused == 0:
        notes.append("no layer was worth rewriting: the network is unchanged")
    elif all_exact:
        notes.append("every fused unit is proven active on the box: the fusion is exact there "
                     "(lossless on the box, but this step issues no certificate)")
    params = asdict(options)
    params["threshold_used"] = threshold
    details: dict[str, Any] = {
        "layers": plan.layers, "fused_units": plan.fused, "fused_exact": plan.fused_exact,
        "fit_samples": int(split.x_fit.shape[0]),
        "skip_connections": sum(len(ly.weights) - 1 for ly in plan.network.layers),
    }
    if searched:
        details["threshold_search"] = searched
        details["target_reached"] = plan.network.num_parameters <= options.target * network.num_parameters
    report = make_report("linearity", params, network, plan.network, split, time.perf_counter() - start,
                         details, tuple(notes), exact_on_box=all_exact)
    return plan.network, report
