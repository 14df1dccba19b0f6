"""Chains of compression steps: exact (LEO: prove stability on a box, then reduce) and
the approximate methods of :mod:`leo.approx`, in any order.

``run_chain(network, box, ["pq-index", "exact"], data)`` runs the steps one after the
other, each on the previous step's network, and returns the last network and one
report per step. The exact step is lossless with respect to *its input* (its report
says ``lossless: True`` with the stable-unit counts); it is ``certified`` with respect
to the *original* network only while no approximate step came before it. Approximate
steps always report ``lossless: False``.

An exact step also hands its proofs on: the units it proved active that survive the
reduction are still active on the box (the reduced network computes the same
pre-activations there), so a following ``linearity`` step fuses them exactly.

``METHODS`` maps each method name (as on the command line) to its step function.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leo.api import exact_step
from leo.approx.dependence import DependenceOptions, dependence_elimination
from leo.approx.linearity import LinearityOptions, linearity_fusion
from leo.approx.pq_index import PQOptions, count_nonzero, pq_prune
from leo.approx.report import ApproxReport, DataSplit, split_data
from leo.core.choices import Form
from leo.core.domain import Box
from leo.core.verdicts import Verdict
from leo.errors import LeoInputError
from leo.core.network import Network
from leo.reduction.reduce import Reduction
from leo.stability.report import StabilityReport
from leo.stability.analysis import StabilityOptions


# -- inputs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainData:
    """Samples (and optional labels) for the approximate steps; ``x_eval``/``y_eval``: a
    held-out set for the reports (else ``ChainOptions.holdout`` of ``x`` is held out)."""

    x: Any = None
    y: Any = None
    x_eval: Any = None
    y_eval: Any = None


DataLike = ChainData | np.ndarray | tuple | Mapping[str, Any] | None


def as_chain_data(data: DataLike) -> ChainData:
    """``None``, ``x``, ``(x, y)``, ``(x, y, x_eval, y_eval)``, a mapping with those keys, or ChainData."""
    if data is None or isinstance(data, ChainData):
        return data or ChainData()
    if isinstance(data, np.ndarray):
        return ChainData(data)
    if isinstance(data, Mapping):
        unknown = set(data) - {"x", "y", "x_eval", "y_eval"}
        if unknown:
            raise LeoInputError(f"data: unknown keys {sorted(unknown)}; use x, y, x_eval, y_eval")
        return ChainData(**data)
    if isinstance(data, (tuple, list)) and 1 <= len(data) <= 4:
        return ChainData(*data)
    raise LeoInputError("data: give x, (x, y), (x, y, x_eval, y_eval) or a ChainData")


@dataclass(frozen=True)
class ChainOptions:
    stability: StabilityOptions = StabilityOptions()
    linearity: LinearityOptions = LinearityOptions()
    dependence: DependenceOptions = DependenceOptions()
    pq_index: PQOptions = PQOptions()
    holdout: float = 0.2  # share of x held out for the reports when no x_eval is given
    seed: int = 0
    check_points: int = 10_000  # sampled points of the box on which each exact step is checked

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise LeoInputError(f"holdout={self.holdout}: the held-out share must lie strictly between 0 and 1")
        if self.check_points < 1:
            raise LeoInputError(f"check_points={self.check_points}: the exact step's sampled check needs a point")


# -- reports -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExactReport:
    """An exact step: stability proven on the box, then the LEO reduction."""

    hidden_before: tuple[int, ...]
    hidden_after: tuple[int, ...]
    params_before: int
    params_after: int
    active: tuple[int, ...]  # proven active units per ReLU layer
    inactive: tuple[int, ...]
    units: tuple[int, ...]
    certified: bool  # no approximate step before: lossless with respect to the original network
    check_max_diff: float  # largest |f - g| on the sampled check of the box
    check_points: int
    seconds: float
    stability: StabilityReport = field(repr=False, compare=False)
    reduction: Reduction = field(repr=False, compare=False)
    method: str = "exact"

    @property
    def lossless(self) -> bool:
        """Always: the reduced network equals its input on the box (proven stability)."""
        return True

    @property
    def num_stable(self) -> int:
        return int(sum(self.active) + sum(self.inactive))

    @property
    def units_before(self) -> int:
        return int(sum(self.hidden_before))

    @property
    def units_after(self) -> int:
        return int(sum(self.hidden_after))

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "lossless": self.lossless,
            "certified": self.certified,
            "domain": self.stability.box.to_json(),
            "stable": {"active": list(self.active), "inactive": list(self.inactive), "units": list(self.units),
                       "total": self.num_stable},
            "hidden_units": {"before": self.units_before, "after": self.units_after,
                             "widths_before": list(self.hidden_before), "widths_after": list(self.hidden_after)},
            "parameters_count": {"before": self.params_before, "after": self.params_after,
                                 "ratio": round(self.params_after / self.params_before, 6)},
            "check": {"points": self.check_points, "max_abs_diff": self.check_max_diff},
            "solves": self.stability.solves,
            "seconds": round(self.seconds, 4),
            "notes": [] if self.certified else
                     ["lossless with respect to this step's input only: an approximate step came before, "
                      "so the chain's result is not certified against the original network"],
        }


StepReport = ExactReport | ApproxReport


# -- steps -------------------------------------------------------------------------------
@dataclass
class _State:
    network: Network
    box: Box | None
    split: DataSplit | None
    options: ChainOptions
    certified: bool = True  # every step so far was exact
    proven_active: dict[int, list[int]] | None = None  # valid for ``network`` on ``box``


def _needs_data(state: _State, method: str) -> DataSplit:
    if state.split is None:
        raise LeoInputError(f"method {method!r} is approximate and needs data: pass --data mnist or a .npz file "
                            "with inputs 'x' (and labels 'y')")
    return state.split


def _active_after(report: StabilityReport, reduction: Reduction, network: Network) -> dict[int, list[int]]:
    """Units of the reduced network that the report proved active (same z on the box)."""
    merged = set(reduction.merged_layers)
    survivors = [k for k in range(1, len(network.layers) + 1) if k not in merged]
    out: dict[int, list[int]] = {}
    for new, (orig, kept) in enumerate(zip(survivors, reduction.kept), start=1):
        lr = report.layer(orig)
        if lr is None:
            continue
        active = set(lr.active)
        units = [pos for pos, o in enumerate(kept) if o in active]
        if units:
            out[new] = units
    return out


def _exact(state: _State) -> tuple[Network, StepReport, dict[int, list[int]] | None]:
    if state.box is None:
        raise LeoInputError("method 'exact' needs an input box (--lower/--upper): stability is proven on a box")
    start = time.perf_counter()
    net = state.network
    seeds = None if state.split is None else state.split.x_fit
    done = exact_step(net, state.box, state.options.stability, data=seeds, check_points=state.options.check_points,
                      form=Form.LEO)  # a chain's exact step keeps plain layers for the steps after it
    report, reduction, check = done.report, done.reduction, done.check
    out = reduction.network
    step = ExactReport(
        hidden_before=net.hidden, hidden_after=out.hidden,
        params_before=net.num_parameters, params_after=out.num_parameters,
        active=tuple(len(lr.active) for lr in report.layers),
        inactive=tuple(len(lr.inactive) for lr in report.layers),
        units=tuple(lr.width for lr in report.layers),
        certified=state.certified, check_max_diff=check.max_diff, check_points=check.points,
        seconds=time.perf_counter() - start, stability=report, reduction=reduction,
    )
    return out, step, _active_after(report, reduction, net)


def _linearity(state: _State) -> tuple[Network, StepReport, dict[int, list[int]] | None]:
    split = _needs_data(state, "linearity")
    net, rep = linearity_fusion(state.network, None, options=state.options.linearity,
                                stability=state.proven_active, split=split)
    return net, rep, None


def _dependence(state: _State) -> tuple[Network, StepReport, dict[int, list[int]] | None]:
    split = _needs_data(state, "dependence")
    net, rep = dependence_elimination(state.network, None, options=state.options.dependence, split=split)
    return net, rep, None


def _pq_index(state: _State) -> tuple[Network, StepReport, dict[int, list[int]] | None]:
    split = _needs_data(state, "pq-index")
    net, rep = pq_prune(state.network, None, options=state.options.pq_index, split=split)
    return net, rep, None


StepFn = Callable[[_State], tuple[Network, StepReport, "dict[int, list[int]] | None"]]

#: method name -> step function (state -> new network, step report, proven-active units)
METHODS: dict[str, StepFn] = {
    "exact": _exact,
    "linearity": _linearity,
    "dependence": _dependence,
    "pq-index": _pq_index,
}

#: methods that need data (all but the exact one)
NEEDS_DATA: frozenset[str] = frozenset({"linearity", "dependence", "pq-index"})


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """``"pq-index,exact"`` or a list of names -> checked list of method names."""
    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m).strip() for m in methods]
    items = [m for m in items if m]
    if not items:
        raise LeoInputError(f"no compression method given: choose from {', '.join(METHODS)}")
    for m in items:
        if m not in METHODS:
            raise LeoInputError(f"unknown compression method {m!r}: choose from {', '.join(METHODS)} "
                                "(chain them with commas, e.g. pq-index,exact)")
    return items


def run_chain(network: Network, box: Box | None, methods: str | Sequence[str], data: DataLike = None,
              options: ChainOptions = ChainOptions()) -> tuple[Network, list[StepReport]]:
    """Run the methods in order; the final network and one report per step."""
    names = parse_methods(methods)
    if box is not None and box.dim != network.input_dim:
        raise LeoInputError(f"the box has {box.dim} inputs but the network takes {network.input_dim}")
    chain = as_chain_data(data)
    split = None
    if chain.x is not None:
        split = split_data(network, chain.x, chain.y, chain.x_eval, chain.y_eval, options.holdout, options.seed)
    elif NEEDS_DATA.intersection(names):
        needy = [m for m in names if m in NEEDS_DATA]
        raise LeoInputError(f"method(s) {', '.join(needy)} are approximate and need data: pass --data mnist "
                            "or a .npz file with inputs 'x' (and labels 'y')")
    state = _State(network, box, split, options)
    reports: list[StepReport] = []
    for name in names:
        net, rep, active = METHODS[name](state)
        reports.append(rep)
        state.network = net
        state.proven_active = active
        state.certified = state.certified and rep.lossless
    return state.network, reports


def chain_summary(original: Network, final: Network, reports: Sequence[StepReport],
                  data: DataLike = None) -> dict[str, Any]:
    """Whole-chain numbers: sizes, whether it is certified, and (with data) the agreement
    of the final network with the original."""
    out: dict[str, Any] = {
        "methods": [r.method for r in reports],
        "certified": all(r.lossless for r in reports),
        "lossless": all(r.lossless for r in reports),
        "hidden_units": {"before": int(sum(original.hidden)), "after": int(sum(final.hidden))},
        "parameters_count": {"before": original.num_parameters, "after": final.num_parameters,
                             "ratio": round(final.num_parameters / original.num_parameters, 6),
                             "nonzero_before": count_nonzero(original), "nonzero_after": count_nonzero(final)},
    }
    chain = as_chain_data(data)
    x = chain.x_eval if chain.x_eval is not None else chain.x
    y = chain.y_eval if chain.x_eval is not None else chain.y
    if x is not None:
        from leo.approx.report import check_inputs, check_labels, evaluate  # noqa: PLC0415

        xs = check_inputs(original, x)
        ys = check_labels(original, xs, y)
        ev = evaluate(original, final, xs, ys)
        out["data"] = {"samples": ev.samples, "agreement": ev.agreement, "max_abs_diff": ev.max_abs_diff,
                       "accuracy_before": ev.accuracy_before, "accuracy_after": ev.accuracy_after}
    return out


def chain_report(methods: Sequence[str], original: Network, final: Network, reports: Sequence[StepReport],
                 data: DataLike = None) -> dict[str, Any]:
    """The report file an approximate chain writes in place of a certificate: says it is not
    lossless, with the whole-chain numbers (``chain_summary``) and each step's own report."""
    return {"kind": "leo approximate compression report", "lossless": False, "methods": list(methods),
            "summary": chain_summary(original, final, reports, data), "steps": [r.to_json() for r in reports]}


# -- what each step did, in words ---------------------------------------------------------
def describe_step(report: StepReport) -> list[str]:
    """One line saying what a step did to the network (so a dense model that only had
    weights zeroed is not mistaken for a smaller one), then the step's own notes."""
    size = f"parameters {report.params_before} -> {report.params_after}"
    if isinstance(report, ExactReport):
        head = (f"exact: {report.num_stable} of {sum(report.units)} units proven stable on the box; hidden units "
                f"{report.units_before} -> {report.units_after}, {size} (lossless on the box)")
        return [head] + report.to_json()["notes"]
    d = report.details
    if report.method == "pq-index" and "kept_weights" in d:
        nz = d["nonzero_parameters"]["after"]
        head = (f"pq-index: dense shape kept, {d['weights'] - d['kept_weights']} weights zeroed ({nz} of "
                f"{report.params_after} parameters nonzero); {d['dead_units_removed']} units left without weights "
                f"removed, hidden units {report.units_before} -> {report.units_after}")
    elif report.method == "pq-index":
        head = (f"pq-index (structured, ours): {len(d['rounds'])} round(s), hidden units {report.units_before} -> "
                f"{report.units_after}, {size}")
    elif report.method == "linearity":
        per_layer = ", ".join(f"layer {ly['layer']}: {len(ly['fused_units'])}" for ly in d["layers"]
                              if ly["fused_units"]) or "none"
        used = report.parameters.get("threshold_used")
        head = (f"linearity: fused {d['fused_units']} units into skip connections ({per_layer}); threshold "
                f"{'-' if used is None else f'{used:g}'}; {size}, paper-counted size "
                f"{d['paper_size']['before']} -> {d['paper_size']['after']}")
    elif report.method == "dependence":
        accepted = [r for r in d["rounds"] if r["accepted"]]
        per_layer = ", ".join(f"layer {k}: {n}" for k, n in _removed_per_layer(accepted).items()) or "none"
        tol = f"{accepted[-1]['tolerance']:g}" if accepted else "-"
        head = (f"dependence: eliminated {d['removed_units']} units ({per_layer}); tolerance reached {tol}; "
                f"hidden units {report.units_before} -> {report.units_after}, {size}")
    else:
        head = f"{report.method}: hidden units {report.units_before} -> {report.units_after}, {size}"
    return [head] + list(report.notes)


def _removed_per_layer(rounds: Sequence[dict[str, Any]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in rounds:
        for u in r["units"]:
            out[int(u["layer"])] = out.get(int(u["layer"]), 0) + 1
    return dict(sorted(out.items()))


# -- interference ------------------------------------------------------------------------
_STABLE = frozenset({Verdict.ACTIVE, Verdict.INACTIVE})

def interference(network: Network, box: Box, data: DataLike, method: str = "pq-index",
                 options: ChainOptions = ChainOptions()) -> dict[str, Any]:
    """How much exact compression survives an approximate unit-removal step: stable units
    proven on the box before, and after ``method`` (``pq-index`` or ``dependence``), and
    for the units that survived it, whether they were and still are stable."""
    if method not in ("pq-index", "dependence"):
        raise LeoInputError(f"interference is measured for unit-removing methods (pq-index, dependence), not {method!r}")
    before_net, (exact_before,) = run_chain(network, box, ["exact"], data, options)
    pruned_net, (approx, after) = run_chain(network, box, [method, "exact"], data, options)
    kept: dict[int, list[int]] = {int(k): v for k, v in approx.details["kept_units"].items()}
    stab_before, stab_after = exact_before.stability, after.stability
    survived_stable = still_stable = newly_stable = 0
    for k, units in kept.items():
        lb, la = stab_before.layer(k), stab_after.layer(k)
        if lb is None or la is None:
            continue
        was = {j: lb.proofs[j].verdict for j in range(lb.width)}
        for pos, orig in enumerate(units):
            stable_before = was[orig] in _STABLE
            stable_now = la.proofs[pos].verdict in _STABLE
            survived_stable += stable_before
            still_stable += stable_before and stable_now
            newly_stable += (not stable_before) and stable_now
    return {
        "method": method,
        "exact_alone": {"stable": exact_before.num_stable, "units": exact_before.units_before,
                        "parameters_after": exact_before.params_after},
        "approx": {"units_after": approx.units_after, "parameters_after": approx.params_after,
                   "agreement": approx.agreement, "accuracy_after": approx.accuracy_after},
        "exact_after_approx": {"stable": after.num_stable, "units": after.units_before,
                               "parameters_after": after.params_after},
        "stable_units_removed": int(exact_before.num_stable - survived_stable),
        "stable_units_surviving_removal": int(survived_stable),
        "still_stable": int(still_stable),
        "newly_stable": int(newly_stable),
        "params_original": network.num_parameters,
        "final_network_hidden": list(pruned_net.hidden),
        "before_network_hidden": list(before_net.hidden),
    }
