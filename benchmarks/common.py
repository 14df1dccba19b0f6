"""Shared helpers of the benchmark scripts: cached training, names, atomic writers.

Trained networks are cached as state_dicts under ``benchmarks/networks/`` (ignored by
git), one file per (architecture, l1, seed, steps, rs), with a sidecar ``.json``
holding the training time and the data description, so reruns reuse them.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leo.data import MnistData, load_mnist
from leo.io.files import atomic_write
from leo.train import TrainOptions, init_mlp, train_mlp

ROOT = Path(__file__).resolve().parent
NETWORKS = ROOT / "networks"
RESULTS = ROOT / "results"


@functools.lru_cache(maxsize=1)
def mnist() -> MnistData:
    """MNIST as ``leo.data.load_mnist`` gives it, loaded once per process."""
    return load_mnist()


def short(value: float) -> str:
    """A compact number for names: 0.0001 -> '1e-4', 0.0005 -> '5e-4', 0 -> '0', 0.5 -> '0.5'."""
    if value == 0:
        return "0"
    text = f"{value:g}"
    if "e" in text or abs(value) < 1e-2:
        mantissa, exponent = f"{value:.6e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return text


def network_name(hidden: Sequence[int], l1: float, rs: float = 0.0) -> str:
    """``2x100-l1=1e-4`` (``100-50-l1=...`` when the widths differ; ``-rs=...`` when used)."""
    hidden = tuple(int(h) for h in hidden)
    arch = f"{len(hidden)}x{hidden[0]}" if len(set(hidden)) == 1 else "-".join(map(str, hidden))
    name = f"{arch}-l1={short(l1)}"
    return f"{name}-rs={short(rs)}" if rs else name


def network_path(hidden: Sequence[int], l1: float, seed: int, steps: int, rs: float = 0.0,
                 folder: Path | None = None) -> Path:
    """Cache file: ``{hidden joined by x}-l1={l1}-seed={seed}-steps={steps}[-rs={rs}].pt``."""
    stem = f"{'x'.join(str(int(h)) for h in hidden)}-l1={l1:g}-seed={seed}-steps={steps}"
    if rs:
        stem += f"-rs={rs:g}"
    return (folder if folder is not None else NETWORKS) / f"{stem}.pt"


def get_network(hidden: tuple[int, ...], l1: float, seed: int, steps: int, rs: float = 0.0,
                folder: Path | None = None, verbose: bool = False) -> tuple[nn.Sequential, float]:
    """The network trained with the paper's recipe (``leo.train`` defaults) on the MNIST
    training split, from the cache when there; returns it and its training seconds
    (as measured when it was trained)."""
    path = network_path(hidden, l1, seed, steps, rs, folder)
    meta_path = path.with_suffix(".json")
    data = mnist()
    options = TrainOptions(hidden=tuple(hidden), l1=l1, rs=rs, steps=steps, seed=seed)
    if path.is_file():
        module = init_mlp((data.x_train.shape[1], *options.hidden, int(data.y_train.max()) + 1), seed)
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        module.eval()
        seconds = float("nan")
        if meta_path.is_file():
            seconds = float(json.loads(meta_path.read_text()).get("train_seconds", float("nan")))
        return module, seconds
    if verbose:
        print(f"  training {path.name} ...", flush=True)
    start = time.perf_counter()
    module = train_mlp(data.x_train, data.y_train, options)
    seconds = time.perf_counter() - start
    with atomic_write(path) as tmp:
        torch.save(module.state_dict(), tmp)
    write_json(meta_path, {"train_seconds": seconds, "data": data.description, "hidden": list(hidden),
                           "l1": l1, "rs": rs, "seed": seed, "steps": steps})
    return module, seconds


def mnist_images(x: np.ndarray) -> torch.Tensor:
    """Flat MNIST rows as the [n, 1, 28, 28] float32 batch a CNN takes."""
    return torch.tensor(np.array(x), dtype=torch.float32).reshape(-1, 1, 28, 28)


def random_batches(steps: int, size: int = 128) -> Callable[[int, torch.Generator], Iterator[torch.Tensor]]:
    """``steps`` batches of ``size`` training indices drawn with replacement (SGD steps)."""
    def batches(n: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
        for _ in range(steps):
            yield torch.randint(n, (size,), generator=gen)
    return batches


def epoch_batches(epochs: int, size: int = 128) -> Callable[[int, torch.Generator], Iterator[torch.Tensor]]:
    """``epochs`` passes over the training set, each in a fresh random order, in batches of ``size``."""
    def batches(n: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
        for _ in range(epochs):
            yield from torch.randperm(n, generator=gen).split(size)
    return batches


def train_cnn(model: nn.Sequential, path: Path, batches: Callable[[int, torch.Generator], Iterable[torch.Tensor]],
              optimiser: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer], l1: float, seed: int,
              penalty: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """``model`` (built, seeded, by the caller) loaded from ``path`` when cached, else trained on
    the fixed MNIST split and saved there; left in eval mode; its test accuracy.

    Training: one ``optimiser`` step per batch of indices from ``batches(n, generator)`` (the
    generator seeded with ``seed``) on cross-entropy + ``l1`` times every weight's l1 norm
    (+ ``penalty(x_batch)``), the one loop of ``benchmarks.cnn`` and ``benchmarks.cnn_scale``."""
    data = mnist()
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        x, y = mnist_images(data.x_train), torch.tensor(np.array(data.y_train), dtype=torch.long)
        opt = optimiser(model.parameters())
        gen = torch.Generator().manual_seed(seed)
        weights = [m.weight for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
        for idx in batches(len(x), gen):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx]) + l1 * sum(w.abs().sum() for w in weights)
            if penalty is not None:
                loss = loss + penalty(x[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with atomic_write(path) as tmp:
            torch.save(model.state_dict(), tmp)
    model.eval()
    with torch.no_grad():
        return float((model(mnist_images(data.x_test)).argmax(1).numpy() == data.y_test).mean())


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (numpy scalars and arrays allowed)."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_plain(data), indent=2) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write a text file (markdown, logs) atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text if text.endswith("\n") else text + "\n")


def sem(values: Sequence[float]) -> float:
    """Standard error of the mean (sample standard deviation / sqrt(n)); 0 for one value."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.std(ddof=1) / np.sqrt(arr.size)) if arr.size > 1 else 0.0


def git_commit() -> str:
    """leo's git commit for the record ("-dirty" with uncommitted changes to tracked files)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("-dirty" if dirty else "")
