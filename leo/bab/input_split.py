"""Branch and bound over the input box with CROWN-style linear bounds.

One question serves output properties and unit stability: is the *unsafe set* of an
``leo.core.spec.OutputProperty``

    U = union over disjuncts i of { x in box : A_i y(x) <= c_i (every row) }

empty? ``y`` is the network's output (for unit stability: a unit's pre-activation, by
truncating the network, see ``unit_network``). A disjunct is excluded from a sub-box when
one of its rows has a *proven* lower bound of ``a . y - c`` > 0 there; the bounds are
``leo.bounds.batched``'s (back-substitution over many sub-boxes at once, with the relaxation
the numpy engine uses). Sub-boxes that stay open are split in two along the input dimension
whose width times its coefficient in the open row's bound is largest (input splitting: what
the fast ACAS Xu verifiers do on five inputs).

Answers are exact: PROVEN only when every leaf excludes every disjunct; COUNTEREXAMPLE only
with a point that the network's own forward pass puts in U (and that ``confirm``, the
caller's check, accepts); otherwise TIMEOUT (the deadline) or UNKNOWN (the leaf budget,
or a leaf that cannot be split further). Running out of time proves nothing.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from leo.bounds.batched import ALPHA_STEPS, Floors, Net, row_bounds
from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Layer, Network
from leo.core.spec import Inequality, OutputProperty, excess
from leo.core.threads import using_threads
from leo.search.attack import AttackOptions, Backend, Objective, Schedule, attack

#: Sub-boxes bounded together in one pass (torch, float64, one thread); SMALL_BATCH on
#: inputs above SPLIT_INPUTS.
BATCH, SMALL_BATCH = 512, 16
#: Give up (UNKNOWN) when this many sub-boxes are waiting: splitting is not converging.
MAX_OPEN = 200_000
#: Inputs above this many: splitting the input box rarely closes a branch, so the search
#: gets only a short try (the root bound often excludes some disjuncts) before the MILP.
SPLIT_INPUTS = 32


class Status(enum.Enum):
    PROVEN = "proven"  # U is empty: every leaf's sound lower bound excludes every disjunct
    COUNTEREXAMPLE = "counterexample"  # a point in U, confirmed by the forward pass
    TIMEOUT = "timeout"  # the deadline came first
    UNKNOWN = "unknown"  # the leaf budget ran out, or a leaf could not be split


@dataclass
class Result:
    status: Status
    seconds: float
    x: np.ndarray | None = None  # the counterexample
    disjunct: int | None = None
    proven: frozenset[int] = frozenset()  # disjuncts excluded on the whole box (also when undecided)
    leaves: int = 0  # sub-boxes bounded
    splits: int = 0
    reason: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    found: dict[int, np.ndarray] = field(default_factory=dict)  # search_each: disjunct -> a confirmed point in it


# -- branch and bound ------------------------------------------------------------------

Confirm = Callable[[np.ndarray], "int | None"]
#: ``search_each``'s check: does the network's forward pass put ``x`` in disjunct ``i``?
ConfirmEach = Callable[[np.ndarray, int], bool]
#: Signed-gradient steps of the in-leaf attack (per leaf that stays open, from its centre and the
#: corner its bound points to); the step starts at ATTACK_STEP of the leaf's width and shrinks.
ATTACK_STEPS = 6
ATTACK_STEP, ATTACK_DECAY = 0.25, 0.7
#: The in-leaf attack's gradients: numpy, batched over every start of the batch. On ACAS Xu (2026-12-06,
#: the same 3,603 and 109 sub-boxes either way) its attack time was 0.21-0.25 s against torch's 0.31-0.36 s
#: on 1_1 property 3, 0.02 s against 0.05 s on 1_2 property 2 (/tmp/h5_leaf_ab.py, alternating).
ATTACK_BACKEND = Backend.NUMPY


def _candidates(lo: np.ndarray, hi: np.ndarray, a0: np.ndarray) -> np.ndarray:
    """Points to try in each box: its centre and, per row, the corner minimising that
    row's linear bound (where a counterexample is most likely)."""
    corners = np.where(a0 > 0, lo[:, None, :], hi[:, None, :]).reshape(-1, lo.shape[1])
    return np.vstack([(lo + hi) / 2, corners])


def _attack_points(net: Network, lo: np.ndarray, hi: np.ndarray, a0: np.ndarray, lower: np.ndarray,
                   g: np.ndarray, h: np.ndarray, owner: np.ndarray, open_: np.ndarray, steps: int) -> np.ndarray:
    """The in-leaf attack (``leo.search.attack``, each start kept in its leaf) on each live leaf's
    most promising open disjunct (the one whose sound bound is lowest), from the leaf's centre and
    from the corner that minimises the linear bound of that disjunct's hardest row. Returns where
    the starts end: candidates only, judged by the forward pass like any other."""
    bound = np.full(open_.shape, np.inf)  # per leaf and disjunct: the disjunct's bound (its largest row)
    for i in range(open_.shape[1]):
        mine = owner == i
        if mine.any():
            bound[:, i] = np.where(open_[:, i], lower[:, mine].max(axis=1), np.inf)
    target = bound.argmin(axis=1)
    rows = owner[None, :] == target[:, None]  # (B, m): the target's rows
    hardest = np.where(rows, lower, -np.inf).argmax(axis=1)
    leaf = np.arange(len(lo))
    corner = np.where(a0[leaf, hardest] > 0, lo, hi)
    starts = np.vstack([(lo + hi) / 2, corner])
    twice = np.concatenate([leaf, leaf])
    options = AttackOptions(Schedule(steps, ATTACK_STEP, ATTACK_DECAY), backend=ATTACK_BACKEND, stop_below=None)
    with using_threads(1):
        return attack(net, starts, Objective(g, h, owner, target[twice]), options, lower=lo[twice],
                      upper=hi[twice]).final


def _split_dims(lo: np.ndarray, hi: np.ndarray, a0: np.ndarray, owner: np.ndarray,
                open_: np.ndarray) -> np.ndarray:
    """Per box, the input to split: the largest sum, over the rows of its open disjuncts, of
    |coefficient in the row's linear bound| times the box's width ("smear"). On ACAS Xu 1_1
    prop 3 this took 3,603 boxes; the worst row's smear alone 6,089, the widest input >9,600.
    With one disjunct per open unit (``search_each``), the input that matters most to the
    units still open in the box is split."""
    rows = open_[:, owner]  # (B, m): the row's disjunct is open in the box
    width = hi - lo
    score = (np.abs(a0) * rows[:, :, None]).sum(axis=1) * width
    score = np.where(width > 0, score + 1e-12 * width, -1.0)  # a zero-width input is never split
    return score.argmax(axis=1)


def search(net: Network, box: Box, goal: OutputProperty, deadline: Deadline, *,
           confirm: Confirm | None = None, batch: int | None = None, max_open: int = MAX_OPEN,
           alpha_steps: int | None = None, attack_steps: int = ATTACK_STEPS) -> Result:
    """Branch and bound with input splitting: is ``goal``'s unsafe set empty on ``box``?
    Stops at the first counterexample.

    ``confirm(x)`` (default: this network's forward pass with no tolerance) returns the
    disjunct a candidate counterexample lies in, or None; only confirmed points count.
    Candidates: each open leaf's centre, the corners its linear bounds point to, and the
    end points of ``attack_steps`` projected-gradient steps inside the leaf (0: none).
    ``alpha_steps`` optimises the final bound's relu slopes (default: ALPHA_STEPS on inputs
    above SPLIT_INPUTS, where few boxes are bounded and each bound matters; none on small
    inputs, where on ACAS Xu it cost twice the time per box and saved no boxes).
    """
    return Searcher(net, box, goal, confirm=confirm, batch=batch, max_open=max_open, alpha_steps=alpha_steps,
                    attack_steps=attack_steps).run(deadline)


class Searcher:
    """``search`` that can stop at a deadline and go on later from where it stopped (the
    sub-boxes still open are kept), so a caller can give the time in slices: e.g. the MILP
    between two slices, when neither alone is sure to decide. ``exclude`` drops disjuncts
    decided elsewhere (a proof of the caller's) from every open sub-box. ``floors``: proven
    whole-box bounds of the hidden layers' pre-activations (the stability analysis's), intersected
    with every sub-box's own; on ACAS Xu 1_4 property 1 they made a search that did not finish in
    100 s finish in 12 s (9,013 sub-boxes), but on 1_8 property 2 it bounded 17,451 sub-boxes
    instead of 6,869 (a different split tree), so a search with floors takes turns with one
    without (``leo.queries.strategies_exact.race``) rather than replacing it."""

    def __init__(self, net: Network, box: Box, goal: OutputProperty, *, confirm: Confirm | None = None,
                 batch: int | None = None, max_open: int = MAX_OPEN, alpha_steps: int | None = None,
                 attack_steps: int = ATTACK_STEPS, floors: Floors | None = None) -> None:
        self._search = _Search(net, box, goal, Deadline.after(0.0), batch, max_open, alpha_steps, attack_steps,
                               floors)
        self._check = confirm or self._search.own_check
        self.last: Result | None = None

    def run(self, deadline: Deadline) -> Result:
        """Go on until ``deadline`` (or an answer); the Result counts every slice so far.
        After PROVEN, COUNTEREXAMPLE or UNKNOWN it only returns that result again."""
        if self.last is not None and self.last.status is not Status.TIMEOUT:
            return self.last
        self._search.deadline = deadline
        self.last = self._search.run(first=self._check)
        return self.last

    def exclude(self, disjuncts: Sequence[int]) -> None:
        """Disjuncts proven empty by other means: no sub-box needs to exclude them any more."""
        s, drop = self._search, sorted(int(i) for i in disjuncts)
        if not drop:
            return
        queued = list(zip(s.los, s.his, s.opens))
        s.los, s.his, s.opens = [], [], []
        for lo, hi, o in queued:
            o = o.copy()
            o[:, drop] = False
            keep = o.any(axis=1)
            if keep.any():
                s.los.append(lo[keep])
                s.his.append(hi[keep])
                s.opens.append(o[keep])
        s.skipped.update(drop)


def search_each(net: Network, box: Box, goal: OutputProperty, deadline: Deadline, *,
                confirm: ConfirmEach | None = None, batch: int | None = None, max_open: int = MAX_OPEN,
                alpha_steps: int | None = None, attack_steps: int = ATTACK_STEPS) -> Result:
    """The same search for every disjunct at once, on one split tree (the bounds of all
    disjuncts are computed per leaf together): each disjunct ends excluded on the whole box
    (``Result.proven``), reached at a point that ``confirm(x, i)`` accepts (``Result.found``,
    default check: this network's forward pass), or open. The status is PROVEN when all
    are excluded, COUNTEREXAMPLE when none is left open and some were reached, else TIMEOUT
    or UNKNOWN; ``proven`` never names a reached disjunct. For unit stability: one disjunct
    per open unit of a layer."""
    search = _Search(net, box, goal, deadline, batch, max_open, alpha_steps, attack_steps)
    return search.run(each=confirm or search.own_check_each)


class _Search:
    """One branch and bound: the queue of sub-boxes (lower and upper corners, open
    disjuncts per box), what was found, and the counters."""

    def __init__(self, net: Network, box: Box, goal: OutputProperty, deadline: Deadline, batch: int | None,
                 max_open: int, alpha_steps: int | None, attack_steps: int, floors: Floors | None = None) -> None:
        import torch

        self.net, self.box, self.goal, self.deadline = net, box, goal, deadline
        self.alpha_steps = (ALPHA_STEPS if box.dim > SPLIT_INPUTS else 0) if alpha_steps is None else alpha_steps
        # on many inputs a batch is slow, and the deadline is checked per batch
        self.batch = (BATCH if box.dim <= SPLIT_INPUTS else SMALL_BATCH) if batch is None else batch
        self.max_open, self.attack_steps = max_open, attack_steps
        self.t0 = time.perf_counter()
        self.rows = [goal.rows(i) for i in range(len(goal.disjuncts))]  # A y <= c per disjunct
        self.g, self.h, self.owner = _stacked(self.rows, net.output_dim)  # all rows as g y + h <= 0
        self.tn, self.g_t, self.h_t = Net(net, floors), torch.from_numpy(self.g), torch.from_numpy(self.h)
        self.nd = len(self.rows)
        self.empty = {i for i in range(self.nd) if len(self.rows[i][1]) == 0}
        self.los, self.his = [box.lower[None, :]], [box.upper[None, :]]
        self.opens = [np.ones((1, self.nd), dtype=bool)]
        self.ever_open = np.zeros(self.nd, dtype=bool)  # a disjunct still open in some box we gave up on
        self.current = np.zeros((0, self.nd), dtype=bool)  # the open disjuncts of the batch being bounded
        self.found: dict[int, np.ndarray] = {}
        self.skipped: set[int] = set()  # disjuncts the caller decided (Searcher.exclude): not ours to report
        self.leaves = self.splits = 0
        self.stats = {"bound_s": 0.0, "attack_s": 0.0}

    def inside_each(self, y: np.ndarray) -> np.ndarray:
        """(n, disjuncts): whether each output row of ``y`` lies in each disjunct (no tolerance)."""
        out = np.ones((len(y), self.nd), dtype=bool)
        for i, (a, c) in enumerate(self.rows):
            out[:, i] = excess(a, c, y) <= 0
        return out

    def inside(self, y: np.ndarray) -> np.ndarray:
        """Per output row of ``y``: the first disjunct it lies in, or -1."""
        each = self.inside_each(y)
        return np.where(each.any(axis=1), each.argmax(axis=1), -1)

    def own_check(self, x: np.ndarray) -> int | None:
        """The default judge: this network's forward pass puts ``x`` (in the box) in a disjunct."""
        if not self.box.contains(x)[0]:
            return None
        hit = int(self.inside(self.net(x[None, :]))[0])
        return None if hit < 0 else hit

    def own_check_each(self, x: np.ndarray, i: int) -> bool:
        return bool(self.box.contains(x)[0]) and bool(self.inside_each(self.net(x[None, :]))[0, i])

    def result(self, status: Status, reason: str = "", x: np.ndarray | None = None, i: int | None = None) -> Result:
        still = self.ever_open.copy()
        for o in self.opens + [self.current]:  # the queue and the batch in hand
            still |= o.any(axis=0)
        excluded = {int(i) for i in np.flatnonzero(~still)} - self.empty - set(self.found) - self.skipped
        if status is Status.PROVEN and self.found:
            status = Status.COUNTEREXAMPLE
        if x is None and self.found:
            i = min(self.found)
            x = self.found[i]
        return Result(status, time.perf_counter() - self.t0, x, i, frozenset(excluded), self.leaves, self.splits,
                      reason, self.stats, dict(self.found))

    def run(self, first: Confirm | None = None, each: ConfirmEach | None = None) -> Result:
        """The search; with ``first`` it stops at the first confirmed point, with ``each``
        it closes each reached disjunct and goes on with the others."""
        if self.nd == 0:
            return Result(Status.PROVEN, 0.0)
        centre = (self.box.lower + self.box.upper) / 2  # a disjunct with no rows is the whole output space
        for i in sorted(self.empty):
            if first is not None:
                hit = first(centre)
                if hit is not None:
                    return Result(Status.COUNTEREXAMPLE, time.perf_counter() - self.t0, centre, hit)
            elif each is not None and each(centre, i):
                self.found[i] = centre
        while self.los:
            if self.deadline.passed():
                return self.result(Status.TIMEOUT, f"the deadline came with {sum(len(x) for x in self.los)} "
                                   "sub-boxes open")
            done = self.step(first, each)
            if done is not None:
                return done
        return self.result(Status.PROVEN)

    def step(self, first: Confirm | None, each: ConfirmEach | None) -> Result | None:
        """Bound one batch, try its points, split what stays open; a Result when the search ends."""
        import torch

        lo, hi, open_ = _pop([self.los, self.his, self.opens], self.batch)
        if self.found:
            open_[:, sorted(self.found)] = False
        self.current = open_
        t = time.perf_counter()
        with using_threads(1):
            low_t, a0_t = row_bounds(self.tn, torch.from_numpy(lo.copy()), torch.from_numpy(hi.copy()), self.g_t,
                                       self.h_t, self.alpha_steps)
        lower, a0 = low_t.numpy(), a0_t.numpy()
        self.stats["bound_s"] += time.perf_counter() - t
        self.leaves += len(lo)
        for i in range(self.nd):
            rows = self.owner == i
            if rows.any():
                open_[:, i] &= ~(lower[:, rows].max(axis=1) > 0)
        live = open_.any(axis=1)
        lo, hi, open_, lower, a0 = lo[live], hi[live], open_[live], lower[live], a0[live]
        self.current = open_
        if not len(lo):
            return None
        t = time.perf_counter()
        pts = _candidates(lo, hi, a0)
        if self.attack_steps > 0:
            pts = np.vstack([pts, _attack_points(self.net, lo, hi, a0, lower, self.g, self.h, self.owner, open_,
                                                      self.attack_steps)])
        ys = self.net(pts)
        self.stats["attack_s"] += time.perf_counter() - t
        if first is not None:
            for j in np.flatnonzero(self.inside(ys) >= 0):
                hit = first(pts[j])
                if hit is not None:
                    return self.result(Status.COUNTEREXAMPLE, x=pts[j].copy(), i=hit)
        elif each is not None:
            self._confirm_each(pts, ys, open_, each)
            live = open_.any(axis=1)
            lo, hi, open_, a0 = lo[live], hi[live], open_[live], a0[live]
            self.current = open_
            if not len(lo):
                return None
        return self.split(lo, hi, open_, a0)

    def _confirm_each(self, pts: np.ndarray, ys: np.ndarray, open_: np.ndarray, each: ConfirmEach) -> None:
        """Disjuncts open in the batch that a candidate reaches, confirmed by ``each``, are
        found: closed in every box of the batch (and, at the next pop, of the queue)."""
        inside = self.inside_each(ys)
        for i in np.flatnonzero(open_.any(axis=0)):
            for j in np.flatnonzero(inside[:, i])[:4]:  # a few tries: the check is a forward pass each
                if each(pts[j], int(i)):
                    self.found[int(i)] = pts[j].copy()
                    open_[:, i] = False
                    break

    def split(self, lo: np.ndarray, hi: np.ndarray, open_: np.ndarray, a0: np.ndarray) -> Result | None:
        """Halve each box along its chosen input and queue both halves."""
        dims = _split_dims(lo, hi, a0, self.owner, open_)
        rows = np.arange(len(lo))
        width = hi[rows, dims] - lo[rows, dims]
        stuck = ~(width > 0) | (lo[rows, dims] + width / 2 <= lo[rows, dims])
        if stuck.any():  # a point-sized leaf that bounds do not close: no proof from splitting
            self.ever_open |= open_[stuck].any(axis=0)
            return self.result(Status.UNKNOWN, "a sub-box too small to split stayed open")
        mid = lo[rows, dims] + width / 2
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[rows, dims], right_lo[rows, dims] = mid, mid
        self.los += [lo, right_lo]
        self.his += [left_hi, hi]
        self.opens += [open_.copy(), open_.copy()]
        self.current = np.zeros((0, self.nd), dtype=bool)
        self.splits += len(lo)
        if sum(len(x) for x in self.los) > self.max_open:
            return self.result(Status.UNKNOWN, f"more than {self.max_open} sub-boxes open: splitting the input "
                               "does not converge")
        return None


def _pop(queues: list[list[np.ndarray]], batch: int) -> list[np.ndarray]:
    """Up to ``batch`` of the most recently pushed boxes, from parallel queues (boxes' lower
    and upper corners, open disjuncts, parent bounds); depth first keeps the queues short."""
    parts = [[q.pop()] for q in queues]
    while queues[0] and sum(len(p) for p in parts[0]) < batch:
        for q, part in zip(queues, parts):
            part.append(q.pop())
    out = [np.vstack(part) for part in parts]
    if len(out[0]) > batch:
        for q, arr in zip(queues, out):
            q.append(arr[batch:])
        out = [arr[:batch] for arr in out]
    return out


def _stacked(rows: Sequence[tuple[np.ndarray, np.ndarray]], width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every disjunct's rows ``a y <= c`` as one ``g y + h <= 0`` (g = A, h = -c), and each row's disjunct."""
    if not rows:
        return np.zeros((0, width)), np.zeros(0), np.zeros(0, int)
    owner = np.concatenate([np.full(len(c), i, dtype=int) for i, (_, c) in enumerate(rows)])
    return np.vstack([a for a, _ in rows]), -np.concatenate([c for _, c in rows]), owner


# -- unit stability ------------------------------------------------------------------

def unit_network(net: Network, layer: int) -> Network:
    """The prefix of ``net`` whose output is layer ``layer``'s (1-based) pre-activation."""
    last = net.layers[layer - 1]
    return Network(net.input_dim, net.layers[:layer - 1] + (Layer(dict(last.weights), last.bias, relu=False),))


def unit_sign(net: Network, box: Box, layer: int, unit: int, deadline: Deadline,
              margin: float = 1e-6) -> str | None:
    """Is unit ``unit`` (0-based) of layer ``layer`` (1-based) stably active (z >= margin on
    the whole box: "active") or stably inactive (z <= -margin: "inactive")? None when
    neither is proven by the deadline (which says nothing either way)."""
    sub = unit_network(net, layer)
    e = np.zeros((1, sub.output_dim))
    e[0, unit] = 1.0
    for sign, name in ((1.0, "active"), (-1.0, "inactive")):
        # unsafe for "active": z <= margin; for "inactive": -z <= margin
        if search(sub, box, property_goal([(sign * e, np.array([margin]))]), deadline).status is Status.PROVEN:
            return name
    return None


# -- output properties (leo.queries.property) --------------------------------------------------

def property_goal(disjuncts: Sequence[tuple[np.ndarray, np.ndarray]]) -> OutputProperty:
    """VNN-LIB's unsafe set, disjuncts ``A y <= c``, as the ``OutputProperty`` the search takes."""
    parts = [(np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_1d(np.asarray(c, dtype=np.float64)))
             for a, c in disjuncts]
    width = max((a.shape[1] for a, c in parts if len(c)), default=0)
    return OutputProperty(width, tuple(tuple(Inequality(a[r].copy(), float(c[r])) for r in range(len(c)))
                                       for a, c in parts))
