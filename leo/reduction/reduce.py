"""Turn a stability report into a smaller network that computes the same function
on the box (LEO, Serra et al. 2020).

Per ReLU layer, in order: delete stably inactive units; among stably active units
keep a subset with linearly independent weight rows and fold every other active unit
into the layers that read it; when all remaining units are active, the layer is
linear: multiply it into the layers that read it. The output layer keeps its units.

With ``bypass_active`` (REDNet's flat form, for verifiers) every stably active unit
goes, not only the dependent ones: a unit that is always active is linear, so the
layers reading it read its affine map instead, from the layer's own sources (skip
connections). Only unstable units keep their ReLUs. On a conv net this keeps weights
sparse, where folding a dependent unit into a basis of others makes them dense (the
MNIST CNN of benchmarks/cnn.py at eps 0.03: 367 hidden units and 32k nonzero weights
bypassed, 1501 units and 427k nonzeros folded, 2416 and 118k before).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from leo.core.network import Layer, Network
from leo.stability.report import ACTIVE, INACTIVE, StabilityReport

#: Relative tolerance for rank decisions and for accepting a linear combination.
RANK_TOL = 1e-10


@dataclass
class _Layer:
    weights: dict[int, np.ndarray]
    bias: np.ndarray
    relu: bool
    status: list[str]
    origin: list[int]  # unit index in the input network


@dataclass(frozen=True)
class Fold:
    """One fold, recorded so that a certificate can be re-checked: in original layer
    ``layer``, the weight rows of ``units`` equal ``alpha.T`` times the rows of ``basis``
    (original unit indices) up to ``residual`` (max |B^T alpha - D^T|), over the layer's
    weights at the time of the fold (after inactive units left and earlier layers merged)."""

    layer: int
    units: tuple[int, ...]
    basis: tuple[int, ...]
    alpha: tuple[tuple[float, ...], ...]  # (|basis|, |units|)
    residual: float


@dataclass(frozen=True)
class Reduction:
    """The reduced network and what happened to every unit."""

    network: Network
    removed_inactive: tuple[tuple[int, ...], ...]  # per original layer
    folded_active: tuple[tuple[int, ...], ...]
    merged_layers: tuple[int, ...]  # original 1-based layer indices multiplied into the next
    max_fold_residual: float = 0.0
    kept: tuple[tuple[int, ...], ...] = field(default=())
    folds: tuple[Fold, ...] = field(default=())
    bypassed_active: tuple[tuple[int, ...], ...] = field(default=())  # per original layer
    #: Per original layer (index k-1 for 1-based layer k): the 0-based output channels of
    #: that conv layer deleted whole by ``--form structured``. Every unit of each such
    #: channel is proven stably inactive on the box (so it is zero there); the channel's
    #: units are listed in ``removed_inactive`` too, and the layers reading it lost that
    #: input channel. Empty for dense layers and for the other forms.
    dead_channels: tuple[tuple[int, ...], ...] = field(default=())
    #: Original 1-based layers whose ReLU was dropped, every unit left being stably
    #: active (structured form: kept as a linear layer when merging would not be smaller).
    linear_layers: tuple[int, ...] = field(default=())
    form: str = "leo"  # leo.api.FORMS: how the reduction was made


def _readers(layers: list[_Layer], source: int) -> list[_Layer]:
    return [ly for ly in layers if source in ly.weights]


def _delete_units(layers: list[_Layer], k: int, drop: np.ndarray) -> None:
    ly = layers[k]
    keep = np.setdiff1d(np.arange(ly.bias.size), drop)
    ly.weights = {s: w[keep] for s, w in ly.weights.items()}
    ly.bias = ly.bias[keep]
    ly.status = [ly.status[i] for i in keep]
    ly.origin = [ly.origin[i] for i in keep]
    for reader in _readers(layers, k + 1):
        reader.weights[k + 1] = reader.weights[k + 1][:, keep]


def _fold_dependent(layers: list[_Layer], k: int, layer_id: int) -> Fold | None:
    """Fold active units whose weight rows are combinations of other active rows."""
    ly = layers[k]
    active = np.array([i for i, s in enumerate(ly.status) if s == ACTIVE], dtype=int)
    if active.size < 2:
        return None
    rows = np.hstack([ly.weights[s][active] for s in sorted(ly.weights)])  # (|A|, n_in)
    scale = max(float(np.abs(rows).max()), 1e-300)
    import scipy.linalg  # here, not at the top: `import leo` (every command's start-up) pays for it otherwise

    _, r, piv = scipy.linalg.qr(rows.T, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int((diag > RANK_TOL * scale * max(rows.shape)).sum())
    if rank == active.size:
        return None
    basis = np.sort(active[piv[:rank]])
    dependent = np.setdiff1d(active, basis)
    b_rows = np.hstack([ly.weights[s][basis] for s in sorted(ly.weights)])
    d_rows = np.hstack([ly.weights[s][dependent] for s in sorted(ly.weights)])
    alpha, *_ = np.linalg.lstsq(b_rows.T, d_rows.T, rcond=None)  # (|S|, |D|)
    residual = float(np.abs(b_rows.T @ alpha - d_rows.T).max())
    if residual > RANK_TOL * scale * max(rows.shape) * 10:
        return None  # not an exact combination after all: keep the units
    offset = ly.bias[dependent] - alpha.T @ ly.bias[basis]  # (|D|,)
    for reader in _readers(layers, k + 1):
        w = reader.weights[k + 1].copy()
        wd = w[:, dependent]
        w[:, basis] += wd @ alpha.T
        reader.bias = reader.bias + wd @ offset
        reader.weights[k + 1] = w
    fold = Fold(layer_id, tuple(ly.origin[i] for i in dependent), tuple(ly.origin[i] for i in basis),
                tuple(tuple(float(a) for a in row) for row in alpha), residual)
    _delete_units(layers, k, dependent)
    return fold


def _bypass(layers: list[_Layer], k: int) -> list[int]:
    """Route the stably active units of layer ``k`` past their ReLU: each reader gets
    ``W[:, A] (W_k[A] h + b_k[A])`` from layer k's sources. Returns their original indices."""
    ly = layers[k]
    active = np.array([i for i, s in enumerate(ly.status) if s == ACTIVE], dtype=int)
    if active.size == 0:
        return []
    for reader in _readers(layers, k + 1):
        wa = reader.weights[k + 1][:, active]
        reader.bias = reader.bias + wa @ ly.bias[active]
        for s, ws in ly.weights.items():
            contrib = wa @ ws[active]
            reader.weights[s] = reader.weights[s] + contrib if s in reader.weights else contrib
    units = [ly.origin[i] for i in active]
    _delete_units(layers, k, active)
    return units


def _merge_linear(layers: list[_Layer], k: int) -> None:
    """Multiply linear layer ``k`` into every layer that reads it, then drop it."""
    ly = layers[k]
    for reader in _readers(layers, k + 1):
        w = reader.weights.pop(k + 1)
        reader.bias = reader.bias + w @ ly.bias
        for s, ws in ly.weights.items():
            contrib = w @ ws
            reader.weights[s] = reader.weights[s] + contrib if s in reader.weights else contrib
    del layers[k]
    for later in layers[k:]:
        later.weights = {(s - 1 if s > k + 1 else s): w for s, w in later.weights.items()}


def _final_relu(out: _Layer) -> None:
    """A final ReLU: its inactive outputs are constant zero; when all are active it goes."""
    if not out.relu:
        return
    for i, s in enumerate(out.status):
        if s == INACTIVE:
            for w in out.weights.values():
                w[i] = 0.0
            out.bias[i] = 0.0
    if all(s == ACTIVE for s in out.status):
        out.relu = False


def reduce(network: Network, report: StabilityReport, bypass_active: bool = False) -> Reduction:
    """The smaller network; ``report`` must come from analysing ``network``. With
    ``bypass_active`` every stably active unit is removed (see the module's docstring)."""
    layers: list[_Layer] = []
    for i, layer in enumerate(network.layers, start=1):
        lr = report.layer(i) if layer.relu else None
        status = [p.verdict for p in lr.proofs] if lr else [ACTIVE if not layer.relu else "unstable"] * layer.width
        if lr is None and layer.relu:
            raise ValueError(f"the report has no entry for ReLU layer {i}")
        layers.append(_Layer({s: w.copy() for s, w in layer.weights.items()}, layer.bias.copy(),
                             layer.relu, status, list(range(layer.width))))
    n_orig = len(layers)
    ids = list(range(1, n_orig + 1))  # original 1-based index of each live layer
    removed = {i: [] for i in ids}
    folded = {i: [] for i in ids}
    bypassed: dict[int, list[int]] = {i: [] for i in ids}
    merged: list[int] = []
    folds: list[Fold] = []
    worst = 0.0
    k = 0
    while k < len(layers) - 1:
        ly = layers[k]
        if ly.relu:
            inactive = np.array([i for i, s in enumerate(ly.status) if s == INACTIVE], dtype=int)
            removed[ids[k]] += [ly.origin[i] for i in inactive]
            _delete_units(layers, k, inactive)
            if bypass_active:
                bypassed[ids[k]] += _bypass(layers, k)
            fold = None if bypass_active else _fold_dependent(layers, k, ids[k])
            if fold is not None:
                folds.append(fold)
                folded[ids[k]] += fold.units
                worst = max(worst, fold.residual)
        if all(s == ACTIVE for s in ly.status) or not ly.relu:
            merged.append(ids[k])
            _merge_linear(layers, k)
            del ids[k]
            continue
        k += 1
    _final_relu(layers[-1])
    net = Network(network.input_dim, tuple(Layer(ly.weights, ly.bias, ly.relu) for ly in layers),
                  dict(network.metadata))
    return Reduction(
        network=net,
        removed_inactive=tuple(tuple(sorted(removed[i])) for i in range(1, n_orig + 1)),
        folded_active=tuple(tuple(sorted(folded[i])) for i in range(1, n_orig + 1)),
        merged_layers=tuple(merged),
        max_fold_residual=worst,
        kept=tuple(tuple(ly.origin) for ly in layers),
        folds=tuple(folds),
        bypassed_active=tuple(tuple(sorted(bypassed[i])) for i in range(1, n_orig + 1)),
        form="flat" if bypass_active else "leo",
    )
