"""Loss terms: the trainer's loss is a weighted sum of terms, ``L = Σ_k w_k · term_k``.

The foundation has the accuracy term (cross-entropy). Fairness and robustness terms (issue 4)
implement the same small interface, and schedulers change the weights between epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

__all__ = ["Batch", "LossTerm", "CrossEntropy"]


@dataclass(frozen=True)
class Batch:
    """A mini-batch: inputs ``x``, labels ``y``, sensitive codes ``a`` (or None), row indices ``idx``."""

    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor | None
    idx: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(
            x=self.x.to(device), y=self.y.to(device),
            a=None if self.a is None else self.a.to(device), idx=self.idx.to(device),
        )


@runtime_checkable
class LossTerm(Protocol):
    """One term of the training loss.

    ``__call__`` gets the model, the batch and the logits of the clean forward pass (computed once
    by the trainer) and returns a scalar tensor. A term that needs another forward pass (an
    adversarial term, say) runs it itself, and its cost is measured with the step.
    """

    name: str

    def __call__(self, model: torch.nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor: ...


class CrossEntropy:
    """The accuracy term :math:`L_{acc}`: mean cross-entropy of the logits against the labels."""

    name = "ce"

    def __init__(self, *, label_smoothing: float = 0.0):
        self.label_smoothing = float(label_smoothing)

    def __call__(self, model, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, batch.y, label_smoothing=self.label_smoothing)

    def __repr__(self) -> str:
        return f"CrossEntropy(label_smoothing={self.label_smoothing})"
