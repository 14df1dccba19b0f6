"""Soak: leo's stable-unit claims and compressions against independent truth, on many
random ReLU networks built to have stable units and awkward numbers.

    python -m benchmarks.soak [--networks N] [--seed S] [--samples P] [--time-limit T]
                              [--graph-networks M] [--graph-start K] [--max-seconds S]
                              [--json PATH] [--markdown PATH] [--replay FILE.npz]
    python -m benchmarks.soak --merge A.json B.json ... --json PATH --markdown PATH

``--networks`` dense MLPs (below); ``--graph-networks`` convolutional, residual, max-pool
and dense networks read from torch modules, each with a random property query and a random
epsilon-equivalence query whose truth is known by enumeration (``benchmarks.soak_nets``).
Runs over disjoint slices (``--start``, ``--graph-start``) in separate processes are joined
by ``--merge``.

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
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.soak_checks import (CLAIM_RTOL, OUTPUT_RTOL, ROUNDING_RTOL, _check_claims,  # noqa: F401
                                    _check_outputs, _eval_network)
from benchmarks.soak_ranges import LP_CAP, Exact, ExactRanges, exact_ranges  # noqa: F401 - re-exported
from benchmarks.soak_report import to_markdown, versions

EXACT_MAX_RELUS = 14
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
    from leo.core.network import mlp

    return mlp(list(case.weights), list(case.biases))


def _options(case: Case, time_limit: float, index: int):  # noqa: ANN202 - leo.StabilityOptions
    from leo.stability.analysis import StabilityOptions

    return StabilityOptions(time_limit=time_limit, seed=index, **OPTION_SETS[case.options])


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


# -- the run -----------------------------------------------------------------------
def soak(networks: int, seed: int, samples: int = DEFAULT_SAMPLES, time_limit: float = DEFAULT_TIME_LIMIT,
         failures: Path | None = FAILURES, start: int = 0, log: Any = None,
         max_seconds: float = float("inf")) -> dict[str, Any]:
    """Soak ``networks`` random cases (none started after ``max_seconds``); returns the
    counts and the failing cases."""
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    for index in range(start, start + networks):
        if time.perf_counter() - t0 > max_seconds:
            break
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
    p.add_argument("--graph-networks", type=int, default=2000,
                   help="networks of the graph soak (conv, residual, max-pool, dense; with queries)")
    p.add_argument("--graph-start", type=int, default=0, help="first graph network index")
    p.add_argument("--graph-samples", type=int, default=4000)
    p.add_argument("--generators", default="conv,residual,maxpool,mlp", help="graph soak generators, round robin")
    p.add_argument("--max-seconds", type=float, default=float("inf"),
                   help="start no network after this many seconds of each part (the counts say how many ran)")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="results JSON of runs over disjoint slices: write their merged page instead of running")
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
    if args.merge is not None:
        from benchmarks.soak_report import merge

        data = merge([json.loads(p.read_text()) for p in args.merge], command.strip())
        write_json(args.json, data)
        write_text(args.markdown, to_markdown(data))
        return data
    data: dict[str, Any] = {"command": command.strip(), "versions": versions()}
    if args.networks > 0:
        data["soak"] = soak(args.networks, args.seed, args.samples, args.time_limit, args.failures, args.start,
                            log=lambda line: print(line, flush=True), max_seconds=args.max_seconds)
    if args.graph_networks > 0:
        from benchmarks.soak_draw import Kind
        from benchmarks.soak_nets import soak_graphs

        kinds = [Kind(k) for k in args.generators.split(",")]
        data["graphs"] = soak_graphs(args.graph_networks, args.seed, args.graph_samples, args.time_limit,
                                     args.failures, args.graph_start, log=lambda line: print(line, flush=True),
                                     kinds=kinds, max_seconds=args.max_seconds)
    old = json.loads(args.json.read_text()) if args.json.is_file() else {}
    if "fuzz" in old:  # keep the fuzz section a separate run wrote
        data["fuzz"] = old["fuzz"]
    write_json(args.json, data)
    write_text(args.markdown, to_markdown(data))
    print(f"wrote {args.json}, {args.markdown}")
    return data


if __name__ == "__main__":
    main()
