"""The certificate that ``leo compress`` writes beside the compressed model: the
domain, every unit's verdict and the proof behind it, the tolerances, and sizes."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

from leo.equivalence import CheckResult
from leo.network import Network
from leo.reduce import RANK_TOL, Reduction
from leo.report import StabilityReport
from solvers.formulation import DROP_TOL

CLAIM = (
    "For every x in the domain, compressed(x) equals original(x) up to float rounding: "
    "every removed or folded unit is stable on the whole domain by the proof recorded for it."
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def size(network: Network) -> dict[str, Any]:
    return {"hidden": list(network.hidden), "hidden_units": int(sum(network.hidden)),
            "layers": len(network.layers), "parameters": network.num_parameters}


def build_certificate(original: Network, report: StabilityReport, reduction: Reduction,
                      check: CheckResult, model_path: Path | None, out_path: Path | None) -> dict[str, Any]:
    from leo import __version__

    before, after = size(original), size(reduction.network)
    removed = before["hidden_units"] - after["hidden_units"]
    return {
        "kind": "leo lossless compression certificate",
        "lossless": True,
        "claim": CLAIM,
        "leo_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "original": {"path": str(model_path) if model_path else None,
                     "sha256": sha256(model_path) if model_path and model_path.is_file() else None, **before},
        "compressed": {"path": str(out_path) if out_path else None, **after},
        "domain": report.box.to_json(),
        "tolerances": {
            "solver_margin": report.settings.get("margin"),
            "solver_margin_meaning": "a MILP/LP bound proves a sign only when it clears 0 by this margin; "
                                     "MILPs get the margin as an objective cutoff, so a proof is either a dual "
                                     "bound at the margin or a search that found nothing below it",
            "interval_rounding_slack": report.settings.get("rounding_slack"),
            "rank_tolerance": RANK_TOL,
            "milp_dropped_weight_below": DROP_TOL,
            "milp_dropped_weight_meaning": "smaller weights leave the MILP rows, which widen by the range of "
                                           "the dropped terms over the variables' bounds (a relaxation: proofs "
                                           "stay valid)",
            "max_fold_residual": reduction.max_fold_residual,
        },
        "solver": report.settings.get("solver"),
        "settings": report.settings,
        "reduction": {
            "removed_inactive": [list(u) for u in reduction.removed_inactive],
            "folded_active": [list(u) for u in reduction.folded_active],
            "merged_layers": list(reduction.merged_layers),
            "units_removed": removed,
            "compression_pct": round(100.0 * removed / max(before["hidden_units"], 1), 3),
        },
        "sizes": {"before": before, "after": after},
        "check": {"sampled_points": check.points, "max_abs_diff": check.max_diff,
                  "equivalent": check.equivalent},
        "analysis": report.to_json(),
    }
