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
from ._accounting import BOOKKEEPING_S, StepClock
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
    # predicts steps and the closing validation from what the run has seen; counting a new kind of
    # step costs what the probe's count took (measured, here or by an earlier run)
    clock = StepClock(flops_cache, self._dry_run_s)
    act_mb = 0.0 if probe is None else probe.saved_bytes / (1024 * 1024)
    meter.est_memory_mb = static_mb + act_mb
    if budget.memory_mb is not None and meter.est_memory_mb > budget.memory_mb:
        raise ValueError(
            f"Budget.memory_mb={budget.memory_mb} is below the estimated footprint of one training step: "
            f"{static_mb:.2f} MB for parameters, gradients and optimiser state plus {act_mb:.2f} MB of "
            f"activations at batch_size={self.batch_size}; lower batch_size, use a smaller model or raise the limit"
        )
    stopped_by, over, message = "epochs", [], ""

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
        eval_time = clock.eval_time = self._validation_cost(model, task, metrics, left_s=budget.time_s - meter.elapsed_s)
        if meter.elapsed_s + 1.25 * eval_time + BOOKKEEPING_S > budget.time_s:
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
                    if not clock.new_kind_fits(key, meter.elapsed_s, budget.time_s):
                        stopped_by = "time_s"
                        break
                t_dry = meter.elapsed_s
                new_key = key not in flops_cache
                cost = self._step_cost(model, batch, weights, flops_cache)
                if new_key:
                    clock.dry_run_s = max(clock.dry_run_s, meter.elapsed_s - t_dry)
                fl = None if cost is None else cost.flops
                if budget.flops is not None and fl is not None and meter.flops + fl > budget.flops:
                    stopped_by = "flops"
                    break
                if budget.time_s is not None and not clock.step_fits(key, fl, meter.elapsed_s, budget.time_s):
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
                clock.took(key, dt)
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
            eval_time = clock.eval_time = meter.elapsed_s - t_eval
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
            clock.hooks_s = max(clock.hooks_s, epoch_hooks)
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
    usage["max_step_s"] = clock.max_step_s
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
