"""The data the stages of the stability analysis hand each other, all immutable.

The orchestrator (``leo.stability.analysis``) runs the cheap steps of each ReLU layer and asks
an engine about the units still open: ``engine_unit.solve_layer`` takes a
``LayerProblem`` and ``engine_network.solve_network`` a ``NetworkProblem``; each
returns what it proved, the points it found and what it ran (``LayerResult``,
``NetworkResult``); the orchestrator merges. No engine writes into shared state.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from leo.bounds.propagate import LayerBounds
from leo.core.choices import Engine, choose
from leo.core.deadline import Deadline
from leo.core.domain import Box
from leo.core.network import Network
from leo.core.threads import DEFAULT_THREADS
from leo.core.verdicts import Verdict
from leo.errors import LeoInputError
from leo.stability.report import UnitProof
from solvers.backend import Solver

#: The engines' names, for help texts.
ENGINES = tuple(e.value for e in Engine)
#: The branch-and-bound phase's auto setting (``branch=None``) turns it on up to this many
#: inputs: splitting the input box pays on ACAS Xu's five, rarely on images.
BRANCH_INPUTS = 16
#: ... and only for a layer whose MILPs carry at least this many binaries (unstable units of the
#: layers before it): below that the MILP decides a unit in milliseconds, and the phase would
#: spend up to BRANCH_UNIT_SECONDS on each unit it cannot close (150 soak networks: 204 s with
#: the phase on every layer against 18 s without).
BRANCH_BINARIES = 24


@dataclass(frozen=True)
class StabilityOptions:
    """Settings of the analysis; all of them go into the certificate."""

    time_limit: float = 60.0  # seconds per MILP solve
    margin: float = 1e-6  # a solver bound proves a sign only beyond this margin
    symbolic: bool = True  # back-substitution bounds besides interval arithmetic
    samples: int = 2048  # random box points used as witnesses
    local_search: bool = True
    seed: int = 0
    workers: int = 1  # processes for the per-unit MILP phase
    scheduler: str | None = None  # a Dask scheduler address, for the per-unit MILP phase
    engine: Engine = Engine.UNIT  # one MILP per unit, or one network-wide MILP (a string converts)
    cuts: bool = True  # ideal-formulation cuts on the LP relaxation before each MILP (--no-cuts)
    neighbourhood: bool = True  # neighbourhood search for a crossing before each MILP (--no-search)
    lp_bounds: bool = False  # LP-relaxation bounds for earlier layers before a layer's MILPs (--lp-bounds)
    time_budget: float | None = None  # seconds for the whole analysis; None: no limit but time_limit per solve
    threads: int = DEFAULT_THREADS  # torch and HiGHS threads during the analysis (leo.core.threads); 0: one per core
    solver: Solver = Solver.HIGHS  # the MILP back-end (solvers.backend; a string converts)
    branch: bool | None = None  # input-splitting branch and bound before the MILPs (--branch); None: auto (BRANCH_INPUTS, BRANCH_BINARIES)
    relu_split: bool = False  # ReLU-split branch and bound per open unit before its MILP (leo.stability.relu_phase)

    def __post_init__(self) -> None:
        # frozen: the converted choices go in through object.__setattr__ (strings stay accepted)
        object.__setattr__(self, "engine", choose(Engine, self.engine, "engine"))
        object.__setattr__(self, "solver", choose(Solver, self.solver, "solver"))
        if self.time_budget is not None and not self.time_budget > 0:
            raise LeoInputError(f"the time budget must be positive, got {self.time_budget}")
        if self.threads < 0:
            raise LeoInputError(f"threads must be 0 (one per core) or positive, got {self.threads}")

    def branches(self, input_dim: int, binaries: int) -> bool:
        """Whether the branch-and-bound phase runs on a layer of a network with ``input_dim``
        inputs whose MILPs would carry ``binaries`` binaries."""
        if self.branch is None:
            return input_dim <= BRANCH_INPUTS and binaries >= BRANCH_BINARIES
        return self.branch


class Phase(enum.StrEnum):
    """What a progress event can say the analysis is doing, in the order a layer runs them
    (a display prints the value)."""

    BOUNDS = "bounds"
    WITNESSES = "witnesses"
    LOCAL_SEARCH = "local search"
    LP = "LP"
    BRANCH = "branch and bound"  # input-splitting branch and bound (leo.bab.input_split), before the MILPs
    RELU_SPLIT = "ReLU split"  # ReLU-split branch and bound per unit (leo.bab.relu_split), before the MILPs
    MILP = "MILP"
    DONE = "done"


#: The phases in the order a layer runs them.
PHASES = tuple(Phase)


@dataclass(frozen=True)
class Progress:
    """Where the analysis is: ``layer`` 0 stands for the network-wide MILP; ``decided``
    of ``total`` units are decided (``how``: by which method); ``phase`` (one of
    ``PHASES``) is what runs now, so a display does not stand still during a long
    witness or local-search step; ``eta`` is the estimated seconds until the layer is
    done, where one exists (the MILP phase: its pace so far, capped by the deadline)."""

    layer: int
    decided: int
    total: int
    how: dict[str, int]
    seconds: float
    phase: Phase = Phase.DONE
    eta: float | None = None


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class LayerProblem:
    """Which open units of layer ``layer`` (0-based) are stable? ``bounds`` holds the
    proven bounds of layers ``0..layer``, ``states`` the verdicts of the layers before
    (UNSTABLE where open); ``units`` the open units, ``directions`` the question left
    per unit (+1 "is it active?", -1 "is it inactive?"), ``starts`` a box point per unit
    to warm-start from (the witness closest to answering "no"). ``deadline`` bounds every
    solve (``Deadline.never()``: only ``options.time_limit`` per solve)."""

    network: Network
    box: Box
    layer: int
    bounds: tuple[LayerBounds, ...]
    states: tuple[tuple[Verdict, ...], ...]
    units: np.ndarray
    directions: np.ndarray
    starts: np.ndarray
    options: StabilityOptions
    deadline: Deadline


@dataclass(frozen=True)
class Counts:
    """What the solver ran: LP solves, MILP solves, branch-and-bound nodes."""

    lps: int = 0
    milps: int = 0
    nodes: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.lps + other.lps, self.milps + other.milps, self.nodes + other.nodes)


@dataclass(frozen=True)
class LayerResult:
    """What an engine found for a ``LayerProblem``: ``proofs`` of the units it proved
    stable; ``fallback`` the verdict of every other unit it was asked about should no
    witness decide it (UNSTABLE by Method.TIMEOUT, NOT_PROVEN or BUDGET); ``points`` the box
    points it met (witness candidates, judged by the forward pass); ``counts``."""

    proofs: dict[int, UnitProof]
    fallback: dict[int, UnitProof]
    points: np.ndarray
    counts: Counts = field(default_factory=Counts)


@dataclass(frozen=True)
class NetworkProblem:
    """Can any open unit of any ReLU layer take the sign it was never seen with?
    ``bounds``/``states`` cover layers ``0..last`` (open units UNSTABLE); ``candidates``
    the open (layer, unit) pairs with their ``directions`` (as in ``LayerProblem``) and
    the extreme values the witnesses showed so far (``seen_min``, ``seen_max``)."""

    network: Network
    box: Box
    last: int
    bounds: tuple[LayerBounds, ...]
    states: tuple[tuple[Verdict, ...], ...]
    candidates: tuple[tuple[int, int], ...]
    directions: np.ndarray
    seen_min: np.ndarray
    seen_max: np.ndarray
    options: StabilityOptions
    deadline: Deadline


@dataclass(frozen=True)
class NetworkResult:
    """``proofs`` of the candidates proven stable, ``fallback`` of those the MILP says
    flip but the forward pass does not confirm (Method.NOT_PROVEN), ``points`` found,
    ``counts``. Candidates in neither are left to the per-unit engine."""

    proofs: dict[tuple[int, int], UnitProof]
    fallback: dict[tuple[int, int], UnitProof]
    points: np.ndarray
    counts: Counts = field(default_factory=Counts)
