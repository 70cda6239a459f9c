"""What compression does to groups: per-group accuracy change, agreement, compression-identified exemplars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validation import check_choice
from ..metrics import predict_logits

__all__ = ["CompressionImpact", "compression_impact", "attack_surrogate", "GROUPINGS"]

GROUPINGS = ("sensitive", "label")


class _StraightThrough(nn.Module):
    def __init__(self, model: nn.Module, reference: nn.Module):
        super().__init__()
        self.model = model
        self.reference = reference

    def forward(self, x):
        with torch.no_grad():
            out = self.model(x).float()
        ref = self.reference(x)
        return out + (ref - ref.detach())


def attack_surrogate(model: nn.Module, reference: nn.Module) -> nn.Module:
    """``model``'s outputs with ``reference``'s gradients, for attacking a model without gradients.

    Quantised kernels have no backward pass, so a gradient attack cannot run on them directly. The
    returned module outputs exactly ``model(x)`` but back-propagates through ``reference`` (the
    dense model it was made from): the attack searches with the dense model's gradients and is
    scored on the compressed model's predictions (the straight-through / BPDA approximation of
    Athalye et al. 2018). It is a transfer attack from the dense model, so the robust accuracy it
    gives is an upper bound on what a white-box attack would leave.

    >>> dense = nn.Linear(4, 2)
    >>> s = attack_surrogate(nn.Linear(4, 2), dense)
    >>> x = torch.zeros(1, 4, requires_grad=True)
    >>> s(x).sum().backward(); x.grad.shape
    torch.Size([1, 4])
    """
    return _StraightThrough(model, reference)


@dataclass
class CompressionImpact:
    """Dense vs compressed predictions on one split.

    ``per_group`` has one row per group: ``n``, ``acc_dense``, ``acc_compressed``, ``acc_change``
    (compressed − dense), ``agreement`` (share of points where both predict the same class).
    ``exemplars`` are the split's row indices (``split.index``) of the compression-identified
    exemplars: the points where the two models disagree (Hooker et al. 2020).
    """

    grouping: str
    accuracy_dense: float
    accuracy_compressed: float
    agreement: float
    per_group: pd.DataFrame
    exemplars: np.ndarray

    @property
    def accuracy_change(self) -> float:
        return self.accuracy_compressed - self.accuracy_dense

    @property
    def worst_group_change(self) -> float:
        return float(self.per_group["acc_change"].min())

    @property
    def change_gap(self) -> float:
        """Largest minus smallest per-group accuracy change: how unevenly compression hurt."""
        return float(self.per_group["acc_change"].max() - self.per_group["acc_change"].min())

    @property
    def group_gap(self) -> tuple[float, float]:
        """Best minus worst group accuracy, of the dense and of the compressed model."""
        g = self.per_group
        return (float(g["acc_dense"].max() - g["acc_dense"].min()),
                float(g["acc_compressed"].max() - g["acc_compressed"].min()))

    def to_dict(self) -> dict:
        """A flat record: overall numbers, then ``acc_change[g]`` and ``agreement[g]`` per group."""
        dense_gap, gap = self.group_gap
        out = {"grouping": self.grouping, "accuracy_dense": self.accuracy_dense,
               "accuracy_compressed": self.accuracy_compressed, "accuracy_change": self.accuracy_change,
               "agreement": self.agreement, "worst_group_change": self.worst_group_change,
               "change_gap": self.change_gap, "group_acc_gap_dense": dense_gap, "group_acc_gap": gap,
               "n_exemplars": int(len(self.exemplars))}
        for row in self.per_group.itertuples():
            out[f"acc_change[{row.group}]"] = row.acc_change
            out[f"agreement[{row.group}]"] = row.agreement
        return out


def _predict(model, X, batch_size) -> np.ndarray:
    with torch.no_grad():
        return predict_logits(model, X, batch_size=batch_size).argmax(1).cpu().numpy()


def compression_impact(dense: nn.Module, compressed: nn.Module, split, *, groups: str = "sensitive",
                       group_names=None, batch_size: int = 2048) -> CompressionImpact:
    """Compare a compressed model with the dense one on ``split``, overall and per group.

    ``groups="sensitive"`` groups rows by the split's sensitive attribute; ``"label"`` by the true
    class (for tasks without one, as Hooker et al. 2020 do on images). ``group_names`` (e.g.
    ``task.group_names``) labels the groups in the table.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from trustkit.data import Split
    >>> X = torch.tensor([[1.0], [-1.0], [2.0], [-2.0]]); y = np.array([1, 0, 1, 0])
    >>> s = Split(X=X.numpy(), y=y, a=np.array([0, 0, 1, 1]), index=np.arange(4))
    >>> dense = torch.nn.Linear(1, 2); compressed = torch.nn.Linear(1, 2)
    >>> with torch.no_grad():
    ...     _ = dense.weight.copy_(torch.tensor([[-1.0], [1.0]])); _ = dense.bias.zero_()
    ...     _ = compressed.weight.copy_(torch.tensor([[-1.0], [1.0]])); _ = compressed.bias.copy_(torch.tensor([0.0, -2.5]))
    >>> imp = compression_impact(dense, compressed, s)
    >>> imp.agreement, imp.exemplars.tolist(), imp.per_group["acc_change"].tolist()
    (0.75, [0], [-0.5, 0.0])
    """
    check_choice("groups", groups, GROUPINGS)
    y = np.asarray(split.y)
    if groups == "sensitive":
        if split.a is None:
            raise ValueError("groups='sensitive' needs a split with a sensitive attribute; use groups='label'")
        g = np.asarray(split.a)
    else:
        g = y
    pd_ = _predict(dense, split.X, batch_size)
    pc = _predict(compressed, split.X, batch_size)
    rows = []
    for code in np.unique(g):
        m = g == code
        name = code
        if group_names is not None and groups == "sensitive":
            name = group_names[int(code)]
        ad, ac = float((pd_[m] == y[m]).mean()), float((pc[m] == y[m]).mean())
        rows.append({"group": name, "n": int(m.sum()), "acc_dense": ad, "acc_compressed": ac,
                     "acc_change": ac - ad, "agreement": float((pd_[m] == pc[m]).mean())})
    index = np.asarray(split.index) if getattr(split, "index", None) is not None else np.arange(len(y))
    return CompressionImpact(
        grouping=groups, accuracy_dense=float((pd_ == y).mean()), accuracy_compressed=float((pc == y).mean()),
        agreement=float((pd_ == pc).mean()), per_group=pd.DataFrame(rows), exemplars=index[pd_ != pc],
    )
