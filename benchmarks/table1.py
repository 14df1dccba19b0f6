"""Table 1 of LEO (Serra, Kumar, Ramalingam, CPAIOR 2020), reproduced with ``leo``.

For each (width, l1) row: train N MNIST networks 784-w-w-10 (seeds 0..N-1) with the
paper's recipe (``leo.train`` defaults: SGD lr 0.01, momentum 0.9, batch 128, lr x0.1
at 50/120 and 100/120 of the run, 56,250 steps = the paper's 120 epochs of 60k
images), prove every hidden unit stable or not over [0, 1]^784 with the exact
pipeline (``leo.stability.analysis.analyse``), reduce (``leo.reduction.reduce.reduce``), and report
mean +- standard error of test accuracy before / after compression, units removed
per layer, compression (share of hidden units removed) and the median analysis time.
Rows past the paper (more l1, the RS loss) follow, with ``"paper": null``.

    python -m benchmarks.table1                    # the full table (slow: hours of training)
    python -m benchmarks.table1 --quick            # one short-trained network per row, minutes
    python -m benchmarks.table1 --rows 100:1e-4 100:1e-4:1e-3 --networks 2
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, get_network, mnist, network_name, sem, short, write_json, write_text
from leo.core.domain import make_box
from leo.io.torch_io import from_module
from leo.reduction.reduce import reduce
from leo.stability.analysis import StabilityOptions, analyse
from leo.core.threads import DEFAULT_THREADS, set_threads
from leo.train import PAPER_STEPS, accuracy

DEPTH = 2  # hidden layers of every Table 1 network
QUICK_STEPS = 1_500
QUICK_TIME_LIMIT = 10.0  # seconds per MILP solve in --quick


@dataclass(frozen=True)
class RowSpec:
    width: int
    l1: float
    rs: float = 0.0
    paper: dict[str, float] | None = None
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.width}:{short(self.l1)}" + (f":{short(self.rs)}" if self.rs else "")


def _paper(acc: float, r1: float, r2: float, comp: float) -> dict[str, float]:
    return {"accuracy": acc, "removed_layer1": r1, "removed_layer2": r2, "compression_pct": comp}


#: LEO Table 1: 2 hidden layers, domain [0, 1]^784; accuracy %, units removed per layer,
#: compression % = share of the hidden units removed.
PAPER_ROWS: tuple[RowSpec, ...] = (
    RowSpec(25, 1e-3, paper=_paper(95.76, 5.7, 5.1, 22.0)),
    RowSpec(25, 2e-4, paper=_paper(97.24, 1.2, 3.0, 8.3)),
    RowSpec(25, 0.0, paper=_paper(96.68, 0.0, 0.0, 0.0)),
    RowSpec(50, 1e-3, paper=_paper(96.05, 16.9, 12.5, 29.4)),
    RowSpec(50, 2e-4, paper=_paper(97.81, 7.6, 7.5, 15.1)),
    RowSpec(50, 0.0, paper=_paper(97.62, 0.0, 0.0, 0.0)),
    RowSpec(100, 5e-4, paper=_paper(97.14, 36.7, 24.9, 30.8)),
    RowSpec(100, 1e-4, paper=_paper(98.14, 18.6, 11.1, 14.9)),
    RowSpec(100, 0.0, paper=_paper(98.00, 0.0, 0.0, 0.0)),
)

#: Rows past the paper.
EXTRA_ROWS: tuple[RowSpec, ...] = (
    RowSpec(100, 3e-4, note="past the paper: l1 3e-4, between the paper's 1e-4 and 5e-4"),
    RowSpec(100, 1e-4, rs=1e-3, note="past the paper: l1 1e-4 plus the RS loss of Xiao et al. (ICLR 2019), weight "
                                     "1e-3, eps 0.1"),
)

ALL_ROWS = PAPER_ROWS + EXTRA_ROWS


def parse_row(text: str) -> RowSpec:
    """``WIDTH:L1[:RS]``: a known row keeps its paper values / note; others are new."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r}: give rows as WIDTH:L1 or WIDTH:L1:RS, e.g. 100:1e-4")
    try:
        width, l1, rs = int(parts[0]), float(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: WIDTH is an integer, L1 and RS are numbers") from None
    if width < 1 or l1 < 0 or rs < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: width >= 1, l1 >= 0, rs >= 0")
    for spec in ALL_ROWS:
        if (spec.width, spec.l1, spec.rs) == (width, l1, rs):
            return spec
    return RowSpec(width, l1, rs, note="past the paper: row given on the command line")


# -- one network ------------------------------------------------------------------
def evaluate_network(module: Any, x_test: np.ndarray, y_test: np.ndarray,
                     options: StabilityOptions = StabilityOptions(),
                     x_train: np.ndarray | None = None, y_train: np.ndarray | None = None) -> dict[str, Any]:
    """Analyse one trained network over [0, 1]^d, reduce it, and measure both.

    With the training data, also: training accuracy and, per layer, how many units
    are inactive / active on every training image (an upper bound on what any proof
    over the whole box can find)."""
    net = from_module(module)
    box = make_box(0.0, 1.0, net.input_dim)
    report = analyse(net, box, options)
    t0 = time.perf_counter()
    reduction = reduce(net, report)
    reduce_seconds = time.perf_counter() - t0
    small = reduction.network
    f, g = net(x_test), small(x_test)
    max_diff = float(np.abs(f - g).max())
    acc_before = accuracy(net, x_test, y_test)
    acc_after = accuracy(small, x_test, y_test)
    if acc_before != acc_after:
        raise AssertionError(f"compression changed the test accuracy: {acc_before} -> {acc_after} "
                             f"(max |f - g| = {max_diff:g})")
    changed = int(np.sum(np.argmax(f, axis=1) != np.argmax(g, axis=1)))
    hidden = net.hidden
    # width after reduction of every original hidden layer (0 when merged away)
    live = [i for i in range(1, len(net.layers) + 1) if i not in reduction.merged_layers]
    after_by_layer = {orig: len(kept) for orig, kept in zip(live, reduction.kept)}
    after = [after_by_layer.get(i, 0) for i in range(1, len(hidden) + 1)]
    removed = [w - a for w, a in zip(hidden, after)]
    layers = [report.layer(i) for i in range(1, len(hidden) + 1)]
    timeouts = sum(1 for lr in layers for p in lr.proofs if p.method == "timeout")
    extra: dict[str, Any] = {}
    if x_train is not None and y_train is not None:
        zs = net.pre_activations(x_train)[:len(hidden)]
        extra = {
            "train_accuracy": 100.0 * accuracy(net, x_train, y_train),
            "inactive_on_train": [int(np.sum(z.max(axis=0) <= 0)) for z in zs],
            "active_on_train": [int(np.sum(z.min(axis=0) >= 0)) for z in zs],
        }
    weight_l1 = float(sum(np.abs(w).sum() for layer in net.layers for w in layer.weights.values()))
    return {
        "accuracy": 100.0 * acc_before,
        "accuracy_after": 100.0 * acc_after,
        "accuracy_float32": 100.0 * accuracy(module, x_test, y_test),
        "predictions_changed": changed,
        "max_abs_diff": max_diff,
        "widths": list(hidden),
        "widths_after": after,
        "removed": removed,
        "removed_inactive": [len(t) for t in reduction.removed_inactive[:len(hidden)]],
        "folded_active": [len(t) for t in reduction.folded_active[:len(hidden)]],
        "merged_layers": list(reduction.merged_layers),
        "stable_active": [len(lr.active) for lr in layers],
        "stable_inactive": [len(lr.inactive) for lr in layers],
        "unstable": [len(lr.unstable) for lr in layers],
        "compression_pct": 100.0 * sum(removed) / sum(hidden),
        "seconds": report.seconds,
        "reduce_seconds": reduce_seconds,
        "milp_solves": report.milps,
        "lp_solves": report.lps,
        "timeouts": timeouts,
        "solver": str(report.settings.get("solver", "")),
        "parameters": net.num_parameters,
        "parameters_after": small.num_parameters,
        "weight_l1": weight_l1,
        **extra,
    }


# -- one row ----------------------------------------------------------------------
def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def _layer_means(nets: list[dict[str, Any]], key: str) -> list[float]:
    return [float(np.mean([n[key][k] for n in nets])) for k in range(len(nets[0][key]))]


def run_row(spec: RowSpec, seeds: Sequence[int], steps: int, options: StabilityOptions = StabilityOptions(),
            depth: int = DEPTH, folder: Path | None = None, verbose: bool = False) -> dict[str, Any]:
    """Train (or load) one network per seed, evaluate each, and aggregate the row."""
    from benchmarks.speed import machine

    data = mnist()
    hidden = (spec.width,) * depth
    facts = machine()  # read when the row runs, so the text can say where it was measured
    nets: list[dict[str, Any]] = []
    for seed in seeds:
        module, train_seconds = get_network(hidden, spec.l1, seed, steps, spec.rs, folder=folder, verbose=verbose)
        result = evaluate_network(module, data.x_test, data.y_test, options, data.x_train, data.y_train)
        result["seed"] = seed
        result["train_seconds"] = train_seconds
        nets.append(result)
        if verbose:
            print(f"  {network_name(hidden, spec.l1, spec.rs)} seed {seed}: acc {result['accuracy']:.2f}% "
                  f"removed {result['removed']} (inactive {result['removed_inactive']}, folded "
                  f"{result['folded_active']}, merged {result['merged_layers']}) "
                  f"{result['compression_pct']:.1f}%  analysis {result['seconds']:.1f}s "
                  f"({result['milp_solves']} MILPs, {result['timeouts']} time-outs)", flush=True)
    row: dict[str, Any] = {
        "name": network_name(hidden, spec.l1, spec.rs),
        "width": spec.width,
        "depth": depth,
        "l1": spec.l1,
        "rs": spec.rs,
        "networks": len(nets),
        "seeds": list(seeds),
        "accuracy_mean": _mean([n["accuracy"] for n in nets]),
        "accuracy_sem": sem([n["accuracy"] for n in nets]),
        "accuracy_after_mean": _mean([n["accuracy_after"] for n in nets]),
        "accuracy_after_sem": sem([n["accuracy_after"] for n in nets]),
        "accuracy_float32_mean": _mean([n["accuracy_float32"] for n in nets]),
        "max_abs_diff": max(n["max_abs_diff"] for n in nets),
    }
    for k in range(depth):
        values = [n["removed"][k] for n in nets]
        row[f"removed_layer{k + 1}"] = _mean(values)
        row[f"removed_layer{k + 1}_sem"] = sem(values)
    comp = [n["compression_pct"] for n in nets]
    secs = [n["seconds"] for n in nets]
    train = [n["train_seconds"] for n in nets if not math.isnan(n["train_seconds"])]
    row.update({
        "compression_pct": _mean(comp),
        "compression_pct_sem": sem(comp),
        "removed_inactive": _layer_means(nets, "removed_inactive"),
        "folded_active": _layer_means(nets, "folded_active"),
        "merged_layers_mean": _mean([len(n["merged_layers"]) for n in nets]),
        "stable_active": _layer_means(nets, "stable_active"),
        "stable_inactive": _layer_means(nets, "stable_inactive"),
        "unstable": _layer_means(nets, "unstable"),
        "train_accuracy_mean": _mean([n["train_accuracy"] for n in nets]),
        "inactive_on_train": _layer_means(nets, "inactive_on_train"),
        "active_on_train": _layer_means(nets, "active_on_train"),
        "weight_l1_mean": _mean([n["weight_l1"] for n in nets]),
        "seconds_median": float(statistics.median(secs)),
        "seconds_max": max(secs),
        "milp_solves_mean": _mean([n["milp_solves"] for n in nets]),
        "timeouts": int(sum(n["timeouts"] for n in nets)),
        "train_seconds_median": float(statistics.median(train)) if train else None,
        "paper": spec.paper,
        "note": spec.note,
        "data": data.description,
        "train_images": int(data.x_train.shape[0]),
        "steps": steps,
        "machine": facts,
        "threads": options.threads,
        "solvers": sorted({n["solver"] for n in nets}),
        "domain": f"[0, 1]^{data.x_test.shape[1]}",
        "stability_options": {"time_limit": options.time_limit, "margin": options.margin,
                              "samples": options.samples, "workers": options.workers},
        "per_network": nets,
    })
    return row


# -- outputs ------------------------------------------------------------------------
def _pm(mean: float, err: float, digits: int = 1) -> str:
    return f"{mean:.{digits}f} ± {err:.{digits}f}"


def _paper_value(row: dict[str, Any], key: str, digits: int = 1) -> str:
    paper = row.get("paper")
    return "–" if not paper else f"{paper[key]:.{digits}f}"


def markdown(rows: list[dict[str, Any]], command: str, comment: str | None = None) -> str:
    """The table (ours beside the paper's), the data, the command, the differences."""
    if not rows:
        return "# LEO Table 1\n\nno rows\n"
    n_nets = sorted({r["networks"] for r in rows})
    steps = sorted({r["steps"] for r in rows})
    lines = [
        "# LEO Table 1 (Serra, Kumar, Ramalingam, CPAIOR 2020), reproduced",
        "",
        f"Produced by `{command}`.",
        "",
        f"- **Networks**: 784-w-w-10 MLPs, {'/'.join(map(str, n_nets))} per row (seeds 0..N−1); "
        "values are mean ± standard error over them (analysis time: median).",
        f"- **Training**: the paper's recipe (`leo.train` defaults: SGD, lr 0.01, momentum 0.9, batch 128, "
        f"lr × 0.1 at 50/120 and 100/120 of the run, Kaiming-normal init, l1 penalty λ·Σ|W|) for "
        f"{', '.join(f'{s:,}' for s in steps)} SGD steps"
        + (" — the paper's 120 epochs × 60,000 images / 128 = 56,250 steps, kept as a number of steps"
           + (f" (≈ {PAPER_STEPS * 128 / rows[0]['train_images']:.0f} epochs of our {rows[0]['train_images']:,} "
              "training images)." if rows[0].get("train_images") else ".") if steps == [PAPER_STEPS] else "."),
        f"- **Data**: {rows[0]['data']}.",
        f"- **Analysis**: every hidden unit proven stably active / inactive or shown unstable over "
        f"{rows[0]['domain']} by `leo.stability.analysis.analyse` (bounds, witnesses, one MILP per open unit with "
        f"{', '.join(sorted({s for r in rows for s in r.get('solvers', []) if s})) or 'the default solver'}, "
        f"{rows[0]['stability_options']['time_limit']:g} s per solve), then `leo.reduction.reduce.reduce`.",
        "- **Removed** = original width − width after reduction: stably inactive units deleted + stably "
        "active units folded (their weight rows are linear combinations of other active rows) + all units "
        "of a layer merged away (all of its units stably active). **Compression** = removed / all hidden units.",
        "- **Accuracy** is on the test split, computed with the original network and again with the "
        "compressed one; they are asserted identical (float64). Max |f − g| over the test images: "
        f"{max(r['max_abs_diff'] for r in rows):.2g}.",
    ]
    if comment:
        lines += [f"- {comment}"]
    budget = networks_note(rows)
    if budget:
        lines += [f"- {budget}"]
    lines += [
        "",
        "| width | λ (l1) | RS | acc. % ours | acc. % paper | acc. after % | removed L1 ours | paper "
        "| removed L2 ours | paper | compression % ours | paper | analysis s (median) | MILPs per net / time-outs | train s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        train = "–" if r.get("train_seconds_median") is None else f"{r['train_seconds_median']:.0f}"
        lines.append(
            f"| {r['width']} | {short(r['l1'])} | {short(r['rs']) if r['rs'] else '–'} "
            f"| {_pm(r['accuracy_mean'], r['accuracy_sem'], 2)} | {_paper_value(r, 'accuracy', 2)} "
            f"| {r['accuracy_after_mean']:.2f} "
            f"| {_pm(r['removed_layer1'], r['removed_layer1_sem'])} | {_paper_value(r, 'removed_layer1')} "
            f"| {_pm(r['removed_layer2'], r['removed_layer2_sem'])} | {_paper_value(r, 'removed_layer2')} "
            f"| {_pm(r['compression_pct'], r['compression_pct_sem'])} | {_paper_value(r, 'compression_pct')} "
            f"| {r['seconds_median']:.1f} | {r['milp_solves_mean']:.1f} / {r['timeouts']} | {train} |"
        )
    lines += [
        "",
        "Train s: median training time of the row's networks, as measured when each was trained (networks are "
        "cached in `benchmarks/networks/`, not committed, and reused by later runs of the command). "
        "Analysis s: `analyse` wall time per network, median.",
        "",
        "How the removed units split (means per network, layer 1 / layer 2):",
        "",
        "| row | stably inactive | stably active | unstable | deleted inactive | folded active | layers merged "
        "| inactive on all train images | active on all train images | train acc. % | Σ\\|W\\| |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        def pair(key: str) -> str:
            return " / ".join(f"{v:.1f}" for v in r[key])
        lines.append(f"| {r['name']} | {pair('stable_inactive')} | {pair('stable_active')} | {pair('unstable')} "
                     f"| {pair('removed_inactive')} | {pair('folded_active')} | {r['merged_layers_mean']:.1f} "
                     f"| {pair('inactive_on_train')} | {pair('active_on_train')} | {r['train_accuracy_mean']:.2f} "
                     f"| {r['weight_l1_mean']:.0f} |")
    notes = [r for r in rows if r.get("note")]
    if notes:
        lines += ["", "Rows past the paper:", ""]
        lines += [f"- {r['name']}: {r['note']}" for r in notes]
    lines += ["", "## Differences from the paper", ""]
    lines += differences(rows)
    return "\n".join(lines) + "\n"


def networks_note(rows: list[dict[str, Any]], default: int = 5) -> str | None:
    """What fewer than ``default`` networks per row cost and would have cost, from the
    measured times (None if not fewer)."""
    n = min(r["networks"] for r in rows)
    if n >= default:
        return None
    per_net = 0.0
    for r in rows:
        train = [x["train_seconds"] for x in r["per_network"] if not math.isnan(x["train_seconds"])]
        per_net += (float(np.mean(train)) if train else 0.0) + float(np.mean([x["seconds"] for x in r["per_network"]]))
    where = machine_text(rows[0])
    return (f"{n} networks per row instead of the script's default {default}. Training and analysing one network "
            f"of every row took {per_net / 60:.0f} min (measured: the train s column plus the analyses"
            + (f"; {where}" if where else "") + f"), so {n} per row took ≈ {n * per_net / 60:.0f} min and "
            f"{default} per row would take ≈ {default * per_net / 60:.0f} min.")


def machine_text(row: dict[str, Any]) -> str | None:
    """Where a row was measured, as recorded when it ran (None for rows from before that)."""
    m = row.get("machine")
    if not m:
        return None
    load = ", ".join(f"{x:.2f}" for x in m.get("load_average", []))
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, load average {load} when the row started, "
            f"{row.get('threads', '?')} thread(s) (`--threads`)")


def differences(rows: list[dict[str, Any]]) -> list[str]:
    """Bullet points computed from the measurements."""
    out: list[str] = []
    paper = [r for r in rows if r.get("paper")]
    train_acc = float(np.mean([r["train_accuracy_mean"] for r in rows]))
    if paper:
        d_acc = [r["accuracy_mean"] - r["paper"]["accuracy"] for r in paper]
        images = rows[0].get("train_images")
        out.append(
            f"- **Accuracy** is {abs(float(np.mean(d_acc))):.2f} points {'lower' if np.mean(d_acc) < 0 else 'higher'} "
            f"than the paper's on average over the {len(paper)} paper rows (from {min(d_acc):+.2f} to "
            f"{max(d_acc):+.2f}). Mean training accuracy: {train_acc:.2f}%"
            + (f" on {images:,} training images (the paper trained on 60,000)" if images else "") + "."
        )
        reg = [r for r in paper if r["l1"] > 0]
        if reg:
            parts = [f"{r['name']} {r['compression_pct']:.1f}% vs {r['paper']['compression_pct']:g}%" for r in reg]
            timeouts = sum(r["timeouts"] for r in paper)
            out.append(
                "- **Compression** at the paper's λ > 0 (ours vs paper): " + "; ".join(parts) + ". "
                f"MILP time-outs over these rows: {timeouts} (a time-out keeps the unit)"
                + (", so every unit was settled by a proof or by a witness pair of inputs." if timeouts == 0 else ".")
            )
        zero = [r for r in paper if r["l1"] == 0]
        if zero:
            out.append(
                "- **λ = 0**: " + ", ".join(f"{r['name']} {r['compression_pct']:.1f}%" for r in zero)
                + " removed (paper: 0)."
            )
    box_vs_data = [(r["name"], sum(r["stable_inactive"]), sum(r["inactive_on_train"])) for r in rows if r["l1"] > 0]
    if box_vs_data:
        out.append(
            f"- **Box versus data**: a unit is removed only if it is inactive on the whole box {rows[0]['domain']}, "
            "not just on images. Proven stably inactive vs inactive on all "
            + (f"{rows[0]['train_images']:,} " if rows[0].get("train_images") else "")
            + "training images (both layers, mean per network): " + "; ".join(f"{n} {a:.1f} vs {b:.1f}" for n, a, b in box_vs_data) + "."
            + (" They coincide in every row." if all(abs(a - b) < 1e-9 for _, a, b in box_vs_data) else "")
        )
    extras = [r for r in rows if not r.get("paper")]
    if extras:
        widths = sorted({r["width"] for r in extras})
        same = [r for r in rows if r["width"] in widths and r.get("paper") and r["l1"] > 0]

        def point(r: dict[str, Any]) -> str:
            return (f"{r['name']} {r['accuracy_mean']:.2f} ± {r['accuracy_sem']:.2f}% accuracy, "
                    f"{r['compression_pct']:.1f} ± {r['compression_pct_sem']:.1f}% removed, analysis median "
                    f"{r['seconds_median']:.1f} s ({r['timeouts']} MILP time-outs)")
        out.append(
            "- **Past the paper** (ours, same width): " + "; ".join(point(r) for r in extras + same) + "."
        )
        plain = sorted((r for r in extras + same if not r["rs"]), key=lambda r: r["l1"])
        if len(plain) > 1:
            accs = [r["accuracy_mean"] for r in plain]
            out.append(
                f"  Without RS, λ from {short(plain[0]['l1'])} to {short(plain[-1]['l1'])} moves the accuracy by "
                f"at most {max(accs) - min(accs):.2f} points (standard errors up to "
                f"{max(r['accuracy_sem'] for r in plain):.2f}) while the compression goes from "
                f"{plain[0]['compression_pct']:.1f}% to {plain[-1]['compression_pct']:.1f}%."
            )
        for r in (r for r in extras if r["rs"]):
            base = next((b for b in same + extras if b["l1"] == r["l1"] and not b["rs"]), None)
            if base is not None:
                out.append(
                    f"  The RS loss (weight {short(r['rs'])}) on top of λ = {short(r['l1'])} removes "
                    f"{r['compression_pct']:.1f}% instead of {base['compression_pct']:.1f}% at "
                    f"{r['accuracy_mean'] - base['accuracy_mean']:+.2f} points of accuracy, with "
                    f"{r['milp_solves_mean']:.1f} MILPs per network instead of "
                    f"{base['milp_solves_mean']:.1f}, {r['timeouts']} time-outs (a time-out keeps the unit), "
                    f"median analysis {r['seconds_median']:.0f} s instead of {base['seconds_median']:.1f} s."
                )
    folded = sum(sum(r["folded_active"]) for r in rows)
    merged = sum(r["merged_layers_mean"] for r in rows)
    active = sum(sum(r["stable_active"]) for r in rows)
    removed = sum(r["removed_layer1"] + r["removed_layer2"] for r in rows)
    if folded == 0 and merged == 0:
        fold_text = (f"none of the {active:.0f} stably active units (per-network means summed over the rows) "
                     "could be folded — their weight rows were linearly independent in every network — and no "
                     "layer was stable as a whole, so every removed unit is a stably inactive unit deleted")
    else:
        fold_text = (f"of the {removed:.1f} units removed (per-network means summed over the rows), {folded:.1f} "
                     f"are stably active units folded into their neighbours and {merged:.1f} layers were merged "
                     "away; the rest are stably inactive units deleted")
    out.append(
        f"- **Counting**: {fold_text}. Stably active units stay unless their weight rows are linearly dependent "
        "(LEO's rule)."
    )
    out.append(analysis_times(rows))
    return out


def analysis_times(rows: list[dict[str, Any]]) -> str:
    """Where the analysis times were measured, from what the rows recorded when they ran."""
    limits = sorted({r["stability_options"]["time_limit"] for r in rows})
    solvers = sorted({s for r in rows for s in r.get("solvers", []) if s})
    where = machine_text(rows[0])
    return ("- **Analysis times**: the paper's come from Gurobi on its hardware, one MILP per unit. Here: "
            f"{', '.join(solvers) or 'solver not recorded'}, {'/'.join(f'{t:g}' for t in limits)} s per solve, "
            f"{_mean([r['milp_solves_mean'] for r in rows]):.1f} solver calls per network on average over the rows"
            + (f"; measured on {where}" if where else "") + ".")


def plot(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Compression % against accuracy %: ours (filled, with standard errors) and the paper's (hollow)."""
    import matplotlib  # noqa: PLC0415 - optional dependency

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    colours = {25: "tab:blue", 50: "tab:orange", 100: "tab:green"}
    fig, ax = plt.subplots(figsize=(10, 6))
    seen: set[str] = set()

    def label(text: str) -> str | None:
        if text in seen:
            return None
        seen.add(text)
        return text

    for r in sorted(rows, key=lambda r: (r["width"], r["paper"] is None, r["rs"], r["l1"])):
        colour = colours.get(r["width"], "tab:gray")
        tag = f"λ={short(r['l1'])}" + (f"+RS {short(r['rs'])}" if r["rs"] else "")
        if r.get("paper"):
            marker, kind = "o", "ours"
        elif r["rs"]:
            marker, kind = "D", "ours, l1 + RS loss"
        else:
            marker, kind = "^", "ours, λ past the paper"
        ax.errorbar(r["accuracy_mean"], r["compression_pct"], xerr=r["accuracy_sem"],
                    yerr=r["compression_pct_sem"], fmt=marker, color=colour, capsize=2, ms=7,
                    label=label(f"2x{r['width']} {kind}"))
        ax.annotate(tag, (r["accuracy_mean"], r["compression_pct"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=7, color=colour)
        if r.get("paper"):
            p = r["paper"]
            ax.plot(p["accuracy"], p["compression_pct"], "s", mfc="none", mec=colour, ms=8,
                    label=label(f"2x{r['width']} paper (LEO Table 1)"))
            ax.annotate(tag, (p["accuracy"], p["compression_pct"]), textcoords="offset points",
                        xytext=(6, -9), fontsize=7, color=colour, alpha=0.7)
            ax.plot([p["accuracy"], r["accuracy_mean"]], [p["compression_pct"], r["compression_pct"]],
                    ":", color=colour, lw=0.8)
    ax.set_xlabel("test accuracy (%)")
    ax.set_ylabel("compression (% of hidden units removed)")
    steps = sorted({r["steps"] for r in rows})
    ax.set_title(f"LEO Table 1: compression vs accuracy, domain [0,1]^784 "
                 f"({'/'.join(str(r) for r in sorted({r['networks'] for r in rows}))} nets/row, "
                 f"{'/'.join(f'{s:,}' for s in steps)} steps)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.08, y=0.08)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="hollow: paper; filled: ours",
              title_fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)


# -- command line ---------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.table1", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", type=int, default=5, help="networks per row, seeds 0..N-1 (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help=f"one network per row, {QUICK_STEPS:,} steps, {QUICK_TIME_LIMIT:g} s per MILP; "
                             "writes to a temporary folder unless paths are given")
    parser.add_argument("--steps", type=int, default=None, help=f"SGD steps (default {PAPER_STEPS:,}, the paper's)")
    parser.add_argument("--rows", nargs="+", type=parse_row, default=None, metavar="WIDTH:L1[:RS]",
                        help="rows to run (default: the paper's nine, then the rows past the paper)")
    parser.add_argument("--paper-only", action="store_true", help="only the paper's nine rows")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds per MILP solve (default 60)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render the markdown and plot from a JSON written earlier (no training)")
    parser.add_argument("--comment", default=None, help="a sentence added to the markdown (e.g. why N networks)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="threads for torch, BLAS and HiGHS, training and analysis (leo.core.threads; 0: one per core)")
    args = parser.parse_args(argv)
    if args.networks < 1:
        parser.error("--networks must be at least 1")

    networks = 1 if args.quick else args.networks
    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else PAPER_STEPS)
    time_limit = args.time_limit if args.time_limit is not None else (QUICK_TIME_LIMIT if args.quick else 60.0)
    set_threads(args.threads)  # training too: the same policy as the analysis
    options = StabilityOptions(time_limit=time_limit, threads=args.threads)
    rows = args.rows if args.rows else (list(PAPER_ROWS) if args.paper_only else list(ALL_ROWS))
    out_dir = Path(tempfile.mkdtemp(prefix="leo-table1-quick-")) if args.quick else RESULTS
    json_path = args.json or out_dir / "table1.json"
    md_path = args.markdown or out_dir / "table1.md"
    png_path = args.plot or out_dir / "table1.png"
    command = "python -m benchmarks.table1 " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                   else sys.argv[1:]))
    if args.from_json is not None:
        import json  # noqa: PLC0415

        results = json.loads(args.from_json.read_text())
        original = results[0].get("command") if results else None
        if not original:  # rebuilt from the rows: the default rows, N networks, S steps
            original = f"python -m benchmarks.table1 --networks {results[0]['networks']}" + (
                f" --steps {results[0]['steps']}" if results[0]["steps"] != PAPER_STEPS else "")
        write_text(md_path, markdown(results, original, args.comment))
        plot(results, png_path)
        print(f"wrote {md_path}, {png_path} from {args.from_json}")
        return 0
    data = mnist()
    print(f"data: {data.description}\n{len(rows)} rows x {networks} networks, {steps:,} steps each", flush=True)
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    for spec in rows:
        print(f"row {spec.key}", flush=True)
        results.append(run_row(spec, range(networks), steps, options, verbose=True))
        r = results[-1]
        r["command"] = command.strip()
        print(f"  => acc {_pm(r['accuracy_mean'], r['accuracy_sem'], 2)}%, removed "
              f"{r['removed_layer1']:.1f} / {r['removed_layer2']:.1f}, compression {r['compression_pct']:.1f}%, "
              f"analysis median {r['seconds_median']:.1f}s  [{time.perf_counter() - start:.0f}s so far]", flush=True)
        write_json(json_path, results)  # after every row: a long run can be followed and survives a stop
    note = networks_note(results)
    if note:
        for row in results:
            row["networks_note"] = note
        write_json(json_path, results)
    write_text(md_path, markdown(results, command.strip(), args.comment))
    plot(results, png_path)
    print(f"wrote {json_path}, {md_path}, {png_path} in {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
