"""Data-centric explanations of a selected subset (VTruST §3.3).

* :func:`cf_gap` — counterfactual fairness gap ``|f(x) − f(x')|`` where ``x'`` is ``x`` with its
  sensitive attribute flipped (Garg et al. 2019's counterfactual token fairness, for tables). It
  needs the sensitive attribute among the model's inputs (``sensitive_as_feature=True``);
  otherwise the gap is 0 by construction and the function refuses.
* :func:`data_map` — per point, uncertainty (predictive entropy ``−Σ p log p``) and
  distinctiveness (mean Euclidean distance of its penultimate-layer features to the other points
  of the set), the two axes of the paper's data maps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data import Task
from ..metrics import predict_logits

__all__ = ["cf_gap", "data_map"]


def _sensitive_columns(task: Task) -> list[int]:
    if not task.has_sensitive:
        raise ValueError(f"task {task.name!r} has no sensitive attribute; the counterfactual gap is undefined")
    prefix = f"{task.sensitive}="
    cols = [i for i, f in enumerate(task.feature_names) if f.startswith(prefix)]
    if not task.sensitive_as_feature or len(cols) != len(task.group_names):
        raise ValueError(
            "cf_gap needs the sensitive attribute among the features (load the task with "
            "sensitive_as_feature=True); without it the model cannot see the attribute and the gap is 0"
        )
    if len(cols) != 2:
        raise ValueError(f"cf_gap flips a binary sensitive attribute; {task.sensitive!r} has {len(cols)} groups")
    return cols


def cf_gap(model: torch.nn.Module, task: Task, X=None) -> np.ndarray:
    """Per-point ``|P(y=1|x) − P(y=1|x')|`` with ``x'`` = ``x`` with the two sensitive one-hot columns swapped.

    ``X`` defaults to ``task.train.X``; pass e.g. ``task.train.X[selected]`` for a subset.
    """
    cols = _sensitive_columns(task)
    X = np.asarray(task.train.X if X is None else X, dtype=np.float32)
    Xf = X.copy()
    Xf[:, cols[0]], Xf[:, cols[1]] = X[:, cols[1]], X[:, cols[0]]
    p = torch.softmax(predict_logits(model, X), 1)[:, 1]
    pf = torch.softmax(predict_logits(model, Xf), 1)[:, 1]
    return (p - pf).abs().numpy()


@torch.no_grad()
def data_map(model: torch.nn.Module, X, *, max_reference: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Uncertainty and distinctiveness of each row of ``X`` (a selected set, say).

    Distinctiveness is the mean distance to (at most ``max_reference`` sampled) other points of
    the same set in the model's penultimate features; the model needs a ``features`` module.
    """
    if not hasattr(model, "features"):
        raise ValueError("data_map needs a model with a .features module (all trustkit models have one)")
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    was = model.training
    model.eval()
    try:
        p = torch.softmax(model(X), 1)
        feats = model.features(X)
    finally:
        model.train(was)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(1)
    ref = feats
    if len(feats) > max_reference:
        idx = torch.as_tensor(np.random.default_rng(seed).choice(len(feats), max_reference, replace=False))
        ref = feats[idx]
    d = torch.cdist(feats, ref)
    n_ref = ref.shape[0]
    # a point's distance to itself (0) is in d when it is among the references: average over the others
    distinct = d.sum(1) / max(n_ref - 1, 1) if n_ref == len(feats) else d.mean(1)
    return pd.DataFrame({"uncertainty": entropy.numpy(), "distinctiveness": distinct.numpy()})
