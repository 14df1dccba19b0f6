"""The one query type: networks, and a disjunction of cases, each an input region with
linear rows on the outputs that describe the UNSAFE set (as in VNN-LIB).

A query asks whether some input of some case's region drives the outputs into that case's
rows. Everything here is plain frozen data; the excess (how far an output is from a case's
unsafe set) is computed once, by ``excess``, for every caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from leo.core.domain import Box
from leo.errors import LeoInputError

#: A polytope's bounding box from LP optima is widened by this, relative to max(1, |bound|),
#: so that the LP solver's tolerances never cut a sliver of the polytope off the box.
BOX_MARGIN = 1e-6
#: On at most this many inputs every side of a polytope's box is tightened by LP (tighter
#: boxes mean tighter bounds); above it only the sides with no explicit bound get an LP.
TIGHTEN_AT_MOST = 64
#: A point counts as inside a polytope's rows ``a @ x <= b`` up to this much (absolute): the
#: rows are the user's, and a counterexample must satisfy them, not merely come near.
REGION_TOL = 1e-9


def excess(a: np.ndarray, c: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row of ``y``: ``max_k (a_k . y - c_k)``, how far ``y`` is outside ``a y <= c``
    (<= 0 means inside; -inf when there are no rows: every output is inside)."""
    y = np.atleast_2d(y)
    if not len(c):
        return np.full(len(y), -np.inf)
    return (y @ np.asarray(a).T - c).max(axis=1)


@dataclass(frozen=True)
class Inequality:
    """``coeffs . y <= bound`` on the network outputs ``y``."""

    coeffs: np.ndarray
    bound: float


@dataclass(frozen=True)
class OutputProperty:
    """The unsafe set: y is in it when it satisfies every inequality of some disjunct."""

    output_dim: int
    disjuncts: tuple[tuple[Inequality, ...], ...]

    def rows(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Disjunct ``i`` as ``A y <= c``."""
        ineqs = self.disjuncts[i]
        a = np.array([q.coeffs for q in ineqs], dtype=np.float64).reshape(len(ineqs), self.output_dim)
        return a, np.array([q.bound for q in ineqs], dtype=np.float64)

    def excess(self, y: np.ndarray, i: int) -> np.ndarray:
        """Per row of ``y``: how far outside disjunct ``i`` it is (<= 0 means inside)."""
        return excess(*self.rows(i), y)

    def violating(self, y: np.ndarray, tol: float = 0.0) -> tuple[int, int] | None:
        """(row of ``y``, disjunct) of the first output in the unsafe set, if any."""
        for i in range(len(self.disjuncts)):
            hits = np.flatnonzero(self.excess(y, i) <= tol)
            if hits.size:
                return int(hits[0]), i
        return None


def _frozen(v: np.ndarray | Sequence[float], ndim: int) -> np.ndarray:
    out = np.array(v, dtype=np.float64, ndmin=ndim)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class InputRegion:
    """The inputs ``lower <= x <= upper`` (finite) that also satisfy ``a @ x <= b`` (a
    polytope; no rows: a plain box), over the concatenated flat inputs of all networks.
    For a polytope, ``lower``/``upper`` is a bounding box (a superset: what is proven on
    it holds on the polytope), widened by ``margin`` where it came from LP optima."""

    lower: np.ndarray
    upper: np.ndarray
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    margin: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = _frozen(self.lower, 1).ravel(), _frozen(self.upper, 1).ravel()
        box = Box(lo, hi)  # checks finite bounds and lower <= upper
        object.__setattr__(self, "lower", box.lower)
        object.__setattr__(self, "upper", box.upper)
        if self.a is None or self.b is None or not len(np.atleast_1d(self.b)):
            object.__setattr__(self, "a", None)
            object.__setattr__(self, "b", None)
            return
        a, b = _frozen(self.a, 2), _frozen(self.b, 1).ravel()
        if a.shape != (b.size, lo.size):
            raise LeoInputError(f"polytope rows have shape {a.shape}; expected ({b.size}, {lo.size})")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    @property
    def dim(self) -> int:
        return int(self.lower.size)

    @property
    def is_box(self) -> bool:
        return self.a is None

    def box(self) -> Box:
        """The box (for a polytope: its bounding box)."""
        return Box(self.lower, self.upper)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The polytope rows ``a @ x <= b`` (none for a box)."""
        if self.a is None or self.b is None:
            return np.zeros((0, self.dim)), np.zeros(0)
        return self.a, self.b

    def contains(self, x: np.ndarray, tol: float = 0.0) -> np.ndarray:
        """Per row of ``x``: inside the box and the rows, up to ``tol``."""
        x = np.atleast_2d(x)
        inside = np.all((x >= self.lower - tol) & (x <= self.upper + tol), axis=1)
        if self.a is not None and self.b is not None:
            inside &= np.all(x @ self.a.T <= self.b + tol, axis=1)
        return inside

    def key(self) -> bytes:
        """Equal for equal regions: cases are grouped by it."""
        a, b = self.rows()
        return b"|".join(np.ascontiguousarray(v).tobytes() for v in (self.lower, self.upper, a, b))


@dataclass(frozen=True)
class TensorDecl:
    """One declared input or output: its name, element type and shape (as declared)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float64"
    onnx_name: str | None = None  # the ONNX graph's name for it, when the file gives one

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class NetworkDecl:
    """One declared network: its inputs and outputs, and the network it is ``equal_to``
    (the same function) or ``isomorphic_to`` (the same architecture), if any."""

    name: str
    inputs: tuple[TensorDecl, ...]
    outputs: tuple[TensorDecl, ...]
    equal_to: str | None = None
    isomorphic_to: str | None = None
    flat: bool = False  # VNN-LIB 1.0: X_i index the flattened input, whatever the network's shape

    @property
    def input_dim(self) -> int:
        return sum(t.size for t in self.inputs)

    @property
    def output_dim(self) -> int:
        return sum(t.size for t in self.outputs)


@dataclass(frozen=True, eq=False)
class Case:
    """One disjunct of the unsafe set: inputs in ``region`` with outputs ``a @ y <= c``
    (``y`` the concatenated flat outputs of all networks, in declaration order)."""

    region: InputRegion
    a: np.ndarray
    c: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _frozen(self.a, 2))
        object.__setattr__(self, "c", _frozen(self.c, 1).ravel())

    def excess(self, y: np.ndarray) -> np.ndarray:
        """Per row of ``y``: how far outside this case's output rows (<= 0: inside)."""
        return excess(self.a, self.c, y)


@dataclass(frozen=True)
class RegionGroup:
    """Cases that share one input region, their output rows as one property."""

    region: InputRegion
    prop: OutputProperty
    cases: tuple[int, ...]  # index into ``Query.cases`` of each disjunct of ``prop``


@dataclass(frozen=True)
class Query:
    """Is some input of some case's region mapped into that case's unsafe rows? (SAT: yes)."""

    networks: tuple[NetworkDecl, ...]
    cases: tuple[Case, ...] = field(default=())

    @property
    def input_dim(self) -> int:
        return sum(n.input_dim for n in self.networks)

    @property
    def output_dim(self) -> int:
        return sum(n.output_dim for n in self.networks)

    def groups(self) -> tuple[RegionGroup, ...]:
        """The cases grouped by input region, in order of first appearance."""
        order: dict[bytes, list[int]] = {}
        for i, case in enumerate(self.cases):
            order.setdefault(case.region.key(), []).append(i)
        out = []
        for members in order.values():
            disjuncts = tuple(tuple(Inequality(np.array(r), float(v)) for r, v in zip(self.cases[i].a, self.cases[i].c))
                              for i in members)
            out.append(RegionGroup(self.cases[members[0]].region, OutputProperty(self.output_dim, disjuncts),
                                   tuple(members)))
        return tuple(out)

    def violated_case(self, x: np.ndarray, y: np.ndarray, tol: float = 0.0, input_tol: float = 0.0) -> int | None:
        """The first case whose region holds ``x`` (up to ``input_tol``) and whose rows hold
        ``y`` (up to ``tol``): a counterexample to that case; None when there is none."""
        for i, case in enumerate(self.cases):
            if bool(case.region.contains(x, input_tol)[0]) and float(case.excess(y)[0]) <= tol:
                return i
        return None


def box_query(box: Box, prop: OutputProperty, name: str = "N") -> Query:
    """One network over one box with ``prop``'s disjuncts as cases: the query a VNN-LIB 1.0
    file with one input box means, for callers that hold a box and a property."""
    region = InputRegion(box.lower, box.upper)
    inputs, outputs = (TensorDecl("X", (box.dim,)),), (TensorDecl("Y", (prop.output_dim,)),)
    cases = tuple(Case(region, *prop.rows(i)) for i in range(len(prop.disjuncts)))
    return Query((NetworkDecl(name, inputs, outputs),), cases)


def bounding_box(lower: np.ndarray, upper: np.ndarray, a: np.ndarray, b: np.ndarray,
                 names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The box of ``{x : lower <= x <= upper, a x <= b}`` (bounds may be infinite), by an LP
    per open side, widened by BOX_MARGIN; None when the set is empty; LeoInputError (naming
    the input by ``names``) when it is unbounded. The LPs run on the rows relaxed by
    BOX_MARGIN (a superset, so the box is never too small), and "empty" means the relaxed set
    is infeasible: an LP's tolerances (1e-7) cannot make a thin but non-empty set look empty."""
    from scipy.optimize import linprog

    lo, hi = np.array(lower, dtype=np.float64), np.array(upper, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    b = b + BOX_MARGIN * np.maximum(1.0, np.abs(b))
    bounds = list(zip(np.where(np.isfinite(lo), lo, None), np.where(np.isfinite(hi), hi, None)))
    for i in range(lo.size):
        for sign, side in ((1.0, lo), (-1.0, hi)):
            if np.isfinite(side[i]) and lo.size > TIGHTEN_AT_MOST:
                continue
            cost = np.zeros(lo.size)
            cost[i] = sign
            res = linprog(cost, A_ub=a, b_ub=b, bounds=bounds, method="highs")
            if res.status == 2:
                return None
            if res.status == 3:
                name = names[i] if names is not None else f"input {i}"
                raise LeoInputError(f"the linear input constraints leave {name} unbounded; bound every input")
            if res.status != 0:
                raise LeoInputError(f"the bounding box of the linear input constraints could not be computed "
                                    f"({res.message}); give each input explicit bounds")
            v = float(res.x[i])
            widened = v - sign * BOX_MARGIN * max(1.0, abs(v))
            side[i] = widened if not np.isfinite(side[i]) else (max if sign > 0 else min)(side[i], widened)
    return lo, hi
