"""The certificate that ``leo compress`` writes AFTER the compressed model: evidence that
``leo audit`` re-checks, each fact stated once.

Layout (schema 3):

- ``schema``, ``kind``, ``claim``, ``created``; ``tool`` (leo, python, numpy versions) and
  ``solver`` (the MILP solver that made the proofs);
- ``original`` and ``compressed``: path, sha256, hidden widths and parameter count (the
  compressed entry is filled in by :func:`seal` once the file exists);
- ``domain``: the input box;
- ``tolerances``: solver margin, rounding slack, rank tolerance, largest fold residual;
- ``settings``: the other analysis options (time limits, engine, seed, ...);
- ``layers``: per ReLU layer, every unit's verdict, proof method and proven bound;
- ``reduction``: the form (leo, flat, structured) and ``steps``, the reduction's step log
  in the order applied (``leo.reduction.steps``: each ``op`` with its original layer and
  units; a fold with its ``alpha`` combination of ``basis`` rows and its residual), which
  ``leo audit`` replays; then, per layer, what the log did (units removed, folded,
  bypassed; dead channels; merged layers; layers made linear), for readers: the audit
  requires them to equal the log's;
- ``check``: the sampled comparison run before writing.
"""

from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Any

import numpy as np

from leo.queries.equivalence import CheckResult
from leo.io.files import sha256
from leo.core.network import Network
from leo.core.choices import Form
from leo.reduction.reduce import RANK_TOL, Reduction
from leo.stability.report import StabilityReport
from leo.bounds.encoding import DROP_TOL

SCHEMA = 3
KIND = "leo lossless compression certificate"
CLAIM = (
    "For every x in the domain, compressed(x) equals original(x) up to float rounding: "
    "every removed or folded unit is stable on the whole domain by the proof recorded for it."
)
#: Settings stated elsewhere in the certificate (tolerances, solver), so not repeated in ``settings``.
_STATED_ELSEWHERE = ("margin", "rounding_slack", "solver")



def size(network: Network) -> dict[str, Any]:
    return {"hidden": list(network.hidden), "parameters": network.num_parameters}


def hidden_units(entry: dict[str, Any]) -> int:
    """Hidden units of an ``original`` or ``compressed`` entry."""
    return int(sum(entry["hidden"]))


def _text(value: Any) -> str:
    """A verdict or method as its plain name, whether it is a string or an enum."""
    value = getattr(value, "value", value)
    return value if isinstance(value, str) else str(value)


def _layers(report: StabilityReport) -> list[dict[str, Any]]:
    out = []
    for lr in report.layers:
        units = []
        for p in lr.proofs:
            unit: dict[str, Any] = {"verdict": _text(p.verdict), "method": _text(p.method)}
            if p.bound is not None:
                unit["bound"] = float(p.bound)
            units.append(unit)
        out.append({"layer": lr.layer, "units": units})
    return out


def _written(original: Network, reduction: Reduction) -> dict[str, Any]:
    """For the structured form, parameters as written (a conv by its kernels), before and after;
    ``original``/``compressed`` count every entry of the lowered dense matrices."""
    if reduction.form is not Form.STRUCTURED:
        return {}
    from leo.reduction.structured import written_parameters

    return {"parameters_as_written": {"original": written_parameters(original),
                                      "compressed": written_parameters(reduction.network)}}


def _reduction(original: Network, reduction: Reduction) -> dict[str, Any]:
    before, after = sum(original.hidden), sum(reduction.network.hidden)
    return {
        "form": str(reduction.form),
        "steps": reduction.log_json(),
        # what the steps did, per original layer (dead channels' units are in removed_inactive too)
        "removed_inactive": [list(u) for u in reduction.removed_inactive],
        "folded_active": [list(u) for u in reduction.folded_active],
        "bypassed_active": [list(u) for u in reduction.bypassed_active],
        "dead_channels": [list(c) for c in reduction.dead_channels],
        "merged_layers": list(reduction.merged_layers),
        "linear_layers": list(reduction.linear_layers),
        **_written(original, reduction),
        "units_removed": before - after,
        "compression_pct": round(100.0 * (before - after) / max(before, 1), 3),
    }


def _budgets(given: float | None, analysis: Any) -> dict[str, Any]:
    """The budget as the user gave it (``time_budget``, for the whole command) and the share
    the analysis had (``analysis_time_budget``: compress keeps the rest for its sampled check)."""
    if given is None:
        return {}
    return {"time_budget": given, "analysis_time_budget": analysis}


def build_certificate(original: Network, report: StabilityReport, reduction: Reduction,
                      check: CheckResult, model_path: Path | None,
                      time_budget: float | None = None) -> dict[str, Any]:
    """Everything but the compressed file, which does not exist yet (see :func:`seal`).
    ``time_budget``: the budget the user gave for the whole command, when there was one."""
    from leo import __version__

    settings = {k: v for k, v in report.settings.items() if k not in _STATED_ELSEWHERE}
    settings.update(_budgets(time_budget, report.settings.get("time_budget")))
    return {
        "schema": SCHEMA,
        "kind": KIND,
        "lossless": True,
        "claim": CLAIM,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool": {"leo": __version__, "python": platform.python_version(), "numpy": np.__version__},
        "solver": report.settings.get("solver"),
        "original": {"path": str(model_path) if model_path else None,
                     "sha256": sha256(model_path) if model_path and model_path.is_file() else None,
                     "architecture_source": original.metadata.get("architecture_source"), **size(original)},
        "compressed": {"path": None, "sha256": None, **size(reduction.network)},
        "domain": report.box.to_json(),
        "tolerances": {
            "solver_margin": report.settings.get("margin"),
            "rounding_slack": report.settings.get("rounding_slack"),
            "rank_tolerance": RANK_TOL,
            "fold_residual": reduction.max_fold_residual,
            "milp_dropped_weight_below": DROP_TOL,
        },
        "settings": settings,
        "layers": _layers(report),
        "reduction": _reduction(original, reduction),
        "check": {"sampled_points": check.points, "max_abs_diff": check.max_diff},
    }


def seal(certificate: dict[str, Any], compressed_path: Path) -> dict[str, Any]:
    """The certificate naming the compressed file, which must be written already."""
    compressed = {**certificate["compressed"], "path": str(compressed_path), "sha256": sha256(compressed_path)}
    return {**certificate, "compressed": compressed}
