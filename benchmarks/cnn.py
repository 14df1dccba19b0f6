"""Small MNIST CNNs through leo (issue 15): units proven stable, parameters kept, seconds,
over the whole domain [0,1]^784 and over local L-inf boxes around test images.

The network: conv 8 channels 3x3 stride 2 (8x14x14 = 1568 units), conv 16 channels 3x3
stride 2 (16x7x7 = 784 units), dense 64, dense 10. ``leo train`` builds MLPs only, so
it is trained here with plain torch on ``leo.data``'s fixed MNIST split, with the same
recipe as ``leo train``'s l1 rows (SGD lr 0.01, momentum 0.9, batches of 128, an l1
penalty on every weight, conv kernels included), for fewer steps (``--steps``).

Reduction is leo's flat form (stable units removed one by one; conv layers lowered to
dense matrices), so parameter counts are given as nonzero weights of the flat networks,
before and after. Two reductions of the same report: ``leo.compress``'s (LEO's: stably
active units folded when their rows depend on others, kept otherwise) and the bypass
(REDNet's: every stably active unit routed past its ReLU, ``reduce(bypass_active=True)``),
checked on 2,000 box points.

    python -m benchmarks.cnn --quick                      # one net, 1 image per eps, budget 60 s
    python -m benchmarks.cnn --json benchmarks/results/cnn.json --markdown benchmarks/results/cnn.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import leo
from leo.network import Network, channel_summary
from leo.reduce import reduce
from leo.stability import StabilityOptions

NETWORKS = Path(__file__).parent / "networks"
EPSILONS = (0.01, 0.03, 0.05)


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def train(l1: float, steps: int, seed: int = 0) -> tuple[nn.Sequential, float]:
    """The CNN trained on the fixed split (cached under benchmarks/networks), and its test accuracy."""
    from leo.data import load_mnist

    data = load_mnist()
    path = NETWORKS / f"cnn-l1{l1:g}-s{steps}-seed{seed}.pt"
    torch.manual_seed(seed)
    model = cnn()
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        x = torch.tensor(np.array(data.x_train), dtype=torch.float32).reshape(-1, 1, 28, 28)
        y = torch.tensor(np.array(data.y_train), dtype=torch.long)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        gen = torch.Generator().manual_seed(seed)
        weights = [m.weight for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
        for step in range(steps):
            idx = torch.randint(len(x), (128,), generator=gen)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx]) + l1 * sum(w.abs().sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
        NETWORKS.mkdir(exist_ok=True)
        torch.save(model.state_dict(), path)
    model.eval()
    with torch.no_grad():
        xt = torch.tensor(np.array(data.x_test), dtype=torch.float32).reshape(-1, 1, 28, 28)
        acc = float((model(xt).argmax(1).numpy() == data.y_test).mean())
    return model, acc


def _nonzeros(net: Network) -> int:
    return int(sum(np.count_nonzero(w) for ly in net.layers for w in ly.weights.values())
               + sum(np.count_nonzero(ly.bias) for ly in net.layers))


def _dead_channels(net: Network, lr) -> int | None:  # noqa: ANN001 - a LayerReport
    """Channels of a conv layer whose units are all stably inactive (None for a dense layer)."""
    summary = channel_summary(net.layers[lr.layer - 1], [p.verdict for p in lr.proofs])
    return None if summary is None else sum(c.get("inactive", 0) == c["units"] for c in summary)


def run_box(model: nn.Module, lower: np.ndarray, upper: np.ndarray, options: StabilityOptions) -> dict[str, object]:
    """Compress on one box: per layer units and stable units, unproven units, parameters, seconds."""
    t0 = time.perf_counter()
    result = leo.compress(model, lower, upper, options)
    seconds = time.perf_counter() - t0
    layers = [{"layer": lr.layer, "units": lr.width, "active": len(lr.active), "inactive": len(lr.inactive),
               "unproven": sum(p.witness is None and p.verdict == "unstable" for p in lr.proofs),
               "dead_channels": _dead_channels(result.original, lr)}
              for lr in result.report.layers]
    units = sum(ly["units"] for ly in layers)
    bypass = reduce(result.original, result.report, bypass_active=True).network
    pts = result.report.box.sample(2000, np.random.default_rng(0))
    bypass_diff = float(np.abs(bypass(pts) - result.original(pts)).max())
    stable = sum(ly["active"] + ly["inactive"] for ly in layers)
    return {"seconds": round(seconds, 2), "dead_channels": [ly["dead_channels"] for ly in layers], "analysis_seconds": round(result.report.seconds, 2),
            "units": units, "stable": stable, "stable_pct": round(100 * stable / units, 1),
            "unproven": sum(ly["unproven"] for ly in layers), "layers": layers,
            "hidden_after": sum(result.network.hidden),
            "flat_nonzeros_before": _nonzeros(result.original), "flat_nonzeros_after": _nonzeros(result.network),
            "max_diff_sampled": result.check.max_diff, "bypass_hidden": sum(bypass.hidden),
            "bypass_nonzeros": _nonzeros(bypass), "bypass_max_diff": bypass_diff}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one network, 1 image per epsilon, a 60 s budget per box")
    parser.add_argument("--l1", type=float, nargs="+", default=[1e-4])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--images", type=int, default=5, help="test images per epsilon")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds for the analysis of one box")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per MILP solve")
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    leo.set_threads(1)
    if args.quick:
        args.l1, args.steps, args.images, args.budget = args.l1[:1], min(args.steps, 1500), 1, 60.0
    from leo.data import load_mnist

    data = load_mnist()
    options = StabilityOptions(time_limit=args.time_limit, time_budget=args.budget)
    rows = []
    for l1 in args.l1:
        model, acc = train(l1, args.steps)
        params = sum(p.numel() for p in model.parameters())
        row: dict[str, object] = {"l1": l1, "steps": args.steps, "accuracy": acc, "module_parameters": params}
        shape = (1, 1, 28, 28)
        row["domain"] = run_box(model, np.zeros(shape), np.ones(shape), options)
        print(f"l1={l1:g} acc={acc:.4f} [0,1]^784: {_line(row['domain'])}", flush=True)
        local = []
        for eps in EPSILONS:
            for i in range(args.images):
                x = data.x_test[i].reshape(shape).astype(np.float64)
                box = run_box(model, np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1), options)
                box.update({"eps": eps, "image": i})
                local.append(box)
                print(f"  eps={eps} image {i}: {_line(box)}", flush=True)
        row["local"] = local
        rows.append(row)
    result = {"command": " ".join(["python -m benchmarks.cnn", *argv]), "budget": args.budget,
              "time_limit": args.time_limit, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(result))
    return result


def _line(box: dict[str, object]) -> str:
    return (f"{box['stable']}/{box['units']} stable ({box['stable_pct']}%), {box['unproven']} unproven, "
            f"hidden {box['units']} -> {box['hidden_after']}, flat nonzeros {box['flat_nonzeros_before']} -> "
            f"{box['flat_nonzeros_after']} (bypass: hidden {box['bypass_hidden']}, nonzeros "
            f"{box['bypass_nonzeros']}), {box['seconds']} s")


def _channels(box: dict[str, object]) -> str:
    return ", ".join("-" if c is None else str(c) for c in box.get("dead_channels", []))  # type: ignore[union-attr]


def markdown(result: dict[str, object]) -> str:
    lines = [f"# MNIST CNN (conv8 s2, conv16 s2, dense 64, 10) through leo\n",
             f"`{result['command']}`; budget {result['budget']} s per box, {result['time_limit']} s per MILP.\n",
             "| l1 | acc | box | units | stable | unproven | dead channels per layer | hidden after "
             "| flat nonzeros before -> after | bypass: hidden, nonzeros | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:  # type: ignore[union-attr]
        boxes = [("[0,1]^784", row["domain"])] + [(f"eps {b['eps']} img {b['image']}", b) for b in row["local"]]
        for name, b in boxes:
            lines.append(f"| {row['l1']:g} | {row['accuracy']:.4f} | {name} | {b['units']} | {b['stable']} "
                         f"({b['stable_pct']}%) | {b['unproven']} | {_channels(b)} | {b['hidden_after']} | "
                         f"{b['flat_nonzeros_before']} -> {b['flat_nonzeros_after']} | {b['bypass_hidden']}, "
                         f"{b['bypass_nonzeros']} | {b['seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
