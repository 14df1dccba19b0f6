"""What the stability analysis found and why: one proof per unit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leo.bounds import LayerBounds
from leo.domain import Box
from leo.verdicts import Method, Verdict

#: The verdicts by their old names (they compare equal to the strings "active", ...).
ACTIVE, INACTIVE, UNSTABLE = Verdict.ACTIVE, Verdict.INACTIVE, Verdict.UNSTABLE


@dataclass(frozen=True)
class UnitProof:
    """The verdict on one unit and what it rests on.

    ``bound`` is the proven minimum of z (active) or maximum (inactive); for an
    unstable unit ``witness`` holds indices of two points (z > 0, z < 0) into the
    report's ``witness_points``, or None when the unit is only "not proven stable"
    (a time-out, or a bound that stopped within the safety margin).
    """

    verdict: Verdict
    method: Method
    bound: float | None = None
    witness: tuple[int, int] | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": str(self.verdict), "method": str(self.method)}
        if self.bound is not None:
            out["bound"] = float(self.bound)
        if self.witness is not None:
            out["witness"] = list(self.witness)
        if self.seconds:
            out["seconds"] = round(self.seconds, 4)
        return out


@dataclass(frozen=True)
class LayerReport:
    layer: int  # 1-based index of the layer in the network
    proofs: tuple[UnitProof, ...]
    bounds: LayerBounds
    seconds: float
    lps: int = 0  # LP solves HiGHS ran for this layer (cut loops, --lp-bounds, region walks)
    milps: int = 0  # MILP solves (per unit, neighbourhood searches, network-wide re-solves)
    nodes: int = 0  # branch-and-bound nodes of those MILPs

    @property
    def solves(self) -> int:
        """Every solve run: LPs and MILPs."""
        return self.lps + self.milps

    def _units(self, verdict: str) -> list[int]:
        return [j for j, p in enumerate(self.proofs) if p.verdict == verdict]

    @property
    def width(self) -> int:
        return len(self.proofs)

    @property
    def active(self) -> list[int]:
        return self._units(ACTIVE)

    @property
    def inactive(self) -> list[int]:
        return self._units(INACTIVE)

    @property
    def unstable(self) -> list[int]:
        return self._units(UNSTABLE)

    @property
    def states(self) -> list[Verdict]:
        return [Verdict(p.verdict) for p in self.proofs]

    def methods(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.proofs:
            counts[str(p.method)] = counts.get(str(p.method), 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "units": self.width,
            "active": self.active,
            "inactive": self.inactive,
            "unstable": self.unstable,
            "seconds": round(self.seconds, 4),
            "solves": self.solves,
            "lps": self.lps,
            "milps": self.milps,
            "nodes": self.nodes,
            "methods": self.methods(),
            "proofs": [p.to_json() for p in self.proofs],
        }


@dataclass(frozen=True)
class StabilityReport:
    """Per ReLU layer, the verdict and proof of every unit."""

    box: Box
    layers: tuple[LayerReport, ...]
    witness_points: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: proven bounds of every layer of the network (linear ones too), in order, so later
    #: stages (MILP encodings, check --exact, property) reuse them instead of recomputing;
    #: empty for a report built by hand
    all_bounds: tuple[LayerBounds, ...] = ()

    @property
    def solves(self) -> int:
        """Every LP and MILP solve run."""
        return sum(layer.solves for layer in self.layers)

    @property
    def lps(self) -> int:
        return sum(layer.lps for layer in self.layers)

    @property
    def milps(self) -> int:
        return sum(layer.milps for layer in self.layers)

    @property
    def nodes(self) -> int:
        return sum(layer.nodes for layer in self.layers)

    @property
    def num_stable(self) -> int:
        return sum(len(r.active) + len(r.inactive) for r in self.layers)

    @property
    def num_unproven(self) -> int:
        """Units called unstable without a witness pair: not proven either way (a time-out,
        the budget, or a bound within the margin). They are kept, so compression stays exact."""
        return sum(1 for r in self.layers for p in r.proofs if p.verdict == UNSTABLE and p.witness is None)

    def layer(self, index: int) -> LayerReport | None:
        """The report for network layer ``index`` (1-based), if it is a ReLU layer."""
        return next((r for r in self.layers if r.layer == index), None)

    def to_json(self, witnesses: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "domain": self.box.to_json(),
            "settings": self.settings,
            "seconds": round(self.seconds, 4),
            "solves": self.solves,
            "lps": self.lps,
            "milps": self.milps,
            "nodes": self.nodes,
            "layers": [layer.to_json() for layer in self.layers],
        }
        if witnesses:
            out["witness_points"] = self.witness_points.tolist()
        return out
