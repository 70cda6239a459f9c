"""What a run records (per epoch and whole) and what callbacks see while it runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping

import pandas as pd
import torch

from ..budget import Budget, Meter
from ..data import Task
from ._terms import Batch
from ._validation import RobustEval

__all__ = ["Callback", "TrainState", "EpochRecord", "RunRecord"]


class Callback:
    """Hooks the trainer calls; a scheduler is a callback that changes ``state.weights``.

    Override any of the methods. Setting ``state.stop = True`` ends the run after the current epoch.
    """

    def on_fit_start(self, state: "TrainState") -> None:
        pass

    def on_epoch_start(self, state: "TrainState") -> None:
        pass

    def on_epoch_end(self, state: "TrainState", record: "EpochRecord") -> None:
        pass

    def on_step_end(self, state: "TrainState", batch: Batch, parts: Mapping[str, torch.Tensor]) -> None:
        """After each optimiser step; ``parts`` holds the (detached) value of each active term."""


@dataclass
class EpochRecord:
    """What one epoch did and cost (costs are cumulative since the start of the run)."""

    epoch: int
    steps: int
    train_loss: float
    val: dict
    weights: dict
    time_s: float
    epoch_time_s: float
    eval_time_s: float
    peak_memory_mb: float
    flops: int
    partial: bool = False
    fractions: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    term_time_s: dict = field(default_factory=dict)
    callback_s: float = 0.0
    grad_norm: float = float("nan")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RunRecord:
    """The tidy result of a run: config, per-epoch records, test metrics and costs."""

    task: str
    seed: int
    config: dict
    epochs: list[EpochRecord]
    test: dict
    usage: dict
    budget: dict
    budget_fraction: dict
    stopped_by: str
    over_budget: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def completed_epochs(self) -> int:
        return sum(1 for e in self.epochs if not e.partial)

    @property
    def trained(self) -> bool:
        """Whether the run trained: at least one epoch (or slice of steps) completed. A run whose
        budget held no step, or stopped inside its first epoch, is not trained: its test metrics
        are those of (nearly) the random initialisation, and comparisons leave it out."""
        return self.completed_epochs >= 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["completed_epochs"] = self.completed_epochs
        d["trained"] = self.trained
        return d

    def epochs_frame(self) -> pd.DataFrame:
        """One row per epoch with the validation metrics flattened to ``val_<name>`` columns."""
        rows = []
        for e in self.epochs:
            row = {k: v for k, v in e.to_dict().items()
                   if k not in ("val", "weights", "fractions", "settings", "term_time_s")}
            row.update({f"val_{k}": v for k, v in e.val.items()})
            row.update({f"w_{k}": v for k, v in e.weights.items()})
            row.update({f"frac_{k}": v for k, v in e.fractions.items()})
            row.update({f"time_{k}_s": v for k, v in e.term_time_s.items()})
            row.update({f"{k}": v for k, v in e.settings.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        """One flat row: task, seed, test metrics, costs, and what stopped the run."""
        row = {"task": self.task, "seed": self.seed, "model": self.config.get("model")}
        row.update(self.test)
        row.update({
            "epochs": self.completed_epochs,
            "time_s": self.usage["time_s"],
            "peak_memory_mb": self.usage["peak_memory_mb"],
            "est_memory_mb": self.usage["est_memory_mb"],
            "params": self.usage["params"],
            "gflops": self.usage["flops"] / 1e9,
            "callback_s": sum(e.callback_s for e in self.epochs),
            "threads": self.usage.get("threads"),
            "stopped_by": self.stopped_by,
        })
        return row


@dataclass
class TrainState:
    """The mutable state callbacks see: the model, the term weights, the history and the meter.

    ``metrics`` names what each epoch's ``val`` record holds (``robust_accuracy`` included when the
    trainer has a :class:`RobustEval`), so a scheduler can check at the start of a run that the
    signals it reads will be there.
    """

    task: Task
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    weights: dict
    budget: Budget
    meter: Meter
    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    stop: bool = False
    terms: dict = field(default_factory=dict)
    fractions: dict = field(default_factory=dict)
    trial: Callable | None = None
    robust_eval: RobustEval | None = None
    max_epochs: int = 0
    batch_size: int = 128
    steps_per_epoch: int = 0
    metrics: tuple = ()

    def progress(self) -> float:
        """Share of the run used so far: of the time budget if there is one, else of the epochs."""
        if self.budget.time_s is not None:
            return min(1.0, self.meter.elapsed_s / self.budget.time_s)
        return min(1.0, (self.epoch - 1) / max(1, self.max_epochs))

    def trial_epoch(self, weights: Mapping[str, float], *, fractions: Mapping[str, float] | None = None,
                    settings: Mapping[str, Mapping] | None = None) -> dict:
        """Train one epoch on a copy of the model with other choices; return its validation metrics.

        The copy sees the exact batches of the next real epoch. Its time is excluded from the
        budget (it is what an oracle knows, not what a method may spend) and reported in
        ``usage["excluded_s"]``; the real model, optimiser and terms are left untouched.
        ``settings`` maps a term name to attributes to set on the copy's term (e.g.
        ``{"rob": {"steps": 1}}``).
        """
        if self.trial is None:
            raise RuntimeError("trial_epoch is only available while a Trainer runs")
        return self.trial(dict(weights), dict(fractions or {}), dict(settings or {}))

    def remaining(self) -> dict:
        """Budget left per limit (``None`` where unlimited)."""
        u = self.meter.usage
        b = self.budget
        return {
            "time_s": None if b.time_s is None else b.time_s - u.time_s,
            "flops": None if b.flops is None else b.flops - u.flops,
            "memory_mb": None if b.memory_mb is None else b.memory_mb - u.peak_memory_mb,
        }
