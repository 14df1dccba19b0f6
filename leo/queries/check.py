"""Answer a ``Query``: every input region through ``leo.queries.property.check_property``.

Cases that share an input region are checked in one call, with the disjunction of their
output rows. A polytope region is checked on its bounding box (proofs on a superset hold
on the region) with its rows in the MILPs (exact), and a point counts only inside it.
Several networks become one (``leo.core.product.parallel``); inputs that every case ties
equal (``(== X2[i] X[i])``, the usual form of equivalence queries) become one input group,
so the product reads them once and the region stays a box.

SAT as soon as one region has a counterexample that the networks' own forward passes
confirm (and the region contains); UNSAT only when every region is proven; else TIMEOUT
(a time limit ran out) or UNKNOWN.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.spec import REGION_TOL, InputRegion, Inequality, OutputProperty, Query, RegionGroup
from leo.errors import LeoInputError
from leo.queries.property import CHECK_TOL, Answer, PropertyResult, Say, check_property
from solvers.backend import Solver


@dataclass(frozen=True)
class QueryResult:
    """The answer; for SAT the counterexample per declared input and output name (each
    network's own forward pass gives the outputs), the flat point and the case it violates."""

    answer: Answer
    inputs: dict[str, np.ndarray] | None
    outputs: dict[str, np.ndarray] | None
    seconds: float
    how: str = ""  # what decided each region (``leo.queries.strategies.How`` texts, joined)
    reason: str = ""
    x: np.ndarray | None = None  # all declared inputs, flat and concatenated
    y: np.ndarray | None = None  # all declared outputs, flat and concatenated
    case: int | None = None
    solves: int = 0  # MILP solves, over every region


def query_networks(query: Query, networks: Mapping[str, Network]) -> tuple[Network, ...]:
    """The network of every declaration, in order (an ``equal-to`` declaration may reuse
    the network it names); LeoInputError for one missing or of the wrong size."""
    out = []
    for decl in query.networks:
        net = networks.get(decl.name)
        if net is None and decl.equal_to is not None:
            net = networks.get(decl.equal_to)
        if net is None:
            raise LeoInputError(f"no network given for '{decl.name}' (the query declares "
                                f"{', '.join(d.name for d in query.networks)})")
        if net.input_dim != decl.input_dim or net.output_dim != decl.output_dim:
            raise LeoInputError(f"network '{decl.name}' takes {net.input_dim} inputs and gives {net.output_dim} "
                                f"outputs, but the query declares {decl.input_dim} and {decl.output_dim}")
        shape = net.input_shape
        declared = decl.inputs[0].shape if len(decl.inputs) == 1 else None
        if shape is not None and declared is not None and not decl.flat and _squeezed(shape) != _squeezed(declared):
            raise LeoInputError(f"network '{decl.name}' takes inputs of shape {list(shape)}, but the query "
                                f"declares {decl.inputs[0].name} with shape {list(declared)}")
        out.append(net)
    return tuple(out)


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    """A shape without its size-1 dimensions: [1,5] and [5] (a batch of one) are one shape."""
    return tuple(d for d in shape if d != 1)


def forward(query: Query, nets: Sequence[Network], x: np.ndarray) -> np.ndarray:
    """The declared outputs for flat inputs ``x``, each network by its own forward pass."""
    x = np.atleast_2d(x)
    ys, at = [], 0
    for decl, net in zip(query.networks, nets):
        ys.append(net(x[:, at:at + decl.input_dim]))
        at += decl.input_dim
    return np.hstack(ys)


@dataclass(frozen=True)
class _Ties:
    """Inputs every case ties equal: column k of the full input is column ``column[k]`` of
    the reduced one; ``groups`` is each network's input group for ``parallel``."""

    column: np.ndarray
    groups: tuple[int, ...]

    def expand(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[..., self.column]


def _tie_pairs(region: InputRegion) -> frozenset[tuple[int, int]]:
    """The pairs (p, q) with ``x_p = x_q`` in ``region``: rows ``x_p - x_q <= 0`` both ways round."""
    a, b = region.rows()
    rows = set()
    for r in np.flatnonzero((b == 0.0) & (np.count_nonzero(a, axis=1) == 2)):
        plus, minus = np.flatnonzero(a[r] == 1.0), np.flatnonzero(a[r] == -1.0)
        if plus.size == 1 and minus.size == 1:
            rows.add((int(plus[0]), int(minus[0])))
    return frozenset(pq for pq in rows if pq[::-1] in rows)


def _ties(query: Query) -> _Ties:
    """Network j's inputs join network i's group when every case ties them elementwise."""
    offsets = np.cumsum([0] + [d.input_dim for d in query.networks])
    column = np.arange(query.input_dim)
    groups = list(range(len(query.networks)))
    pairs = [_tie_pairs(g.region) for g in query.groups()]
    for j, dj in enumerate(query.networks):
        for i in range(j):
            if groups[i] != i or query.networks[i].input_dim != dj.input_dim or not query.cases:
                continue
            if all((offsets[i] + k, offsets[j] + k) in tied for tied in pairs for k in range(dj.input_dim)):
                groups[j] = i
                column[offsets[j]:offsets[j + 1]] = column[offsets[i]:offsets[i + 1]]
                break
    kept = sorted(set(column.tolist()))
    renumber = {c: r for r, c in enumerate(kept)}
    group_ids = {g: r for r, g in enumerate(sorted(set(groups)))}
    return _Ties(np.array([renumber[c] for c in column]), tuple(group_ids[g] for g in groups))


def _reduced(region: InputRegion, ties: _Ties) -> InputRegion | None:
    """The region over the reduced inputs (None when the ties leave it empty)."""
    n = int(ties.column.max()) + 1 if ties.column.size else 0
    lower, upper = np.full(n, -np.inf), np.full(n, np.inf)
    np.maximum.at(lower, ties.column, region.lower)
    np.minimum.at(upper, ties.column, region.upper)
    if (lower > upper).any():
        return None
    a, b = region.rows()
    merge = np.zeros((region.dim, n))
    merge[np.arange(region.dim), ties.column] = 1.0
    a = a @ merge
    live = np.abs(a).max(axis=1, initial=0.0) > 0
    if (b[~live] < 0).any():
        return None
    return InputRegion(lower, upper, a[live], b[live], margin=region.margin)


def check_query(query: Query, networks: Mapping[str, Network], time_limit: float, *, seed: int = 0,
                compress_first: bool = False, progress: Say | None = None,
                solver: Solver | str = Solver.HIGHS) -> QueryResult:
    """Is some input of some case's region mapped into that case's unsafe rows? The MILPs of
    ``leo.queries.property.check_property`` run in ``solver``."""
    t0 = time.perf_counter()
    deadline = Deadline.after(time_limit)
    nets = query_networks(query, networks)
    ties = _ties(query)
    if len(nets) == 1:
        net = nets[0]
    else:
        from leo.core.product import parallel

        net = parallel(nets, ties.groups)
    groups = query.groups()
    open_reasons: list[tuple[Answer, str, str]] = []
    proofs: list[str] = []  # how each region was proven
    solves = 0
    for k, group in enumerate(groups):
        region = _reduced(group.region, ties)
        if region is None:
            continue
        share = max(deadline.left() / (len(groups) - k), 1e-3)
        if progress is not None and len(groups) > 1:
            progress(f"input region {k + 1} of {len(groups)} ({len(group.cases)} cases), up to {share:.1f} s")
        eps = _closeness(nets, ties, region, group.prop)
        if eps is not None:  # two networks on one input, "some |f_i - g_i| >= eps": shared units
            from leo.queries.closeness import closeness

            res = closeness(nets[0], nets[1], region.box(), eps, share, progress=progress, solver=solver)
        else:
            # input splitting bounds sub-boxes of the box and cannot use the rows: on a polytope
            # smaller than its box it spends its share on sub-boxes outside the region
            res = check_property(net, region.box(), group.prop, time_limit=share, seed=seed,
                                 compress_first=compress_first, progress=progress, branch=region.is_box,
                                 polytope=None if region.is_box else region.rows(), solver=solver)
        solves += res.solves
        if res.answer is Answer.SAT:
            return _confirmed(query, nets, ties, group, res, t0, solves)
        if res.answer is Answer.UNSAT:
            proofs.append(res.how)
        else:
            open_reasons.append((res.answer, res.how, f"input region {k + 1} of {len(groups)}: {res.reason}"))
    seconds = time.perf_counter() - t0
    if not open_reasons:
        return QueryResult(Answer.UNSAT, None, None, seconds, ", ".join(dict.fromkeys(proofs)) or "no case",
                           solves=solves)
    timed = [o for o in open_reasons if o[0] is Answer.TIMEOUT]
    answer, how, reason = (timed or open_reasons)[0]
    return QueryResult(answer, None, None, seconds, how, reason, solves=solves)


def _closeness(nets: Sequence[Network], ties: _Ties, region: InputRegion, prop: OutputProperty) -> float | None:
    """ε when the question is ε-closeness of two networks on one shared box input (the form of
    equivalence benchmarks such as isomorphic_acasxu): ``leo.queries.closeness.closeness`` answers it
    with the shared-unit MILPs of ``leo check --exact``, which input splitting on the product
    cannot match (it bounds f and g apart). Otherwise None."""
    from leo.queries.closeness import closeness_eps

    if len(nets) != 2 or ties.groups != (0, 0) or not region.is_box or nets[0].output_dim != nets[1].output_dim:
        return None
    return closeness_eps(prop, nets[0].output_dim)


def _confirmed(query: Query, nets: Sequence[Network], ties: _Ties, group: RegionGroup, res: PropertyResult,
               t0: float, solves: int) -> QueryResult:
    """SAT when the networks' own forward passes put the point in one of ``group``'s cases
    (and its region holds it); otherwise UNKNOWN, saying so."""
    assert res.counterexample is not None
    x = ties.expand(res.counterexample)
    y = forward(query, nets, x)[0]
    seconds = time.perf_counter() - t0
    for i in group.cases:
        case = query.cases[i]
        if bool(case.region.contains(x, REGION_TOL)[0]) and float(case.excess(y)[0]) <= CHECK_TOL:
            return QueryResult(Answer.SAT, _named(query, x, "inputs"), _named(query, y, "outputs"), seconds,
                               res.how, x=x, y=y, case=i, solves=solves)
    return QueryResult(Answer.UNKNOWN, None, None, seconds, res.how,
                       "a point found is not a counterexample by the networks' own forward passes", solves=solves)


def _named(query: Query, v: np.ndarray, side: str) -> dict[str, np.ndarray]:
    """Flat values split per declared tensor, each in its declared shape."""
    out, at = {}, 0
    for decl in query.networks:
        for t in getattr(decl, side):
            out[t.name] = np.asarray(v[at:at + t.size]).reshape(t.shape)
            at += t.size
    return out


def as_property_result(query: Query, result: QueryResult) -> tuple[PropertyResult, OutputProperty, Box]:
    """``result`` in ``leo.queries.property``'s terms, for its report and results file: the answer
    with the flat point, the cases as one property (disjunct i is case i) and the box
    around every region."""
    disjuncts = tuple(tuple(Inequality(np.array(r), float(v)) for r, v in zip(c.a, c.c)) for c in query.cases)
    prop = OutputProperty(query.output_dim, disjuncts)
    if query.cases:
        box = Box(np.min([c.region.lower for c in query.cases], axis=0),
                  np.max([c.region.upper for c in query.cases], axis=0))
    else:
        box = Box(np.zeros(query.input_dim), np.zeros(query.input_dim))
    return PropertyResult(result.answer, result.x, result.seconds, result.y, result.case, result.how,
                          result.solves, result.reason), prop, box
