"""What the analysis says about a unit, and what that rests on, as types.

Both are ``StrEnum``: a member *is* its string ("active", "milp", ...), so JSON,
certificates, ``leo audit`` and string comparisons elsewhere see the same values as
before, while code that makes a verdict can only make one that exists.
"""

from __future__ import annotations

import enum


class Verdict(enum.StrEnum):
    """A unit's sign over the box: stably active (z >= 0), stably inactive (z <= 0), or
    unstable (seen with both signs, or not proven either way)."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    UNSTABLE = "unstable"


class Method(enum.StrEnum):
    """What decided a unit (the certificate's and the report's ``method``)."""

    # proven bounds (stable units)
    INTERVAL = "interval"  # interval arithmetic
    SYMBOLIC = "symbolic"  # symbolic back-substitution
    LP = "lp"  # LP-relaxation bounds of an earlier layer (--lp-bounds), widened by LP_SLACK
    LP_SYMBOLIC = "lp-symbolic"  # symbolic bounds recomputed over LP-tightened earlier layers
    LP_CUTS = "lp-cuts"  # the LP relaxation with ideal-formulation cuts
    MILP = "milp"  # the per-unit MILP
    MILP_NETWORK = "milp-network"  # the network-wide MILP
    BRANCH = "branch"  # input-splitting branch and bound with CROWN bounds (leo.bab.input_split), beyond the margin
    RELU_SPLIT = "relu-split"  # ReLU-split branch and bound with safe LP dual bounds (leo.bab.relu_split), beyond the margin
    # witness pairs (unstable units, shown by the forward pass)
    WITNESS = "witness"  # box samples, data, local search
    MILP_WITNESS = "milp-witness"  # MILP incumbents, LP optima and the local search from them
    SEARCH = "search"  # a crossing found by the neighbourhood search (leo.search.neighbourhood)
    # not proven either way (kept: unstable as far as we know)
    NOT_PROVEN = "not-proven"  # the solve ended with its bound within the margin
    TIMEOUT = "timeout"  # the solve hit its time limit
    BUDGET = "budget"  # the analysis's time budget ran out first

