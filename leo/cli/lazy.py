"""A click command whose module is imported only when it runs or shows its own help.

``leo --help`` and ``leo property`` on an ONNX file then import none of the other commands'
modules: ``leo train`` needs torch, whose import costs 4-14 s that no other command should pay.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyCommand(click.Command):
    """Stands in the group under ``name`` with the help line ``leo --help`` shows; the real
    command (``"module:attribute"``) parses and runs the arguments."""

    def __init__(self, name: str, target: str, help_text: str) -> None:
        super().__init__(name, help=help_text)
        self.target = target

    def real(self) -> click.Command:
        module, attribute = self.target.split(":")
        try:
            command = getattr(importlib.import_module(module), attribute)
        except ImportError as exc:
            raise click.ClickException(f"'leo {self.name}' needs {exc.name or 'a missing package'}: {exc}") from exc
        return command

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        return self.real().make_context(info_name, args, parent=parent, **extra)
