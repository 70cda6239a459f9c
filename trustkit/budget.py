"""Compute budgets and the meter that measures what a run spends.

A :class:`Budget` names any subset of four limits: wall-clock seconds, peak memory (MB above the
process's memory when the run started), parameter count and FLOPs. ``a | b`` is the budget that
stops at whichever limit of ``a`` or ``b`` comes first.

The :class:`Meter` measures the same four quantities for a run:

* time: ``time.perf_counter`` wall-clock seconds;
* memory: the process's resident set size (RSS, via psutil), sampled by a background thread
  every few milliseconds and at every step; reported as the peak RSS and as the peak increase
  over the RSS when the meter started (the run's own footprint, which is what ``memory_mb``
  limits: a Python process with torch loaded already holds several hundred MB);
* FLOPs: counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions,
  forward and backward). :func:`count_flops` runs a step on a copy of the model on PyTorch's
  ``meta`` device, so the cost of a step is known *before* it runs, at no compute cost;
* parameters: ``sum(p.numel())``;
* estimated training memory: parameters, gradients and optimiser state plus the bytes autograd
  saves for one step's backward pass (:func:`step_cost` on the meta device). Unlike RSS, which
  depends on what the process did before, this is deterministic and known before training.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

from ._validation import check_positive

__all__ = ["Budget", "Meter", "count_params", "count_flops", "step_cost", "StepCost", "meta_copy", "training_memory_mb",
           "BUDGET_FIELDS", "Usage"]

BUDGET_FIELDS = ("time_s", "memory_mb", "max_params", "flops")
_MB = 1024.0 * 1024.0


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Limits on a training run; any subset of the four may be given (``None`` = unlimited).

    Parameters
    ----------
    time_s : float, optional
        Wall-clock seconds for training and per-epoch validation.
    memory_mb : float, optional
        Peak resident memory above the process's memory at the start of the run, in MB.
    max_params : int, optional
        Largest allowed parameter count of the model.
    flops : float, optional
        Training FLOPs (forward and backward passes of the training steps).

    Examples
    --------
    >>> from trustkit.budget import Budget
    >>> b = Budget(time_s=30) | Budget(time_s=60, flops=1e9)
    >>> b.time_s, b.flops, b.is_unlimited
    (30, 1000000000.0, False)
    >>> Budget(time_s=0)
    Traceback (most recent call last):
    ...
    ValueError: Budget.time_s must be a number > 0; got 0
    """

    time_s: float | None = None
    memory_mb: float | None = None
    max_params: int | None = None
    flops: float | None = None

    def __post_init__(self):
        for f in ("time_s", "memory_mb", "flops"):
            check_positive(f"Budget.{f}", getattr(self, f), allow_none=True)
        check_positive("Budget.max_params", self.max_params, allow_none=True, integer=True)

    @property
    def is_unlimited(self) -> bool:
        return all(getattr(self, f) is None for f in BUDGET_FIELDS)

    def __or__(self, other: "Budget") -> "Budget":
        if not isinstance(other, Budget):
            return NotImplemented
        merged = {}
        for f in BUDGET_FIELDS:
            vals = [v for v in (getattr(self, f), getattr(other, f)) if v is not None]
            merged[f] = min(vals) if vals else None
        return Budget(**merged)

    def scaled(self, factor: float) -> "Budget":
        """The same budget with time and FLOPs multiplied by ``factor`` (e.g. 0.1 for a low regime)."""
        check_positive("factor", factor)
        return dataclasses.replace(
            self,
            time_s=None if self.time_s is None else self.time_s * factor,
            flops=None if self.flops is None else self.flops * factor,
        )

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in BUDGET_FIELDS}


def count_params(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of running ``fn()`` (forward and any backward it calls), counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class StepCost:
    """FLOPs of a step and the bytes of tensors autograd saved for its backward pass."""

    flops: int
    saved_bytes: int


def step_cost(fn: Callable[[], object]) -> StepCost:
    """Count FLOPs and the bytes autograd saves for backward while ``fn()`` runs.

    Run on a :func:`meta_copy` of a model, this gives the compute and the activation memory of a
    training step before the step is taken, without doing it. Saved tensors include the weights
    some layers keep for their backward pass, so the activation figure is an upper bound.
    """
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        flops = count_flops(fn)
    return StepCost(flops=flops, saved_bytes=int(saved))


def meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` on PyTorch's meta device: same shapes, no storage, no compute."""
    return copy.deepcopy(model).to("meta")


def training_memory_mb(model: torch.nn.Module, input_shape, *, batch_size: int, optimizer: str = "adam") -> float:
    """Estimated memory of one training step, in MB: what :class:`~trustkit.train.Trainer` checks
    against ``Budget.memory_mb`` before it trains.

    Weights, gradients and optimiser state (Adam keeps two moments: 4 copies of the parameters in
    float32; SGD with momentum 3) plus the activations autograd saves for a cross-entropy step at
    ``batch_size``, counted on the meta device (no memory is used, nothing is computed).

    >>> round(training_memory_mb(torch.nn.Linear(1000, 1000), (1000,), batch_size=1), 2)
    15.29
    """
    import torch.nn.functional as F

    n_state = {"adam": 4, "adamw": 4, "sgd": 3}.get(optimizer)
    if n_state is None:
        raise ValueError(f"optimizer must be one of ['adam', 'adamw', 'sgd']; got {optimizer!r}")
    static = n_state * 4 * count_params(model) / _MB
    mm = meta_copy(model)
    x = torch.empty((int(batch_size), *tuple(input_shape)), device="meta")
    y = torch.zeros(int(batch_size), dtype=torch.long, device="meta")
    cost = step_cost(lambda: F.cross_entropy(mm(x), y).backward())
    return static + cost.saved_bytes / _MB


@dataclass
class Usage:
    """What a run has spent.

    ``time_s`` is the budgeted wall time (what ``Budget.time_s`` limits); ``excluded_s`` the time of
    blocks run under :meth:`Meter.paused` (not part of the run's cost, e.g. an oracle's trials).
    A trainer adds ``max_step_s`` (its slowest step), ``report_s`` (the final test report, outside
    the budget) and ``wall_s`` (its whole call, from call to return).
    """

    time_s: float = 0.0
    peak_memory_mb: float = 0.0
    peak_rss_mb: float = 0.0
    params: int = 0
    flops: int = 0
    est_memory_mb: float = 0.0
    excluded_s: float = 0.0
    max_step_s: float = 0.0
    report_s: float = 0.0
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Meter:
    """Measures wall time, peak memory and FLOPs of a run; parameters are set by the caller.

    Use as a context manager around the run, call :meth:`sample` at every step (cheap), and
    :meth:`add_flops` with the FLOPs of each step.

    Examples
    --------
    >>> from trustkit.budget import Meter
    >>> with Meter() as meter:
    ...     _ = sum(range(10_000))
    >>> meter.usage.time_s > 0, meter.usage.peak_rss_mb > 0
    (True, True)
    """

    def __init__(self, *, sample_interval_s: float = 0.005):
        check_positive("sample_interval_s", sample_interval_s)
        self._interval = sample_interval_s
        self._proc = psutil.Process(os.getpid())
        self._t0: float | None = None
        self._t_end: float | None = None
        self._baseline = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flops = 0
        self.params = 0
        self.est_memory_mb = 0.0
        self._excluded = 0.0

    def start(self) -> "Meter":
        self._baseline = self._proc.memory_info().rss
        self._peak = self._baseline
        self._t0 = time.perf_counter()
        self._t_end = None
        self._excluded = 0.0
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="trustkit-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> "Meter":
        if self._t0 is not None and self._t_end is None:
            self.sample()
            self._t_end = time.perf_counter()
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=1.0)
        return self

    def __enter__(self) -> "Meter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        """Read the current RSS and keep the peak."""
        rss = self._proc.memory_info().rss
        if rss > self._peak:
            self._peak = rss

    def add_flops(self, n: int) -> None:
        self.flops += int(n)

    @contextlib.contextmanager
    def paused(self):
        """Exclude the wall time of the block from :attr:`elapsed_s` (it is reported as ``excluded_s``).

        Only for work that is not part of the run's cost: an oracle trying allocations on copies of
        the model is the one use in trustkit. Only time that passes while the meter runs can be
        excluded, so :attr:`elapsed_s` never falls below zero.

        Examples
        --------
        >>> import time
        >>> with Meter() as m:
        ...     with m.paused():
        ...         time.sleep(0.05)
        >>> m.excluded_s >= 0.05, 0 <= m.elapsed_s < 0.05
        (True, True)
        """
        t = time.perf_counter()
        try:
            yield
        finally:
            self._excluded += time.perf_counter() - t

    @property
    def excluded_s(self) -> float:
        return self._excluded

    @property
    def elapsed_s(self) -> float:
        if self._t0 is None:
            return 0.0
        end = self._t_end if self._t_end is not None else time.perf_counter()
        return end - self._t0 - self._excluded

    @property
    def peak_memory_mb(self) -> float:
        return max(0.0, (self._peak - self._baseline) / _MB)

    @property
    def usage(self) -> Usage:
        return Usage(
            time_s=self.elapsed_s,
            peak_memory_mb=self.peak_memory_mb,
            peak_rss_mb=self._peak / _MB,
            params=self.params,
            flops=self.flops,
            est_memory_mb=self.est_memory_mb,
            excluded_s=self._excluded,
        )
