"""Validation signals of a run: the metrics and the robust accuracy each epoch, and their predicted cost."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch

from .._validation import check_int, check_positive
from ..data import Task
from ..metrics import adversarial_accuracy, attack_geometry, compute_metrics, evaluate, predict_logits

__all__ = ["RobustEval", "validate", "validation_cost"]


@dataclass(frozen=True)
class RobustEval:
    """How a run measures adversarial robustness: PGD accuracy at radius ``eps``.

    Each epoch on the first ``val_n`` validation points with ``val_steps`` steps (cheap; charged to
    the budget with the validation), and once at the end on the whole test split with ``test_steps``
    steps (the evaluation attack is stronger than a training attack). The value is
    ``robust_accuracy`` in the epoch's ``val`` and the run's ``test`` metrics.
    """

    eps: float
    val_steps: int = 5
    val_n: int = 512
    test_steps: int = 20

    def __post_init__(self):
        check_positive("eps", self.eps)
        check_int("val_steps", self.val_steps, minimum=1)
        check_int("val_n", self.val_n, minimum=1)
        check_int("test_steps", self.test_steps, minimum=1)

    def measure(self, model, task: Task, split: str, *, seed: int = 0, n: int | None = None) -> float:
        """PGD accuracy on ``split`` (validation: its first ``val_n`` points; ``n`` caps the count further).

        The attack runs on the device of the model's parameters.
        """
        s = task.split(split)
        X, y = (s.X[: self.val_n], s.y[: self.val_n]) if split == "val" else (s.X, s.y)
        if n is not None:
            X, y = X[:n], y[:n]
        bounds, mask = attack_geometry(task)
        steps = self.val_steps if split == "val" else self.test_steps
        return adversarial_accuracy(model, X, y, self.eps, attack="pgd", steps=steps, bounds=bounds, mask=mask, seed=seed)


def validate(trainer, model, task: Task, metrics) -> dict:
    """The validation signals of an epoch: the metrics, and PGD accuracy with a RobustEval."""
    val = evaluate(model, task.val, metrics=metrics)
    if trainer.robust_eval is not None:
        val["robust_accuracy"] = trainer.robust_eval.measure(model, task, "val", seed=trainer.seed)
    return val


def validation_cost(trainer, model, task: Task, metrics, *, left_s: float) -> float:
    """Predicted seconds of one validation, measured on one batch instead of the whole split.

    A validation runs the model over the split in batches (and the robust evaluation attacks
    its points batch by batch), so its time is the time of one full batch times the number of
    batches (the last, partial batch counted as a full one: an over-estimate). A batch is first
    timed on 16 points; if a full batch would not fit in the ``left_s`` seconds the budget has
    left, that small timing scaled to the split is the (over-)estimate, and no more is spent.
    The metrics are computed once on the whole split with stand-in probabilities (their cost
    does not depend on the model).
    """
    val = task.val
    n = len(val)

    def timed(run, k: int) -> float:
        t0 = time.perf_counter()
        run(k)
        return time.perf_counter() - t0

    def batched(run, total: int, batch: int) -> float:
        k = min(total, batch)
        small = min(k, 16)
        dt = timed(run, small)
        if small < k and dt * k / small > left_s:
            return dt * total / small
        if small < k:
            dt = timed(run, k)
        return dt * math.ceil(total / k)

    probs = torch.full((n, task.n_classes), 1.0 / task.n_classes, dtype=torch.double)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compute_metrics(metrics, val.y, probs, val.a)
    cost = time.perf_counter() - t0
    eval_batch = evaluate.__kwdefaults__["batch_size"]
    cost += batched(lambda k: predict_logits(model, val.X[:k], batch_size=eval_batch), n, eval_batch)
    if trainer.robust_eval is not None:
        re = trainer.robust_eval
        cost += batched(lambda k: re.measure(model, task, "val", seed=trainer.seed, n=k), min(n, re.val_n),
                        adversarial_accuracy.__kwdefaults__["batch_size"])
    return cost
