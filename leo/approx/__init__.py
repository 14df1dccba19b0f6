"""Approximate compression: smaller networks that agree with the original on data,
without a proof. Every method returns a NEW Network and an ApproxReport whose
``lossless`` is always False; for chains with the exact (certified) method see
:mod:`leo.reduction.compose`.

* :func:`linearity_fusion` — fuse (nearly) always-active units into skip connections
  (Dobler & Lemmerich 2025); exact on the box for units the stability analysis proved active.
  :func:`dependence_training` anneals the elimination during training.
* :func:`dependence_elimination` — remove units whose activations are linear
  combinations of others in their layer (Shah, Olivier, Raj, ICPR 2020).
* :func:`pq_prune` — PQ-index pruning: SAP on the weights (Diao et al., ICLR 2023), or our
  structured variant on whole units.
"""

from leo.approx.dependence import DependenceOptions, dependence_elimination, dependence_training, eliminate_dependent
from leo.approx.finetune import FinetuneOptions, finetune
from leo.approx.linearity import LinearityOptions, activation_rates, fuse_units, linearity_fusion, paper_size
from leo.approx.pq_index import (PQOptions, count_nonzero, drop_dead_units, keep_count, magnitude_round, pq_index,
                                 pq_prune, prune_count, sap_round, unit_scores)
from leo.approx.report import ApproxReport, DataSplit, evaluate, split_data

__all__ = [
    "ApproxReport", "DataSplit", "DependenceOptions", "FinetuneOptions", "LinearityOptions", "PQOptions",
    "activation_rates", "count_nonzero", "dependence_elimination", "dependence_training", "drop_dead_units",
    "eliminate_dependent", "evaluate", "finetune", "fuse_units", "keep_count", "linearity_fusion",
    "magnitude_round", "paper_size", "pq_index", "pq_prune", "prune_count", "sap_round", "split_data",
    "unit_scores",
]
