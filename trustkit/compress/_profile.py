"""One record per compressed model: the usual trust metrics, what compression changed per group, its cost."""

from __future__ import annotations

import numpy as np
from torch import nn

from ..metrics import adversarial_accuracy, attack_geometry, evaluate
from ._core import Compressed
from ._impact import attack_surrogate, compression_impact
from ._measure import inference_cost

__all__ = ["compressed_profile"]


def compressed_profile(compressed: Compressed, dense: nn.Module, task, *, split: str = "test",
                       eps: float | None = None, pgd_steps: int = 10, max_attack: int | None = 1000,
                       latency: bool = True, batch_sizes=(1, 256), min_run_time: float = 0.2,
                       threads: int | None = None, seed: int = 0) -> dict:
    """Measure a compressed model exactly like a trained one, plus what compression did, as one flat dict.

    * the metrics of :func:`~trustkit.metrics.evaluate` on ``split`` (accuracy, ECE, and with a
      sensitive attribute the DP / EO gaps);
    * ``pgd@ε``: accuracy under a ``pgd_steps``-step ℓ∞ PGD attack on the first ``max_attack``
      rows (ε: 0.1 for images, 0.1 standard deviations for tables unless given). A model without
      gradients (int8 kernels) is attacked through the dense model's gradients
      (:func:`attack_surrogate`; ``attack`` = "transfer" in the record) — an upper bound on its
      white-box robust accuracy;
    * :func:`compression_impact` against ``dense``: accuracy change, agreement, per-group change
      (sensitive groups, else classes) and the number of compression-identified exemplars;
    * the :class:`Compressed` record (parameters, bytes, ratios, cost) and, with ``latency``,
      :func:`inference_cost`.
    """
    if not isinstance(compressed, Compressed):
        raise TypeError(f"compressed must be a trustkit.compress.Compressed; got {type(compressed).__name__}")
    s = task.split(split)
    row = dict(compressed.to_dict())
    row.update(evaluate(compressed.model, s))
    eps = 0.1 if eps is None else float(eps)
    bounds, mask = attack_geometry(task)
    n = len(s.y) if max_attack is None else min(int(max_attack), len(s.y))
    target = compressed.model if compressed.differentiable else attack_surrogate(compressed.model, dense)
    row[f"pgd@{eps:g}"] = adversarial_accuracy(target, s.X[:n], s.y[:n], eps, attack="pgd", steps=pgd_steps,
                                               bounds=bounds, mask=mask, seed=seed)
    row["attack"] = "white-box" if compressed.differentiable else "transfer"
    groups = "sensitive" if task.has_sensitive else "label"
    impact = compression_impact(dense, compressed.model, s, groups=groups,
                                group_names=task.group_names if task.has_sensitive else None)
    row.update({f"impact_{k}" if not k.startswith(("acc_change[", "agreement[")) else k: v
                for k, v in impact.to_dict().items()})
    row["exemplars"] = np.asarray(impact.exemplars).tolist()
    if latency:
        row.update(inference_cost(compressed.model, task.input_shape, batch_sizes=batch_sizes,
                                  min_run_time=min_run_time, threads=threads, seed=seed))
    return row
