"""PQ-index pruning (Yang, Wang, Ding, Yang, arXiv 2206.05604, 2022; Diao, Wang, Ding,
Yang, Tarokh, "Pruning Deep Neural Networks from a Sparsity Perspective", ICLR 2023),
applied to whole units (structured pruning).

The PQ index of a vector w of length d, for 0 < p < q,

    I(w) = 1 - d^(1/q - 1/p) ||w||_p / ||w||_q,

is 0 for a constant vector and grows to 1 - d^(1/q - 1/p) for a one-hot one: the
sparser w, the larger I. It bounds how many entries carry the vector, and the number
to keep is

    m = ceil( d (1 + eta)^(-q/(q-p)) (1 - I(w))^(qp/(q-p)) ),   clamped to [1, d].

SAP (Diao et al.) prunes c = floor(d · min(gamma (1 - m/d), beta)) entries per round;
the defaults gamma = beta = 1 keep exactly m.

Structured use here: per hidden layer, the vector w holds one *score per unit*,

    score_j = ||incoming weights of j||_2 · ||outgoing weights of j||_2,

the incoming row over all of the layer's sources (bias excluded) and the outgoing
column over all layers that read it — the product bounds how much the unit can pass
on per unit of input, and is 0 for a unit that reads or feeds nothing. The m units
with the largest scores stay; the others are deleted (their rows, and their columns
in every reader). Rounds repeat — with optional fine-tuning between them — until no
layer changes or ``max_rounds`` is reached. A layer whose scores are all zero gives
no signal and is left alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from leo.approx.editing import Editable
from leo.approx.finetune import FinetuneOptions, finetune
from leo.approx.report import ApproxReport, DataSplit, make_report, split_data
from leo.errors import LeoInputError
from leo.network import Network


@dataclass(frozen=True)
class PQOptions:
    p: float = 0.5
    q: float = 1.0
    eta: float = 0.0
    gamma: float = 1.0  # SAP: scales the pruning fraction 1 - m/d
    beta: float = 1.0  # SAP: at most this share of a layer's units pruned per round
    max_rounds: int = 10
    finetune: FinetuneOptions | None = None  # fine-tune between rounds
    holdout: float = 0.2  # share of the data held out for the report (when no held-out set is given)
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.p < self.q and math.isfinite(self.q)):
            raise LeoInputError(f"PQ index: need 0 < p < q, got p={self.p}, q={self.q}")
        if not (self.eta >= 0 and self.gamma > 0 and 0 < self.beta <= 1 and self.max_rounds >= 1):
            raise LeoInputError(f"PQ options: need eta >= 0, gamma > 0, 0 < beta <= 1, max_rounds >= 1; "
                                f"got eta={self.eta}, gamma={self.gamma}, beta={self.beta}, "
                                f"max_rounds={self.max_rounds}")


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


def keep_count(d: int, index: float, p: float = 0.5, q: float = 1.0, eta: float = 0.0,
               gamma: float = 1.0, beta: float = 1.0) -> int:
    """How many of ``d`` entries to keep: m = ceil(d (1+eta)^(-q/(q-p)) (1-I)^(qp/(q-p)))
    clamped to [1, d]; then SAP's c = floor(d min(gamma (1 - m/d), beta)) pruned."""
    if d < 1:
        raise LeoInputError(f"keep_count: d={d} must be at least 1")
    raw = d * (1.0 + eta) ** (-q / (q - p)) * max(0.0, 1.0 - index) ** (q * p / (q - p))
    m = min(d, max(1, math.ceil(raw - 1e-9 * d)))  # the slack absorbs rounding at integers
    pruned = math.floor(min(gamma * (d - m), beta * d) + 1e-9)
    return max(1, d - pruned)


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
    """One round: per hidden layer, keep the ``keep_count`` units with the largest scores."""
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


def pq_prune(network: Network, x: Any, y: Any = None, options: PQOptions = PQOptions(), *,
             x_eval: Any = None, y_eval: Any = None, split: DataSplit | None = None) -> tuple[Network, ApproxReport]:
    """Iterative structured PQ-index pruning; data for fine-tuning and for the report."""
    start = time.perf_counter()
    if len(network.layers) < 2:
        raise LeoInputError("PQ-index pruning needs at least one hidden layer")
    if split is None:
        split = split_data(network, x, y, x_eval, y_eval, options.holdout, options.seed)
    net = network
    origins = [list(range(w)) for w in network.hidden]  # original unit index of every live unit
    rounds: list[dict[str, Any]] = []
    converged = False
    for r in range(options.max_rounds):
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
        if options.finetune is not None and options.finetune.steps > 0:
            ft = FinetuneOptions(**{**asdict(options.finetune), "seed": options.finetune.seed + r})
            net = finetune(net, split.x_fit, split.y_fit, ft, teacher=network)
            rounds[-1]["finetuned"] = True
    details = {"rounds": rounds, "kept_units": {k + 1: o for k, o in enumerate(origins)},
               "converged": converged,
               "score": "||incoming row||_2 * ||outgoing column||_2 per unit"}
    notes = ("approximate: pruned units are removed whatever they computed",)
    report = make_report("pq-index", asdict(options), network, net, split, time.perf_counter() - start,
                         details, notes)
    return net, report
