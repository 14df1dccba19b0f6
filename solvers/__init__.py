"""The MILP layer: a network prefix as a big-M mixed-integer program, and back-ends
that solve it (HiGHS through highspy) or hand it to any solver (Pyomo)."""

from solvers.formulation import Formulation, UnitState, build_prefix
from solvers.result import SolveResult, SolveStatus

__all__ = ["Formulation", "UnitState", "build_prefix", "SolveResult", "SolveStatus"]
