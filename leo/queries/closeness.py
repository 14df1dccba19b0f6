"""ε-closeness of two networks: is there an x in the box with some |f_i(x) - g_i(x)| >= ε?

The product's counterexample searches first (cheap, and what finds a pruned copy's
differences), then ``leo.queries.equivalence.compare_exact``, whose units shared between f and
g leave few binaries when g is close to a copy of f (input splitting on the product bounds f
and g apart, and cannot see that their difference is small).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from leo.core.deadline import Deadline, now
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.product import parallel
from leo.errors import LeoInputError
from leo.queries.equivalence import Verdict, compare_exact
from leo.queries.property import Answer, Inequality, OutputProperty, PropertyResult, check_property
from leo.stability.analysis import StabilityOptions, analyse
from solvers.backend import Solver


def closeness_property(outputs: int, eps: float) -> OutputProperty:
    """The unsafe set of an ε-closeness query on ``y = (f(x), g(x))`` with ``outputs`` entries
    each: some ``|f_i - g_i| >= eps``, one disjunct per output and sign."""
    disjuncts = []
    for i in range(outputs):
        for sign in (1.0, -1.0):
            row = np.zeros(2 * outputs)
            row[i], row[outputs + i] = -sign, sign  # -(sign (f_i - g_i)) <= -eps
            disjuncts.append((Inequality(row, -float(eps)),))
    return OutputProperty(2 * outputs, tuple(disjuncts))


def closeness_eps(prop: OutputProperty, outputs: int) -> float | None:
    """ε when ``prop`` is exactly ``closeness_property(outputs, ε)`` up to the order of its
    disjuncts and a positive scale of each row, else None: lets a query engine hand an
    ε-closeness query to ``closeness``."""
    if prop.output_dim != 2 * outputs or len(prop.disjuncts) != 2 * outputs:
        return None
    seen, eps = set(), None
    for disjunct in prop.disjuncts:
        if len(disjunct) != 1:
            return None
        row, bound = disjunct[0].coeffs, disjunct[0].bound
        nonzero = np.flatnonzero(row)
        if nonzero.size != 2 or nonzero[1] != nonzero[0] + outputs or not bound < 0:
            return None
        i, scale = int(nonzero[0]), abs(float(row[nonzero[0]]))
        if row[i] != -row[i + outputs]:
            return None
        value = -bound / scale
        if eps is not None and value != eps:
            return None
        eps = value
        seen.add((i, row[i] < 0))
    return eps if len(seen) == 2 * outputs else None


#: Share of a closeness check's time for ``check_property`` on the product (counterexample
#: searches, input splitting, MILPs) before the shared-unit MILPs of ``compare_exact`` get the rest:
#: the searches find the pruned copies' counterexamples in well under a second, while proofs for
#: near-identical networks need the shared units (input splitting bounds f and g independently).
SEARCH_SHARE = 0.25
#: Share of the rest for the stability analyses of f and g that ``compare_exact`` starts from.
ANALYSIS_SHARE = 0.3


def closeness(f: Network, g: Network, box: Box, eps: float, time_limit: float,
              progress: Callable[[str], None] | None = None, solver: Solver | str = Solver.HIGHS) -> PropertyResult:
    """Is there an x in ``box`` with some |f_i(x) - g_i(x)| >= eps?

    First ``check_property`` on the product of f and g with tied inputs (sampling, gradient
    attacks, region walks and input splitting on few inputs, MILPs) for SEARCH_SHARE of the time;
    then, if undecided, ``compare_exact`` (units of g proven equal to units of f share their
    variables, so a near-identical pair leaves few binaries). SAT comes with x and the product's
    output (f(x), g(x)) by the forward pass; UNSAT only on a proof."""
    if f.input_dim != g.input_dim or f.output_dim != g.output_dim:
        raise LeoInputError(f"the networks differ in shape ({f.input_dim} -> {f.output_dim} against "
                            f"{g.input_dim} -> {g.output_dim}): closeness needs the same inputs and outputs")
    if not eps > 0:
        raise LeoInputError(f"ε must be positive, got {eps}")
    t0 = now()
    deadline = Deadline.after(time_limit)
    prod = parallel([f, g], [0, 0])
    first = check_property(prod, box, closeness_property(f.output_dim, eps), SEARCH_SHARE * time_limit,
                           progress=progress, solver=solver)
    if first.answer in (Answer.SAT, Answer.UNSAT):
        return replace(first, seconds=now() - t0)
    return _shared_units(f, g, prod, box, eps, deadline, progress, t0, solver)


def _shared_units(f: Network, g: Network, prod: Network, box: Box, eps: float, deadline: Deadline,
                  progress: Callable[[str], None] | None, t0: float, solver: Solver | str) -> PropertyResult:
    """``compare_exact`` within the time left: max |f - g| <= the float just below eps proves that no
    point reaches eps; a point it confirms above that float reaches it."""
    say = progress or (lambda _line: None)
    left = deadline.left()
    if left <= 0:
        return PropertyResult(Answer.TIMEOUT, None, now() - t0, how="timeout",
                              reason="the time limit ran out in the searches on the product")
    say(f"shared-unit MILPs (compare_exact), up to {left:.1f} s")
    opts = StabilityOptions(time_budget=ANALYSIS_SHARE * left / 2, solver=solver)
    reports = (analyse(f, box, opts), analyse(g, box, opts))
    solves = 2 * f.output_dim + 2  # the final MILPs, and room for the matching LPs
    per_solve = max(deadline.left() / solves, 1e-3)
    res = compare_exact(f, g, box, tolerance=float(np.nextafter(eps, 0.0)), time_limit=per_solve,
                        progress=say, reports=reports, deadline=deadline, solver=solver)
    seconds = now() - t0
    if res.verdict is Verdict.PROVEN:
        return PropertyResult(Answer.UNSAT, None, seconds, how="shared-unit milp")
    if res.verdict is Verdict.REFUTED and res.counterexample is not None:
        x = res.counterexample
        y = prod(x[None])[0]
        i = int(np.argmax(np.abs(y[:f.output_dim] - y[f.output_dim:])))
        disjunct = 2 * i + (0 if y[i] >= y[f.output_dim + i] else 1)
        return PropertyResult(Answer.SAT, x, seconds, y, disjunct, how="shared-unit milp")
    timed_out = deadline.passed() or "time limit" in res.reason
    return PropertyResult(Answer.TIMEOUT if timed_out else Answer.UNKNOWN, None, seconds,
                          how="shared-unit milp", reason=res.reason)
