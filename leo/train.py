"""Train MLPs whose ReLUs are easy to prove stable: l1-regularised SGD, optionally with
the ReLU-stability (RS) loss of Xiao et al. (ICLR 2019).

The recipe is the one of the LEO paper (Serra, Kumar, Ramalingam, CPAIOR 2020):
SGD with learning rate 0.01, momentum 0.9, batches of 128, the learning rate
multiplied by 0.1 after 50 and 100 of 120 epochs, Kaiming-normal weights and zero
biases, and a penalty ``l1 * sum |W|`` over the weights of every Linear layer.

The schedule is counted in *steps*, not epochs: the l1 penalty pulls the weights
once per step, so how sparse (and how stable) a network ends up depends on the
number of steps. The paper's 120 epochs over 60,000 images with batches of 128 are
120 x 60,000 / 128 = 56,250 steps (``PAPER_STEPS``); on a smaller training set
(e.g. the 8,000-image split of ``leo.data``) we keep that number of steps, which is
more epochs. The learning rate drops at 50/120 and 100/120 of the steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leo.bounds.relaxation import interval_step
from leo.core.network import Network
from leo.errors import LeoInputError

PAPER_STEPS = 56_250  # 120 epochs x 60,000 images / batch 128 (468.75 steps per epoch)
_DROPS = (50 / 120, 100 / 120)  # fractions of the steps at which lr is multiplied by 0.1


@dataclass(frozen=True)
class TrainOptions:
    """Architecture and recipe of one training run; the defaults are the paper's."""

    hidden: tuple[int, ...]
    l1: float
    rs: float = 0.0  # weight of the RS loss (0: off)
    steps: int = PAPER_STEPS
    lr: float = 0.01
    momentum: float = 0.9
    batch: int = 128
    seed: int = 0
    rs_eps: float = 0.1  # radius of the l-infinity ball the RS loss bounds, intersected with [0, 1]

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise LeoInputError(f"hidden widths must be at least 1, and there must be at least one: got {self.hidden}")
        checks = {
            "l1": self.l1 >= 0, "rs": self.rs >= 0, "rs_eps": self.rs_eps >= 0,
            "steps": self.steps >= 1, "lr": self.lr > 0, "batch": self.batch >= 1,
            "momentum": 0 <= self.momentum < 1,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise LeoInputError(f"invalid {name}={value}: l1, rs, rs_eps >= 0; steps, batch >= 1; "
                                    "lr > 0; 0 <= momentum < 1")

    def milestones(self) -> tuple[int, ...]:
        """Steps at which the learning rate is multiplied by 0.1."""
        return tuple(int(self.steps * f) for f in _DROPS)

    def learning_rate(self, step: int) -> float:
        """The learning rate at (0-based) ``step``."""
        return self.lr * 0.1 ** sum(step >= m for m in self.milestones())


@dataclass(frozen=True)
class TrainProgress:
    step: int  # steps done
    steps: int
    loss: float  # objective on the last batch (cross-entropy + penalties)
    lr: float
    seconds: float


ProgressFn = Callable[[TrainProgress], None]


# -- model -----------------------------------------------------------------
def init_mlp(sizes: Sequence[int], seed: int) -> nn.Sequential:
    """A float32 Linear/ReLU MLP with Kaiming-normal weights and zero biases (no final ReLU)."""
    generator = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        lin = nn.Linear(sizes[k], sizes[k + 1], dtype=torch.float32)
        with torch.no_grad():
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu", generator=generator)
            lin.bias.zero_()
        mods.append(lin)
        if k < len(sizes) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def _linears(module: nn.Sequential) -> list[nn.Linear]:
    return [m for m in module if isinstance(m, nn.Linear)]


def l1_norm(module: nn.Sequential) -> torch.Tensor:
    """Sum of |W| over the weights (not the biases) of every Linear layer."""
    return sum((lin.weight.abs().sum() for lin in _linears(module)), torch.zeros(()))


# -- RS loss ---------------------------------------------------------------
def interval_bounds(module: nn.Sequential, lower: torch.Tensor,
                    upper: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Interval bounds [l, u] of the pre-activations of every Linear layer followed by a ReLU.

    Per sample (rows of ``lower``/``upper``), by the interval step every bound engine uses
    (``leo.bounds.relaxation.interval_step``); the bounds stay differentiable so the RS loss
    can train on them.
    """
    bounds: list[tuple[torch.Tensor, torch.Tensor]] = []
    mods = list(module)
    lo, hi = lower, upper
    for i, mod in enumerate(mods):
        if isinstance(mod, nn.Linear):
            w, w_abs = mod.weight, mod.weight.abs()
            bias = mod.bias if mod.bias is not None else torch.zeros(mod.out_features, dtype=w.dtype)
            lo, hi = interval_step(bias, [(lo, hi, lambda v, w=w: v @ w.T, lambda v, wa=w_abs: v @ wa.T)],
                                   widen=False)
            if i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU):
                bounds.append((lo, hi))
        elif isinstance(mod, nn.ReLU):
            lo, hi = lo.clamp(min=0), hi.clamp(min=0)
        else:
            raise LeoInputError(f"the RS loss needs a Linear/ReLU network, found {type(mod).__name__}")
    return bounds


def rs_loss(module: nn.Sequential, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Xiao et al.'s ReLU-stability loss: -mean_samples sum_units tanh(1 + l*u).

    l*u > 0 for a unit whose sign is fixed over the box [x-eps, x+eps] ∩ [0, 1], so
    minimising the loss pushes units towards stability (fewer binaries in the MILP).
    """
    bounds = interval_bounds(module, (x - eps).clamp(min=0), (x + eps).clamp(max=1))
    if not bounds:
        return torch.zeros((), dtype=x.dtype)
    per_sample = sum(torch.tanh(1 + lo * hi).sum(dim=1) for lo, hi in bounds)
    return -per_sample.mean()


# -- training --------------------------------------------------------------
def _check_data(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[0] == 0:
        raise LeoInputError(f"training inputs must be n x d with n >= 1, got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise LeoInputError(f"need one label per input: {x.shape[0]} inputs, labels of shape {y.shape}")
    if not np.isfinite(x).all():
        raise LeoInputError("training inputs contain NaN or infinite values")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise LeoInputError("labels must be integers 0 .. classes-1")
    return x.astype(np.float32), y.astype(np.int64)


def _batches(n: int, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless epochs of shuffled index batches; the last batch of an epoch may be short."""
    while True:
        order = torch.randperm(n, generator=generator)
        yield from order.split(batch)


def objective(module: nn.Sequential, x: torch.Tensor, y: torch.Tensor, options: TrainOptions) -> torch.Tensor:
    """Cross-entropy + l1 * sum|W| (+ rs * RS loss): what one SGD step descends."""
    loss = F.cross_entropy(module(x), y)
    if options.l1:
        loss = loss + options.l1 * l1_norm(module)
    if options.rs:
        loss = loss + options.rs * rs_loss(module, x, options.rs_eps)
    return loss


def train_mlp(x: np.ndarray, y: np.ndarray, options: TrainOptions,
              progress: ProgressFn | None = None) -> nn.Sequential:
    """Train an MLP ``d -> hidden... -> classes`` on ``(x, y)``; deterministic given the seed.

    Runs on one thread (restored afterwards): results do not depend on the core
    count, and runs share the machine politely.
    """
    x, y = _check_data(x, y)
    classes = int(y.max()) + 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        module = init_mlp((x.shape[1], *options.hidden, classes), options.seed)
        generator = torch.Generator().manual_seed(options.seed + 1)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.SGD(module.parameters(), lr=options.lr, momentum=options.momentum)
        every = max(1, options.steps // 100)
        start = time.perf_counter()
        batches = _batches(x.shape[0], options.batch, generator)
        module.train()
        for step in range(options.steps):
            lr = options.learning_rate(step)
            for group in opt.param_groups:
                group["lr"] = lr
            idx = next(batches)
            loss = objective(module, xt[idx], yt[idx], options)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress is not None and ((step + 1) % every == 0 or step + 1 == options.steps):
                progress(TrainProgress(step + 1, options.steps, float(loss.detach()), lr, time.perf_counter() - start))
        if not all(torch.isfinite(p).all() for p in module.parameters()):
            raise LeoInputError("training diverged (NaN or infinite weights): lower lr, l1 or rs")
        module.eval()
        return module
    finally:
        torch.set_num_threads(threads)


def accuracy(model: nn.Module | Network, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of inputs whose largest output is the label."""
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise LeoInputError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise LeoInputError("accuracy of an empty data set")
    if isinstance(model, Network):
        scores = model(x.reshape(x.shape[0], -1))
    else:
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        with torch.no_grad():
            scores = model(torch.tensor(x, dtype=dtype)).numpy()
    return float(np.mean(np.argmax(scores, axis=1) == y))


# -- command line ------------------------------------------------------------
def _parse_hidden(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in value.replace(" ", "").split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give layer widths as integers, e.g. 100,100") from None
    if not widths or any(w < 1 for w in widths):
        raise click.BadParameter(f"{value!r}: every width must be at least 1")
    return widths


@click.command("train")
@click.option("--hidden", required=True, callback=_parse_hidden, help="hidden widths, e.g. 100,100")
@click.option("--l1", type=click.FloatRange(min=0), required=True, help="l1 penalty on the weights (paper: 0 to 7e-4)")
@click.option("--rs", type=click.FloatRange(min=0), default=0.0, show_default=True, help="weight of the RS loss")
@click.option("--rs-eps", type=click.FloatRange(min=0), default=0.1, show_default=True, help="box radius of the RS loss")
@click.option("--steps", type=click.IntRange(min=1), default=PAPER_STEPS, show_default=True,
              help="SGD steps (paper: 120 epochs of 60k images = 56,250)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="where to save the model (.pt, TorchScript: loads with torch.jit.load)")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
def train_command(hidden: tuple[int, ...], l1: float, rs: float, rs_eps: float, steps: int,
                  seed: int, output: Path, force: bool) -> None:
    """Train an MNIST MLP with the LEO paper's recipe and save it as TorchScript."""
    from leo.data import load_mnist  # noqa: PLC0415 - only this command reads MNIST
    from leo.io.files import atomic_write, plan_outputs  # noqa: PLC0415

    plan_outputs([output], (), force)
    try:
        options = TrainOptions(hidden=hidden, l1=l1, rs=rs, steps=steps, seed=seed, rs_eps=rs_eps)
    except LeoInputError as exc:
        raise click.UsageError(str(exc)) from None
    data = load_mnist()
    click.echo(f"data: {data.description}")
    click.echo(f"training 784-{'-'.join(map(str, hidden))}-10, l1={l1:g}, rs={rs:g}, "
               f"{steps} steps, seed {seed}", err=True)
    shown = [0]

    def report(p: TrainProgress) -> None:
        if p.step * 10 // p.steps > shown[0] or p.step == p.steps:
            shown[0] = p.step * 10 // p.steps
            click.echo(f"  step {p.step}/{p.steps}  loss {p.loss:.4f}  lr {p.lr:g}  {p.seconds:.0f}s", err=True)

    start = time.perf_counter()
    model = train_mlp(data.x_train, data.y_train, options, progress=report)
    seconds = time.perf_counter() - start
    with atomic_write(output) as tmp:  # TorchScript records the architecture, a state_dict would not
        torch.jit.save(torch.jit.script(model), str(tmp))
    click.echo(f"train accuracy {accuracy(model, data.x_train, data.y_train):.4f}, "
               f"test accuracy {accuracy(model, data.x_test, data.y_test):.4f}, "
               f"sum|W| {float(l1_norm(model).detach()):.2f}, {seconds:.0f}s")
    click.echo(f"saved {output}")
