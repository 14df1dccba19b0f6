"""What a solve proved, kept apart from what it merely found."""

from __future__ import annotations

import enum
import math
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


def proven_bound(bound: float, cutoff: float | None, infinity: float = math.inf) -> float:
    """What a back-end's reported bound proves, the one rule for every back-end: nothing
    (-inf) unless it is finite and below the solver's own infinity; under an objective cutoff
    at most the cutoff, since nodes pruned at the cutoff keep no bound of their own (seen:
    HiGHS reported 0.94 for a minimum of 0.905 under a cutoff of 0.855)."""
    if not math.isfinite(bound) or abs(bound) >= infinity:
        return -math.inf
    return min(bound, float(cutoff)) if cutoff is not None else bound
