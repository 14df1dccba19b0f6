"""What an approximate compression did, measured against the network it started from.

Every approximate method returns an :class:`ApproxReport`. Its ``lossless`` field is
always False: these methods are judged on data, never proven. Where a method can say
more (linearity fusion of units the exact analysis proved active is exact on the
box), it says so in ``exact_on_box`` and ``notes`` — still no certificate.

Also here: checking user data against a network, and the deterministic split into the
part a method fits on and the held-out part the report is measured on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leo.errors import LeoInputError
from leo.core.network import Network


# -- data --------------------------------------------------------------------------------
def check_inputs(network: Network, x: Any, what: str = "data") -> np.ndarray:
    """``x`` as a float64 (n, input_dim) array, or a LeoInputError saying what is wrong."""
    if x is None:
        raise LeoInputError(f"{what}: no samples given; approximate methods need data "
                            "(e.g. --data mnist, or a .npz file with an array 'x')")
    arr = np.asarray(x)
    if arr.ndim == 1 and network.input_dim > 1 and arr.size == network.input_dim:
        arr = arr[None, :]
    if arr.ndim < 2:
        raise LeoInputError(f"{what}: expected one row per sample (n x {network.input_dim}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise LeoInputError(f"{what} is empty: give at least one sample (n x {network.input_dim})")
    if not np.issubdtype(arr.dtype, np.number):
        raise LeoInputError(f"{what} holds {arr.dtype}, expected numbers")
    arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
    if arr.shape[1] != network.input_dim:
        raise LeoInputError(f"{what} has {arr.shape[1]} values per sample but the network takes "
                            f"{network.input_dim} inputs: pass data of the network's input size")
    if not np.isfinite(arr).all():
        raise LeoInputError(f"{what} contains NaN or infinite values")
    return arr


def check_labels(network: Network, x: np.ndarray, y: Any, what: str = "labels") -> np.ndarray | None:
    """Integer class labels matching ``x`` row for row, or None when none are given."""
    if y is None:
        return None
    arr = np.asarray(y).reshape(-1)
    if arr.shape[0] != x.shape[0]:
        raise LeoInputError(f"{what}: {arr.shape[0]} labels for {x.shape[0]} samples; give one label per sample")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise LeoInputError(f"{what} must be integer class indices, got {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= network.output_dim):
        raise LeoInputError(f"{what} must lie in 0 .. {network.output_dim - 1} (the network has "
                            f"{network.output_dim} outputs), found {arr.min()} .. {arr.max()}")
    return arr


@dataclass(frozen=True)
class DataSplit:
    """Samples a method fits on, and held-out samples its report is measured on."""

    x_fit: np.ndarray
    y_fit: np.ndarray | None
    x_eval: np.ndarray
    y_eval: np.ndarray | None


def split_data(network: Network, x: Any, y: Any = None, x_eval: Any = None, y_eval: Any = None,
               holdout: float = 0.2, seed: int = 0) -> DataSplit:
    """Check the data; when no held-out set is given, hold out ``holdout`` of ``x`` (a
    seeded random subset, at least one sample, and at least one left to fit on)."""
    xf = check_inputs(network, x)
    yf = check_labels(network, xf, y)
    if x_eval is not None:
        xe = check_inputs(network, x_eval, "held-out data")
        ye = check_labels(network, xe, y_eval, "held-out labels")
        return DataSplit(xf, yf, xe, ye)
    if y_eval is not None:
        raise LeoInputError("held-out labels given without held-out data")
    if not 0.0 < holdout < 1.0:
        raise LeoInputError(f"holdout={holdout}: the held-out share must lie strictly between 0 and 1")
    n = xf.shape[0]
    if n < 2:
        raise LeoInputError(f"{n} sample: need at least 2 to fit on some and hold out others, "
                            "or pass held-out data explicitly")
    k = min(n - 1, max(1, int(round(holdout * n))))
    order = np.random.default_rng(seed).permutation(n)
    held, fit = np.sort(order[:k]), np.sort(order[k:])
    return DataSplit(xf[fit], None if yf is None else yf[fit], xf[held], None if yf is None else yf[held])


# -- report ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """How a compressed network ``g`` compares with the network ``f`` it came from."""

    agreement: float  # share of samples where argmax f == argmax g
    max_abs_diff: float  # max |f - g| over samples and outputs
    accuracy_before: float | None
    accuracy_after: float | None
    samples: int


def evaluate(before: Network, after: Network, x: np.ndarray, y: np.ndarray | None = None) -> Evaluation:
    """Agreement, max |f - g| and (with labels) accuracies on ``x``."""
    f, g = before(x), after(x)
    pf, pg = np.argmax(f, axis=1), np.argmax(g, axis=1)
    acc_b = acc_a = None
    if y is not None:
        acc_b, acc_a = float(np.mean(pf == y)), float(np.mean(pg == y))
    return Evaluation(float(np.mean(pf == pg)), float(np.max(np.abs(f - g))), acc_b, acc_a, int(x.shape[0]))


def hidden_units(network: Network) -> int:
    return int(sum(network.hidden))


@dataclass(frozen=True)
class ApproxReport:
    """One approximate compression step. ``lossless`` is always False."""

    method: str
    parameters: dict[str, Any]
    hidden_before: tuple[int, ...]
    hidden_after: tuple[int, ...]
    params_before: int
    params_after: int
    agreement: float
    max_abs_diff: float
    accuracy_before: float | None
    accuracy_after: float | None
    eval_samples: int
    seconds: float = 0.0
    exact_on_box: bool = False  # every change is exact on the analysed box (not a certificate)
    details: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def lossless(self) -> bool:
        """Never: an approximate method is measured on data, not proven."""
        return False

    @property
    def units_before(self) -> int:
        return int(sum(self.hidden_before))

    @property
    def units_after(self) -> int:
        return int(sum(self.hidden_after))

    @property
    def size_ratio(self) -> float:
        """Parameters after / before."""
        return self.params_after / self.params_before if self.params_before else math.nan

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None, nd: int = 6) -> float | None:
            return None if v is None else round(float(v), nd)

        return {
            "method": self.method,
            "lossless": self.lossless,
            "certified": False,
            "exact_on_box": self.exact_on_box,
            "parameters": _plain(self.parameters),
            "hidden_units": {"before": self.units_before, "after": self.units_after,
                             "widths_before": list(self.hidden_before), "widths_after": list(self.hidden_after)},
            "parameters_count": {"before": self.params_before, "after": self.params_after,
                                 "ratio": r(self.size_ratio)},
            "held_out": {"samples": self.eval_samples, "agreement": r(self.agreement),
                         "max_abs_diff": float(self.max_abs_diff),
                         "accuracy_before": r(self.accuracy_before), "accuracy_after": r(self.accuracy_after)},
            "seconds": round(self.seconds, 4),
            "details": _plain(self.details),
            "notes": list(self.notes),
        }


def make_report(method: str, parameters: dict[str, Any], before: Network, after: Network, split: DataSplit,
                seconds: float, details: dict[str, Any] | None = None, notes: tuple[str, ...] = (),
                exact_on_box: bool = False) -> ApproxReport:
    ev = evaluate(before, after, split.x_eval, split.y_eval)
    return ApproxReport(
        method=method, parameters=parameters,
        hidden_before=before.hidden, hidden_after=after.hidden,
        params_before=before.num_parameters, params_after=after.num_parameters,
        agreement=ev.agreement, max_abs_diff=ev.max_abs_diff,
        accuracy_before=ev.accuracy_before, accuracy_after=ev.accuracy_after,
        eval_samples=ev.samples, seconds=seconds, exact_on_box=exact_on_box,
        details=details or {}, notes=tuple(notes),
    )


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays to Python, tuples to lists, keys to str."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
