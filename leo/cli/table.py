"""The stability report as ``verify`` and ``compress`` print it: a table per hidden layer."""

from __future__ import annotations

from typing import Any

import click

#: The verify table: "unstable" counts units seen with both signs (a witness pair), "unproven"
#: those proven neither way (a time-out, the budget), which are kept as if unstable.
COLUMNS = ("layer", "shape", "units", "stably active", "stably inactive", "unstable", "unproven", "seconds",
           "decided by")
#: The table's width at least (rich would otherwise take a terminal's, or 80 in a log).
WIDTH = 130
UNBOUNDED = 10_000


def internal_line(report: Any) -> str:
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


def print_table(report: Any, err: bool = False) -> None:
    """The per-layer table and the summary line; on stderr when stdout carries JSON."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    table = Table(title=f"Stability on the box ({report.box.dim} inputs)")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col != "decided by" else "left")
    shown = [lr for lr in report.layers if lr.internal is None]
    for lr in shown:
        how = ", ".join(f"{k} {v}" for k, v in sorted(lr.methods().items()))
        table.add_row(lr.name, lr.shape_text, str(lr.width), str(len(lr.active)), str(len(lr.inactive)),
                      str(len(lr.proven_unstable)), str(len(lr.unproven)), f"{lr.seconds:.2f}", how)
    console = Console(width=WIDTH, stderr=err)
    natural = Measurement.get(console, console.options.update_width(UNBOUNDED), table).maximum
    console.width = max(WIDTH, natural)  # a cell never wraps: one line per layer, whatever its methods
    console.print(table)
    internal = internal_line(report)
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
