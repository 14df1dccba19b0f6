"""Branch and bound over the input box with CROWN-style linear bounds.

One question serves output properties and unit stability: is the *unsafe set*

    U = union over disjuncts i of { x in box : G_i y(x) + h_i <= 0 (every row) }

empty? ``y`` is the network's output (for unit stability: a unit's pre-activation, by
truncating the network, see ``unit_network``). A disjunct is excluded from a sub-box when
one of its rows has a *proven* lower bound > 0 there; the bounds are back-substitution
(CROWN) bounds, batched over many sub-boxes, intersected with interval bounds and widened
for float rounding like ``leo.bounds.propagate`` (on many inputs the final bound's lower relu slopes
are also optimised, alpha-CROWN style: any slope in [0, 1] is sound). Sub-boxes that stay open are split in two along
the input dimension whose width times its coefficient in the open row's bound is largest
(input splitting: what the fast ACAS Xu verifiers do on five inputs).

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

from typing import TYPE_CHECKING

import numpy as np

from leo.bounds.propagate import ROUNDING_SLACK
from leo.core.domain import Box
from leo.core.network import Layer, Network
from leo.core.threads import using_threads

if TYPE_CHECKING:  # torch is imported where it is used: ``leo property`` and the CLI start without it
    import torch

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


@dataclass(frozen=True)
class Goal:
    """The unsafe set: disjunct ``i`` is ``{x : g[i] @ y(x) + h[i] <= 0}``, all rows."""

    g: tuple[np.ndarray, ...]
    h: tuple[np.ndarray, ...]

    @staticmethod
    def of(disjuncts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Goal:
        g = tuple(np.atleast_2d(np.asarray(a, dtype=np.float64)) for a, _ in disjuncts)
        h = tuple(np.atleast_1d(np.asarray(c, dtype=np.float64)) for _, c in disjuncts)
        return Goal(g, h)

    def stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows as one matrix, their offsets, and each row's disjunct."""
        owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(self.h)]) if self.h else np.zeros(0, int)
        return np.vstack(self.g), np.concatenate(self.h), owner.astype(int)

    def inside(self, y: np.ndarray, tol: float = 0.0) -> np.ndarray:
        """Per output row of ``y`` (n, out): the first disjunct it lies in, or -1."""
        hit = np.full(len(y), -1)
        for i in reversed(range(len(self.g))):
            slack = (y @ self.g[i].T + self.h[i]).max(axis=1) if len(self.h[i]) else np.full(len(y), -np.inf)
            hit = np.where(slack <= tol, i, hit)
        return hit

    def inside_each(self, y: np.ndarray, tol: float = 0.0) -> np.ndarray:
        """(n, disjuncts): whether each output row of ``y`` lies in each disjunct."""
        out = np.zeros((len(y), len(self.g)), dtype=bool)
        for i, (g, h) in enumerate(zip(self.g, self.h)):
            out[:, i] = (y @ g.T + h).max(axis=1) <= tol if len(h) else True
        return out


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


# -- batched bounds (torch, float64, one thread: one GEMM per layer for the whole batch) ----

#: Proven pre-activation bounds of a network's layers on the whole box (lower, upper arrays per layer,
#: e.g. from the stability analysis): valid on every sub-box, so a search may intersect its own with them.
Floors = Sequence[tuple[np.ndarray, np.ndarray]]


class _Net:
    """The network's weights as float64 tensors, converted once per search, and ``floors``
    (whole-box bounds of the hidden layers, or none) likewise."""

    def __init__(self, net: Network, floors: Floors | None = None) -> None:
        import torch

        self.net = net
        self.layers = [({s: torch.from_numpy(np.array(w)) for s, w in ly.weights.items()},
                        torch.from_numpy(np.array(ly.bias)), ly.relu) for ly in net.layers]
        self.abs = [({s: w.abs() for s, w in ws.items()}, b.abs()) for ws, b, _ in self.layers]
        self.floors = None if floors is None else [
            (torch.from_numpy(np.array(lo, dtype=np.float64)), torch.from_numpy(np.array(hi, dtype=np.float64)))
            for lo, hi in floors]


def _relaxation(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CROWN's relaxation of relu on [lo, hi], per box and unit:
    low * z <= relu(z) <= up * z + icpt (lower slope 1 when hi > -lo, else 0)."""
    import torch

    active, inactive = lo >= 0, hi <= 0
    unstable = ~(active | inactive)
    width = torch.where(unstable, hi - lo, torch.ones_like(lo))
    up = torch.where(active, 1.0, torch.where(unstable, hi / width, 0.0))
    icpt = torch.where(unstable, -lo * hi / width, 0.0)
    low = torch.where(active | (unstable & (hi > -lo)), 1.0, 0.0).to(lo.dtype)
    return low, up.to(lo.dtype), icpt.to(lo.dtype)


def _backsub(tn: _Net, coeffs: dict[int, torch.Tensor], const: torch.Tensor, relax: list,
             lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound lower bounds (B, m) of ``sum_s coeffs[s] . h_s + const`` over each box, and the
    input coefficients (B, m, n) of the linear bound (for branching and attack points)."""
    import torch

    mag = const.abs()
    for s in range(max(coeffs), 0, -1):
        if s not in coeffs:
            continue
        a = coeffs.pop(s)
        weights, bias, relu = tn.layers[s - 1]
        if relu:
            low, up, icpt = relax[s - 1]
            neg = a.clamp(max=0.0)
            a = (a - neg) * (low if low.dim() == 3 else low[:, None, :]) + neg * up[:, None, :]
            term = torch.bmm(neg, icpt[:, :, None])[..., 0]
            const, mag = const + term, mag - term
        const = const + a @ bias
        mag = mag + a.abs() @ tn.abs[s - 1][1]
        for t, w in weights.items():
            c = a @ w
            coeffs[t] = coeffs[t] + c if t in coeffs else c
    a0 = coeffs.get(0, torch.zeros((lo.shape[0], const.shape[1], lo.shape[1]), dtype=lo.dtype))
    pos, neg = a0.clamp(min=0.0), a0.clamp(max=0.0)
    low_b = const + torch.bmm(pos, lo[:, :, None])[..., 0] + torch.bmm(neg, hi[:, :, None])[..., 0]
    mag = mag + torch.bmm(a0.abs(), torch.maximum(lo.abs(), hi.abs())[:, :, None])[..., 0]
    return low_b - ROUNDING_SLACK * mag - 1e-300, a0


def _interval(tn: _Net, k: int, lo: torch.Tensor, hi: torch.Tensor, pre: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds (B, w) of layer ``k``'s pre-activation, widened for rounding."""
    import torch

    weights, bias, _ = tn.layers[k]
    outs = [(lo, hi)] + [(l.clamp(min=0), u.clamp(min=0)) if tn.layers[i][2] else (l, u)
                         for i, (l, u) in enumerate(pre)]
    zl = bias.expand(lo.shape[0], -1)
    zu, mag = zl, zl.abs()
    for s, w in weights.items():
        l, u = outs[s]
        centre, radius = (l + u) / 2, (u - l) / 2
        c, r = centre @ w.T, radius @ tn.abs[k][0][s].T
        zl, zu = zl + c - r, zu + c + r
        mag = mag + torch.maximum(l.abs(), u.abs()) @ tn.abs[k][0][s].T
    slack = ROUNDING_SLACK * mag + 1e-300
    return zl - slack, zu + slack


def _layer_bounds(tn: _Net, lo: torch.Tensor, hi: torch.Tensor) -> tuple[list, list]:
    """Proven pre-activation bounds of every ReLU layer, per box (the better of interval and
    back-substitution bounds; each layer's pass uses the layers before it), and relaxations.
    Only units open in some box of the batch get a back-substitution row. (Tried on ACAS Xu
    1_1 prop 3 and dropped: intersecting with the parent box's bounds, more boxes and no
    faster per box; forward symbolic intervals, 4x cheaper per box but 14x more boxes.)"""
    import torch

    pre: list = []
    relax: list = []
    b = lo.shape[0]
    for k, (weights, bias, relu) in enumerate(tn.layers[:-1]):
        zl, zu = _interval(tn, k, lo, hi, pre)
        if tn.floors is not None and k < len(tn.floors):
            zl, zu = torch.maximum(zl, tn.floors[k][0]), torch.minimum(zu, tn.floors[k][1])
        open_ = torch.nonzero(((zl < 0) & (zu > 0)).any(dim=0))[:, 0]  # unstable in some box
        if k > 0 and len(open_):
            w = len(open_)
            eye = torch.eye(bias.shape[0], dtype=lo.dtype)[open_]
            obj = torch.cat([eye, -eye])
            coeffs = {s: (obj @ ws).expand(b, -1, -1) for s, ws in weights.items()}
            const = (obj @ bias).expand(b, -1)
            low, _ = _backsub(tn, coeffs, const, relax, lo, hi)
            zl, zu = zl.clone(), zu.clone()
            zl[:, open_] = torch.maximum(zl[:, open_], low[:, :w])
            zu[:, open_] = torch.minimum(zu[:, open_], -low[:, w:])
        pre.append((zl, zu))
        relax.append(_relaxation(zl, zu) if relu else None)
    return pre, relax


#: Gradient steps that optimise the lower relu slopes of the final bound (alpha-CROWN style,
#: one slope per box, row and unit; any slope in [0, 1] is sound, so this only tightens).
ALPHA_STEPS = 8
ALPHA_RATE = 0.2


def _goal_bounds(tn: _Net, lo: torch.Tensor, hi: torch.Tensor, g: torch.Tensor,
                 h: torch.Tensor, alpha_steps: int = ALPHA_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower bounds (B, m) of the goal rows and the input coefficients (B, m, n) behind them."""
    pre, relax = _layer_bounds(tn, lo, hi)
    weights, bias, relu = tn.layers[-1]
    b = lo.shape[0]
    if relu:  # the output itself passes a relu: bound its pre-activation, relax it too
        relax.append(_relaxation(*_interval(tn, len(tn.layers) - 1, lo, hi, pre)))
        coeffs = {len(tn.layers): g.expand(b, -1, -1)}
    else:
        coeffs = {s: (g @ w).expand(b, -1, -1) for s, w in weights.items()}
        h = h + g @ bias
    const = h.expand(b, -1)
    low, a0 = _backsub(tn, dict(coeffs), const, relax, lo, hi)
    if alpha_steps <= 0 or bool((low > 0).all()):
        return low, a0
    return _optimised(tn, coeffs, const, relax, lo, hi, low, a0, alpha_steps)


def _optimised(tn: _Net, coeffs: dict, const: torch.Tensor, relax: list, lo: torch.Tensor, hi: torch.Tensor,
               low: torch.Tensor, a0: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The final bound with lower relu slopes optimised by signed gradient ascent; per box
    and row the better of it and the plain bound (both sound)."""
    import torch

    m = const.shape[1]
    alphas = [None if r is None else r[0][:, None, :].expand(-1, m, -1).clone().requires_grad_(True) for r in relax]

    def bound() -> tuple[torch.Tensor, torch.Tensor]:
        rel = [None if r is None else (al.clamp(0.0, 1.0), r[1], r[2]) for r, al in zip(relax, alphas)]
        return _backsub(tn, dict(coeffs), const, rel, lo, hi)

    with torch.enable_grad():
        for _ in range(steps):
            value, _ = bound()
            grads = torch.autograd.grad(value.clamp(max=0.0).sum(), [al for al in alphas if al is not None])
            with torch.no_grad():
                for al, gr in zip([al for al in alphas if al is not None], grads):
                    al += ALPHA_RATE * gr.sign()
                    al.clamp_(0.0, 1.0)
    with torch.no_grad():
        value, _ = bound()
    better = value > low
    return torch.where(better, value, low), a0  # branching follows the plain bound's coefficients


def goal_bounds(net: Network, lo: np.ndarray, hi: np.ndarray, g: np.ndarray,
                h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sound lower bounds (B, m) of ``g @ y(x) + h`` over each box (lo, hi: (B, n)), and the
    input coefficients (B, m, n) of the linear bounds behind them."""
    import torch

    with using_threads(1):
        low, a0 = _goal_bounds(_Net(net), *(torch.from_numpy(np.array(t, dtype=np.float64))
                                            for t in (lo, hi, g, h)))
    return low.numpy(), a0.numpy()


# -- branch and bound ------------------------------------------------------------------

Confirm = Callable[[np.ndarray], "int | None"]
#: ``search_each``'s check: does the network's forward pass put ``x`` in disjunct ``i``?
ConfirmEach = Callable[[np.ndarray, int], bool]
#: Signed-gradient steps of the in-leaf attack (per leaf that stays open, from its centre and the
#: corner its bound points to); the step starts at ATTACK_STEP of the leaf's width and shrinks.
ATTACK_STEPS = 6
ATTACK_STEP, ATTACK_DECAY = 0.25, 0.7


def _candidates(lo: np.ndarray, hi: np.ndarray, a0: np.ndarray) -> np.ndarray:
    """Points to try in each box: its centre and, per row, the corner minimising that
    row's linear bound (where a counterexample is most likely)."""
    corners = np.where(a0 > 0, lo[:, None, :], hi[:, None, :]).reshape(-1, lo.shape[1])
    return np.vstack([(lo + hi) / 2, corners])


def _forward(tn: _Net, x: torch.Tensor) -> torch.Tensor:
    """The network's outputs (torch, differentiable) at the rows of ``x``."""
    outs = [x]
    for weights, bias, relu in tn.layers:
        z = bias + sum(outs[s] @ w.T for s, w in weights.items())
        outs.append(z.clamp(min=0.0) if relu else z)
    return outs[-1]


def _attack(tn: _Net, lo: np.ndarray, hi: np.ndarray, starts: np.ndarray, g: np.ndarray, h: np.ndarray,
            rows: np.ndarray, steps: int = ATTACK_STEPS) -> np.ndarray:
    """Projected signed-gradient descent inside each leaf, batched: start ``p`` (in leaf ``p``
    of ``lo``/``hi``) minimises the largest of its goal rows ``rows[p]`` (g y + h; a
    conjunction is reached when the largest is <= 0). Returns the final points; they are
    candidates only, judged by the forward pass like any other."""
    import torch

    lo_t, hi_t = torch.from_numpy(lo), torch.from_numpy(hi)
    width = hi_t - lo_t
    g_t, h_t, mask = torch.from_numpy(g), torch.from_numpy(h), torch.from_numpy(rows)
    x = torch.from_numpy(starts.copy())
    step = ATTACK_STEP
    with using_threads(1), torch.enable_grad():
        for _ in range(steps):
            x.requires_grad_(True)
            value = _forward(tn, x) @ g_t.T + h_t
            worst = torch.where(mask, value, torch.full_like(value, -torch.inf)).max(dim=1).values
            (grad,) = torch.autograd.grad(worst.sum(), x)
            with torch.no_grad():
                x = torch.minimum(torch.maximum(x - step * width * grad.sign(), lo_t), hi_t)
            step *= ATTACK_DECAY
    return x.detach().numpy()


def _attack_points(tn: _Net, lo: np.ndarray, hi: np.ndarray, a0: np.ndarray, lower: np.ndarray,
                   g: np.ndarray, h: np.ndarray, owner: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """The in-leaf attack on each live leaf's most promising open disjunct (the one whose
    sound bound is lowest), from the leaf's centre and from the corner that minimises the
    linear bound of that disjunct's hardest row."""
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
    return _attack(tn, lo[twice], hi[twice], starts, g, h, rows[twice])


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


def search(net: Network, box: Box, goal: Goal, deadline: float, *,
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
    without (``leo.queries.property._race``) rather than replacing it."""

    def __init__(self, net: Network, box: Box, goal: Goal, *, confirm: Confirm | None = None,
                 batch: int | None = None, max_open: int = MAX_OPEN, alpha_steps: int | None = None,
                 attack_steps: int = ATTACK_STEPS, floors: Floors | None = None) -> None:
        self._check = confirm or (lambda x: _own_check(net, box, goal, x))
        self._search = _Search(net, box, goal, time.perf_counter(), batch, max_open, alpha_steps, attack_steps,
                               floors)
        self.last: Result | None = None

    def run(self, deadline: float) -> Result:
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


def search_each(net: Network, box: Box, goal: Goal, deadline: float, *,
                confirm: ConfirmEach | None = None, batch: int | None = None, max_open: int = MAX_OPEN,
                alpha_steps: int | None = None, attack_steps: int = ATTACK_STEPS) -> Result:
    """The same search for every disjunct at once, on one split tree (the bounds of all
    disjuncts are computed per leaf together): each disjunct ends excluded on the whole box
    (``Result.proven``), reached at a point that ``confirm(x, i)`` accepts (``Result.found``,
    default check: this network's forward pass), or open. The status is PROVEN when all
    are excluded, COUNTEREXAMPLE when none is left open and some were reached, else TIMEOUT
    or UNKNOWN; ``proven`` never names a reached disjunct. For unit stability: one disjunct
    per open unit of a layer."""
    check = confirm or (lambda x, i: bool(box.contains(x)[0]) and bool(goal.inside_each(net(x[None, :]))[0, i]))
    return _Search(net, box, goal, deadline, batch, max_open, alpha_steps, attack_steps).run(each=check)


class _Search:
    """One branch and bound: the queue of sub-boxes (lower and upper corners, open
    disjuncts per box), what was found, and the counters."""

    def __init__(self, net: Network, box: Box, goal: Goal, deadline: float, batch: int | None,
                 max_open: int, alpha_steps: int | None, attack_steps: int, floors: Floors | None = None) -> None:
        import torch

        self.net, self.box, self.goal, self.deadline = net, box, goal, deadline
        self.alpha_steps = (ALPHA_STEPS if box.dim > SPLIT_INPUTS else 0) if alpha_steps is None else alpha_steps
        # on many inputs a batch is slow, and the deadline is checked per batch
        self.batch = (BATCH if box.dim <= SPLIT_INPUTS else SMALL_BATCH) if batch is None else batch
        self.max_open, self.attack_steps = max_open, attack_steps
        self.t0 = time.perf_counter()
        self.g, self.h, self.owner = goal.stacked() if goal.g else (np.zeros((0, net.output_dim)), np.zeros(0),
                                                                    np.zeros(0, int))
        self.tn, self.g_t, self.h_t = _Net(net, floors), torch.from_numpy(self.g), torch.from_numpy(self.h)
        self.nd = len(goal.g)
        self.empty = {i for i in range(self.nd) if len(goal.h[i]) == 0}
        self.los, self.his = [box.lower[None, :]], [box.upper[None, :]]
        self.opens = [np.ones((1, self.nd), dtype=bool)]
        self.ever_open = np.zeros(self.nd, dtype=bool)  # a disjunct still open in some box we gave up on
        self.current = np.zeros((0, self.nd), dtype=bool)  # the open disjuncts of the batch being bounded
        self.found: dict[int, np.ndarray] = {}
        self.skipped: set[int] = set()  # disjuncts the caller decided (Searcher.exclude): not ours to report
        self.leaves = self.splits = 0
        self.stats = {"bound_s": 0.0, "attack_s": 0.0}

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
            if time.perf_counter() >= self.deadline:
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
            low_t, a0_t = _goal_bounds(self.tn, torch.from_numpy(lo.copy()), torch.from_numpy(hi.copy()), self.g_t,
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
            pts = np.vstack([pts, _attack_points(self.tn, lo, hi, a0, lower, self.g, self.h, self.owner, open_)])
        ys = self.net(pts)
        self.stats["attack_s"] += time.perf_counter() - t
        if first is not None:
            for j in np.flatnonzero(self.goal.inside(ys) >= 0):
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
        inside = self.goal.inside_each(ys)
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


def _own_check(net: Network, box: Box, goal: Goal, x: np.ndarray) -> int | None:
    if not box.contains(x)[0]:
        return None
    hit = int(goal.inside(net(x[None, :]))[0])
    return None if hit < 0 else hit


# -- unit stability ------------------------------------------------------------------

def unit_network(net: Network, layer: int) -> Network:
    """The prefix of ``net`` whose output is layer ``layer``'s (1-based) pre-activation."""
    last = net.layers[layer - 1]
    return Network(net.input_dim, net.layers[:layer - 1] + (Layer(dict(last.weights), last.bias, relu=False),))


def unit_sign(net: Network, box: Box, layer: int, unit: int, deadline: float,
              margin: float = 1e-6) -> str | None:
    """Is unit ``unit`` (0-based) of layer ``layer`` (1-based) stably active (z >= margin on
    the whole box: "active") or stably inactive (z <= -margin: "inactive")? None when
    neither is proven by the deadline (which says nothing either way)."""
    sub = unit_network(net, layer)
    e = np.zeros((1, sub.output_dim))
    e[0, unit] = 1.0
    for sign, name in ((1.0, "active"), (-1.0, "inactive")):
        # unsafe for "active": z - margin <= 0; for "inactive": -z - margin <= 0
        if search(sub, box, Goal.of([(sign * e, np.array([-margin]))]), deadline).status is Status.PROVEN:
            return name
    return None


# -- output properties (leo.queries.property) --------------------------------------------------

def property_goal(disjuncts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Goal:
    """VNN-LIB's unsafe set, disjuncts ``A y <= c``, as a Goal (``g = A``, ``h = -c``)."""
    return Goal.of([(a, -np.asarray(c, dtype=np.float64)) for a, c in disjuncts])


#: On few inputs, the first search's share: a short try before the analysis, whose bounds make the
#: second search much faster where the first is slow (ACAS Xu 1_4 property 1: no proof in 40 s
#: without them; 12 s of analysis and 16 s of search with them, at a load of 10).
FIRST_SHARE = 0.15


def budget_share(input_dim: int) -> float:
    """The share of the time left that the first search gets before the analysis and the MILP:
    FIRST_SHARE on low-dimensional inputs (ACAS Xu's five; ``leo.queries.property`` then lets it go on,
    taking turns with a search that uses the analysis's bounds), a short try on images."""
    return FIRST_SHARE if input_dim <= SPLIT_INPUTS else 0.1
