"""The per-unit engine (LEO 2020): per ReLU layer, one persistent model of the network
prefix; each open unit gets one solve that asks only the question its witnesses left
open and stops as soon as that is answered. Incumbents found on the way are witness
candidates for the other units.

``solve_layer`` takes an immutable ``LayerProblem`` and returns a ``LayerResult``; the
orchestrator (``leo.stability.analysis``) turns the points into witnesses and merges."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leo.bounds.encoding import build_prefix
from leo.stability.parallel import run_chunks
from leo.stability.prove import Task, TaskResult
from leo.stability.report import UnitProof
from leo.stability.stages import Counts, LayerProblem, LayerResult
from leo.core.verdicts import Method, Verdict


def solve_layer(problem: LayerProblem, on_result: Callable[[TaskResult], None] | None = None) -> LayerResult:
    """One early-stopped solve per open unit of ``problem`` on the prefix model ending at
    its layer. A proven unit gets its proof; every other one a fallback verdict should no
    witness decide it: unstable as far as we know, by Method.TIMEOUT, NOT_PROVEN, or
    BUDGET (the time budget ran out before its solve could start). ``on_result`` sees each task's
    result as it comes (progress)."""
    p = problem
    encoding = build_prefix(p.network, p.box, p.bounds, p.states, p.layer)
    warm = encoding.num_binaries > 0
    tasks = [Task(int(j), int(d), x if warm else None) for j, d, x in zip(p.units, p.directions, p.starts)]
    results = run_chunks(p.network, encoding, p.layer, tasks, p.options, p.deadline, on_result)
    proofs: dict[int, UnitProof] = {}
    fallback: dict[int, UnitProof] = {}
    for r in results:
        if r.proven:
            verdict = Verdict.ACTIVE if r.direction > 0 else Verdict.INACTIVE
            proofs[r.unit] = UnitProof(verdict, r.how, float(r.direction * r.bound), seconds=r.seconds)
        else:
            why = Method.BUDGET if r.how is Method.BUDGET else Method.TIMEOUT if r.timed_out else Method.NOT_PROVEN
            fallback[r.unit] = UnitProof(Verdict.UNSTABLE, why, seconds=r.seconds)
    found = [np.vstack(r.points) for r in results if r.points]
    points = np.vstack(found) if found else np.zeros((0, p.box.dim))
    counts = sum((r.counts for r in results), Counts())
    return LayerResult(proofs, fallback, points, counts)
