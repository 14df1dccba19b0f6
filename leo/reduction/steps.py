"""The reduction's step log: every edit the reduction made, in order, as typed data.

A step names its layer by the original network's 1-based index and its units by their
original indices, so the log reads against the original network whatever was deleted or
merged before it. The certificate serialises the log (``to_json``) and ``leo audit``
replays it with its own interpreter, checking each step against the stable claims: the
log is the evidence, and the per-layer lists a ``Reduction`` gives are read from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from leo.core.choices import Form
from leo.core.network import Network


class Op(enum.StrEnum):
    """What a step does (its ``op`` in the certificate)."""

    DELETE = "delete"  # stably inactive units: zero on the box
    DROP_CHANNELS = "drop-channels"  # whole conv channels, every unit stably inactive
    FOLD = "fold"  # stably active units whose rows combine other active rows
    BYPASS = "bypass"  # stably active units routed past their ReLU (skip connections)
    MERGE = "merge"  # a linear layer multiplied into the layers reading it
    DROP_RELU = "drop-relu"  # a hidden layer whose units left are all stably active keeps no ReLU
    FINAL_RELU = "final-relu"  # the output layer's ReLU: inactive outputs zeroed, dropped when all active


@dataclass(frozen=True)
class DeleteUnits:
    """Units of ``layer`` claimed stably inactive, deleted with the columns reading them."""

    op: ClassVar[Op] = Op.DELETE
    layer: int
    units: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": str(self.op), "layer": self.layer, "units": list(self.units)}


@dataclass(frozen=True)
class DropChannels:
    """Output channels of conv ``layer`` deleted whole: units ``c * per_channel + j``."""

    op: ClassVar[Op] = Op.DROP_CHANNELS
    layer: int
    channels: tuple[int, ...]
    per_channel: int

    @property
    def units(self) -> tuple[int, ...]:
        return tuple(c * self.per_channel + j for c in self.channels for j in range(self.per_channel))

    def to_json(self) -> dict[str, Any]:
        return {"op": str(self.op), "layer": self.layer, "channels": list(self.channels),
                "units_per_channel": self.per_channel}


@dataclass(frozen=True)
class Fold:
    """In ``layer``, the weight rows of ``units`` equal ``alpha.T`` times the rows of ``basis``
    up to ``residual`` (max |B^T alpha - D^T|), over the layer's weights at the time of the
    fold; the readers take ``h_units = alpha.T h_basis + offset`` and the units go."""

    op: ClassVar[Op] = Op.FOLD
    layer: int
    units: tuple[int, ...]
    basis: tuple[int, ...]
    alpha: tuple[tuple[float, ...], ...]  # (|basis|, |units|)
    residual: float

    def to_json(self) -> dict[str, Any]:
        return {"op": str(self.op), "layer": self.layer, "units": list(self.units), "basis": list(self.basis),
                "alpha": [list(row) for row in self.alpha], "residual": self.residual}


@dataclass(frozen=True)
class Bypass:
    """Units of ``layer`` claimed stably active: readers read their affine map from the
    layer's own sources instead, and the units go."""

    op: ClassVar[Op] = Op.BYPASS
    layer: int
    units: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": str(self.op), "layer": self.layer, "units": list(self.units)}


@dataclass(frozen=True)
class Merge:
    """``layer`` is linear on the box (no ReLU, or every unit left stably active): it is
    multiplied into the layers that read it and goes."""

    op: ClassVar[Op] = Op.MERGE
    layer: int

    def to_json(self) -> dict[str, Any]:
        return {"op": str(self.op), "layer": self.layer}


@dataclass(frozen=True)
class DropRelu:
    """Hidden ``layer`` keeps its units but not its ReLU: every unit left is stably active."""

    op: ClassVar[Op] = Op.DROP_RELU
    layer: int

    def to_json(self) -> dict[str, Any]:
        return {"op": str(self.op), "layer": self.layer}


@dataclass(frozen=True)
class FinalRelu:
    """The output layer keeps its units: those stably inactive become constant zero (row
    and bias zeroed); when every output is stably active the ReLU goes (``dropped``)."""

    op: ClassVar[Op] = Op.FINAL_RELU
    layer: int
    zeroed: tuple[int, ...]
    dropped: bool

    def to_json(self) -> dict[str, Any]:
        return {"op": str(self.op), "layer": self.layer, "zeroed": list(self.zeroed), "dropped": self.dropped}


Step = DeleteUnits | DropChannels | Fold | Bypass | Merge | DropRelu | FinalRelu

#: The steps that remove units, each with the per-layer list it feeds.
_REMOVES_INACTIVE = (DeleteUnits, DropChannels)


@dataclass(frozen=True)
class Reduction:
    """The reduced network and the step log that made it from the original network."""

    network: Network
    steps: tuple[Step, ...]
    layers: int  # layers of the original network
    form: Form = Form.LEO
    #: per layer of ``network``: the original index of each unit it kept
    kept: tuple[tuple[int, ...], ...] = field(default=())

    def _per_layer(self, kinds: tuple[type, ...]) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[] for _ in range(self.layers)]
        for step in self.steps:
            if isinstance(step, kinds):
                out[step.layer - 1] += step.units
        return tuple(tuple(sorted(u)) for u in out)

    @property
    def removed_inactive(self) -> tuple[tuple[int, ...], ...]:
        """Per original layer, the units deleted as stably inactive (dead channels' too)."""
        return self._per_layer(_REMOVES_INACTIVE)

    @property
    def folded_active(self) -> tuple[tuple[int, ...], ...]:
        return self._per_layer((Fold,))

    @property
    def bypassed_active(self) -> tuple[tuple[int, ...], ...]:
        return self._per_layer((Bypass,))

    @property
    def dead_channels(self) -> tuple[tuple[int, ...], ...]:
        """Per original layer, the 0-based conv output channels deleted whole."""
        out: list[list[int]] = [[] for _ in range(self.layers)]
        for step in self.steps:
            if isinstance(step, DropChannels):
                out[step.layer - 1] += step.channels
        return tuple(tuple(sorted(c)) for c in out)

    @property
    def merged_layers(self) -> tuple[int, ...]:
        """Original 1-based layers multiplied into the next, in the order they went."""
        return tuple(s.layer for s in self.steps if isinstance(s, Merge))

    @property
    def linear_layers(self) -> tuple[int, ...]:
        """Original hidden layers kept without their ReLU (every unit left stably active)."""
        return tuple(s.layer for s in self.steps if isinstance(s, DropRelu))

    @property
    def folds(self) -> tuple[Fold, ...]:
        return tuple(s for s in self.steps if isinstance(s, Fold))

    @property
    def max_fold_residual(self) -> float:
        return max((f.residual for f in self.folds), default=0.0)

    def log_json(self) -> list[dict[str, Any]]:
        """The step log as the certificate writes it."""
        return [step.to_json() for step in self.steps]
