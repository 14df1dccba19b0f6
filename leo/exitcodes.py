"""The exit codes of every ``leo`` command, in one place (documented in the README).

A command that answers a yes/no question (``check``, ``property``, ``audit``) exits 0 for
"yes, proven" (equivalent / the property holds / the certificate is valid), 1 only for a
"no" backed by a confirmed counterexample or a failed claim, and 3 when it could not
decide (a solve timed out or stopped short). Bad input is 2; a bug in leo is 4.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # done; or the answer is "yes", proven
    REFUTED = 1  # the answer is "no", with a counterexample the network's forward pass confirms
    BAD_INPUT = 2  # a file, an option or a domain the user can fix (one line on stderr)
    UNDECIDED = 3  # neither proven nor refuted: a time limit, a budget or an interrupted solve
    INTERNAL = 4  # a bug in leo (one line; LEO_DEBUG=1 shows the traceback)
