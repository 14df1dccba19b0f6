"""What a solve proved, kept apart from what it merely found, and why it stopped.

As in Pyomo's ``contrib/solver`` results, three things are kept apart:

- ``Termination``: why the solver stopped (optimal, infeasible, unbounded, a time limit,
  an interrupt leo asked for, a numerical or other error), read from the back-end's native
  status through one table per back-end;
- ``SolutionStatus``: whether the solve holds a feasible point (``incumbent``, ``point``);
- the proven bound (``bound``, -inf when nothing is proven) apart from the incumbent.

``SolveStatus`` is what leo may *conclude* from a termination (``CONCLUSION``): a bound of an
optimal or stopped-on-purpose solve, a time-out, or nothing at all. A minimisation runs on
models leo knows to be feasible (every box point satisfies them), so there "infeasible"
concludes nothing (ERROR) and keeps its own termination; only ``Model.feasibility`` asks
whether a point exists, and only there is "infeasible" the answer. ``conclude`` is the
post-processing every back-end shares.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np


class SolveStatus(enum.Enum):
    """What leo may conclude from a solve (``CONCLUSION``)."""

    OPTIMAL = "optimal"
    INTERRUPTED = "interrupted"  # stopped on purpose once the sign was decided
    TIME_LIMIT = "time_limit"
    ERROR = "error"  # nothing: the bound is -inf


class Termination(enum.Enum):
    """Why a solve stopped, in the back-end's own terms (each back-end's ``TERMINATION`` table)."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible or unbounded"
    CUTOFF = "objective cutoff"  # nothing better than the cutoff exists (Gurobi's CUTOFF)
    TIME_LIMIT = "time limit"
    INTERRUPTED = "interrupted"  # a stop leo asked for: its callback, its stop values
    OTHER_LIMIT = "a limit leo never sets"  # iterations, nodes, memory, solutions, gap
    NUMERICAL_ERROR = "numerical error"
    ERROR = "error"  # load, model, presolve, solve or postsolve error; a run that did not start
    UNKNOWN = "unknown"


class SolutionStatus(enum.Enum):
    """Whether the solve holds a point: none, a feasible one, or one proven optimal."""

    NONE = "no solution"
    FEASIBLE = "feasible"
    OPTIMAL = "optimal"


#: What leo may conclude from each termination of a minimisation. Only an optimum, a time
#: limit and a stop leo asked for keep a bound (a MIP's dual bound); everything else proves
#: nothing. "Infeasible" under an objective cutoff proves the cutoff and is handled before
#: this table (``conclude``).
CONCLUSION: dict[Termination, SolveStatus] = {
    Termination.OPTIMAL: SolveStatus.OPTIMAL,
    Termination.INTERRUPTED: SolveStatus.INTERRUPTED,
    Termination.TIME_LIMIT: SolveStatus.TIME_LIMIT,
    Termination.INFEASIBLE: SolveStatus.ERROR,  # the model holds every box point: a numerical failure
    Termination.UNBOUNDED: SolveStatus.ERROR,
    Termination.INFEASIBLE_OR_UNBOUNDED: SolveStatus.ERROR,
    Termination.CUTOFF: SolveStatus.ERROR,  # without a cutoff set by leo: not a proof it has checked
    Termination.OTHER_LIMIT: SolveStatus.ERROR,
    Termination.NUMERICAL_ERROR: SolveStatus.ERROR,
    Termination.ERROR: SolveStatus.ERROR,
    Termination.UNKNOWN: SolveStatus.ERROR,
}

#: Terminations that, under an objective cutoff leo set, prove that nothing lies below it.
PROVES_CUTOFF = frozenset({Termination.INFEASIBLE, Termination.CUTOFF})

#: The termination a result made by hand (not by a back-end) stands for.
_TERMINATION_OF: dict[SolveStatus, Termination] = {
    SolveStatus.OPTIMAL: Termination.OPTIMAL,
    SolveStatus.INTERRUPTED: Termination.INTERRUPTED,
    SolveStatus.TIME_LIMIT: Termination.TIME_LIMIT,
    SolveStatus.ERROR: Termination.ERROR,
}


@dataclass(frozen=True)
class SolveResult:
    """Minimisation result. ``bound`` is the proven lower bound on the objective
    (the dual bound); ``incumbent`` the best objective found, with its input point.
    ``termination`` and ``solution`` default to what ``status`` and ``incumbent`` say
    (for results made by hand); the back-ends set them from the solver."""

    status: SolveStatus
    bound: float
    incumbent: float
    point: np.ndarray | None
    seconds: float
    nodes: int = 0
    termination: Termination | None = None
    solution: SolutionStatus | None = None

    def __post_init__(self) -> None:
        if self.termination is None:
            object.__setattr__(self, "termination", _TERMINATION_OF[self.status])
        if self.solution is None:
            found = SolutionStatus.FEASIBLE if math.isfinite(self.incumbent) else SolutionStatus.NONE
            object.__setattr__(self, "solution", found)

    @property
    def proven_infeasible(self) -> bool:
        """``Model.feasibility``'s proof that no point exists (bound +inf)."""
        return self.termination is Termination.INFEASIBLE and self.bound == math.inf


def proven_bound(bound: float, cutoff: float | None, infinity: float = math.inf) -> float:
    """What a back-end's reported bound proves, the one rule for every back-end: nothing
    (-inf) unless it is finite and below the solver's own infinity; under an objective cutoff
    at most the cutoff, since nodes pruned at the cutoff keep no bound of their own (seen:
    HiGHS reported 0.94 for a minimum of 0.905 under a cutoff of 0.855)."""
    if not math.isfinite(bound) or abs(bound) >= infinity:
        return -math.inf
    return min(bound, float(cutoff)) if cutoff is not None else bound


@dataclass(frozen=True)
class Raw:
    """What a back-end read from its solver after one minimisation, before any conclusion:
    the termination (from its table), the solver's dual bound (a MIP's; ignored for an LP),
    the best objective found (inf: none) with its point, the time and the nodes."""

    termination: Termination
    is_mip: bool
    dual_bound: float
    incumbent: float
    point: np.ndarray | None
    seconds: float
    nodes: int = 0


def conclude(raw: Raw, cutoff: float | None, infinity: float = math.inf) -> SolveResult:
    """The post-processing every back-end shares: under a cutoff leo set, a search that found
    nothing below it proves it; otherwise ``CONCLUSION`` says what the termination keeps (a
    MIP's dual bound; an LP's optimum only when optimal; nothing on an error), and
    ``proven_bound`` caps it. The incumbent is never a bound."""
    if cutoff is not None and raw.termination in PROVES_CUTOFF:
        return SolveResult(SolveStatus.OPTIMAL, float(cutoff), math.inf, None, raw.seconds, raw.nodes,
                           raw.termination, SolutionStatus.NONE)
    kind = CONCLUSION.get(raw.termination, SolveStatus.ERROR)
    if kind is SolveStatus.ERROR:
        bound = -math.inf
    elif raw.is_mip:
        bound = raw.dual_bound
    else:
        bound = raw.incumbent if kind is SolveStatus.OPTIMAL else -math.inf
    found = math.isfinite(raw.incumbent)
    solution = SolutionStatus.NONE if not found else (
        SolutionStatus.OPTIMAL if kind is SolveStatus.OPTIMAL and cutoff is None else SolutionStatus.FEASIBLE)
    return SolveResult(kind, proven_bound(bound, cutoff, infinity), raw.incumbent, raw.point if found else None,
                       raw.seconds, raw.nodes, raw.termination, solution)


def as_feasibility(res: SolveResult) -> SolveResult:
    """A zero-objective minimisation read as the question "is there a point?": "infeasible"
    is the answer here (bound +inf: the minimum over nothing), a point found is the other
    answer (bound 0), anything else stays as it was (a time limit, an error: no answer)."""
    if res.termination is Termination.INFEASIBLE:
        return SolveResult(SolveStatus.OPTIMAL, math.inf, math.inf, None, res.seconds, res.nodes,
                           Termination.INFEASIBLE, SolutionStatus.NONE)
    if res.point is not None and res.status is SolveStatus.OPTIMAL:
        return SolveResult(SolveStatus.OPTIMAL, 0.0, 0.0, res.point, res.seconds, res.nodes,
                           res.termination, SolutionStatus.OPTIMAL)
    return res
