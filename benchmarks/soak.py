"""Soak: leo's stable-unit claims and compressions against independent truth, on many
random ReLU networks built to have stable units and awkward numbers.

    python -m benchmarks.soak [--networks N] [--seed S] [--samples P] [--time-limit T]
                              [--json PATH] [--markdown PATH] [--replay FILE.npz]

Network ``i`` of seed ``S`` is drawn from ``numpy.random.default_rng([S, i])``: depth 1-4,
widths 1-12, inputs 1-6; weights mix sparse rows, exact zeros, tiny (1e-7) entries,
proportional rows, magnitudes from 1e-6 to 1e3, and biases that push units stably
on or off; boxes are thin, far from the origin, or degenerate (lower == upper) in some
coordinates. leo's production path (``leo.compress``: stability analysis, reduce, its own
sampled check) runs on each, with analysis settings drawn from ``OPTION_SETS``.

The truth shares no code with leo's bounds or formulations:

* dense sampling (``--samples`` points of the box, its corners when at most 64) through a
  plain numpy forward pass of the weights;
* for networks with at most ``EXACT_MAX_RELUS`` hidden ReLUs, the exact range of every
  hidden pre-activation: a depth-first enumeration of the activation patterns that are
  feasible on the box (layer by layer, one ``scipy.optimize.linprog`` feasibility LP per
  branch), with one LP for the minimum and one for the maximum of each unit of layer k
  per feasible pattern of layers < k (stopped after ``LP_CAP`` LPs: the network then
  counts as sampled only).

A claim is **false** when a point of the box (a sample or an LP optimum, clipped to the
box) has, by the forward pass, z < -tol for a unit claimed stably active or z > +tol for
one claimed stably inactive, where tol = ``CLAIM_RTOL`` * scale and scale = 1 + the
largest |b_j| + sum_i |W_ji h_i(x)| seen over the sampled points (the size of the terms
whose rounding the sign depends on). An LP bound beyond tol that no point confirms is
counted apart (``lp_unconfirmed``), and so is a point that violates a claim by more than
``ROUNDING_RTOL`` * scale (beyond float64 rounding of the sum) but less than tol
(``violations_within_tol``). The compressed network is compared with the original
on the samples and all LP optima: a **mismatch** is |f - g| > ``OUTPUT_RTOL`` * (1 + the
largest output term size) on some point, or an exception from ``leo.compress``.
**Incomplete**: units leo left unstable whose exact range (LP lower/upper bound) clears 0
by more than tol. A false claim or mismatch saves the network under ``--failures``
(replay it with ``--replay``).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CLAIM_RTOL = 1e-7
ROUNDING_RTOL = 1e-12  # a violation below this x scale is within float64 rounding of the sum
OUTPUT_RTOL = 1e-6
EXACT_MAX_RELUS = 14
LP_CAP = 6000
DEFAULT_SAMPLES = 20_000
DEFAULT_TIME_LIMIT = 2.0
FAILURES = Path("/work/notes/soak-failures")

#: Analysis settings, drawn per network: the default path, and paths that leave more
#: to the bounds and the MILPs (no witnesses), the network engine, no cuts / no search.
OPTION_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-witness": {"samples": 0, "local_search": False},
    "network": {"engine": "network"},
    "network-no-witness": {"engine": "network", "samples": 0, "local_search": False},
    "no-cuts-no-search": {"cuts": False, "neighbourhood": False, "samples": 0, "local_search": False},
    "lp-bounds": {"lp_bounds": True, "samples": 16},
}


# -- random cases -----------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """A plain MLP (ReLU after every layer but the last) and an input box."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    lower: np.ndarray
    upper: np.ndarray
    options: str
    traits: tuple[str, ...] = field(default=())

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(int(b.size) for b in self.biases[:-1])


def _layer_weights(rng: np.random.Generator, n_out: int, n_in: int, traits: list[str]) -> np.ndarray:
    """A weight matrix from a mixture of the awkward cases."""
    magnitude = 10.0 ** rng.uniform(-6, 3, size=(n_out, 1)) if rng.random() < 0.3 else 10.0 ** rng.uniform(-1, 1)
    w = rng.normal(size=(n_out, n_in)) * magnitude
    if rng.random() < 0.4:
        traits.append("sparse")
        w[rng.random(w.shape) < rng.uniform(0.3, 0.9)] = 0.0
    if rng.random() < 0.25:
        traits.append("zero-rows")
        w[rng.random(n_out) < 0.3] = 0.0
    if rng.random() < 0.25:
        traits.append("tiny")
        w[rng.random(w.shape) < 0.4] = 1e-7 * rng.choice([-1.0, 1.0])
    if rng.random() < 0.4 and n_out > 1:
        traits.append("parallel-rows")
        for j in range(1, n_out):
            if rng.random() < 0.5:
                w[j] = w[rng.integers(0, j)] * rng.choice([1.0, -1.0, 2.0, 0.5, 1e-3, 1e3]) * rng.uniform(0.5, 2)
    return w


def _layer_bias(rng: np.random.Generator, w: np.ndarray, h_mag: np.ndarray, z: np.ndarray,
                traits: list[str]) -> np.ndarray:
    """Biases: through a sampled point (the unit crosses 0 there), at random, or far enough
    below (above) the row's reach to make the unit stably off (on)."""
    reach = np.abs(w) @ h_mag
    draw = rng.random()
    if draw < 0.5:
        b = -z[rng.integers(0, z.shape[0], size=w.shape[0]), np.arange(w.shape[0])]
    else:
        b = rng.normal(size=w.shape[0]) * (0.5 * reach + 1e-3) if draw < 0.85 else rng.normal(size=w.shape[0])
    if rng.random() < 0.3:
        traits.append("pushed-biases")
        push = rng.random(w.shape[0])
        factor = rng.uniform(0.2, 3.0, size=w.shape[0])
        b = np.where(push < 0.25, -reach * factor, np.where(push < 0.45, reach * factor, b))
    if rng.random() < 0.15:
        traits.append("zero-bias")
        b[rng.random(b.size) < 0.5] = 0.0
    if rng.random() < 0.1:
        traits.append("large-negative-bias")
        b[rng.random(b.size) < 0.5] = -1e3
    return b


def _borderline(rng: np.random.Generator, b: np.ndarray, z: np.ndarray, traits: list[str]) -> np.ndarray:
    """Biases that put some units' sampled minimum (maximum) within a hair of 0, either side:
    on the first layer, with all corners sampled, that is the exact extreme."""
    traits.append("borderline")
    b = b.copy()
    size = 1.0 + np.abs(z).max(axis=0)
    for j in np.flatnonzero(rng.random(b.size) < 0.6):
        delta = rng.choice([0.0, 1e-12, 1e-9, 1e-7, 1e-6, 1e-5, 1e-3]) * rng.choice([-1.0, 1.0]) * size[j]
        b[j] = -z[:, j].min() + delta if rng.random() < 0.5 else -z[:, j].max() - delta
    return b


def _box(rng: np.random.Generator, d: int, traits: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A box: unit-ish, thin, far from the origin, degenerate in some coordinates."""
    center = rng.normal(size=d)
    half = rng.uniform(0.1, 1.0, size=d)
    if rng.random() < 0.3:
        traits.append("far")
        center = center * 10.0 ** rng.uniform(1, 3)
    if rng.random() < 0.3:
        traits.append("thin")
        half = half * 10.0 ** rng.uniform(-6, -2, size=d)
    if rng.random() < 0.25:
        traits.append("degenerate")
        half[rng.random(d) < 0.5] = 0.0
        if rng.random() < 0.1:
            half[:] = 0.0
    lower, upper = center - half, center + half
    upper[half == 0] = lower[half == 0]
    return lower, upper


def _corners_and_samples(lower: np.ndarray, upper: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    free = np.flatnonzero(upper > lower)
    bits = (np.arange(2**free.size)[:, None] >> np.arange(free.size)) & 1
    corners = np.repeat(lower[None, :], bits.shape[0], axis=0)
    corners[:, free] = np.where(bits == 1, upper[free], lower[free])
    return np.vstack([corners, lower + rng.random((512, lower.size)) * (upper - lower)])


def random_case(seed: int, index: int) -> Case:
    """Network ``index`` of ``seed``: deterministic, independent of the other indices."""
    rng = np.random.default_rng([seed, index])
    traits: list[str] = []
    d = int(rng.integers(1, 7))
    hidden = [int(rng.integers(1, 13)) for _ in range(int(rng.integers(1, 5)))]
    if rng.random() < 0.5:  # keep many networks small enough for the exact check
        hidden = [min(h, int(rng.integers(1, 5))) for h in hidden]
    widths = [d, *hidden, int(rng.integers(1, 4))]
    lower, upper = _box(rng, d, traits)
    h_mag = np.maximum(np.abs(lower), np.abs(upper))
    h = _corners_and_samples(lower, upper, rng)
    weights, biases = [], []
    for n_in, n_out in itertools.pairwise(widths):
        w = _layer_weights(rng, n_out, n_in, traits)
        b = _layer_bias(rng, w, h_mag, h @ w.T, traits)
        if rng.random() < 0.35 and len(weights) < len(widths) - 2:
            b = _borderline(rng, b, h @ w.T, traits)
        weights.append(w)
        biases.append(b)
        h_mag = np.abs(w) @ h_mag + np.abs(b)
        h = np.maximum(h @ w.T + b, 0.0)
    options = list(OPTION_SETS)[int(rng.integers(0, len(OPTION_SETS)))]
    return Case(tuple(weights), tuple(biases), lower, upper, options, tuple(sorted(set(traits))))


def save_case(case: Case, path: Path, note: str = "") -> None:
    """An .npz that ``--replay`` reads back (and ``numpy.load`` shows plainly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"W{k}": w for k, w in enumerate(case.weights)} | {f"b{k}": b for k, b in enumerate(case.biases)}
    np.savez(path, lower=case.lower, upper=case.upper, options=np.array(case.options),
             note=np.array(note), **arrays)


def load_case(path: Path) -> Case:
    with np.load(path, allow_pickle=False) as z:
        depth = sum(1 for k in z.files if k.startswith("W"))
        return Case(tuple(z[f"W{k}"] for k in range(depth)), tuple(z[f"b{k}"] for k in range(depth)),
                    z["lower"], z["upper"], str(z["options"]))


# -- independent truth ---------------------------------------------------------------
def forward(case: Case, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pre-activations of every layer (the output last) and their term sizes
    (|b| + sum |W h|), per point; a ReLU after every layer but the last."""
    h = np.atleast_2d(x)
    zs, sizes = [], []
    for w, b in zip(case.weights, case.biases):
        zs.append(h @ w.T + b)
        sizes.append(np.abs(h) @ np.abs(w).T + np.abs(b))
        h = np.maximum(zs[-1], 0.0)
    return zs, sizes


def box_points(case: Case, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform points, the corners when at most 64, and the centre."""
    lo, hi = case.lower, case.upper
    pts = [lo + rng.random((n, lo.size)) * (hi - lo), (lo + hi)[None, :] / 2]
    free = np.flatnonzero(hi > lo)
    if free.size <= 6:
        bits = (np.arange(2**free.size)[:, None] >> np.arange(free.size)) & 1
        corners = np.repeat(lo[None, :], bits.shape[0], axis=0)
        corners[:, free] = np.where(bits == 1, hi[free], lo[free])
        pts.append(corners)
    return np.vstack(pts)


@dataclass
class Exact:
    """Per hidden layer, LP lower/upper bounds of each unit over the box, and LP optima."""

    lower: list[np.ndarray]
    upper: list[np.ndarray]
    points: list[np.ndarray]
    regions: int = 0
    lps: int = 0


class _LPCap(Exception):
    pass


class ExactRanges:
    """Exact pre-activation ranges by enumerating feasible activation patterns.

    Variables u in [-1, 1]^f parametrise the free coordinates, x = c + D u (fixed
    coordinates stay at their value), which keeps thin, far boxes well scaled. On a
    pattern of layers < k the network is affine, z_k = A u + a; each constraint row
    (one per fixed sign) is normalised before it goes to the LP.
    """

    def __init__(self, case: Case, lp_cap: int = LP_CAP) -> None:
        from scipy.optimize import linprog

        self._linprog = linprog
        self.case = case
        self.lp_cap = lp_cap
        lo, hi = case.lower, case.upper
        self.free = np.flatnonzero(hi > lo)
        self.c = (lo + hi) / 2
        self.c[hi == lo] = lo[hi == lo]
        self.half = ((hi - lo) / 2)[self.free]
        hidden = case.hidden
        self.out = Exact([np.full(n, np.inf) for n in hidden], [np.full(n, -np.inf) for n in hidden], [])

    def x_of(self, u: np.ndarray) -> np.ndarray:
        x = self.c.copy()
        x[self.free] = self.c[self.free] + self.half * u
        return np.clip(x, self.case.lower, self.case.upper)

    def _lp(self, cost: np.ndarray, g: np.ndarray, h: np.ndarray) -> tuple[float, np.ndarray] | None:
        """min cost·u over the box and G u <= h; None when infeasible."""
        self.out.lps += 1
        if self.out.lps > self.lp_cap:
            raise _LPCap
        f = self.free.size
        res = self._linprog(cost, A_ub=g if g.size else None, b_ub=h if g.size else None,
                            bounds=[(-1.0, 1.0)] * f, method="highs")
        if res.status == 2:
            return None
        if res.status != 0:
            raise RuntimeError(f"linprog status {res.status}: {res.message}")
        return float(res.fun), np.asarray(res.x)

    def run(self) -> Exact:
        f = self.free.size
        w0 = self.case.weights[0]
        a = w0 @ self.c + self.case.biases[0]
        big_a = w0[:, self.free] * self.half
        self._layer(0, big_a, a, np.zeros((0, f)), np.zeros(0))
        return self.out

    def _layer(self, k: int, big_a: np.ndarray, a: np.ndarray, g: np.ndarray, h: np.ndarray) -> None:
        """Ranges of layer k on the region G u <= h, then recurse into its feasible patterns."""
        f = self.free.size
        lo, hi = np.empty(a.size), np.empty(a.size)
        for j in range(a.size):
            for sign, store in ((1.0, lo), (-1.0, hi)):
                norm = float(np.linalg.norm(big_a[j]))
                if f == 0 or norm == 0.0:
                    store[j] = a[j]
                    self.out.points.append(self.x_of(np.zeros(f)))
                    continue
                # a normalised cost: a tiny row (1e-7 weights) would fall below the LP's dual tolerance
                sol = self._lp(sign * big_a[j] / norm, g, h)
                if sol is None:  # region empty (reached only through a tolerance): nothing to add
                    return
                store[j] = a[j] + float(big_a[j] @ sol[1])
                self.out.points.append(self.x_of(sol[1]))
        self.out.lower[k] = np.minimum(self.out.lower[k], lo)
        self.out.upper[k] = np.maximum(self.out.upper[k], hi)
        if k + 1 == len(self.case.hidden):
            self.out.regions += 1
            return
        scale = 1.0 + np.abs(a) + np.abs(big_a).sum(axis=1)
        eps = 1e-12 * scale
        fixed = np.where(lo >= -eps, 1.0, np.where(hi <= eps, 0.0, np.nan))
        self._patterns(k, big_a, a, g, h, fixed, 0)

    def _patterns(self, k: int, big_a: np.ndarray, a: np.ndarray, g: np.ndarray, h: np.ndarray,
                  pattern: np.ndarray, j: int) -> None:
        """Branch on the crossing units of layer k from unit j on, keeping feasible sign choices."""
        while j < pattern.size and not np.isnan(pattern[j]):
            j += 1
        if j == pattern.size:
            w, b = self.case.weights[k + 1], self.case.biases[k + 1]
            self._layer(k + 1, (w * pattern) @ big_a, (w * pattern) @ a + b, g, h)
            return
        norm = float(np.linalg.norm(big_a[j]))
        for side in (1.0, 0.0):  # active: -z <= 0; inactive: z <= 0
            sign = -1.0 if side == 1.0 else 1.0
            row, rhs = sign * big_a[j] / norm, -sign * a[j] / norm
            g2, h2 = np.vstack([g, row]), np.append(h, rhs)
            if self._lp(np.zeros(self.free.size), g2, h2) is None:
                continue
            child = pattern.copy()
            child[j] = side
            self._patterns(k, big_a, a, g2, h2, child, j + 1)


def exact_ranges(case: Case, lp_cap: int = LP_CAP) -> Exact | None:
    """The exact ranges, or None when the enumeration needs more than ``lp_cap`` LPs."""
    try:
        return ExactRanges(case, lp_cap).run()
    except _LPCap:
        return None


# -- one network -------------------------------------------------------------------
@dataclass
class Outcome:
    index: int
    hidden: tuple[int, ...]
    inputs: int
    options: str
    traits: tuple[str, ...]
    exact: bool = False
    regions: int = 0
    lps: int = 0
    claims: int = 0
    claimed_active: int = 0
    claimed_inactive: int = 0
    false_claims: list[dict[str, Any]] = field(default_factory=list)
    lp_unconfirmed: list[dict[str, Any]] = field(default_factory=list)
    small_violations: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    incomplete: int = 0
    unproven: int = 0
    removed_units: int = 0
    seconds_leo: float = 0.0
    seconds_truth: float = 0.0
    error: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.false_claims or self.mismatches)


def _network(case: Case):  # noqa: ANN202 - leo.Network
    from leo.network import mlp

    return mlp(list(case.weights), list(case.biases))


def _options(case: Case, time_limit: float, index: int):  # noqa: ANN202 - leo.StabilityOptions
    from leo.stability import StabilityOptions

    return StabilityOptions(time_limit=time_limit, seed=index, **OPTION_SETS[case.options])


def _eval_network(network: Any, x: np.ndarray) -> np.ndarray:
    """The compressed network's output by a plain loop over its layers (skip sources included)."""
    outs = [np.atleast_2d(x)]
    for layer in network.layers:
        z = layer.bias + sum(outs[s] @ np.asarray(w).T for s, w in layer.weights.items())
        outs.append(np.maximum(z, 0.0) if layer.relu else z)
    return outs[-1]


def soak_one(case: Case, index: int, samples: int = DEFAULT_SAMPLES, time_limit: float = DEFAULT_TIME_LIMIT,
             exact_max_relus: int = EXACT_MAX_RELUS, lp_cap: int = LP_CAP) -> Outcome:
    """Run leo on one case and check every claim and the compression against the truth."""
    import leo

    out = Outcome(index, case.hidden, int(case.lower.size), case.options, case.traits)
    start = time.perf_counter()
    try:
        result = leo.compress(_network(case), case.lower, case.upper, _options(case, time_limit, index),
                              check_points=2000)
    except Exception as exc:  # noqa: BLE001 - recorded as a mismatch, with the network saved
        out.seconds_leo = time.perf_counter() - start
        out.error = f"{type(exc).__name__}: {exc}"
        out.mismatches.append({"error": out.error, "traceback": traceback.format_exc(limit=4)})
        return out
    out.seconds_leo = time.perf_counter() - start
    out.unproven = result.report.num_unproven
    out.removed_units = sum(case.hidden) - sum(result.network.hidden)

    start = time.perf_counter()
    pts = box_points(case, samples, np.random.default_rng([index, 7]))
    exact = exact_ranges(case, lp_cap) if sum(case.hidden) <= exact_max_relus else None
    if exact is not None:
        out.exact, out.regions, out.lps = True, exact.regions, exact.lps
        if exact.points:
            pts = np.vstack([pts, np.array(exact.points)])
    zs, sizes = forward(case, pts)
    _check_claims(out, result.report, zs[:-1], sizes[:-1], exact, pts)
    _check_outputs(out, result.network, pts, zs[-1], sizes[-1])
    out.seconds_truth = time.perf_counter() - start
    return out


def _check_claims(out: Outcome, report: Any, zs: list[np.ndarray], sizes: list[np.ndarray],
                  exact: Exact | None, pts: np.ndarray) -> None:
    for k, layer_report in enumerate(report.layers):
        z, scale = zs[k], 1.0 + sizes[k].max(axis=0)
        tol = CLAIM_RTOL * scale
        for claim, units, bad_side in (("active", layer_report.active, -1.0), ("inactive", layer_report.inactive, 1.0)):
            for j in units:
                out.claims += 1
                out.claimed_active += claim == "active"
                out.claimed_inactive += claim == "inactive"
                worst = int(np.argmax(bad_side * z[:, j]))
                found = {"layer": k + 1, "unit": j, "claim": claim, "z": float(z[worst, j]), "tol": float(tol[j]),
                         "x": pts[worst].tolist()}
                if bad_side * z[worst, j] > tol[j]:
                    out.false_claims.append(found)
                elif bad_side * z[worst, j] > ROUNDING_RTOL * scale[j]:
                    out.small_violations.append(found)
                elif exact is not None:
                    bound = exact.lower[k][j] if claim == "active" else exact.upper[k][j]
                    if bad_side * bound > tol[j]:
                        out.lp_unconfirmed.append({"layer": k + 1, "unit": j, "claim": claim,
                                                   "lp_bound": float(bound), "tol": float(tol[j])})
        if exact is not None:
            for j in layer_report.unstable:
                if exact.lower[k][j] > tol[j] or exact.upper[k][j] < -tol[j]:
                    out.incomplete += 1


def _check_outputs(out: Outcome, compressed: Any, pts: np.ndarray, y: np.ndarray, y_size: np.ndarray) -> None:
    g = _eval_network(compressed, pts)
    tol = OUTPUT_RTOL * (1.0 + y_size.max())
    diff = np.abs(g - y).max(axis=1)
    worst = int(np.argmax(diff))
    if diff[worst] > tol:
        out.mismatches.append({"max_diff": float(diff[worst]), "tol": float(tol), "x": pts[worst].tolist(),
                               "points_over": int((diff > tol).sum())})


# -- the run -----------------------------------------------------------------------
def versions() -> dict[str, str]:
    import highspy  # noqa: F401
    import scipy
    import torch
    from importlib.metadata import version

    import leo

    return {"leo": leo.__version__, "highspy": version("highspy"), "torch": torch.__version__,
            "scipy": scipy.__version__, "numpy": np.__version__, "python": platform.python_version()}


def soak(networks: int, seed: int, samples: int = DEFAULT_SAMPLES, time_limit: float = DEFAULT_TIME_LIMIT,
         failures: Path | None = FAILURES, start: int = 0, log: Any = None) -> dict[str, Any]:
    """Soak ``networks`` random cases; returns the counts and the failing cases."""
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    for index in range(start, start + networks):
        case = random_case(seed, index)
        o = soak_one(case, index, samples, time_limit)
        outcomes.append(o)
        if o.failed and failures is not None:
            path = failures / f"soak-seed{seed}-net{index}.npz"
            save_case(case, path, note=repr({"false_claims": o.false_claims, "mismatches": o.mismatches}))
        if log is not None:
            log(f"[{index}] hidden={o.hidden} in={o.inputs} {o.options} exact={o.exact} claims={o.claims} "
                f"false={len(o.false_claims)} small={len(o.small_violations)} mismatch={len(o.mismatches)} "
                f"incomplete={o.incomplete} "
                f"leo={o.seconds_leo:.2f}s truth={o.seconds_truth:.2f}s")
    return summarise(outcomes, seed, samples, time_limit, time.perf_counter() - t0)


def summarise(outcomes: Sequence[Outcome], seed: int, samples: int, time_limit: float,
              seconds: float) -> dict[str, Any]:
    def count(pred: Any) -> int:
        return sum(1 for o in outcomes if pred(o))

    by_options = {name: count(lambda o, n=name: o.options == n) for name in OPTION_SETS}
    traits = sorted({t for o in outcomes for t in o.traits})
    return {
        "seed": seed,
        "networks": len(outcomes),
        "samples": samples,
        "time_limit": time_limit,
        "tolerances": {"claim_rtol": CLAIM_RTOL, "rounding_rtol": ROUNDING_RTOL, "output_rtol": OUTPUT_RTOL,
                       "exact_max_relus": EXACT_MAX_RELUS,
                       "lp_cap": LP_CAP},
        "exact_networks": count(lambda o: o.exact),
        "hidden_relus": sum(sum(o.hidden) for o in outcomes),
        "claims_checked": sum(o.claims for o in outcomes),
        "claims_checked_exact": sum(o.claims for o in outcomes if o.exact),
        "claimed_active": sum(o.claimed_active for o in outcomes),
        "claimed_inactive": sum(o.claimed_inactive for o in outcomes),
        "false_claims": sum(len(o.false_claims) for o in outcomes),
        "lp_unconfirmed": sum(len(o.lp_unconfirmed) for o in outcomes),
        "violations_within_tol": sum(len(o.small_violations) for o in outcomes),
        "compression_mismatches": sum(len(o.mismatches) for o in outcomes),
        "errors": count(lambda o: o.error is not None),
        "incomplete": sum(o.incomplete for o in outcomes),
        "unproven": sum(o.unproven for o in outcomes),
        "removed_units": sum(o.removed_units for o in outcomes),
        "regions": sum(o.regions for o in outcomes),
        "lps": sum(o.lps for o in outcomes),
        "networks_by_options": by_options,
        "networks_by_depth": {d: count(lambda o, d=d: len(o.hidden) == d) for d in range(1, 5)},
        "networks_by_trait": {t: count(lambda o, t=t: t in o.traits) for t in traits},
        "seconds": seconds,
        "seconds_leo": sum(o.seconds_leo for o in outcomes),
        "seconds_truth": sum(o.seconds_truth for o in outcomes),
        "failures": [{"index": o.index, "hidden": list(o.hidden), "inputs": o.inputs, "options": o.options,
                      "false_claims": o.false_claims, "mismatches": o.mismatches}
                     for o in outcomes if o.failed],
        "violations_within_tol_cases": [{"index": o.index, "options": o.options, "items": o.small_violations}
                                        for o in outcomes if o.small_violations],
        "lp_unconfirmed_cases": [{"index": o.index, "items": o.lp_unconfirmed} for o in outcomes if o.lp_unconfirmed],
    }


def to_markdown(data: dict[str, Any]) -> str:
    s = data["soak"]
    lines = ["# Soak: leo's stable-unit claims and compressions against independent truth", "",
             f"Command: `{data['command']}`", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()), "",
             "| quantity | value |", "|---|---|"]
    rows = [("seed", s["seed"]), ("networks", s["networks"]),
            ("networks with exact LP ranges", s["exact_networks"]), ("hidden ReLUs", s["hidden_relus"]),
            ("activation regions enumerated", s["regions"]), ("LPs", s["lps"]),
            ("sampled points per network", s["samples"]), ("time limit per solve (s)", s["time_limit"]),
            ("stable claims checked", s["claims_checked"]),
            ("… of them against exact ranges", s["claims_checked_exact"]),
            ("claimed active / inactive", f"{s['claimed_active']} / {s['claimed_inactive']}"),
            ("false claims", s["false_claims"]),
            ("claims violated by more than rounding but within tol", s["violations_within_tol"]),
            ("LP bound beyond tol, unconfirmed by a point", s["lp_unconfirmed"]),
            ("compression mismatches", s["compression_mismatches"]), ("leo errors", s["errors"]),
            ("truly stable units left unstable (exact networks)", s["incomplete"]),
            ("units reported unproven", s["unproven"]), ("units removed by compression", s["removed_units"]),
            ("seconds (total / leo / truth)",
             f"{s['seconds']:.0f} / {s['seconds_leo']:.0f} / {s['seconds_truth']:.0f}")]
    lines += [f"| {k} | {v} |" for k, v in rows]
    t = s["tolerances"]
    lines += ["", f"Tolerances: claim tol = {t['claim_rtol']:g} x (1 + term size), rounding = "
              f"{t['rounding_rtol']:g} x (1 + term size), output tol = {t['output_rtol']:g} "
              f"x (1 + output term size); exact ranges for <= {t['exact_max_relus']} hidden ReLUs and <= "
              f"{t['lp_cap']} LPs.", "",
              "Networks by analysis settings: " + ", ".join(f"{k} {v}" for k, v in s["networks_by_options"].items()),
              "", "Networks by depth: " + ", ".join(f"{k}: {v}" for k, v in s["networks_by_depth"].items()),
              "", "Networks by trait: " + ", ".join(f"{k} {v}" for k, v in s["networks_by_trait"].items())]
    if s["failures"]:
        lines += ["", "## Failures", ""]
        lines += [f"- network {f['index']} (hidden {f['hidden']}, {f['inputs']} inputs, {f['options']}): "
                  f"{len(f['false_claims'])} false claims, {len(f['mismatches'])} mismatches" for f in s["failures"]]
    if "fuzz" in data:
        from benchmarks.fuzz import to_markdown as fuzz_markdown

        lines += ["", fuzz_markdown(data["fuzz"], heading="##")]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from benchmarks.common import RESULTS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--networks", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first network index (to rerun a slice)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT)
    p.add_argument("--failures", type=Path, default=FAILURES)
    p.add_argument("--json", type=Path, default=RESULTS / "soak.json")
    p.add_argument("--markdown", type=Path, default=RESULTS / "soak.md")
    p.add_argument("--replay", type=Path, default=None, help="rerun one saved case (.npz) and print its outcome")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import json

    import torch

    from benchmarks.common import write_json, write_text

    torch.set_num_threads(1)
    args = parse_args(argv)
    if args.replay is not None:
        o = soak_one(load_case(args.replay), 0, args.samples, args.time_limit)
        print(json.dumps({"false_claims": o.false_claims, "mismatches": o.mismatches, "claims": o.claims,
                          "exact": o.exact, "error": o.error}, indent=2, default=str))
        return {}
    command = "python -m benchmarks.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    result = soak(args.networks, args.seed, args.samples, args.time_limit, args.failures, args.start,
                  log=lambda line: print(line, flush=True))
    data: dict[str, Any] = {"command": command.strip(), "versions": versions(), "soak": result}
    if args.json.is_file():  # keep the fuzz section a separate run wrote
        old = json.loads(args.json.read_text())
        if "fuzz" in old:
            data["fuzz"] = old["fuzz"]
    write_json(args.json, data)
    write_text(args.markdown, to_markdown(data))
    print(f"wrote {args.json}, {args.markdown}: {result['false_claims']} false claims, "
          f"{result['compression_mismatches']} mismatches, {result['incomplete']} incomplete")
    return data


if __name__ == "__main__":
    main()
