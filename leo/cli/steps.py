"""Progress of the commands that work in steps (check, audit): one line per step on stderr."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import click


def step_lines(command: str, quiet: bool, every: float = 0.0) -> Callable[[str], None]:
    """A progress callback printing ``[elapsed] command: message`` lines on stderr (none with
    -q), at most one per ``every`` seconds after the first."""
    t0 = time.perf_counter()
    last = [-math.inf]

    def say(message: str) -> None:
        now = time.perf_counter()
        if not quiet and now - last[0] >= every:
            last[0] = now
            click.echo(f"[{now - t0:7.1f} s] {command}: {message}", err=True)

    return say
