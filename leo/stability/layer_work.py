"""The verdicts of one ReLU layer while the orchestrator (``leo.stability.analysis``) collects
them: private to the orchestrator, engines never see it. Each phase settles only units still
open, so a verdict, once given, is never replaced."""

from __future__ import annotations

import time

import numpy as np

from leo.bounds.propagate import LayerBounds
from leo.core.verdicts import Method, Verdict
from leo.search.witnesses import Witnesses
from leo.stability.report import LayerReport, UnitProof
from leo.stability.stages import Counts, Phase, Progress, ProgressFn


class LayerWork:
    """One ReLU layer's bounds, verdicts so far (None: open), counts and current phase. Every
    unit starts open, the bounds too decide only in ``decide_by_bounds``."""

    def __init__(self, k: int, bounds: LayerBounds, started: float | None = None) -> None:
        self.k = k
        self.bounds = bounds
        #: when the layer's work began (its bounds included): its report's seconds count from here
        self.started = time.perf_counter() if started is None else started
        self.counts = Counts()
        self.phase = Phase.BOUNDS
        self.proofs: list[UnitProof | None] = [None] * bounds.lower.size

    @property
    def width(self) -> int:
        return len(self.proofs)

    def retighten(self, bounds: LayerBounds) -> None:
        """Take tighter bounds (after earlier layers were tightened); decide what they decide."""
        self.bounds = self.bounds.tightened(bounds.lower, bounds.upper, Method.LP_SYMBOLIC)
        self.decide_by_bounds()

    def decide_by_bounds(self) -> None:
        """Open units whose bounds do not cross 0 are stable, by the method of that bound."""
        b = self.bounds
        for j in self.open_units():
            if b.lower[j] >= 0:
                self.proofs[j] = UnitProof(Verdict.ACTIVE, Method(b.lower_method[j]), float(b.lower[j]))
            elif b.upper[j] <= 0:
                self.proofs[j] = UnitProof(Verdict.INACTIVE, Method(b.upper_method[j]), float(b.upper[j]))

    def open_units(self) -> np.ndarray:
        return np.array([j for j, p in enumerate(self.proofs) if p is None], dtype=int)

    def states(self) -> tuple[Verdict, ...]:
        """Per unit its verdict so far, UNSTABLE while open (it keeps its binary)."""
        return tuple(Verdict.UNSTABLE if p is None else p.verdict for p in self.proofs)

    def mark_witnessed(self, wit: Witnesses, method: Method = Method.WITNESS) -> None:
        """Units seen with both signs are unstable, with the two points as proof."""
        zmax, amax, zmin, amin = wit.signs(self.k)
        for j in self.open_units():
            if zmax[j] > 0 and zmin[j] < 0:
                self.proofs[j] = UnitProof(Verdict.UNSTABLE, method, witness=(int(amax[j]), int(amin[j])))

    def settle(self, proofs: dict[int, UnitProof]) -> None:
        """Take the verdicts of ``proofs`` for the units still open."""
        for j, proof in proofs.items():
            if self.proofs[j] is None:
                self.proofs[j] = proof

    def mark_budget(self) -> None:
        """The budget is spent: every open unit stays unproven (never stable)."""
        self.settle({int(j): UnitProof(Verdict.UNSTABLE, Method.BUDGET) for j in self.open_units()})

    def progress(self, fn: ProgressFn | None, phase: Phase | None = None, eta: float | None = None,
                 extra: dict[str, int] | None = None) -> None:
        """Tell ``fn`` where the layer is; ``phase`` (if given) is the step starting now;
        ``extra`` counts verdicts found but not yet recorded (a running MILP phase)."""
        if phase is not None:
            self.phase = phase
        if fn is None:
            return
        how: dict[str, int] = dict(extra or {})
        for p in self.proofs:
            if p is not None:
                how[str(p.method)] = how.get(str(p.method), 0) + 1
        fn(Progress(self.k + 1, min(sum(how.values()), self.width), self.width, how,
                    time.perf_counter() - self.started, self.phase, eta))

    def finish(self, shape: tuple[int, ...] | None = None) -> LayerReport:
        """The layer's report (``shape``: the layer's per-sample shape, for per-channel
        summaries); MILP-proven signs tighten the bounds used downstream."""
        proofs = tuple(p for p in self.proofs if p is not None)
        if len(proofs) != self.width:
            raise RuntimeError(f"layer {self.k + 1}: {self.width - len(proofs)} units left undecided")
        lb = self.bounds
        for j, p in enumerate(proofs):
            if p.verdict == Verdict.ACTIVE and lb.lower[j] < 0:
                lb = lb.with_unit(j, 0.0, None, p.method)
            elif p.verdict == Verdict.INACTIVE and lb.upper[j] > 0:
                lb = lb.with_unit(j, None, 0.0, p.method)
        c = self.counts
        return LayerReport(self.k + 1, proofs, lb, time.perf_counter() - self.started, c.lps, c.milps, c.nodes,
                           shape)
