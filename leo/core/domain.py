"""The input domain: an axis-aligned box."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leo.errors import LeoInputError


@dataclass(frozen=True)
class Box:
    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lo = np.array(self.lower, dtype=np.float64).ravel()
        hi = np.array(self.upper, dtype=np.float64).ravel()
        if lo.shape != hi.shape:
            raise LeoInputError(f"lower bound has {lo.size} entries but upper bound has {hi.size}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise LeoInputError("the input box must have finite bounds")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            raise LeoInputError(f"lower > upper at input {i}: {lo[i]} > {hi[i]}")
        lo.setflags(write=False)
        hi.setflags(write=False)
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)

    @property
    def dim(self) -> int:
        return int(self.lower.size)

    def contains(self, x: np.ndarray, tol: float = 0.0) -> np.ndarray:
        x = np.atleast_2d(x)
        return np.all((x >= self.lower - tol) & (x <= self.upper + tol), axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.lower + rng.random((n, self.dim)) * (self.upper - self.lower)

    def corners(self, limit: int) -> np.ndarray | None:
        """All 2^d corners when there are at most ``limit`` of them, else None."""
        free = np.flatnonzero(self.upper > self.lower)
        if 2 ** min(free.size, 62) > limit:
            return None
        bits = (np.arange(2**free.size)[:, None] >> np.arange(free.size)) & 1
        pts = np.repeat(self.lower[None, :], bits.shape[0], axis=0)
        pts[:, free] = np.where(bits == 1, self.upper[free], self.lower[free])
        return pts

    def to_json(self) -> dict[str, object]:
        if np.all(self.lower == self.lower[0]) and np.all(self.upper == self.upper[0]):
            return {"dim": self.dim, "lower": float(self.lower[0]), "upper": float(self.upper[0])}
        return {"dim": self.dim, "lower": self.lower.tolist(), "upper": self.upper.tolist()}


def _bound(spec: str | float | np.ndarray, dim: int, name: str) -> np.ndarray:
    if not isinstance(spec, (str, np.ndarray)) and hasattr(spec, "__array__"):  # a torch tensor, say
        spec = np.asarray(spec)
    if isinstance(spec, np.ndarray):
        values = spec.astype(np.float64).ravel()
    elif isinstance(spec, (int, float)):
        values = np.array([float(spec)])
    else:
        text = str(spec)
        if text.endswith(".npy"):
            path = Path(text)
            if not path.is_file():
                raise LeoInputError(f"--{name}: no such file {text}")
            try:
                values = np.load(path, allow_pickle=False).astype(np.float64).ravel()
            except (ValueError, OSError) as exc:
                raise LeoInputError(f"--{name}: cannot read {text} as a .npy array ({exc})") from None
        else:
            try:
                values = np.array([float(text)])
            except ValueError:
                raise LeoInputError(f"--{name} must be a number or a .npy file, got {text!r}") from None
    if values.size == 1:
        return np.full(dim, values[0])
    if values.size != dim:
        raise LeoInputError(f"--{name} has {values.size} entries but the network has {dim} inputs")
    return values


def make_box(lower: str | float | np.ndarray, upper: str | float | np.ndarray, dim: int) -> Box:
    """A box from scalars (broadcast to ``dim``), arrays of any shape holding ``dim`` values
    (one input shaped as the model takes it, e.g. (1, 5, 5), or with a leading batch
    dimension of 1), tensors, or paths to ``.npy`` arrays."""
    return Box(_bound(lower, dim, "lower"), _bound(upper, dim, "upper"))


def _center(spec: str | np.ndarray, dim: int) -> np.ndarray:
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if path.suffix.lower() != ".npy":
            raise LeoInputError(f"--center must be a .npy file, got {str(spec)!r}")
        if not path.is_file():
            raise LeoInputError(f"--center: no such file {spec}")
        try:
            spec = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise LeoInputError(f"--center: cannot read {path} as a .npy array ({exc})") from None
    values = np.asarray(spec)
    if values.dtype.kind not in "fiub":
        raise LeoInputError(f"--center holds {values.dtype} values, not numbers")
    values = values.astype(np.float64).ravel()
    if values.size != dim:
        raise LeoInputError(f"--center has {values.size} values (shape {np.shape(spec)}) "
                            f"but the network has {dim} inputs")
    if not np.isfinite(values).all():
        raise LeoInputError("--center holds NaN or infinite values")
    return values


def ball(center: str | np.ndarray, eps: float, dim: int, domain: Box | None = None) -> Box:
    """The L-inf ball of radius ``eps`` around ``center`` (a .npy path or an array holding
    ``dim`` values in any shape), clipped to ``domain`` when given (e.g. pixels in [0, 1]).

    Local boxes are where most units are stable; the clip keeps the box inside the
    inputs the network is meant for (a center outside ``domain`` is refused, not moved)."""
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise LeoInputError(f"--eps must be a number, got {eps!r}") from None
    if not np.isfinite(eps) or eps < 0:
        raise LeoInputError(f"--eps must be a finite number >= 0, got {eps}")
    x = _center(center, dim)
    lo, hi = x - eps, x + eps
    if domain is not None:
        if domain.dim != dim:
            raise LeoInputError(f"the domain has {domain.dim} values but the network has {dim} inputs")
        outside = np.flatnonzero((x < domain.lower) | (x > domain.upper))
        if outside.size:
            i = int(outside[0])
            raise LeoInputError(f"--center value {x[i]} at input {i} lies outside the domain "
                                f"[{domain.lower[i]}, {domain.upper[i]}]")
        lo, hi = np.maximum(lo, domain.lower), np.minimum(hi, domain.upper)
    return Box(lo, hi)


def sample_points(box: Box, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random points, plus all corners when there are at most 4096 of them."""
    parts = [box.sample(n, rng), ((box.lower + box.upper) / 2)[None]]
    corners = box.corners(limit=4096)
    if corners is not None:
        parts.append(corners)
    return np.vstack(parts)
