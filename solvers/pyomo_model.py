"""The same problem as a Pyomo model, so any Pyomo solver can solve it and
``leo export`` can write it as LP or MPS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from solvers.problem import Problem


def to_pyomo(formulation: Problem, cost: np.ndarray):  # noqa: ANN201 - a pyomo ConcreteModel
    """A ConcreteModel: variables ``v[name]``, rows ``row[i]``, objective ``min cost @ v``."""
    import pyomo.environ as pyo

    f = formulation
    m = pyo.ConcreteModel(name="leo")
    names = list(f.names)

    def bounds(_m, name):  # noqa: ANN001, ANN202
        i = index[name]
        lo, hi = f.col_lower[i], f.col_upper[i]
        return (lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)

    def domain(_m, name):  # noqa: ANN001, ANN202
        return pyo.Binary if f.integer[index[name]] else pyo.Reals

    index = {n: i for i, n in enumerate(names)}
    m.v = pyo.Var(names, bounds=bounds, domain=domain)
    a = f.matrix.tocsr()

    def row(_m, r):  # noqa: ANN001, ANN202
        lo, hi = f.row_lower[r], f.row_upper[r]
        start, end = a.indptr[r], a.indptr[r + 1]
        expr = sum(float(a.data[p]) * _m.v[names[a.indices[p]]] for p in range(start, end))
        return (lo if np.isfinite(lo) else None, expr, hi if np.isfinite(hi) else None)

    m.row = pyo.Constraint(range(a.shape[0]), rule=row)
    nz = np.flatnonzero(cost)
    m.obj = pyo.Objective(expr=sum(float(cost[i]) * m.v[names[i]] for i in nz), sense=pyo.minimize)
    return m


def write_model(formulation: Problem, cost: np.ndarray, path: Path) -> None:
    """Write ``.lp`` or ``.mps`` (format from the suffix), with readable names."""
    from pyomo.opt import ProblemFormat

    model = to_pyomo(formulation, cost)
    # pyomo's enum, not the string "lp": it compares the two and warned on every write
    fmt = ProblemFormat.cpxlp if path.suffix.lower() == ".lp" else ProblemFormat.mps
    model.write(str(path), format=fmt, io_options={"symbolic_solver_labels": True})
