"""Users' CNNs end to end (issue 27): each ``leo`` command a subprocess under
``/usr/bin/time``, with its wall-clock seconds, peak resident memory, the size of what it
wrote against the user's file, and the written model compared with the original on
20,000 points of the box (onnxruntime or torch against the user's own module).

Two models, as users have them:

- ``lenet``: conv 4 5x5, ReLU, MaxPool 2, conv 8 5x5, ReLU, MaxPool 2, Flatten, Linear 24,
  ReLU, Linear 10 (an ``nn.Sequential``), trained briefly on ``leo.data``'s MNIST split
  and traced with ``torch.jit.trace`` on [1, 1, 28, 28]: the user's file is the traced
  archive. ``leo compress`` on the L-inf ball of radius 0.01 around test image 0 (clipped
  to [0, 1]) with ``--time-budget 30``, in each form.
- ``cifar``: a CIFAR-sized residual CNN on 3x32x32 (conv 16 3x3, conv 16 3x3 stride 2, a
  residual block of two conv 16 3x3, conv 32 3x3 stride 2, Linear 10: five conv layers),
  built here with torch's default initialisation (no CIFAR data is needed to measure the
  pipeline) and exported with ``torch.onnx``. ``leo verify`` and ``leo compress`` in each
  form on the ball of radius 0.01 around a fixed random image, ``--time-budget 60``.

Every run has an address-space limit (``--memory-limit-gib``), so a run that would take
the shared machine's memory fails alone (its row says so) instead of swapping.

    python -m benchmarks.cnn_user            # writes benchmarks/results/cnn-user.{json,md}
    python -m benchmarks.cnn_user --quick    # lenet, flat form: benchmarks/results/cnn-user-quick.{json,md}
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.common import RESULTS, git_commit, random_batches, train_cnn, write_json, write_text

NETWORKS = Path(__file__).parent / "networks"
FORMS = ("flat", "leo", "structured")
POINTS = 20_000
EPS = 0.01
#: the --time-budget of every run, per model (seconds)
BUDGETS = {"lenet": 30.0, "cifar": 60.0}


def lenet() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 24), nn.ReLU(), nn.Linear(24, 10))


class ResidualCifar(nn.Module):
    """Five conv layers of 16-32 channels with one residual block, on 3x32x32."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.head = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(32 * 8 * 8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(torch.relu(h + self.block(h)))


def _lenet_files(folder: Path) -> tuple[nn.Module, Path, np.ndarray]:
    """The trained LeNet-like module, its traced archive, and the ball's centre (test image 0)."""
    from benchmarks.common import mnist

    torch.manual_seed(0)
    model = lenet()
    train_cnn(model, NETWORKS / "cnn-user-lenet-s600-seed0.pt", random_batches(600),
              lambda p: torch.optim.Adam(p, lr=1e-3), 1e-4, 0)
    path = folder / "pool.ts"
    torch.jit.trace(model, torch.zeros(1, 1, 28, 28)).save(str(path))
    return model, path, np.asarray(mnist().x_test[0], dtype=np.float64).reshape(1, 28, 28)


def _cifar_files(folder: Path) -> tuple[nn.Module, Path, np.ndarray]:
    torch.manual_seed(0)
    model = ResidualCifar().eval()
    path = folder / "cifar.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    centre = np.random.default_rng(0).uniform(0.0, 1.0, (3, 32, 32))
    return model, path, centre


MODELS = {"lenet": _lenet_files, "cifar": _cifar_files}


def _limit(gib: float):  # noqa: ANN202 - a preexec_fn
    def apply() -> None:
        limit = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def timed(cmd: list[str], memory_gib: float) -> dict[str, Any]:
    """``cmd`` under ``/usr/bin/time``: exit code, wall and CPU (user + system) seconds, peak
    resident MiB, the load average before it (the machine is shared), stderr's tail."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    load = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "LEO_TIME %e %M %U %S", *cmd], capture_output=True, text=True,
                          env=env, preexec_fn=_limit(memory_gib))
    seconds = time.perf_counter() - t0
    mark = [ln.split() for ln in proc.stderr.splitlines() if ln.startswith("LEO_TIME ")]
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("LEO_TIME ")][-3:]
    return {"command": " ".join(cmd), "exit_code": proc.returncode, "seconds": round(seconds, 2),
            "peak_rss_mib": round(int(mark[-1][2]) / 1024, 1) if mark else None,
            "cpu_seconds": round(float(mark[-1][3]) + float(mark[-1][4]), 2) if mark else None,
            "load_average": load, "stderr_tail": tail}


def _ball(centre: np.ndarray, n: int) -> np.ndarray:
    """``n`` points of the L-inf ball of radius ``EPS`` around ``centre``, clipped to [0, 1]
    (a tenth of them on its corners, where a difference shows first)."""
    rng = np.random.default_rng(1)
    lo, hi = np.clip(centre - EPS, 0, 1), np.clip(centre + EPS, 0, 1)
    pts = rng.uniform(lo, hi, (n, *centre.shape))
    corners = rng.integers(0, 2, (n // 10, *centre.shape)).astype(bool)
    pts[: n // 10] = np.where(corners, hi, lo)
    return pts


def _outputs(path: Path, pts: np.ndarray) -> np.ndarray:
    """The written model's outputs: onnxruntime for ONNX, torch for TorchScript."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: c.astype(np.float32)})[0] for c in np.array_split(pts, 20)])
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return np.concatenate([module(torch.tensor(c, dtype=torch.float32)).numpy() for c in np.array_split(pts, 20)])


def _match(model: nn.Module, written: Path, centre: np.ndarray) -> float:
    """Largest |original - written| over ``POINTS`` points of the ball (the user's module in torch)."""
    pts = _ball(centre, POINTS)
    with torch.no_grad():
        want = np.concatenate([model(torch.tensor(c, dtype=torch.float32)).numpy() for c in np.array_split(pts, 20)])
    return float(np.abs(_outputs(written, pts) - want).max())


def run_model(name: str, forms: tuple[str, ...], verify: bool, memory_gib: float, folder: Path) -> dict[str, Any]:
    model, user_file, centre = MODELS[name](folder)
    np.save(folder / "centre.npy", centre)
    budget = BUDGETS[name]
    box = ["--center", str(folder / "centre.npy"), "--eps", f"{EPS:g}", "--lower", "0", "--upper", "1",
           "--time-budget", f"{budget:g}", "--threads", "1", "-q"]
    row: dict[str, Any] = {"model": name, "user_file_kib": round(user_file.stat().st_size / 1024, 1),
                           "parameters": sum(p.numel() for p in model.parameters()), "budget": budget, "runs": []}
    if verify:
        run = timed(["leo", "verify", str(user_file), *box, "--json", str(folder / "report.json")], memory_gib)
        row["runs"].append({"command_kind": "verify", **run})
        print(f"{name} verify: {_line(run)}", flush=True)
    for form in forms:
        out = folder / f"{name}-{form}.onnx"
        run = timed(["leo", "compress", str(user_file), *box, "--form", form, "-o", str(out)], memory_gib)
        if out.is_file():
            run["output_kib"] = round(out.stat().st_size / 1024, 1)
            run["ratio"] = round(out.stat().st_size / user_file.stat().st_size, 2)
            cert = out.with_name(out.name + ".cert.json")
            run["certificate_kib"] = round(cert.stat().st_size / 1024, 1) if cert.is_file() else None
            run["max_diff"] = _match(model, out, centre)
            out.unlink()
        row["runs"].append({"command_kind": f"compress --form {form}", **run})
        print(f"{name} compress --form {form}: {_line(run)}", flush=True)
    return row


def _line(run: dict[str, Any]) -> str:
    size = f", {run['output_kib']} KiB ({run['ratio']}x), max diff {run['max_diff']:.2e}" if "ratio" in run else ""
    return (f"exit {run['exit_code']}, {run['seconds']} s (cpu {run['cpu_seconds']} s, load {run['load_average']}), "
            f"peak {run['peak_rss_mib']} MiB{size}")


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Users' CNNs through leo: seconds, peak memory, written size (issue 27)\n",
             f"`{result['command']}` at commit {result['commit']}; ball of radius {EPS} clipped to [0, 1]; "
             f"{POINTS:,} points compared; memory limit {result['memory_limit_gib']} GiB per run; "
             f"whole run {result['seconds']} s.\n",
             "| model | user file KiB | params | budget s | command | exit | s | cpu s | load | peak MiB | written KiB "
             "| x user | certificate KiB | max diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        for run in row["runs"]:
            diff = f"{run['max_diff']:.2e}" if "max_diff" in run else "-"
            lines.append(f"| {row['model']} | {row['user_file_kib']} | {row['parameters']:,} | {row['budget']:g} | "
                         f"{run['command_kind']} | {run['exit_code']} | {run['seconds']} | {run['cpu_seconds']} | "
                         f"{run['load_average']} | {run['peak_rss_mib']} | "
                         f"{run.get('output_kib', '-')} | {run.get('ratio', '-')} | {run.get('certificate_kib', '-')} "
                         f"| {diff} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="lenet, flat form only")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["lenet", "cifar"])
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    parser.add_argument("--memory-limit-gib", type=float, default=8.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.models, args.forms = ["lenet"], ["flat"]
    stem = RESULTS / ("cnn-user-quick" if args.quick else "cnn-user")
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.append(run_model(name, tuple(args.forms), name == "cifar", args.memory_limit_gib, Path(tmp)))
    result = {"command": " ".join(["python -m benchmarks.cnn_user", *argv]), "commit": git_commit(),
              "memory_limit_gib": args.memory_limit_gib, "seconds": round(time.perf_counter() - started, 1),
              "rows": rows}
    write_json(args.json or stem.with_suffix(".json"), result)
    write_text(args.markdown or stem.with_suffix(".md"), markdown(result))
    return result


if __name__ == "__main__":
    main()
