"""Utility metrics: accuracy, balanced accuracy, ROC AUC, F1, expected calibration error.

Each function takes numpy arrays, lists, pandas Series or torch tensors and returns a Python float.
The maths is written once in torch; the tests compare every function with scikit-learn or
torchmetrics.

Metrics of predicted labels (:func:`accuracy`, :func:`balanced_accuracy`, :func:`f1_score`,
:func:`positive_rate`, and the fairness gaps of :mod:`trustkit.metrics`) take labels only: integer
class labels ``0..K-1`` (``0/1`` for the binary metrics), as ints, bools or whole-number floats.
Probabilities or scores are refused with a ``ValueError`` rather than truncated to 0; threshold
them first, e.g. ``(p >= 0.5)``, or take the argmax of class scores. :func:`roc_auc` takes scores
and :func:`expected_calibration_error` takes probabilities.
"""

from __future__ import annotations

import numpy as np
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

_LABEL_HINT = "Threshold probabilities first, e.g. (p >= 0.5), or take the argmax of class scores"


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _column(name: str, arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` as a non-empty 1-D array (an ``(n, 1)`` column is flattened)."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional ({what} per row); got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _labels(name: str, x, *, binary: bool = False, n_classes: int | None = None) -> torch.Tensor:
    """``x`` as a 1-D long tensor of class labels; a ValueError for anything that is not a label.

    Labels are integers ``0..K-1`` (``0/1`` when ``binary``; ``K = n_classes`` when given), held as
    ints, bools or whole-number floats. Fractional, infinite or NaN values, negative values, values
    past the label set, and non-numbers are refused.
    """
    if binary:
        allowed = "binary labels (0/1)"
    elif n_classes is not None:
        allowed = f"class labels (integers 0..{n_classes - 1})"
    else:
        allowed = "class labels (integers 0..K-1)"
    arr = _column(name, _to_numpy(x), "one label")
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be {allowed}; got non-numeric values such as {arr[0]!r}") from None
    kind = arr.dtype.kind
    if kind == "b":
        arr = arr.astype(np.int64)
    elif kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise ValueError(
                f"{name} must be {allowed}; got non-integer values such as {arr[bad][0].item()!r}. {_LABEL_HINT}"
            )
        arr = arr.astype(np.int64)
    elif kind not in "iu":
        raise ValueError(f"{name} must be {allowed}; got values of dtype {arr.dtype} such as {arr[0].item()!r}")
    hi = 1 if binary else (None if n_classes is None else n_classes - 1)
    out = (arr < 0) | (arr > hi) if hi is not None else arr < 0
    if out.any():
        raise ValueError(f"{name} must be {allowed}; got {arr[out][0].item()!r}")
    return torch.from_numpy(arr.astype(np.int64))


def _floats(name: str, x) -> torch.Tensor:
    """``x`` (scores or probabilities) as a double tensor; a ValueError naming ``name`` otherwise."""
    try:
        return torch.as_tensor(_to_numpy(x).astype(np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers; got {type(x).__name__} that does not convert to float") from None


def _pair(y_true, y_pred, *, binary: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    yt = _labels("y_true", y_true, binary=binary)
    yp = _labels("y_pred", y_pred, binary=binary)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred must have the same length; got {len(yt)} and {len(yp)}")
    return yt, yp


def accuracy(y_true, y_pred) -> float:
    r"""Fraction of correct predictions, :math:`\frac{1}{n}\sum_i [\hat y_i = y_i]`.

    ``y_true`` and ``y_pred`` hold class labels ``0..K-1``; probabilities are refused (threshold
    them first, e.g. ``(p >= 0.5)``, or take the argmax of class scores).

    >>> accuracy([0, 1, 1, 0], [0, 1, 0, 0])
    0.75
    >>> accuracy([0, 1], [0.2, 0.9])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: y_pred must be class labels (integers 0..K-1); got non-integer values such as 0.2. Threshold ...
    """
    yt, yp = _pair(y_true, y_pred)
    return float((yt == yp).double().mean())


def positive_rate(y_pred) -> float:
    """Fraction of predictions equal to 1 (catches a model collapsed to one class).

    ``y_pred`` holds binary labels 0/1.

    >>> positive_rate([0, 1, 1, 1])
    0.75
    """
    return float((_labels("y_pred", y_pred, binary=True) == 1).double().mean())


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean of the per-class recalls over the classes present in ``y_true`` (as scikit-learn).

    ``y_true`` and ``y_pred`` hold class labels ``0..K-1``.

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
    yt = _labels("y_true", y_true, binary=True)
    s = _floats("scores", scores)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise ValueError(
            f"scores must be one-dimensional (one score per row; of (n, 2) class probabilities pass "
            f"probs[:, 1]); got shape {tuple(s.shape)}"
        )
    if yt.shape != s.shape:
        raise ValueError(f"y_true and scores must have the same length; got {len(yt)} and {len(s)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError("scores must be finite numbers (no NaN or infinity)")
    n1 = int((yt == 1).sum())
    n0 = int((yt == 0).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc is undefined when y_true holds a single class")
    ranks = _average_ranks(s)
    return float((ranks[yt == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def f1_score(y_true, y_pred) -> float:
    """F1 of the positive class (label 1); 0 when there are no true or predicted positives.

    ``y_true`` and ``y_pred`` hold binary labels 0/1 (scikit-learn's ``f1_score`` with
    ``zero_division=0``).

    >>> f1_score([0, 1, 1, 0], [0, 1, 0, 1])
    0.5
    """
    yt, yp = _pair(y_true, y_pred, binary=True)
    tp = float(((yt == 1) & (yp == 1)).sum())
    fp = float(((yt != 1) & (yp == 1)).sum())
    fn = float(((yt == 1) & (yp != 1)).sum())
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom


def expected_calibration_error(y_true, probs, *, n_bins: int = 15) -> float:
    r"""Top-label expected calibration error (Guo et al. 2017) with equal-width bins.

    :math:`\mathrm{ECE} = \sum_b \frac{|B_b|}{n}\,|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|`, where the
    confidence is the largest class probability and bin ``b`` holds confidences in
    :math:`((b-1)/B, b/B]` (a confidence of exactly 1 falls in the last bin). ``probs`` is
    ``(n, C)``, or ``(n,)`` holding P(y=1) of a binary model; ``y_true`` holds class labels
    ``0..C-1``. torchmetrics' ``multiclass_calibration_error`` agrees except for confidences that
    lie exactly on a bin edge, which it puts in the bin above.

    >>> round(expected_calibration_error([1, 0, 1, 1], [0.9, 0.2, 0.6, 0.7], n_bins=10), 4)
    0.25
    """
    check_int("n_bins", n_bins, minimum=1)
    p = _floats("probs", probs)
    if p.ndim == 1:
        p = torch.stack([1 - p, p], dim=1)
    yt = _labels("y_true", y_true, n_classes=p.shape[1] if p.ndim == 2 else None)
    if p.ndim != 2 or p.shape[0] != len(yt):
        raise ValueError(f"probs must be (n,) or (n, C) with n = len(y_true) = {len(yt)}; got {tuple(p.shape)}")
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError("probs must lie in [0, 1] (no NaN)")
    conf, pred = p.max(dim=1)
    correct = (pred == yt).double()
    idx = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    conf_sum = torch.zeros(n_bins, dtype=torch.double).scatter_add_(0, idx, conf)
    acc_sum = torch.zeros(n_bins, dtype=torch.double).scatter_add_(0, idx, correct)
    return float((acc_sum - conf_sum).abs().sum() / len(yt))
