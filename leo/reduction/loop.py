"""The one reduction loop: every form (``leo.core.choices.Form``) walks the layers the
same way and edits the network only through logged steps (``leo.reduction.steps``).

Per hidden layer, in order: the form's policy handles the ReLU layer's stable units
(delete the inactive ones; fold or bypass active ones); a layer left linear (no ReLU, or
every unit left stably active) goes to the policy's ``linear`` rule (merge it into its
readers, or keep it without its ReLU). The output layer keeps its units; its ReLU, if
any, gets a ``FinalRelu`` step. A form is a ``Policy``: four functions, no mode flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leo.core.choices import Form
from leo.core.network import Network
from leo.core.verdicts import Verdict
from leo.reduction.editable import Editable
from leo.reduction.steps import (Bypass, DeleteUnits, DropChannels, DropRelu, FinalRelu, Fold, Merge, Op,
                                 Reduction, Step)

#: Relative tolerance for rank decisions and for accepting a linear combination.
RANK_TOL = 1e-10
ACTIVE, INACTIVE, UNSTABLE = Verdict.ACTIVE, Verdict.INACTIVE, Verdict.UNSTABLE


# -- applying a step ----------------------------------------------------------------------

def _delete(ed: Editable, k: int, step: DeleteUnits | DropChannels) -> None:
    ed.delete_units(k, ed.layer(k).positions(step.units))


def _fold(ed: Editable, k: int, step: Fold) -> None:
    ly = ed.layer(k)
    alpha = np.array(step.alpha, dtype=np.float64).reshape(len(step.basis), len(step.units))
    ed.fold(k, ly.positions(step.units), ly.positions(step.basis), alpha)


def _bypass(ed: Editable, k: int, step: Bypass) -> None:
    ed.fuse_linear(k, ed.layer(k).positions(step.units))


def _merge(ed: Editable, k: int, step: Merge) -> None:
    ed.merge(k)


def _drop_relu(ed: Editable, k: int, step: DropRelu) -> None:
    ed.layer(k).relu = False


def _final_relu(ed: Editable, k: int, step: FinalRelu) -> None:
    ly = ed.layer(k)
    for i in ly.positions(step.zeroed):
        for w in ly.weights.values():
            w[i] = 0.0
        ly.bias[i] = 0.0
    ly.relu = ly.relu and not step.dropped


#: op -> how it edits the working copy (layer ``k``: the step's layer's current position)
APPLY: dict[Op, Callable[[Editable, int, Any], None]] = {
    Op.DELETE: _delete,
    Op.DROP_CHANNELS: _delete,
    Op.FOLD: _fold,
    Op.BYPASS: _bypass,
    Op.MERGE: _merge,
    Op.DROP_RELU: _drop_relu,
    Op.FINAL_RELU: _final_relu,
}


@dataclass
class Run:
    """One reduction in progress: the original network, the working copy, the log so far."""

    original: Network
    ed: Editable
    steps: list[Step] = field(default_factory=list)

    def apply(self, step: Step) -> None:
        """Edit the working copy by ``step`` and log it: the only way the loop edits."""
        k = next(i for i, ly in enumerate(self.ed.layers, start=1) if ly.name == step.layer)
        APPLY[step.op](self.ed, k, step)
        self.steps.append(step)


@dataclass(frozen=True)
class Policy:
    """A form: what happens to a ReLU layer's stable units, to a linear layer (True when
    it went), before the walk, and how the working copy is written."""

    form: Form
    units: Callable[[Run, int], None]
    linear: Callable[[Run, int], bool]
    prepare: Callable[[Run], None] = lambda run: None
    finish: Callable[[Run], Network] = lambda run: run.ed.network()


# -- decisions shared by the forms --------------------------------------------------------

def delete_inactive(run: Run, k: int) -> bool:
    """Delete layer k's stably inactive units; whether there were any."""
    ly = run.ed.layer(k)
    units = tuple(ly.origin[i] for i in ly.units(INACTIVE))
    if units:
        run.apply(DeleteUnits(ly.name, units))
    return bool(units)


def dependent_fold(run: Run, k: int) -> Fold | None:
    """The fold of layer k's active units whose weight rows are combinations of other
    active rows (a rank-revealing QR picks the basis), or None."""
    ly = run.ed.layer(k)
    active = ly.units(ACTIVE)
    if active.size < 2:
        return None
    rows = np.hstack([ly.weights[s][active] for s in sorted(ly.weights)])  # (|A|, n_in)
    scale = max(float(np.abs(rows).max()), 1e-300)
    import scipy.linalg  # here, not at the top: `import leo` (every command's start-up) pays for it otherwise

    _, r, piv = scipy.linalg.qr(rows.T, mode="economic", pivoting=True)
    rank = int((np.abs(np.diag(r)) > RANK_TOL * scale * max(rows.shape)).sum())
    if rank == active.size:
        return None
    basis = np.sort(active[piv[:rank]])
    dependent = np.setdiff1d(active, basis)
    b_rows = np.hstack([ly.weights[s][basis] for s in sorted(ly.weights)])
    d_rows = np.hstack([ly.weights[s][dependent] for s in sorted(ly.weights)])
    alpha, *_ = np.linalg.lstsq(b_rows.T, d_rows.T, rcond=None)  # (|S|, |D|)
    residual = float(np.abs(b_rows.T @ alpha - d_rows.T).max())
    if residual > RANK_TOL * scale * max(rows.shape) * 10:
        return None  # not an exact combination after all: keep the units
    return Fold(ly.name, tuple(ly.origin[i] for i in dependent), tuple(ly.origin[i] for i in basis),
                tuple(tuple(float(a) for a in row) for row in alpha), residual)


def fold_dependent(run: Run, k: int) -> bool:
    """Fold layer k's dependent active units; whether there were any."""
    fold = dependent_fold(run, k)
    if fold is not None:
        run.apply(fold)
    return fold is not None


def merge(run: Run, k: int) -> bool:
    run.apply(Merge(run.ed.layer(k).name))
    return True


def _leo_units(run: Run, k: int) -> None:
    delete_inactive(run, k)
    fold_dependent(run, k)


def _flat_units(run: Run, k: int) -> None:
    delete_inactive(run, k)
    ly = run.ed.layer(k)
    active = ly.units(ACTIVE)
    if active.size:
        run.apply(Bypass(ly.name, tuple(ly.origin[i] for i in active)))


#: LEO 2020: inactive units deleted, dependent active units folded, linear layers merged.
LEO = Policy(Form.LEO, _leo_units, merge)
#: REDNet's flat form: every stable unit removed, active ones bypassed, linear layers merged.
FLAT = Policy(Form.FLAT, _flat_units, merge)


# -- the loop -----------------------------------------------------------------------------

def _states(network: Network, report: Any) -> dict[int, list[Verdict]]:
    """Per layer, what the report proved about each unit (a layer without ReLU is linear)."""
    out = {}
    for i, layer in enumerate(network.layers, start=1):
        if not layer.relu:
            out[i] = [ACTIVE] * layer.width
            continue
        lr = report.layer(i)
        if lr is None:
            raise ValueError(f"the report has no entry for ReLU layer {i}")
        out[i] = [Verdict(p.verdict) for p in lr.proofs]
    return out


def _output_relu(run: Run) -> None:
    out = run.ed.layers[-1]
    if out.relu:
        zeroed = tuple(out.origin[i] for i in out.units(INACTIVE))
        run.apply(FinalRelu(out.name, zeroed, all(s == ACTIVE for s in out.state)))


def run_policy(network: Network, report: Any, policy: Policy) -> Reduction:
    """The reduction of ``network`` by ``policy``; ``report`` must come from analysing it."""
    run = Run(network, Editable(network, _states(network, report)))
    policy.prepare(run)
    k = 1
    while k < len(run.ed.layers):
        ly = run.ed.layer(k)
        if ly.relu:
            policy.units(run, k)
        if (not ly.relu or all(s == ACTIVE for s in ly.state)) and policy.linear(run, k):
            continue
        k += 1
    _output_relu(run)
    kept = tuple(tuple(ly.origin) for ly in run.ed.layers)
    return Reduction(policy.finish(run), tuple(run.steps), len(network.layers), policy.form, kept)


__all__ = ["APPLY", "FLAT", "LEO", "RANK_TOL", "Policy", "Run", "delete_inactive", "dependent_fold",
           "fold_dependent", "merge", "run_policy"]
