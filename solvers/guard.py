"""The one guard before trusting a solver's cutoff proofs on a model that holds every box point.

leo's models of a network (a prefix for stability, the network-wide MILP, the joint model
of two networks) are satisfied by every box point with the networks' own values, so their
LP relaxation cannot be infeasible. A solver that calls it infeasible is in numerical
trouble, and under an objective cutoff the same trouble reads as a proof ("nothing below
the cutoff"): seen on the soak's residual pair 2329 (a box with lower == upper in 4 of 6
inputs), where HiGHS called both the LP and the MILP infeasible though the forward pass
satisfies every row exactly. One LP before the cutoff solves tells the two apart; it is
cheap where a MILP's first feasible point is not (ACAS Xu: none in 60 s without a start).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from solvers.backend import Model
from solvers.result import SolveStatus, Termination


class Relaxation(enum.Enum):
    """What the LP relaxation's solve says about the solver on this model."""

    SOUND = "sound"  # solved: the solver's proofs on this model may count
    UNDECIDED = "undecided"  # stopped short (a time limit): no sign of trouble, no proof of its absence
    IN_TROUBLE = "in trouble"  # called infeasible (or failed): none of its cutoff proofs may count


#: The guard's reading of each conclusion of the relaxation's solve.
_READING: dict[SolveStatus, Relaxation] = {
    SolveStatus.OPTIMAL: Relaxation.SOUND,
    SolveStatus.TIME_LIMIT: Relaxation.UNDECIDED,
    SolveStatus.INTERRUPTED: Relaxation.UNDECIDED,
    SolveStatus.ERROR: Relaxation.IN_TROUBLE,
}


@dataclass(frozen=True)
class RelaxationCheck:
    """The guard's verdict, the solver's termination (to name it) and the seconds it took."""

    state: Relaxation
    termination: Termination
    seconds: float

    @property
    def in_trouble(self) -> bool:
        return self.state is Relaxation.IN_TROUBLE

    def why(self, what: str) -> str:
        """One line for a user: why nothing the solver says about ``what`` is taken as a proof."""
        return (f"the solver called {what}, which holds every point of the box, {self.termination.value}: "
                f"numerical trouble, so none of its answers is taken as a proof")


def check_relaxation(lp: Model, time_limit: float) -> RelaxationCheck:
    """Solve ``lp`` (the LP relaxation of a model every box point satisfies) with a zero
    objective: SOUND when solved, IN_TROUBLE when the solver calls it infeasible or fails,
    UNDECIDED when the time ran out first."""
    res = lp.minimise(np.zeros(lp.num_cols), None, time_limit)
    return RelaxationCheck(_READING[res.status], res.termination or Termination.UNKNOWN, res.seconds)
