"""The stability analysis's ReLU-split phase: each open unit's question as one disjunct of
``leo.bab.relu_split.Search`` over the prefix that ends at the unit's layer, before its MILP.

Each node of that search is an LP over the analysis's proven bounds (the triangle relaxation
of the prefix's unstable units, some of them fixed to a phase); a node closes only on a bound
recomputed from the LP's duals. So a unit is stable only when every leaf of its split tree has
such a bound beyond the margin, and a point the search reports counts only when the network's
own forward pass shows the other sign there. A time-out proves nothing either way. It pays on
many inputs, where splitting the input box does not (``leo.stability.branch_phase`` takes the
few-input case), and where an l1-trained network leaves few unstable units before the layer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from leo.bab import input_split, relu_split
from leo.bounds.propagate import LayerBounds
from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.verdicts import Method, Verdict
from leo.stability.report import UnitProof

#: The phase takes at most this share of a layer's time under a budget (the MILPs get the rest) ...
RELU_SHARE = 0.5
#: ... and without a budget at most this many seconds per open unit (capped by the per-solve limit).
RELU_UNIT_SECONDS = 10.0


def unit_seconds(time_limit: float) -> float:
    """Without a budget, the phase's seconds per open unit."""
    return min(time_limit, RELU_UNIT_SECONDS)


def split_units(network: Network, box: Box, k: int, bounds: Sequence[LayerBounds],
                states: Sequence[Sequence[Verdict]], units: np.ndarray, directions: np.ndarray, margin: float,
                deadline: Deadline, per_unit: float) -> tuple[dict[int, UnitProof], np.ndarray]:
    """For each of ``units`` of layer ``k`` (0-based), is ``direction * z >= margin`` on the whole
    box? ``bounds``: proven bounds of layers ``0..k``; ``states``: verdicts of layers ``0..k-1``
    (UNSTABLE where open). Each unit gets an equal share of the time left among the units left
    (at most ``per_unit`` seconds). Returns proofs (bound ``direction * margin``) and the box
    points where the forward pass shows a unit's other sign."""
    sub = input_split.unit_network(network, k + 1)
    sub_states = [tuple(s) for s in states[:k]] + [()]
    proofs: dict[int, UnitProof] = {}
    points: list[np.ndarray] = []
    for i, (j, d) in enumerate(zip(units, directions)):
        seconds = min(per_unit, deadline.left() / (len(units) - i))
        if seconds <= 0:
            break
        a = d * np.eye(sub.output_dim)[[int(j)]]  # unreachable "d * z_j <= margin" proves the sign

        def other_sign(x: np.ndarray, j: int = int(j), d: int = int(d)) -> int | None:
            return 0 if bool(box.contains(x)[0]) and float(d * sub(x[None, :])[0, j]) < 0 else None

        t0 = time.perf_counter()
        search = relu_split.Search(sub, box, list(bounds[:k + 1]), sub_states, a, np.array([margin]), other_sign)
        res = search.run(Deadline.after(seconds))
        if res.status is relu_split.SplitStatus.PROVEN:
            proofs[int(j)] = UnitProof(Verdict.ACTIVE if d > 0 else Verdict.INACTIVE, Method.RELU_SPLIT,
                                       float(d * margin), seconds=time.perf_counter() - t0)
        elif res.status is relu_split.SplitStatus.COUNTEREXAMPLE and res.x is not None:
            points.append(np.asarray(res.x, dtype=np.float64))
    return proofs, np.vstack(points) if points else np.zeros((0, box.dim))
