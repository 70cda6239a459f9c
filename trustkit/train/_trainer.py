"""One training loop for every method: a loss composed of weighted terms, callbacks each epoch,
and a :class:`~trustkit.budget.Budget` that is measured and honoured.

How the budget is honoured
--------------------------
* ``max_params`` is checked before training (a ``ValueError`` names the model's count).
* ``flops``: the FLOPs of a step are counted *before* it runs, on a copy of the model on the meta
  device (no compute), and cached per (batch size, active terms). A step that would cross the
  limit is not taken.
* ``time_s`` covers everything the run does to train and to decide: building the model, counting
  step costs, estimating the validation's cost, training steps, per-epoch validation (with the
  robust evaluation) and the callbacks' (schedulers') work. The clock starts when :meth:`Trainer.fit`
  begins; only the final report on the test split is outside it. Before each step the trainer
  predicts the step's time (the slowest of the recent steps of its kind) plus the time of the
  closing validation and the epoch's scheduler hooks (the last ones, +25%; before the first
  validation, one batch of it timed and multiplied by the number of batches); a step that would
  not fit is not taken, and a run whose validation alone would not fit takes no step.
  A new kind of step (a scheduler switched a term or the attack on) is first counted on the meta
  device, which takes real time: that is predicted too (the slowest such count so far, +25%).
  Wall-clock time is noisy on a shared machine, so a run can still overshoot by a little; the
  record flags it (``over_budget``) and ``benchmarks/budget_adherence.py`` measures how often.
* ``memory_mb`` is checked before training against the estimated footprint of a step (parameters,
  gradients, optimiser state, and the activations autograd saves, counted on the meta device), and
  after each step against the measured peak RSS increase over the run's start; the run stops at the
  first step over the cap and the record flags it. RSS is host memory: on a GPU (``device="cuda"``)
  the measured side counts host memory only, not the accelerator's.

Every record says what was used, what fraction of each limit that is, and what stopped the run.
``usage`` holds the budgeted time (``time_s``), the whole wall time of :meth:`Trainer.fit` from call
to return (``wall_s``), the time of the final test report (``report_s``), the slowest training step
(``max_step_s``) and ``excluded_s``: time an :class:`~trustkit.train.OracleScheduler` spent trying
allocations on copies of the model (what an oracle knows, not what a method may spend; zero for
every other scheduler). So ``wall_s - report_s - excluded_s`` is the budgeted time plus a few
milliseconds of argument checking and record keeping.

What a scheduler may change between epochs (see :mod:`trustkit.train._schedulers`)
------------------------------------------------------------------------------------
``state.weights`` (the λ of each term), ``state.fractions`` (the share of the epoch's steps on
which a term is switched on, spread evenly; a term that is off is neither computed nor charged),
and the settings of the terms themselves (``state.terms["rob"].steps``, ``.attack``; the cell
weights of ``state.terms["ce"]``). The trainer charges what was actually done: step costs are
cached per (batch size, active terms and their cost keys), step times are predicted per such key
(a new key from its FLOPs and the slowest time per FLOP seen), and each epoch records the time spent
in steps with each term on (``term_time_s``) and the time the callbacks took (``callback_s``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
# The first optimiser a process builds imports torch._dynamo (about 1-2 s on 2 cores): a one-off
# cost of the process, not of a run. Importing it with the trainer keeps it out of every budget.
import torch._dynamo  # noqa: F401

from .._validation import _suggest, check_int, check_positive, resolve_device
from ..budget import Budget, Meter, StepCost, count_params, meta_copy, step_cost
from ..data import Task
from ..metrics import (
    adversarial_accuracy,
    attack_geometry,
    check_metrics,
    compute_metrics,
    default_metrics,
    evaluate,
    predict_logits,
)
from ..models import make_model
from ._terms import Batch, CrossEntropy, LossTerm

__all__ = ["Trainer", "Callback", "TrainState", "EpochRecord", "RunRecord", "RobustEval", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "adamw", "sgd")
_BOOKKEEPING_S = 0.005


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


class _Batches:
    """Row indices of the mini-batches: a fresh seeded permutation per pass over the data.

    With ``epoch_steps=None`` an epoch is one pass (a new permutation at each epoch start). With
    ``epoch_steps=k`` an "epoch" is a slice of k steps that continues where the last one stopped,
    drawing a new permutation when a pass ends (schedulers then decide every k steps).
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch_steps: int | None, device=None):
        self.n, self.bs, self.epoch_steps = n, batch_size, epoch_steps
        self.device = torch.device("cpu") if device is None else device
        self.gen = torch.Generator().manual_seed(seed)
        self.perm: torch.Tensor | None = None
        self.cursor = 0

    @property
    def steps(self) -> int:
        return self.epoch_steps if self.epoch_steps is not None else math.ceil(self.n / self.bs)

    def start_epoch(self) -> None:
        if self.epoch_steps is None:
            self.perm, self.cursor = None, 0

    def next(self) -> torch.Tensor:
        if self.perm is None or self.cursor >= self.n:
            # drawn on the CPU (the same order on every device), moved once per pass
            self.perm, self.cursor = torch.randperm(self.n, generator=self.gen).to(self.device), 0
        idx = self.perm[self.cursor : self.cursor + self.bs]
        self.start = self.cursor
        self.cursor += self.bs
        return idx

    def clone(self) -> "_Batches":
        c = _Batches(self.n, self.bs, 0, self.epoch_steps, self.device)
        c.gen.set_state(self.gen.get_state())
        c.perm, c.cursor = self.perm, self.cursor
        return c


# FLOPs and saved bytes of a kind of step of a built-in model, and the seconds counting them took
_STEP_COSTS: dict = {}


class Trainer:
    """Empirical risk minimisation (and, through terms and callbacks, everything built on it) under a budget.

    Parameters
    ----------
    model : str or callable
        ``"mlp"``, ``"cnn"``, ``"resnet18"``, or a callable ``(task, seed) -> nn.Module``.
    terms : sequence of LossTerm, optional
        Terms of the loss; default ``[CrossEntropy()]``.
    weights : mapping, optional
        Initial weight of each term by name (default 1.0 each). A term with weight 0 is skipped
        (not computed, not charged).
    optimizer : {"adam", "adamw", "sgd"}
    lr, weight_decay, batch_size, epochs
        The usual; ``epochs`` is the most the run will do if the budget allows.
    epoch_steps : int, optional
        Make an "epoch" a slice of this many steps instead of a pass over the data: validation,
        records and scheduler decisions then happen every ``epoch_steps`` steps.
    budget : Budget, optional
        Hard limits; default unlimited.
    seed : int
        Seeds the model's initialisation, the shuffling and dropout.
    metrics : sequence of str, optional
        Metrics computed on validation each epoch and on test at the end; default by task.
    callbacks : sequence of Callback
    model_kwargs : mapping
        Extra arguments of the model constructor (e.g. ``hidden=128``).
    robust_eval : RobustEval, optional
        Measure PGD accuracy on validation each epoch and on test at the end (``robust_accuracy``);
        schedulers that target robustness need it.
    progress : bool
        Show a tqdm bar over epochs.
    device : {"cpu", "cuda", "cuda:N", "mps", "auto"} or torch.device
        Where training and evaluation run (default ``"cpu"``; ``"auto"`` is CUDA when available,
        else the CPU). The model and the training split are moved there once before the first step;
        validation and the test report run there too, and ``model_`` stays there. A device this
        machine lacks is a ``ValueError`` listing the ones it has. FLOPs are still counted on the
        meta device, and ``Budget.memory_mb`` is checked against host memory (RSS) only.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> from trustkit.budget import Budget
    >>> from trustkit.train import Trainer
    >>> task = load_german(seed=0)
    >>> record = Trainer(model="mlp", epochs=3, budget=Budget(time_s=30), seed=0, progress=False).fit(task)
    >>> record.completed_epochs, record.stopped_by, 0 < record.test["accuracy"] <= 1
    (3, 'epochs', True)
    """

    def __init__(
        self,
        *,
        model: str | Callable = "mlp",
        terms: Sequence[LossTerm] | None = None,
        weights: Mapping[str, float] | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        epochs: int = 20,
        epoch_steps: int | None = None,
        budget: Budget | None = None,
        seed: int = 0,
        metrics: Sequence[str] | None = None,
        callbacks: Iterable[Callback] = (),
        model_kwargs: Mapping | None = None,
        robust_eval: RobustEval | None = None,
        progress: bool = True,
        device="cpu",
    ):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {list(OPTIMIZERS)}.{_suggest(optimizer, OPTIMIZERS)}")
        if not (isinstance(model, str) or callable(model)):
            raise TypeError(f"model must be a model name or a callable (task, seed) -> nn.Module; got {type(model).__name__}")
        check_positive("lr", lr)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.epochs = check_int("epochs", epochs, minimum=1)
        self.epoch_steps = None if epoch_steps is None else check_int("epoch_steps", epoch_steps, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(f"budget must be a trustkit.budget.Budget; got {type(budget).__name__}")
        self.budget = budget or Budget()
        self.terms = list(terms) if terms is not None else [CrossEntropy()]
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"loss terms must have distinct names; got {names}")
        self.weights = {n: 1.0 for n in names}
        for k, v in dict(weights or {}).items():
            if k not in self.weights:
                raise ValueError(f"weights names an unknown term {k!r}; terms are {names}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"weight of term {k!r} must be a finite number >= 0; got {v}")
            self.weights[k] = float(v)
        self.model = model
        self.model_kwargs = dict(model_kwargs or {})
        self.optimizer = optimizer
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.metrics = None if metrics is None else tuple(metrics)
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be trustkit.train.Callback instances (schedulers are); got {type(cb).__name__}")
        if robust_eval is not None and not isinstance(robust_eval, RobustEval):
            raise TypeError(f"robust_eval must be a trustkit.train.RobustEval; got {type(robust_eval).__name__}")
        self.robust_eval = robust_eval
        self.progress = progress
        self.device = resolve_device(device)

    # -- building blocks -------------------------------------------------------------------
    def config(self, task: Task) -> dict:
        return {
            "model": self.model if isinstance(self.model, str) else getattr(self.model, "__name__", "custom"),
            "model_kwargs": self.model_kwargs,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "epoch_steps": self.epoch_steps,
            "terms": [repr(t) for t in self.terms],
            "weights": dict(self.weights),
            "seed": self.seed,
            "budget": self.budget.to_dict(),
            "task": task.name,
            "task_seed": task.seed,
            "sensitive": task.sensitive,
            "callbacks": [repr(c) if type(c).__repr__ is not object.__repr__ else type(c).__name__ for c in self.callbacks],
            "robust_eval": None if self.robust_eval is None else dataclasses.asdict(self.robust_eval),
            "device": str(self.device),
        }

    def build_model(self, task: Task) -> torch.nn.Module:
        if isinstance(self.model, str):
            return make_model(self.model, input_shape=task.input_shape, n_classes=task.n_classes,
                              seed=self.seed, **self.model_kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self.model(task, self.seed)

    def _make_optimizer(self, model, *, fused: bool = False) -> torch.optim.Optimizer:
        """The optimiser over ``model``'s parameters (or an iterable of tensors); ``fused``: one
        kernel per step for all tensors (the same update, rounded in another order)."""
        params = model.parameters() if isinstance(model, torch.nn.Module) else model
        kw = {"fused": True} if fused else {}
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, **kw)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay, **kw)
        return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay, **kw)

    def _loss(self, model, batch: Batch, weights: Mapping[str, float], terms=None) -> tuple[torch.Tensor, dict]:
        logits = model(batch.x)
        active = [t for t in (self.terms if terms is None else terms) if weights.get(t.name, 0.0)]
        if len(active) == 1 and weights[active[0].name] == 1.0:  # one term at weight 1 (ERM): the loss is that term
            value = active[0](model, batch, logits)
            return value, {active[0].name: value.detach()}
        total = logits.new_zeros(())
        parts = {}
        for term in self.terms if terms is None else terms:
            w = weights.get(term.name, 0.0)
            if w:
                value = term(model, batch, logits)
                parts[term.name] = value.detach()
                total = total + w * value
        return total, parts

    def _cost_key(self, batch: Batch, weights) -> tuple:
        return (len(batch.y), tuple(sorted((t.name, getattr(t, "cost_key", ())) for t in self.terms
                                           if weights.get(t.name, 0.0))))

    @staticmethod
    def _active(weights: Mapping[str, float], fractions: Mapping[str, float], s: int) -> Mapping[str, float]:
        """The weights of step ``s`` of an epoch: a term with fraction f is on for an even f-share of steps."""
        if all(f >= 1.0 for f in fractions.values()):  # every term on every step: the weights as they are
            return weights
        out = {}
        for k, w in weights.items():
            f = fractions.get(k, 1.0)
            on = f >= 1.0 or (f > 0.0 and math.floor((s + 1) * f) > math.floor(s * f))
            out[k] = w if on else 0.0
        return out

    def _step_cost(self, model, batch: Batch, weights, cache: dict) -> StepCost | None:
        """FLOPs and saved-activation bytes of one step, from a dry run on the meta device (cached
        per run, and per process for a built-in model: the count depends only on the architecture,
        the batch's shape and the terms on, so a second run of the same kind does not pay it)."""
        key = self._cost_key(batch, weights)
        shared = None
        if key not in cache and isinstance(self.model, str):
            shared = (repr(model), tuple(batch.x.shape), batch.x.dtype, batch.a is None,
                      tuple(repr(t) for t in self.terms if weights.get(t.name, 0.0)))
            if shared in _STEP_COSTS:
                cache[key], seconds = _STEP_COSTS[shared]
                self._dry_run_s = max(self._dry_run_s, seconds)
                return cache[key]
        if key not in cache:
            t0 = time.perf_counter()
            try:
                mm = meta_copy(model)
                mb = Batch(
                    x=torch.empty(batch.x.shape, device="meta"),
                    y=torch.zeros(batch.y.shape, dtype=torch.long, device="meta"),
                    a=None if batch.a is None else torch.zeros(batch.a.shape, dtype=torch.long, device="meta"),
                    idx=torch.zeros(batch.idx.shape, dtype=torch.long, device="meta"),
                )
                cache[key] = step_cost(lambda: self._loss(mm, mb, weights)[0].backward())
            except Exception:  # a term the meta device cannot run: count the real step instead
                cache[key] = None
            seconds = time.perf_counter() - t0
            self._dry_run_s = max(self._dry_run_s, seconds)
            if shared is not None and len(_STEP_COSTS) < 4096:
                _STEP_COSTS[shared] = (cache[key], seconds)
        return cache[key]

    # -- the loop --------------------------------------------------------------------------
    def fit(self, task: Task) -> RunRecord:
        """Train on ``task.train`` under the budget; validate each epoch; test once at the end."""
        t_call = time.perf_counter()
        if not isinstance(task, Task):
            raise TypeError(f"task must be a trustkit.data.Task; got {type(task).__name__}")
        metrics = (check_metrics(self.metrics, n_classes=task.n_classes, has_sensitive=task.has_sensitive)
                   if self.metrics is not None else default_metrics(n_classes=task.n_classes, has_sensitive=task.has_sensitive))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            record = self._fit(task, metrics)
        record.usage["wall_s"] = time.perf_counter() - t_call
        record.usage["threads"] = torch.get_num_threads()
        return record

    def _validate(self, model, task: Task, metrics) -> dict:
        val = evaluate(model, task.val, metrics=metrics)
        if self.robust_eval is not None:
            val["robust_accuracy"] = self.robust_eval.measure(model, task, "val", seed=self.seed)
        return val

    def _validation_cost(self, model, task: Task, metrics, *, left_s: float) -> float:
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
        if self.robust_eval is not None:
            re = self.robust_eval
            cost += batched(lambda k: re.measure(model, task, "val", seed=self.seed, n=k), min(n, re.val_n),
                            adversarial_accuracy.__kwdefaults__["batch_size"])
        return cost

    def _train_step(self, model, optimizer, batch: Batch, weights) -> tuple[torch.Tensor, dict]:
        optimizer.zero_grad(set_to_none=True)
        loss, parts = self._loss(model, batch, weights)
        loss.backward()
        optimizer.step()
        return loss, parts

    def _fit(self, task: Task, metrics: tuple[str, ...]) -> RunRecord:
        # the budget's clock starts here: building the model, counting step costs, estimating the
        # validation's cost, training, validating and the callbacks' work are all charged to it
        meter = Meter().start()
        try:
            return self._run(task, metrics, meter)
        finally:
            meter.stop()

    def _run(self, task: Task, metrics: tuple[str, ...], meter: Meter) -> RunRecord:
        budget = self.budget
        device = self.device
        model = self.build_model(task).to(device)
        n_params = count_params(model)
        if budget.max_params is not None and n_params > budget.max_params:
            raise ValueError(
                f"the model has {n_params:,} parameters, more than Budget.max_params={budget.max_params:,}; "
                "choose a smaller model (e.g. model_kwargs={'hidden': ...}) or raise the limit"
            )
        if task.train.a is None and any(t.name == "fair" for t in self.terms):
            raise ValueError("the fairness term needs a sensitive attribute; task "
                             f"{task.name!r} has none (load it with sensitive=... or drop the term)")
        optimizer = self._make_optimizer(model)
        for t in self.terms:
            if hasattr(t, "bind"):
                t.bind(task)
            if hasattr(t, "reset"):
                t.reset(self.seed)
        # the training split moves to the device once; every batch is then a slice there
        X = torch.as_tensor(task.train.X).to(device)
        y = torch.as_tensor(task.train.y).to(device)
        a = None if task.train.a is None else torch.as_tensor(task.train.a).to(device)
        n = len(y)
        batches = _Batches(n, self.batch_size, self.seed, self.epoch_steps, device)
        steps_per_epoch = batches.steps
        meter.params = n_params
        flops_cache: dict = {}

        def batch_at(idx) -> Batch:
            return Batch(x=X[idx], y=y[idx], a=None if a is None else a[idx], idx=idx)

        # the split is gathered in each pass's order once (one copy, when it is under 256 MB and no
        # memory limit is measured), so a batch is a contiguous slice instead of three gathers per step
        passes = {"perm": None}
        copy_ok = budget.memory_mb is None and X.element_size() * X.numel() <= 256 * 1024 * 1024

        def next_batch() -> Batch:
            idx = batches.next()
            if not copy_ok:
                return batch_at(idx)
            if passes["perm"] is not batches.perm:
                p = batches.perm
                passes.update(perm=p, X=X[p], y=y[p], a=None if a is None else a[p])
            lo, hi = batches.start, batches.start + len(idx)
            return Batch(x=passes["X"][lo:hi], y=passes["y"][lo:hi],
                         a=None if a is None else passes["a"][lo:hi], idx=idx)

        val_metrics = tuple(metrics) + (("robust_accuracy",) if self.robust_eval is not None else ())
        state = TrainState(task=task, model=model, optimizer=optimizer, weights=dict(self.weights),
                           budget=budget, meter=meter, terms={t.name: t for t in self.terms},
                           fractions={k: 1.0 for k in self.weights}, robust_eval=self.robust_eval,
                           max_epochs=self.epochs, batch_size=self.batch_size, steps_per_epoch=steps_per_epoch,
                           metrics=val_metrics)
        cb_time = 0.0

        def call(hook, *args) -> float:
            """Run a hook of every callback; return (and add to the epoch's callback time) its seconds."""
            nonlocal cb_time
            if not self.callbacks:
                return 0.0
            t = meter.elapsed_s
            for cb in self.callbacks:
                getattr(cb, hook)(state, *args)
            dt = meter.elapsed_s - t
            cb_time += dt
            return dt

        # schedulers check here that the terms and validation signals they need exist (a clear
        # ValueError before any compute is spent)
        call("on_fit_start")

        # memory a step needs, known before training: weights, grads, optimiser state, activations
        # (with every term on: a scheduler may switch any of them on later)
        n_state = {"adam": 4, "adamw": 4, "sgd": 3}[self.optimizer]
        static_mb = n_state * 4 * n_params / (1024 * 1024)
        first = torch.arange(min(self.batch_size, n), device=device)
        self._dry_run_s = 0.0
        probe = self._step_cost(model, batch_at(first), {k: 1.0 for k in self.weights}, flops_cache)
        dry_run_s = self._dry_run_s  # what counting a new kind of step costs (measured, here or by an earlier run)
        act_mb = 0.0 if probe is None else probe.saved_bytes / (1024 * 1024)
        meter.est_memory_mb = static_mb + act_mb
        if budget.memory_mb is not None and meter.est_memory_mb > budget.memory_mb:
            raise ValueError(
                f"Budget.memory_mb={budget.memory_mb} is below the estimated footprint of one training step: "
                f"{static_mb:.2f} MB for parameters, gradients and optimiser state plus {act_mb:.2f} MB of "
                f"activations at batch_size={self.batch_size}; lower batch_size, use a smaller model or raise the limit"
            )
        step_times: dict[tuple, deque] = {}  # per kind of step: recent seconds, its on_step_end hooks included
        eval_time = None
        hooks_s = 0.0  # the slowest epoch's on_epoch_start + on_epoch_end hooks (a scheduler's decisions)
        stopped_by, over, message = "epochs", [], ""
        max_step_s = 0.0

        def predicted_step(key, flops) -> float | None:
            """Seconds the step will take: its key's slowest recent time, else scaled by FLOPs."""
            if key in step_times:
                return max(step_times[key])
            rates = [max(v) / flops_cache[k].flops for k, v in step_times.items()
                     if flops_cache.get(k) is not None and flops_cache[k].flops > 0]
            if flops is not None and rates:
                return flops * max(rates)
            if step_times:
                return max(max(v) for v in step_times.values())
            return None

        def predicted_eval() -> float:
            """Seconds between an epoch's last step and the next one's first: validation and epoch hooks."""
            return (0.0 if eval_time is None else eval_time) + hooks_s

        def trial(weights, fractions, settings) -> dict:
            with meter.paused():
                m2 = copy.deepcopy(model)
                o2 = self._make_optimizer(m2)
                o2.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # load_state_dict shares tensors
                terms2 = copy.deepcopy(self.terms)
                for name, attrs in settings.items():
                    for t in terms2:
                        if t.name == name:
                            for k, v in attrs.items():
                                setattr(t, k, v)
                b2 = batches.clone()
                b2.start_epoch()
                rng = torch.get_rng_state()
                m2.train()
                for s_ in range(steps_per_epoch):
                    w = self._active(weights, {**state.fractions, **fractions}, s_)
                    b = batch_at(b2.next())
                    o2.zero_grad(set_to_none=True)
                    loss, _ = self._loss(m2, b, w, terms=terms2)
                    loss.backward()
                    o2.step()
                torch.set_rng_state(rng)
                return self._validate(m2, task, metrics)

        state.trial = trial

        if budget.time_s is not None:
            # the closing validation of the first epoch must fit too: estimate its cost (charged)
            eval_time = self._validation_cost(model, task, metrics, left_s=budget.time_s - meter.elapsed_s)
            if meter.elapsed_s + 1.25 * eval_time + _BOOKKEEPING_S > budget.time_s:
                stopped_by = "time_s"
                message = (f"the budget (time_s={budget.time_s:g}) cannot hold a single validation, predicted "
                           f"at {eval_time:.3g} s after {meter.elapsed_s:.3g} s of set-up; no training step was "
                           "taken and the test metrics are those of the untrained model. Raise the budget, or make "
                           "the validation cheaper (e.g. RobustEval with fewer val_steps or val_n)")

        bar = None
        if self.progress and stopped_by == "epochs":
            from tqdm.auto import tqdm

            bar = tqdm(total=self.epochs, desc=f"{task.name}: training", leave=False)

        try:
            for epoch in range(1, (self.epochs if stopped_by == "epochs" else 0) + 1):
                state.epoch = epoch
                cb_time = 0.0
                t_epoch = meter.elapsed_s
                epoch_hooks = call("on_epoch_start")
                model.train()
                batches.start_epoch()
                losses, steps, norms = [], 0, []
                term_time = {k: 0.0 for k in state.weights}
                # a step's kind (batch size, terms on) is looked up once per epoch and pattern, unless a
                # callback could change a term's settings between steps
                key_cache: dict = {}
                for s in range(steps_per_epoch):
                    batch = next_batch()
                    weights = self._active(state.weights, state.fractions, s)
                    ck = (len(batch.y), tuple(bool(w) for w in weights.values()))
                    key = None if self.callbacks else key_cache.get(ck)
                    if key is None:
                        key = key_cache[ck] = self._cost_key(batch, weights)
                    if budget.time_s is not None and key not in flops_cache:
                        # a new kind of step (a scheduler switched a term or the attack on): counting
                        # its FLOPs on the meta device costs real time; stop if that, the step and
                        # the closing validation would not fit
                        pred = predicted_step(key, None) or 0.0
                        need = 1.25 * dry_run_s + pred + 1.25 * predicted_eval() + _BOOKKEEPING_S
                        if meter.elapsed_s + need > budget.time_s:
                            stopped_by = "time_s"
                            break
                    t_dry = meter.elapsed_s
                    new_key = key not in flops_cache
                    cost = self._step_cost(model, batch, weights, flops_cache)
                    if new_key:
                        dry_run_s = max(dry_run_s, meter.elapsed_s - t_dry)
                    fl = None if cost is None else cost.flops
                    if budget.flops is not None and fl is not None and meter.flops + fl > budget.flops:
                        stopped_by = "flops"
                        break
                    if budget.time_s is not None:
                        # pessimistic: the slowest recent step of this kind (nothing before the
                        # first step: that one is the measurement), the closing validation with a
                        # 25% margin, and a few ms of bookkeeping
                        need = (predicted_step(key, fl) or 0.0) + 1.25 * predicted_eval() + _BOOKKEEPING_S
                        if meter.elapsed_s + need > budget.time_s:
                            stopped_by = "time_s"
                            break
                    t0 = meter.elapsed_s
                    if fl is None:  # the meta dry run failed: count this real step once, then reuse
                        with torch.utils.flop_counter.FlopCounterMode(display=False) as fc:
                            loss, parts = self._train_step(model, optimizer, batch, weights)
                        fl = int(fc.get_total_flops())
                        flops_cache[key] = StepCost(flops=fl, saved_bytes=0)
                    else:
                        loss, parts = self._train_step(model, optimizer, batch, weights)
                    if s % 10 == 0:
                        grads = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
                        if grads:
                            norms.append(float(torch.stack(grads).norm()))
                    meter.add_flops(fl)
                    if budget.memory_mb is not None:  # a memory limit is checked every step; else the meter's thread samples
                        meter.sample()
                    dt = meter.elapsed_s - t0
                    for k, w in weights.items():
                        if w:
                            term_time[k] = term_time.get(k, 0.0) + dt
                    losses.append(loss.detach())
                    steps += 1
                    state.step += 1
                    call("on_step_end", batch, parts)
                    dt = meter.elapsed_s - t0
                    max_step_s = max(max_step_s, dt)
                    step_times.setdefault(key, deque(maxlen=20)).append(dt)
                    if budget.memory_mb is not None and meter.peak_memory_mb > budget.memory_mb:
                        stopped_by, over = "memory_mb", ["memory_mb"]
                        break
                    if budget.time_s is not None and meter.elapsed_s > budget.time_s:
                        stopped_by, over = "time_s", ["time_s"]
                        break
                if steps == 0:
                    break
                t_eval = meter.elapsed_s
                val = self._validate(model, task, metrics)
                eval_time = meter.elapsed_s - t_eval
                meter.sample()
                record = EpochRecord(
                    epoch=epoch, steps=steps, train_loss=float(torch.stack(losses).mean()) if losses else float("nan"), val=val,
                    weights=dict(state.weights), time_s=meter.elapsed_s,
                    epoch_time_s=meter.elapsed_s - t_epoch, eval_time_s=eval_time,
                    peak_memory_mb=meter.peak_memory_mb, flops=meter.flops,
                    partial=steps < steps_per_epoch, fractions=dict(state.fractions),
                    settings={f"{t.name}_{k}": v for t in self.terms for k, v in _settings(t).items()},
                    term_time_s=term_time, callback_s=0.0,
                    grad_norm=float(np.mean(norms)) if norms else float("nan"),
                )
                state.history.append(record)
                epoch_hooks += call("on_epoch_end", record)
                hooks_s = max(hooks_s, epoch_hooks)
                record.callback_s = cb_time
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record.train_loss:.3f}", t=f"{record.time_s:.1f}s")
                if stopped_by != "epochs":
                    break
                if state.stop:
                    stopped_by = "callback"
                    break
        finally:
            meter.stop()
            state.trial = None
            if bar is not None:
                bar.close()

        usage = meter.usage.to_dict()
        usage["max_step_s"] = max_step_s
        if budget.time_s is not None and usage["time_s"] > budget.time_s and "time_s" not in over:
            over.append("time_s")
        if budget.memory_mb is not None and usage["peak_memory_mb"] > budget.memory_mb and "memory_mb" not in over:
            over.append("memory_mb")
        if message:
            pass  # already says why the run took no step
        elif not state.history:
            message = (f"the budget ({stopped_by}) was too small for a single training step; "
                       "test metrics are those of the untrained model")
        elif not any(not e.partial for e in state.history):
            message = (f"the budget ({stopped_by}) was too small for one full epoch: it allowed "
                       f"{state.history[0].steps} of {steps_per_epoch} steps; the record holds that partial epoch")
        elif stopped_by in ("time_s", "flops", "memory_mb"):
            message = f"stopped by the {stopped_by} budget after {state.step} steps ({len(state.history)} epochs started)"
        fraction = {}
        for f, used in (("time_s", usage["time_s"]), ("memory_mb", usage["peak_memory_mb"]),
                        ("max_params", usage["params"]), ("flops", usage["flops"])):
            limit = getattr(budget, f)
            fraction[f] = None if limit is None else used / limit
        # the final report on the test split: outside the budget, timed and recorded
        t_report = time.perf_counter()
        test = evaluate(model, task.test, metrics=metrics)
        if self.robust_eval is not None:
            test["robust_accuracy"] = self.robust_eval.measure(model, task, "test", seed=self.seed)
        usage["report_s"] = time.perf_counter() - t_report
        self.model_ = model
        return RunRecord(
            task=task.name, seed=self.seed, config=self.config(task), epochs=state.history, test=test,
            usage=usage, budget=budget.to_dict(), budget_fraction=fraction, stopped_by=stopped_by,
            over_budget=over, message=message,
        )


def _settings(term) -> dict:
    """The knobs of a term a scheduler may change (recorded per epoch)."""
    out = {}
    for k in ("attack", "steps", "eps"):
        if hasattr(term, k):
            out[k] = getattr(term, k)
    return out
