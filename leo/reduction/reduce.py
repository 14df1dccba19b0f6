"""Turn a stability report into a smaller network that computes the same function
on the box (LEO, Serra et al. 2020).

Per ReLU layer, in order: delete stably inactive units; among stably active units
keep a subset with linearly independent weight rows and fold every other active unit
into the layers that read it; when all remaining units are active, the layer is
linear: multiply it into the layers that read it. The output layer keeps its units.

With ``bypass_active`` (REDNet's flat form, for verifiers) every stably active unit
goes, not only the dependent ones: a unit that is always active is linear, so the
layers reading it read its affine map instead, from the layer's own sources (skip
connections). Only unstable units keep their ReLUs. On a conv net this keeps weights
sparse, where folding a dependent unit into a basis of others makes them dense (the
MNIST CNN of benchmarks/cnn.py at eps 0.03: 367 hidden units and 32k nonzero weights
bypassed, 1501 units and 427k nonzeros folded, 2416 and 118k before).

Every form (``leo.core.choices.Form``; the structured one is ``leo.reduction.structured``)
runs the one loop of ``leo.reduction.loop`` with its own policy, and the reduction's
``steps`` say what was done (``leo.reduction.steps``), which the certificate records.
"""

from __future__ import annotations

from typing import Any

from leo.core.choices import Form, choose
from leo.core.network import Network
from leo.reduction.loop import FLAT, LEO, RANK_TOL, Policy, run_policy
from leo.reduction.steps import Fold, Reduction


def _structured() -> Policy:
    from leo.reduction.structured import STRUCTURED  # the conv machinery, only for that form

    return STRUCTURED


#: form -> its policy (the structured one loaded on first use)
POLICIES: dict[Form, Any] = {Form.LEO: lambda: LEO, Form.FLAT: lambda: FLAT, Form.STRUCTURED: _structured}


def reduce_form(network: Network, report: Any, form: Form | str = Form.LEO) -> Reduction:
    """The smaller network in ``form``, with the step log that made it; ``report`` (a
    ``StabilityReport``) must come from analysing ``network``."""
    return run_policy(network, report, POLICIES[choose(Form, form, "form")]())


def reduce(network: Network, report: Any, bypass_active: bool = False) -> Reduction:
    """The smaller network; ``report`` must come from analysing ``network``. With
    ``bypass_active`` every stably active unit is removed (the flat form; see the module's
    docstring)."""
    return reduce_form(network, report, Form.FLAT if bypass_active else Form.LEO)


__all__ = ["RANK_TOL", "Fold", "Reduction", "reduce", "reduce_form"]
