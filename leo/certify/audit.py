"""Re-check a compression certificate from scratch (``leo audit``).

Deliberately independent of the prover: nothing here imports ``leo.stability.analysis``,
``leo.bounds.propagate``, the engines or ``solvers``; bounds, relaxations and MILPs are written
again, with scipy (``linprog`` and ``milp``) instead of the prover's HiGHS model. The audit

1. compares the sha256 of the original and compressed files with the certificate's;
2. re-proves every stable claim, layer by layer: its own interval arithmetic first, then
   an LP (triangle relaxation of the earlier ReLUs over the audit's own bounds) whose
   bound is made rigorous from the LP's duals (Neumaier-Shcherbina), then an exact big-M
   MILP asking whether any point has the claim's sign wrong by less than the margin. Random box points (and corners, when few) are tried first: a point whose
   forward pass shows the other sign refutes a claim;
3. replays the reduction (delete inactive units, check and apply each recorded fold,
   merge linear layers; for the structured form, check that every unit of each channel
   deleted whole is claimed inactive, and drop the ReLU of layers claimed all active)
   and requires the result to equal the compressed file's network.

Tolerances (the audit's own, not read from the certificate):

- interval and LP bounds are widened by ``ROUNDING`` times the magnitude of the terms
  summed, then must show the sign (lower >= 0 for active, upper <= 0 for inactive);
- a MILP proves a claim when it shows (infeasible, or by its dual bound) that no point
  has min/max z within ``MILP_MARGIN`` of zero or beyond (room for HiGHS's tolerances);
- a point refutes a claim only when its pre-activation has the wrong sign by more than
  ``ROUNDING`` times the magnitude of its terms;
- a fold's recomputed residual max|B^T alpha - D^T| must be within the recorded one
  (plus float64 reordering, ``EPS64 * scale * columns``), which itself must be at most
  ``FOLD_CEILING * scale * max(rows, columns)`` (``scale`` = largest |weight| of the rows);
- replayed weights w must equal the file's within ``2**-23 * |w| + 1e-12 * max|W|`` (W: that
  layer's replayed weights and bias) when every weight in the file is a float32 value, else
  within ``1e-12 * (|w| + max|W|)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse

from leo.errors import LeoInputError
from leo.exitcodes import ExitCode
from leo.io.files import sha256
from leo.core.network import Layer, Network

SCHEMA = 2
ROUNDING = 1e-9
MILP_MARGIN = 5e-7
EPS64 = float(np.finfo(np.float64).eps)
FOLD_CEILING = 1e-9
FLOAT32_REL = 2.0**-23
FLOAT64_REL = 1e-12
SAMPLES = 4096
#: Seconds between progress lines within one layer's re-proving.
LINE_PERIOD = 10.0
ACTIVE, INACTIVE, UNSTABLE = "active", "inactive", "unstable"


class Refuted(Exception):
    """The certificate does not hold: the message names the first failing item."""


class Undecided(Exception):
    """A claim could be neither proven nor refuted within the time limit."""


@dataclass
class AuditResult:
    code: ExitCode
    message: str
    proofs: dict[str, int] = field(default_factory=dict)  # claims re-proved, by method
    seconds: float = 0.0


# -- reading the certificate ------------------------------------------------------

def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LeoInputError(f"no such certificate: {path}")
    try:
        cert = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise LeoInputError(f"{path} is not a JSON certificate ({exc})") from None
    if not isinstance(cert, dict) or cert.get("schema") != SCHEMA:
        found = cert.get("schema") if isinstance(cert, dict) else None
        raise LeoInputError(f"{path}: certificate schema {found!r} is not {SCHEMA}; re-run leo compress")
    for key in ("original", "compressed", "domain", "layers", "reduction", "tolerances"):
        if key not in cert:
            raise LeoInputError(f"{path}: the certificate has no {key!r} entry")
    return cert


def _model_file(given: str | None, recorded: str | None, cert_path: Path, what: str) -> Path:
    """The file given on the command line, else the certificate's path (as written, or
    beside the certificate)."""
    if given is not None:
        text = str(given)
        if text.startswith("builtin:"):
            return Path(__file__).parent / "models" / f"{text[len('builtin:'):]}.pt"
        return Path(text)
    if not recorded:
        raise LeoInputError(f"the certificate names no {what} file; give --{what}")
    p = Path(recorded)
    for candidate in (p, cert_path.parent / p, cert_path.parent / p.name):
        if candidate.is_file():
            return candidate
    raise LeoInputError(f"the {what} file {recorded} is missing; give --{what}")


def _check_hash(path: Path, recorded: str | None, what: str) -> str:
    """Refuted on a mismatch; the outcome in words otherwise."""
    if recorded is None:  # e.g. a certificate of an in-memory model: the replay still checks the file
        return f"no sha256 recorded for the {what} file"
    actual = sha256(path)
    if actual != recorded:
        raise Refuted(f"{what} file {path}: sha256 {actual[:16]}... is not the certificate's {recorded[:16]}...")
    return ""


def _box(domain: dict[str, Any], dim: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo = np.broadcast_to(np.asarray(domain["lower"], dtype=np.float64), (dim,)).copy()
        hi = np.broadcast_to(np.asarray(domain["upper"], dtype=np.float64), (dim,)).copy()
    except (KeyError, ValueError, TypeError):
        raise Refuted(f"domain: not a box over the original network's {dim} inputs") from None
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (lo > hi).any():
        raise LeoInputError("the certificate's domain is not a finite box with lower <= upper")
    return lo, hi


def _claims(cert: dict[str, Any], net: Network) -> dict[int, list[str]]:
    """Verdict per unit of every ReLU layer (1-based layer index)."""
    recorded = {int(entry["layer"]): entry["units"] for entry in cert["layers"]}
    out: dict[int, list[str]] = {}
    for k, layer in enumerate(net.layers, start=1):
        if not layer.relu:
            continue
        units = recorded.get(k)
        if units is None or len(units) != layer.width:
            raise Refuted(f"layer {k}: the certificate has no verdict for each of its {layer.width} units")
        verdicts = [u.get("verdict") for u in units]
        bad = [v for v in verdicts if v not in (ACTIVE, INACTIVE, UNSTABLE)]
        if bad:
            raise LeoInputError(f"layer {k}: unknown verdict {bad[0]!r} in the certificate")
        out[k] = verdicts
    extra = set(recorded) - set(out)
    if extra:
        raise Refuted(f"layer {min(extra)}: the certificate has verdicts for a layer with no ReLU")
    return out


# -- bounds and relaxations ---------------------------------------------------------

def _fmt(x: np.ndarray) -> str:
    return np.array2string(np.asarray(x), precision=4, threshold=8, edgeitems=3, max_line_width=10_000)


class Prover:
    """The audit's own bounds on the original network, tightened as claims are re-proved."""

    def __init__(self, net: Network, lo: np.ndarray, hi: np.ndarray, time_limit: float,
                 deadline: float | None = None) -> None:
        self.net, self.lo, self.hi, self.time_limit = net, lo, hi, time_limit
        self.limit = time_limit  # per LP or MILP, as asked; time_limit is that capped by the deadline
        self.deadline = deadline  # time.time() at which the audit stops, undecided (--time-budget)
        self.zl: dict[int, np.ndarray] = {}
        self.zu: dict[int, np.ndarray] = {}
        self.proofs: dict[str, int] = {}

    # h bounds per source (0 = input)
    def h_bounds(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        if s == 0:
            return self.lo, self.hi
        zl, zu = self.zl[s], self.zu[s]
        if self.net.layers[s - 1].relu:
            return np.maximum(zl, 0.0), np.maximum(zu, 0.0)
        return zl, zu

    def interval(self, k: int) -> None:
        layer = self.net.layers[k - 1]
        centre = layer.bias.copy()
        radius = np.zeros_like(centre)
        mag = np.abs(layer.bias)
        for s, w in layer.weights.items():
            hl, hu = self.h_bounds(s)
            centre = centre + w @ ((hl + hu) / 2)
            radius = radius + np.abs(w) @ ((hu - hl) / 2)
            mag = mag + np.abs(w) @ np.maximum(np.abs(hl), np.abs(hu))
        slack = ROUNDING * mag + 1e-300
        self.zl[k], self.zu[k] = centre - radius - slack, centre + radius + slack

    def forward(self, k: int, x: np.ndarray, zs: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """z_k at the points ``x`` by the network's own forward pass (``zs``: that pass, when
        the caller has it), and |b| + sum |W||h| there: the scale of the rounding in z_k."""
        zs = self.net.pre_activations(x) if zs is None else zs
        layer = self.net.layers[k - 1]
        hs = [np.atleast_2d(x)] + [np.maximum(z, 0) if ly.relu else z for z, ly in zip(zs[:k - 1], self.net.layers)]
        mag = np.abs(layer.bias) + sum(np.abs(hs[s]) @ np.abs(w).T for s, w in layer.weights.items())
        return zs[k - 1], mag

    # -- the LP / MILP over layers 1..k-1 with objective c . (W_k,j v) ---------------
    def _problem(self, k: int, milp: bool) -> dict[str, Any]:
        """Variables x, h_1..h_{k-1} (and binaries d for unstable units when ``milp``)."""
        widths = self.net.widths
        offset = {0: 0}
        n = widths[0]
        for s in range(1, k):
            offset[s] = n
            n += widths[s]
        lb = [self.lo] + [self.h_bounds(s)[0] for s in range(1, k)]
        ub = [self.hi] + [self.h_bounds(s)[1] for s in range(1, k)]
        ub_rows, ub_rhs, eq_rows, eq_rhs, binaries = [], [], [], [], []

        def row(s: int, j: int) -> tuple[np.ndarray, np.ndarray]:
            layer = self.net.layers[s - 1]
            cols, vals = [], []
            for src, w in layer.weights.items():
                cols.append(offset[src] + np.arange(widths[src]))
                vals.append(w[j])
            return np.concatenate(cols), np.concatenate(vals)

        for s in range(1, k):
            layer = self.net.layers[s - 1]
            zl, zu = self.zl[s], self.zu[s]
            for j in range(layer.width):
                cols, vals = row(s, j)
                b = float(layer.bias[j])
                hj = offset[s] + j
                if not layer.relu or zl[j] >= 0:  # linear: h = z
                    eq_rows.append((np.append(cols, hj), np.append(-vals, 1.0)))
                    eq_rhs.append(b)
                elif zu[j] <= 0:
                    continue  # h fixed to 0 by its bounds
                else:
                    l, u = float(zl[j]), float(zu[j])
                    ub_rows.append((np.append(cols, hj), np.append(vals, -1.0)))  # z - h <= 0
                    ub_rhs.append(-b)
                    if milp:
                        d = n + len(binaries)
                        binaries.append(d)
                        ub_rows.append((np.concatenate([cols, [hj, d]]), np.concatenate([-vals, [1.0, -l]])))
                        ub_rhs.append(b - l)  # h <= z - l (1 - d)
                        ub_rows.append((np.array([hj, d]), np.array([1.0, -u])))
                        ub_rhs.append(0.0)  # h <= u d
                    else:
                        slope = u / (u - l)  # triangle: h <= u (z - l) / (u - l)
                        ub_rows.append((np.append(cols, hj), np.append(-slope * vals, 1.0)))
                        ub_rhs.append(slope * (b - l))
        total = n + len(binaries)
        lb_all = np.concatenate(lb + [np.zeros(len(binaries))])
        ub_all = np.concatenate(ub + [np.ones(len(binaries))])
        return {"n": total, "inputs": widths[0], "offset": offset, "lb": lb_all, "ub": ub_all,
                "A_ub": _sparse(ub_rows, total), "b_ub": np.array(ub_rhs), "A_eq": _sparse(eq_rows, total),
                "b_eq": np.array(eq_rhs), "binaries": binaries}

    def _objective(self, prob: dict[str, Any], k: int, j: int, sign: float) -> np.ndarray:
        """min sign * (z_kj - b_kj) as a cost vector."""
        c = np.zeros(prob["n"])
        for s, w in self.net.layers[k - 1].weights.items():
            c[prob["offset"][s]:prob["offset"][s] + w.shape[1]] += sign * w[j]
        return c

    def lp_bound(self, prob: dict[str, Any], c: np.ndarray) -> tuple[float | None, np.ndarray | None]:
        """A rigorous lower bound on min c.v over the relaxation (from the LP's duals), and the LP's x."""
        a_ub, a_eq = prob["A_ub"], prob["A_eq"]
        res = scipy.optimize.linprog(
            c, A_ub=a_ub if a_ub.shape[0] else None, b_ub=prob["b_ub"] if a_ub.shape[0] else None,
            A_eq=a_eq if a_eq.shape[0] else None, b_eq=prob["b_eq"] if a_eq.shape[0] else None,
            bounds=np.column_stack([prob["lb"], prob["ub"]]), method="highs",
            options={"time_limit": self.time_limit})
        if res.status != 0 or res.x is None:
            return None, None
        y_ub = np.minimum(res.ineqlin.marginals, 0.0) if a_ub.shape[0] else np.zeros(0)
        y_eq = res.eqlin.marginals if a_eq.shape[0] else np.zeros(0)
        r = c - a_ub.T @ y_ub - a_eq.T @ y_eq
        lb, ub = prob["lb"], prob["ub"]
        bound = y_ub @ prob["b_ub"] + y_eq @ prob["b_eq"] + np.minimum(r * lb, r * ub).sum()
        scale = np.maximum(np.abs(lb), np.abs(ub))
        mag = (np.abs(y_ub) @ np.abs(prob["b_ub"]) + np.abs(y_eq) @ np.abs(prob["b_eq"])
               + (np.abs(c) + abs(a_ub).T @ np.abs(y_ub) + abs(a_eq).T @ np.abs(y_eq)) @ scale)
        return float(bound - ROUNDING * mag - 1e-300), res.x[:prob["inputs"]]

    def milp_bound(self, prob: dict[str, Any], c: np.ndarray,
                   cutoff: float) -> tuple[float | None, np.ndarray | None, bool]:
        """A proven lower bound on min c.v over the MILP, an incumbent's x, and whether the solve
        finished. The question asked is "is there a point with c.v <= cutoff?" (a constraint, so
        HiGHS prunes every node whose bound passes it): infeasible proves min c.v >= cutoff."""
        integrality = np.zeros(prob["n"])
        integrality[prob["binaries"]] = 1
        cons = [scipy.optimize.LinearConstraint(c[None, :], -np.inf, cutoff)]
        if prob["A_ub"].shape[0]:
            cons.append(scipy.optimize.LinearConstraint(prob["A_ub"], -np.inf, prob["b_ub"]))
        if prob["A_eq"].shape[0]:
            cons.append(scipy.optimize.LinearConstraint(prob["A_eq"], prob["b_eq"], prob["b_eq"]))
        res = scipy.optimize.milp(c, integrality=integrality, bounds=scipy.optimize.Bounds(prob["lb"], prob["ub"]),
                                  constraints=cons, options={"time_limit": self.time_limit})
        if res.status == 2:  # infeasible: no point below the cutoff
            return cutoff, None, True
        bound = getattr(res, "mip_dual_bound", None)
        x = None if res.x is None else res.x[:prob["inputs"]]
        if res.status not in (0, 1) or bound is None or not np.isfinite(bound):
            return None, x, False
        return float(bound), x, res.status == 0


def _sparse(rows: list[tuple[np.ndarray, np.ndarray]], n: int) -> scipy.sparse.csr_matrix:
    if not rows:
        return scipy.sparse.csr_matrix((0, n))
    indptr = np.cumsum([0] + [len(c) for c, _ in rows])
    cols = np.concatenate([c for c, _ in rows]).astype(np.int64)
    vals = np.concatenate([v for _, v in rows])
    return scipy.sparse.csr_matrix((vals, cols, indptr), shape=(len(rows), n))


# -- re-proving the claims ---------------------------------------------------------

def _sample(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    pts = [lo + rng.random((n, lo.size)) * (hi - lo), ((lo + hi) / 2)[None], lo[None], hi[None]]
    free = np.flatnonzero(hi > lo)
    if free.size <= 10:
        bits = (np.arange(2**free.size)[:, None] >> np.arange(free.size)) & 1
        corners = np.repeat(lo[None], bits.shape[0], axis=0)
        corners[:, free] = np.where(bits == 1, hi[free], lo[free])
        pts.append(corners)
    return np.vstack(pts)


def _refute(k: int, verdicts: list[str], x: np.ndarray, z: np.ndarray, mag: np.ndarray) -> None:
    """Raise Refuted when the forward pass ``z`` at some point of ``x`` shows a claim's other
    sign by more than the rounding in it."""
    tol = ROUNDING * mag
    for j, verdict in enumerate(verdicts):
        wrong = z[:, j] < -tol[:, j] if verdict == ACTIVE else z[:, j] > tol[:, j] if verdict == INACTIVE else None
        if wrong is not None and wrong.any():
            i = int(np.flatnonzero(wrong)[np.argmax(np.abs(z[wrong, j]))])
            raise Refuted(f"layer {k} unit {j}: claimed stably {verdict}, but z = {z[i, j]:.6g} at x = {_fmt(x[i])}")


def _refute_at(prover: Prover, k: int, j: int, verdict: str, x: np.ndarray) -> None:
    """The same for one claim at one point (a relaxation's or a MILP's x, clipped to the box)."""
    x = np.clip(np.atleast_2d(x), prover.lo, prover.hi)
    z, mag = prover.forward(k, x)
    _refute(k, [UNSTABLE] * j + [verdict], x, z[:, :j + 1], mag[:, :j + 1])


def _prove(prover: Prover, k: int, j: int, verdict: str, probs: dict[str, dict[str, Any]]) -> str:
    """Re-prove one claim the interval bounds left open: LP, then MILP. The method that did."""
    sign = 1.0 if verdict == ACTIVE else -1.0  # minimise sign * z
    b = float(prover.net.layers[k - 1].bias[j])
    if "lp" not in probs:
        probs["lp"] = prover._problem(k, milp=False)
    c = prover._objective(probs["lp"], k, j, sign)
    bound, x = prover.lp_bound(probs["lp"], c)
    if x is not None:
        _refute_at(prover, k, j, verdict, x)
    if bound is not None and bound + sign * b >= 0:
        return "lp"
    if "milp" not in probs:
        probs["milp"] = prover._problem(k, milp=True)
    c = prover._objective(probs["milp"], k, j, sign)
    cutoff = MILP_MARGIN - sign * b  # sign * z_kj <= MILP_MARGIN, in the cost's terms
    bound, x, finished = prover.milp_bound(probs["milp"], c, cutoff)
    if x is not None:
        _refute_at(prover, k, j, verdict, x)
    if bound is not None and bound >= cutoff:
        return "milp"
    if not finished:
        raise Undecided(f"layer {k} unit {j}: claimed stably {verdict}; the MILP stopped within "
                        f"{prover.time_limit:g} s without proving or refuting it")
    extreme = "minimum" if verdict == ACTIVE else "maximum"
    raise Refuted(f"not proven: layer {k} unit {j}: claimed stably {verdict}, but the exact MILP {extreme} "
                  f"of z is {sign * (bound + sign * b):.3g}, within the audit's margin {MILP_MARGIN:g} of 0")


def _tighten(prover: Prover, k: int, units: list[int], probs: dict[str, dict[str, Any]]) -> None:
    """Rigorous LP bounds for open units of layer k, so later layers' relaxations are tighter."""
    if "lp" not in probs:
        probs["lp"] = prover._problem(k, milp=False)
    b = prover.net.layers[k - 1].bias
    for j in units:
        if prover.deadline is not None and time.time() >= prover.deadline:
            return  # tightening is optional: the next claim finds the budget spent and stops, undecided
        low, _ = prover.lp_bound(probs["lp"], prover._objective(probs["lp"], k, j, 1.0))
        if low is not None:
            prover.zl[k][j] = max(prover.zl[k][j], low + b[j])
        high, _ = prover.lp_bound(probs["lp"], prover._objective(probs["lp"], k, j, -1.0))
        if high is not None:
            prover.zu[k][j] = min(prover.zu[k][j], -high + b[j])


def _in_time(prover: Prover, k: int) -> None:
    """Stop, undecided, at the deadline; else cap the next solve's time limit by it."""
    if prover.deadline is None:
        return
    left = prover.deadline - time.time()
    if left <= 0:
        done = sum(prover.proofs.values())
        raise Undecided(f"the time budget ran out at layer {k}, with {done} stable claims re-proved "
                        "(--time-budget gives the audit more time)")
    prover.time_limit = min(prover.limit, left)


def reprove(prover: Prover, claims: dict[int, list[str]], say: Callable[[str], None] = lambda _: None) -> None:
    """Every stable claim re-proved, layer by layer; raises Refuted or Undecided. ``say``
    hears a line per layer."""
    stable = [k for k, v in claims.items() if any(s != UNSTABLE for s in v)]
    if not stable:
        return
    last = max(stable)
    points = _sample(prover.lo, prover.hi, SAMPLES)
    zs = prover.net.pre_activations(points)  # once: per layer, this pass was most of a CNN's audit
    for k in range(1, last + 1):
        _in_time(prover, k)
        prover.interval(k)
        verdicts = claims.get(k, [UNSTABLE] * prover.net.layers[k - 1].width)
        say(f"layer {k}: {sum(v != UNSTABLE for v in verdicts)} stable claims of {len(verdicts)} units "
            f"({sum(prover.proofs.values())} re-proved so far)")
        _refute(k, verdicts, points, *prover.forward(k, points, zs))
        probs: dict[str, dict[str, Any]] = {}
        last = time.monotonic()
        for j, verdict in enumerate(verdicts):
            if verdict == UNSTABLE:
                continue
            if (verdict == ACTIVE and prover.zl[k][j] >= 0) or (verdict == INACTIVE and prover.zu[k][j] <= 0):
                method = "interval"
            else:
                _in_time(prover, k)
                method = _prove(prover, k, j, verdict, probs)
                if time.monotonic() - last >= LINE_PERIOD:  # a layer of LPs and MILPs can take minutes
                    last = time.monotonic()
                    say(f"layer {k}: at unit {j} of {len(verdicts)} ({sum(prover.proofs.values())} claims "
                        f"re-proved so far: {', '.join(f'{m} {c}' for m, c in sorted(prover.proofs.items()))})")
            prover.proofs[method] = prover.proofs.get(method, 0) + 1
            if verdict == ACTIVE:
                prover.zl[k][j] = max(prover.zl[k][j], 0.0)
            else:
                prover.zu[k][j] = min(prover.zu[k][j], 0.0)
        reads_hidden = any(s > 0 for s in prover.net.layers[k - 1].weights)
        if k < last and reads_hidden and prover.net.layers[k - 1].relu:
            open_units = [j for j in range(len(verdicts)) if prover.zl[k][j] < 0 < prover.zu[k][j]]
            _tighten(prover, k, open_units, probs)


# -- replaying the reduction ---------------------------------------------------------

@dataclass
class _Live:
    weights: dict[int, np.ndarray]
    bias: np.ndarray
    relu: bool
    verdicts: list[str]
    origin: list[int]
    layer: int  # original 1-based index


def _readers(layers: list[_Live], k: int) -> list[_Live]:
    return [ly for ly in layers if k + 1 in ly.weights]


def _delete(layers: list[_Live], k: int, positions: list[int]) -> None:
    ly = layers[k]
    keep = [i for i in range(ly.bias.size) if i not in set(positions)]
    ly.weights = {s: w[keep] for s, w in ly.weights.items()}
    ly.bias = ly.bias[keep]
    ly.verdicts = [ly.verdicts[i] for i in keep]
    ly.origin = [ly.origin[i] for i in keep]
    for reader in _readers(layers, k):
        reader.weights[k + 1] = reader.weights[k + 1][:, keep]


def _positions(ly: _Live, units: list[int], what: str) -> list[int]:
    try:
        return [ly.origin.index(int(u)) for u in units]
    except ValueError:
        raise Refuted(f"reduction: layer {ly.layer}: {what} names a unit that is not there") from None


def _fold(layers: list[_Live], k: int, fold: dict[str, Any], recorded_max: float) -> None:
    ly = layers[k]
    dep = _positions(ly, fold["units"], "a fold")
    basis = _positions(ly, fold["basis"], "a fold basis")
    for u, p in zip(list(fold["units"]) + list(fold["basis"]), dep + basis):
        if ly.verdicts[p] != ACTIVE:
            raise Refuted(f"reduction: layer {ly.layer} unit {u} is folded, but not claimed stably active")
    alpha = np.asarray(fold["alpha"], dtype=np.float64).reshape(len(basis), len(dep))
    rows = np.hstack([ly.weights[s] for s in sorted(ly.weights)])
    b_rows, d_rows = rows[basis], rows[dep]
    scale = max(float(np.abs(rows[basis + dep]).max()), 1e-300)
    residual = float(np.abs(b_rows.T @ alpha - d_rows.T).max())
    tol = float(fold["residual"])
    ceiling = FOLD_CEILING * scale * max(rows.shape)
    if not tol <= min(ceiling, recorded_max):
        raise Refuted(f"reduction: layer {ly.layer}: fold residual tolerance {tol:.3g} exceeds "
                      f"{min(ceiling, recorded_max):.3g} (the certificate's largest, or the audit's ceiling)")
    if residual > tol + EPS64 * scale * rows.shape[1]:
        raise Refuted(f"reduction: layer {ly.layer}: the fold coefficients do not reproduce units "
                      f"{list(fold['units'])}: residual {residual:.3g} > recorded {tol:.3g}")
    offset = ly.bias[dep] - alpha.T @ ly.bias[basis]
    for reader in _readers(layers, k):
        w = reader.weights[k + 1].copy()
        wd = w[:, dep]
        w[:, basis] += wd @ alpha.T
        reader.bias = reader.bias + wd @ offset
        reader.weights[k + 1] = w
    _delete(layers, k, dep)


def _merge(layers: list[_Live], k: int) -> None:
    ly = layers[k]
    for reader in _readers(layers, k):
        w = reader.weights.pop(k + 1)
        reader.bias = reader.bias + w @ ly.bias
        for s, ws in ly.weights.items():
            reader.weights[s] = reader.weights[s] + w @ ws if s in reader.weights else w @ ws
    del layers[k]
    for later in layers[k:]:
        later.weights = {(s - 1 if s > k + 1 else s): w for s, w in later.weights.items()}


def _bypass(layers: list[_Live], k: int, positions: list[int]) -> None:
    """Stably active units are linear: readers take their affine map from layer k's sources."""
    ly = layers[k]
    for reader in _readers(layers, k):
        wa = reader.weights[k + 1][:, positions]
        reader.bias = reader.bias + wa @ ly.bias[positions]
        for s, ws in ly.weights.items():
            reader.weights[s] = reader.weights[s] + wa @ ws[positions] if s in reader.weights else wa @ ws[positions]
    _delete(layers, k, positions)


def check_dead_channels(net: Network, claims: dict[int, list[str]], reduction: dict[str, Any]) -> None:
    """Every unit of a channel the certificate deletes whole (structured form) is claimed
    stably inactive, and removed with the others; Refuted naming the first that is not."""
    removed = [set(int(u) for u in units) for units in reduction.get("removed_inactive", [])]
    for k, channels in enumerate(reduction.get("dead_channels", []), start=1):
        if not channels:
            continue
        if k > len(net.layers) or net.layers[k - 1].shape is None or len(net.layers[k - 1].shape) < 2:
            raise Refuted(f"reduction: layer {k} has dead channels listed, but no channels")
        layer = net.layers[k - 1]
        per = layer.width // layer.shape[0]
        verdicts = claims.get(k, [])
        for c in channels:
            if not 0 <= int(c) < layer.shape[0]:
                raise Refuted(f"reduction: layer {k} has no channel {c}")
            for j in range(int(c) * per, (int(c) + 1) * per):
                if j >= len(verdicts) or verdicts[j] != INACTIVE:
                    raise Refuted(f"reduction: layer {k} channel {c} is deleted as dead, but its unit {j} "
                                  "is not claimed stably inactive")
                if k > len(removed) or j not in removed[k - 1]:
                    raise Refuted(f"reduction: layer {k} channel {c} is deleted as dead, but its unit {j} "
                                  "is not in the removed list")


def replay(net: Network, claims: dict[int, list[str]], reduction: dict[str, Any], recorded_max: float) -> Network:
    """The compressed network by the certificate's reduction, each step checked against the claims."""
    check_dead_channels(net, claims, reduction)
    linear = [int(i) for i in reduction.get("linear_layers", [])]
    done_linear: list[int] = []
    layers = [_Live({s: w.copy() for s, w in ly.weights.items()}, ly.bias.copy(), ly.relu,
                    list(claims.get(i, [ACTIVE] * ly.width)), list(range(ly.width)), i)
              for i, ly in enumerate(net.layers, start=1)]
    removed = [list(u) for u in reduction.get("removed_inactive", [])]
    folds = list(reduction.get("folds", []))
    merged = [int(i) for i in reduction.get("merged_layers", [])]
    bypassed = [list(u) for u in reduction.get("bypassed_active", [])]
    done_removed, done_folds, done_merged = set(), 0, []
    k = 0
    while k < len(layers) - 1:
        ly = layers[k]
        if ly.relu:
            units = removed[ly.layer - 1] if ly.layer - 1 < len(removed) else []
            pos = _positions(ly, units, "the removed list")
            for u, p in zip(units, pos):
                if ly.verdicts[p] != INACTIVE:
                    raise Refuted(f"reduction: layer {ly.layer} unit {u} is removed, but not claimed stably inactive")
            _delete(layers, k, pos)
            done_removed.add(ly.layer)
            units = bypassed[ly.layer - 1] if ly.layer - 1 < len(bypassed) else []
            pos = _positions(ly, units, "the bypassed list")
            for u, p in zip(units, pos):
                if ly.verdicts[p] != ACTIVE:
                    raise Refuted(f"reduction: layer {ly.layer} unit {u} is bypassed, but not claimed stably active")
            if pos:
                _bypass(layers, k, pos)
            for fold in [f for f in folds if int(f["layer"]) == ly.layer]:
                _fold(layers, k, fold, recorded_max)
                done_folds += 1
        if ly.layer in merged:
            if ly.relu and any(v != ACTIVE for v in ly.verdicts):
                raise Refuted(f"reduction: layer {ly.layer} is merged, but not all its units are claimed stably active")
            done_merged.append(ly.layer)
            _merge(layers, k)
            continue
        if ly.layer in linear and ly.relu:  # structured form: every unit left is linear on the box
            if any(v != ACTIVE for v in ly.verdicts):
                raise Refuted(f"reduction: layer {ly.layer} loses its ReLU, but not all its units are claimed "
                              "stably active")
            ly.relu = False
            done_linear.append(ly.layer)
        k += 1
    left = [i + 1 for units in (removed, bypassed) for i, u in enumerate(units) if u and i + 1 not in done_removed]
    if left or done_folds != len(folds) or sorted(done_merged) != sorted(merged) \
            or sorted(done_linear) != sorted(linear):
        raise Refuted("reduction: the certificate lists removals, folds, merges or linear layers that the replay "
                      "cannot apply "
                      "(layers that were merged or the output layer)")
    out = layers[-1]
    if out.relu:  # a final ReLU: inactive outputs are zero, all-active drops the ReLU
        for i, v in enumerate(out.verdicts):
            if v == INACTIVE:
                for w in out.weights.values():
                    w[i] = 0.0
                out.bias[i] = 0.0
        out.relu = not all(v == ACTIVE for v in out.verdicts)
    return Network(net.input_dim, tuple(Layer(ly.weights, ly.bias, ly.relu) for ly in layers))


def _is_float32(net: Network) -> bool:
    arrays = [a for ly in net.layers for a in (ly.bias, *ly.weights.values())]
    return all(np.array_equal(a.astype(np.float32).astype(np.float64), a) for a in arrays)


def compare(replayed: Network, file_net: Network) -> str:
    """Require the file's network to equal the replayed one; returns the tolerance used."""
    rel = FLOAT32_REL if _is_float32(file_net) else FLOAT64_REL
    if file_net.input_dim != replayed.input_dim or len(file_net.layers) != len(replayed.layers):
        raise Refuted(f"replay: the compressed file has {len(file_net.layers)} layers over {file_net.input_dim} "
                      f"inputs; the certificate's reduction gives {len(replayed.layers)} over {replayed.input_dim}")
    for k, (a, b) in enumerate(zip(replayed.layers, file_net.layers), start=1):
        if a.relu != b.relu or set(a.weights) != set(b.weights) or a.width != b.width:
            raise Refuted(f"replay: layer {k} of the compressed file has {b.width} units reading {sorted(b.weights)}"
                          f"{' with' if b.relu else ' without'} ReLU; the reduction gives {a.width} reading "
                          f"{sorted(a.weights)}{' with' if a.relu else ' without'} ReLU")
        scale = max(max(float(np.abs(w).max(initial=0.0)) for w in a.weights.values()),
                    float(np.abs(a.bias).max(initial=0.0)))
        for name, x, y in [("bias", a.bias, b.bias)] + [(f"weight from {s}", a.weights[s], b.weights[s])
                                                          for s in sorted(a.weights)]:
            tol = rel * np.abs(x) + 1e-12 * scale
            diff = np.abs(x - y)
            if (diff > tol).any():
                i = np.unravel_index(int(np.argmax(diff - tol)), diff.shape)
                raise Refuted(f"replay: layer {k} {name} {tuple(int(t) for t in i)} is {y[i]:.9g} in the compressed "
                              f"file but {x[i]:.9g} by the certificate's reduction")
    return "float32" if rel == FLOAT32_REL else "float64"


# -- the audit ---------------------------------------------------------------------

def audit(certificate: str | Path, original: str | None = None, compressed: str | None = None,
          time_limit: float = 60.0, progress: Callable[[str], None] | None = None,
          time_budget: float | None = None) -> AuditResult:
    """Check a certificate: OK (valid), REFUTED (first failing item), UNDECIDED; bad input raises.
    ``progress`` hears a line per step; ``time_budget`` (seconds) bounds the re-proving: a claim
    not reached by then makes the audit UNDECIDED, never valid."""
    from leo.io.load import load_network

    t0 = time.perf_counter()
    deadline = None if time_budget is None else time.time() + time_budget
    say = progress or (lambda _: None)
    cert_path = Path(certificate)
    cert = _read(cert_path)
    orig_path = _model_file(original, cert["original"].get("path"), cert_path, "original")
    comp_path = _model_file(compressed, cert["compressed"].get("path"), cert_path, "compressed")
    prover: Prover | None = None
    try:
        hashes = [_check_hash(orig_path, cert["original"].get("sha256"), "original"),
                  _check_hash(comp_path, cert["compressed"].get("sha256"), "compressed")]
        file_net = load_network(comp_path)
        # leo's output records the input shape; an original TorchScript archive does not
        hint = (file_net.input_shape,) if file_net.input_shape else ()
        net = load_network(orig_path, shapes=hint)
        lo, hi = _box(cert["domain"], net.input_dim)
        claims = _claims(cert, net)
        prover = Prover(net, lo, hi, time_limit, deadline)
        say(f"re-proving the stable claims of {len(claims)} ReLU layers")
        reprove(prover, claims, say)
        say("replaying the reduction")
        try:
            recorded_max = float(cert["tolerances"].get("fold_residual", 0.0))
        except (TypeError, ValueError):
            raise LeoInputError("the certificate's fold_residual is not a number") from None
        replayed = replay(net, claims, cert["reduction"], recorded_max)
        say("comparing the replayed network with the compressed file")
        dtype = compare(replayed, file_net)
    except Refuted as exc:
        return AuditResult(ExitCode.REFUTED, str(exc), prover.proofs if prover else {}, time.perf_counter() - t0)
    except Undecided as exc:
        return AuditResult(ExitCode.UNDECIDED, str(exc), prover.proofs, time.perf_counter() - t0)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, LeoInputError):
            raise
        raise LeoInputError(f"the certificate is malformed ({type(exc).__name__}: {exc})") from None
    n = sum(prover.proofs.values())
    how = ", ".join(f"{m} {c}" for m, c in sorted(prover.proofs.items())) or "none"
    hashes_line = "; ".join(h for h in hashes if h) or "hashes match"
    return AuditResult(ExitCode.OK, f"{hashes_line}; {n} stable claims re-proved ({how}); the replayed "
                       f"reduction equals the compressed file ({dtype} tolerance)", prover.proofs,
                       time.perf_counter() - t0)
