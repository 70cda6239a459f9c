"""Baselines for subset selection, on the same split and model as VTruST.

* :func:`random_subset` — the same number of points drawn uniformly (stratified by label × group).
* :func:`tracin_topk` — score every training point by its summed first-order value features
  (TracIn, Pruthi et al. 2020) over the epochs of one ERM run and keep the top fraction: the
  "gradient matching / TracIn top-k" selection, with the same value functions as VTruST.
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
                seed: int = 0) -> np.ndarray:
    """Keep the ``fraction`` of training points with the largest summed TracIn value (top-k)."""
    from ._vtrust import make_value_function

    check_fraction("fraction", fraction)
    check_int("epochs", epochs, minimum=1)
    vf = make_value_function(task, value, lam=lam, seed=seed)
    cb = _Scores(vf, lr, scope)
    Trainer(model=model, epochs=epochs, lr=lr, seed=seed, callbacks=[cb], progress=False, metrics=["accuracy"]).fit(task)
    k = max(1, int(round(fraction * len(task.train))))
    return np.sort(torch.argsort(cb.scores, descending=True)[:k].numpy())


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
