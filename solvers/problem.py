"""A mixed-integer linear problem as plain arrays, and the one way to build or extend it.

    min c^T v  s.t.  row_lower <= A v <= row_upper,  col_lower <= v <= col_upper,
                     v_i integer where ``integer[i]``.

Every back-end reads a ``Problem``; nothing here knows what the columns mean beyond
two generic facts: ``x_cols`` (the columns whose values are the point reported with a
solution) and ``relus`` (the big-M ReLU blocks written by ``ProblemBuilder.add_relu``,
which the cut separator of ``solvers.cuts`` reads).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def _no_relus() -> np.ndarray:
    return np.zeros((0, 4), dtype=int)


@dataclass(frozen=True)
class Problem:
    """The arrays of one MILP (see the module docstring)."""

    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray  # bool per column
    names: tuple[str, ...]
    #: the columns whose values are the point of a solution (None: every column)
    x_cols: np.ndarray | None = None
    #: one row per big-M ReLU h = max(0, z) with binary d: its z, h and d columns and the
    #: row defining z (z - sum w h_prev in [row_lower, row_upper])
    relus: np.ndarray = dataclasses.field(default_factory=_no_relus)

    @property
    def num_cols(self) -> int:
        return int(self.col_lower.size)

    @property
    def num_rows(self) -> int:
        return int(self.row_lower.size)

    @property
    def num_binaries(self) -> int:
        return int(self.integer.sum())

    def cost(self, cols: Sequence[int] | np.ndarray, coeffs: Sequence[float] | np.ndarray | float = 1.0
             ) -> np.ndarray:
        """The cost vector with ``coeffs`` on ``cols`` and 0 elsewhere."""
        c = np.zeros(self.num_cols)
        c[np.asarray(cols, dtype=int)] = coeffs
        return c


def with_rows(problem: Problem, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> Problem:
    """A copy of ``problem`` (of its type, every other field kept) with rows appended."""
    return with_columns(problem, np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool), (), matrix, lower, upper)[0]


def with_columns(problem: Problem, lower: np.ndarray, upper: np.ndarray, integer: np.ndarray,
                 names: Sequence[str], rows: sp.spmatrix, row_lower: np.ndarray, row_upper: np.ndarray
                 ) -> tuple[Problem, np.ndarray]:
    """A copy of ``problem`` (of its type, every other field kept) with columns and then
    rows appended; ``rows`` may span old and new columns. Returns it and the new columns."""
    p = problem
    total = p.num_cols + len(lower)
    old = p.matrix.tocoo()
    new = sp.coo_matrix(rows)
    matrix = sp.vstack([
        sp.coo_matrix((old.data, (old.row, old.col)), shape=(old.shape[0], total)),
        sp.coo_matrix((new.data, (new.row, new.col)), shape=(new.shape[0], total)),
    ]).tocsr()
    joint = dataclasses.replace(
        p, matrix=matrix,
        row_lower=np.concatenate([p.row_lower, np.asarray(row_lower, dtype=float)]),
        row_upper=np.concatenate([p.row_upper, np.asarray(row_upper, dtype=float)]),
        col_lower=np.concatenate([p.col_lower, np.asarray(lower, dtype=float)]),
        col_upper=np.concatenate([p.col_upper, np.asarray(upper, dtype=float)]),
        integer=np.concatenate([p.integer, np.asarray(integer, dtype=bool)]),
        names=p.names + tuple(names),
    )
    return joint, np.arange(p.num_cols, total)


class ProblemBuilder:
    """Appends columns and rows, then ``build`` gives the ``Problem``. Started from an
    existing problem (``base``), it appends to that one."""

    def __init__(self, base: Problem | None = None) -> None:
        self._base = base
        self._lo: list[np.ndarray] = [] if base is None else [base.col_lower]
        self._hi: list[np.ndarray] = [] if base is None else [base.col_upper]
        self._int: list[np.ndarray] = [] if base is None else [base.integer]
        self._names: list[str] = [] if base is None else list(base.names)
        self._n = 0 if base is None else base.num_cols
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._row_lo: list[np.ndarray] = []
        self._row_hi: list[np.ndarray] = []
        self._m = 0 if base is None else base.num_rows
        self._m0 = self._m
        self._relus: list[np.ndarray] = [_no_relus() if base is None else base.relus]

    @property
    def num_cols(self) -> int:
        return self._n

    @property
    def num_rows(self) -> int:
        return self._m

    def col_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The lower and upper bounds of every column so far."""
        if not self._lo:
            return np.zeros(0), np.zeros(0)
        self._lo, self._hi = [np.concatenate(self._lo)], [np.concatenate(self._hi)]
        return self._lo[0], self._hi[0]

    def add_cols(self, lower: np.ndarray, upper: np.ndarray, names: str | Sequence[str],
                 integer: bool = False) -> np.ndarray:
        """New columns; ``names`` is a prefix (``prefix_i``) or one name per column."""
        lo = np.atleast_1d(np.asarray(lower, dtype=float))
        hi = np.atleast_1d(np.asarray(upper, dtype=float))
        count = lo.size
        self._lo.append(lo)
        self._hi.append(hi)
        self._int.append(np.full(count, integer, dtype=bool))
        if isinstance(names, str):
            self._names.extend(f"{names}_{i}" for i in range(count))
        else:
            self._names.extend(names)
        start, self._n = self._n, self._n + count
        return np.arange(start, self._n)

    def add_rows(self, matrix: sp.spmatrix, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Rows ``lower <= matrix @ v <= upper`` over the columns so far; returns their indices."""
        coo = sp.coo_matrix(matrix)
        start = self._m
        self._rows.append(coo.row.astype(np.int64) + start)
        self._cols.append(coo.col.astype(np.int64))
        self._vals.append(coo.data.astype(float))
        self._row_lo.append(np.atleast_1d(np.asarray(lower, dtype=float)))
        self._row_hi.append(np.atleast_1d(np.asarray(upper, dtype=float)))
        self._m += coo.shape[0]
        return np.arange(start, self._m)

    def add_relu(self, z: int, lower: float, upper: float, z_row: int, names: tuple[str, str] = ("h", "d")
                 ) -> tuple[int, int]:
        """The output column ``h`` of ``h = max(0, z)`` for ``lower < 0 < upper``, with the
        big-M rows (the only place they are written) and a binary ``d`` (1: active):

            h >= z,  h >= 0,  h <= z - lower (1 - d),  h <= upper d.

        ``z_row`` is the row defining ``z``; (z, h, d, z_row) goes to ``relus``. Returns (h, d)."""
        h, d = self.add_cols([0.0, 0.0], [upper, 1.0], names)
        self._int[-1][1] = True
        l = float(lower)
        rows = np.array([0, 0, 1, 1, 1, 2, 2])
        cols = np.array([z, h, h, z, d, h, d])
        vals = np.array([1.0, -1.0, 1.0, -1.0, -l, 1.0, -float(upper)])
        self.add_rows(sp.coo_matrix((vals, (rows, cols)), shape=(3, self._n)),
                      np.full(3, -np.inf), np.array([0.0, -l, 0.0]))
        self._relus.append(np.array([[z, h, d, z_row]], dtype=int))
        return int(h), int(d)

    def add_relus(self, z: np.ndarray, lower: np.ndarray, upper: np.ndarray, z_rows: np.ndarray,
                  names: Sequence[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        """``add_relu`` for many units at once (the same columns, rows and order as one call
        per unit, h and d interleaved): 14,740 single calls took 16 s on a 10k-unit CNN,
        nearly all of it building one small sparse matrix per call. Returns (h, d) columns."""
        z = np.asarray(z, dtype=np.int64)
        n = z.size
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        l = np.asarray(lower, dtype=float)
        u = np.asarray(upper, dtype=float)
        cols = self.add_cols(np.zeros(2 * n), np.column_stack([u, np.ones(n)]).ravel(),
                             [name for pair in names for name in pair])
        self._int[-1][1::2] = True
        h, d = cols[0::2], cols[1::2]
        base = 3 * np.arange(n)[:, None]
        rows = (base + np.array([0, 0, 1, 1, 1, 2, 2])).ravel()
        entries = np.column_stack([z, h, h, z, d, h, d]).ravel()
        vals = np.column_stack([np.ones(n), -np.ones(n), np.ones(n), -np.ones(n), -l, np.ones(n), -u]).ravel()
        upper_rows = np.column_stack([np.zeros(n), -l, np.zeros(n)]).ravel()
        self.add_rows(sp.coo_matrix((vals, (rows, entries)), shape=(3 * n, self._n)),
                      np.full(3 * n, -np.inf), upper_rows)
        self._relus.append(np.column_stack([z, h, d, np.asarray(z_rows, dtype=np.int64)]))
        return h, d

    def build(self) -> Problem:
        """The problem so far (columns added after rows of a ``base`` get zero entries there)."""
        lo, hi = self.col_bounds()
        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(self._cols) if self._cols else np.zeros(0, dtype=np.int64)
        vals = np.concatenate(self._vals) if self._vals else np.zeros(0)
        matrix = sp.csr_matrix((vals, (rows, cols)), shape=(self._m, self._n))
        row_lo = np.concatenate(self._row_lo) if self._row_lo else np.zeros(0)
        row_hi = np.concatenate(self._row_hi) if self._row_hi else np.zeros(0)
        base = self._base
        if base is not None:
            head = sp.hstack([base.matrix, sp.csr_matrix((base.num_rows, self._n - base.num_cols))])
            matrix = sp.vstack([head, matrix[self._m0:]]).tocsr()
            row_lo = np.concatenate([base.row_lower, row_lo])
            row_hi = np.concatenate([base.row_upper, row_hi])
        return Problem(
            matrix=matrix, row_lower=row_lo, row_upper=row_hi, col_lower=lo, col_upper=hi,
            integer=np.concatenate(self._int) if self._int else np.zeros(0, dtype=bool),
            names=tuple(self._names), x_cols=None if base is None else base.x_cols,
            relus=np.vstack(self._relus).astype(int).reshape(-1, 4),
        )
