"""A MNIST CNN of ~10k ReLU units through ``leo verify`` over [0,1]^784 (issue 15's target:
analysed within 120 s on this machine, units left open reported, never claimed).

The network: conv 32 channels 3x3 stride 2 (32x14x14 = 6272 units), conv 64 channels 3x3
stride 2 (64x7x7 = 3136), dense 100, dense 10: 9,508 ReLU units. ``--quick``: conv 8 / 16
channels and dense 32 (2,384 units) with a 30 s budget. Trained briefly with plain torch on
``leo.data``'s fixed MNIST split (Adam, batches of 128, an l1 penalty on every weight so that
units become stable), cached under ``benchmarks/networks``, exported to ONNX, then
``leo verify NET.onnx --lower 0 --upper 1 --time-budget B --json REPORT`` runs as a subprocess
under ``/usr/bin/time -v``: total seconds, peak memory, seconds per phase (from the progress
lines on stderr), and per layer the units stable (active, inactive), unstable with a witness,
and open (not proven either way: budget, time-out).

    python -m benchmarks.cnn_scale              # writes benchmarks/results/cnn-scale.{json,md}
    python -m benchmarks.cnn_scale --quick      # writes benchmarks/results/cnn-scale-quick.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import epoch_batches, train_cnn

NETWORKS = Path(__file__).parent / "networks"
RESULTS = Path(__file__).parent / "results"


def cnn(quick: bool) -> nn.Sequential:
    c1, c2, d = (8, 16, 32) if quick else (32, 64, 100)
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(c2 * 7 * 7, d), nn.ReLU(), nn.Linear(d, 10),
    )


def train(quick: bool, epochs: int, l1: float, seed: int = 0) -> tuple[nn.Sequential, float, Path]:
    """The CNN trained on the fixed split (cached), its test accuracy, and its ONNX file:
    ``epochs`` passes of Adam (lr 1e-3) in batches of 128 with the l1 penalty."""
    name = f"cnn-scale{'-quick' if quick else ''}-l1{l1:g}-e{epochs}-seed{seed}"
    torch.manual_seed(seed)
    model = cnn(quick)
    acc = train_cnn(model, NETWORKS / f"{name}.pt", epoch_batches(epochs), lambda p: torch.optim.Adam(p, lr=1e-3),
                    l1, seed)
    onnx_path = NETWORKS / f"{name}.onnx"
    if not onnx_path.is_file():
        torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False,
                          input_names=["x"], output_names=["y"])
    return model, acc, onnx_path


def _phase_seconds(stderr: str) -> dict[str, float]:
    """Seconds per phase, summed over layers, from the progress bars on stderr: each bar
    shows its layer's phase and elapsed time ([mm:ss], whole seconds); a phase runs from
    its first bar to the first bar of the layer's next phase."""
    bar = re.compile(r"layer (\d+)(?: \([^)]*\))?(?: ([A-Za-z -]+?))?:\s+\d+%.*?\[(\d+):(\d+)")
    marks: dict[int, list[tuple[str, int]]] = {}
    for segment in re.split(r"[\r\n]", stderr):
        m = bar.search(segment)
        if m:
            layer, phase = int(m.group(1)), (m.group(2) or "done").strip().lower()
            seconds = 60 * int(m.group(3)) + int(m.group(4))
            seen = marks.setdefault(layer, [])
            if not seen or seen[-1][0] != phase:
                seen.append((phase, seconds))
    out: dict[str, float] = {}
    for seen in marks.values():
        for (phase, t0), (_, t1) in zip(seen, seen[1:]):
            out[phase] = out.get(phase, 0) + t1 - t0
    return out


def verify(onnx_path: Path, budget: float, time_limit: float) -> dict[str, object]:
    """``leo verify`` as a subprocess under /usr/bin/time -v: its report, seconds and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = ["leo", "verify", str(onnx_path), "--lower", "0", "--upper", "1", "--time-budget", f"{budget:g}",
               "--time-limit", f"{time_limit:g}", "--threads", "1", "--json", str(out)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        if proc.returncode not in (0, 3):
            raise RuntimeError(f"leo verify exited {proc.returncode}: {proc.stderr[-2000:]}")
        report_mib = out.stat().st_size / 2**20
        report = json.loads(out.read_text())
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    layers = []
    for lr in report["layers"]:
        methods: dict[str, int] = {}
        proofs = lr["proofs"]
        for p in proofs:
            methods[p["method"]] = methods.get(p["method"], 0) + 1
        active = sum(p["status"] == "active" for p in proofs)
        inactive = sum(p["status"] == "inactive" for p in proofs)
        witnessed = sum(p["status"] == "unstable" and p.get("witness") is not None for p in proofs)
        layers.append({"layer": lr["layer"], "units": len(proofs), "active": active, "inactive": inactive,
                       "unstable_witnessed": witnessed, "open": len(proofs) - active - inactive - witnessed,
                       "seconds": round(lr["seconds"], 2), "methods": methods})
    units = sum(ly["units"] for ly in layers)
    stable = sum(ly["active"] + ly["inactive"] for ly in layers)
    return {"command": " ".join(cmd), "exit_code": proc.returncode, "seconds": round(seconds, 2),
            "analysis_seconds": round(report.get("seconds", float("nan")), 2), "report_mib": round(report_mib, 1),
            "peak_rss_mib": round(int(peak.group(1)) / 1024, 1) if peak else None,
            "phase_seconds": _phase_seconds(proc.stderr), "units": units, "stable": stable,
            "unstable_witnessed": sum(ly["unstable_witnessed"] for ly in layers),
            "open": sum(ly["open"] for ly in layers), "layers": layers,
            "load_average": [round(a, 2) for a in os.getloadavg()]}


def markdown(result: dict[str, object]) -> str:
    v = result["verify"]
    lines = [f"# A {result['relu_units']:,}-unit MNIST CNN through `leo verify` over [0,1]^784\n",
             f"`{result['command']}`\n",
             f"Network: {result['architecture']}, test accuracy {result['accuracy']:.4f}; "
             f"`{v['command']}`\n",
             f"Exit code {v['exit_code']}; {v['seconds']} s in all, of which the analysis {v['analysis_seconds']} s "
             f"(the rest: start-up, reading the ONNX file, writing the {v['report_mib']} MiB JSON report), "
             f"peak memory {v['peak_rss_mib']} MiB, load average before/after "
             f"{result['load_before']} / {v['load_average']}.\n",
             f"Seconds per phase, all layers (from the progress bars, whole seconds): {v['phase_seconds']}\n",
             "| layer | units | active | inactive | unstable (witness) | open (not proven) | s | methods |",
             "|---|---|---|---|---|---|---|---|"]
    for ly in v["layers"]:
        lines.append(f"| {ly['layer']} | {ly['units']} | {ly['active']} | {ly['inactive']} | "
                     f"{ly['unstable_witnessed']} | {ly['open']} | {ly['seconds']} | {ly['methods']} |")
    lines.append(f"| all | {v['units']} | | | {v['unstable_witnessed']} | {v['open']} | | stable {v['stable']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 2.4k-unit CNN, 30 s budget")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--l1", type=float, default=1e-5)
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole verify (120; quick 30)")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per MILP solve")
    parser.add_argument("--output", default=None, help="results stem (default benchmarks/results/cnn-scale[-quick])")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    budget = args.budget if args.budget is not None else (30.0 if args.quick else 120.0)
    model, acc, onnx_path = train(args.quick, args.epochs, args.l1)
    units = sum(m.out_channels * 14 * 14 if i == 0 else m.out_channels * 49 if isinstance(m, nn.Conv2d)
                else 0 for i, m in enumerate(model))
    dense = [m.out_features for m in model if isinstance(m, nn.Linear)][:-1]
    arch = ", ".join(f"{m}" for m in model if isinstance(m, (nn.Conv2d, nn.Linear)))
    print(f"network: {units + sum(dense)} ReLU units, test accuracy {acc:.4f}, {onnx_path}", flush=True)
    load = [round(a, 2) for a in os.getloadavg()]
    v = verify(onnx_path, budget, args.time_limit)
    result = {"command": " ".join(["python -m benchmarks.cnn_scale", *argv]), "architecture": arch,
              "relu_units": units + sum(dense), "accuracy": acc, "epochs": args.epochs, "l1": args.l1,
              "budget": budget, "load_before": load, "verify": v}
    stem = Path(args.output) if args.output else RESULTS / f"cnn-scale{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
