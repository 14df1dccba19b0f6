"""The soak's checks of one network: stable claims against sampled points and exact
ranges, and a compressed network's outputs against the original's (see ``benchmarks.soak``)."""

from __future__ import annotations

from typing import Any

import numpy as np

CLAIM_RTOL = 1e-7
ROUNDING_RTOL = 1e-12  # a violation below this x scale is within float64 rounding of the sum
OUTPUT_RTOL = 1e-6


def _eval_network(network: Any, x: np.ndarray) -> np.ndarray:
    """The compressed network's output by a plain loop over its layers (skip sources included)."""
    outs = [np.atleast_2d(x)]
    for layer in network.layers:
        z = layer.bias + sum(outs[s] @ np.asarray(w).T for s, w in layer.weights.items())
        outs.append(np.maximum(z, 0.0) if layer.relu else z)
    return outs[-1]


def _check_claims(out: Any, report: Any, zs: list[np.ndarray], sizes: list[np.ndarray],
                  exact: Any, pts: np.ndarray) -> None:
    for k, layer_report in enumerate(report.layers):
        z, scale = zs[k], 1.0 + sizes[k].max(axis=0)
        tol = CLAIM_RTOL * scale
        for claim, units, bad_side in (("active", layer_report.active, -1.0), ("inactive", layer_report.inactive, 1.0)):
            for j in units:
                out.claims += 1
                out.claimed_active += claim == "active"
                out.claimed_inactive += claim == "inactive"
                worst = int(np.argmax(bad_side * z[:, j]))
                found = {"layer": k + 1, "unit": j, "claim": claim, "z": float(z[worst, j]), "tol": float(tol[j]),
                         "x": pts[worst].tolist()}
                if bad_side * z[worst, j] > tol[j]:
                    out.false_claims.append(found)
                elif bad_side * z[worst, j] > ROUNDING_RTOL * scale[j]:
                    out.small_violations.append(found)
                elif exact is not None:
                    bound = exact.lower[k][j] if claim == "active" else exact.upper[k][j]
                    if bad_side * bound > tol[j]:
                        out.lp_unconfirmed.append({"layer": k + 1, "unit": j, "claim": claim,
                                                   "lp_bound": float(bound), "tol": float(tol[j])})
        if exact is not None:
            for j in layer_report.unstable:
                if exact.lower[k][j] > tol[j] or exact.upper[k][j] < -tol[j]:
                    out.incomplete += 1


def _check_outputs(out: Any, compressed: Any, pts: np.ndarray, y: np.ndarray, y_size: np.ndarray) -> None:
    g = _eval_network(compressed, pts)
    tol = OUTPUT_RTOL * (1.0 + y_size.max())
    diff = np.abs(g - y).max(axis=1)
    worst = int(np.argmax(diff))
    if diff[worst] > tol:
        out.mismatches.append({"max_diff": float(diff[worst]), "tol": float(tol), "x": pts[worst].tolist(),
                               "points_over": int((diff > tol).sum())})
