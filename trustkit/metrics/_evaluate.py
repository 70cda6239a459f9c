"""Evaluate a model on a split with metrics named by string (the registry notebooks and records use)."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch

from .._validation import _suggest
from ._fairness import dp_gap, eo_gap, eopp_gap, sharing_group_rates
from ._robustness import predict_logits
from ._utility import (
    accuracy,
    balanced_accuracy,
    expected_calibration_error,
    f1_score,
    positive_rate,
    roc_auc,
)

__all__ = ["METRICS", "DEFAULT_METRICS", "evaluate", "compute_metrics", "check_metrics"]


class _Metric(NamedTuple):
    fn: Callable  # (y, probs (n, C), pred, a) -> float
    binary: bool
    sensitive: bool
    higher_is_better: bool


METRICS: dict[str, _Metric] = {
    "accuracy": _Metric(lambda y, p, yh, a: accuracy(y, yh), False, False, True),
    "error": _Metric(lambda y, p, yh, a: 1.0 - accuracy(y, yh), False, False, False),
    "balanced_accuracy": _Metric(lambda y, p, yh, a: balanced_accuracy(y, yh), False, False, True),
    "ece": _Metric(lambda y, p, yh, a: expected_calibration_error(y, p), False, False, False),
    "auc": _Metric(lambda y, p, yh, a: roc_auc(y, p[:, 1]), True, False, True),
    "f1": _Metric(lambda y, p, yh, a: f1_score(y, yh), True, False, True),
    "positive_rate": _Metric(lambda y, p, yh, a: positive_rate(yh), True, False, True),
    "dp_gap": _Metric(lambda y, p, yh, a: dp_gap(y, yh, a), True, True, False),
    "eo_gap": _Metric(lambda y, p, yh, a: eo_gap(y, yh, a, agg="worst_case"), True, True, False),
    "eo_gap_mean": _Metric(lambda y, p, yh, a: eo_gap(y, yh, a, agg="mean"), True, True, False),
    "eopp_gap": _Metric(lambda y, p, yh, a: eopp_gap(y, yh, a), True, True, False),
}
DEFAULT_METRICS = {
    "binary_sensitive": ("accuracy", "balanced_accuracy", "auc", "f1", "ece", "positive_rate",
                         "dp_gap", "eo_gap", "eo_gap_mean", "eopp_gap"),
    "binary": ("accuracy", "balanced_accuracy", "auc", "f1", "ece", "positive_rate"),
    "multiclass": ("accuracy", "balanced_accuracy", "ece"),
}


def check_metrics(names: Sequence[str], *, n_classes: int, has_sensitive: bool) -> tuple[str, ...]:
    """Validate metric names for a task; raise a ValueError naming what is allowed."""
    if isinstance(names, str):
        names = (names,)
    out = []
    for n in names:
        if n not in METRICS:
            raise ValueError(f"unknown metric {n!r}; allowed: {sorted(METRICS)}.{_suggest(n, METRICS)}")
        m = METRICS[n]
        if m.binary and n_classes != 2:
            raise ValueError(f"metric {n!r} needs a binary task; this task has {n_classes} classes")
        if m.sensitive and not has_sensitive:
            raise ValueError(f"metric {n!r} needs a sensitive attribute; this task has none")
        out.append(n)
    return tuple(out)


def default_metrics(*, n_classes: int, has_sensitive: bool) -> tuple[str, ...]:
    if n_classes != 2:
        return DEFAULT_METRICS["multiclass"]
    return DEFAULT_METRICS["binary_sensitive" if has_sensitive else "binary"]


def compute_metrics(names: Sequence[str], y, probs, a=None) -> dict[str, float]:
    """Compute named metrics from labels, class probabilities ``(n, C)`` and group values.

    ``y`` holds class labels ``0..C-1``; the predicted label is the argmax of ``probs``; ``a`` holds
    one group value per row (integer codes, strings, bools), as the fairness gaps take it.
    """
    probs = torch.as_tensor(probs, dtype=torch.double)
    names = check_metrics(names, n_classes=probs.shape[1], has_sensitive=a is not None)
    pred = probs.argmax(dim=1)
    with sharing_group_rates():  # the fairness gaps share one per-group count
        return {n: METRICS[n].fn(y, probs, pred, a) for n in names}


def evaluate(model: torch.nn.Module, split, *, metrics: Sequence[str] | None = None, batch_size: int = 2048,
             device=None) -> dict[str, float]:
    """Evaluate ``model`` on a :class:`~trustkit.data.Split` with named metrics.

    By default: accuracy, balanced accuracy, ECE, and for binary tasks AUC, F1, positive rate,
    and (with a sensitive attribute) the DP, EO (worst case and mean) and equal-opportunity gaps.

    The forward passes run on ``device`` (``None``: the device of the model's parameters, see
    :func:`~trustkit.metrics.predict_logits`); the metrics are computed on the CPU.

    Examples
    --------
    >>> import torch
    >>> from trustkit.data import load_german
    >>> from trustkit.metrics import evaluate
    >>> task = load_german(seed=0)
    >>> model = torch.nn.Linear(task.input_shape[0], 2)
    >>> sorted(evaluate(model, task.test, metrics=["accuracy", "dp_gap"]))
    ['accuracy', 'dp_gap']
    """
    logits = predict_logits(model, split.X, batch_size=batch_size, device=device)
    probs = torch.softmax(logits.double(), dim=1)
    if metrics is None:
        metrics = default_metrics(n_classes=probs.shape[1], has_sensitive=split.a is not None)
    return compute_metrics(metrics, split.y, probs, split.a)
