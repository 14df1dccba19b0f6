"""The stability analysis's progress on stderr: a bar on a terminal, lines in a log."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from leo.stability.stages import Phase, Progress

#: Without a terminal, progress is a line per layer and phase, and at most one more per this many
#: seconds: bars redrawn into a log file wrote ~250 KB per CNN verify.
LINE_PERIOD = 10.0
#: Without --time-budget, a MILP phase that may take longer than this (open units x --time-limit)
#: gets a line saying so and naming --time-budget, when it starts.
LONG_PHASE = 120.0


class ProgressDisplay:
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
        self.names = layer_names(network)
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.bar: Any = None
        self.layer: int | None = None
        self.last: tuple[Any, float] = (None, -LINE_PERIOD)
        self.warned: set[int] = set()

    def __call__(self, p: Progress) -> None:
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

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _name(self, p: Progress) -> str:
        return self.names.get(p.layer, f"layer {p.layer}") if p.layer else "network MILP"

    def _status(self, p: Progress) -> list[str]:
        parts = [", ".join(f"{k} {v}" for k, v in sorted(p.how.items()))]
        if p.phase == Phase.MILP and p.eta is not None and (self.budget is not None or self.time_limit is None):
            parts.append(f"eta {p.eta:.0f} s")  # capped by the deadline (or the options are not known)
        elif p.phase == Phase.MILP and self.time_limit is not None:
            left = max(p.total - p.decided, 0)
            parts.append(f"eta ~{duration(left * self.time_limit / self.workers)} "
                         f"({left} open x --time-limit {self.time_limit:g} s)")
        return [x for x in parts if x]

    def _draw(self, p: Progress) -> None:
        from tqdm import tqdm

        name = self._name(p)
        if self.bar is None:
            self.bar = tqdm(total=p.total, desc=name, unit="unit", file=sys.stderr, leave=True, dynamic_ncols=True,
                            bar_format=self.FORMAT)
        self.bar.set_description_str(f"{name} {p.phase}" if p.phase and p.phase != Phase.DONE else name,
                                     refresh=False)
        self.bar.n = p.decided
        self.bar.set_postfix_str("; ".join(self._status(p)), refresh=False)
        self.bar.refresh()

    def _line(self, p: Progress) -> None:
        key, now = (p.layer, p.phase, p.eta is not None), time.monotonic()  # the first ETA gets its line
        if key == self.last[0] and now - self.last[1] < LINE_PERIOD:
            return
        self.last = (key, now)
        status = "; ".join(self._status(p))
        click.echo(f"leo: {self._name(p)} {p.phase}: {p.decided}/{p.total} units decided"
                   f"{f' ({status})' if status else ''} [{p.seconds:.1f} s]", err=True)

    def _warn_if_long(self, p: Progress) -> None:
        """Once per layer, when its MILPs start with no budget and may take long: say so early."""
        if p.phase != Phase.MILP or self.budget is not None or self.time_limit is None or p.layer in self.warned:
            return
        self.warned.add(p.layer)
        left = max(p.total - p.decided, 0)
        worst = left * self.time_limit / self.workers
        if worst <= LONG_PHASE:
            return
        text = (f"leo: {self._name(p)}: {left} units left for MILPs, up to {self.time_limit:g} s each "
                f"(--time-limit): this can take {duration(worst)} or more; --time-budget SECONDS bounds the whole "
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


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def layer_names(network: Any) -> dict[int, str]:
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
