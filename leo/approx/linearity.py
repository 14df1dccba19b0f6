"""Linearity-based layer fusion (Dobler & Lemmerich, "Linearity-based neural network
compression", arXiv 2506.21146, 2025), as the paper and its public code define it.

A ReLU unit that is active on (almost) every input behaves like the identity, h = z.
Such *linear* units are removed: their contribution to each layer ``r`` that reads
layer ``l`` is an affine function of layer ``l``'s own inputs, so for the set ``L`` of
linear units and every source ``s`` of layer ``l`` (its input, and the inputs of any
skip connection into it)

    W_{r,s} += W_{r,l}[:, L] W_{l,s}[L, :]      (a bias-free skip s -> r when r did not read s)
    b_r     += W_{r,l}[:, L] b_l[L]

and rows ``L`` of layer ``l`` and columns ``L`` of its readers are deleted.

*Activation rate* of a unit: the share of data samples on which z > 0, measured once on
the network given (the paper's code caches the rates of the original model). A unit is
linear when its rate is at least the threshold t, or when the exact stability analysis
proved it active on the box (pass the StabilityReport): those count as rate 1 and their
fusion is exact on the box.

Layers are visited from the first hidden layer to the last (the output layer is never
compressed). A layer with k linear units is rewritten when its *layer rule* allows it:

* ``cost`` (the paper's "optimal"/"best"): (n_prev + n_next + 1)·k > n_prev·n_next, with
  n_prev the width of everything the layer reads (earlier skip inputs included) and
  n_next the width of its readers; n_prev·n_next is the new skip. Where a reader already
  reads a source, that part of the skip costs nothing (never the case in an MLP);
* ``count``: k > ``layer_min`` (the paper's integer layer threshold; 0: any linear unit);
* ``fraction``: k / width > ``layer_min`` (the paper's float layer threshold).

Modes:

* ``fixed-size`` (default; the paper's experiments): the size is counted as the paper's
  code counts it, every weight and bias *except the first Linear layer's* (skip weights
  included); t is lowered from 1 in steps of ``step`` (first try 1 - step) and the first
  t whose network has at most ``rate`` × the original count is used, with the cost rule.
  Defaults rate 0.5, step 0.05 (the code's defaults; its experiments use step 0.1).
* ``threshold``: one t (the paper's threshold sweep), with the chosen layer rule.

No fine-tuning follows (the paper has none).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from leo.approx.editing import Editable
from leo.approx.report import ApproxReport, DataSplit, make_report, split_data
from leo.errors import LeoInputError
from leo.core.network import Network
from leo.stability.report import StabilityReport

ProvenActive = StabilityReport | Mapping[int, Iterable[int]] | None

MODES = ("fixed-size", "threshold")
LAYER_RULES = ("cost", "count", "fraction")


@dataclass(frozen=True)
class LinearityOptions:
    """``mode``: ``fixed-size`` (reach ``rate`` of the paper-counted size by lowering t in
    steps of ``step``) or ``threshold`` (one ``threshold``). ``layer_rule``/``layer_min``:
    when a layer is worth rewriting (fixed-size always uses ``cost``, as the paper's code).
    ``only_proven``: fuse only units the stability analysis proved active (exact on the box)."""

    mode: str = "fixed-size"
    rate: float = 0.5
    step: float = 0.05
    threshold: float = 0.95
    layer_rule: str = "cost"
    layer_min: float = 0.0
    only_proven: bool = False
    holdout: float = 0.2  # share of the data held out for the report (when no held-out set is given)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise LeoInputError(f"linearity mode={self.mode!r}: use one of {', '.join(MODES)}")
        if self.layer_rule not in LAYER_RULES:
            raise LeoInputError(f"linearity layer_rule={self.layer_rule!r}: use one of {', '.join(LAYER_RULES)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise LeoInputError(f"linearity threshold={self.threshold}: give an activation rate in [0, 1]")
        if not 0.0 < self.rate <= 1.0:
            raise LeoInputError(f"linearity rate={self.rate}: give the share of the size to keep, in (0, 1]")
        if not 0.0 < self.step <= 1.0:
            raise LeoInputError(f"linearity step={self.step}: give a threshold step in (0, 1]")
        if not (math.isfinite(self.layer_min) and self.layer_min >= 0) or (
                self.layer_rule == "fraction" and self.layer_min >= 1):
            raise LeoInputError(f"linearity layer_min={self.layer_min}: a count >= 0, or a share in [0, 1)")


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


def paper_size(network: Network) -> int:
    """Size as the paper's code counts it (``get_num_weights(without_in=True)``): every
    weight and bias except those of the first layer (skip weights from the input count)."""
    first = network.layers[0]
    return network.num_parameters - int(first.bias.size + sum(w.size for w in first.weights.values()))


def _edit_paper_size(ed: Editable) -> int:
    """``paper_size`` of a working copy; a first layer emptied by fusion counts 0."""
    first = next((ly for ly in ed.layers if ly.name == 1), None)
    own = 0 if first is None else first.bias.size + sum(w.size for w in first.weights.values())
    return ed.num_parameters() - int(own)


@dataclass(frozen=True)
class _Plan:
    network: Network
    layers: list[dict[str, Any]]
    fused: int
    fused_exact: int
    paper_size: int


def _worth_it(rule: str, layer_min: float, n: int, width: int, saved: int, cost: int) -> bool:
    if n == 0:
        return False
    if rule == "cost":
        return saved > cost
    if rule == "count":
        return n > layer_min
    return n / width > layer_min


def _fuse(network: Network, rates: Mapping[int, np.ndarray], exact: Mapping[int, frozenset[int]],
          threshold: float | None, rule: str, layer_min: float) -> _Plan:
    """Fuse, from the first hidden layer to the last, the linear units of every layer the
    layer rule allows. ``threshold=None``: only the proven units are linear."""
    ed = Editable(network)
    decisions: list[dict[str, Any]] = []
    fused = fused_exact = 0
    for name in range(1, len(network.layers)):
        k = next(i for i, ly in enumerate(ed.layers, start=1) if ly.name == name)
        ly = ed.layer(k)  # its units are still the original ones: only its inputs changed
        proven = exact.get(name, frozenset())
        rate = np.array(rates[name], dtype=np.float64)
        linear = set(proven)
        if threshold is not None:
            linear |= {int(j) for j in np.flatnonzero(rate >= threshold)}
        units = np.array(sorted(linear), dtype=int)
        n = int(units.size)
        readers = ed.readers(k)
        n_prev = sum(ed.width(s) for s in ly.weights)
        n_next = sum(ed.width(r) for r in readers)
        saved = n * (n_prev + n_next + 1)
        cost = sum(ed.width(r) * ed.width(s) for r in readers for s in ly.weights if s not in ed.layer(r).weights)
        rewrite = _worth_it(rule, layer_min, n, ly.width, saved, cost)
        n_exact = sum(1 for j in units if int(j) in proven)
        decisions.append({
            "layer": name, "units": ly.width, "linear": n, "exact": n_exact, "n_prev": int(n_prev),
            "n_next": int(n_next), "saved": int(saved), "skip_cost": int(cost), "rewritten": bool(rewrite),
            "fused_units": [int(j) for j in units] if rewrite else [],
            "min_rate_fused": float(min((1.0 if int(j) in proven else rate[j]) for j in units)) if rewrite else None,
        })
        if rewrite:
            ed.fuse_linear(k, units)
            fused += n
            fused_exact += n_exact
    return _Plan(ed.network(), decisions, fused, fused_exact, _edit_paper_size(ed))


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


def _fixed_size(network: Network, rates: Mapping[int, np.ndarray], exact: Mapping[int, frozenset[int]],
                options: LinearityOptions) -> tuple[_Plan, float | None, list[dict[str, Any]], bool]:
    """Lower t from 1 in steps until the paper-counted size is at most ``rate`` of the
    original: the plan, t, the thresholds tried and whether the aim was reached. When no
    t >= 0 reaches it (the paper's loop would not end), the smallest plan tried that is
    smaller than the original is kept, else none."""
    aim = options.rate * paper_size(network)
    tried: list[dict[str, Any]] = []
    if paper_size(network) <= aim:  # the paper's loop does not run
        return _unchanged(network), None, tried, True
    best: tuple[_Plan, float] | None = None
    i = 0
    while True:
        i += 1
        t = max(0.0, round(1.0 - i * options.step, 12))
        plan = _fuse(network, rates, exact, t, "cost", 0.0)
        tried.append({"threshold": t, "paper_size": plan.paper_size, "parameters": plan.network.num_parameters})
        if plan.paper_size <= aim:
            return plan, t, tried, True
        if best is None or plan.paper_size < best[0].paper_size:
            best = (plan, t)
        if t <= 0.0:
            break
    assert best is not None
    if best[0].paper_size < paper_size(network):
        return best[0], best[1], tried, False
    return _unchanged(network), None, tried, False


def _unchanged(network: Network) -> _Plan:
    return _Plan(network, [], 0, 0, paper_size(network))


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
    details: dict[str, Any] = {}
    threshold: float | None
    if options.only_proven:
        plan, threshold = _fuse(network, rates, exact, None, options.layer_rule, options.layer_min), None
    elif options.mode == "threshold":
        threshold = options.threshold
        plan = _fuse(network, rates, exact, threshold, options.layer_rule, options.layer_min)
    else:
        plan, threshold, tried, reached = _fixed_size(network, rates, exact, options)
        details["threshold_search"] = tried
        details["target_reached"] = reached
        if not reached:
            notes.append(f"size {options.rate:g} of the paper-counted size ({paper_size(network)}, all but the "
                         f"first layer) not reachable by fusion at any threshold >= 0: kept "
                         f"{plan.paper_size} ({plan.paper_size / max(1, paper_size(network)):.1%})")
    all_exact = plan.fused == plan.fused_exact
    if plan.fused == 0:
        notes.append("no layer was worth rewriting: the network is unchanged")
    elif all_exact:
        notes.append("every fused unit is proven active on the box: the fusion is exact there "
                     "(lossless on the box, but this step issues no certificate)")
    params = asdict(options)
    params["threshold_used"] = threshold
    details.update({
        "layers": plan.layers, "fused_units": plan.fused, "fused_exact": plan.fused_exact,
        "fit_samples": int(split.x_fit.shape[0]),
        "skip_connections": sum(len(ly.weights) - 1 for ly in plan.network.layers),
        "paper_size": {"before": paper_size(network), "after": plan.paper_size,
                       "definition": "all weights and biases but the first layer's (skip weights count)"},
    })
    report = make_report("linearity", params, network, plan.network, split, time.perf_counter() - start,
                         details, tuple(notes), exact_on_box=all_exact)
    return plan.network, report
