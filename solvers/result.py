"""What a solve proved, kept apart from what it merely found."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class SolveStatus(enum.Enum):
    OPTIMAL = "optimal"
    INTERRUPTED = "interrupted"  # stopped on purpose once the sign was decided
    TIME_LIMIT = "time_limit"
    ERROR = "error"


@dataclass(frozen=True)
class SolveResult:
    """Minimisation result. ``bound`` is the proven lower bound on the objective
    (the dual bound); ``incumbent`` the best objective found, with its input point."""

    status: SolveStatus
    bound: float
    incumbent: float
    point: np.ndarray | None
    seconds: float
    nodes: int = 0
