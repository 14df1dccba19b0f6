"""PQ-index pruning (Diao, Wang, Zhang, Yang, Ding, Tarokh, "Pruning Deep Neural Networks
from a Sparsity Perspective", ICLR 2023; the PQ index of Yang et al. 2022).

The PQ index of a vector w of length d, for 0 < p < q,

    I(w) = 1 - d^(1/q - 1/p) ||w||_p / ||w||_q,

is 0 for a vector of equal magnitudes and grows towards 1 - d^(1/q - 1/p) for a one-hot
one: the sparser w, the larger I. It bounds how many entries carry the vector:

    r = ceil( d (1 + eta_r)^(-q/(q-p)) (1 - I(w))^(qp/(q-p)) ).

**SAP** (the paper's method, ``structure="weights"``, the default) is unstructured. Each
round, for every *scope* (``global``: all weight matrices together; ``layer``: each
weight matrix; ``neuron``: each row), over the weights not pruned yet: compute I and r,
prune the c = floor(d · min(gamma (1 - r/d), beta)) smallest magnitudes, then (with
``retrain``) reset the survivors to their initial values (``init``) and retrain with the
pruned weights held at zero. Biases are never pruned (the paper prunes tensors of
dimension > 1). Defaults: p = 0.5, q = 1, eta_r = 0, gamma = 1, beta = 0.9, global scope.
The paper runs T = 30 rounds with retraining; without ``init`` and ``retrain`` (as on
the command line, where only the trained model is known) one round is the paper's
"pruned model" of round 1, and further rounds without retraining would keep pruning
whatever is left, so the default is one round.

Units left with no incoming or no outgoing weight are then removed exactly (a unit
with no outgoing weight does nothing; one with no incoming weight outputs relu(bias), a
constant folded into the readers' biases), so the dense network shrinks where whole
units died; the remaining zeros stay in the dense matrices (the report counts them).

``structure="units"`` is **ours**, not the paper's: structured pruning of whole units,
scored per unit by ||incoming row||_2 · ||outgoing column||_2 and kept by the same bound
per hidden layer (at least one unit per layer).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from leo.approx.editing import Editable
from leo.approx.finetune import FinetuneOptions, finetune
from leo.approx.report import ApproxReport, DataSplit, make_report, split_data
from leo.errors import LeoInputError
from leo.core.network import Layer, Network

Masks = dict[tuple[int, int], np.ndarray]  # (layer 1-based, source) -> True where the weight is kept
SCOPES = ("global", "layer", "neuron")
STRUCTURES = ("weights", "units")


@dataclass(frozen=True)
class PQOptions:
    p: float = 0.5
    q: float = 1.0
    eta: float = 0.0  # eta_r
    gamma: float = 1.0  # scales the pruning share 1 - r/d
    beta: float = 0.9  # at most this share of a scope pruned per round
    scope: str = "global"
    structure: str = "weights"  # "weights": the paper's SAP; "units": ours (structured)
    rounds: int = 1
    retrain: FinetuneOptions | None = None  # retraining after each round (the paper retrains)
    holdout: float = 0.2  # share of the data held out for the report (when no held-out set is given)
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.p < self.q and math.isfinite(self.q)):
            raise LeoInputError(f"PQ index: need 0 < p < q, got p={self.p}, q={self.q}")
        if not (0 <= self.eta < math.inf and 0 < self.gamma < math.inf and 0 < self.beta <= 1 and self.rounds >= 1):
            raise LeoInputError(f"PQ options: need eta >= 0, gamma > 0, 0 < beta <= 1, rounds >= 1; "
                                f"got eta={self.eta}, gamma={self.gamma}, beta={self.beta}, rounds={self.rounds}")
        if self.scope not in SCOPES:
            raise LeoInputError(f"PQ scope={self.scope!r}: use one of {', '.join(SCOPES)}")
        if self.structure not in STRUCTURES:
            raise LeoInputError(f"PQ structure={self.structure!r}: use 'weights' (the paper's SAP) or 'units' (ours)")


def _pnorm(w: np.ndarray, p: float) -> float:
    """(sum |w_i|^p)^(1/p), also for p < 1 (a quasi-norm)."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    top = float(a.max()) if a.size else 0.0
    if top == 0.0:
        return 0.0
    return top * float(np.sum((a / top) ** p)) ** (1.0 / p)


def pq_index(w: np.ndarray, p: float = 0.5, q: float = 1.0) -> float:
    """I(w) = 1 - d^(1/q - 1/p) ||w||_p / ||w||_q (0 for an all-zero vector)."""
    if not 0 < p < q:
        raise LeoInputError(f"PQ index: need 0 < p < q, got p={p}, q={q}")
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size == 0:
        raise LeoInputError("PQ index of an empty vector")
    nq = _pnorm(w, q)
    if nq == 0.0:
        return 0.0
    return 1.0 - w.size ** (1.0 / q - 1.0 / p) * _pnorm(w, p) / nq


def retain_bound(d: int, index: float, p: float = 0.5, q: float = 1.0, eta: float = 0.0) -> int:
    """r = ceil(d (1+eta)^(-q/(q-p)) (1-I)^(qp/(q-p))) (the slack absorbs rounding at integers)."""
    raw = d * (1.0 + eta) ** (-q / (q - p)) * max(0.0, 1.0 - index) ** (q * p / (q - p))
    return min(d, max(0, math.ceil(raw - 1e-9 * max(d, 1))))


def prune_count(d: int, index: float, p: float = 0.5, q: float = 1.0, eta: float = 0.0,
                gamma: float = 1.0, beta: float = 0.9) -> int:
    """SAP's c = floor(d · clip(gamma (1 - r/d), 0, beta)) entries to prune out of ``d``."""
    if d < 1:
        return 0
    r = retain_bound(d, index, p, q, eta)
    share = min(max(gamma * (1.0 - r / d), 0.0), beta)
    return int(math.floor(d * share + 1e-9))


def keep_count(d: int, index: float, p: float = 0.5, q: float = 1.0, eta: float = 0.0,
               gamma: float = 1.0, beta: float = 0.9) -> int:
    """Entries kept out of ``d`` (at least one): d - prune_count."""
    if d < 1:
        raise LeoInputError(f"keep_count: d={d} must be at least 1")
    return max(1, d - prune_count(d, index, p, q, eta, gamma, beta))


# -- unstructured (the paper's SAP) -------------------------------------------------------
def full_masks(network: Network) -> Masks:
    """Every weight kept."""
    return {(k, s): np.ones(w.shape, dtype=bool) for k, ly in enumerate(network.layers, start=1)
            for s, w in ly.weights.items()}


def apply_masks(network: Network, masks: Mapping[tuple[int, int], np.ndarray]) -> Network:
    """The network with the masked-out weights set to zero (biases untouched)."""
    layers = tuple(Layer({s: np.where(masks[(k, s)], w, 0.0) for s, w in ly.weights.items()}, ly.bias, ly.relu)
                   for k, ly in enumerate(network.layers, start=1))
    return Network(network.input_dim, layers, dict(network.metadata))


def _groups(masks: Masks, scope: str) -> list[list[tuple[tuple[int, int], Any]]]:
    """The scopes over which the index is computed: lists of (mask key, row selector)."""
    if scope == "global":
        return [[(key, slice(None)) for key in masks]]
    if scope == "layer":
        return [[(key, slice(None))] for key in masks]
    return [[(key, i)] for key, m in masks.items() for i in range(m.shape[0])]


def sap_round(network: Network, masks: Masks, options: PQOptions = PQOptions()) -> tuple[Masks, list[dict[str, Any]]]:
    """One SAP pruning step on the kept weights of ``network``: new masks, and per scope
    d, I, r and c (for the global scope one entry)."""
    new = {key: m.copy() for key, m in masks.items()}
    info: list[dict[str, Any]] = []
    for group in _groups(masks, options.scope):
        values, places = [], []
        for key, rows in group:
            k, s = key
            w = np.abs(network.layers[k - 1].weights[s][rows])
            m = masks[key][rows]
            values.append(w[m])
            idx = np.argwhere(np.atleast_1d(m)) if np.ndim(m) else np.zeros((0, 1), int)
            places.append((key, rows, idx))
        flat = np.concatenate(values) if values else np.zeros(0)
        d = int(flat.size)
        if d == 0:
            continue
        index = pq_index(flat, options.p, options.q)
        c = prune_count(d, index, options.p, options.q, options.eta, options.gamma, options.beta)
        if options.scope != "neuron":
            info.append({"scope": [list(key) for key, _ in group] if options.scope == "layer" else "global",
                         "d": d, "pq_index": index, "retain_bound": retain_bound(d, index, options.p, options.q,
                                                                                options.eta), "pruned": c})
        if c == 0:
            continue
        drop = np.sort(np.argsort(flat, kind="stable")[:c])
        offset = 0
        for key, rows, idx in places:
            n = idx.shape[0]
            mine = drop[(drop >= offset) & (drop < offset + n)] - offset
            offset += n
            if mine.size == 0:
                continue
            target = new[key][rows]
            target[tuple(idx[mine].T)] = False
            new[key][rows] = target
    if options.scope == "neuron":
        kept_before = sum(int(m.sum()) for m in masks.values())
        info.append({"scope": "neuron", "d": kept_before, "pruned": kept_before - sum(int(m.sum()) for m in new.values())})
    return new, info


def magnitude_round(reference: Network, masks: Masks, share: float = 0.2, scope: str = "global") -> Masks:
    """The paper's baselines: prune ``share`` of the kept weights of each scope with the
    smallest magnitude in ``reference`` (one-shot: the first trained model; lottery
    ticket: the latest)."""
    if not 0 < share < 1:
        raise LeoInputError(f"magnitude pruning share={share}: give a share in (0, 1)")
    new = {key: m.copy() for key, m in masks.items()}
    for group in _groups(masks, scope):
        vals = [np.abs(reference.layers[key[0] - 1].weights[key[1]][rows])[masks[key][rows]] for key, rows in group]
        flat = np.concatenate(vals)
        if flat.size == 0:
            continue
        pivot = np.quantile(flat, share)
        for key, rows in group:
            w = np.abs(reference.layers[key[0] - 1].weights[key[1]][rows])
            target = new[key][rows]
            new[key][rows] = target & ~(w < pivot)
    return new


def drop_dead_units(network: Network) -> tuple[Network, int, dict[int, list[int]]]:
    """Remove hidden units with no outgoing weight, and fold units with no incoming weight
    (constant relu(bias)) into their readers' biases; exact on every input. Repeats until
    nothing changes; a layer keeps at least one unit. Returns the network, the count, and
    per hidden layer (1-based) the original index of every unit kept."""
    ed = Editable(network)
    removed = 0
    changed = True
    while changed:
        changed = False
        for k in range(1, len(ed.layers)):
            ly = ed.layer(k)
            readers = ed.readers(k)
            out_zero = np.ones(ly.width, dtype=bool)
            for r in readers:
                out_zero &= ~np.any(ed.layer(r).weights[k] != 0, axis=0)
            in_zero = np.ones(ly.width, dtype=bool)
            for w in ly.weights.values():
                in_zero &= ~np.any(w != 0, axis=1)
            dead = np.flatnonzero(out_zero | in_zero)
            if dead.size == 0 or dead.size >= ly.width:
                dead = dead[: max(0, ly.width - 1)]
            if dead.size == 0:
                continue
            const = np.where(in_zero[dead] & ~out_zero[dead],
                             np.maximum(ly.bias[dead], 0.0) if ly.relu else ly.bias[dead], 0.0)
            for r in readers:
                reader = ed.layer(r)
                reader.bias = reader.bias + reader.weights[k][:, dead] @ const
            ed.delete_units(k, dead)
            removed += int(dead.size)
            changed = True
            break
    kept = {k: [int(o) for o in ed.layer(k).origin] for k in range(1, len(ed.layers))}
    return ed.network(), removed, kept


def count_nonzero(network: Network) -> int:
    """Nonzero weights and biases."""
    return int(sum(np.count_nonzero(ly.bias) + sum(np.count_nonzero(w) for w in ly.weights.values())
                   for ly in network.layers))


def count_weights(network: Network, nonzero: bool = False) -> int:
    """Entries of the weight matrices (the paper's size: biases excluded)."""
    return int(sum((np.count_nonzero(w) if nonzero else w.size) for ly in network.layers for w in ly.weights.values()))


def _retrain(start: Network, masks: Masks, split: DataSplit, options: PQOptions, r: int,
             teacher: Network) -> Network:
    assert options.retrain is not None
    ft = FinetuneOptions(**{**asdict(options.retrain), "seed": options.retrain.seed + r})
    return finetune(start, split.x_fit, split.y_fit, ft, teacher=teacher, masks=masks)


def _sap(network: Network, split: DataSplit, options: PQOptions,
         init: Network | None) -> tuple[Network, Masks, list[dict[str, Any]]]:
    if init is not None and [tuple(w.shape for w in ly.weights.values()) for ly in init.layers] != \
            [tuple(w.shape for w in ly.weights.values()) for ly in network.layers]:
        raise LeoInputError("PQ-index: the initial network (for rewinding) must have the trained network's shapes")
    masks = full_masks(network)
    net = network
    rounds: list[dict[str, Any]] = []
    for r in range(options.rounds):
        new, info = sap_round(net, masks, options)
        pruned = sum(int(m.sum()) for m in masks.values()) - sum(int(m.sum()) for m in new.values())
        masks = new
        entry: dict[str, Any] = {"round": r + 1, "pruned_weights": pruned, "scopes": info,
                                 "kept_weights": sum(int(m.sum()) for m in masks.values())}
        if options.retrain is not None and options.retrain.steps > 0:
            start = apply_masks(init if init is not None else net, masks)
            net = apply_masks(_retrain(start, masks, split, options, r, network), masks)
            entry["retrained"] = True
            entry["rewound"] = init is not None
        else:
            net = apply_masks(net, masks)
        rounds.append(entry)
        if pruned == 0:
            break
    return net, masks, rounds


# -- structured (ours) -------------------------------------------------------------------
def unit_scores(network: Network, k: int) -> np.ndarray:
    """score_j = ||incoming row j||_2 · ||outgoing column j||_2 for hidden layer ``k`` (1-based)."""
    layer = network.layers[k - 1]
    incoming = np.sqrt(sum(np.sum(w ** 2, axis=1) for w in layer.weights.values()))
    outgoing = np.zeros(layer.width)
    for reader in network.layers[k:]:
        if k in reader.weights:
            outgoing = outgoing + np.sum(reader.weights[k] ** 2, axis=0)
    return incoming * np.sqrt(outgoing)


def prune_round(network: Network, options: PQOptions = PQOptions()) -> tuple[Network, list[dict[str, Any]]]:
    """One structured round (ours): per hidden layer, keep the ``keep_count`` units with the largest scores."""
    ed = Editable(network)
    info: list[dict[str, Any]] = []
    plans: list[tuple[int, np.ndarray]] = []
    for k in range(1, len(network.layers)):
        scores = unit_scores(network, k)
        d = scores.size
        index = pq_index(scores, options.p, options.q)
        m = d if not scores.any() else keep_count(d, index, options.p, options.q, options.eta,
                                                 options.gamma, options.beta)
        order = np.argsort(-scores, kind="stable")
        drop = np.sort(order[m:])
        plans.append((k, drop))
        info.append({"layer": k, "units": d, "pq_index": index, "keep": m,
                     "pruned_units": [int(ed.layer(k).origin[j]) for j in drop]})
    for k, drop in plans:  # scores all come from the same network; layers keep >= 1 unit
        ed.delete_units(k, drop)
    return ed.network(), info


def _units(network: Network, split: DataSplit, options: PQOptions) -> tuple[Network, dict[str, Any]]:
    net = network
    origins = [list(range(w)) for w in network.hidden]  # original unit index of every live unit
    rounds: list[dict[str, Any]] = []
    converged = False
    for r in range(options.rounds):
        cand, info = prune_round(net, options)
        changed = cand.hidden != net.hidden
        for entry in info:
            k = entry["layer"]
            entry["pruned_units"] = [origins[k - 1][j] for j in entry["pruned_units"]]
            gone = set(entry["pruned_units"])
            origins[k - 1] = [o for o in origins[k - 1] if o not in gone]
        rounds.append({"round": r + 1, "layers": info, "hidden": list(cand.hidden)})
        if not changed:
            converged = True
            break
        net = cand
        if options.retrain is not None and options.retrain.steps > 0:
            net = _retrain(net, full_masks(net), split, options, r, network)
            rounds[-1]["retrained"] = True
    return net, {"rounds": rounds, "kept_units": {k + 1: o for k, o in enumerate(origins)},
                 "converged": converged, "score": "||incoming row||_2 * ||outgoing column||_2 per unit (ours)"}


def pq_prune(network: Network, x: Any, y: Any = None, options: PQOptions = PQOptions(), *,
             x_eval: Any = None, y_eval: Any = None, split: DataSplit | None = None,
             init: Network | None = None) -> tuple[Network, ApproxReport]:
    """PQ-index pruning: SAP on the weights (default) or our structured variant on units.
    ``init``: the network's initial weights, to rewind the survivors to before retraining."""
    start = time.perf_counter()
    if len(network.layers) < 2:
        raise LeoInputError("PQ-index pruning needs at least one hidden layer")
    if split is None:
        split = split_data(network, x, y, x_eval, y_eval, options.holdout, options.seed)
    notes: list[str] = []
    if options.structure == "units":
        net, details = _units(network, split, options)
        notes.append("structured variant (ours, not the paper's SAP): whole units are removed")
    else:
        masked, masks, rounds = _sap(network, split, options, init)
        net, dead, kept_units = drop_dead_units(masked)
        total = count_weights(network)
        kept = sum(int(m.sum()) for m in masks.values())
        details = {"rounds": rounds, "scope": options.scope, "weights": total, "kept_weights": kept,
                   "kept_weights_pct": 100.0 * kept / total, "dead_units_removed": dead,
                   "kept_units": kept_units,
                   "nonzero_parameters": {"before": count_nonzero(network), "after": count_nonzero(net)},
                   "paper_size": {"before": total, "after": kept,
                                  "definition": "weights kept (weight matrices; biases not pruned)"}}
        notes.append(f"unstructured (SAP): {total - kept} of {total} weights set to zero; the dense model keeps "
                     f"its matrices except {dead} units left without weights; nonzero weights and biases "
                     f"{count_nonzero(network)} -> {count_nonzero(net)}")
        if options.retrain is None:
            notes.append("no retraining: this is the paper's pruned model of round 1 (the paper then rewinds "
                         "the survivors to their initial values and retrains, which needs the initial weights)")
    notes.append("approximate: pruned weights are removed whatever they computed")
    params = asdict(options)
    report = make_report("pq-index", params, network, net, split, time.perf_counter() - start, details, tuple(notes))
    return net, report
