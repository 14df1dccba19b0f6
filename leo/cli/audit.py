"""``leo audit``: a certificate re-checked from scratch, by code that shares nothing with the prover."""

from __future__ import annotations

import sys

import click

from leo.cli.steps import step_lines
from leo.exitcodes import ExitCode

#: The first word of the answer, per exit code.
LABELS = {ExitCode.OK: "VALID", ExitCode.REFUTED: "INVALID", ExitCode.UNDECIDED: "UNDECIDED"}


@click.command(name="audit")
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

    result = run_audit(certificate, original, compressed, time_limit, progress=step_lines("audit", quiet),
                       time_budget=time_budget)
    click.echo(f"{LABELS[result.code]}: {result.message} [{result.seconds:.2f} s]")
    if result.code != ExitCode.OK:
        sys.exit(int(result.code))
