"""ACAS Xu 1_1 ... 1_9: full-domain stability analysis over property 7's box.

Per network: leo's standard analysis (``leo.stability.analyse`` with ``--time-budget``):
seconds, units proven stable, units shown unstable (a witness pair), units left open; then,
as a separate column, branch and bound (``leo.branch.unit_sign``, input splitting with
CROWN bounds) on each unit the analysis left open, with a per-unit and a total deadline;
and a sampling check: 10^6 box points (plus the analysis's own witnesses), no unit
claimed stable by either may be seen with the other sign.

    python -m benchmarks.acasxu --json benchmarks/results/acasxu.json --markdown benchmarks/results/acasxu.md
    python -m benchmarks.acasxu --quick      # 1_1 only
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import write_json, write_text
from leo.api import as_network
from leo.branch import unit_sign
from leo.data import data_dir
from leo.domain import Box
from leo.network import Network
from leo.report import StabilityReport
from leo.stability import StabilityOptions, analyse
from leo.vnnlib import read_vnnlib

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


def run_network(name: str, budget: float, bab_unit: float, bab_total: float, samples: int) -> dict[str, Any]:
    root = data_dir() / "vnncomp2021" / "acasxu"
    net = as_network(str(root / name))
    box, _ = read_vnnlib(root / "prop_7.vnnlib", net.input_dim)
    t0 = time.perf_counter()
    report = analyse(net, box, StabilityOptions(time_budget=budget, seed=0))
    seconds = time.perf_counter() - t0
    left = open_units(report)
    claims = claims_of(report)
    row: dict[str, Any] = {
        "network": name, "units": sum(net.hidden), "seconds": round(seconds, 2),
        "stable": report.num_stable, "unstable_shown": sum(net.hidden) - report.num_stable - len(left),
        "open": len(left), "open_units": [list(u) for u in left]}
    t1 = time.perf_counter()
    bab_claims: dict[tuple[int, int], str] = {}
    for layer, unit in left:
        now = time.perf_counter()
        if now - t1 >= bab_total:
            break
        sign = unit_sign(net, box, layer, unit, min(now + bab_unit, t1 + bab_total))
        if sign is not None:
            bab_claims[(layer, unit)] = sign
    row["bab"] = {"seconds": round(time.perf_counter() - t1, 2), "proven": len(bab_claims),
                  "open": len(left) - len(bab_claims), "units": {f"{k[0]}.{k[1]}": v for k, v in bab_claims.items()}}
    signs = sampled_signs(net, box, samples, seed=1)
    row["samples"] = samples
    row["contradicted"] = contradicted(claims | bab_claims, signs)
    row["sampled_can_be_stable"] = int(sum(((lo >= 0) | (hi <= 0)).sum() for lo, hi in signs))
    print(f"{name}: {row['seconds']:.1f} s, stable {row['stable']}, open {row['open']}; "
          f"branch and bound proves {len(bab_claims)} more in {row['bab']['seconds']:.1f} s; "
          f"contradicted {len(row['contradicted'])}", file=sys.stderr, flush=True)
    return row


def markdown(rows: list[dict[str, Any]], command: str, budget: float) -> str:
    lines = ["# ACAS Xu 1_1 ... 1_9, property 7's box (the whole normalised domain)", "",
             f"Command: `{command}`", "",
             f"leo's analysis with `--time-budget {budget:g}`; then branch and bound (leo/branch.py, input "
             "splitting with CROWN bounds) on each unit it left open; 10^6 samples check every stable claim.", "",
             "| network | units | seconds | stable | unstable (witnessed) | open | BaB seconds | BaB proves | "
             "open after BaB | sampling: can be stable | contradicted |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['units']} | {r['seconds']:.1f} | {r['stable']} | {r['unstable_shown']} | "
                     f"{r['open']} | {r['bab']['seconds']:.1f} | {r['bab']['proven']} | {r['bab']['open']} | "
                     f"{r['sampled_can_be_stable']} | {len(r['contradicted'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="network 1_1 only")
    ap.add_argument("--budget", type=float, default=60.0, help="--time-budget of the analysis, per network")
    ap.add_argument("--bab-unit", type=float, default=2.0, help="branch and bound seconds per open unit")
    ap.add_argument("--bab-total", type=float, default=60.0, help="branch and bound seconds per network")
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = NETWORKS[:1] if args.quick else NETWORKS
    rows = [run_network(n, args.budget, args.bab_unit, args.bab_total, args.samples) for n in names]
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
