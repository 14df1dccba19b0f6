"""``leo verify``: which units of each hidden layer are stably active, inactive or unstable."""

from __future__ import annotations

import json
from typing import Any

import click

from leo.cli import inputs
from leo.cli.inputs import Domain
from leo.cli.options import analysis_options, domain_options, force_option, stability_options
from leo.cli.progress import ProgressDisplay
from leo.cli.table import print_table


@click.command(name="verify")
@click.argument("model")
@domain_options()
@analysis_options
@click.option("--json", "json_path", default=None,
              help="Write the full report (with proofs) as JSON; '-' writes it to stdout (the table goes to stderr).")
@force_option
def verify(model: str, domain: Domain, json_path: str | None, force: bool, **kw: Any) -> None:
    """Report, per hidden layer, which units are stably active, inactive or unstable."""
    from leo.io.files import plan_outputs
    from leo.stability.analysis import analyse

    if json_path and json_path != "-":
        plan_outputs([json_path], inputs.input_files(model, *domain.paths(), kw["data"]), force)
    net = inputs.load(model, kw["allow_pickle"], kw["input_shape"])
    box = inputs.box(net, domain)
    data = inputs.data(kw["data"])
    options = stability_options(kw)
    with ProgressDisplay(kw["quiet"], options, net) as progress:
        report = analyse(net, box, options, data=None if data is None else data[0], progress=progress)
    report = report.with_shapes(net)  # each layer's shape and, for conv layers, its channels
    print_table(report, err=json_path == "-")
    if json_path == "-":
        click.echo(json.dumps(report.to_json(), indent=1))
    elif json_path:
        inputs.write_json(json_path, report.to_json())
        click.echo(f"report written to {json_path}")
