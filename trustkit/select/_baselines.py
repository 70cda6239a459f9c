"""Baselines for subset selection, on the same split and model as VTruST.

* :func:`random_subset` — the same number of points drawn uniformly (stratified by label × group).
* :func:`tracin_topk` — score every training point by its summed first-order value features
  (TracIn, Pruthi et al. 2020) over the epochs of one ERM run and keep the top fraction: the
  "gradient matching / TracIn top-k" selection, with the same value functions as VTruST.
  With a softmax head the last-layer gradient of a point is ``(p − onehot(y)) ⊗ [h, 1]``, so for
  two classes it is ``(p₁ − y)·[−h, h, −1, 1]`` and the *sign* of its score is set by its label
  (times a sign common to all points of that label); plain top-k then keeps mostly one class.
  ``stratify=True`` ranks within each class and keeps the class proportions of the split. It
  keeps the class balance but not more: within the class whose points score positive a point's
  score grows with ``|p₁ − y|``, that is with its loss, so that class's highest-loss points are
  kept first.
* :func:`fairlearn_reference` — fairlearn's ExponentiatedGradient (in-processing, Agarwal et al.
  2018) or ThresholdOptimizer (post-processing, Hardt et al. 2016) around a logistic regression:
  the references a practitioner would otherwise pick. They train on the whole training split and
  report the same test metrics.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import check_choice, check_fraction, check_int
from ..data import Task
from ..metrics import compute_metrics, default_metrics
from ..train import Callback, Trainer
from ._features import per_sample_grads, value_features

__all__ = ["random_subset", "tracin_topk", "fairlearn_reference"]


def random_subset(task: Task, fraction: float, *, seed: int = 0) -> np.ndarray:
    """Indices of a uniformly random ``fraction`` of ``task.train``, stratified by label × group."""
    check_fraction("fraction", fraction)
    rng = np.random.default_rng(seed)
    strata = task.train.y * 1000 + (0 if task.train.a is None else task.train.a)
    keep = []
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        keep.append(rng.choice(idx, size=max(1, int(round(fraction * len(idx)))), replace=False))
    return np.sort(np.concatenate(keep))


class _Scores(Callback):
    def __init__(self, value, lr: float, scope: str):
        self.value, self.lr, self.scope = value, lr, scope
        self.scores = None

    def on_epoch_end(self, state, record):
        comp = self.value(state.model)
        w = torch.ones(comp.values.shape[0], dtype=torch.double)
        for rows, weight in self.value.blocks():  # each block scaled so λ weighs objectives
            n = float(comp.grads[rows].norm())
            w[rows] = weight / n if n > 0 else 0.0
        target = (w[:, None] * comp.grads).sum(0)  # direction of the weighted value components
        X, Y = torch.as_tensor(state.task.train.X), torch.as_tensor(state.task.train.y)
        out = []
        for s in range(0, len(Y), 4096):
            g = per_sample_grads(state.model, X[s : s + 4096], Y[s : s + 4096], scope=self.scope).double()
            out.append(value_features(g, target[None, :], lr=self.lr, kind="tracin")[0])
        sc = torch.cat(out)
        self.scores = sc if self.scores is None else self.scores + sc


def tracin_topk(task: Task, fraction: float, *, value: str = "accuracy+fairness", lam: float = 0.5,
                epochs: int = 10, lr: float = 3e-3, model: str = "mlp", scope: str = "last_layer",
                stratify: bool = False, seed: int = 0, return_scores: bool = False):
    """Keep the ``fraction`` of training points with the largest summed TracIn value (top-k).

    Parameters
    ----------
    task : Task
    fraction : float in (0, 1)
        Share of the training split to keep: ``round(fraction · n)`` points (at least one).
    value, lam
        The value function (see ``VALUE_FUNCTIONS``) and λ of a composite one.
    epochs, lr, model, scope, seed
        The ERM run whose checkpoints (one per epoch) give the scores.
    stratify : bool
        Rank within each class and keep each class's share of the split (largest-remainder
        rounding): the class-stratified variant. Plain top-k (``False``) ranks all points together.
    return_scores : bool
        Also return every training point's summed score (higher = more helpful).

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> task = load_german(seed=0)
    >>> idx = tracin_topk(task, 0.5, value="accuracy", epochs=1, stratify=True)
    >>> len(idx), round(float(task.train.y[idx].mean()), 2) == round(float(task.train.y.mean()), 2)
    (300, True)
    """
    from ._ssfr import label_sizes
    from ._vtrust import make_value_function

    check_fraction("fraction", fraction)
    check_int("epochs", epochs, minimum=1)
    if not isinstance(stratify, bool):
        raise TypeError(f"stratify must be True or False; got {stratify!r}")
    vf = make_value_function(task, value, lam=lam, seed=seed)
    cb = _Scores(vf, lr, scope)
    Trainer(model=model, epochs=epochs, lr=lr, seed=seed, callbacks=[cb], progress=False, metrics=["accuracy"]).fit(task)
    scores = cb.scores.numpy()
    k = max(1, int(round(fraction * len(task.train))))
    if not stratify:
        keep = np.argsort(-scores, kind="stable")[:k]
    else:
        y = task.train.y
        classes = np.unique(y)
        sizes = label_sizes([(y == c).sum() for c in classes], k)
        keep = np.concatenate([idx[np.argsort(-scores[idx], kind="stable")[:m]]
                               for c, m in zip(classes, sizes) for idx in [np.flatnonzero(y == c)]])
    keep = np.sort(keep)
    return (keep, scores) if return_scores else keep


def fairlearn_reference(task: Task, *, method: str = "expgrad", constraint: str = "equalized_odds", seed: int = 0) -> dict:
    """Test metrics of fairlearn's ExponentiatedGradient or ThresholdOptimizer (logistic regression).

    ``constraint`` is ``"equalized_odds"`` or ``"demographic_parity"``. Both return hard
    (randomised, seeded) predictions, so AUC and ECE are not reported.
    """
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    check_choice("method", method, ("expgrad", "threshold"))
    check_choice("constraint", constraint, ("equalized_odds", "demographic_parity"))
    if task.n_classes != 2 or not task.has_sensitive:
        raise ValueError("fairlearn references need a binary task with a sensitive attribute")
    tr, te = task.train, task.test
    Xtr, Xte = tr.X.astype(np.float64), te.X.astype(np.float64)
    base = LogisticRegression(max_iter=2000, random_state=seed)
    if method == "expgrad":
        cons = EqualizedOdds() if constraint == "equalized_odds" else DemographicParity()
        est = ExponentiatedGradient(base, constraints=cons)
        est.fit(Xtr, tr.y, sensitive_features=tr.a)
        pred = est.predict(Xte, random_state=seed)  # a randomised classifier: seeded draw
    else:
        est = ThresholdOptimizer(estimator=base, constraints=constraint, predict_method="predict_proba")
        est.fit(Xtr, tr.y, sensitive_features=tr.a)
        pred = est.predict(Xte, sensitive_features=te.a, random_state=seed)
    pred = np.asarray(pred).astype(int)
    metrics = [m for m in default_metrics(n_classes=2, has_sensitive=True) if m not in ("auc", "ece")]
    return compute_metrics(metrics, te.y, np.stack([1 - pred, pred], 1).astype(float), te.a)
