"""``leo property``: exact verification of a VNN-LIB property (sat, unsat, unknown, timeout)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from leo.cli import inputs
from leo.cli.inputs import Domain, fail
from leo.cli.options import applied_threads_option, domain_options, force_option, solver_option
from solvers.backend import Solver


@click.command(name="property")
@click.argument("model")
@click.argument("spec", metavar="PROPERTY.vnnlib")
@click.option("--time-limit", type=click.FloatRange(min=0.001), default=300.0, show_default=True,
              help="Seconds for the whole check (stability analysis and property MILPs); when they run out "
                   "the answer is 'timeout' (exit 3).")
@solver_option
@click.option("--compress-first", is_flag=True,
              help="Compress losslessly first, then verify the smaller network (a counterexample is still "
                   "confirmed on the original network).")
@click.option("--results", "results_path", default=None,
              help="Write the answer in the VNN-COMP results format: sat, unsat, unknown or timeout on line 1; "
                   "for sat the witness ( (X_i v) ... (Y_j v) ... ).")
@click.option("--counterexample", default=None, help="Save the counterexample input as .npy (when sat).")
@domain_options(vnnlib=False)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr (stdout carries the result).")
@click.option("--allow-pickle", is_flag=True, help="Allow a pickled whole module (unpickling runs code from the file).")
@force_option
@applied_threads_option
def property_command(model: str, spec: str, time_limit: float, solver: Solver, compress_first: bool,
                     results_path: str | None, counterexample: str | None, domain: Domain, quiet: bool,
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
    from leo.io.vnnlib import parse_vnnlib
    from leo.queries.property import describe, save_outputs

    if counterexample:
        require_npy(counterexample)
    outputs = [p for p in (results_path, counterexample) if p]
    if outputs:
        plan_outputs(outputs, inputs.input_files(model, spec, *domain.paths()), force)
    net = inputs.load(model, allow_pickle, input_shape)
    parsed = parse_vnnlib(Path(spec))
    run = _check_regions if not parsed.one_box else _check_box
    result, prop, box = run(net, spec, parsed, domain, Settings(time_limit, solver, compress_first, quiet))
    saved = save_outputs(result, results_path, counterexample, overwrite=force)
    for line in describe(result, prop, box, saved):
        click.echo(line)
    if result.answer.exit_code:
        sys.exit(int(result.answer.exit_code))


@dataclass(frozen=True)
class Settings:
    """How hard to try: the whole check's seconds, the MILP back-end, compress first, progress off."""

    time_limit: float
    solver: Solver
    compress_first: bool
    quiet: bool


def _check_box(net: Any, spec: str, parsed: Any, domain: Domain, how: Settings) -> tuple[Any, Any, Any]:
    """One input box (the file's, or the options'): ``check_property``."""
    from leo.io.vnnlib import read_query
    from leo.queries.property import ProgressLines, check_property

    file_box, prop = read_query(Path(spec), net.input_dim)
    box = _property_box(net, spec, file_box, domain)
    if prop is None:
        fail(f"{spec} constrains no output (no Y_ variables): nothing to verify")
    with ProgressLines(how.quiet) as progress:
        result = check_property(net, box, prop, time_limit=how.time_limit, compress_first=how.compress_first,
                                progress=progress, solver=how.solver)
    return result, prop, box


def _check_regions(net: Any, spec: str, parsed: Any, domain: Domain, how: Settings) -> tuple[Any, Any, Any]:
    """Several input regions, linear input constraints: the query path, region by region."""
    from leo.queries.check import as_property_result, check_query
    from leo.queries.property import ProgressLines

    _property_box(net, spec, parsed, domain)  # refuses box options: the file bounds its inputs
    if parsed.networks > 1:
        fail(f"{spec} declares {parsed.networks} networks; leo property checks one (use leo-vnnlib verify)")
    if not parsed.constrains_outputs:
        fail(f"{spec} constrains no output: nothing to verify")
    query = parsed.query()
    with ProgressLines(how.quiet) as progress:
        found = check_query(query, {query.networks[0].name: net}, how.time_limit, compress_first=how.compress_first,
                            progress=progress, solver=how.solver)
    return as_property_result(query, found)


def _property_box(network: Any, spec: str, file_box: Any, domain: Domain) -> Any:
    """The box of ``leo property``: the file's, or the options' when the file bounds no input."""
    given = domain.given()
    if file_box is not None:
        if given:
            fail(f"{spec} bounds the inputs already; leave out {'/'.join(given)} (or remove the X_i bounds from it)")
        return file_box
    if not given:
        fail(f"{spec} bounds no input (X_i): give the box with --center X.npy --eps E (optionally clipped "
             "to --lower/--upper) or with --lower and --upper")
    if domain.center is None and domain.eps is None and (domain.lower is None or domain.upper is None):
        fail("give --lower and --upper together (or --center and --eps)")
    return inputs.box(network, domain)
