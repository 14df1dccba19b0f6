"""``leo check``: two models compared on the box, by sampling, and with ``--exact`` by MILP."""

from __future__ import annotations

import sys
from typing import Any

import click
import numpy as np

from leo.cli import inputs
from leo.cli.inputs import Domain, fail
from leo.cli.options import applied_threads_option, domain_options, force_option, solver_option
from leo.cli.steps import step_lines
from leo.exitcodes import ExitCode
from solvers.backend import Solver


def bound_text(bound: float) -> str:
    """A proven upper bound as people read it, never below it: rounded UP to 3 significant
    digits (``.3g`` rounds to nearest, which can print less than what was proven); a bound
    below the smallest normal float (a zero raised by a few ulps of rounding guard) is 0, said to
    be the bound on the networks' exact-arithmetic functions (their float evaluations, and so the
    sampled maximum, differ by rounding), not ``3.95e-323``."""
    from decimal import ROUND_CEILING, Decimal

    if bound <= 0.0:
        return f"{bound:.3g}"
    if bound < np.finfo(np.float64).tiny:
        return "0 in exact arithmetic (float evaluations differ by rounding)"
    text = f"{bound:.3g}"
    if float(text) < bound:  # rounded down: round the exact decimal value of the float up instead
        exact = Decimal(bound)
        text = f"{float(exact.quantize(Decimal(1).scaleb(exact.adjusted() - 2), rounding=ROUND_CEILING)):.3g}"
    return text if float(text) >= bound else repr(bound)


@click.command(name="check")
@click.argument("original")
@click.argument("compressed")
@domain_options()
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
@solver_option
@click.option("--counterexample", default=None, help="Save a counterexample point to this .npy file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-pickle", is_flag=True, help="Allow pickled whole modules.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@force_option
@applied_threads_option
def check(original: str, compressed: str, domain: Domain, exact: bool, points: int, tolerance: float,
          time_limit: float, time_budget: float | None, solver: Solver, counterexample: str | None, seed: int,
          allow_pickle: bool, quiet: bool, force: bool, input_shape: tuple[int, ...] | None) -> None:
    """Compare two models on the box. Exit 0 when equivalent (with --exact: proven), 1 with a
    counterexample the forward passes confirm, 3 when --exact could not decide."""
    from leo.core.deadline import Deadline
    from leo.io.files import plan_outputs, require_npy
    from leo.queries.equivalence import Verdict, compare_exact, compare_sampled

    deadline = Deadline.after(time_budget)  # the whole check, loading included
    if counterexample:
        require_npy(counterexample)
        plan_outputs([counterexample], inputs.input_files(original, str(inputs.model_path(compressed)),
                                                          *domain.paths()), force)
    f = inputs.load(original, allow_pickle, input_shape)
    g = inputs.load(compressed, allow_pickle, input_shape)
    if (f.input_dim, f.output_dim) != (g.input_dim, g.output_dim):
        fail(f"the models differ in shape: {f.input_dim}->{f.output_dim} versus {g.input_dim}->{g.output_dim}")
    box = inputs.box(f, domain)
    result = compare_sampled(f, g, box, n=points, tolerance=tolerance, seed=seed,
                             progress=step_lines("check", quiet, every=5.0), deadline=deadline)
    cut = f" (the time budget ran out; --points asked for {points})" if result.points < points else ""
    click.echo(f"sampled {result.points} points{cut}: max |f-g| = {result.max_diff:.3g}")
    if result.verdict is Verdict.SAMPLED and exact:
        if deadline.bounded:  # the solves (one per output and sign) share what is left
            if deadline.passed():
                click.echo(f"undecided within tolerance {tolerance:g}: the time budget ran out before the MILPs")
                sys.exit(int(ExitCode.UNDECIDED))
            time_limit = min(time_limit, max(deadline.left() / (2 * f.output_dim), 0.001))
        result = compare_exact(f, g, box, tolerance=tolerance, time_limit=time_limit,
                               progress=step_lines("exact", quiet), solver=solver, deadline=deadline)
    _answer(result, f, g, tolerance, counterexample, force)


def _answer(result: Any, f: Any, g: Any, tolerance: float, counterexample: str | None, force: bool) -> None:
    """The verdict on stdout and as the exit code; a confirmed counterexample shown (and saved)."""
    from leo.queries.equivalence import Verdict

    if result.verdict is Verdict.REFUTED:
        _refuted(result, f, g, tolerance, counterexample, force)
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


def _refuted(result: Any, f: Any, g: Any, tolerance: float, counterexample: str | None, force: bool) -> None:
    from leo.io.files import save_point
    from leo.queries.equivalence import readable

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
