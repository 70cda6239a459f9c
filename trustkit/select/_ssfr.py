"""SSFR sample selection for fair and robust training (Roh, Lee, Whang & Suh, NeurIPS 2021).

Every epoch after a warm start, the method keeps ``n = round(τ·N)`` training points (τ the
fraction asked) and the model trains on those only:

1. **Label sizes stay fixed.** Label ``y`` gets ``n_y`` of the ``n`` places, in proportion to
   its share of the training split (largest-remainder rounding, so ``Σ n_y = n`` exactly).
2. **Selection ratios.** Within label ``y`` the sensitive group ``z = 1`` gets a ratio
   :math:`\\lambda_y` of the places and ``z = 0`` gets :math:`1 - \\lambda_y`, starting from the
   data's own shares. After each epoch the ratios move FairBatch-style (Roh et al., ICLR 2021)
   towards equalised odds: with :math:`L_{y,z}` the mean loss of cell ``(y, z)``, only the label
   whose loss gap :math:`|L_{y,1} - L_{y,0}|` is larger moves, by a bounded step α, towards the
   group with the larger loss; then :math:`\\lambda_y` is clipped to its bounds (below).
3. **Clean points.** Each cell ``(y, z)`` contributes its ``round(ratio × n_y)`` lowest-loss
   points (low loss = likely correctly labelled).

**Bounds.** Every cell keeps at least ``min_share`` of its label's places (all its points if it
holds fewer), and no cell is asked for more points than it holds; with both, every cell's count
is met and the subset has exactly ``n`` points. The ratios are clipped before the counts are rounded, so the recorded shares are
the ones used.

**Which loss measures a cell.** The published rule averages each cell's loss over its *selected*
points (``cell_loss="selected"``). Because the selected points are a cell's lowest-loss ones, a
raised ratio adds higher-loss points, which raises the cell's measured loss and so its ratio
again: the ratios can run to their bounds whatever the model does. The default
(``cell_loss="quantile"``) measures every cell on the same quantile of its own points — the mean
loss of its ``round(τ·|D_{y,z}|)`` lowest-loss points, the ones it would contribute if the ratios
were the data's own shares — so the measure does not move with the ratio and only training moves
it. The per-epoch ratios, counts and cell losses are recorded.

This is trustkit's re-implementation with the one training loop: the selection is a 0/1 weight
per training point that a loss term reads, updated by a callback before every epoch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_choice, check_fraction, check_int, check_positive
from ..data import Task
from ..train import Batch, Callback, Trainer

__all__ = ["ssfr_subset", "label_sizes"]

CELL_LOSSES = ("quantile", "selected")


class _SelectedCrossEntropy:
    """Cross-entropy averaged over the batch members whose selection weight is 1."""

    name = "ce_selected"

    def __init__(self, n: int):
        self.mask = torch.ones(n)

    def __call__(self, model, batch: Batch, logits):
        w = self.mask[batch.idx.cpu()].to(device=logits.device, dtype=logits.dtype)
        ce = F.cross_entropy(logits, batch.y, reduction="none")
        return (w * ce).sum() / w.sum().clamp_min(1.0)

    def __repr__(self) -> str:
        return "SelectedCrossEntropy()"


def label_sizes(counts, n: int) -> np.ndarray:
    """Split ``n`` places in proportion to ``counts`` with largest-remainder rounding (sums to ``n``).

    >>> label_sizes([2017, 1685], 2221).tolist()
    [1210, 1011]
    """
    counts = np.asarray(counts, dtype=float)
    raw = n * counts / counts.sum()
    out = np.floor(raw).astype(int)
    short = n - int(out.sum())
    if short:
        out[np.argsort(-(raw - out), kind="stable")[:short]] += 1
    return out


class _SSFR(Callback):
    def __init__(self, term: _SelectedCrossEntropy, task: Task, fraction: float, alpha: float, min_share: float,
                 warm_start: int, cell_loss: str):
        self.term, self.fraction, self.alpha, self.min_share = term, fraction, alpha, min_share
        self.warm_start, self.cell_loss = warm_start, cell_loss
        y, a = task.train.y, task.train.a
        self.cells = {(lab, g): np.flatnonzero((y == lab) & (a == g)) for lab in (0, 1) for g in (0, 1)}
        self.n_select = int(round(fraction * len(y)))
        self.n_label = dict(zip((0, 1), label_sizes([(y == 0).sum(), (y == 1).sum()], self.n_select).tolist()))
        # λ_y: the share of group 1 among label y's places; starts at the data's own share
        self.lam = {lab: len(self.cells[(lab, 1)]) / max(1, len(self.cells[(lab, 0)]) + len(self.cells[(lab, 1)]))
                    for lab in (0, 1)}
        self.bounds = {lab: self._bounds(lab) for lab in (0, 1)}
        self.lam = {lab: self._clip(lab, self.lam[lab]) for lab in (0, 1)}
        self.history: list[dict] = []

    def _bounds(self, lab: int) -> tuple[float, float]:
        """The interval λ_y may take: each group keeps ``min_share`` and never exceeds its cell."""
        m = self.n_label[lab]
        if m == 0:
            return 0.0, 1.0
        hi = min(1.0 - self.min_share, len(self.cells[(lab, 1)]) / m)
        lo = max(self.min_share, 1.0 - len(self.cells[(lab, 0)]) / m)
        return min(lo, hi), hi  # a tiny cell caps its own share; the cap wins over min_share

    def _clip(self, lab: int, value: float) -> float:
        lo, hi = self.bounds[lab]
        return float(min(max(value, lo), hi))

    def _counts(self) -> dict:
        out = {}
        for lab in (0, 1):
            k1 = int(round(self.lam[lab] * self.n_label[lab]))
            k1 = min(k1, len(self.cells[(lab, 1)]))
            k0 = self.n_label[lab] - k1
            if k0 > len(self.cells[(lab, 0)]):  # only possible when rounding meets a full cell
                k0 = len(self.cells[(lab, 0)])
                k1 = self.n_label[lab] - k0
            out[(lab, 0)], out[(lab, 1)] = k0, k1
        return out

    def _cell_losses(self, losses: np.ndarray, mask: np.ndarray) -> dict:
        out = {}
        for key, idx in self.cells.items():
            if self.cell_loss == "selected":
                chosen = idx[mask[idx] > 0]
            else:
                k = max(1, int(round(self.fraction * len(idx))))
                chosen = idx[np.argsort(losses[idx], kind="stable")[:k]]
            out[key] = float(losses[chosen].mean()) if len(chosen) else 0.0
        return out

    def on_epoch_start(self, state):
        if state.epoch <= self.warm_start:  # warm start: train on the whole split first
            return
        X = torch.as_tensor(state.task.train.X)
        y = torch.as_tensor(state.task.train.y)
        with torch.no_grad():
            was = state.model.training
            state.model.eval()
            losses = F.cross_entropy(state.model(X), y, reduction="none").numpy()
            state.model.train(was)
        old_mask = self.term.mask.numpy()
        L = self._cell_losses(losses, old_mask)
        if self.history:  # FairBatch step for equalised odds: only the label with the larger gap moves
            gaps = {lab: L[(lab, 1)] - L[(lab, 0)] for lab in (0, 1)}
            lab = max((0, 1), key=lambda k: abs(gaps[k]))
            if gaps[lab] != 0:
                self.lam[lab] = self._clip(lab, self.lam[lab] + (self.alpha if gaps[lab] > 0 else -self.alpha))
        counts = self._counts()
        mask = np.zeros(len(losses), dtype=np.float32)
        for key, idx in self.cells.items():
            mask[idx[np.argsort(losses[idx], kind="stable")[: counts[key]]]] = 1.0
        self.term.mask = torch.as_tensor(mask)
        row = {"epoch": state.epoch, "selected": int(mask.sum())}
        for lab in (0, 1):
            m = max(1, self.n_label[lab])
            row.update({f"share_y{lab}_{g}": counts[(lab, g)] / m for g in (0, 1)})
        row.update({f"n_y{lab}_{g}": counts[(lab, g)] for lab in (0, 1) for g in (0, 1)})
        row.update({f"loss_y{lab}_{g}": L[(lab, g)] for lab in (0, 1) for g in (0, 1)})
        self.history.append(row)


def ssfr_subset(task: Task, fraction: float, *, epochs: int = 10, alpha: float = 0.05, min_share: float = 0.1,
                warm_start: int = 1, cell_loss: str = "quantile", lr: float = 3e-3, model: str = "mlp", seed: int = 0,
                return_history: bool = False):
    """Indices of the SSFR subset of ``task.train``: exactly ``round(fraction · len(task.train))`` points.

    Parameters
    ----------
    task : Task
        A binary task with a binary sensitive attribute.
    fraction : float in (0, 1)
        τ, the share of the training split to keep.
    epochs : int
        Training epochs; the selection is redone at the start of every epoch after ``warm_start``
        and the last selection is returned.
    alpha : float
        The bounded step of a selection ratio per epoch.
    min_share : float in [0, 0.5)
        Smallest share of its label's places any (label, group) cell keeps.
    warm_start : int
        Epochs trained on the whole split before the first selection (the losses of an untrained
        model say nothing about label noise).
    cell_loss : {"quantile", "selected"}
        How a cell's loss is measured for the ratio update (see the module docstring).
    lr, model, seed
        The training run.
    return_history : bool
        Also return one record per selection: the shares ``share_y{label}_{group}`` (of the
        label's places), the counts ``n_y…`` and the cell losses ``loss_y…`` used.

    Raises ``ValueError`` for a task without a binary label or binary sensitive attribute.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> task = load_german(seed=0)
    >>> idx = ssfr_subset(task, 0.6, epochs=2)
    >>> len(idx) == round(0.6 * len(task.train))
    True
    """
    check_fraction("fraction", fraction)
    check_int("epochs", epochs, minimum=1)
    check_positive("alpha", alpha)
    if not isinstance(min_share, (int, float)) or isinstance(min_share, bool) or not 0 <= min_share < 0.5:
        raise ValueError(f"min_share must be a number in [0, 0.5); got {min_share!r}")
    check_int("warm_start", warm_start, minimum=0)
    if epochs <= warm_start:
        raise ValueError(f"epochs must exceed warm_start so that a selection is made; got epochs={epochs}, "
                         f"warm_start={warm_start}")
    check_choice("cell_loss", cell_loss, CELL_LOSSES)
    if task.n_classes != 2 or not task.has_sensitive:
        raise ValueError("SSFR needs a binary task with a sensitive attribute")
    if not set(np.unique(task.train.a).tolist()) <= {0, 1}:
        raise ValueError(f"SSFR needs a binary sensitive attribute (groups 0 and 1); got groups "
                         f"{np.unique(task.train.a).tolist()}")
    term = _SelectedCrossEntropy(len(task.train))
    cb = _SSFR(term, task, fraction, float(alpha), float(min_share), warm_start, cell_loss)
    Trainer(model=model, terms=[term], epochs=epochs, lr=lr, seed=seed, callbacks=[cb], progress=False,
            metrics=["accuracy"]).fit(task)
    idx = np.flatnonzero(term.mask.numpy() > 0)
    return (idx, cb.history) if return_history else idx
