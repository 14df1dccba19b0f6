"""The ``leo`` command: verify, compress, check, export (and train).

Bad input gets one line on stderr and exit code 2; outputs are written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from leo.errors import LeoInputError

log = logging.getLogger("leo")

EXIT_BAD_INPUT = 2


def _fail(message: str) -> None:
    raise LeoInputError(message)


# -- shared options -----------------------------------------------------------

def domain_options(f):  # noqa: ANN001, ANN201
    f = click.option("--upper", required=False, help="Upper bound of the input box: a number (broadcast) or a .npy vector.")(f)
    f = click.option("--lower", required=False, help="Lower bound of the input box: a number (broadcast) or a .npy vector.")(f)
    f = click.option("--vnnlib", type=click.Path(dir_okay=False), default=None,
                     help="Read the input box from a VNN-LIB file instead of --lower/--upper.")(f)
    return f


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
    f = click.option("--quiet", "-q", is_flag=True, help="No progress display.")(f)
    return f


def _load(model: str, allow_pickle: bool = False):  # noqa: ANN202
    from leo.api import as_network

    return as_network(model, allow_pickle=allow_pickle)


def _box(network, lower: str | None, upper: str | None, vnnlib: str | None):  # noqa: ANN001, ANN202
    from leo.domain import make_box

    if vnnlib:
        if lower is not None or upper is not None:
            _fail("give either --vnnlib or --lower/--upper, not both")
        from leo.vnnlib import read_vnnlib

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
    from leo.stability import StabilityOptions

    return StabilityOptions(time_limit=kw["time_limit"], margin=kw["margin"], samples=kw["samples"],
                            seed=kw["seed"], workers=kw["workers"], scheduler=kw["scheduler"], engine=kw["engine"],
                            lp_bounds=kw["lp_bounds"], cuts=not kw["no_cuts"], neighbourhood=not kw["no_search"],
                            time_budget=kw["time_budget"])


class _ProgressDisplay:
    """Progress on stderr: layer, units decided and by what, elapsed seconds."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.layer = None

    def __call__(self, p) -> None:  # noqa: ANN001
        if self.quiet:
            return
        from tqdm import tqdm

        if p.layer != self.layer:
            self.close()
            self.layer = p.layer
            desc = f"layer {p.layer}" if p.layer else "network MILP"
            self.bar = tqdm(total=p.total, desc=desc, unit="unit", file=sys.stderr, leave=True, dynamic_ncols=True)
        how = ", ".join(f"{k} {v}" for k, v in sorted(p.how.items()))
        self.bar.n = p.decided
        self.bar.set_postfix_str(how, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _write_json(path: str, payload: dict[str, Any]) -> None:
    from leo.io.files import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")


def _print_table(report) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Stability on the box ({report.box.dim} inputs)")
    for col in ("layer", "units", "stably active", "stably inactive", "unstable", "seconds", "decided by"):
        table.add_column(col, justify="right" if col != "decided by" else "left")
    for lr in report.layers:
        how = ", ".join(f"{k} {v}" for k, v in sorted(lr.methods().items()))
        table.add_row(str(lr.layer), str(lr.width), str(len(lr.active)), str(len(lr.inactive)),
                      str(len(lr.unstable)), f"{lr.seconds:.2f}", how)
    Console(width=120).print(table)
    unproven = f" ({report.num_unproven} units not proven either way, kept)" if report.num_unproven else ""
    click.echo(f"{report.num_stable} stable units{unproven}; {report.solves} MILP solves; {report.seconds:.2f} s")


# -- commands -----------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leo", message="leo %(version)s")
def cli() -> None:
    """Prove which ReLU units are stable on an input box, and remove them losslessly.

    MODEL is a PyTorch state_dict checkpoint of an nn.Sequential MLP, a TorchScript
    archive, an ONNX file, or builtin:NAME for a model shipped with leo.
    """


@cli.command()
@click.argument("model")
@domain_options
@analysis_options
@click.option("--json", "json_path", default=None, help="Write the full report (with proofs) as JSON.")
def verify(model: str, lower: str | None, upper: str | None, vnnlib: str | None, json_path: str | None,
           **kw: Any) -> None:
    """Report, per hidden layer, which units are stably active, inactive or unstable."""
    from leo.stability import analyse

    net = _load(model, kw["allow_pickle"])
    box = _box(net, lower, upper, vnnlib)
    data = _data(kw["data"])
    progress = _ProgressDisplay(kw["quiet"])
    try:
        report = analyse(net, box, _options(kw), data=None if data is None else data[0], progress=progress)
    finally:
        progress.close()
    _print_table(report)
    if json_path:
        _write_json(json_path, report.to_json())
        click.echo(f"report written to {json_path}")


@cli.command()
@click.argument("model")
@domain_options
@analysis_options
@click.option("-o", "--output", required=True, help="Compressed model: .pt (TorchScript) or .onnx.")
@click.option("--certificate", default=None, help="Certificate path [default: OUTPUT with .cert.json].")
@click.option("--float64", is_flag=True, help="Write float64 weights instead of float32.")
@click.option("--method", default="exact", show_default=True,
              help="exact (certified lossless), or approximate methods that use --data: linearity, dependence, "
                   "pq-index; chain them with commas, e.g. pq-index,exact or exact,linearity.")
def compress(model: str, lower: str | None, upper: str | None, vnnlib: str | None, output: str,
             certificate: str | None, float64: bool, method: str, **kw: Any) -> None:
    """Remove stable units and write a smaller model that computes the same function on the box.

    With an approximate --method the result is NOT lossless: leo writes a report
    (agreement, accuracy and max |f-g| on held-out data) instead of a certificate.
    """
    from leo.api import compress as run_compress
    from leo.api import resolve_path
    from leo.io.save import check_output_path, save_network

    out = check_output_path(output, (str(resolve_path(model)),))
    cert_path = Path(certificate) if certificate else out.with_suffix(".cert.json")
    if cert_path.resolve() == resolve_path(model).resolve():
        _fail("the certificate would overwrite the input model; choose another --certificate")
    from leo.compose import parse_methods

    methods = parse_methods(method)
    net = _load(model, kw["allow_pickle"])
    box = _box(net, lower, upper, vnnlib)
    if methods != ["exact"]:
        _compress_approx(net, box, methods, out, cert_path, certificate is not None, float64, kw)
        return
    data = _data(kw["data"])
    progress = _ProgressDisplay(kw["quiet"])
    try:
        result = run_compress(net, box, box, _options(kw), data=None if data is None else data[0],
                              progress=progress, model_path=resolve_path(model), out_path=out)
    finally:
        progress.close()
    _print_table(result.report)
    save_network(result.network, out, float64=float64)
    _write_json(str(cert_path), result.certificate)
    before, after = result.certificate["sizes"]["before"], result.certificate["sizes"]["after"]
    click.echo(
        f"hidden units {before['hidden_units']} -> {after['hidden_units']} "
        f"({result.certificate['reduction']['compression_pct']:.1f}% removed), "
        f"parameters {before['parameters']} -> {after['parameters']}; "
        f"max |f-g| on {result.check.points} sampled points {result.check.max_diff:.3g}"
    )
    click.echo(f"wrote {out} and certificate {cert_path}")


def _compress_approx(net, box, methods: list[str], out: Path, cert_path: Path, cert_given: bool,  # noqa: ANN001
                     float64: bool, kw: dict[str, Any]) -> None:
    """A chain with approximate steps: no certificate, a report of what changed."""
    from leo.compose import ChainOptions, chain_summary, run_chain
    from leo.io.save import save_network

    data = _chain_data(kw["data"])
    if data is None:
        _fail(f"--method {','.join(methods)} uses data: give --data FILE.npz (array x, optional y) or --data mnist")
    final, reports = run_chain(net, box, methods, data, ChainOptions(stability=_options(kw)))
    summary = chain_summary(net, final, reports, data)
    report_path = cert_path if cert_given else out.with_suffix(".report.json")
    payload = {"kind": "leo approximate compression report", "lossless": False,
               "methods": methods, "summary": summary, "steps": [r.to_json() for r in reports]}
    save_network(final, out, float64=float64)
    _write_json(str(report_path), payload)
    click.echo(f"methods {' -> '.join(methods)}: NOT lossless (approximate steps use data, not proofs)")
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
@click.option("--counterexample", default=None, help="Save a counterexample point as .npy.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-pickle", is_flag=True, help="Allow pickled whole modules.")
def check(original: str, compressed: str, lower: str | None, upper: str | None, vnnlib: str | None,
          exact: bool, points: int, tolerance: float, time_limit: float, counterexample: str | None,
          seed: int, allow_pickle: bool) -> None:
    """Compare two models on the box. Exit 0 when equivalent, 1 with a counterexample when not."""
    from leo.equivalence import compare_exact, compare_sampled

    f = _load(original, allow_pickle)
    g = _load(compressed, allow_pickle)
    if (f.input_dim, f.output_dim) != (g.input_dim, g.output_dim):
        _fail(f"the models differ in shape: {f.input_dim}->{f.output_dim} versus {g.input_dim}->{g.output_dim}")
    box = _box(f, lower, upper, vnnlib)
    result = compare_sampled(f, g, box, n=points, tolerance=tolerance, seed=seed)
    click.echo(f"sampled {result.points} points: max |f-g| = {result.max_diff:.3g}")
    if result.equivalent and exact:
        result = compare_exact(f, g, box, tolerance=tolerance, time_limit=time_limit)
        if result.counterexample is None:
            bound = "unknown" if result.proven_bound is None else f"{result.proven_bound:.3g}"
            click.echo(f"exact: proven max |f-g| <= {bound}" + ("" if result.complete else " (a solve timed out)"))
    if result.counterexample is not None:
        x = result.counterexample
        click.echo(f"NOT equivalent: |f-g| = {result.max_diff:.6g} at output {result.output}, x = "
                   + np.array2string(x, precision=6, threshold=12, max_line_width=10_000))
        if counterexample:
            from leo.io.files import atomic_write

            with atomic_write(counterexample) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, x)
        sys.exit(1)
    if not result.equivalent:
        click.echo(f"not proven equivalent within tolerance {tolerance:g}")
        sys.exit(1)
    click.echo(f"equivalent within {tolerance:g}" + (" (proven by MILP)" if result.exact else " on all sampled points"))


@cli.command()
@click.argument("model")
@domain_options
@click.option("--layer", type=click.IntRange(min=1), required=True, help="Layer index, 1-based (1 = first hidden layer).")
@click.option("--unit", type=click.IntRange(min=0), required=True, help="Unit index in that layer, 0-based.")
@click.option("--sense", type=click.Choice(["max", "min"]), default="max", show_default=True,
              help="Maximise (inactive test) or minimise (active test) the unit's pre-activation.")
@click.option("-o", "--output", required=True, help="File to write: .lp or .mps.")
@click.option("--allow-pickle", is_flag=True)
def export(model: str, lower: str | None, upper: str | None, vnnlib: str | None, layer: int, unit: int,
           sense: str, output: str, allow_pickle: bool) -> None:
    """Write the MILP of one unit's bound problem as .lp or .mps, for any solver."""
    from leo.api import resolve_path
    from leo.io.files import atomic_write
    from leo.stability import prefix_formulation
    from solvers.pyomo_model import write_model

    out = Path(output)
    if out.suffix.lower() not in (".lp", ".mps"):
        _fail(f"output {out} must end in .lp or .mps")
    if out.exists() and out.resolve() == resolve_path(model).resolve():
        _fail("the output would overwrite the input model")
    net = _load(model, allow_pickle)
    if layer > len(net.layers):
        _fail(f"--layer {layer}: the network has {len(net.layers)} layers")
    if unit >= net.layers[layer - 1].width:
        _fail(f"--unit {unit}: layer {layer} has {net.layers[layer - 1].width} units")
    box = _box(net, lower, upper, vnnlib)
    formulation = prefix_formulation(net, box, layer - 1)
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
              help="Seconds for the property MILPs.")
@click.option("--compress-first", is_flag=True, help="Compress losslessly first, then verify the smaller network.")
@click.option("--allow-pickle", is_flag=True)
def property_command(model: str, spec: str, time_limit: float, compress_first: bool, allow_pickle: bool) -> None:
    """Exact verification of a VNN-LIB property: prints sat (with a counterexample), unsat, or unknown."""
    from leo.property import check_property
    from leo.reduce import reduce
    from leo.stability import StabilityOptions, analyse
    from leo.vnnlib import read_vnnlib

    net = _load(model, allow_pickle)
    box, prop = read_vnnlib(Path(spec), net.input_dim)
    if prop is None:
        _fail(f"{spec} constrains no output (no Y_ variables): nothing to verify")
    target = net
    if compress_first:
        target = reduce(net, analyse(net, box, StabilityOptions(time_limit=min(time_limit, 60.0)))).network
        click.echo(f"compressed first: hidden units {sum(net.hidden)} -> {sum(target.hidden)}")
    result = check_property(target, box, prop, time_limit=time_limit)
    answer = {True: "sat", False: "unsat", None: "unknown"}[result.sat]
    click.echo(f"{answer} ({result.how}, {result.seconds:.2f} s)")
    if result.sat:
        x = result.counterexample
        y = net(x[None])[0]  # re-checked on the original network
        click.echo("counterexample x = " + np.array2string(x, precision=6, threshold=12, max_line_width=10_000))
        click.echo("original network output y = " + np.array2string(y, precision=6, max_line_width=10_000))


def _register_optional() -> None:
    try:
        from leo.train import train_command
    except ImportError:
        return
    cli.add_command(train_command, name="train")


_register_optional()


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    logging.basicConfig(level=os.environ.get("LEO_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        rv = cli.main(args=argv, prog_name="leo", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("leo: aborted", err=True)
        return 130
    except click.UsageError as exc:
        ctx = f" (see 'leo {exc.ctx.command.name} --help')" if exc.ctx and exc.ctx.command else ""
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
        return 3


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
