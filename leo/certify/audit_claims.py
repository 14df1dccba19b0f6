"""Re-proving every stable claim of a certificate, layer by layer, with the audit's own
bounds (``audit_bounds``): interval first, then the LP, then the exact MILP; random box
points (and corners, when few) are tried first, and a point whose forward pass shows the
other sign refutes a claim.

- a MILP proves a claim when it shows (infeasible, or by its dual bound) that no point
  has min/max z within ``MILP_MARGIN`` of zero or beyond (room for HiGHS's tolerances);
- a point refutes a claim only when its pre-activation has the wrong sign by more than
  ``ROUNDING`` times the magnitude of its terms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from leo.certify.audit_bounds import ROUNDING, Prover
from leo.certify.audit_outcome import Refuted, Undecided
from leo.core.verdicts import Verdict

MILP_MARGIN = 5e-7
SAMPLES = 4096
#: Seconds between progress lines within one layer's re-proving.
LINE_PERIOD = 10.0
ACTIVE, INACTIVE, UNSTABLE = Verdict.ACTIVE, Verdict.INACTIVE, Verdict.UNSTABLE


def _fmt(x: np.ndarray) -> str:
    return np.array2string(np.asarray(x), precision=4, threshold=8, edgeitems=3, max_line_width=10_000)


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
        probs["lp"] = prover.problem(k, milp=False)
    c = prover.objective(probs["lp"], k, j, sign)
    bound, x = prover.lp_bound(probs["lp"], c)
    if x is not None:
        _refute_at(prover, k, j, verdict, x)
    if bound is not None and bound + sign * b >= 0:
        return "lp"
    if "milp" not in probs:
        probs["milp"] = prover.problem(k, milp=True)
    c = prover.objective(probs["milp"], k, j, sign)
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
        probs["lp"] = prover.problem(k, milp=False)
    b = prover.net.layers[k - 1].bias
    for j in units:
        if prover.deadline.passed():
            return  # tightening is optional: the next claim finds the budget spent and stops, undecided
        low, _ = prover.lp_bound(probs["lp"], prover.objective(probs["lp"], k, j, 1.0))
        if low is not None:
            prover.zl[k][j] = max(prover.zl[k][j], low + b[j])
        high, _ = prover.lp_bound(probs["lp"], prover.objective(probs["lp"], k, j, -1.0))
        if high is not None:
            prover.zu[k][j] = min(prover.zu[k][j], -high + b[j])


def _in_time(prover: Prover, k: int) -> None:
    """Stop, undecided, at the deadline; else cap the next solve's time limit by it."""
    if not prover.deadline.bounded:
        return
    left = prover.deadline.left()
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



__all__ = ["MILP_MARGIN", "reprove"]
