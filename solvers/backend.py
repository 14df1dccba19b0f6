"""The solver back-end interface: one ``Model`` protocol, and a registry that makes a
model of a problem with HiGHS (always installed) or, as optional extras, SCIP
(``pip install 'leo[scip]'``) or Gurobi (``pip install 'leo[gurobi]'``).

A "problem" is plain data: ``matrix`` (scipy CSR), ``row_lower``, ``row_upper``,
``col_lower``, ``col_upper``, ``integer`` (bool per column), ``num_cols``,
``num_binaries`` and, optionally, ``x_cols`` (the columns whose values are the point
reported with an incumbent; without it, the whole column vector). Back-ends are
imported only when asked for, so a missing extra costs nothing.
"""

from __future__ import annotations

import enum
import functools
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from solvers.result import SolveResult

class Solver(enum.StrEnum):
    """A MILP/LP back-end; ``Solver(text)`` reads the name a user types."""

    HIGHS = "highs"
    SCIP = "scip"
    GUROBI = "gurobi"


#: Every back-end leo knows, the default first.
SOLVERS = tuple(s.value for s in Solver)

#: The module that provides each back-end, and the import name of its solver package.
_MODULES = {"highs": "solvers.highs_backend", "scip": "solvers.scip_backend", "gurobi": "solvers.gurobi_backend"}
_PACKAGES = {"highs": "highspy", "scip": "pyscipopt", "gurobi": "gurobipy"}


class Tuning(enum.Enum):
    """How a back-end is set up for the solves a caller will ask of it."""

    DEFAULT = "default"
    #: many re-solves of one LP after bound changes (ReLU-split branch and bound): dual simplex
    #: from the last basis, no presolve, no scaling (on MNIST 256x2's LP, HiGHS's default
    #: scaling took 4-10 s for a root solve that takes 0.1 s without it)
    RESOLVE = "resolve"


@runtime_checkable
class Model(Protocol):
    """What leo asks of a solver: one persistent model of a problem whose objective,
    column bounds, row bounds and trailing rows change between solves.

    Warm starts: a MIP takes a ``start`` point; an LP re-solve starts from the last basis
    (the model is persistent). After an LP optimum ``row_duals`` gives the duals, after an
    LP the solver calls infeasible ``dual_ray`` may give a Farkas ray: either only *proposes*
    a certificate, which the caller recomputes (weak duality) before it proves anything."""

    @property
    def num_rows(self) -> int: ...

    @property
    def num_cols(self) -> int: ...

    def minimise(self, cost: np.ndarray, threshold: float | None, time_limit: float,
                 start: np.ndarray | None = None,
                 on_point: Callable[[np.ndarray], None] | None = None) -> SolveResult:
        """Minimise ``cost @ v``; stop once the proven bound >= threshold or an incumbent
        < threshold (None: to optimality). ``on_point`` gets improving incumbents (full
        column vectors) where the back-end can report them."""
        ...

    def feasibility(self, time_limit: float) -> SolveResult:
        """Whether the model has a point: ``proven_infeasible`` (the solver's word that none
        exists), a ``point`` (on ``x_cols``; ``solution()`` has every column), or neither (a
        time limit or an error: no answer)."""
        ...

    def set_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None: ...

    def set_row_bounds(self, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change the sides of existing rows (kept relaxations of leo's rows where tiny
        entries were removed: each side is widened as the row's was)."""
        ...

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None: ...

    def truncate_rows(self, count: int) -> None: ...

    def solution(self) -> np.ndarray: ...

    def row_duals(self) -> np.ndarray: ...

    def dual_ray(self) -> np.ndarray | None:
        """Row multipliers proposed as a proof that the last LP is infeasible (None: none)."""
        ...


def _missing(solver: str) -> str:
    return f"solver {solver!r} is not installed: pip install 'leo[{solver}]'"


def _check(solver: str) -> None:
    """Raise ValueError (one line) for an unknown solver name."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")


@functools.cache
def _gurobi_licensed() -> str | None:
    """None when gurobipy solves a tiny model under its licence, else why not (one line)."""
    try:
        import gurobipy as gp

        with gp.Env(empty=True) as env:
            env.setParam("OutputFlag", 0)
            env.start()
            with gp.Model(env=env) as m:
                x = m.addVar(lb=0.0, ub=1.0, vtype=gp.GRB.BINARY)
                m.setObjective(x)
                m.optimize()
                if m.Status != gp.GRB.OPTIMAL:
                    return f"gurobi could not solve a one-variable model (status {m.Status})"
    except Exception as exc:  # noqa: BLE001 - a licence or import failure of any kind
        return f"gurobi is installed but cannot solve under its licence: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return None


def _unavailable(solver: str) -> str | None:
    """None when ``solver`` can be used here, else the one-line reason."""
    _check(solver)
    if importlib.util.find_spec(_PACKAGES[solver]) is None:
        return _missing(solver)
    if solver == "gurobi":
        return _gurobi_licensed()
    return None


def unavailable(solver: str) -> str | None:
    """None when ``solver`` can be used here, else the one-line reason (ValueError: unknown name)."""
    return _unavailable(solver)


def available() -> list[str]:
    """The back-ends usable here: "highs" always, "scip" if pyscipopt imports, "gurobi" if
    gurobipy imports and a tiny model solves under its licence."""
    return [s for s in SOLVERS if _unavailable(s) is None]


def _module(solver: str) -> Any:
    why = _unavailable(solver)
    if why is not None:
        raise ValueError(why)
    try:
        return importlib.import_module(_MODULES[solver])
    except ImportError as exc:  # the package is there but broken
        raise ValueError(f"{_missing(solver)} ({exc})") from exc


def new_model(problem: Any, relax: bool = False, threads: int = 1, solver: Solver | str = Solver.HIGHS,
              tuning: Tuning = Tuning.DEFAULT) -> Model:
    """A persistent model of ``problem`` (its LP relaxation with ``relax``) in ``solver``."""
    return _module(str(solver)).new_model(problem, relax=relax, threads=threads, tuning=tuning)


def backend_version(solver: str) -> str:
    """The solver's name and version, as the certificate records it (e.g. "SCIP 10.0.0")."""
    module = _module(solver)
    if solver == "highs":
        return f"HiGHS {module.highs_version()}"
    return module.version()
