"""``leo export``: the MILP of one unit's bound problem, as ``.lp`` or ``.mps``, for any solver."""

from __future__ import annotations

from pathlib import Path

import click

from leo.cli import inputs
from leo.cli.inputs import Domain, fail
from leo.cli.options import domain_options, force_option
from leo.cli.progress import ProgressDisplay


@click.command(name="export")
@click.argument("model")
@domain_options()
@click.option("--layer", type=click.IntRange(min=1), required=True, help="Layer index, 1-based (1 = first hidden layer).")
@click.option("--unit", type=click.IntRange(min=0), required=True, help="Unit index in that layer, 0-based.")
@click.option("--sense", type=click.Choice(["max", "min"]), default="max", show_default=True,
              help="Maximise (inactive test) or minimise (active test) the unit's pre-activation.")
@click.option("-o", "--output", required=True, help="File to write: .lp or .mps.")
@click.option("--allow-pickle", is_flag=True, help="Allow a pickled whole module (unpickling runs code from the file).")
@click.option("--time-budget", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds for analysing the layers before --layer (which of their units need a binary); units "
                   "still open then keep their binaries, so the written MILP is exact either way, only larger.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@force_option
def export(model: str, domain: Domain, layer: int, unit: int, sense: str, output: str, allow_pickle: bool,
           time_budget: float | None, quiet: bool, force: bool, input_shape: tuple[int, ...] | None) -> None:
    """Write the MILP of one unit's bound problem as .lp or .mps, for any solver."""
    from leo.io.files import atomic_write, plan_outputs
    from leo.stability.analysis import StabilityOptions, prefix_formulation
    from solvers.pyomo_model import write_model

    out = Path(output)
    if out.suffix.lower() not in (".lp", ".mps"):
        fail(f"output {out} must end in .lp or .mps")
    plan_outputs([out], inputs.input_files(model, *domain.paths()), force)
    net = inputs.load(model, allow_pickle, input_shape)
    if layer > len(net.layers):
        fail(f"--layer {layer}: the network has {len(net.layers)} layers")
    if unit >= net.layers[layer - 1].width:
        fail(f"--unit {unit}: layer {layer} has {net.layers[layer - 1].width} units")
    box = inputs.box(net, domain)
    options = StabilityOptions(time_budget=time_budget)
    with ProgressDisplay(quiet, options, net) as progress:
        formulation = prefix_formulation(net, box, layer - 1, options, progress=progress)
    cost = formulation.objective(layer - 1, unit, -1.0 if sense == "max" else 1.0)
    with atomic_write(out) as tmp:
        write_model(formulation, cost, tmp)
    click.echo(f"wrote {out}: {formulation.num_cols} variables ({formulation.num_binaries} binary), "
               f"{formulation.matrix.shape[0]} constraints; objective: "
               f"{'maximise' if sense == 'max' else 'minimise'} z[{layer}][{unit}] (written as a minimisation)")
