"""The ``leo`` command: verify, compress, check, export (and train).

Bad input gets one line on stderr and exit code 2; outputs are written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from leo.errors import LeoInputError
from leo.exitcodes import ExitCode

log = logging.getLogger("leo")

EXIT_BAD_INPUT = int(ExitCode.BAD_INPUT)


def _fail(message: str) -> None:
    raise LeoInputError(message)


# -- shared options -----------------------------------------------------------

def domain_options(f):  # noqa: ANN001, ANN201
    f = click.option("--upper", required=False, help="Upper bound of the input box: a number (broadcast) or a .npy vector.")(f)
    f = click.option("--lower", required=False, help="Lower bound of the input box: a number (broadcast) or a .npy vector.")(f)
    f = click.option("--vnnlib", type=click.Path(dir_okay=False), default=None,
                     help="Read the input box from a VNN-LIB file instead of --lower/--upper.")(f)
    f = click.option("--eps", type=float, default=None, expose_value=False, callback=_remember,
                     help="Radius of the L-inf ball around --center.")(f)
    f = click.option("--center", default=None, expose_value=False, callback=_remember,
                     help="A local box: the L-inf ball of radius --eps around this input (.npy, flat or shaped "
                          "like one input), clipped to --lower/--upper when given (e.g. 0 and 1 for pixels); "
                          "without them it is not clipped.")(f)
    return input_shape_option(f)


def input_shape_option(f):  # noqa: ANN001, ANN201
    """``--input-shape C,H,W``, passed to the command as ``input_shape`` (a tuple, or None)."""
    return click.option("--input-shape", "input_shape", default=None, callback=_input_shape, metavar="C,H,W",
                        help="One input's shape (no batch dimension), e.g. 1,28,28: for a model whose file "
                             "records none (a scripted TorchScript archive, a pickled module); checked against "
                             "the file's shape otherwise (ONNX, .pt2 and traced TorchScript record it).")(f)


def _input_shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    from leo.io.shape import parse_input_shape

    return parse_input_shape(value)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--center/--eps are kept in the command's context, so _box reads them for every command."""
    ctx.meta[f"leo.{param.name}"] = value
    return value


def _ball_options() -> tuple[str | None, float | None]:
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    return meta.get("leo.center"), meta.get("leo.eps")


def analysis_options(f):  # noqa: ANN001, ANN201
    f = click.option("--time-limit", type=click.FloatRange(min=0.001), default=60.0, show_default=True,
                     help="Seconds per MILP solve; a unit whose solve times out counts as unstable.")(f)
    f = click.option("--time-budget", type=click.FloatRange(min=0.0, min_open=True), default=None,
                     help="Seconds for the whole analysis. Units still open when it runs out stay unproven "
                          "and are kept, so compression stays lossless.")(f)
    f = click.option("--margin", type=click.FloatRange(min=0.0), default=1e-6, show_default=True,
                     help="A solver bound proves a sign only when it clears zero by this much.")(f)
    f = click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Processes for the MILP phase.")(f)
    f = click.option("--scheduler", default=None, help="Dask scheduler address: run the MILP phase on that cluster.")(f)
    f = click.option("--data", default=None,
                     help="Witness data: an .npz with an array x, or a named dataset (mnist).")(f)
    f = click.option("--samples", type=click.IntRange(min=0), default=2048, show_default=True,
                     help="Random box points used as witnesses of instability.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    f = click.option("--allow-pickle", is_flag=True,
                     help="Allow a pickled whole module (unpickling runs code from the file).")(f)
    f = click.option("--engine", type=click.Choice(["unit", "network"]), default="unit", show_default=True,
                     help="MILP engine: one solve per open unit, or one network-wide MILP (NeurIPS 2021).")(f)
    f = click.option("--lp-bounds", is_flag=True,
                     help="Tighten earlier layers' big-M values with LP relaxations before a layer's MILPs.")(f)
    f = click.option("--no-cuts", is_flag=True,
                     help="Skip the ideal-formulation cuts on the LP relaxation before each MILP.")(f)
    f = click.option("--no-search", is_flag=True,
                     help="Skip the neighbourhood search for a crossing before each MILP.")(f)
    f = click.option("--branch/--no-branch", default=None,
                     help="Input-splitting branch and bound (leo/bab/input_split.py) on the open units before the MILPs. "
                          "Default: on for layers whose MILPs carry 24+ binaries in networks with at most 16 "
                          "inputs (ACAS Xu: 5), where it pays; off elsewhere (images; small easy networks).")(f)
    f = click.option("--solver", type=click.Choice(["highs", "scip", "gurobi"]), default="highs", show_default=True,
                     help="MILP back-end: HiGHS, or SCIP / Gurobi where installed (pip install 'leo[scip]', "
                          "'leo[gurobi]'; gurobipy's pip licence solves small models only).")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="No progress display.")(f)
    from leo.core.threads import threads_option

    f = threads_option(f)
    return f


def _load(model: str, allow_pickle: bool = False, input_shape: tuple[int, ...] | None = None):  # noqa: ANN202
    """MODEL read with its input shape: the file's, or ``--input-shape`` (checked against the file's)."""
    from leo.io.load import load_network

    return load_network(_model_path(model), allow_pickle=allow_pickle, input_shape=input_shape)


def _box(network, lower: str | None, upper: str | None, vnnlib: str | None):  # noqa: ANN001, ANN202
    from leo.core.domain import ball, make_box

    center, eps = _ball_options()
    if (center is None) != (eps is None):
        _fail("give --center and --eps together")
    if center is not None:
        if vnnlib:
            _fail("give either --vnnlib or --center/--eps, not both")
        if (lower is None) != (upper is None):
            _fail("with --center, give both --lower and --upper (the domain to clip to) or neither")
        domain = make_box(lower, upper, network.input_dim) if lower is not None else None
        return ball(center, eps, network.input_dim, domain)
    if vnnlib:
        if lower is not None or upper is not None:
            _fail("give either --vnnlib or --lower/--upper, not both")
        from leo.io.vnnlib import read_vnnlib

        box, _ = read_vnnlib(Path(vnnlib), network.input_dim)
        return box
    if lower is None or upper is None:
        _fail("the input domain is missing: give --lower and --upper (or --vnnlib)")
    return make_box(lower, upper, network.input_dim)


def _data(spec: str | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(x, y)`` from an ``.npz`` (``y`` optional) or a named data set."""
    if spec is None:
        return None
    from leo.data import load_npz, named_dataset

    if spec.endswith(".npz"):
        return load_npz(Path(spec))
    return named_dataset(spec)


def _chain_data(spec: str | None):  # noqa: ANN202
    """Data for approximate methods: MNIST keeps its stated train/test split."""
    if spec is not None and spec.lower() == "mnist":
        from leo.data import load_mnist

        d = load_mnist()
        return (d.x_train, d.y_train, d.x_test, d.y_test)
    return _data(spec)


def _options(kw: dict[str, Any]):  # noqa: ANN202
    """The analysis options of a command; also applies its ``--threads`` to the whole
    command (leo.core.threads): the sampled check after the analysis ran 10k points through a
    784-256x4 net in 5.8 s with BLAS's default threads on the shared 2-core machine."""
    from leo.stability.analysis import StabilityOptions
    from leo.core.threads import set_threads

    set_threads(kw["threads"])
    from solvers.backend import unavailable

    why = unavailable(kw["solver"])
    if why is not None:
        raise LeoInputError(why)
    return StabilityOptions(time_limit=kw["time_limit"], margin=kw["margin"], samples=kw["samples"],
                            seed=kw["seed"], workers=kw["workers"], scheduler=kw["scheduler"], engine=kw["engine"],
                            lp_bounds=kw["lp_bounds"], cuts=not kw["no_cuts"], neighbourhood=not kw["no_search"],
                            time_budget=kw["time_budget"], threads=kw["threads"], solver=kw["solver"],
                            branch=kw["branch"])


#: Without a terminal, progress is a line per layer and phase, and at most one more per this many
#: seconds: bars redrawn into a log file wrote ~250 KB per CNN verify.
LINE_PERIOD = 10.0
#: Without --time-budget, a MILP phase that may take longer than this (open units x --time-limit)
#: gets a line saying so and naming --time-budget, when it starts.
LONG_PHASE = 120.0


class _ProgressDisplay:
    """Progress on stderr: layer and phase (bounds, witnesses, local search, LP, MILP),
    units decided and by what, elapsed seconds. No rate: units are decided in bursts
    (thousands at once by bounds, none for a minute in a MILP), so tqdm's "unit/s" and its
    ETA from that rate meant nothing. In the MILP phase, with a budget, the analysis's ETA
    (its pace, capped by the deadline); without one, the open units times --time-limit, with
    that assumption shown (a pace-based ETA rose from 337 s to 679 s in one run: MILP times
    are heavy-tailed, so the pace so far says little about the units left)."""

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n}/{total} units decided [{elapsed}{postfix}]"

    def __init__(self, quiet: bool, options: Any = None, network: Any = None, tty: bool | None = None) -> None:
        self.quiet = quiet
        self.time_limit = getattr(options, "time_limit", None)
        self.budget = getattr(options, "time_budget", None)
        self.workers = max(int(getattr(options, "workers", 1) or 1), 1)
        self.names = _layer_names(network)
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.bar = None
        self.layer = None
        self.last: tuple[Any, float] = (None, -LINE_PERIOD)
        self.warned: set[int] = set()

    def __call__(self, p) -> None:  # noqa: ANN001
        if self.quiet:
            return
        if p.layer != self.layer:
            self.close()
            self.layer = p.layer
        self._warn_if_long(p)
        if self.tty:
            self._draw(p)
        else:
            self._line(p)

    def _name(self, p) -> str:  # noqa: ANN001
        return self.names.get(p.layer, f"layer {p.layer}") if p.layer else "network MILP"

    def _status(self, p) -> list[str]:  # noqa: ANN001
        parts = [", ".join(f"{k} {v}" for k, v in sorted(p.how.items()))]
        if p.phase == "MILP" and p.eta is not None and (self.budget is not None or self.time_limit is None):
            parts.append(f"eta {p.eta:.0f} s")  # capped by the deadline (or the options are not known)
        elif p.phase == "MILP" and self.time_limit is not None:
            left = max(p.total - p.decided, 0)
            parts.append(f"eta ~{_duration(left * self.time_limit / self.workers)} "
                         f"({left} open x --time-limit {self.time_limit:g} s)")
        return [x for x in parts if x]

    def _draw(self, p) -> None:  # noqa: ANN001
        from tqdm import tqdm

        name = self._name(p)
        if self.bar is None:
            self.bar = tqdm(total=p.total, desc=name, unit="unit", file=sys.stderr, leave=True, dynamic_ncols=True,
                            bar_format=self.FORMAT)
        self.bar.set_description_str(f"{name} {p.phase}" if p.phase and p.phase != "done" else name, refresh=False)
        self.bar.n = p.decided
        self.bar.set_postfix_str("; ".join(self._status(p)), refresh=False)
        self.bar.refresh()

    def _line(self, p) -> None:  # noqa: ANN001
        import time

        key, now = (p.layer, p.phase, p.eta is not None), time.monotonic()  # the first ETA gets its line
        if key == self.last[0] and now - self.last[1] < LINE_PERIOD:
            return
        self.last = (key, now)
        status = "; ".join(self._status(p))
        click.echo(f"leo: {self._name(p)} {p.phase}: {p.decided}/{p.total} units decided"
                   f"{f' ({status})' if status else ''} [{p.seconds:.1f} s]", err=True)

    def _warn_if_long(self, p) -> None:  # noqa: ANN001
        """Once per layer, when its MILPs start with no budget and may take long: say so early."""
        if p.phase != "MILP" or self.budget is not None or self.time_limit is None or p.layer in self.warned:
            return
        self.warned.add(p.layer)
        left = max(p.total - p.decided, 0)
        worst = left * self.time_limit / self.workers
        if worst <= LONG_PHASE:
            return
        text = (f"leo: {self._name(p)}: {left} units left for MILPs, up to {self.time_limit:g} s each "
                f"(--time-limit): this can take {_duration(worst)} or more; --time-budget SECONDS bounds the whole "
                "command (units still open then are kept, unproven, so compression stays exact)")
        if self.bar is not None:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _layer_names(network: Any) -> dict[int, str]:
    """Progress names of the ReLU layers: the user's hidden-layer numbers (as in the table),
    and the layers leo made for another op (a MaxPool's) by that op."""
    if network is None:
        return {}
    from leo.stability.report import internal_op

    names, hidden = {}, 0
    for k, layer in enumerate(network.layers, start=1):
        if not layer.relu:
            continue
        op = internal_op(layer)
        if op is None:
            hidden += 1
        names[k] = f"layer {hidden}" if op is None else f"{op} after layer {hidden}"
    return names


def _write_json(path: str, payload: dict[str, Any]) -> None:
    from leo.io.files import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")


#: The verify table: "unstable" counts units seen with both signs (a witness pair), "unproven"
#: those proven neither way (a time-out, the budget), which are kept as if unstable.
_TABLE_COLUMNS = ("layer", "shape", "units", "stably active", "stably inactive", "unstable", "unproven", "seconds",
                  "decided by")


def _internal_line(report) -> str:  # noqa: ANN001
    """The ReLU layers a reader made for another op (a MaxPool's), left out of the table:
    they are not the user's hidden layers; --json has them, marked ``internal``."""
    internal = [lr for lr in report.layers if lr.internal is not None]
    if not internal:
        return ""
    ops = sorted({lr.internal for lr in internal})
    stable = sum(len(lr.active) + len(lr.inactive) for lr in internal)
    seconds = sum(lr.seconds for lr in internal)
    return (f"not in the table: {len(internal)} ReLU layers that leo made to compute {', '.join(ops)} exactly "
            f"({sum(lr.width for lr in internal)} units, {stable} stable, {seconds:.2f} s; in --json as \"internal\")")


def _print_table(report, err: bool = False) -> None:  # noqa: ANN001
    """The per-layer table and the summary line; on stderr when stdout carries JSON."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Stability on the box ({report.box.dim} inputs)")
    for col in _TABLE_COLUMNS:
        table.add_column(col, justify="right" if col != "decided by" else "left")
    shown = [lr for lr in report.layers if lr.internal is None]
    for lr in shown:
        how = ", ".join(f"{k} {v}" for k, v in sorted(lr.methods().items()))
        table.add_row(lr.name, lr.shape_text, str(lr.width), str(len(lr.active)), str(len(lr.inactive)),
                      str(len(lr.proven_unstable)), str(len(lr.unproven)), f"{lr.seconds:.2f}", how)
    Console(width=130, stderr=err).print(table)
    internal = _internal_line(report)
    if internal:
        click.echo(internal, err=err)
    for lr in shown:  # conv layers: their channels, folded to one line each
        line = lr.channel_line()
        if line:
            click.echo(line, err=err)
    n = report.num_unproven
    unproven = f" ({n} unit{'s' if n != 1 else ''} not proven either way, kept)" if n else ""
    click.echo(f"{report.num_stable} stable units{unproven}; {report.lps} LPs, {report.milps} MILPs, "
               f"{report.nodes} nodes; {report.seconds:.2f} s", err=err)


def bound_text(bound: float) -> str:
    """A proven upper bound as people read it, never below it: rounded UP to 3 significant
    digits (``.3g`` rounds to nearest, which can print less than what was proven); a bound
    below the smallest normal float (a zero raised by a few ulps of rounding guard) is 0 with
    the guard said, not ``3.95e-323``."""
    from decimal import ROUND_CEILING, Decimal

    if bound <= 0.0:
        return f"{bound:.3g}"
    if bound < np.finfo(np.float64).tiny:
        return "0 (up to float rounding below 2.3e-308)"
    text = f"{bound:.3g}"
    if float(text) < bound:  # rounded down: round the exact decimal value of the float up instead
        exact = Decimal(bound)
        text = f"{float(exact.quantize(Decimal(1).scaleb(exact.adjusted() - 2), rounding=ROUND_CEILING)):.3g}"
    return text if float(text) >= bound else repr(bound)


# -- commands -----------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leo", message="leo %(version)s")
def cli() -> None:
    """Prove which ReLU units are stable on an input box, and remove them losslessly.

    MODEL is a PyTorch state_dict checkpoint of an nn.Sequential MLP, a TorchScript
    archive, an ONNX file, or builtin:NAME for a model shipped with leo.
    """


def _inputs(model: str, *paths: str | None) -> tuple[str, ...]:
    """The files a command reads (the model, .npy bounds, VNN-LIB, data): never outputs."""
    paths = (*paths, _ball_options()[0])
    return (str(_model_path(model)),) + tuple(p for p in paths if p and p != "-" and Path(p).is_file())


def _model_path(model: str) -> Path:
    """The file of MODEL; ``builtin:NAME`` is looked up in leo.api, which imports the analysis
    and torch (seconds at start-up), so only for a built-in name."""
    if not model.startswith("builtin:"):
        return Path(model)
    from leo.api import resolve_path

    return resolve_path(model)


def _threads_option(f):  # noqa: ANN001, ANN201
    """``--threads N``, applied for the whole command before it runs (leo.core.threads)."""
    import functools

    from leo.core.threads import set_threads, threads_option

    @functools.wraps(f)
    def run(*args: Any, threads: int, **kwargs: Any) -> Any:
        set_threads(threads)
        return f(*args, **kwargs)

    return threads_option(run)


def _force_option(f):  # noqa: ANN001, ANN201
    return click.option("--force", is_flag=True,
                        help="Replace output files that exist already (never an input, never another output).")(f)


@cli.command()
@click.argument("model")
@domain_options
@analysis_options
@click.option("--json", "json_path", default=None,
              help="Write the full report (with proofs) as JSON; '-' writes it to stdout (the table goes to stderr).")
@_force_option
def verify(model: str, lower: str | None, upper: str | None, vnnlib: str | None, json_path: str | None,
           force: bool, **kw: Any) -> None:
    """Report, per hidden layer, which units are stably active, inactive or unstable."""
    from leo.io.files import plan_outputs
    from leo.stability.analysis import analyse

    if json_path and json_path != "-":
        plan_outputs([json_path], _inputs(model, lower, upper, vnnlib, kw["data"]), force)
    net = _load(model, kw["allow_pickle"], kw["input_shape"])
    box = _box(net, lower, upper, vnnlib)
    data = _data(kw["data"])
    options = _options(kw)
    progress = _ProgressDisplay(kw["quiet"], options, net)
    try:
        report = analyse(net, box, options, data=None if data is None else data[0], progress=progress)
    finally:
        progress.close()
    report = report.with_shapes(net)  # each layer's shape and, for conv layers, its channels
    _print_table(report, err=json_path == "-")
    if json_path == "-":
        click.echo(json.dumps(report.to_json(), indent=1))
    elif json_path:
        _write_json(json_path, report.to_json())
        click.echo(f"report written to {json_path}")


def _kept_active_line(report, reduction) -> str:  # noqa: ANN001
    """Why stably active units are still there: each kept one raises the rank of its layer's
    active rows, and a layer with unstable units cannot be multiplied into the next."""
    bypassed = sum(len(u) for u in reduction.bypassed_active)
    if bypassed:  # the flat form: every stably active unit left its ReLU
        return (f"{bypassed} stably active units bypassed (their linear maps reach the layers that read them "
                "through skip connections)")
    merged = set(reduction.merged_layers)
    kept = sum(len(set(lr.active) - set(reduction.folded_active[lr.layer - 1]))
               for lr in report.layers if lr.layer not in merged)
    folded = sum(len(f) for f in reduction.folded_active)
    if not kept and not folded:
        return ""
    return (f"{folded} stably active units folded into the next layer (their rows are combinations of others); "
            f"{kept} kept: their rows are linearly independent, and their layers also hold unstable units")


#: compress's options for the approximate methods: name -> (method, options field, click type, help).
#: Defaults live in the options dataclasses (leo.approx); a value out of range is refused there.
_APPROX_OPTIONS: dict[str, tuple[str, str, Any, str]] = {
    "rate": ("linearity", "rate", float, "Fixed-size mode (the paper's): lower the activation-rate threshold "
             "until the paper-counted size (all weights but the first layer's) is at most this share."),
    "step": ("linearity", "step", float, "Fixed-size mode: the threshold goes down from 1 in steps of this."),
    "threshold": ("linearity", "threshold", float, "Threshold mode instead: fuse units active on at least this "
                  "share of the data (excludes --rate/--step)."),
    "layer_rule": ("linearity", "layer_rule", click.Choice(["cost", "count", "fraction"]),
                   "Threshold mode: when a layer is rewritten (the fixed-size mode always uses cost)."),
    "layer_min": ("linearity", "layer_min", float, "Threshold mode, rules count/fraction: rewrite a layer only "
                  "with more linear units than this (a count, or a share of its width)."),
    "only_proven": ("linearity", "only_proven", bool, "Fuse only units the exact step before proved active "
                    "(exact on the box; use --method exact,linearity)."),
    "structure": ("pq-index", "structure", click.Choice(["weights", "units"]),
                  "weights: the paper's SAP (unstructured); units: our structured variant."),
    "scope": ("pq-index", "scope", click.Choice(["global", "layer", "neuron"]),
              "Weights over which each PQ index is computed."),
    "rounds": ("pq-index", "rounds", int, "Pruning rounds (without retraining, later rounds prune what is left)."),
    "p": ("pq-index", "p", float, "The PQ index's p (0 < p < q)."),
    "q": ("pq-index", "q", float, "The PQ index's q."),
    "eta_r": ("pq-index", "eta", float, "eta_r >= 0: loosens the retain bound r."),
    "gamma": ("pq-index", "gamma", float, "gamma > 0: scales the pruned share 1 - r/d."),
    "beta": ("pq-index", "beta", float, "At most this share of a scope pruned per round, in (0, 1]."),
    "budget": ("dependence", "budget", float, "Largest accepted drop of validation accuracy (agreement "
               "without labels), in [0, 1]: the first round past it is undone and the search stops."),
    "tol_start": ("dependence", "tol_start", float, "First tolerance on a unit's relative residual."),
    "tol_factor": ("dependence", "tol_factor", float, "The tolerance is multiplied by this (> 1) each round."),
    "tol_max": ("dependence", "tol_max", float, "Largest tolerance tried."),
    "metric": ("dependence", "metric", click.Choice(["auto", "accuracy", "agreement"]),
               "What the budget is measured on (auto: accuracy when --data has labels)."),
    "validation": ("dependence", "validation", float, "Share of the fitting data used for the stopping rule."),
    "holdout": ("approximate", "holdout", float, "Share of --data held out for the report when it has no test "
                "split (mnist has one)."),
}
_APPROX_TITLES = {"linearity": "Options of --method linearity (Dobler & Lemmerich 2025)",
                  "pq-index": "Options of --method pq-index (Diao et al. 2023)",
                  "dependence": "Options of --method dependence (Shah, Olivier, Raj 2020)",
                  "approximate": "Options of every approximate method"}


def _approx_option_defaults() -> dict[str, Any]:
    """Each approximate option's default, read from its options dataclass (imported only for --help)."""
    from leo.reduction.compose import ChainOptions

    chain = ChainOptions()
    owners = {"linearity": chain.linearity, "pq-index": chain.pq_index, "dependence": chain.dependence,
              "approximate": chain}
    return {name: getattr(owners[method], field) for name, (method, field, _, _) in _APPROX_OPTIONS.items()}


class _CompressCommand(click.Command):
    """``leo compress --help`` with the approximate methods' options grouped per method."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        defaults = _approx_option_defaults()
        groups: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.name in _APPROX_OPTIONS:
                method = _APPROX_OPTIONS[param.name][0]
                default = defaults[param.name]
                record = (record[0], f"{record[1]}  [default: {'off' if default is False else default}]")
                groups.setdefault(_APPROX_TITLES[method], []).append(record)
            else:
                groups["Options"].append(record)
        for title, rows in groups.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def _approx_option_flags(f):  # noqa: ANN001, ANN201
    for name, (_, _, kind, text) in reversed(_APPROX_OPTIONS.items()):
        flag = "--" + name.replace("_", "-")
        f = (click.option(flag, name, is_flag=True, default=False, help=text)(f) if kind is bool
             else click.option(flag, name, type=kind, default=None, help=text)(f))
    return f


def _method_options(methods: list[str], kw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The approximate methods' options given on the command line (taken out of ``kw``),
    per method; an option of a method that is not in the chain is bad input."""
    given: dict[str, dict[str, Any]] = {}
    for name, (method, field, _, _) in _APPROX_OPTIONS.items():
        value = kw.pop(name)
        if value is None or value is False:
            continue
        if method not in methods and not (method == "approximate" and set(methods) - {"exact"}):
            owner = "linearity, pq-index or dependence" if method == "approximate" else method
            _fail(f"--{name.replace('_', '-')} is an option of --method {owner}, not of --method {','.join(methods)}")
        given.setdefault(method, {})[field] = value
    lin = given.get("linearity", {})
    if "threshold" in lin:
        if {"rate", "step"} & set(lin):
            _fail("--threshold (threshold mode) and --rate/--step (fixed-size mode) exclude each other: give one")
        lin["mode"] = "threshold"
    elif {"layer_rule", "layer_min"} & set(lin):
        _fail("--layer-rule/--layer-min belong to linearity's threshold mode: give --threshold T too "
              "(the fixed-size mode uses the paper's cost rule)")
    return given


@cli.command(cls=_CompressCommand)
@click.argument("model")
@domain_options
@analysis_options
@click.option("-o", "--output", required=True, help="Compressed model: .pt (TorchScript) or .onnx.")
@click.option("--certificate", default=None, help="Certificate path [default: OUTPUT.cert.json, e.g. m.onnx.cert.json].")
@click.option("--float64", is_flag=True, help="Write float64 weights instead of float32.")
@click.option("--method", default="exact", show_default=True,
              help="exact (certified lossless), or approximate methods that use --data: linearity, dependence, "
                   "pq-index; chain them with commas, e.g. pq-index,exact or exact,linearity.")
@click.option("--form", type=click.Choice(["leo", "flat", "structured"]), default="leo", show_default=True,
              help="leo: inactive units deleted, active ones folded where their rows depend on others, fully "
                   "active layers merged (LEO 2020; a plain chain of layers); flat: every stable unit removed, "
                   "active ones bypassed through skip connections, only unstable units keep a ReLU (REDNet's "
                   "form, for verifiers); structured: conv channels whose units are all stably inactive "
                   "deleted whole, conv layers kept as convolutions (ONNX Conv nodes, nn.Conv2d), dense layers "
                   "as leo. leo and flat are written as dense layers (MatMul/Add/Relu).")
@_force_option
@_approx_option_flags
def compress(model: str, lower: str | None, upper: str | None, vnnlib: str | None, output: str,
             certificate: str | None, float64: bool, method: str, form: str, force: bool, **kw: Any) -> None:
    """Remove stable units and write a smaller model that computes the same function on the box.

    With an approximate --method the result is NOT lossless: leo writes a report
    (agreement, accuracy and max |f-g| on held-out data) instead of a certificate.
    """
    from leo.api import compress as run_compress
    from leo.api import resolve_path
    from leo.reduction.compose import parse_methods
    from leo.io.files import plan_outputs
    from leo.io.save import certificate_path, check_output_path

    inputs = _inputs(model, lower, upper, vnnlib, kw["data"])
    methods = parse_methods(method)
    if form != "leo" and methods != ["exact"]:
        _fail(f"--form {form} applies to --method exact alone, not to --method {method}")
    given = _method_options(methods, kw)
    out = check_output_path(output, inputs, force)
    if certificate:
        side = Path(certificate)
    elif methods == ["exact"]:
        side = certificate_path(out)
    else:
        side = out.with_name(out.name + ".report.json")
    plan_outputs([out, side], inputs, force)
    net = _load(model, kw["allow_pickle"], kw["input_shape"])
    box = _box(net, lower, upper, vnnlib)
    if methods != ["exact"]:
        _compress_approx(net, box, methods, out, side, float64, force, kw, given)
        return
    data = _data(kw["data"])
    options = _options(kw)
    progress = _ProgressDisplay(kw["quiet"], options, net)
    try:
        result = run_compress(net, box, box, options, data=None if data is None else data[0],
                              progress=progress, model_path=resolve_path(model), out_path=out, form=form)
    finally:
        progress.close()
    _print_table(result.report.with_shapes(result.original))
    result.save(out, side, overwrite=force, float64=float64)  # the model first, then the certificate with its hash
    from leo.certify.certificate import hidden_units

    cert = result.certificate
    before, after = cert["original"], cert["compressed"]
    click.echo(
        f"hidden units {hidden_units(before)} -> {hidden_units(after)} "
        f"({cert['reduction']['compression_pct']:.1f}% removed), "
        f"{_parameters_text(resolve_path(model), out)}; "
        f"max |f-g| on {result.check.points} sampled points {result.check.max_diff:.3g}"
    )
    if form == "structured":  # conv layers are never folded: the kept-active line is LEO's
        from leo.reduction.structured import describe

        click.echo(describe(result.reduction, result.original))
    why = _kept_active_line(result.report, result.reduction) if form != "structured" else ""
    if why:
        click.echo(why)
    click.echo(f"wrote {out} and certificate {side}")
    bigger = _bigger_line(resolve_path(model), out)
    if bigger:
        click.echo(bigger)


def _parameters_text(model: Path, out: Path) -> str:
    """The parameters of the user's file and of the written one, as the files store them (a
    conv by its kernel; leo's dense lowering of a 5,194-parameter CNN has 79 million entries)."""
    from leo.io.model_size import file_parameters

    before, after = file_parameters(model), file_parameters(out)
    if before is None or after is None:
        return "parameters: not counted (a file leo cannot count)"
    return f"parameters {before:,} -> {after:,} (as stored in {model.name} and {out.name})"


#: ``compress`` notes a written model more than this many times the size of the user's file.
BIGGER = 2.0


def _bigger_line(model: Path, out: Path) -> str:
    """A note when the written model is much larger than the user's file: fewer units, but weights
    leo could not keep as convolutions are written dense (a LeNet-like model with a MaxPool:
    4 KiB in, 540 KiB out), and the user should know the way that keeps their own layers. Not for
    a few percent (leo's MatMul and Add where an exporter wrote Gemm: 6.2 KiB against 5.9)."""
    try:
        before, after = model.stat().st_size, out.stat().st_size
    except OSError:
        return ""
    if after <= BIGGER * before:
        return ""
    return (f"note: {out} ({_size(after)}) is larger than {model} ({_size(before)}): leo writes the layers it cannot "
            "keep as convolutions as dense MatMul (for example, a MaxPool is lowered to ReLU layers and the layers reading "
            "it are written dense); from Python, leo.compress(your_module, lower, upper, form=\"structured\").module() "
            "removes the dead channels from your own module instead")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{n} bytes"


def _compress_approx(net, box, methods: list[str], out: Path, report_path: Path,  # noqa: ANN001
                     float64: bool, force: bool, kw: dict[str, Any], given: dict[str, dict[str, Any]]) -> None:
    """A chain with approximate steps: no certificate, a report of what changed.
    ``given``: the methods' options from the command line (see ``_method_options``)."""
    from leo.approx import DependenceOptions, LinearityOptions, PQOptions
    from leo.reduction.compose import ChainOptions, chain_summary, describe_step, run_chain
    from leo.io.save import save_network

    seed = kw["seed"]  # also picks the held-out and validation samples
    options = ChainOptions(stability=_options(kw), linearity=LinearityOptions(**given.get("linearity", {})),
                           pq_index=PQOptions(**given.get("pq-index", {})),
                           dependence=DependenceOptions(seed=seed, **given.get("dependence", {})),
                           seed=seed, **given.get("approximate", {}))  # out-of-range values: LeoInputError, exit 2
    data = _chain_data(kw["data"])
    if data is None:
        _fail(f"--method {','.join(methods)} uses data: give --data FILE.npz (array x, optional y) or --data mnist")
    final, reports = run_chain(net, box, methods, data, options)
    summary = chain_summary(net, final, reports, data)
    payload = {"kind": "leo approximate compression report", "lossless": False,
               "methods": methods, "summary": summary, "steps": [r.to_json() for r in reports]}
    save_network(final, out, float64=float64, overwrite=force)
    _write_json(str(report_path), payload)
    click.echo(f"methods {' -> '.join(methods)}: NOT lossless (approximate steps use data, not proofs)")
    for i, rep in enumerate(reports, start=1):
        head, *notes = describe_step(rep)
        click.echo(f"step {i} {head}")
        for note in notes:
            click.echo(f"  note: {note}")
    click.echo(json.dumps(summary, indent=1, default=str))
    click.echo(f"wrote {out} and report {report_path}")


@cli.command()
@click.argument("original")
@click.argument("compressed")
@domain_options
@click.option("--exact", is_flag=True, help="Also prove equivalence with a MILP maximising |f - g| over the box.")
@click.option("--points", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Random points to compare (corners too, when the dimension allows).")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=1e-4, show_default=True,
              help="Largest |f - g| still counted as equal (float32 files differ by rounding).")
@click.option("--time-limit", type=click.FloatRange(min=0.001), default=120.0, show_default=True,
              help="Seconds per MILP solve with --exact (one solve per output and sign).")
@click.option("--time-budget", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds for the whole check: the sampling stops at it (and says how many points it "
                   "compared); with --exact, the solves share what is left (undecided, exit 3, if it runs out).")
@click.option("--counterexample", default=None, help="Save a counterexample point to this .npy file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-pickle", is_flag=True, help="Allow pickled whole modules.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@_force_option
@_threads_option
def check(original: str, compressed: str, lower: str | None, upper: str | None, vnnlib: str | None,
          exact: bool, points: int, tolerance: float, time_limit: float, time_budget: float | None,
          counterexample: str | None, seed: int, allow_pickle: bool, quiet: bool, force: bool,
          input_shape: tuple[int, ...] | None) -> None:
    """Compare two models on the box. Exit 0 when equivalent (with --exact: proven), 1 with a
    counterexample the forward passes confirm, 3 when --exact could not decide."""
    import time

    from leo.api import resolve_path
    from leo.queries.equivalence import Verdict, compare_exact, compare_sampled, readable
    from leo.io.files import plan_outputs, require_npy, save_point

    started = time.time()
    if counterexample:
        require_npy(counterexample)
        plan_outputs([counterexample], _inputs(original, str(resolve_path(compressed)), lower, upper, vnnlib), force)
    f = _load(original, allow_pickle, input_shape)
    g = _load(compressed, allow_pickle, input_shape)
    if (f.input_dim, f.output_dim) != (g.input_dim, g.output_dim):
        _fail(f"the models differ in shape: {f.input_dim}->{f.output_dim} versus {g.input_dim}->{g.output_dim}")
    box = _box(f, lower, upper, vnnlib)
    deadline = None if time_budget is None else started + time_budget
    result = compare_sampled(f, g, box, n=points, tolerance=tolerance, seed=seed,
                             progress=_step_lines("check", quiet, every=5.0), deadline=deadline)
    cut = f" (the time budget ran out; --points asked for {points})" if result.points < points else ""
    click.echo(f"sampled {result.points} points{cut}: max |f-g| = {result.max_diff:.3g}")
    if result.verdict is Verdict.SAMPLED and exact:
        if deadline is not None:  # the solves (one per output and sign) share what is left
            left = deadline - time.time()
            if left <= 0:
                click.echo(f"undecided within tolerance {tolerance:g}: the time budget ran out before the MILPs")
                sys.exit(int(ExitCode.UNDECIDED))
            time_limit = min(time_limit, max(left / (2 * f.output_dim), 0.001))
        result = compare_exact(f, g, box, tolerance=tolerance, time_limit=time_limit,
                               progress=_step_lines("exact", quiet))
    if result.verdict is Verdict.REFUTED:
        x = result.counterexample
        fx, gx = f(x[None])[0], g(x[None])[0]
        click.echo(f"NOT equivalent: |f-g| = {result.max_diff:.6g} > {tolerance:g} at output {result.output} "
                   f"(confirmed by both forward passes)")
        summary = f"  ({x.size} values in [{x.min():.6g}, {x.max():.6g}], {np.count_nonzero(x)} nonzero)"
        click.echo(f"  x    = {readable(x)}" + (summary if x.size > 12 else ""))
        click.echo(f"  f(x) = {readable(fx)}")
        click.echo(f"  g(x) = {readable(gx)}")
        if counterexample:
            save_point(counterexample, x, overwrite=force)
            click.echo(f"  saved x ({x.size} values) to {counterexample}")
        elif x.size > 12:
            click.echo("  (--counterexample FILE.npy saves all of x)")
        sys.exit(int(ExitCode.REFUTED))
    if result.verdict is Verdict.UNDECIDED:
        click.echo(f"undecided within tolerance {tolerance:g}: {result.reason}")
        sys.exit(int(ExitCode.UNDECIDED))
    if result.verdict is Verdict.PROVEN:
        click.echo(f"exact: proven max |f-g| <= {bound_text(result.proven_bound)}")
        click.echo(f"equivalent within {tolerance:g} (proven by MILP)")
    else:
        click.echo(f"equivalent within {tolerance:g} on all sampled points (sampling only, not a proof; "
                   "--exact proves it)")


@cli.command()
@click.argument("model")
@domain_options
@click.option("--layer", type=click.IntRange(min=1), required=True, help="Layer index, 1-based (1 = first hidden layer).")
@click.option("--unit", type=click.IntRange(min=0), required=True, help="Unit index in that layer, 0-based.")
@click.option("--sense", type=click.Choice(["max", "min"]), default="max", show_default=True,
              help="Maximise (inactive test) or minimise (active test) the unit's pre-activation.")
@click.option("-o", "--output", required=True, help="File to write: .lp or .mps.")
@click.option("--allow-pickle", is_flag=True)
@click.option("--time-budget", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds for analysing the layers before --layer (which of their units need a binary); units "
                   "still open then keep their binaries, so the written MILP is exact either way, only larger.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@_force_option
def export(model: str, lower: str | None, upper: str | None, vnnlib: str | None, layer: int, unit: int,
           sense: str, output: str, allow_pickle: bool, time_budget: float | None, quiet: bool, force: bool,
           input_shape: tuple[int, ...] | None) -> None:
    """Write the MILP of one unit's bound problem as .lp or .mps, for any solver."""
    from leo.io.files import atomic_write, plan_outputs
    from leo.stability.analysis import prefix_formulation
    from solvers.pyomo_model import write_model

    out = Path(output)
    if out.suffix.lower() not in (".lp", ".mps"):
        _fail(f"output {out} must end in .lp or .mps")
    plan_outputs([out], _inputs(model, lower, upper, vnnlib), force)
    net = _load(model, allow_pickle, input_shape)
    if layer > len(net.layers):
        _fail(f"--layer {layer}: the network has {len(net.layers)} layers")
    if unit >= net.layers[layer - 1].width:
        _fail(f"--unit {unit}: layer {layer} has {net.layers[layer - 1].width} units")
    box = _box(net, lower, upper, vnnlib)
    from leo.stability.analysis import StabilityOptions

    options = StabilityOptions(time_budget=time_budget)
    progress = _ProgressDisplay(quiet, options, net)
    try:
        formulation = prefix_formulation(net, box, layer - 1, options, progress=progress)
    finally:
        progress.close()
    cost = formulation.objective(layer - 1, unit, -1.0 if sense == "max" else 1.0)
    with atomic_write(out) as tmp:
        write_model(formulation, cost, tmp)
    click.echo(f"wrote {out}: {formulation.num_cols} variables ({formulation.num_binaries} binary), "
               f"{formulation.matrix.shape[0]} constraints; objective: "
               f"{'maximise' if sense == 'max' else 'minimise'} z[{layer}][{unit}] (written as a minimisation)")


@cli.command(name="property")
@click.argument("model")
@click.argument("spec", metavar="PROPERTY.vnnlib")
@click.option("--time-limit", type=click.FloatRange(min=0.001), default=300.0, show_default=True,
              help="Seconds for the whole check (stability analysis and property MILPs); when they run out "
                   "the answer is 'timeout' (exit 3).")
@click.option("--compress-first", is_flag=True,
              help="Compress losslessly first, then verify the smaller network (a counterexample is still "
                   "confirmed on the original network).")
@click.option("--results", "results_path", default=None,
              help="Write the answer in the VNN-COMP results format: sat, unsat, unknown or timeout on line 1; "
                   "for sat the witness ( (X_i v) ... (Y_j v) ... ).")
@click.option("--counterexample", default=None, help="Save the counterexample input as .npy (when sat).")
@click.option("--center", default=None, expose_value=False, callback=_remember,
              help="The input box as the L-inf ball of radius --eps around this input (.npy), clipped to "
                   "--lower/--upper when given; only for a property file that bounds no input (X_i).")
@click.option("--eps", type=float, default=None, expose_value=False, callback=_remember,
              help="Radius of the L-inf ball around --center.")
@click.option("--lower", default=None, help="With --center: the domain's lower bound to clip to; without it, "
              "the box's lower bound (a number or a .npy vector); only for a file that bounds no input.")
@click.option("--upper", default=None, help="Like --lower, the upper bound.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr (stdout carries the result).")
@click.option("--allow-pickle", is_flag=True)
@input_shape_option
@_force_option
@_threads_option
def property_command(model: str, spec: str, time_limit: float, compress_first: bool, results_path: str | None,
                     counterexample: str | None, lower: str | None, upper: str | None, quiet: bool,
                     allow_pickle: bool, force: bool, input_shape: tuple[int, ...] | None) -> None:
    """Exact verification of a VNN-LIB property; the file describes the UNSAFE outputs.

    \b
    The first word on stdout is the answer; the exit code says the same:
      unsat    the property holds (proven)                         exit 0
      sat      the property is VIOLATED: a counterexample that
               the original network's forward pass confirms        exit 1
      unknown  not decided: a solve stopped without a proof        exit 3
      timeout  not decided: the time limit ran out                 exit 3
    The input box comes from the file's bounds on X_i, or, for a file that constrains only
    the outputs, from --center X.npy --eps E (clipped to --lower/--upper when given) or
    --lower/--upper; giving both, or neither, is bad input. A file may also give several input
    regions (an 'or' of input boxes) or linear input constraints (a polytope), in VNN-LIB 1.0
    or 2.0, plain or .gz: each region is checked, sat when one has a counterexample.
    Bad input (a file, an option): one line on stderr, exit 2.
    """
    from leo.io.files import plan_outputs, require_npy
    from leo.queries.property import ProgressLines, check_property, describe, save_outputs
    from leo.io.vnnlib import parse_vnnlib, read_query

    if counterexample:
        require_npy(counterexample)
    outputs = [p for p in (results_path, counterexample) if p]
    if outputs:
        plan_outputs(outputs, _inputs(model, spec, lower, upper), force)
    net = _load(model, allow_pickle, input_shape)
    parsed = parse_vnnlib(Path(spec))
    if not parsed.one_box:  # several input regions, linear input constraints: the query path
        from leo.queries.check import as_property_result, check_query

        _property_box(net, spec, parsed, lower, upper)  # refuses box options: the file bounds its inputs
        if parsed.networks > 1 or not parsed.constrains_outputs:
            _fail(f"{spec} declares {parsed.networks} networks; leo property checks one (use leo-vnnlib verify)"
                  if parsed.networks > 1 else f"{spec} constrains no output: nothing to verify")
        query = parsed.query()
        with ProgressLines(quiet) as progress:
            found = check_query(query, {query.networks[0].name: net}, time_limit, compress_first=compress_first,
                                progress=progress)
        result, prop, box = as_property_result(query, found)
    else:
        file_box, prop = read_query(Path(spec), net.input_dim)
        box = _property_box(net, spec, file_box, lower, upper)
        if prop is None:
            _fail(f"{spec} constrains no output (no Y_ variables): nothing to verify")
        with ProgressLines(quiet) as progress:
            result = check_property(net, box, prop, time_limit=time_limit, compress_first=compress_first,
                                    progress=progress)
    saved = save_outputs(result, results_path, counterexample, overwrite=force)
    for line in describe(result, prop, box, saved):
        click.echo(line)
    if result.answer.exit_code:
        sys.exit(int(result.answer.exit_code))


def _property_box(network, spec: str, file_box, lower: str | None, upper: str | None):  # noqa: ANN001, ANN202
    """The box of ``leo property``: the file's, or the options' when the file bounds no input."""
    center, eps = _ball_options()
    given = [name for name, v in (("--center", center), ("--eps", eps), ("--lower", lower), ("--upper", upper))
             if v is not None]
    if file_box is not None:
        if given:
            _fail(f"{spec} bounds the inputs already; leave out {'/'.join(given)} (or remove the X_i bounds from it)")
        return file_box
    if not given:
        _fail(f"{spec} bounds no input (X_i): give the box with --center X.npy --eps E (optionally clipped "
              "to --lower/--upper) or with --lower and --upper")
    if center is None and eps is None and (lower is None or upper is None):
        _fail("give --lower and --upper together (or --center and --eps)")
    return _box(network, lower, upper, None)


@cli.command()
@click.argument("certificate", metavar="CERTIFICATE")
@click.option("--original", default=None, help="The original model [default: the certificate's path].")
@click.option("--compressed", default=None, help="The compressed model [default: the certificate's path].")
@click.option("--time-limit", type=click.FloatRange(min=0.001), default=60.0, show_default=True,
              help="Seconds per LP or MILP; a claim still open after it makes the audit undecided (exit 3).")
@click.option("--time-budget", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds for re-proving the claims; claims not reached by then make the audit undecided "
                   "(exit 3), never valid.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def audit(certificate: str, original: str | None, compressed: str | None, time_limit: float,
          time_budget: float | None, quiet: bool) -> None:
    """Re-check a certificate from scratch: file hashes, every stable claim re-proved (interval,
    LP, MILP), the reduction replayed. Exit 0 valid, 1 invalid (first failing claim named),
    2 bad input, 3 undecided."""
    from leo.certify.audit import audit as run_audit

    result = run_audit(certificate, original, compressed, time_limit, progress=_step_lines("audit", quiet),
                       time_budget=time_budget)
    label = {ExitCode.OK: "VALID", ExitCode.REFUTED: "INVALID", ExitCode.UNDECIDED: "UNDECIDED"}[result.code]
    click.echo(f"{label}: {result.message} [{result.seconds:.2f} s]")
    if result.code != ExitCode.OK:
        sys.exit(int(result.code))


def _step_lines(command: str, quiet: bool, every: float = 0.0):  # noqa: ANN202
    """A progress callback printing ``[elapsed] command: message`` lines on stderr (none with
    -q), at most one per ``every`` seconds after the first."""
    import time

    t0 = time.perf_counter()
    last = [-math.inf]

    def say(message: str) -> None:
        now = time.perf_counter()
        if not quiet and now - last[0] >= every:
            last[0] = now
            click.echo(f"[{now - t0:7.1f} s] {command}: {message}", err=True)

    return say


class _LazyCommand(click.Command):
    """A command whose module is imported only when it runs or shows its own help: ``leo train``
    needs torch, whose import costs 4-14 s that no other command should pay at start-up."""

    def __init__(self, name: str, target: str, short_help: str) -> None:
        super().__init__(name, short_help=short_help)
        self.target = target  # "module:attribute"

    def real(self) -> click.Command:
        module, attr = self.target.split(":")
        try:
            command = getattr(__import__(module, fromlist=[attr]), attr)
        except ImportError as exc:
            raise click.ClickException(f"'leo {self.name}' needs {exc.name or 'a missing package'}: {exc}") from exc
        return command

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        return self.real().make_context(info_name, args, parent=parent, **extra)


def _register_optional() -> None:
    cli.add_command(_LazyCommand("train", "leo.train:train_command",
                                 "Train an MNIST MLP with an l1 penalty (and the RS loss); needs torch."), name="train")


_register_optional()


class _HeldNotes(logging.Handler):
    """leo's own warnings (e.g. "read as a state_dict: architecture assumed"), held until the
    command ends: they are printed with its result, and dropped when the input was bad, so
    that bad input stays one line on stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("leo: %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def flush_to_stderr(self) -> None:
        seen: set[str] = set()
        for record in self.records:
            text = self.format(record)
            if text not in seen:  # a model read twice (check) gets one note
                seen.add(text)
                click.echo(text, err=True)
        self.records.clear()


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    level = os.environ.get("LEO_LOG", "WARNING")
    logging.basicConfig(level=level, format="leo: %(levelname)s: %(message)s")
    notes, leo_log = _HeldNotes(), logging.getLogger("leo")
    notes.setLevel(logging.WARNING)
    live = logging.StreamHandler(sys.stderr)  # LEO_LOG=INFO/DEBUG messages still show as they come
    live.addFilter(lambda record: record.levelno < logging.WARNING)
    live.setFormatter(notes.formatter)
    handlers = (notes, live)
    for handler in handlers:
        leo_log.addHandler(handler)
    leo_log.propagate = False
    code = EXIT_BAD_INPUT
    try:
        code = _run(argv)
        return code
    finally:
        for handler in handlers:
            leo_log.removeHandler(handler)
        leo_log.propagate = True
        if code != EXIT_BAD_INPUT:
            notes.flush_to_stderr()


#: What click raises for a group run with no command (click >= 8.2; older clicks print the help themselves).
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _run(argv: list[str] | None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="leo", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("leo: aborted", err=True)
        return 130
    except _NO_ARGS_IS_HELP as exc:  # a bare ``leo`` (or ``leo GROUP``) asks for help: it gets it, exit 0
        click.echo(exc.ctx.get_help() if exc.ctx is not None else cli.get_help(click.Context(cli, info_name="leo")))
        return 0
    except click.UsageError as exc:
        ctx = f" (see '{exc.ctx.command_path} --help')" if exc.ctx and exc.ctx.command_path else ""
        click.echo(f"leo: error: {exc.format_message()}{ctx}", err=True)
        return EXIT_BAD_INPUT
    except click.ClickException as exc:
        click.echo(f"leo: error: {exc.format_message()}", err=True)
        return EXIT_BAD_INPUT
    except LeoInputError as exc:
        click.echo(f"leo: error: {exc}", err=True)
        return EXIT_BAD_INPUT
    except (OSError, MemoryError) as exc:
        click.echo(f"leo: error: {exc}", err=True)
        return EXIT_BAD_INPUT
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("LEO_DEBUG"):
            raise
        click.echo(f"leo: internal error: {type(exc).__name__}: {exc} (set LEO_DEBUG=1 for a traceback)", err=True)
        return int(ExitCode.INTERNAL)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
