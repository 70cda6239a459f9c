"""Budget accounting of a run: what a step costs (FLOPs and activation bytes, counted before it
runs), what it will take (seconds, predicted from the steps seen), and whether it still fits.

See :mod:`trustkit.train._trainer` for how each limit of a :class:`~trustkit.budget.Budget` is honoured.
"""

from __future__ import annotations

import time
from collections import deque

import torch

from ..budget import StepCost, meta_copy, step_cost
from ._terms import Batch

__all__ = ["StepClock", "step_cost_of", "step_footprint_mb", "cost_key", "BOOKKEEPING_S"]

#: seconds of record keeping added to every prediction
BOOKKEEPING_S = 0.005

# FLOPs and saved bytes of a kind of step of a built-in model, and the seconds counting them took
_STEP_COSTS: dict = {}


def cost_key(terms, batch: Batch, weights) -> tuple:
    """A step's kind: its batch size and the terms on (with their cost keys)."""
    return (len(batch.y), tuple(sorted((t.name, getattr(t, "cost_key", ())) for t in terms if weights.get(t.name, 0.0))))


def step_cost_of(trainer, model, batch: Batch, weights, cache: dict) -> StepCost | None:
    """FLOPs and saved-activation bytes of one step, from a dry run on the meta device (cached
    per run, and per process for a built-in model: the count depends only on the architecture,
    the batch's shape and the terms on, so a second run of the same kind does not pay it)."""
    key = trainer._cost_key(batch, weights)
    shared = None
    if key not in cache and isinstance(trainer.model, str):
        shared = (repr(model), tuple(batch.x.shape), batch.x.dtype, batch.a is None,
                  tuple(repr(t) for t in trainer.terms if weights.get(t.name, 0.0)))
        if shared in _STEP_COSTS:
            cache[key], seconds = _STEP_COSTS[shared]
            trainer._dry_run_s = max(trainer._dry_run_s, seconds)
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
            cache[key] = step_cost(lambda: trainer._loss(mm, mb, weights)[0].backward())
        except Exception:  # a term the meta device cannot run: count the real step instead
            cache[key] = None
        seconds = time.perf_counter() - t0
        trainer._dry_run_s = max(trainer._dry_run_s, seconds)
        if shared is not None and len(_STEP_COSTS) < 4096:
            _STEP_COSTS[shared] = (cache[key], seconds)
    return cache[key]


def step_footprint_mb(optimizer: str, n_params: int, cost: StepCost | None) -> tuple[float, float]:
    """Megabytes a training step needs, known before training: (parameters, gradients and the
    optimiser's state; the activations autograd saves, from ``cost``'s count on the meta device)."""
    n_state = {"adam": 4, "adamw": 4, "sgd": 3}[optimizer]
    return n_state * 4 * n_params / (1024 * 1024), 0.0 if cost is None else cost.saved_bytes / (1024 * 1024)


class StepClock:
    """Predicts the seconds a run's next step and its closing validation take, from what it has seen.

    A step's prediction is the slowest of the recent steps of its kind (batch size, terms on), else
    its FLOPs times the slowest seconds per FLOP seen, else the slowest step seen; the closing
    validation's is the last validation's time plus the slowest epoch's scheduler hooks. A new
    kind of step is first counted on the meta device, which takes ``dry_run_s`` (the slowest
    count so far).
    """

    def __init__(self, flops_cache: dict, dry_run_s: float):
        self.flops_cache = flops_cache
        self.dry_run_s = dry_run_s
        self.step_times: dict[tuple, deque] = {}  # per kind: recent seconds, its on_step_end hooks included
        self.eval_time: float | None = None
        self.hooks_s = 0.0  # the slowest epoch's on_epoch_start + on_epoch_end hooks (a scheduler's decisions)
        self.max_step_s = 0.0

    def step(self, key, flops) -> float | None:
        """Seconds the step will take: its key's slowest recent time, else scaled by FLOPs."""
        if key in self.step_times:
            return max(self.step_times[key])
        rates = [max(v) / self.flops_cache[k].flops for k, v in self.step_times.items()
                 if self.flops_cache.get(k) is not None and self.flops_cache[k].flops > 0]
        if flops is not None and rates:
            return flops * max(rates)
        if self.step_times:
            return max(max(v) for v in self.step_times.values())
        return None

    def closing(self) -> float:
        """Seconds between an epoch's last step and the next one's first: validation and epoch hooks."""
        return (0.0 if self.eval_time is None else self.eval_time) + self.hooks_s

    def new_kind_fits(self, key, elapsed: float, limit: float) -> bool:
        """Whether counting a new kind of step, the step and the closing validation fit in ``limit``."""
        need = 1.25 * self.dry_run_s + (self.step(key, None) or 0.0) + 1.25 * self.closing() + BOOKKEEPING_S
        return elapsed + need <= limit

    def step_fits(self, key, flops, elapsed: float, limit: float) -> bool:
        """Whether the step and the closing validation (25% margin) fit in ``limit``: pessimistic, the
        slowest recent step of this kind (nothing before the first step: that one is the measurement)."""
        need = (self.step(key, flops) or 0.0) + 1.25 * self.closing() + BOOKKEEPING_S
        return elapsed + need <= limit

    def took(self, key, seconds: float) -> None:
        """Record a step's seconds."""
        self.max_step_s = max(self.max_step_s, seconds)
        self.step_times.setdefault(key, deque(maxlen=20)).append(seconds)
