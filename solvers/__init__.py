"""The MILP layer: problems as plain arrays (``solvers.problem``), back-ends that solve
them (HiGHS through highspy by default, SCIP and Gurobi as extras, ``solvers.backend``;
Pyomo for any other solver), typed results (``solvers.result``), the one guard before
trusting cutoff proofs (``solvers.guard``), and the ideal-formulation cuts. It knows nothing of leo:
leo writes its networks as problems (``leo.bounds.encoding``)."""

from solvers.problem import Problem, ProblemBuilder, with_columns, with_rows
from solvers.result import SolutionStatus, SolveResult, SolveStatus, Termination

__all__ = ["Problem", "ProblemBuilder", "with_columns", "with_rows", "SolveResult", "SolveStatus", "Termination",
           "SolutionStatus"]
