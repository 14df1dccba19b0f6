"""leo's log records during a command: warnings held until it ends, the rest shown as they come."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

FORMAT = "leo: %(levelname)s: %(message)s"


class HeldNotes(logging.Handler):
    """leo's own warnings (e.g. "read as a state_dict: architecture assumed"), held until the
    command ends: they are printed with its result, and dropped when the input was bad, so
    that bad input stays one line on stderr."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def flush_to_stderr(self) -> None:
        seen: set[str] = set()
        for record in self.records:
            text = self.format(record)
            if text not in seen:  # a model read twice (check) gets one note
                seen.add(text)
                click.echo(text, err=True)
        self.records.clear()


@contextmanager
def held_notes() -> Iterator[HeldNotes]:
    """The "leo" logger for one command: warnings go to the returned ``HeldNotes`` (the caller
    prints or drops them), LEO_LOG=INFO/DEBUG messages to stderr as they come."""
    logging.basicConfig(level=os.environ.get("LEO_LOG", "WARNING"), format=FORMAT)
    notes, leo_log = HeldNotes(), logging.getLogger("leo")
    live = logging.StreamHandler(sys.stderr)
    live.addFilter(lambda record: record.levelno < logging.WARNING)
    live.setFormatter(notes.formatter)
    handlers = (notes, live)
    for handler in handlers:
        leo_log.addHandler(handler)
    leo_log.propagate = False
    try:
        yield notes
    finally:
        for handler in handlers:
            leo_log.removeHandler(handler)
        leo_log.propagate = True
