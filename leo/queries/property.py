"""Exact verification of an output property over the input box, with the same big-M
MILP that proves unit stability.

A property is the *unsafe* set, as in VNN-LIB: a disjunction of conjunctions of
linear inequalities ``a . y <= c`` on the outputs ``y``. The answer (``Answer``) uses
VNN-COMP's words: SAT means a counterexample exists (an input in the box whose output
lies in the unsafe set: the property is VIOLATED), and always comes with a point that
the network's own forward pass confirms; UNSAT (the property HOLDS) only when every
disjunct is proven unreachable; TIMEOUT when the time limit ran out, UNKNOWN when a
solve stopped without a proof or its point failed the forward pass. An interrupted
solve proves nothing.

How it is decided is a schedule (``leo.queries.schedules``: which strategies of
``leo.queries.strategies`` and ``leo.queries.strategies_exact`` run, in what order, with
what share of the time), run by ``leo.core.schedule.run_schedule`` on one deadline. The
exact solve of one disjunct (a MILP through ``solvers.backend``) is here.
"""

from __future__ import annotations

import enum
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.schedule import Run, StepRecord, run_schedule
from leo.core.spec import REGION_TOL, Inequality, OutputProperty  # noqa: F401  (the unsafe-set types, re-exported)
from leo.errors import LeoInputError
from leo.exitcodes import ExitCode
from leo.queries.schedules import ANALYSIS_SHARE, RECHECK_SHARE, pick  # noqa: F401  (the shares, re-exported)
from leo.queries.strategies_exact import MilpBase, disjunct_model
from leo.queries.strategies import (CHECK_TOL, DisjunctOutcome, DisjunctStatus, Found, How, Polytope,  # noqa: F401
                                    PropertyProblem, Say, StepName)
from leo.stability.report import StabilityReport
from solvers.backend import Solver
from solvers.problem import Problem

#: The outcome of one disjunct's exact solve (the name the tests and older callers use).
_Outcome = DisjunctOutcome
#: When the solver's point misses by more than CHECK_TOL (its feasibility tolerances
#: at work), the disjunct is solved once more with every inequality tightened by this.
RETRY_MARGIN = 1e-5


class Answer(enum.Enum):
    """The answer to "is there a counterexample?", in VNN-COMP's words (the value)."""

    UNSAT = "unsat"  # no input in the box reaches the unsafe set: the property HOLDS (proven)
    SAT = "sat"  # a counterexample, confirmed by the network's forward pass: the property is VIOLATED
    UNKNOWN = "unknown"  # the solver stopped without a proof (numerical trouble, a point that fails the check)
    TIMEOUT = "timeout"  # the time limit ran out before a proof or a counterexample

    @property
    def exit_code(self) -> ExitCode:
        """0 holds, 1 violated (confirmed counterexample), 3 not decided."""
        return {Answer.UNSAT: ExitCode.OK, Answer.SAT: ExitCode.REFUTED}.get(self, ExitCode.UNDECIDED)

    @property
    def meaning(self) -> str:
        return {Answer.UNSAT: "the property holds (proven)", Answer.SAT: "the property is VIOLATED"}.get(
            self, "not decided")


@dataclass(frozen=True)
class PropertyResult:
    """The answer, and for SAT the counterexample with the output the forward pass gives."""

    answer: Answer
    counterexample: np.ndarray | None
    seconds: float
    output: np.ndarray | None = None  # net(counterexample), by the (original) network's forward pass
    disjunct: int | None = None  # which disjunct the counterexample satisfies
    how: How | str = ""  # what decided it, or why it is open (a How; free text from other callers)
    solves: int = 0
    reason: str = ""  # for UNKNOWN / TIMEOUT: why nothing was decided, in words
    hidden_units: tuple[int, int] | None = None  # (before, after) when the network was compressed first

    @property
    def sat(self) -> bool | None:
        """True (violated), False (holds, proven), None (not decided)."""
        return {Answer.SAT: True, Answer.UNSAT: False}.get(self.answer)


# -- the exact solve of one disjunct ---------------------------------------------------------

class Feasibility(enum.StrEnum):
    """What a feasibility solve decided (anything else a solve returns says why it did not)."""

    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"  # proven
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class _Task:
    """One feasibility problem and the back-end that solves it."""

    problem: Problem
    solver: Solver


def _solve(task: _Task, time_limit: float) -> tuple[Feasibility | str, np.ndarray | None]:
    """Feasibility of ``task.problem`` (every column bounded) through ``solvers.backend``'s
    ``Model.feasibility``: (FEASIBLE, its point on ``x_cols``), (INFEASIBLE, None) on the
    solver's proof, (TIMEOUT, None) when it stopped at the time limit, or (why unknown, None)."""
    from solvers.backend import new_model
    from solvers.result import Termination

    r = new_model(task.problem, solver=task.solver).feasibility(max(time_limit, 1e-3))
    if r.proven_infeasible:
        return Feasibility.INFEASIBLE, None
    if r.point is not None:
        return Feasibility.FEASIBLE, np.asarray(r.point)
    if r.termination is Termination.TIME_LIMIT:
        return Feasibility.TIMEOUT, None
    return f"solver status {r.termination.value}", None


#: The back-ends' names as their makers write them, for reasons.
_SOLVER_NAMES = {Solver.HIGHS: "HiGHS", Solver.SCIP: "SCIP", Solver.GUROBI: "Gurobi"}


def _solve_disjunct(p: PropertyProblem, base: MilpBase, i: int, seconds: float) -> DisjunctOutcome:
    """Is disjunct ``i`` reachable? A solver point counts only when the judge's forward pass
    agrees; one that fails is retried once on the disjunct (and the polytope) tightened by
    RETRY_MARGIN."""
    deadline = Deadline.after(seconds)
    a, c = p.prop.rows(i)
    n = len(p.prop.disjuncts)
    solves = 0
    for margin in (0.0, RETRY_MARGIN):
        if deadline.passed():
            return DisjunctOutcome(DisjunctStatus.TIMEOUT, reason=f"disjunct {i + 1} of {n}: the time limit ran out",
                                   solves=solves)
        tight = c - margin * np.maximum(1.0, np.abs(c))
        rows = None if p.polytope is None else (p.polytope[0],
                                                 p.polytope[1] - margin * np.maximum(1.0, np.abs(p.polytope[1])))
        model = disjunct_model(p.network, base.encoding, base.out_bounds, a, tight, rows)
        outcome, x = _solve(_Task(model, p.solver), deadline.left())
        solves += 1
        if outcome == Feasibility.INFEASIBLE:
            if margin:  # only the tightened problem is infeasible: no proof either way
                return DisjunctOutcome(DisjunctStatus.UNVERIFIED, reason=f"disjunct {i + 1} of {n}: the solver's point "
                                       "fails the network's forward pass and the tightened problem is infeasible "
                                       "(numerical trouble)", solves=solves)
            return DisjunctOutcome(DisjunctStatus.INFEASIBLE, solves=solves)
        if x is None:
            timed = outcome == Feasibility.TIMEOUT
            why = "the time limit ran out" if timed else f"{_SOLVER_NAMES[p.solver]} stopped with {outcome}"
            return DisjunctOutcome(DisjunctStatus.TIMEOUT if timed else DisjunctStatus.SOLVER_STOPPED,
                                   reason=f"disjunct {i + 1} of {n}: {why} without a proof", solves=solves)
        x = np.clip(x, p.box.lower, p.box.upper)
        hit = p.confirmed(x)
        if hit is not None:
            return DisjunctOutcome(DisjunctStatus.SAT, x, hit, solves=solves)
    return DisjunctOutcome(DisjunctStatus.UNVERIFIED, reason=f"disjunct {i + 1} of {n}: the solver's points are not "
                           "counterexamples by the network's forward pass (numerical trouble)", solves=solves)


def _decide(p: PropertyProblem, base: MilpBase, i: int, seconds: float) -> DisjunctOutcome:
    """The MILP strategy's exact solve of one disjunct (looked up here at call time)."""
    return _solve_disjunct(p, base, i, seconds)


# -- check_property: a schedule over the strategies ------------------------------------------

def _check_sizes(network: Network, box: Box, prop: OutputProperty) -> None:
    if box.dim != network.input_dim:
        raise LeoInputError(f"the input box has {box.dim} inputs but the network takes {network.input_dim}")
    if prop.output_dim != network.output_dim:
        raise LeoInputError(f"the property speaks of {prop.output_dim} outputs but the network has "
                            f"{network.output_dim}; check that the property file fits this network")


#: What an UNSAT answer says decided it, by the step that closed the last disjunct.
_PROVEN_BY = {StepName.INPUT_SPLIT: How.BRANCH_AND_BOUND, StepName.FLOORS_RACE: How.BRANCH_AND_BOUND,
              StepName.LAST_RACE: How.BRANCH_AND_BOUND, StepName.RELU_SPLIT: How.RELU_SPLIT,
              StepName.MILP: How.MILP_INFEASIBLE}
#: An open disjunct's status, as the answer's ``how``.
_OPEN_HOW = {DisjunctStatus.TIMEOUT: How.TIMEOUT, DisjunctStatus.UNVERIFIED: How.UNVERIFIED,
             DisjunctStatus.SOLVER_STOPPED: How.SOLVER_STOPPED}


def _result(run: Run[PropertyProblem], t0: float) -> PropertyResult:
    """The answer a schedule's run gives: SAT on its evidence, UNSAT when nothing is open,
    else TIMEOUT (some disjunct ran out of time) or UNKNOWN, with the first open reason."""
    p, seconds, sizes = run.problem, time.perf_counter() - t0, run.problem.sizes
    if isinstance(run.found, Found):
        x = run.found.x
        return PropertyResult(Answer.SAT, x, seconds, p.judge(x[None, :])[0], run.found.disjunct, run.found.how,
                              run.solves, hidden_units=sizes)
    closing = run.last_to_close()
    if closing is not None:
        return PropertyResult(Answer.UNSAT, None, seconds, how=_PROVEN_BY[closing.name], solves=run.solves,
                              hidden_units=sizes)
    outcomes = [run.why_open[i] for i in sorted(run.why_open) if isinstance(run.why_open[i], DisjunctOutcome)]
    timed = [o for o in outcomes if o.how is DisjunctStatus.TIMEOUT]
    if not outcomes:  # no step said why: the time ran out before the exact steps
        return PropertyResult(Answer.TIMEOUT, None, seconds, how=How.TIMEOUT, solves=run.solves,
                              reason="the time limit ran out", hidden_units=sizes)
    first = (timed or outcomes)[0]
    return PropertyResult(Answer.TIMEOUT if timed else Answer.UNKNOWN, None, seconds, how=_OPEN_HOW[first.how],
                          solves=run.solves, reason=first.reason, hidden_units=sizes)


def check_property(network: Network, box: Box, prop: OutputProperty, time_limit: float = 60.0,
                   *, report: StabilityReport | None = None, samples: int = 1024, seed: int = 0,
                   original: Network | None = None, compress_first: bool = False,
                   progress: Say | None = None, branch: bool = True,
                   polytope: Polytope | None = None, solver: Solver | str = Solver.HIGHS,
                   observe: Callable[[StepRecord], None] | None = None) -> PropertyResult:
    """Is there an input in ``box`` whose output lies in ``prop``'s unsafe set?

    The schedule (``leo.queries.schedules.pick``) depends on the inputs: random box points and
    a gradient search first (cheap counterexamples; ``samples=0`` skips every search, so that
    the MILP decides), on few inputs LP walks across linear regions and input-splitting branch
    and bound (``leo.bab.input_split``, unless ``branch=False``), on images ReLU-split branch
    and bound; then, per disjunct still open, one MILP feasibility problem over the full
    network in ``solver`` (a ``solvers.backend.Solver``). ``time_limit`` is the budget in
    seconds for all of it, the stability analysis that supplies bounds and unit states
    (unless ``report`` is given) included; when it runs out the answer is TIMEOUT. With
    ``compress_first`` the MILPs run on the network made smaller losslessly by that analysis.
    A point is a counterexample only when the forward pass of ``original`` (default:
    ``network``) puts it in the unsafe set; a solver point that fails this is never SAT (the
    answer becomes UNKNOWN with the reason). With ``polytope`` (rows ``a @ x <= b``) the
    inputs are those of ``box`` that satisfy them: every proof on the box holds a fortiori,
    the MILPs carry the rows, and a point counts only inside them (up to REGION_TOL).
    ``observe`` gets each schedule step's record as it ends.
    """
    from leo.core.choices import choose
    from solvers.backend import unavailable

    t0 = time.perf_counter()
    deadline = Deadline.after(time_limit)
    _check_sizes(network, box, prop)
    if original is not None:
        _check_sizes(original, box, prop)
    solver = choose(Solver, solver, "solver")
    why = unavailable(solver)
    if why is not None:
        raise LeoInputError(why)
    problem = PropertyProblem(network, original if original is not None else network, box, prop, time_limit, _decide,
                              seed, samples, progress or (lambda _line: None), solver,
                              polytope, branch, compress_first, report)
    if not prop.disjuncts:
        return PropertyResult(Answer.UNSAT, None, time.perf_counter() - t0, how=How.EMPTY_PROPERTY)
    schedule = pick(box.dim, samples)
    run = run_schedule(schedule, problem, frozenset(range(len(prop.disjuncts))), deadline, observe)
    return _result(run, t0)


# -- reporting: progress lines, the answer in words, the VNN-COMP results file -----------

#: While one phase lasts (a long MILP), its progress line is repeated this often (seconds).
HEARTBEAT = 15.0
#: Counterexamples with more inputs than this are summarised on stdout, not listed.
LIST_AT_MOST = 16


class ProgressLines:
    """Progress on a stream (stderr): ``leo: [  12.3 s] phase``, and the phase again every
    ``heartbeat`` seconds while it lasts, so a minutes-long solve is visibly alive."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, heartbeat: float = HEARTBEAT) -> None:
        self.quiet, self.stream, self.heartbeat = quiet, stream or sys.stderr, heartbeat
        self.t0 = time.perf_counter()
        self.phase = "starting"
        self.printed = self.t0  # when the last line was printed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressLines:
        if not self.quiet:
            self._thread = threading.Thread(target=self._beat, name="leo-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __call__(self, line: str) -> None:
        self.phase = line
        self._print(line)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.heartbeat)):
            if time.perf_counter() - self.printed >= self.heartbeat:
                self._print(f"{self.phase} (still running)")

    def _print(self, line: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self.printed = time.perf_counter()
            print(f"leo: [{self.printed - self.t0:7.1f} s] {line}", file=self.stream, flush=True)


def number(v: float) -> str:
    """The shortest text that reads back as exactly ``v`` (Python's repr), never ``-0.0``."""
    return repr(float(v) + 0.0)


def results_text(result: PropertyResult) -> str:
    """The VNN-COMP results file: the answer on line 1; for sat the witness
    ``(``, ``(X_i v)`` for every input, ``(Y_j v)`` for every output, ``)``."""
    lines = [result.answer.value]
    if result.answer is Answer.SAT:
        assert result.counterexample is not None and result.output is not None
        lines.append("(")
        lines += [f"(X_{i} {number(v)})" for i, v in enumerate(result.counterexample)]
        lines += [f"(Y_{j} {number(v)})" for j, v in enumerate(result.output)]
        lines.append(")")
    return "\n".join(lines) + "\n"


def _values(name: str, v: np.ndarray) -> str:
    return ", ".join(f"{name}_{i} = {number(x)}" for i, x in enumerate(v))


def _summary(x: np.ndarray, box: Box) -> str:
    at_lo = int(np.count_nonzero(x == box.lower))
    at_hi = int(np.count_nonzero(x == box.upper))
    centre = (box.lower + box.upper) / 2
    return (f"{x.size} inputs in [{number(x.min())}, {number(x.max())}]; {at_lo} at their lower bound, "
            f"{at_hi} at their upper bound; largest move from the box centre {number(np.abs(x - centre).max())}")


def describe(result: PropertyResult, prop: OutputProperty, box: Box, saved: Sequence[str] = ()) -> list[str]:
    """The answer in words for stdout; the first word is the answer (sat, unsat, unknown, timeout)."""
    took = f"[{result.how}, {result.solves} MILP solves, {result.seconds:.2f} s]"
    head = f"{result.answer.value}: {result.answer.meaning}"
    lines: list[str] = []
    if result.hidden_units is not None:
        lines.append(f"compressed first: hidden units {result.hidden_units[0]} -> {result.hidden_units[1]}")
    if result.answer is Answer.UNSAT:
        return lines + [f"{head}: no input in the box gives outputs in the unsafe set {took}"]
    if result.answer is not Answer.SAT:
        return lines + [f"{head} ({result.reason or result.how}) {took}"]
    x, y, i = result.counterexample, result.output, result.disjunct
    assert x is not None and y is not None and i is not None
    lines.append(f"{head}: a counterexample, confirmed by the network's forward pass {took}")
    if x.size <= LIST_AT_MOST:
        lines.append(f"  input:  {_values('X', x)}")
    else:
        where = f"; the full point is in {' and '.join(saved)}" if saved else \
            "; use --results FILE or --counterexample FILE.npy for the full point"
        lines.append(f"  input:  {_summary(x, box)}{where}")
    lines.append(f"  output: {_values('Y', y)}")
    depth = -float(prop.excess(y, i)[0])
    lines.append(f"  the output is in disjunct {i + 1} of {len(prop.disjuncts)} of the unsafe set "
                 f"(inside by {depth:.3g})")
    return lines


def save_outputs(result: PropertyResult, results: str | None, counterexample: str | None,
                 overwrite: bool = False) -> list[str]:
    """Write the results file (always) and the counterexample .npy (when sat), atomically;
    the paths written. The point goes first: one refused (an existing file without
    ``overwrite``) leaves no results file behind."""
    from leo.io.files import atomic_write, save_point

    point = counterexample if counterexample and result.counterexample is not None else None
    if point:
        save_point(point, result.counterexample, overwrite=overwrite)
    if results:
        with atomic_write(results) as tmp:
            tmp.write_text(results_text(result))
    return [p for p in (results, point) if p]
