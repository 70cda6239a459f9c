"""The training loop: mini-batches, steps under the budget, validation and callbacks each epoch, the test report."""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from ..budget import Meter, StepCost, count_params
from ..data import Task
from ..metrics import evaluate
from ._accounting import BOOKKEEPING_S, StepClock, step_footprint_mb
from ._records import EpochRecord, RunRecord, TrainState
from ._terms import Batch

__all__ = ["run"]


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


def run(self, task: Task, metrics: tuple[str, ...], meter: Meter) -> RunRecord:
    """One run of ``self`` (a :class:`~trustkit.train.Trainer`) on ``task``, charged to ``meter``."""
    return _Run(self, task, metrics, meter).run()


class _TrainSplit:
    """The training split on the run's device, and its mini-batches in the order of ``batches``.

    The split moves to the device once; every batch is then a slice there. With ``gather`` (and a
    split under 256 MB) the split is gathered in each pass's order once (one copy), so a batch is a
    contiguous slice instead of three gathers per step.
    """

    def __init__(self, task: Task, batches: _Batches, device, *, gather: bool):
        self.X = torch.as_tensor(task.train.X).to(device)
        self.y = torch.as_tensor(task.train.y).to(device)
        self.a = None if task.train.a is None else torch.as_tensor(task.train.a).to(device)
        self.batches = batches
        self.gather = gather and self.X.element_size() * self.X.numel() <= 256 * 1024 * 1024
        self._pass: dict = {"perm": None}

    def __len__(self) -> int:
        return len(self.y)

    def at(self, idx) -> Batch:
        """The batch of rows ``idx``."""
        return Batch(x=self.X[idx], y=self.y[idx], a=None if self.a is None else self.a[idx], idx=idx)

    def next(self) -> Batch:
        """The next batch of ``batches``."""
        batches, a = self.batches, self.a
        idx = batches.next()
        if not self.gather:
            return self.at(idx)
        p = self._pass
        if p["perm"] is not batches.perm:
            perm = batches.perm
            p.update(perm=perm, X=self.X[perm], y=self.y[perm], a=None if a is None else a[perm])
        lo, hi = batches.start, batches.start + len(idx)
        return Batch(x=p["X"][lo:hi], y=p["y"][lo:hi], a=None if a is None else p["a"][lo:hi], idx=idx)


class _Hooks:
    """Runs a hook of every callback on the run's state, timed on its meter.

    ``seconds`` adds up the hooks' time since it was last set to zero (the epoch's ``callback_s``).
    """

    def __init__(self, callbacks, state: TrainState, meter: Meter):
        self.callbacks, self.state, self.meter = callbacks, state, meter
        self.seconds = 0.0

    def __call__(self, hook: str, *args) -> float:
        """Run ``hook`` of every callback; return (and add to ``seconds``) its seconds."""
        if not self.callbacks:
            return 0.0
        t = self.meter.elapsed_s
        for cb in self.callbacks:
            getattr(cb, hook)(self.state, *args)
        dt = self.meter.elapsed_s - t
        self.seconds += dt
        return dt


class _Run:
    """One run of a trainer: set-up and checks, the epochs of steps under the budget, the record."""

    def __init__(self, trainer, task: Task, metrics: tuple[str, ...], meter: Meter):
        self.trainer, self.task, self.metrics, self.meter = trainer, task, metrics, meter
        self.budget = budget = trainer.budget
        device = trainer.device
        self.model = model = trainer.build_model(task).to(device)
        self.n_params = n_params = count_params(model)
        if budget.max_params is not None and n_params > budget.max_params:
            raise ValueError(
                f"the model has {n_params:,} parameters, more than Budget.max_params={budget.max_params:,}; "
                "choose a smaller model (e.g. model_kwargs={'hidden': ...}) or raise the limit"
            )
        if task.train.a is None and any(t.name == "fair" for t in trainer.terms):
            raise ValueError("the fairness term needs a sensitive attribute; task "
                             f"{task.name!r} has none (load it with sensitive=... or drop the term)")
        self.optimizer = trainer._make_optimizer(model)
        for t in trainer.terms:
            if hasattr(t, "bind"):
                t.bind(task)
            if hasattr(t, "reset"):
                t.reset(trainer.seed)
        self.batches = _Batches(len(task.train.y), trainer.batch_size, trainer.seed, trainer.epoch_steps, device)
        # a gathered copy of the split per pass only when no memory limit is measured
        self.split = _TrainSplit(task, self.batches, device, gather=budget.memory_mb is None)
        self.steps_per_epoch = self.batches.steps
        meter.params = n_params
        self.flops_cache: dict = {}
        val_metrics = tuple(metrics) + (("robust_accuracy",) if trainer.robust_eval is not None else ())
        self.state = TrainState(
            task=task, model=model, optimizer=self.optimizer, weights=dict(trainer.weights), budget=budget,
            meter=meter, terms={t.name: t for t in trainer.terms}, fractions={k: 1.0 for k in trainer.weights},
            robust_eval=trainer.robust_eval, max_epochs=trainer.epochs, batch_size=trainer.batch_size,
            steps_per_epoch=self.steps_per_epoch, metrics=val_metrics,
        )
        self.hooks = _Hooks(trainer.callbacks, self.state, meter)
        self.clock: StepClock | None = None
        self.stopped_by, self.over, self.message = "epochs", [], ""

    def run(self) -> RunRecord:
        trainer, budget, meter, state = self.trainer, self.budget, self.meter, self.state
        # schedulers check here that the terms and validation signals they need exist (a clear
        # ValueError before any compute is spent)
        self.hooks("on_fit_start")
        self._probe()
        state.trial = self._trial
        if budget.time_s is not None:
            self._check_validation_fits()
        bar = None
        if trainer.progress and self.stopped_by == "epochs":
            from tqdm.auto import tqdm

            bar = tqdm(total=trainer.epochs, desc=f"{self.task.name}: training", leave=False)
        try:
            for epoch in range(1, (trainer.epochs if self.stopped_by == "epochs" else 0) + 1):
                record = self._epoch(epoch)
                if record is None:
                    break
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{record.train_loss:.3f}", t=f"{record.time_s:.1f}s")
                if self.stopped_by != "epochs":
                    break
                if state.stop:
                    self.stopped_by = "callback"
                    break
        finally:
            meter.stop()
            state.trial = None
            if bar is not None:
                bar.close()
        return self._record()

    # -- before the first step ---------------------------------------------------------------
    def _probe(self) -> None:
        """Count the first step's cost (every term on: a scheduler may switch any of them on later),
        start the step clock, and refuse a memory limit below the estimated footprint of a step."""
        trainer, budget, meter = self.trainer, self.budget, self.meter
        first = torch.arange(min(trainer.batch_size, len(self.split)), device=trainer.device)
        trainer._dry_run_s = 0.0
        probe = trainer._step_cost(self.model, self.split.at(first), {k: 1.0 for k in trainer.weights}, self.flops_cache)
        # predicts steps and the closing validation from what the run has seen; counting a new kind of
        # step costs what the probe's count took (measured, here or by an earlier run)
        self.clock = StepClock(self.flops_cache, trainer._dry_run_s)
        static_mb, act_mb = step_footprint_mb(trainer.optimizer, self.n_params, probe)
        meter.est_memory_mb = static_mb + act_mb
        if budget.memory_mb is not None and meter.est_memory_mb > budget.memory_mb:
            raise ValueError(
                f"Budget.memory_mb={budget.memory_mb} is below the estimated footprint of one training step: "
                f"{static_mb:.2f} MB for parameters, gradients and optimiser state plus {act_mb:.2f} MB of "
                f"activations at batch_size={trainer.batch_size}; lower batch_size, use a smaller model or raise the limit"
            )

    def _check_validation_fits(self) -> None:
        """Estimate the closing validation of the first epoch (charged); with no room for it, take no step."""
        budget, meter = self.budget, self.meter
        eval_time = self.clock.eval_time = self.trainer._validation_cost(
            self.model, self.task, self.metrics, left_s=budget.time_s - meter.elapsed_s)
        if meter.elapsed_s + 1.25 * eval_time + BOOKKEEPING_S > budget.time_s:
            self.stopped_by = "time_s"
            self.message = (
                f"the budget (time_s={budget.time_s:g}) cannot hold a single validation, predicted "
                f"at {eval_time:.3g} s after {meter.elapsed_s:.3g} s of set-up; no training step was "
                "taken and the test metrics are those of the untrained model. Raise the budget, or make "
                "the validation cheaper (e.g. RobustEval with fewer val_steps or val_n)")

    # -- an epoch ----------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> EpochRecord | None:
        """Train an epoch (or slice of steps) and validate; ``None`` when the budget held none of its steps."""
        trainer, meter, state, clock = self.trainer, self.meter, self.state, self.clock
        state.epoch = epoch
        self.hooks.seconds = 0.0
        t_epoch = meter.elapsed_s
        epoch_hooks = self.hooks("on_epoch_start")
        self.model.train()
        self.batches.start_epoch()
        steps, losses, norms, term_time = self._steps()
        if steps == 0:
            return None
        t_eval = meter.elapsed_s
        val = trainer._validate(self.model, self.task, self.metrics)
        eval_time = clock.eval_time = meter.elapsed_s - t_eval
        meter.sample()
        record = EpochRecord(
            epoch=epoch, steps=steps, train_loss=float(torch.stack(losses).mean()) if losses else float("nan"), val=val,
            weights=dict(state.weights), time_s=meter.elapsed_s,
            epoch_time_s=meter.elapsed_s - t_epoch, eval_time_s=eval_time,
            peak_memory_mb=meter.peak_memory_mb, flops=meter.flops,
            partial=steps < self.steps_per_epoch, fractions=dict(state.fractions),
            settings={f"{t.name}_{k}": v for t in trainer.terms for k, v in _settings(t).items()},
            term_time_s=term_time, callback_s=0.0,
            grad_norm=float(np.mean(norms)) if norms else float("nan"),
        )
        state.history.append(record)
        epoch_hooks += self.hooks("on_epoch_end", record)
        clock.hooks_s = max(clock.hooks_s, epoch_hooks)
        record.callback_s = self.hooks.seconds
        return record

    def _steps(self) -> tuple[int, list, list, dict]:
        """The epoch's steps, each taken only if the budget holds it: (steps, losses, grad norms, time per term)."""
        trainer, budget, meter, state, clock = self.trainer, self.budget, self.meter, self.state, self.clock
        losses, steps, norms = [], 0, []
        term_time = {k: 0.0 for k in state.weights}
        # a step's kind (batch size, terms on) is looked up once per epoch and pattern, unless a
        # callback could change a term's settings between steps
        key_cache: dict = {}
        for s in range(self.steps_per_epoch):
            batch = self.split.next()
            weights = trainer._active(state.weights, state.fractions, s)
            ck = (len(batch.y), tuple(bool(w) for w in weights.values()))
            key = None if trainer.callbacks else key_cache.get(ck)
            if key is None:
                key = key_cache[ck] = trainer._cost_key(batch, weights)
            admitted, fl = self._admit(key, batch, weights)
            if not admitted:
                break
            t0 = meter.elapsed_s
            if fl is None:  # the meta dry run failed: count this real step once, then reuse
                with torch.utils.flop_counter.FlopCounterMode(display=False) as fc:
                    loss, parts = trainer._train_step(self.model, self.optimizer, batch, weights)
                fl = int(fc.get_total_flops())
                self.flops_cache[key] = StepCost(flops=fl, saved_bytes=0)
            else:
                loss, parts = trainer._train_step(self.model, self.optimizer, batch, weights)
            if s % 10 == 0:
                grads = [p.grad.detach().norm() for p in self.model.parameters() if p.grad is not None]
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
            self.hooks("on_step_end", batch, parts)
            clock.took(key, meter.elapsed_s - t0)
            if budget.memory_mb is not None and meter.peak_memory_mb > budget.memory_mb:
                self.stopped_by, self.over = "memory_mb", ["memory_mb"]
                break
            if budget.time_s is not None and meter.elapsed_s > budget.time_s:
                self.stopped_by, self.over = "time_s", ["time_s"]
                break
        return steps, losses, norms, term_time

    def _admit(self, key, batch: Batch, weights) -> tuple[bool, int | None]:
        """Whether the budget holds the next step (if not, ``stopped_by`` names the limit), and its FLOPs
        (``None`` when the meta device cannot count them)."""
        budget, meter, clock, cache = self.budget, self.meter, self.clock, self.flops_cache
        if budget.time_s is not None and key not in cache:
            # a new kind of step (a scheduler switched a term or the attack on): counting its FLOPs
            # on the meta device costs real time; stop if that, the step and the closing
            # validation would not fit
            if not clock.new_kind_fits(key, meter.elapsed_s, budget.time_s):
                self.stopped_by = "time_s"
                return False, None
        t_dry = meter.elapsed_s
        new_key = key not in cache
        cost = self.trainer._step_cost(self.model, batch, weights, cache)
        if new_key:
            clock.dry_run_s = max(clock.dry_run_s, meter.elapsed_s - t_dry)
        fl = None if cost is None else cost.flops
        if budget.flops is not None and fl is not None and meter.flops + fl > budget.flops:
            self.stopped_by = "flops"
            return False, fl
        if budget.time_s is not None and not clock.step_fits(key, fl, meter.elapsed_s, budget.time_s):
            self.stopped_by = "time_s"
            return False, fl
        return True, fl

    def _trial(self, weights, fractions, settings) -> dict:
        """:meth:`TrainState.trial_epoch`: the next epoch on copies of the model, optimiser and terms,
        outside the budget; its validation metrics."""
        trainer, state = self.trainer, self.state
        with self.meter.paused():
            m2 = copy.deepcopy(self.model)
            o2 = trainer._make_optimizer(m2)
            o2.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))  # load_state_dict shares tensors
            terms2 = copy.deepcopy(trainer.terms)
            for name, attrs in settings.items():
                for t in terms2:
                    if t.name == name:
                        for k, v in attrs.items():
                            setattr(t, k, v)
            b2 = self.batches.clone()
            b2.start_epoch()
            rng = torch.get_rng_state()
            m2.train()
            for s_ in range(self.steps_per_epoch):
                w = trainer._active(weights, {**state.fractions, **fractions}, s_)
                b = self.split.at(b2.next())
                o2.zero_grad(set_to_none=True)
                loss, _ = trainer._loss(m2, b, w, terms=terms2)
                loss.backward()
                o2.step()
            torch.set_rng_state(rng)
            return trainer._validate(m2, self.task, self.metrics)

    # -- after the last step -----------------------------------------------------------------
    def _record(self) -> RunRecord:
        """The run's record: usage, what stopped it and why, and the final test report (outside the budget)."""
        trainer, budget, state, task, over = self.trainer, self.budget, self.state, self.task, self.over
        usage = self.meter.usage.to_dict()
        usage["max_step_s"] = self.clock.max_step_s
        if budget.time_s is not None and usage["time_s"] > budget.time_s and "time_s" not in over:
            over.append("time_s")
        if budget.memory_mb is not None and usage["peak_memory_mb"] > budget.memory_mb and "memory_mb" not in over:
            over.append("memory_mb")
        message = self.message or _stop_message(self.stopped_by, state, self.steps_per_epoch)
        fraction = {}
        for f, used in (("time_s", usage["time_s"]), ("memory_mb", usage["peak_memory_mb"]),
                        ("max_params", usage["params"]), ("flops", usage["flops"])):
            limit = getattr(budget, f)
            fraction[f] = None if limit is None else used / limit
        # the final report on the test split: outside the budget, timed and recorded
        t_report = time.perf_counter()
        test = evaluate(self.model, task.test, metrics=self.metrics)
        if trainer.robust_eval is not None:
            test["robust_accuracy"] = trainer.robust_eval.measure(self.model, task, "test", seed=trainer.seed)
        usage["report_s"] = time.perf_counter() - t_report
        trainer.model_ = self.model
        return RunRecord(
            task=task.name, seed=trainer.seed, config=trainer.config(task), epochs=state.history, test=test,
            usage=usage, budget=budget.to_dict(), budget_fraction=fraction, stopped_by=self.stopped_by,
            over_budget=over, message=message,
        )


def _stop_message(stopped_by: str, state: TrainState, steps_per_epoch: int) -> str:
    """What a record says about a run that stopped early ("" when it is unremarkable)."""
    if not state.history:
        return (f"the budget ({stopped_by}) was too small for a single training step; "
                "test metrics are those of the untrained model")
    if not any(not e.partial for e in state.history):
        return (f"the budget ({stopped_by}) was too small for one full epoch: it allowed "
                f"{state.history[0].steps} of {steps_per_epoch} steps; the record holds that partial epoch")
    if stopped_by in ("time_s", "flops", "memory_mb"):
        return f"stopped by the {stopped_by} budget after {state.step} steps ({len(state.history)} epochs started)"
    return ""


def _settings(term) -> dict:
    """The knobs of a term a scheduler may change (recorded per epoch)."""
    out = {}
    for k in ("attack", "steps", "eps"):
        if hasattr(term, k):
            out[k] = getattr(term, k)
    return out
