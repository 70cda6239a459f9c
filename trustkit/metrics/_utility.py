"""Utility metrics: accuracy, balanced accuracy, ROC AUC, F1, expected calibration error.

Each function takes numpy arrays, lists or torch tensors and returns a Python float. The maths is
written once in torch; the tests compare every function with scikit-learn or torchmetrics.
"""

from __future__ import annotations

import torch

from .._validation import check_int

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "f1_score",
    "expected_calibration_error",
    "positive_rate",
]


def _as_1d(name: str, x, dtype=None) -> torch.Tensor:
    t = torch.as_tensor(x)
    if dtype is not None:
        t = t.to(dtype)
    if t.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    return t


def _pair(y_true, y_pred) -> tuple[torch.Tensor, torch.Tensor]:
    yt = _as_1d("y_true", y_true, torch.long)
    yp = _as_1d("y_pred", y_pred, torch.long)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred must have the same length; got {len(yt)} and {len(yp)}")
    return yt, yp


def accuracy(y_true, y_pred) -> float:
    r"""Fraction of correct predictions, :math:`\frac{1}{n}\sum_i [\hat y_i = y_i]`.

    >>> accuracy([0, 1, 1, 0], [0, 1, 0, 0])
    0.75
    """
    yt, yp = _pair(y_true, y_pred)
    return float((yt == yp).double().mean())


def positive_rate(y_pred) -> float:
    """Fraction of predictions equal to 1 (catches a model collapsed to one class).

    >>> positive_rate([0, 1, 1, 1])
    0.75
    """
    return float((_as_1d("y_pred", y_pred, torch.long) == 1).double().mean())


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean of the per-class recalls over the classes present in ``y_true`` (as scikit-learn).

    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
    0.5
    """
    yt, yp = _pair(y_true, y_pred)
    classes = torch.unique(yt)
    recalls = torch.stack([(yp[yt == c] == c).double().mean() for c in classes])
    return float(recalls.mean())


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``x`` with ties given their average rank."""
    sorted_x, order = torch.sort(x.double(), stable=True)
    n = len(x)
    # boundaries of runs of equal values
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = sorted_x[1:] != sorted_x[:-1]
    run_id = torch.cumsum(new_run.long(), 0) - 1
    starts = torch.nonzero(new_run).squeeze(1).double()
    ends = torch.cat([starts[1:], torch.tensor([float(n)], dtype=torch.double)])
    avg = (starts + 1 + ends) / 2  # mean of ranks start+1 … end
    ranks = torch.empty(n, dtype=torch.double)
    ranks[order] = avg[run_id]
    return ranks


def roc_auc(y_true, scores) -> float:
    r"""Area under the ROC curve for binary labels, by the Mann–Whitney statistic.

    :math:`\mathrm{AUC} = \frac{\sum_{i: y_i=1} r_i - n_1(n_1+1)/2}{n_1 n_0}` with average ranks
    :math:`r_i` for ties, which equals scikit-learn's ``roc_auc_score``.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    yt = _as_1d("y_true", y_true, torch.long)
    s = _as_1d("scores", scores, torch.double)
    if yt.shape != s.shape:
        raise ValueError(f"y_true and scores must have the same length; got {len(yt)} and {len(s)}")
    n1 = int((yt == 1).sum())
    n0 = int((yt == 0).sum())
    if n1 + n0 != len(yt):
        raise ValueError("roc_auc needs binary labels (0/1)")
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc is undefined when y_true holds a single class")
    ranks = _average_ranks(s)
    return float((ranks[yt == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def f1_score(y_true, y_pred) -> float:
    """F1 of the positive class (label 1); 0 when there are no true or predicted positives.

    >>> f1_score([0, 1, 1, 0], [0, 1, 0, 1])
    0.5
    """
    yt, yp = _pair(y_true, y_pred)
    tp = float(((yt == 1) & (yp == 1)).sum())
    fp = float(((yt != 1) & (yp == 1)).sum())
    fn = float(((yt == 1) & (yp != 1)).sum())
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom


def expected_calibration_error(y_true, probs, *, n_bins: int = 15) -> float:
    r"""Top-label expected calibration error (Guo et al. 2017) with equal-width bins.

    :math:`\mathrm{ECE} = \sum_b \frac{|B_b|}{n}\,|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`, where the
    confidence is the largest class probability and bin ``b`` holds confidences in
    :math:`((b-1)/B, b/B]`. ``probs`` is ``(n, C)``, or ``(n,)`` holding P(y=1) of a binary model.

    >>> round(expected_calibration_error([1, 0, 1, 1], [0.9, 0.2, 0.6, 0.7], n_bins=10), 4)
    0.25
    """
    check_int("n_bins", n_bins, minimum=1)
    yt = _as_1d("y_true", y_true, torch.long)
    p = torch.as_tensor(probs, dtype=torch.double)
    if p.ndim == 1:
        p = torch.stack([1 - p, p], dim=1)
    if p.ndim != 2 or p.shape[0] != len(yt):
        raise ValueError(f"probs must be (n,) or (n, C) with n = len(y_true) = {len(yt)}; got {tuple(p.shape)}")
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probs must lie in [0, 1]")
    conf, pred = p.max(dim=1)
    correct = (pred == yt).double()
    idx = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    conf_sum = torch.zeros(n_bins, dtype=torch.double).scatter_add_(0, idx, conf)
    acc_sum = torch.zeros(n_bins, dtype=torch.double).scatter_add_(0, idx, correct)
    return float((acc_sum - conf_sum).abs().sum() / len(yt))
