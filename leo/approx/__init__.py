"""Approximate compression: smaller networks that agree with the original on data,
without a proof. Every method returns a NEW Network and an ApproxReport whose
``lossless`` is always False; for chains with the exact (certified) method see
:mod:`leo.compose`.

* :func:`linearity_fusion` — fuse (nearly) always-active units into skip connections
  (Dobler & Lemmerich 2025); exact on the box for units the stability analysis proved active.
* :func:`dependence_elimination` — remove units whose activations are linear
  combinations of others in their layer (Shah, Olivier, Raj, ICPR 2020).
* :func:`pq_prune` — structured PQ-index pruning (Yang et al. 2022; Diao et al., ICLR 2023).
"""

from leo.approx.dependence import DependenceOptions, dependence_elimination, eliminate_dependent
from leo.approx.finetune import FinetuneOptions, finetune
from leo.approx.linearity import LinearityOptions, activation_rates, fuse_units, linearity_fusion
from leo.approx.pq_index import PQOptions, keep_count, pq_index, pq_prune, unit_scores
from leo.approx.report import ApproxReport, DataSplit, evaluate, split_data

__all__ = [
    "ApproxReport", "DataSplit", "DependenceOptions", "FinetuneOptions", "LinearityOptions", "PQOptions",
    "activation_rates", "dependence_elimination", "eliminate_dependent", "evaluate", "finetune", "fuse_units",
    "keep_count", "linearity_fusion", "pq_index", "pq_prune", "split_data", "unit_scores",
]
