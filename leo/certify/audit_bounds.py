"""The audit's own bounds on the original network: interval arithmetic, the triangle LP
relaxation with a rigorous bound from its duals (Neumaier-Shcherbina), and the exact
big-M MILP, all written again with scipy (``linprog``, ``milp``), none of the prover's.

Interval and LP bounds are widened by ``ROUNDING`` times the magnitude of the terms summed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse

from leo.core.deadline import Deadline
from leo.core.network import Network

ROUNDING = 1e-9


class Prover:
    """The audit's own bounds on the original network, tightened as claims are re-proved."""

    def __init__(self, net: Network, lo: np.ndarray, hi: np.ndarray, time_limit: float,
                 deadline: Deadline = Deadline.never()) -> None:
        self.net, self.lo, self.hi, self.time_limit = net, lo, hi, time_limit
        self.limit = time_limit  # per LP or MILP, as asked; time_limit is that capped by the deadline
        self.deadline = deadline  # when the audit stops, undecided (--time-budget)
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
    def problem(self, k: int, milp: bool) -> dict[str, Any]:
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

    def objective(self, prob: dict[str, Any], k: int, j: int, sign: float) -> np.ndarray:
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



__all__ = ["ROUNDING", "Prover"]
