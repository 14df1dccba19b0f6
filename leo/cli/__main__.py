"""``python -m leo.cli``: the ``leo`` command."""

from leo.cli.main import entry

entry()
