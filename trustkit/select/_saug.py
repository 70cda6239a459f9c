"""Augmentation pools for image robustness: uniform (UAug) and sampled (SAug, VTruST Algorithm 3).

An augmentation pool adds corrupted copies of training images to the clean training split. UAug
spreads a budget of ``aug_factor × n_train`` copies evenly over the corruptions; SAug spreads it in
proportion to each corruption's *sampling number*, how much harder the corruption is for a model
not trained on it than for one trained on it (Das et al. 2024, Algorithm 3):

* round 0: train one model on clean data and one per corruption ``i`` (clean + that corruption),
  measure the validation accuracy ``Mat[i, j]`` of each on each corruption ``j``, and set
  ``SN_j = (Mat[j, j] − mean_{i≠j} Mat[i, j]) / Mat[j, j]``;
* later rounds: train on the pool sampled by the normalised ``SN``, measure the robust accuracy
  ``RA_j``, set ``SN_j = Mat[j, j] − RA_j`` and resample, until the mean robust accuracy improves
  by less than ``eps``; the pool with the best mean robust accuracy is returned (the update can
  overshoot: once a model is robust to most corruptions, only the rest keep a positive ``SN``).

Robust accuracies are measured on the validation split (never on test). Negative sampling
numbers (a corruption that is no harder untrained) are clipped to zero before normalising.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._validation import check_choice, check_int, check_positive
from ..data import CORRUPTIONS, Task, corrupt_images
from ..metrics import predict_logits
from ..train import Trainer

__all__ = ["augmented_task", "uniform_counts", "saug", "SAugResult", "robust_accuracies"]


def _counts(weights: np.ndarray, total: int) -> np.ndarray:
    w = np.clip(np.asarray(weights, dtype=float), 0, None)
    if w.sum() <= 0:  # nothing positive: spread evenly
        w = np.ones_like(w)
    w = w / w.sum()
    raw = w * total
    n = np.floor(raw).astype(int)
    n[np.argsort(-(raw - n), kind="stable")[: total - n.sum()]] += 1  # largest remainders, ties to the first
    return n


def uniform_counts(corruptions, total: int) -> dict[str, int]:
    """``total`` augmented copies spread evenly over ``corruptions`` (UAug)."""
    return dict(zip(corruptions, _counts(np.ones(len(corruptions)), total).tolist()))


def augmented_task(task: Task, counts: dict[str, int], *, severity: int | None = None, seed: int = 0) -> Task:
    """``task`` whose training split is the clean images plus ``counts[c]`` corrupted copies per corruption.

    Images to corrupt are drawn uniformly without replacement within each class (class balance is
    kept); the severity is ``severity`` or, if ``None``, drawn uniformly from 1–5 per image.
    ``notes["augmentation"]`` records the corruption of every added row (``"clean"`` for originals).
    """
    if task.kind != "image":
        raise ValueError("augmentation pools are for image tasks; use label flips or feature noise for tables")
    rng = np.random.default_rng(seed)
    tr = task.train
    Xs, ys, idxs, tags = [tr.X], [tr.y], [tr.index], ["clean"] * len(tr.y)
    for j, (c, k) in enumerate(counts.items()):
        check_choice("corruption", c, CORRUPTIONS)
        if k <= 0:
            continue
        # stratified by class: the same share of each class
        pick = []
        classes, per = np.unique(tr.y, return_counts=True)
        alloc = _counts(per, k)
        for cl, m in zip(classes, alloc):
            pool = np.flatnonzero(tr.y == cl)
            pick.append(rng.choice(pool, size=min(m, len(pool)), replace=False))
        pick = np.concatenate(pick)
        sev = rng.integers(1, 6, size=len(pick)) if severity is None else np.full(len(pick), severity)
        Xc = np.empty_like(tr.X[pick])
        for s in np.unique(sev):
            m = sev == s
            Xc[m] = corrupt_images(tr.X[pick][m], c, int(s), seed=seed + 1000 * j + int(s))
        Xs.append(Xc)
        ys.append(tr.y[pick])
        idxs.append(tr.index[pick])
        tags += [c] * len(pick)
    train = tr.replace(X=np.concatenate(Xs), y=np.concatenate(ys), index=np.concatenate(idxs))
    return task.replace(train=train, notes=dict(task.notes, augmentation=np.asarray(tags)))


def robust_accuracies(model, task: Task, corruptions, *, split: str = "val", severities=(1, 3, 5), seed: int = 0) -> dict[str, float]:
    """Accuracy of ``model`` on ``split`` under each corruption (mean over ``severities``)."""
    s = task.split(split)
    out = {}
    for c in corruptions:
        accs = [float((predict_logits(model, corrupt_images(s.X, c, int(v), seed=seed)).argmax(1).numpy() == s.y).mean())
                for v in severities]
        out[c] = float(np.mean(accs))
    return out


@dataclass
class SAugResult:
    """The sampled pool's counts per corruption, the Mat matrix and the per-round history."""

    counts: dict
    mat: np.ndarray
    history: list = field(default_factory=list)


def saug(task: Task, corruptions, *, aug_factor: float = 1.0, rounds: int = 3, eps: float = 0.005,
         epochs: int = 8, lr: float = 3e-3, model: str = "cnn", seed: int = 0) -> SAugResult:
    """Sampled augmentation (Algorithm 3 of the VTruST paper); returns the counts of the final pool."""
    corruptions = list(corruptions)
    for c in corruptions:
        check_choice("corruption", c, CORRUPTIONS)
    check_positive("aug_factor", aug_factor)
    check_int("rounds", rounds, minimum=1)
    total = int(round(aug_factor * len(task.train)))
    per = max(1, total // len(corruptions))

    def fit(t):
        tr = Trainer(model=model, epochs=epochs, lr=lr, seed=seed, progress=False, metrics=["accuracy"])
        tr.fit(t)
        return tr.model_

    k = len(corruptions)
    mat = np.zeros((k + 1, k))
    for i, c in enumerate(corruptions):  # a model trained with each single corruption
        m = fit(augmented_task(task, {c: per}, seed=seed))
        mat[i] = list(robust_accuracies(m, task, corruptions, seed=seed).values())
    mat[k] = list(robust_accuracies(fit(task), task, corruptions, seed=seed).values())  # clean model
    diag = np.diag(mat[:k])
    sn = (diag - (mat[:, :].sum(0) - diag) / k) / np.maximum(diag, 1e-9)
    history, prev, best = [], None, (-np.inf, None)
    for r in range(rounds):
        counts = dict(zip(corruptions, _counts(sn, total).tolist()))
        ra = robust_accuracies(fit(augmented_task(task, counts, seed=seed + r)), task, corruptions, seed=seed)
        mean_ra = float(np.mean(list(ra.values())))
        history.append({"round": r + 1, "mean_robust_acc": mean_ra, **{f"n[{c}]": n for c, n in counts.items()}})
        if mean_ra > best[0]:
            best = (mean_ra, counts)
        if prev is not None and mean_ra - prev < eps:
            break  # no longer improving: keep the best pool seen
        prev = mean_ra
        sn = diag - np.array([ra[c] for c in corruptions])
    counts = best[1]
    return SAugResult(counts=counts, mat=mat, history=history)
