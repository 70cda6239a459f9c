"""SSFR-style sample selection for fair and robust training (after Roh et al. 2021).

Roh, Lee, Whang & Suh (NeurIPS 2021), "Sample Selection for Fair and Robust Training": every
epoch, keep a fraction τ of the training data made of the *lowest-loss* points of each
(label, group) cell (low loss = likely clean), where the share of each group within a label is
adapted FairBatch-style (Roh et al. 2021, ICLR) towards equalised odds: the group whose selected
points have the larger loss gets a larger share next epoch. The model trains only on the selected
points; the last selection is the subset.

This is trustkit's re-implementation of that idea with the one training loop: the selection is a
0/1 weight per training point that a loss term reads, updated by a callback before every epoch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_fraction, check_int, check_positive
from ..data import Task
from ..train import Batch, Callback, Trainer

__all__ = ["ssfr_subset"]


class _SelectedCrossEntropy:
    """Cross-entropy averaged over the batch members whose selection weight is 1."""

    name = "ce_selected"

    def __init__(self, n: int):
        self.mask = torch.ones(n)

    def __call__(self, model, batch: Batch, logits):
        w = self.mask[batch.idx].to(logits.dtype)
        ce = F.cross_entropy(logits, batch.y, reduction="none")
        return (w * ce).sum() / w.sum().clamp_min(1.0)

    def __repr__(self) -> str:
        return "SelectedCrossEntropy()"


class _SSFR(Callback):
    def __init__(self, term: _SelectedCrossEntropy, task: Task, fraction: float, alpha: float):
        self.term, self.fraction, self.alpha = term, fraction, alpha
        y, a = task.train.y, task.train.a
        self.cells = {(lab, g): np.flatnonzero((y == lab) & (a == g)) for lab in (0, 1) for g in np.unique(a)}
        self.groups = list(np.unique(a))
        # share of each group within each label, starting from the data's own proportions
        self.share = {lab: {g: len(self.cells[(lab, g)]) / max(1, (y == lab).sum()) for g in self.groups} for lab in (0, 1)}
        self.n_label = {lab: int((y == lab).sum()) for lab in (0, 1)}
        self.history: list[dict] = []

    def on_epoch_start(self, state):
        X = torch.as_tensor(state.task.train.X)
        y = torch.as_tensor(state.task.train.y)
        with torch.no_grad():
            was = state.model.training
            state.model.eval()
            losses = F.cross_entropy(state.model(X), y, reduction="none").numpy()
            state.model.train(was)
        if state.epoch > 1:  # FairBatch step: move share towards the group with the larger selected loss
            for lab in (0, 1):
                sel_loss = {g: losses[self.cells[(lab, g)]][self.term.mask.numpy()[self.cells[(lab, g)]] > 0].mean()
                            for g in self.groups}
                hi = max(self.groups, key=lambda g: sel_loss[g])
                for g in self.groups:
                    self.share[lab][g] += self.alpha if g == hi else -self.alpha / (len(self.groups) - 1)
                total = sum(max(self.share[lab][g], 1e-3) for g in self.groups)
                self.share[lab] = {g: max(self.share[lab][g], 1e-3) / total for g in self.groups}
        mask = np.zeros(len(losses))
        for lab in (0, 1):
            for g in self.groups:
                idx = self.cells[(lab, g)]
                k = min(len(idx), int(round(self.fraction * self.n_label[lab] * self.share[lab][g])))
                mask[idx[np.argsort(losses[idx], kind="stable")[:k]]] = 1.0
        self.term.mask = torch.as_tensor(mask, dtype=torch.float32)
        self.history.append({"epoch": state.epoch, "selected": int(mask.sum()),
                             **{f"share_y{lab}_{g}": self.share[lab][g] for lab in (0, 1) for g in self.groups}})


def ssfr_subset(task: Task, fraction: float, *, epochs: int = 10, alpha: float = 0.05, lr: float = 3e-3,
                model: str = "mlp", seed: int = 0, return_history: bool = False):
    """Indices of the SSFR-style subset of ``task.train`` (about ``fraction`` of it).

    Raises ``ValueError`` for a task without a binary label or sensitive attribute.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> idx = ssfr_subset(load_german(seed=0), 0.6, epochs=2)
    >>> 300 < len(idx) <= 420
    True
    """
    check_fraction("fraction", fraction)
    check_int("epochs", epochs, minimum=1)
    check_positive("alpha", alpha)
    if task.n_classes != 2 or not task.has_sensitive:
        raise ValueError("SSFR needs a binary task with a sensitive attribute")
    term = _SelectedCrossEntropy(len(task.train))
    cb = _SSFR(term, task, fraction, alpha)
    Trainer(model=model, terms=[term], epochs=epochs, lr=lr, seed=seed, callbacks=[cb], progress=False,
            metrics=["accuracy"]).fit(task)
    idx = np.flatnonzero(term.mask.numpy() > 0)
    return (idx, cb.history) if return_history else idx
