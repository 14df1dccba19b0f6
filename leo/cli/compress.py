"""``leo compress``: the smaller model that computes the same function on the box, then its
certificate; with an approximate ``--method``, a model and a report instead (not lossless)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from leo.cli import inputs
from leo.cli.inputs import Domain, fail
from leo.cli.method_options import GroupedHelp, approx_option_flags, method_options
from leo.cli.options import EnumChoice, analysis_options, domain_options, force_option, stability_options
from leo.cli.progress import ProgressDisplay
from leo.cli.table import print_table
from leo.core.choices import Form

#: ``compress`` notes a written model more than this many times the size of the user's file.
BIGGER = 2.0


@click.command(name="compress", cls=GroupedHelp)
@click.argument("model")
@domain_options()
@analysis_options
@click.option("-o", "--output", required=True, help="Compressed model: .pt (TorchScript) or .onnx.")
@click.option("--certificate", default=None, help="Certificate path [default: OUTPUT.cert.json, e.g. m.onnx.cert.json].")
@click.option("--float64", is_flag=True, help="Write float64 weights instead of float32.")
@click.option("--method", default="exact", show_default=True,
              help="exact (certified lossless), or approximate methods that use --data: linearity, dependence, "
                   "pq-index; chain them with commas, e.g. pq-index,exact or exact,linearity.")
@click.option("--form", type=EnumChoice(Form, "form"), default=Form.LEO.value, show_default=True,
              help="leo: inactive units deleted, active ones folded where their rows depend on others, fully "
                   "active layers merged (LEO 2020; a plain chain of layers); flat: every stable unit removed, "
                   "active ones bypassed through skip connections, only unstable units keep a ReLU (REDNet's "
                   "form, for verifiers); structured: conv channels whose units are all stably inactive "
                   "deleted whole, conv layers kept as convolutions (ONNX Conv nodes, nn.Conv2d), dense layers "
                   "as leo. leo and flat write a layer the reduction left unchanged as its Conv or MaxPool, "
                   "the others as matrices (MatMul/Add/Relu, sparse where mostly zero).")
@force_option
@approx_option_flags
def compress(model: str, domain: Domain, output: str, certificate: str | None, float64: bool, method: str,
             form: Form, force: bool, **kw: Any) -> None:
    """Remove stable units and write a smaller model that computes the same function on the box.

    With an approximate --method the result is NOT lossless: leo writes a report
    (agreement, accuracy and max |f-g| on held-out data) instead of a certificate.
    """
    from leo.io.files import plan_outputs
    from leo.io.save import certificate_path, check_output_path
    from leo.reduction.compose import parse_methods

    files = inputs.input_files(model, *domain.paths(), kw["data"])
    methods = parse_methods(method)
    if form != Form.LEO and methods != ["exact"]:
        fail(f"--form {form} applies to --method exact alone, not to --method {method}")
    given = method_options(methods, kw)
    out = check_output_path(output, files, force)
    if certificate:
        side = Path(certificate)
    elif methods == ["exact"]:
        side = certificate_path(out)
    else:
        side = out.with_name(out.name + ".report.json")
    plan_outputs([out, side], files, force)
    net = inputs.load(model, kw["allow_pickle"], kw["input_shape"])
    box = inputs.box(net, domain)
    if methods != ["exact"]:
        _compress_approx(net, box, methods, (out, side), float64, force, kw, given)
    else:
        _compress_exact(model, net, box, (out, side), form, float64, force, kw)


def _compress_exact(model: str, net: Any, box: Any, paths: tuple[Path, Path], form: Form, float64: bool,
                    force: bool, kw: dict[str, Any]) -> None:
    """The lossless compression: analysis, reduction, the model written, then its certificate."""
    from leo.api import compress as run_compress
    from leo.certify.certificate import hidden_units

    out, side = paths
    source = inputs.model_path(model)
    data = inputs.data(kw["data"])
    options = stability_options(kw)
    with ProgressDisplay(kw["quiet"], options, net) as progress:
        result = run_compress(net, box, box, options, data=None if data is None else data[0],
                              progress=progress, model_path=source, out_path=out, form=form)
    print_table(result.report.with_shapes(result.original))
    result.save(out, side, overwrite=force, float64=float64)  # the model first, then the certificate with its hash
    cert = result.certificate
    before, after = cert["original"], cert["compressed"]
    click.echo(
        f"hidden units {hidden_units(before)} -> {hidden_units(after)} "
        f"({cert['reduction']['compression_pct']:.1f}% removed), "
        f"{_parameters_text(source, out)}; "
        f"max |f-g| on {result.check.points} sampled points {result.check.max_diff:.3g}"
    )
    from leo.reduction.structured import KeptActive, describe

    if form == Form.STRUCTURED:  # conv layers are never folded: the kept-active line is LEO's
        click.echo(describe(result.reduction, result.original))
    why = KeptActive.of(result.report, result.reduction).line() if form != Form.STRUCTURED else ""
    if why:
        click.echo(why)
    click.echo(f"wrote {out} and certificate {side}")
    bigger = _bigger_line(source, out)
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


def _compress_approx(net: Any, box: Any, methods: list[str], paths: tuple[Path, Path], float64: bool,
                     force: bool, kw: dict[str, Any], given: dict[str, dict[str, Any]]) -> None:
    """A chain with approximate steps: no certificate, a report of what changed.
    ``given``: the methods' options from the command line (see ``method_options``)."""
    from leo.approx import DependenceOptions, LinearityOptions, PQOptions
    from leo.io.save import save_network
    from leo.reduction.compose import ChainOptions, chain_report, describe_step, run_chain

    out, report_path = paths
    seed = kw["seed"]  # also picks the held-out and validation samples
    options = ChainOptions(stability=stability_options(kw), linearity=LinearityOptions(**given.get("linearity", {})),
                           pq_index=PQOptions(**given.get("pq-index", {})),
                           dependence=DependenceOptions(seed=seed, **given.get("dependence", {})),
                           seed=seed, **given.get("approximate", {}))  # out-of-range values: LeoInputError, exit 2
    data = inputs.chain_data(kw["data"])
    if data is None:
        fail(f"--method {','.join(methods)} uses data: give --data FILE.npz (array x, optional y) or --data mnist")
    final, reports = run_chain(net, box, methods, data, options)
    payload = chain_report(methods, net, final, reports, data)
    save_network(final, out, float64=float64, overwrite=force)
    inputs.write_json(report_path, payload)
    click.echo(f"methods {' -> '.join(methods)}: NOT lossless (approximate steps use data, not proofs)")
    for i, rep in enumerate(reports, start=1):
        head, *notes = describe_step(rep)
        click.echo(f"step {i} {head}")
        for note in notes:
            click.echo(f"  note: {note}")
    click.echo(json.dumps(payload["summary"], indent=1, default=str))
    click.echo(f"wrote {out} and report {report_path}")
