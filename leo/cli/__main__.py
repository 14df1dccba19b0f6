"""``python -m leo.cli.main``: the ``leo`` command."""

from leo.cli.main import entry

entry()
