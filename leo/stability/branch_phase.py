"""The stability analysis's input-splitting phase: the open units of one ReLU layer as the
disjuncts of one ``leo.bab.input_split.search_each`` tree, before the MILPs.

A unit is stable only when every leaf's sound bound clears the margin; a point the search
finds (in-leaf attack) counts only by the network's own forward pass; a time-out proves
nothing either way."""

from __future__ import annotations

import time

import numpy as np

from leo.core.deadline import Deadline

from leo.bab import input_split
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.verdicts import Method, Verdict
from leo.stability.report import UnitProof

#: The phase takes at most this share of a layer's time (the MILPs get the rest), and without
#: a budget at most BRANCH_UNIT_SECONDS per open unit (capped by the per-solve time limit).
BRANCH_SHARE = 0.5
BRANCH_UNIT_SECONDS = 2.0


def unit_seconds(time_limit: float) -> float:
    """Without a budget, the phase's seconds per open unit: BRANCH_UNIT_SECONDS, at most the
    per-solve ``time_limit``."""
    return min(time_limit, BRANCH_UNIT_SECONDS)


def branch_units(sub: Network, box: Box, units: np.ndarray, directions: np.ndarray, margin: float,
                 seconds: float) -> tuple[dict[int, UnitProof], np.ndarray]:
    """The questions "is ``direction * z_j >= margin`` on the whole box?" for ``units`` of
    ``sub`` (the prefix whose outputs are the layer's pre-activations), one disjunct each:
    proofs (bound ``direction * margin``) of the units excluded on every leaf, and the box
    points where the forward pass shows ``direction * z_j < 0``. Units in neither stay open."""
    goal = input_split.property_goal([(d * np.eye(sub.output_dim)[[j]], np.array([margin]))  # unsafe: d*z <= margin
                                      for j, d in zip(units, directions)])

    def other_sign(x: np.ndarray, i: int) -> bool:
        return bool(box.contains(x)[0]) and float(directions[i] * sub(x[None, :])[0, units[i]]) < 0

    t0 = time.perf_counter()
    res = input_split.search_each(sub, box, goal, Deadline.after(seconds), confirm=other_sign)
    took = time.perf_counter() - t0
    proofs = {int(units[i]): UnitProof(Verdict.ACTIVE if directions[i] > 0 else Verdict.INACTIVE, Method.BRANCH,
                                       float(directions[i] * margin), seconds=took) for i in sorted(res.proven)}
    points = np.vstack(list(res.found.values())) if res.found else np.zeros((0, box.dim))
    return proofs, points
