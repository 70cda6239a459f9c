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

import dataclasses
import math
import time
from typing import Callable, Iterable, Mapping, Sequence

import torch
# The first optimiser a process builds imports torch._dynamo (about 1-2 s on 2 cores): a one-off
# cost of the process, not of a run. Importing it with the trainer keeps it out of every budget.
import torch._dynamo  # noqa: F401

from .._validation import _suggest, check_int, check_positive, resolve_device
from ..budget import Budget, Meter, StepCost
from ..data import Task
from ..metrics import check_metrics, default_metrics
from ..models import make_model
from ._accounting import cost_key, step_cost_of
from ._loop import run
from ._records import Callback, EpochRecord, RunRecord, TrainState
from ._terms import Batch, CrossEntropy, LossTerm
from ._validation import RobustEval, validate, validation_cost

__all__ = ["Trainer", "Callback", "TrainState", "EpochRecord", "RunRecord", "RobustEval", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "adamw", "sgd")


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
        return cost_key(self.terms, batch, weights)

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
        return step_cost_of(self, model, batch, weights, cache)

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
        return validate(self, model, task, metrics)

    def _validation_cost(self, model, task: Task, metrics, *, left_s: float) -> float:
        return validation_cost(self, model, task, metrics, left_s=left_s)

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

    _run = run
