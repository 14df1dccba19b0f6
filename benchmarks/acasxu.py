"""ACAS Xu 1_1 ... 1_9: full-domain stability analysis over property 7's box.

Per network: leo's analysis as ``leo verify NET --vnnlib prop_7.vnnlib --time-budget 60 --branch``
runs it (``leo.stability.analysis.analyse``), with the branch-and-bound phase (``leo.bab.input_split.search_each``:
one input-splitting tree per layer for all its open units, CROWN bounds, an in-leaf gradient
attack whose points count only by the forward pass) before the MILPs: seconds, units proven
stable (and how many by the phase), units shown unstable (a witness pair), units left open;
beside it the same analysis without the phase (``--no-branch``; the default runs it on layers whose
MILPs carry 24+ binaries, here layers 2-6); and a sampling
check: 10^6 box points, no unit claimed stable by either may be seen with the other sign.

    python -m benchmarks.acasxu --json benchmarks/results/acasxu.json --markdown benchmarks/results/acasxu.md
    python -m benchmarks.acasxu --quick      # 1_1 only
    python -m benchmarks.acasxu --networks 1,9 --no-compare   # 1_1 and 1_9, the default analysis only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import write_json, write_text
from leo.api import as_network
from leo.data import data_dir
from leo.core.domain import Box
from leo.core.network import Network
from leo.stability.report import StabilityReport
from leo.stability.analysis import StabilityOptions, analyse
from leo.io.vnnlib import read_vnnlib

NETWORKS = [f"ACASXU_run2a_1_{i}_batch_2000.onnx" for i in range(1, 10)]


def sampled_signs(net: Network, box: Box, samples: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per hidden layer, the min and max of every pre-activation over ``samples`` box points."""
    rng = np.random.default_rng(seed)
    mins = [np.full(w, np.inf) for w in net.hidden]
    maxs = [np.full(w, -np.inf) for w in net.hidden]
    for start in range(0, samples, 100_000):
        zs = net.pre_activations(box.sample(min(100_000, samples - start), rng))
        for k in range(len(net.hidden)):
            mins[k] = np.minimum(mins[k], zs[k].min(axis=0))
            maxs[k] = np.maximum(maxs[k], zs[k].max(axis=0))
    return list(zip(mins, maxs))


def contradicted(claims: dict[tuple[int, int], str], signs: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """Claims (layer 1-based, unit) -> "active"/"inactive" that a sample contradicts."""
    bad = []
    for (layer, unit), verdict in claims.items():
        lo, hi = signs[layer - 1][0][unit], signs[layer - 1][1][unit]
        if (verdict == "active" and lo < 0) or (verdict == "inactive" and hi > 0):
            bad.append(f"layer {layer} unit {unit} claimed {verdict}, sampled range [{lo:.3g}, {hi:.3g}]")
    return bad


def claims_of(report: StabilityReport) -> dict[tuple[int, int], str]:
    return {(r.layer, j): str(r.proofs[j].verdict) for r in report.layers for j in r.active + r.inactive}


def open_units(report: StabilityReport) -> list[tuple[int, int]]:
    return [(r.layer, j) for r in report.layers for j, p in enumerate(r.proofs)
            if str(p.verdict) == "unstable" and p.witness is None]


def _analysis(net: Network, box: Box, budget: float, branch: bool) -> tuple[dict[str, Any], StabilityReport]:
    """One analysis with or without the branch-and-bound phase: seconds and unit counts."""
    t0 = time.perf_counter()
    report = analyse(net, box, StabilityOptions(time_budget=budget, seed=0, branch=branch))
    seconds = time.perf_counter() - t0
    left = open_units(report)
    by_branch = sum(str(p.method) == "branch" for r in report.layers for p in r.proofs)
    return {"seconds": round(seconds, 2), "stable": report.num_stable, "by_branch": by_branch,
            "unstable_shown": sum(net.hidden) - report.num_stable - len(left), "open": len(left),
            "open_units": [list(u) for u in left]}, report


def run_network(name: str, budget: float, samples: int, compare: bool = True) -> dict[str, Any]:
    """One network: the analysis with the phase and (``compare``) without it, the load average
    when it started, and the sampling check of every stable claim."""
    root = data_dir() / "vnncomp2021" / "acasxu"
    net = as_network(str(root / name))
    box, _ = read_vnnlib(root / "prop_7.vnnlib", net.input_dim)
    load = _load()
    with_phase, report = _analysis(net, box, budget, branch=True)
    without, plain = _analysis(net, box, budget, branch=False) if compare else (None, None)
    row: dict[str, Any] = {"network": name, "units": sum(net.hidden), "load": load, **with_phase, "no_branch": without}
    signs = sampled_signs(net, box, samples, seed=1)
    row["samples"] = samples
    row["contradicted"] = contradicted(claims_of(report) | (claims_of(plain) if plain else {}), signs)
    row["sampled_can_be_stable"] = int(sum(((lo >= 0) | (hi <= 0)).sum() for lo, hi in signs))
    other = f"; without the phase {without['seconds']:.1f} s, stable {without['stable']}, open {without['open']}" \
        if without else ""
    print(f"{name}: {row['seconds']:.1f} s, stable {row['stable']} ({row['by_branch']} by branch and bound), "
          f"open {row['open']}{other}; contradicted {len(row['contradicted'])}; load {load}", file=sys.stderr, flush=True)
    return row


def markdown(rows: list[dict[str, Any]], command: str, budget: float) -> str:
    lines = ["# ACAS Xu 1_1 ... 1_9, property 7's box (the whole normalised domain)", "",
             f"Command: `{command}`", "",
             f"leo's analysis as `leo verify NET --vnnlib prop_7.vnnlib --time-budget {budget:g} --branch` runs it "
             "(the API equivalent, `analyse(..., StabilityOptions(time_budget, branch=True))`): the branch-and-bound "
             "phase (leo/bab/input_split.py `search_each`: one input-splitting tree per layer for all its open units, CROWN "
             "bounds, an in-leaf gradient attack confirmed by the forward pass) before the MILPs; and without it "
             "(`--no-branch`; the default runs the phase on layers whose MILPs carry 24+ binaries). 10^6 samples check every stable claim of both. "
             "Load average (1, 5, 15 min) at each network's start in its row.", "",
             "| network | load | units | seconds | stable | by branch | unstable (witnessed) | open | "
             "no-branch seconds | no-branch stable | no-branch open | sampling: can be stable | contradicted |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        nb = r["no_branch"] or {}
        cells = [f"{nb['seconds']:.1f}", str(nb["stable"]), str(nb["open"])] if nb else ["—"] * 3
        lines.append(f"| {r['network']} | {r.get('load', '—')} | {r['units']} | {r['seconds']:.1f} | {r['stable']} | "
                     f"{r['by_branch']} | {r['unstable_shown']} | {r['open']} | {' | '.join(cells)} | "
                     f"{r['sampled_can_be_stable']} | {len(r['contradicted'])} |")
    return "\n".join(lines) + "\n"


def _load() -> str:
    """The machine's load average (1, 5, 15 min): the timings are wall-clock on a shared machine."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="network 1_1 only")
    ap.add_argument("--networks", default=None, help="comma-separated j of ACAS Xu 1_j (default: 1-9)")
    ap.add_argument("--no-compare", action="store_true", help="skip the analysis without the phase")
    ap.add_argument("--budget", type=float, default=60.0, help="--time-budget of the analysis, per network")
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = NETWORKS[:1] if args.quick else NETWORKS
    if args.networks:
        names = [NETWORKS[int(j) - 1] for j in args.networks.split(",")]
    rows = [run_network(n, args.budget, args.samples, compare=not args.no_compare) for n in names]
    command = "python -m benchmarks.acasxu " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"command": command, "networks": rows}
    if args.json:
        write_json(args.json, payload)
    text = markdown(rows, command, args.budget)
    if args.markdown:
        write_text(args.markdown, text)
    print(text)
    return 1 if any(r["contradicted"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
