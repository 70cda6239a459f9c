"""Compression and capacity constraints as operations on trained models, each with its measured cost.

* pruning: :func:`prune_unstructured` (magnitude, masks made permanent, stored densely) and
  :func:`prune_structured` (whole neurons / channels removed: a smaller dense model);
* quantisation: :func:`quantize` (int8 dynamic / static, 4-bit weights, simulated 4-bit);
* distillation: :class:`DistillationLoss` (a loss term of the :class:`~trustkit.train.Trainer`)
  and :func:`distill`;
* fine-tuning: :func:`finetune` (keeps a pruned model's zeros) and :func:`constrained_finetune`
  (each group's accuracy drop bounded, through cooper's Lagrange multipliers);
* measurement: :func:`compressed_profile` (one record: trust metrics, impact, cost),
  :func:`inference_cost` (latency, throughput, memory, bytes),
  :func:`compression_impact` (per-group accuracy change, agreement, compression-identified
  exemplars) and :func:`attack_surrogate` (attacks on models without gradients).

Every operation returns a :class:`Compressed` and never changes the model it was given.
"""

from ._core import Compressed, copy_model, footprint, model_bytes, prunable_layers, weight_bytes
from ._prune import SCOPES, prune_structured, prune_unstructured
from ._finetune import (
    DistillationLoss, GroupDropConstraint, GroupLoss, constrained_finetune, distill, finetune,
)
from ._impact import GROUPINGS, CompressionImpact, attack_surrogate, compression_impact
from ._measure import inference_cost
from ._profile import compressed_profile
from ._quantize import SCHEMES, fake_quantize_weights, quantize

__all__ = [
    "Compressed", "footprint", "model_bytes", "weight_bytes", "copy_model", "prunable_layers",
    "prune_unstructured", "prune_structured", "SCOPES", "quantize", "SCHEMES", "fake_quantize_weights",
    "inference_cost", "compressed_profile", "CompressionImpact", "compression_impact", "attack_surrogate", "GROUPINGS",
    "finetune", "DistillationLoss", "distill", "GroupLoss", "GroupDropConstraint", "constrained_finetune",
]
