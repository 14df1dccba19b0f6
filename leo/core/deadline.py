"""When work must stop: one type on one clock (``time.monotonic``) for every budget.

A deadline is a point on the monotonic clock, or none. Strategies take one and hand
shares of what is left to the steps they run, so a budget given on the command line bounds
the whole command whatever runs inside it; a wall-clock jump cannot stretch or cut it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


def now() -> float:
    """The clock every deadline is on."""
    return time.monotonic()


@dataclass(frozen=True)
class Deadline:
    """``at`` on ``now()``'s clock; None: no deadline (work stops on its own limits)."""

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """The deadline ``seconds`` from now (None or inf: none)."""
        if seconds is None or math.isinf(seconds):
            return cls(None)
        return cls(now() + max(float(seconds), 0.0))

    @classmethod
    def never(cls) -> Deadline:
        return cls(None)

    @property
    def bounded(self) -> bool:
        return self.at is not None

    def left(self) -> float:
        """Seconds until the deadline, never negative; inf when there is none."""
        return math.inf if self.at is None else max(self.at - now(), 0.0)

    def passed(self) -> bool:
        return self.at is not None and now() >= self.at

    def share(self, fraction: float, floor: float = 0.0) -> Deadline:
        """A deadline a ``fraction`` of what is left away (at least ``floor`` seconds, never
        beyond this one): a step's slice of a budget."""
        if self.at is None:
            return self
        return self.cap(max(fraction * self.left(), floor))

    def cap(self, seconds: float | None) -> Deadline:
        """The earlier of this deadline and ``seconds`` from now."""
        return self.earliest(Deadline.after(seconds))

    def earliest(self, other: Deadline) -> Deadline:
        if other.at is None:
            return self
        if self.at is None:
            return other
        return Deadline(min(self.at, other.at))

    def limit(self, seconds: float) -> float:
        """A per-solve time limit: ``seconds``, or less when the deadline comes first."""
        return min(seconds, self.left())
