"""What the stability analysis found and why: one proof per unit."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from leo.bounds.propagate import LayerBounds
from leo.core.domain import Box
from leo.core.verdicts import Method, Verdict

if TYPE_CHECKING:
    from leo.core.network import Network

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

    def to_json(self, renumber: Mapping[int, int] | None = None) -> dict[str, Any]:
        """``renumber``: old witness index -> index in the written points (see ``StabilityReport.to_json``)."""
        out: dict[str, Any] = {"status": str(self.verdict), "method": str(self.method)}
        if self.bound is not None:
            out["bound"] = float(self.bound)
        if self.witness is not None:
            out["witness"] = [renumber[i] if renumber is not None else i for i in self.witness]
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
    #: per-sample shape of the layer's output, e.g. (C, H, W) for a conv layer (unit j is
    #: the flat row-major index); None when not known (a flat layer's is (width,))
    shape: tuple[int, ...] | None = None
    #: the op this ReLU layer was lowered from when it is not a hidden layer of the user's
    #: network (``"MaxPool"``: max(a, b) = a + relu(b - a)); None for the user's own layers
    internal: str | None = None
    #: the layer's number among the user's hidden layers (1-based, internal layers skipped),
    #: which is how people count them; None when not known (see ``StabilityReport.with_shapes``)
    hidden: int | None = None

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
    def proven_unstable(self) -> list[int]:
        """Unstable units with a witness pair: both signs seen, by forward passes."""
        return [j for j, p in enumerate(self.proofs) if p.verdict == UNSTABLE and p.witness is not None]

    @property
    def unproven(self) -> list[int]:
        """Units not proven either way (a time-out, the budget, a bound within the margin):
        kept as if unstable, so compression stays exact, but not shown unstable."""
        return [j for j, p in enumerate(self.proofs) if p.verdict == UNSTABLE and p.witness is None]

    @property
    def name(self) -> str:
        """How reports number the layer: its hidden-layer number when known."""
        return str(self.hidden if self.hidden is not None else self.layer)

    @property
    def states(self) -> list[Verdict]:
        return [Verdict(p.verdict) for p in self.proofs]

    @property
    def shape_text(self) -> str:
        """The shape as people write it: "8x14x14" for a conv layer, "64" for a dense one."""
        return "x".join(str(d) for d in (self.shape or (self.width,)))

    def channels(self) -> list[dict[str, int]] | None:
        """Per channel of a (C, ...)-shaped layer, how many of its units are stably active,
        stably inactive and unstable, and of the unstable how many are ``open`` (not proven
        either way: no witness pair); None for a flat layer."""
        if self.shape is None or len(self.shape) < 2:
            return None
        per = self.width // self.shape[0]
        out = []
        for c in range(self.shape[0]):
            mine = self.proofs[c * per:(c + 1) * per]
            counts = {str(v): sum(p.verdict == v for p in mine) for v in (ACTIVE, INACTIVE, UNSTABLE)}
            counts["open"] = sum(p.verdict == UNSTABLE and p.witness is None for p in mine)
            out.append({"channel": c, "units": per, **counts})
        return out

    def channel_line(self) -> str | None:
        """The channels folded into one line (None for a flat layer): the dead ones (every
        unit stably inactive: the channel is zero on the whole box) and the all-active ones."""
        channels = self.channels()
        if channels is None:
            return None
        dead = [c["channel"] for c in channels if c["inactive"] == c["units"]]
        active = [c["channel"] for c in channels if c["active"] == c["units"]]
        mixed = len(channels) - len(dead) - len(active)
        return (f"layer {self.name} ({self.shape_text}), {len(channels)} channels: dead channels: "
                f"{_runs(dead)}; all-active channels: {_runs(active)}; {mixed} mixed")

    def methods(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.proofs:
            counts[str(p.method)] = counts.get(str(p.method), 0) + 1
        return counts

    def to_json(self, renumber: Mapping[int, int] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer": self.layer,
            "units": self.width,
            "shape": list(self.shape or (self.width,)),
            "active": self.active,
            "inactive": self.inactive,
            "unstable": self.unstable,
            "proven_unstable": self.proven_unstable,
            "unproven": self.unproven,
            "hidden_layer": self.hidden,
            "internal": self.internal,
            "seconds": round(self.seconds, 4),
            "solves": self.solves,
            "lps": self.lps,
            "milps": self.milps,
            "nodes": self.nodes,
            "methods": self.methods(),
            "proofs": [p.to_json(renumber) for p in self.proofs],
        }
        channels = self.channels()
        if channels is not None:
            out["channels"] = channels
        return out


#: Ops a reader lowers to ReLU layers that are not hidden layers of the user's network.
INTERNAL_OPS = ("MaxPool",)


def internal_op(layer: Any) -> str | None:
    """The op a ReLU layer was lowered from when that op is not a ReLU layer of the user's
    (``Layer.structure["op"]`` in ``INTERNAL_OPS``), else None."""
    op = (layer.structure or {}).get("op") if layer.relu else None
    return op if op in INTERNAL_OPS else None


def _runs(indices: list[int]) -> str:
    """Sorted indices with consecutive runs folded: [0, 1, 2, 5] -> "0-2, 5"; "none" if empty."""
    parts: list[str] = []
    for i in indices:
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ", ".join(parts) or "none"


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

    #: Layers listed by ``str(report)``; a deep network's summary stays a screenful.
    SHOWN_LAYERS = 12

    def __repr__(self) -> str:
        """One line: the dataclass's own repr printed every proof and bound (tens of KB)."""
        units = sum(r.width for r in self.layers)
        return (f"<StabilityReport: {len(self.layers)} ReLU layers, {self.num_stable} of {units} units stable, "
                f"{self.num_unproven} not proven either way, {self.seconds:.2f} s>")

    def __str__(self) -> str:
        """A short summary per layer; ``to_json()`` has every unit's proof."""
        lines = [repr(self)]
        for r in self.layers[:self.SHOWN_LAYERS]:
            lines.append(f"  layer {r.name} ({r.shape_text}): {len(r.active)} active, {len(r.inactive)} inactive, "
                         f"{len(r.proven_unstable)} unstable, {len(r.unproven)} not proven")
        if len(self.layers) > self.SHOWN_LAYERS:
            lines.append(f"  ... {len(self.layers) - self.SHOWN_LAYERS} more layers (report.layers)")
        return "\n".join(lines)

    def with_shapes(self, network: Network) -> StabilityReport:
        """A copy whose layers know their shapes, read from the analysed ``network`` (layer
        ``k`` of the report is ``network.layers[k - 1]``), so the report can group units by
        channel (a layer whose shape is already set keeps it), and which of them are the
        user's hidden layers (numbered 1, 2, ...) and which a reader made for another op
        (``internal``: a MaxPool's ReLU layers, which the user never wrote)."""
        layers, hidden = [], 0
        for lr in self.layers:
            source = network.layers[lr.layer - 1]
            internal = internal_op(source)
            if internal is None:
                hidden += 1
            layers.append(replace(lr, shape=lr.shape if lr.shape is not None else source.shape, internal=internal,
                                  hidden=None if internal is not None else hidden))
        return replace(self, layers=tuple(layers))

    def layer(self, index: int) -> LayerReport | None:
        """The report for network layer ``index`` (1-based), if it is a ReLU layer."""
        return next((r for r in self.layers if r.layer == index), None)

    def to_json(self, witnesses: bool = True) -> dict[str, Any]:
        """The report as JSON data. With ``witnesses``, ``witness_points`` holds each point some
        proof refers to, once (equal points merged; proofs' ``witness`` indices renumbered to
        match), one flat input a row, as exact float64 bytes (see :func:`encode_points`): as decimal lists,
        the points of a 9,508-unit CNN made a 42 MiB report that took seconds to write."""
        renumber, rows = self._witness_rows() if witnesses else (None, [])
        out: dict[str, Any] = {
            "domain": self.box.to_json(),
            "settings": self.settings,
            "seconds": round(self.seconds, 4),
            "solves": self.solves,
            "lps": self.lps,
            "milps": self.milps,
            "nodes": self.nodes,
            "layers": [layer.to_json(renumber) for layer in self.layers],
        }
        if witnesses:
            points = self.witness_points[rows] if rows else np.zeros((0, self.box.dim))
            out["witness_points"] = encode_points(points)
        return out

    def _witness_rows(self) -> tuple[dict[int, int], list[int]]:
        """Which rows of ``witness_points`` to write (the used ones, one per distinct point, in
        index order, so a compacted report keeps its indices) and where each used index lands."""
        used = sorted({i for lr in self.layers for p in lr.proofs for i in p.witness or ()})
        renumber: dict[int, int] = {}
        rows: list[int] = []
        seen: dict[bytes, int] = {}
        for i in used:
            key = np.asarray(self.witness_points[i], dtype="<f8").tobytes()
            if key not in seen:
                seen[key] = len(rows)
                rows.append(i)
            renumber[i] = seen[key]
        return renumber, rows


#: How to read ``witness_points`` back, written into the JSON next to the data.
DECODE_POINTS = 'numpy.frombuffer(base64.b64decode(w["base64"]), dtype="<f8").reshape(w["shape"])'


def encode_points(points: np.ndarray) -> dict[str, Any]:
    """Points as JSON: their little-endian float64 bytes, row-major, in base64. Exact (every bit
    round-trips, so a witness stays a witness), 10.7 characters a number against ~20 as decimal
    text, and written in milliseconds. Read back with ``DECODE_POINTS``::

        numpy.frombuffer(base64.b64decode(w["base64"]), dtype="<f8").reshape(w["shape"])
    """
    data = np.ascontiguousarray(points, dtype="<f8")
    return {"dtype": "float64", "byteorder": "little", "shape": list(data.shape),
            "decode": DECODE_POINTS, "base64": base64.b64encode(data.tobytes()).decode("ascii")}
