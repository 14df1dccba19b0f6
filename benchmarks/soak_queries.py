"""Random property and epsilon-equivalence queries with truth by exact enumeration.

A **property** is a disjunction of conjunctions of output rows P y <= c (VNN-LIB's unsafe
set). Per disjunct, rows P are drawn (unit rows, differences of two outputs, random rows)
and offsets c0 = P y(x_s) at a sampled point; the enumeration gives the exact minimum over
the box of the excess max_i (P_i y - c0_i), m0, one LP per region. The thresholds are then
c = c0 + m0 - mu, so the true minimum excess is exactly mu, drawn clear of 0 (``MARGIN_*``):
the disjunct is reachable iff mu < 0. An answer of ``leo.queries.property.check_property`` is
**wrong** when it says SAT with a point the module's own forward pass does not put in the
unsafe set, or UNSAT while an LP optimum of the enumeration is, by that forward pass, in it
by more than the tolerance.

An **equivalence** query compares a network f with a copy g (a few weights perturbed, or
leo's compression of f): the enumeration over the joint network f - g gives D = max over
the box of max_i |f_i - g_i|, and epsilon is drawn around D (``leo.queries.equivalence.compare_exact``
with that tolerance). PROVEN while an enumeration point shows |f - g| > epsilon + tol, or
REFUTED with a point whose forward passes give |f - g| <= epsilon, is a **wrong answer**.

Undecided answers count apart; an answer the truth contradicts only by the LP's value (no
point confirms it) counts as a **truth disagreement**, a bug of the soak or of the LPs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.soak_enum import Enumeration, Regions, enumerate_regions, max_abs, min_excess
from benchmarks.soak_graph import Graph, joint_difference

#: |mu| (and |epsilon - D|) is at least this x (1 + largest |output| seen) ...
MARGIN_FLOOR = 1e-4
#: ... and 10^U(MARGIN_LOG) x the spread of the rows' values over the box.
MARGIN_LOG = (-3.0, -0.5)
#: A point confirms a query's truth when its excess clears 0 by this x (1 + largest |output|).
QUERY_RTOL = 1e-6
#: leo's own confirmation tolerance on the excess (``leo.queries.property.CHECK_TOL``), absolute.
LEO_CHECK_TOL = 1e-6


class Verdict(enum.Enum):
    """How one query's answer compares with the truth."""

    RIGHT = "right"
    WRONG = "wrong"
    UNDECIDED = "undecided"
    NO_TRUTH = "no truth"  # the enumeration ran past its cap
    DISAGREES = "truth disagrees"  # the answer is confirmed by a point, the truth's LP value says otherwise
    OUTSIDE_BOX = "witness outside the box"  # right answer, but its point lies outside the box (clipped, it confirms)


@dataclass
class QueryOutcome:
    kind: str  # "property" or "equivalence"
    verdict: Verdict
    truth: bool | None  # property: reachable; equivalence: equivalent within epsilon
    answer: str
    how: str = ""
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


Forward = Callable[[np.ndarray], np.ndarray]


def _rows(rng: np.random.Generator, m: int) -> np.ndarray:
    k = int(rng.integers(1, 4))
    p = np.zeros((k, m))
    for r in range(k):
        draw = rng.random()
        if draw < 0.4 or m == 1:
            p[r, rng.integers(0, m)] = rng.choice([-1.0, 1.0])
        elif draw < 0.7:
            i, j = rng.choice(m, size=2, replace=False)
            p[r, i], p[r, j] = 1.0, -1.0
        else:
            p[r] = rng.normal(size=m)
    return p


def _margin(rng: np.random.Generator, spread: float, ymax: float) -> float:
    return max(10.0 ** rng.uniform(*MARGIN_LOG) * spread, MARGIN_FLOOR * (1.0 + ymax))


def property_query(rng: np.random.Generator, e: Enumeration, regions: Regions, forward: Forward,
                   pts: np.ndarray, network: Any, time_limit: float, seed: int) -> QueryOutcome:
    """Draw a property on the graph's outputs, find its truth, ask leo, compare."""
    import time

    from leo.core.domain import Box
    from leo.queries.property import Answer, Inequality, OutputProperty, check_property

    y = forward(pts)
    ymax = float(np.abs(y).max()) if y.size else 0.0
    m = y.shape[1]
    n = int(rng.integers(1, 4))
    reach = rng.random() < 0.5  # the truth to aim at: reachable by one disjunct at least
    signs = [1.0] * n
    if reach:
        signs = [-1.0 if rng.random() < 0.5 else 1.0 for _ in range(n)]
        signs[int(rng.integers(0, n))] = -1.0
    disjuncts, points = [], []
    for d in range(n):
        p = _rows(rng, m)
        c0 = p @ y[int(rng.integers(0, len(y)))]
        found = min_excess(e, regions, p, c0)
        if found is None:
            return QueryOutcome("property", Verdict.NO_TRUTH, None, "")
        spread = float(np.ptp(y @ p.T, axis=0).max())
        c = c0 + found[0] - signs[d] * _margin(rng, spread, ymax)
        disjuncts.append((p, c))
        points.append(found[1])
    tol = QUERY_RTOL * (1.0 + ymax)

    def excess(x: np.ndarray) -> float:
        out = forward(x[None, :])[0]
        return min(float((p @ out - c).max()) for p, c in disjuncts)

    seen = min(excess(x) for x in points)
    prop = OutputProperty(m, tuple(tuple(Inequality(row, float(b)) for row, b in zip(p, c)) for p, c in disjuncts))
    box = Box(e.lower, e.upper)
    t0 = time.perf_counter()
    result = check_property(network, box, prop, time_limit=time_limit, samples=int(rng.choice([0, 1024])),
                            seed=seed)
    out = QueryOutcome("property", Verdict.UNDECIDED, reach, result.answer.value, result.how,
                       time.perf_counter() - t0, {"disjuncts": n, "seen_excess": seen, "tol": tol})
    if result.answer is Answer.SAT:
        x = np.asarray(result.counterexample, dtype=np.float64)
        inside = bool(np.all((x >= e.lower) & (x <= e.upper)))
        confirmed = inside and excess(x) <= LEO_CHECK_TOL + 1e-9 * (1.0 + ymax)
        out.detail |= {"x": x.tolist(), "excess": excess(x) if inside else None}
        out.verdict = Verdict.RIGHT if confirmed and reach else Verdict.DISAGREES if confirmed else Verdict.WRONG
    elif result.answer is Answer.UNSAT:
        out.verdict = Verdict.WRONG if seen < -tol else Verdict.DISAGREES if reach else Verdict.RIGHT
        if seen < -tol:
            out.detail["x"] = points[int(np.argmin([excess(x) for x in points]))].tolist()
    return out


def equivalence_query(rng: np.random.Generator, f: Graph, g: Graph, lower: np.ndarray, upper: np.ndarray,
                      forward_f: Forward, forward_g: Forward, nets: tuple[Any, Any], pts: np.ndarray,
                      time_limit: float, copy: str) -> QueryOutcome:
    """Draw epsilon around the true max |f - g| (enumeration over the joint network), ask
    ``compare_exact``, compare."""
    import time

    from leo.core.domain import Box
    from leo.queries.equivalence import Verdict as Check, compare_exact

    y = forward_f(pts)
    ymax = float(np.abs(y).max()) if y.size else 0.0
    enum_ = enumerate_regions(joint_difference(f, g), lower, upper)
    found = None if enum_ is None else max_abs(*enum_)
    if found is None:
        return QueryOutcome("equivalence", Verdict.NO_TRUTH, None, "", detail={"copy": copy})

    def gap(x: np.ndarray) -> float:
        return float(np.abs(forward_f(x[None, :]) - forward_g(x[None, :])).max())

    d, x_star = found
    seen = max(gap(x_star), float(np.abs(y - forward_g(pts)).max()))
    floor = MARGIN_FLOOR * (1.0 + ymax)
    if d <= 1e-9 * (1.0 + ymax):  # equal up to rounding: a small epsilon, still far above D
        eps, equivalent = 10.0 ** rng.uniform(-7, -4) * (1.0 + ymax), True
    else:  # epsilon clear of D by the margin; below D only where D leaves room for it
        r = max(10.0 ** rng.uniform(*MARGIN_LOG) * d, floor)
        equivalent = bool(d - r < d / 2 or rng.random() < 0.5)
        eps = d + r if equivalent else d - r
    tol = QUERY_RTOL * (1.0 + ymax)
    t0 = time.perf_counter()
    result = compare_exact(nets[0], nets[1], Box(lower, upper), tolerance=eps, time_limit=time_limit)
    out = QueryOutcome("equivalence", Verdict.UNDECIDED, equivalent, result.verdict.name.lower(), "",
                       time.perf_counter() - t0, {"copy": copy, "eps": eps, "max_diff": d, "seen": seen})
    if result.verdict is Check.PROVEN:
        out.verdict = Verdict.WRONG if seen > eps + tol else Verdict.DISAGREES if not equivalent else Verdict.RIGHT
        if seen > eps + tol:
            out.detail["x"] = x_star.tolist()
    elif result.verdict is Check.REFUTED:
        x = np.asarray(result.counterexample, dtype=np.float64)
        outside = max(float(np.max(np.maximum(lower - x, x - upper))), 0.0)  # absolute distance
        out.detail |= {"x": x.tolist(), "outside_box": outside}
        x = np.clip(x, lower, upper)
        confirmed = gap(x) > eps
        out.detail["gap"] = gap(x)
        out.verdict = (Verdict.WRONG if not confirmed else Verdict.DISAGREES if equivalent
                       else Verdict.OUTSIDE_BOX if outside > 0.0 else Verdict.RIGHT)
    return out
