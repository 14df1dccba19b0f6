"""Linear-dependence neuron elimination (Shah, Olivier, Raj, "Exploiting Non-Linear
Redundancy for Neural Model Compression", ICPR 2020, arXiv 2005.14070).

On data, the post-activation outputs ``h_j`` of a hidden layer are often (nearly)
linear combinations of the other units of the same layer plus a constant:

    h_j ≈ sum_{i != j} alpha_i h_i + c.

Such a unit carries no information the others do not: delete it and let every layer
that reads it read the combination instead,

    W_r[:, others] += W_r[:, j] alpha^T,      b_r += W_r[:, j] c,

which changes nothing on the data where the combination is exact.

Greedy elimination, per hidden layer from the first to the last: regress every unit on
the others (least squares with a constant), take the unit with the smallest *relative
residual* ``||h_j - H alpha - c|| / ||h_j||`` (an all-zero unit has residual 0), remove it
if that is at most the tolerance, and repeat on the remaining units. Residuals are
screened with the inverse of the Gram matrix of the column-normalised activations (a
unit's squared residual is 1 / (G^-1)_jj); the few lowest are then fitted exactly and
the smallest exact residual wins. The exact fit is a least-squares solve on the R
factor of the QR decomposition of those activations (the same problem as on the data,
in width + 1 rows). A layer always keeps one unit.

Annealing on a trained model (``dependence_elimination``, the default): the tolerance starts at ``tol_start`` and is multiplied by ``tol_factor``
each round up to ``tol_max``; after every round (and its optional fine-tuning) the
accuracy (or, without labels, the agreement with the original) on a validation split
of the data is compared with the original's; the first round that drops it by more
than ``budget`` is undone and the search stops.

Annealing during training (``dependence_training``): the network trains epoch by epoch;
after each epoch the greedy pass runs at the current tolerance, and its result is kept
when the validation accuracy (or agreement) after the pass is within ``budget`` of the
accuracy just before it; the tolerance then grows by ``tol_factor`` up to ``tol_max``.

Sources. The paper has no public code (Papers with Code lists none), and its body was
not found: on 2026-11-30 the stored pages, code, docs and issues corpora were searched
for its title, its arXiv number (2005.14070), its authors and its terms (linear
dependence between neuron activations, elimination, redistribution, annealing); every
hit (arXiv's abstract page, Papers with Code, emergentmind, arxivlens, scholarfeed,
bzpeer, tomesphere) holds only the abstract. (The venue, ICPR 2020, is the issue's; the
pages found list the arXiv preprint only.) The method is therefore built from the
abstract, which says: whole neurons are eliminated and their activations redistributed
over other neurons; this is lossless while training (where the dependence is exact);
an annealing algorithm applies it during training or on a trained model; up to 99 %
smaller with small loss. Everything else is our choice, and may deviate from the paper:

* the dependence measure: the relative least-squares residual of a unit's activations
  on the data, regressed on the other units of its layer *and a constant*;
* dependence within a layer only (not on earlier layers), post-activation values;
* the greedy order: one unit at a time, smallest residual first, residuals recomputed
  after each removal; a layer keeps at least one unit;
* the annealing: a geometric tolerance schedule (``tol_start`` × ``tol_factor`` up to
  ``tol_max``) and an accuracy (or agreement) budget on a validation split as the
  stopping rule; the round that breaks the budget is undone;
* during training: one greedy pass per epoch, kept when it costs at most ``budget``;
* optional fine-tuning after a round (``finetune``), off by default.
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
from leo.core.network import Network

_RIDGE = 1e-12  # regularises the screening Gram matrix (residuals are recomputed exactly)
_SCREEN_SLACK = 1e-4  # the ridge screen overestimates residuals by ~sqrt(_RIDGE) (1 + |alpha|)
_CANDIDATES = 16  # units per step whose exact residual is computed (lowest screen values first)


@dataclass(frozen=True)
class DependenceOptions:
    tol_start: float = 1e-4
    tol_factor: float = 2.0
    tol_max: float = 0.3
    budget: float = 0.01  # largest accepted drop of validation accuracy / agreement
    metric: str = "auto"  # "accuracy" (needs labels), "agreement", or "auto" (accuracy when labelled)
    validation: float = 0.2  # share of the fitting data used for the stopping rule
    finetune: FinetuneOptions | None = None  # fine-tune after every round that removed units
    holdout: float = 0.2  # share of the data held out for the report (when no held-out set is given)
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.tol_start <= self.tol_max < math.inf and 1 < self.tol_factor < math.inf):
            raise LeoInputError(f"dependence tolerances: need 0 < tol_start <= tol_max and tol_factor > 1, "
                                f"got {self.tol_start}, {self.tol_max}, {self.tol_factor}")
        if not 0 <= self.budget <= 1:
            raise LeoInputError(f"dependence budget={self.budget}: give a drop of accuracy/agreement in [0, 1]")
        if self.metric not in ("auto", "accuracy", "agreement"):
            raise LeoInputError(f"dependence metric={self.metric!r}: use 'auto', 'accuracy' or 'agreement'")
        if not 0 < self.validation < 1:
            raise LeoInputError(f"dependence validation={self.validation}: the share must lie in (0, 1)")


def _activations(network: Network, x: np.ndarray, k: int) -> np.ndarray:
    z = network.pre_activations(x)[k - 1]
    return np.maximum(z, 0.0) if network.layers[k - 1].relu else z


def _screen(gram: np.ndarray, alive: list[int]) -> np.ndarray:
    """Approximate relative residual of each alive column regressed on the other alive
    columns and the constant (the last row/column of ``gram``)."""
    idx = np.array(alive + [gram.shape[0] - 1])
    g = gram[np.ix_(idx, idx)] + _RIDGE * np.eye(idx.size)
    inv = np.linalg.inv(g)
    res2 = 1.0 / np.diag(inv)[:-1] - _RIDGE
    return np.sqrt(np.maximum(res2, 0.0))


def _fit(r: np.ndarray, col: int, others: list[int], norms: np.ndarray, n: int) -> tuple[np.ndarray, float, float]:
    """Least-squares ``h_col ≈ h_others @ alpha + c`` through the R factor of the
    column-normalised activations ``[h / ||h||, 1 / sqrt(n)] = Q R`` (Q has orthonormal
    columns, so the residual in R-space is the data residual): alpha, c and the
    relative residual ``||h_col - h_others alpha - c|| / ||h_col||``."""
    if norms[col] == 0.0:
        return np.zeros(len(others)), 0.0, 0.0
    design = r[:, others + [r.shape[1] - 1]]
    beta, *_ = np.linalg.lstsq(design, r[:, col], rcond=None)
    rel = float(np.linalg.norm(design @ beta - r[:, col]))
    safe = np.where(norms[others] > 0, norms[others], 1.0)
    alpha = beta[:-1] * norms[col] / safe
    return alpha, float(beta[-1] * norms[col] / np.sqrt(n)), rel


@dataclass(frozen=True)
class _Factor:
    """A layer's activations, reduced: ``r`` has the Gram matrix of the column-normalised
    activations ``[h / ||h||, 1 / sqrt(n)]`` (last column: the constant), so regressions
    on its columns are regressions on the data; ``norms`` are the column norms ||h||."""

    r: np.ndarray
    norms: np.ndarray
    n: int

    @staticmethod
    def of(h: np.ndarray) -> _Factor:
        norms = np.linalg.norm(h, axis=0)
        n = h.shape[0]
        scaled = np.hstack([h / np.where(norms > 0, norms, 1.0), np.full((n, 1), 1 / np.sqrt(n))])
        return _Factor(np.linalg.qr(scaled, mode="r"), norms, n)

    def restrict(self, cols: list[int]) -> _Factor:
        return _Factor(self.r[:, cols + [self.r.shape[1] - 1]], self.norms[cols], self.n)


def _eliminate_layer(ed: Editable, k: int, f: _Factor, tol: float) -> tuple[list[dict[str, Any]], _Factor]:
    """Greedily remove units of layer ``k`` whose activations (factored in ``f``) are
    combinations of the others within ``tol``; returns what was removed and the factor
    of the units that stay."""
    removed: list[dict[str, Any]] = []
    r, norms = f.r, f.norms
    gram = r.T @ r
    alive = list(range(norms.size))  # columns of r still in the layer, in layer order
    refused: set[int] = set()  # exact residual above tol; removing others only raises it
    while len(alive) > 1:
        screen = np.where(norms[alive] > 0, _screen(gram, alive), 0.0)
        order = [int(i) for i in np.argsort(screen, kind="stable")
                 if screen[i] <= tol + _SCREEN_SLACK and alive[i] not in refused][:_CANDIDATES]
        best: tuple[float, int, np.ndarray, float] | None = None
        for pos in order:
            col = alive[pos]
            alpha, offset, rel = _fit(r, col, [c for c in alive if c != col], norms, f.n)
            if rel > tol:
                refused.add(col)
            elif best is None or rel < best[0]:
                best = (rel, pos, alpha, offset)
        if best is None:
            break
        rel, pos, alpha, offset = best
        ed.redistribute(k, pos, alpha, np.array([i for i in range(len(alive)) if i != pos]), offset)
        origin = ed.layer(k).origin[pos]
        ed.delete_units(k, [pos])
        alive.pop(pos)
        removed.append({"layer": ed.layer(k).name, "unit": int(origin), "residual": rel})
    return removed, f.restrict(alive)


def eliminate_dependent(network: Network, x: np.ndarray, tol: float,
                        cache: dict[int, _Factor] | None = None) -> tuple[Network, list[dict[str, Any]]]:
    """One greedy pass at tolerance ``tol`` over every hidden layer, front to back (each
    layer's activations are recomputed on the network as changed so far).

    ``cache`` (optional, updated in place) keeps each layer's factored activations for
    the next pass on the returned network: a layer's activations change only when a
    layer before it changed, so they are reused when nothing upstream was removed."""
    ed = Editable(network)
    removed: list[dict[str, Any]] = []
    upstream = False
    for k in range(1, len(network.layers)):
        f = cache.get(k) if cache is not None and not upstream else None
        if f is None or f.norms.size != ed.layer(k).width:
            f = _Factor.of(_activations(ed.network(), x, k))
        gone, kept = _eliminate_layer(ed, k, f, tol)
        removed += gone
        upstream = upstream or bool(gone)
        if cache is not None:
            cache[k] = kept
    return ed.network(), removed


def _score(metric: str, original: Network, net: Network, x: np.ndarray, y: np.ndarray | None) -> float:
    pred = np.argmax(net(x), axis=1)
    if metric == "accuracy":
        return float(np.mean(pred == y))
    return float(np.mean(pred == np.argmax(original(x), axis=1)))


def dependence_elimination(network: Network, x: Any, y: Any = None,
                           options: DependenceOptions = DependenceOptions(), *, x_eval: Any = None,
                           y_eval: Any = None, split: DataSplit | None = None) -> tuple[Network, ApproxReport]:
    """Remove units that are (nearly) linear combinations of others in their layer, with
    an annealed tolerance and an accuracy/agreement budget; the new network and its report."""
    start = time.perf_counter()
    if len(network.layers) < 2:
        raise LeoInputError("dependence elimination needs at least one hidden layer")
    if split is None:
        split = split_data(network, x, y, x_eval, y_eval, options.holdout, options.seed)
    metric = options.metric
    if metric == "auto":
        metric = "accuracy" if split.y_fit is not None else "agreement"
    if metric == "accuracy" and split.y_fit is None:
        raise LeoInputError("dependence metric 'accuracy' needs labels: give y, or use metric 'agreement'")
    inner = split_data(network, split.x_fit, split.y_fit, holdout=options.validation, seed=options.seed + 1)
    x_tr, y_tr, x_val, y_val = inner.x_fit, inner.y_fit, inner.x_eval, inner.y_eval
    base = _score(metric, network, network, x_val, y_val)
    net, tol, rounds = network, options.tol_start, []
    cache: dict[int, _Factor] = {}
    origins = [list(range(w)) for w in network.hidden]  # original index of every live unit
    while True:
        cand, removed = eliminate_dependent(net, x_tr, tol, cache)
        tuned = False
        if removed and options.finetune is not None and options.finetune.steps > 0:
            cand = finetune(cand, x_tr, y_tr, options.finetune, teacher=network)
            cache.clear()  # every weight moved: all activations change
            tuned = True
        score = _score(metric, network, cand, x_val, y_val)
        accepted = base - score <= options.budget
        for entry in removed:  # name units by their index in the original network
            entry["unit"] = origins[entry["layer"] - 1][entry["unit"]]
        if accepted:
            for k in range(len(origins)):
                gone = {e["unit"] for e in removed if e["layer"] == k + 1}
                origins[k] = [o for o in origins[k] if o not in gone]
        rounds.append({"tolerance": tol, "removed": len(removed), "finetuned": tuned,
                       "hidden": list(cand.hidden), "validation_" + metric: score, "accepted": accepted,
                       "units": removed})
        if not accepted:
            break
        net = cand
        if tol >= options.tol_max:
            break
        tol = min(tol * options.tol_factor, options.tol_max)
    notes = ("approximate: exact only where the removed units' combinations are exact on the data",)
    params = asdict(options)
    details = {"metric": metric, "validation_base": base, "rounds": rounds,
               "removed_units": sum(r["removed"] for r in rounds if r["accepted"]),
               "kept_units": {k + 1: o for k, o in enumerate(origins)},
               "fit_samples": int(x_tr.shape[0]), "validation_samples": int(x_val.shape[0])}
    report = make_report("dependence", params, network, net, split, time.perf_counter() - start, details, notes)
    return net, report


def dependence_training(network: Network, x: Any, y: Any, train: FinetuneOptions, epochs: int,
                        options: DependenceOptions = DependenceOptions(), *, x_eval: Any = None,
                        y_eval: Any = None, split: DataSplit | None = None) -> tuple[Network, ApproxReport]:
    """Train ``network`` for ``epochs`` epochs of ``train.steps`` steps each, eliminating
    dependent units after every epoch at an annealed tolerance (see the module text).
    The report compares the final network with the network as it was given."""
    start = time.perf_counter()
    if epochs < 1:
        raise LeoInputError(f"dependence training: epochs={epochs} must be at least 1")
    if split is None:
        split = split_data(network, x, y, x_eval, y_eval, options.holdout, options.seed)
    if split.y_fit is None:
        raise LeoInputError("dependence training needs labels")
    metric = "accuracy"
    inner = split_data(network, split.x_fit, split.y_fit, holdout=options.validation, seed=options.seed + 1)
    net, tol, epochs_info = network, options.tol_start, []
    for e in range(epochs):
        net = finetune(net, inner.x_fit, inner.y_fit, FinetuneOptions(**{**asdict(train), "seed": train.seed + e}))
        before = _score(metric, net, net, inner.x_eval, inner.y_eval)
        cand, removed = eliminate_dependent(net, inner.x_fit, tol)
        after = _score(metric, net, cand, inner.x_eval, inner.y_eval)
        accepted = bool(removed) and before - after <= options.budget
        if accepted:
            net = cand
        epochs_info.append({"epoch": e + 1, "tolerance": tol, "removed": len(removed), "accepted": accepted,
                            "validation_before": before, "validation_after": after, "hidden": list(net.hidden)})
        tol = min(tol * options.tol_factor, options.tol_max)
    details = {"metric": metric, "epochs": epochs_info, "steps_per_epoch": train.steps,
               "removed_units": int(sum(network.hidden) - sum(net.hidden))}
    notes = ("approximate: units are eliminated during training; the result is a retrained network",)
    params = {**asdict(options), "train": asdict(train), "epochs": epochs}
    report = make_report("dependence-training", params, network, net, split, time.perf_counter() - start,
                         details, notes)
    return net, report
