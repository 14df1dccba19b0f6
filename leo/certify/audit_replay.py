"""Replaying a certificate's reduction with the audit's own interpreter, then comparing
the result with the compressed file. Nothing here comes from ``leo.reduction``: the step
log is read from JSON into this module's own ``Logged`` steps and applied to this
module's own working copy, each step checked against the stable claims first.

What each step needs (``Refuted`` naming the first that fails):

- ``delete`` / ``drop-channels``: a ReLU layer's units claimed stably inactive (a dead
  channel: every unit of it, and the channel counted as the original layer has them);
- ``fold``: units and basis claimed stably active, the coefficients reproducing the rows;
- ``bypass``: units claimed stably active; ``merge`` / ``drop-relu``: a layer with no ReLU
  or every unit left claimed stably active; none of these on the output layer;
- ``final-relu``: the output layer only; zeroed outputs claimed stably inactive, the ReLU
  dropped only when every output is claimed stably active.

Tolerances (the audit's own, not read from the certificate): a fold's recomputed residual
max|B^T alpha - D^T| must be within the recorded one (plus float64 reordering, ``EPS64 *
scale * columns``), which itself must be at most ``FOLD_CEILING * scale * max(rows,
columns)`` (``scale`` = largest |weight| of the rows); replayed weights w must equal the
file's within ``2**-23 * |w| + 1e-12 * max|W|`` (W: that layer's replayed weights and
bias) when every weight in the file is a float32 value, else within ``1e-12 * (|w| + max|W|)``.

Schema 2 certificates recorded per-layer lists instead of a log: ``steps_from_lists``
turns them into the steps the reduction of that version applied, in its order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from leo.certify.audit_outcome import Refuted
from leo.core.network import Layer, Network
from leo.core.verdicts import Verdict
from leo.errors import LeoInputError

EPS64 = float(np.finfo(np.float64).eps)
FOLD_CEILING = 1e-9
FLOAT32_REL = 2.0**-23
FLOAT64_REL = 1e-12
ACTIVE, INACTIVE = Verdict.ACTIVE, Verdict.INACTIVE


# -- the log, read ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Logged:
    """One step of the certificate's log, as the audit reads it."""

    index: int  # position in the log, for messages
    op: str
    layer: int
    units: tuple[int, ...] = ()
    basis: tuple[int, ...] = ()
    alpha: tuple[tuple[float, ...], ...] = ()
    residual: float = 0.0
    channels: tuple[int, ...] = ()
    per_channel: int = 0
    dropped: bool = False


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


#: op -> the fields it reads from its JSON record
_FIELDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "delete": lambda r: {"units": _ints(r["units"])},
    "drop-channels": lambda r: {"channels": _ints(r["channels"]), "per_channel": int(r["units_per_channel"])},
    "fold": lambda r: {"units": _ints(r["units"]), "basis": _ints(r["basis"]), "residual": float(r["residual"]),
                       "alpha": tuple(tuple(float(a) for a in row) for row in r["alpha"])},
    "bypass": lambda r: {"units": _ints(r["units"])},
    "merge": lambda r: {},
    "drop-relu": lambda r: {},
    "final-relu": lambda r: {"units": _ints(r["zeroed"]), "dropped": bool(r["dropped"])},
}


def read_steps(records: list[dict[str, Any]]) -> list[Logged]:
    """The log's records as steps; an op this audit does not know is bad input."""
    steps = []
    for i, record in enumerate(records):
        op = record.get("op")
        if op not in _FIELDS:
            raise LeoInputError(f"reduction step {i}: unknown op {op!r}; this audit reads {', '.join(_FIELDS)}")
        steps.append(Logged(i, op, int(record["layer"]), **_FIELDS[op](record)))
    return steps


def steps_from_lists(reduction: dict[str, Any], net: Network) -> list[Logged]:
    """A schema 2 reduction (per-layer lists) as the steps its reduction applied, layer by
    layer: dead channels and other removals, bypasses, folds, then merge or drop-relu."""
    def per_layer(key: str, k: int) -> list[int]:
        lists = reduction.get(key, [])
        return [int(u) for u in lists[k - 1]] if k - 1 < len(lists) else []

    folds = list(reduction.get("folds", []))
    merged, linear = _ints(reduction.get("merged_layers", [])), _ints(reduction.get("linear_layers", []))
    last = max([len(net.layers)] + [len(reduction.get(key, [])) for key in
                                    ("removed_inactive", "bypassed_active", "dead_channels")] +
               [int(f["layer"]) for f in folds] + list(merged) + list(linear))
    steps: list[Logged] = []
    for k in range(1, last + 1):
        shape = net.layers[k - 1].shape if k <= len(net.layers) else None
        channels = per_layer("dead_channels", k)
        per = net.layers[k - 1].width // shape[0] if channels and shape and len(shape) >= 2 else 0
        if channels:
            steps.append(Logged(len(steps), "drop-channels", k, channels=tuple(channels), per_channel=per))
        in_channels = {c * per + j for c in channels for j in range(per)}
        rest = tuple(u for u in per_layer("removed_inactive", k) if u not in in_channels)
        steps += [Logged(len(steps), "delete", k, units=rest)] if rest else []
        bypassed = tuple(per_layer("bypassed_active", k))
        steps += [Logged(len(steps), "bypass", k, units=bypassed)] if bypassed else []
        steps += [Logged(len(steps), "fold", k, **_FIELDS["fold"](f)) for f in folds if int(f["layer"]) == k]
        if k in merged:
            steps.append(Logged(len(steps), "merge", k))
        elif k in linear:
            steps.append(Logged(len(steps), "drop-relu", k))
    return steps


# -- the working copy ------------------------------------------------------------------------

@dataclass
class _Live:
    weights: dict[int, np.ndarray]
    bias: np.ndarray
    relu: bool
    verdicts: list[str]
    origin: list[int]
    layer: int  # original 1-based index


@dataclass
class _State:
    net: Network
    layers: list[_Live]
    recorded_max: float  # the certificate's largest fold residual

    def position(self, step: Logged) -> int:
        """The 0-based position of the step's layer among the live layers."""
        for k, ly in enumerate(self.layers):
            if ly.layer == step.layer:
                return k
        raise Refuted(f"reduction: step {step.index} ({step.op}) names layer {step.layer}, which is not there "
                      "(no such layer, or merged before)")


def _readers(layers: list[_Live], k: int) -> list[_Live]:
    return [ly for ly in layers if k + 1 in ly.weights]


def _delete(layers: list[_Live], k: int, positions: list[int]) -> None:
    ly = layers[k]
    gone = set(positions)
    keep = [i for i in range(ly.bias.size) if i not in gone]
    ly.weights = {s: w[keep] for s, w in ly.weights.items()}
    ly.bias = ly.bias[keep]
    ly.verdicts = [ly.verdicts[i] for i in keep]
    ly.origin = [ly.origin[i] for i in keep]
    for reader in _readers(layers, k):
        reader.weights[k + 1] = reader.weights[k + 1][:, keep]


def _positions(ly: _Live, units: tuple[int, ...], what: str) -> list[int]:
    try:
        return [ly.origin.index(int(u)) for u in units]
    except ValueError:
        raise Refuted(f"reduction: layer {ly.layer}: {what} names a unit that is not there") from None


def _claimed(ly: _Live, units: tuple[int, ...], positions: list[int], verdict: Verdict, what: str) -> None:
    for u, p in zip(units, positions):
        if ly.verdicts[p] != verdict:
            raise Refuted(f"reduction: layer {ly.layer} unit {u} is {what}, but not claimed stably {verdict}")


def _all_active(ly: _Live, what: str) -> None:
    if ly.relu and any(v != ACTIVE for v in ly.verdicts):
        raise Refuted(f"reduction: layer {ly.layer} {what}, but not all its units are claimed stably active")


# -- the steps -------------------------------------------------------------------------------

def _do_delete(st: _State, k: int, step: Logged) -> None:
    ly = st.layers[k]
    if not ly.relu:
        raise Refuted(f"reduction: layer {ly.layer} has units removed as inactive, but no ReLU")
    pos = _positions(ly, step.units, "the removed list")
    _claimed(ly, step.units, pos, INACTIVE, "removed")
    _delete(st.layers, k, pos)


def _do_channels(st: _State, k: int, step: Logged) -> None:
    """Every unit of a channel deleted whole is claimed stably inactive (structured form)."""
    ly = st.layers[k]
    shape = st.net.layers[step.layer - 1].shape
    if shape is None or len(shape) < 2 or not ly.relu:
        raise Refuted(f"reduction: layer {step.layer} has dead channels listed, but no channels")
    if step.per_channel * shape[0] != st.net.layers[step.layer - 1].width:
        raise Refuted(f"reduction: layer {step.layer} has {shape[0]} channels of "
                      f"{st.net.layers[step.layer - 1].width // shape[0]} units, not {step.per_channel}")
    units = []
    for c in step.channels:
        if not 0 <= c < shape[0]:
            raise Refuted(f"reduction: layer {step.layer} has no channel {c}")
        for j in range(c * step.per_channel, (c + 1) * step.per_channel):
            if j not in ly.origin or ly.verdicts[ly.origin.index(j)] != INACTIVE:
                raise Refuted(f"reduction: layer {step.layer} channel {c} is deleted as dead, but its unit {j} "
                              "is not claimed stably inactive")
            units.append(j)
    _delete(st.layers, k, _positions(ly, tuple(units), "a dead channel"))


def _do_fold(st: _State, k: int, step: Logged) -> None:
    ly = st.layers[k]
    dep = _positions(ly, step.units, "a fold")
    basis = _positions(ly, step.basis, "a fold basis")
    _claimed(ly, step.units + step.basis, dep + basis, ACTIVE, "folded")
    alpha = np.asarray(step.alpha, dtype=np.float64).reshape(len(basis), len(dep))
    rows = np.hstack([ly.weights[s] for s in sorted(ly.weights)])
    b_rows, d_rows = rows[basis], rows[dep]
    scale = max(float(np.abs(rows[basis + dep]).max()), 1e-300)
    residual = float(np.abs(b_rows.T @ alpha - d_rows.T).max())
    tol = step.residual
    ceiling = FOLD_CEILING * scale * max(rows.shape)
    if not tol <= min(ceiling, st.recorded_max):
        raise Refuted(f"reduction: layer {ly.layer}: fold residual tolerance {tol:.3g} exceeds "
                      f"{min(ceiling, st.recorded_max):.3g} (the certificate's largest, or the audit's ceiling)")
    if residual > tol + EPS64 * scale * rows.shape[1]:
        raise Refuted(f"reduction: layer {ly.layer}: the fold coefficients do not reproduce units "
                      f"{list(step.units)}: residual {residual:.3g} > recorded {tol:.3g}")
    offset = ly.bias[dep] - alpha.T @ ly.bias[basis]
    for reader in _readers(st.layers, k):
        w = reader.weights[k + 1].copy()
        wd = w[:, dep]
        w[:, basis] += wd @ alpha.T
        reader.bias = reader.bias + wd @ offset
        reader.weights[k + 1] = w
    _delete(st.layers, k, dep)


def _do_bypass(st: _State, k: int, step: Logged) -> None:
    """Stably active units are linear: readers take their affine map from layer k's sources."""
    ly = st.layers[k]
    positions = _positions(ly, step.units, "the bypassed list")
    _claimed(ly, step.units, positions, ACTIVE, "bypassed")
    for reader in _readers(st.layers, k):
        wa = reader.weights[k + 1][:, positions]
        reader.bias = reader.bias + wa @ ly.bias[positions]
        for s, ws in ly.weights.items():
            reader.weights[s] = reader.weights[s] + wa @ ws[positions] if s in reader.weights else wa @ ws[positions]
    _delete(st.layers, k, positions)


def _do_merge(st: _State, k: int, step: Logged) -> None:
    layers = st.layers
    ly = layers[k]
    _all_active(ly, "is merged")
    for reader in _readers(layers, k):
        w = reader.weights.pop(k + 1)
        reader.bias = reader.bias + w @ ly.bias
        for s, ws in ly.weights.items():
            reader.weights[s] = reader.weights[s] + w @ ws if s in reader.weights else w @ ws
    del layers[k]
    for later in layers[k:]:
        later.weights = {(s - 1 if s > k + 1 else s): w for s, w in later.weights.items()}


def _do_drop_relu(st: _State, k: int, step: Logged) -> None:
    ly = st.layers[k]
    _all_active(ly, "loses its ReLU")
    ly.relu = False


def _do_final_relu(st: _State, k: int, step: Logged) -> None:
    """Outputs claimed inactive are zero on the box; all claimed active: the ReLU goes."""
    ly = st.layers[k]
    if not ly.relu:
        raise Refuted(f"reduction: step {step.index}: the output layer has no ReLU")
    positions = _positions(ly, step.units, "the zeroed outputs")
    _claimed(ly, step.units, positions, INACTIVE, "zeroed")
    for p in positions:
        for w in ly.weights.values():
            w[p] = 0.0
        ly.bias[p] = 0.0
    if step.dropped:
        _all_active(ly, "loses its ReLU")
        ly.relu = False


_DO: dict[str, Callable[[_State, int, Logged], None]] = {
    "delete": _do_delete, "drop-channels": _do_channels, "fold": _do_fold, "bypass": _do_bypass,
    "merge": _do_merge, "drop-relu": _do_drop_relu, "final-relu": _do_final_relu,
}


def _apply(st: _State, step: Logged) -> None:
    """One step, after the checks every step needs: its layer is live, and only
    ``final-relu`` touches the output layer (which keeps its units)."""
    output = len(st.net.layers)
    k = st.position(step)
    if (step.layer == output) != (step.op == "final-relu"):
        where = "the output layer" if step.layer == output else f"layer {step.layer}, not the output layer"
        raise Refuted(f"reduction: step {step.index} ({step.op}) cannot apply to {where}")
    _DO[step.op](st, k, step)


# -- the replay ------------------------------------------------------------------------------

def _final_relu_v2(net: Network, claims: dict[int, list[str]], index: int) -> list[Logged]:
    """Schema 2 recorded no step for the output layer's ReLU: its reduction zeroed the
    outputs claimed inactive and dropped the ReLU when all were claimed active."""
    k = len(net.layers)
    if not net.layers[-1].relu or k not in claims:
        return []
    zeroed = tuple(j for j, v in enumerate(claims[k]) if v == INACTIVE)
    return [Logged(index, "final-relu", k, units=zeroed, dropped=all(v == ACTIVE for v in claims[k]))]


def log_of(net: Network, claims: dict[int, list[str]], reduction: dict[str, Any]) -> list[Logged]:
    """The certificate's step log: schema 3's ``steps``, or schema 2's per-layer lists."""
    if "steps" in reduction:
        return read_steps(list(reduction["steps"]))
    steps = steps_from_lists(reduction, net)
    return steps + _final_relu_v2(net, claims, len(steps))


def replay_log(net: Network, claims: dict[int, list[str]], steps: list[Logged], recorded_max: float) -> Network:
    """The compressed network by the log's steps, each checked against the claims first."""
    layers = [_Live({s: w.copy() for s, w in ly.weights.items()}, ly.bias.copy(), ly.relu,
                    list(claims.get(i, [ACTIVE] * ly.width)), list(range(ly.width)), i)
              for i, ly in enumerate(net.layers, start=1)]
    state = _State(net, layers, recorded_max)
    for step in steps:
        _apply(state, step)
    return Network(net.input_dim, tuple(Layer(ly.weights, ly.bias, ly.relu) for ly in state.layers))


def replay(net: Network, claims: dict[int, list[str]], reduction: dict[str, Any], recorded_max: float) -> Network:
    """The compressed network by the certificate's reduction (either schema), each step
    checked against the claims, and a schema 3 summary checked against the log."""
    steps = log_of(net, claims, reduction)
    replayed = replay_log(net, claims, steps, recorded_max)
    if "steps" in reduction:
        check_summary(steps, reduction)
    return replayed


#: summary field -> the ops whose units (or channels) it lists, per layer
_PER_LAYER: dict[str, tuple[str, ...]] = {
    "removed_inactive": ("delete", "drop-channels"), "folded_active": ("fold",), "bypassed_active": ("bypass",),
    "dead_channels": ("drop-channels",),
}
#: summary field -> the op whose layers it lists
_LAYERS: dict[str, str] = {"merged_layers": "merge", "linear_layers": "drop-relu"}


def _listed(step: Logged, field: str) -> tuple[int, ...]:
    if field == "dead_channels":
        return step.channels
    if step.op == "drop-channels":
        return tuple(c * step.per_channel + j for c in step.channels for j in range(step.per_channel))
    return step.units


def check_summary(steps: list[Logged], reduction: dict[str, Any]) -> None:
    """The per-layer lists a schema 3 certificate gives readers must be what its log did."""
    for field, ops in _PER_LAYER.items():
        if field not in reduction:
            continue
        derived: dict[int, set[int]] = {}
        for step in steps:
            if step.op in ops:
                derived.setdefault(step.layer, set()).update(_listed(step, field))
        given = {k: {int(u) for u in units} for k, units in enumerate(reduction[field], start=1)}
        for k in sorted(set(derived) | set(given)):
            extra, missing = given.get(k, set()) - derived.get(k, set()), derived.get(k, set()) - given.get(k, set())
            if extra or missing:
                what = "channel" if field == "dead_channels" else "unit"
                items = ", ".join(f"{what} {u}" for u in sorted(extra or missing))
                raise Refuted(f"reduction: layer {k}: {field} {'lists' if extra else 'leaves out'} {items}, "
                              f"which the step log {'does not' if extra else 'does'}")
    for field, op in _LAYERS.items():
        if field in reduction:
            given, derived = sorted(int(k) for k in reduction[field]), sorted(s.layer for s in steps if s.op == op)
            if given != derived:
                raise Refuted(f"reduction: {field} is {given}, but the step log's are {derived}")


def _is_float32(net: Network) -> bool:
    arrays = [a for ly in net.layers for a in (ly.bias, *ly.weights.values())]
    return all(np.array_equal(a.astype(np.float32).astype(np.float64), a) for a in arrays)


def compare(replayed: Network, file_net: Network) -> str:
    """Require the file's network to equal the replayed one; returns the tolerance used."""
    rel = FLOAT32_REL if _is_float32(file_net) else FLOAT64_REL
    if file_net.input_dim != replayed.input_dim or len(file_net.layers) != len(replayed.layers):
        raise Refuted(f"replay: the compressed file has {len(file_net.layers)} layers over {file_net.input_dim} "
                      f"inputs; the certificate's reduction gives {len(replayed.layers)} over {replayed.input_dim}")
    for k, (a, b) in enumerate(zip(replayed.layers, file_net.layers), start=1):
        if a.relu != b.relu or set(a.weights) != set(b.weights) or a.width != b.width:
            raise Refuted(f"replay: layer {k} of the compressed file has {b.width} units reading {sorted(b.weights)}"
                          f"{' with' if b.relu else ' without'} ReLU; the reduction gives {a.width} reading "
                          f"{sorted(a.weights)}{' with' if a.relu else ' without'} ReLU")
        scale = max(max(float(np.abs(w).max(initial=0.0)) for w in a.weights.values()),
                    float(np.abs(a.bias).max(initial=0.0)))
        for name, x, y in [("bias", a.bias, b.bias)] + [(f"weight from {s}", a.weights[s], b.weights[s])
                                                          for s in sorted(a.weights)]:
            tol = rel * np.abs(x) + 1e-12 * scale
            diff = np.abs(x - y)
            if (diff > tol).any():
                i = np.unravel_index(int(np.argmax(diff - tol)), diff.shape)
                raise Refuted(f"replay: layer {k} {name} {tuple(int(t) for t in i)} is {y[i]:.9g} in the compressed "
                              f"file but {x[i]:.9g} by the certificate's reduction")
    return "float32" if rel == FLOAT32_REL else "float64"


__all__ = ["Logged", "check_summary", "compare", "log_of", "read_steps", "replay", "replay_log", "steps_from_lists"]
