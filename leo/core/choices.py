"""The named choices a user makes, as types: which stability engine, which written form.

They are ``StrEnum``s so that the strings users type (``--engine network``,
``form="structured"``) convert with ``Engine(text)`` and serialise as themselves in
certificates and JSON reports. The MILP back-end's choice is ``solvers.backend.Solver``
(``solvers`` imports nothing from leo).
"""

from __future__ import annotations

import enum
from typing import TypeVar

from leo.errors import LeoInputError


class Engine(enum.StrEnum):
    """How unit stability is proven: one MILP per unit (LEO 2020) or one network-wide MILP
    (Serra et al. 2021)."""

    UNIT = "unit"
    NETWORK = "network"


class Form(enum.StrEnum):
    """How stable units are removed from the written network."""

    LEO = "leo"  # stable units deleted or folded, ReLU layers kept
    FLAT = "flat"  # linear layers merged through stably active blocks
    STRUCTURED = "structured"  # whole channels out, Conv layers kept


E = TypeVar("E", bound=enum.StrEnum)


def choose(kind: type[E], value: str | E, what: str) -> E:
    """``value`` as a member of ``kind``, or a one-line error listing the choices."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise LeoInputError(f"unknown {what} {value!r}; choose one of {names}") from None
