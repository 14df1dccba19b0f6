"""Errors a user can act on. The CLI turns these into one line and exit code 2."""


class LeoInputError(ValueError):
    """Bad user input: a file, a shape, a domain. The message says how to fix it."""
