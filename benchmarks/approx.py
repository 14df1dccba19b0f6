"""Approximate compression next to exact (certified) compression on MNIST MLPs.

For each network 784-100-100-10 (``leo.train`` recipe on the 8,000-image training
split, 20,000 SGD steps, seed 0; cached by ``benchmarks.common.get_network``):

* exact alone (LEO: stability proven on [0, 1]^784, then reduce);
* linearity fusion (Dobler & Lemmerich 2025) at fixed activation-rate thresholds and at
  target sizes of 75 / 50 / 25 % of the paper-counted size (all but the first layer; the
  paper's fixed-size mode, see ``benchmarks/seeds.py`` for its experiments);
* linear-dependence elimination (Shah et al. 2020) at several accuracy budgets, and
  once with fine-tuning between rounds;
* PQ-index pruning as the paper defines it (SAP, unstructured, on weights; one round, no
  retraining, as ``leo compress --method pq-index`` runs it) with each scope, and our
  structured variant (units, not the paper's) after 1, 2, 3, 5, 10 rounds, and 10 rounds
  with fine-tuning;
* chains exact -> linearity, pq-index -> exact, exact -> dependence; and the
  interference of pruning with exact compression: units proven stable before and after
  pq-index.

Approximate methods fit on the training split (minus a 20 % validation share where
they need one) and are measured on the 2,000-image test split: test accuracy, the
share of test images with the same predicted class as the original (agreement), and
max |f - g| over the test images. Only the exact step is lossless. Sizes are given both
as dense parameters (what the written model stores) and as nonzero parameters (SAP keeps
the dense shape and zeroes weights).

    python -m benchmarks.approx                 # full run (minutes; trains 3 networks once)
    python -m benchmarks.approx --quick         # one short-trained network, fewer settings
    python -m benchmarks.approx --json PATH     # results to PATH (+ .md and .png beside it)
    python -m benchmarks.approx --render PATH   # redraw the .md and .png of a results file
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, get_network, mnist, network_name, write_json, write_text
from leo.approx.dependence import DependenceOptions, dependence_elimination
from leo.approx.finetune import FinetuneOptions
from leo.approx.linearity import LinearityOptions, linearity_fusion
from leo.approx.pq_index import PQOptions, count_nonzero, pq_prune
from leo.approx.report import ApproxReport, DataSplit
from leo.reduction.compose import ChainData, ChainOptions, ExactReport, chain_summary, interference, run_chain
from leo.core.domain import make_box
from leo.io.torch_io import from_module
from leo.core.network import Network
from leo.stability.analysis import StabilityOptions
from leo.train import accuracy

HIDDEN = (100, 100)
SEED = 0
STEPS = 20_000
QUICK_STEPS = 3_000
L1S = (0.0, 1e-4, 1e-3)
QUICK_L1S = (1e-3,)
STABILITY = StabilityOptions(time_limit=30.0)
FINETUNE = FinetuneOptions(steps=200, lr=0.005)


def _settings(quick: bool) -> dict[str, Any]:
    return {
        "linearity_thresholds": (1.0, 0.95, 0.8) if quick else (1.0, 0.99, 0.95, 0.9, 0.8),
        "linearity_targets": (0.5,) if quick else (0.75, 0.5, 0.25),
        "dependence_budgets": (0.01,) if quick else (0.0, 0.005, 0.01, 0.02, 0.05),
        "pq_rounds": (1, 3) if quick else (1, 2, 3, 5, 10),
        "sap_scopes": ("global",) if quick else ("global", "layer", "neuron"),
        "finetune": not quick,
    }


def _point(method: str, setting: str, rep: ApproxReport | ExactReport, net: Network, split: DataSplit,
           original: Network) -> dict[str, Any]:
    acc = accuracy(net, split.x_eval, split.y_eval)
    pred_o, pred_n = np.argmax(original(split.x_eval), 1), np.argmax(net(split.x_eval), 1)
    return {
        "method": method, "setting": setting, "lossless": rep.lossless,
        "hidden": list(net.hidden), "units": int(sum(net.hidden)), "parameters": net.num_parameters,
        "ratio": net.num_parameters / original.num_parameters,
        "nonzero": count_nonzero(net), "nonzero_ratio": count_nonzero(net) / count_nonzero(original),
        "test_accuracy": acc, "agreement": float(np.mean(pred_o == pred_n)),
        "max_abs_diff": float(np.abs(original(split.x_eval) - net(split.x_eval)).max()),
        "seconds": round(rep.seconds, 3),
        "exact_on_box": getattr(rep, "exact_on_box", None) if method != "exact" else True,
    }


def run_network(l1: float, steps: int, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    data = mnist()
    module, train_seconds = get_network(HIDDEN, l1, SEED, steps, verbose=True)
    net = from_module(module)
    split = DataSplit(data.x_train.astype(np.float64), data.y_train, data.x_test.astype(np.float64), data.y_test)
    box = make_box(0.0, 1.0, net.input_dim)
    chain_data = ChainData(split.x_fit, split.y_fit, split.x_eval, split.y_eval)
    opts = ChainOptions(stability=STABILITY)
    s = _settings(quick)
    name = network_name(HIDDEN, l1)
    log(f"{name}: {net.num_parameters} parameters, test accuracy {accuracy(net, split.x_eval, split.y_eval):.4f}")
    points: list[dict[str, Any]] = []

    def add(method: str, setting: str, out: Network, rep: ApproxReport | ExactReport) -> None:
        p = _point(method, setting, rep, out, split, net)
        points.append(p)
        log(f"  {method:<11} {setting:<22} hidden {str(p['hidden']):<12} params {p['ratio']:6.1%}  "
            f"nonzero {p['nonzero_ratio']:6.1%}  "
            f"acc {p['test_accuracy']:.4f}  agree {p['agreement']:.4f}  {p['seconds']:.1f}s")

    out, (exact,) = run_chain(net, box, ["exact"], chain_data, opts)
    add("exact", "[0,1]^784", out, exact)
    for t in s["linearity_thresholds"]:
        out, rep = linearity_fusion(net, None, options=LinearityOptions(mode="threshold", threshold=t), split=split)
        add("linearity", f"threshold {t:g}", out, rep)
    for target in s["linearity_targets"]:
        out, rep = linearity_fusion(net, None, options=LinearityOptions(rate=target), split=split)
        add("linearity", f"target {target:.0%} (t={rep.parameters['threshold_used']})", out, rep)
    for budget in s["dependence_budgets"]:
        out, rep = dependence_elimination(net, None, options=DependenceOptions(budget=budget, tol_max=0.5),
                                          split=split)
        add("dependence", f"budget {budget:g}", out, rep)
    if s["finetune"]:
        out, rep = dependence_elimination(
            net, None, options=DependenceOptions(budget=0.02, tol_max=0.5, finetune=FINETUNE), split=split)
        add("dependence+ft", "budget 0.02, 200 steps", out, rep)
    for scope in s["sap_scopes"]:
        out, rep = pq_prune(net, None, options=PQOptions(scope=scope), split=split)
        add("pq-index SAP", f"{scope}, 1 round", out, rep)
    for rounds in s["pq_rounds"]:
        out, rep = pq_prune(net, None, options=PQOptions(structure="units", beta=1.0, rounds=rounds), split=split)
        add("pq-index", f"{rounds} round(s)", out, rep)
    if s["finetune"]:
        out, rep = pq_prune(net, None, options=PQOptions(structure="units", beta=1.0, rounds=10, retrain=FINETUNE), split=split)
        add("pq-index+ft", "10 rounds, 200 steps", out, rep)

    chains: list[dict[str, Any]] = []
    chain_specs = [
        (["exact"], opts),
        (["exact", "linearity"], ChainOptions(stability=STABILITY, linearity=LinearityOptions(mode="threshold", threshold=0.99))),
        (["exact", "linearity"], ChainOptions(stability=STABILITY, linearity=LinearityOptions(only_proven=True))),
        (["pq-index", "exact"], ChainOptions(stability=STABILITY, pq_index=PQOptions(structure="units", beta=1.0, rounds=3))),
        (["exact", "dependence"], ChainOptions(stability=STABILITY, dependence=DependenceOptions(budget=0.01,
                                                                                            tol_max=0.5))),
    ]
    for methods, copts in chain_specs:
        t0 = time.perf_counter()
        final, reports = run_chain(net, box, methods, chain_data, copts)
        summary = chain_summary(net, final, reports, chain_data)
        tag = "only proven" if methods == ["exact", "linearity"] and copts.linearity.only_proven else ""
        entry = {
            "chain": " -> ".join(methods) + (f" ({tag})" if tag else ""),
            "steps": [r.to_json() for r in reports],
            "hidden": list(final.hidden), "parameters": final.num_parameters,
            "ratio": final.num_parameters / net.num_parameters,
            "nonzero": summary["parameters_count"]["nonzero_after"],
            "nonzero_ratio": summary["parameters_count"]["nonzero_after"] / summary["parameters_count"]["nonzero_before"],
            "test_accuracy": summary["data"]["accuracy_after"], "agreement": summary["data"]["agreement"],
            "max_abs_diff": summary["data"]["max_abs_diff"], "lossless": summary["lossless"],
            "stable_per_exact_step": [r.num_stable for r in reports if isinstance(r, ExactReport)],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        for r in reports:
            if r.method == "linearity":
                entry["linearity_fused"] = r.details["fused_units"]
                entry["linearity_fused_exact"] = r.details["fused_exact"]
        chains.append(entry)
        log(f"  chain {entry['chain']:<34} hidden {str(entry['hidden']):<12} params {entry['ratio']:6.1%}  "
            f"acc {entry['test_accuracy']:.4f}  agree {entry['agreement']:.4f}  lossless {entry['lossless']}  "
            f"stable {entry['stable_per_exact_step']}")
    inter = interference(net, box, chain_data, "pq-index",
                         ChainOptions(stability=STABILITY, pq_index=PQOptions(structure="units", beta=1.0, rounds=3)))
    log(f"  interference pq-index(3 rounds): stable {inter['exact_alone']['stable']} -> "
        f"{inter['exact_after_approx']['stable']} (removed {inter['stable_units_removed']}, "
        f"still stable {inter['still_stable']}/{inter['stable_units_surviving_removal']}, "
        f"newly stable {inter['newly_stable']})")
    return {
        "name": name, "l1": l1, "hidden": list(HIDDEN), "steps": steps, "seed": SEED,
        "train_seconds": train_seconds, "parameters": net.num_parameters, "units": int(sum(net.hidden)),
        "test_accuracy": accuracy(net, split.x_eval, split.y_eval),
        "points": points, "chains": chains, "interference": inter,
    }


# -- output --------------------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Approximate vs exact compression (MNIST 784-100-100-10)",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Data: {results['data']}. Networks: `leo.train` recipe, {results['steps']} SGD steps, seed {SEED}. "
        "Approximate methods fit on the training split and are measured on the test split; "
        "*agreement* = share of test images with the same predicted class as the original, "
        "*max |f-g|* over the test images. Exact = stability proven on [0, 1]^784, then reduced "
        "(lossless on the whole box). Only exact steps are lossless; every approximate report says "
        "`lossless: false`. Linearity *target*: the paper's fixed-size mode, a share of the size as the paper "
        "counts it (every parameter but the first layer's), so the whole network keeps more than the target. "
        "*nonzero*: nonzero weights and biases (PQ-index SAP zeroes weights and keeps the dense shape).",
        "",
    ]
    if "seconds" in results:
        lines += [f"The run took {results['seconds']:.0f} s on a shared 2-core machine.", ""]
    for net in results["networks"]:
        lines += [f"## {net['name']} ({net['parameters']} parameters, {net['units']} hidden units, "
                  f"test accuracy {net['test_accuracy']:.4f})", "",
                  "| method | setting | hidden | parameters | nonzero | test acc | agreement | max abs diff | lossless | s |",
                  "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]
        for p in net["points"]:
            lines.append(f"| {p['method']} | {p['setting']} | {'-'.join(map(str, p['hidden']))} | "
                         f"{p['parameters']} ({p['ratio']:.1%}) | {_nonzero(p)} | {p['test_accuracy']:.4f} | {p['agreement']:.4f} | "
                         f"{p['max_abs_diff']:.3g} | {'yes' if p['lossless'] else 'no'} | {p['seconds']:.1f} |")
        lines += ["", "Chains (*exact on box*: every step is exact on [0, 1]^784 — exact steps, or linearity fusing "
                  "only proven-active units — yet only all-exact chains are certified):", "",
                  "| chain | hidden | parameters | nonzero | test acc | agreement | max abs diff | lossless (certified) "
                  "| exact on box | stable units (per exact step) |",
                  "|---|---|---:|---:|---:|---:|---:|---|---|---|"]
        for c in net["chains"]:
            on_box = all(st["lossless"] or st.get("exact_on_box") for st in c["steps"])
            lines.append(f"| {c['chain']} | {'-'.join(map(str, c['hidden']))} | {c['parameters']} ({c['ratio']:.1%}) | "
                         f"{_nonzero(c)} | {c['test_accuracy']:.4f} | {c['agreement']:.4f} | {c['max_abs_diff']:.3g} | "
                         f"{'yes' if c['lossless'] else 'no'} | {'yes' if on_box else 'no'} | "
                         f"{', '.join(map(str, c['stable_per_exact_step']))} |")
        i = net["interference"]
        lines += ["", f"Interference (pq-index, 3 rounds, then exact): stable units {i['exact_alone']['stable']} of "
                  f"{i['exact_alone']['units']} before pruning, {i['exact_after_approx']['stable']} of "
                  f"{i['exact_after_approx']['units']} after; pruning removed {i['stable_units_removed']} stable "
                  f"units; of the {i['stable_units_surviving_removal']} stable units it kept, {i['still_stable']} "
                  f"are still proven stable; {i['newly_stable']} units became stable.", ""]
    return "\n".join(lines)


def _nonzero(row: dict[str, Any]) -> str:
    """Nonzero parameters and their share of the original's ('-' in results from before they were counted)."""
    return f"{row['nonzero']} ({row['nonzero_ratio']:.1%})" if "nonzero" in row else "-"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = results["networks"]
    size = "nonzero_ratio" if all("nonzero_ratio" in p for n in nets for p in n["points"]) else "ratio"
    # constrained layout and one legend under the panels: chain labels written beside their
    # points overlapped each other and the curves where points crowd
    fig, axes = plt.subplots(1, len(nets), figsize=(5.2 * len(nets), 5.0), squeeze=False, layout="constrained")
    styles = {"linearity": ("tab:blue", "o"), "dependence": ("tab:orange", "s"), "dependence+ft": ("tab:red", "s"),
              "pq-index": ("tab:green", "^"), "pq-index+ft": ("tab:olive", "^"), "pq-index SAP": ("tab:cyan", "v"),
              "exact": ("black", "*")}
    names = list(dict.fromkeys(c["chain"] for n in nets for c in n["chains"] if c["chain"] != "exact"))
    chain_styles = {name: (plt.get_cmap("Purples")(0.45 + 0.5 * i / max(len(names) - 1, 1)), "DPXhp<>"[i % 7])
                    for i, name in enumerate(names)}
    handles: dict[str, Any] = {}
    for ax, net in zip(axes[0], nets):
        for method, (color, marker) in styles.items():
            pts = sorted((p for p in net["points"] if p["method"] == method), key=lambda p: p[size])
            if not pts:
                continue
            line, = ax.plot([p[size] for p in pts], [p["test_accuracy"] for p in pts], marker=marker, color=color,
                            label=method, linestyle="-" if len(pts) > 1 else "none",
                            markersize=9 if method == "exact" else 5)
            handles.setdefault(method, line)
        for c in net["chains"]:
            if c["chain"] == "exact":
                continue
            color, marker = chain_styles[c["chain"]]
            mark = ax.scatter([c[size]], [c["test_accuracy"]], marker=marker, s=70, facecolors="none",
                              edgecolors=[color], linewidths=1.4, zorder=5)
            handles.setdefault("chain " + _short_chain(c["chain"]), mark)
        ax.axhline(net["test_accuracy"], color="grey", linewidth=0.7, linestyle=":")
        ax.set_title(f"{net['name']} (acc {net['test_accuracy']:.3f})")
        ax.set_xlabel("nonzero parameters kept (share of original)" if size == "nonzero_ratio"
                      else "parameters kept (share of original)")
        ax.set_ylabel("test accuracy")
        ax.set_xlim(0, 1.05)
        ax.grid(alpha=0.3)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("MNIST 784-100-100-10: size vs test accuracy (hollow: chains; E = exact, L = linearity, "
                 "PQ = pq-index, D = dependence, * = only proven units)", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _short_chain(chain: str) -> str:
    return (chain.replace("exact", "E").replace("linearity", "L").replace("pq-index", "PQ")
            .replace("dependence", "D").replace(" (only proven)", "*"))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.approx", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one network trained for fewer steps, fewer settings")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only rewrite the .md and .png of an existing results file")
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default benchmarks/results/approx.json, or approx-quick.json with "
                             "--quick); the .md and .png go beside it")
    args = parser.parse_args(argv)
    if args.render is not None:
        import json

        results = json.loads(args.render.read_text())
        write_text(args.render.with_suffix(".md"), markdown(results))
        plot(results, args.render.with_suffix(".png"))
        return results
    torch.set_num_threads(1)
    json_path = args.json or RESULTS / ("approx-quick.json" if args.quick else "approx.json")
    steps = QUICK_STEPS if args.quick else STEPS
    command = "python -m benchmarks.approx" + (" " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
                                               if (argv if argv is not None else sys.argv[1:]) else "")
    start = time.perf_counter()
    networks = [run_network(l1, steps, args.quick, lambda m: print(m, flush=True))
                for l1 in (QUICK_L1S if args.quick else L1S)]
    results = {
        "command": command, "steps": steps, "data": mnist().description, "box": "[0, 1]^784",
        "stability": {"time_limit": STABILITY.time_limit},
        "finetune": {"steps": FINETUNE.steps, "lr": FINETUNE.lr},
        "settings": _settings(args.quick), "seconds": round(time.perf_counter() - start, 1),
        "networks": networks,
    }
    write_json(json_path, results)
    write_text(json_path.with_suffix(".md"), markdown(results))
    plot(results, json_path.with_suffix(".png"))
    print(f"wrote {json_path}, {json_path.with_suffix('.md')}, {json_path.with_suffix('.png')} "
          f"in {results['seconds']:.0f}s")
    return results


if __name__ == "__main__":
    main()
