"""Replicas: R independent fits of one architecture trained as one batched model.

Evidence is many small runs (seeds × λ values × methods). Small models leave a CPU's vector units
and a GPU mostly idle, so R replicas run faster stacked: their parameters are stacked along a new
first dimension (:func:`torch.func.stack_module_state`), one forward pass computes every
replica's logits on its own batch (grouped matrix products, ``torch.baddbmm``, for the MLP;
:func:`torch.func.vmap` over :func:`torch.func.functional_call` for other models), and the sum of the replicas' losses
is differentiated once. Replicas share no parameter, so the gradient of that sum with respect to
replica r's parameters is the gradient of replica r's own loss, and an element-wise optimiser
(Adam, AdamW, SGD with momentum) updates each slice as it would update a separate model. What
differs from R separate :class:`~trustkit.train.Trainer` fits is only the order of floating-point
additions inside the batched products: the records agree within rounding.
"""

from __future__ import annotations

import copy
import time
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_int, resolve_device
from ..budget import Meter
from ..data import Task
from ..metrics import check_metrics, compute_metrics, default_metrics, evaluate
from ._terms import AdversarialLoss, Batch, CrossEntropy, FairnessPenalty
from ._loop import _Batches
from ._records import EpochRecord, RunRecord
from ._trainer import OPTIMIZERS, Trainer

__all__ = ["ReplicaTrainer", "REPLICA_TERMS"]

#: loss terms a replica job can train with: the logits and the batch (cross-entropy, the fairness
#: penalty), or the stacked model run again on each replica's own attack (adversarial training)
REPLICA_TERMS = (CrossEntropy, FairnessPenalty, AdversarialLoss)


class ReplicaTrainer:
    """Train R replicas of one model at once, each as a separate :class:`~trustkit.train.Trainer` would.

    Replica r has its own seed (initialisation and batch order), its own task (a seed's split;
    one task for all is allowed), its own loss weights and its own number of epochs; it returns
    its own :class:`~trustkit.train.RunRecord` and model. The records equal those of R separate
    ``Trainer`` fits with the same settings within float tolerance (the batched products add in
    another order), and a replica that stops after fewer epochs leaves the others as they were.

    Parameters
    ----------
    seeds : sequence of int
        One per replica.
    model, model_kwargs, optimizer, lr, weight_decay, batch_size, metrics, device
        As for :class:`~trustkit.train.Trainer`; ``model`` must be a model name.
    terms : sequence of LossTerm, or one such sequence per replica, optional
        :data:`REPLICA_TERMS` only (default ``[CrossEntropy()]``). One list is copied for each
        replica; lists per replica must hold the same kinds of terms with the same settings (an
        adversarial term's seed may differ). Each replica's adversarial term draws its random
        starts from its own generator, as in a separate fit.
    weights : mapping or sequence of mappings, optional
        The terms' weights, one mapping for all replicas or one per replica (e.g. λ values).
    epochs : int or sequence of int
        For all replicas, or one per replica.

    Runs with a budget, callbacks (schedulers) or a robust validation are fitted one at a time
    with :class:`~trustkit.train.Trainer`: their decisions depend on each run's clock or
    validation in ways a shared step does not reproduce. Time is measured for the whole job; each
    record's ``usage["time_s"]`` is the job's time divided by R (``usage["replicas"]`` = R and
    ``usage["replica_job_s"]`` = the whole job).

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> task = load_german(seed=0)
    >>> rt = ReplicaTrainer(seeds=[0, 1, 2], epochs=2, progress=False)
    >>> records = rt.fit(task)
    >>> [r.seed for r in records], [r.completed_epochs for r in records]
    ([0, 1, 2], [2, 2, 2])
    """

    def __init__(self, *, seeds: Sequence[int], model: str = "mlp", model_kwargs: Mapping | None = None,
                 terms=None, weights=None, optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0,
                 batch_size: int = 128, epochs=20, metrics=None, progress: bool = True, device="cpu"):
        if isinstance(seeds, (int, np.integer)) or not isinstance(seeds, Sequence) or not len(seeds):
            raise TypeError(f"seeds must be a non-empty sequence of whole numbers (one per replica); got {seeds!r}")
        self.seeds = [check_int("seeds[]", s, minimum=0) for s in seeds]
        R = len(self.seeds)
        if not isinstance(model, str):
            raise TypeError(f"a replica job builds its models by name (e.g. 'mlp'); got {type(model).__name__}")
        self.replica_terms = _replica_terms(terms, R)
        self.terms = self.replica_terms[0]
        if weights is None or isinstance(weights, Mapping):
            weights = [weights] * R
        weights = list(weights)
        if len(weights) != R:
            raise ValueError(f"weights must be one mapping or one per replica ({R}); got {len(weights)}")
        epochs_list = [epochs] * R if isinstance(epochs, (int, np.integer)) else list(epochs)
        if len(epochs_list) != R:
            raise ValueError(f"epochs must be one number or one per replica ({R}); got {len(epochs_list)}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {list(OPTIMIZERS)}")
        if (model_kwargs or {}).get("dropout"):
            raise ValueError("replicas train without dropout (its random masks would differ from separate fits)")
        # one Trainer per replica: it checks the arguments, builds the model, names the config
        self._trainers = [Trainer(model=model, model_kwargs=model_kwargs, terms=ts, weights=w,
                                  optimizer=optimizer, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                                  epochs=e, seed=s, metrics=metrics, progress=False, device=device)
                          for s, ts, w, e in zip(self.seeds, self.replica_terms, weights, epochs_list)]
        self.epochs = [t.epochs for t in self._trainers]
        self.batch_size = self._trainers[0].batch_size
        self.device = resolve_device(device)
        self.progress = progress

    def fit(self, tasks: Task | Sequence[Task]) -> list[RunRecord]:
        """Train every replica; returns one record per replica (in the order of ``seeds``).

        ``tasks`` is one task for every replica or one per replica; their training splits must
        have the same number of rows (the replicas step together), and so must their validation
        splits (validated in one batched pass).
        """
        t_call = time.perf_counter()
        R = len(self.seeds)
        tasks = [tasks] * R if isinstance(tasks, Task) else list(tasks)
        if len(tasks) != R or not all(isinstance(t, Task) for t in tasks):
            raise TypeError(f"tasks must be one trustkit.data.Task or one per replica ({R})")
        for split in ("train", "val"):
            sizes = {len(getattr(t, split)) for t in tasks}
            if len(sizes) != 1:
                raise ValueError(f"the replicas' {split} splits must have the same number of rows (the replicas "
                                 f"step and validate together); got {sorted(sizes)}")
        first = tasks[0]
        if any(t.n_classes != first.n_classes or t.input_shape != first.input_shape for t in tasks):
            raise ValueError("the replicas' tasks must have the same input shape and number of classes")
        if any(t.train.a is None for t in tasks) and any(isinstance(t, FairnessPenalty) for t in self.terms):
            raise ValueError("the fairness term needs a sensitive attribute in every replica's task")
        tr0 = self._trainers[0]
        metrics = (check_metrics(tr0.metrics, n_classes=first.n_classes, has_sensitive=first.has_sensitive)
                   if tr0.metrics is not None else default_metrics(n_classes=first.n_classes, has_sensitive=first.has_sensitive))
        with torch.random.fork_rng(devices=[]):
            records = self._fit(tasks, metrics)
        wall = time.perf_counter() - t_call
        for r in records:
            r.usage["wall_s"] = wall / R
            r.usage["threads"] = torch.get_num_threads()
        return records

    def _fit(self, tasks: list[Task], metrics) -> list[RunRecord]:
        from torch.func import functional_call, stack_module_state, vmap

        R, device, trainers = len(self.seeds), self.device, self._trainers
        meter = Meter().start()
        for r, ts in enumerate(self.replica_terms):  # as each separate fit would: the task's geometry, the seed
            for t in ts:
                if hasattr(t, "bind"):
                    t.bind(tasks[r])
                if hasattr(t, "reset"):
                    t.reset(self.seeds[r])
        models = [tr.build_model(task).to(device) for tr, task in zip(trainers, tasks)]
        params, buffers = stack_module_state(models)
        base = copy.deepcopy(models[0]).to("meta")

        def forward(p, b, x):
            return functional_call(base, (p, b), (x,))

        batched_forward = _grouped_forward(base) or vmap(forward)
        # element-wise (each slice as its own model), fused: a handful of large stacked tensors
        optimizer = trainers[0]._make_optimizer(list(params.values()), fused=True)
        shared = all(t is tasks[0] for t in tasks)
        Xs = [torch.as_tensor(t.train.X).to(device) for t in (tasks[:1] if shared else tasks)]
        X = Xs[0] if shared else torch.stack(Xs)
        y = torch.stack([torch.as_tensor(t.train.y).to(device) for t in tasks])
        has_a = all(t.train.a is not None for t in tasks)
        a = torch.stack([torch.as_tensor(t.train.a).to(device) for t in tasks]) if has_a else None
        n = y.shape[1]
        # the validation splits go to the device once: every epoch validates all replicas in one pass
        val_X = (torch.as_tensor(tasks[0].val.X).to(device) if shared
                 else torch.stack([torch.as_tensor(t.val.X).to(device) for t in tasks]))
        batches = [_Batches(n, self.batch_size, s, None, device) for s in self.seeds]
        steps_per_epoch = batches[0].steps
        weights = [dict(tr.weights) for tr in trainers]
        w_of = {t.name: torch.tensor([w.get(t.name, 0.0) for w in weights], device=device) for t in self.terms}
        k = min(self.batch_size, n)
        probe = Batch(x=torch.as_tensor(tasks[0].train.X[:k]), y=torch.zeros(k, dtype=torch.long),
                      a=torch.zeros(k, dtype=torch.long) if has_a else None, idx=torch.arange(k))
        trainers[0]._dry_run_s = 0.0
        cost = trainers[0]._step_cost(models[0], probe, weights[0], {})
        # FLOPs of one replica's epoch (a full batch's count per step: the last, partial one is over-counted)
        self._epoch_flops = (0 if cost is None else cost.flops) * steps_per_epoch
        meter.params = sum(p.numel() for p in models[0].parameters())
        histories: list[list[EpochRecord]] = [[] for _ in range(R)]
        finished: list[RunRecord | None] = [None] * R
        max_epochs = max(self.epochs)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=max_epochs, desc=f"{tasks[0].name}: {R} replicas", leave=False)
        for epoch in range(1, max_epochs + 1):
            live = [r for r in range(R) if finished[r] is None]
            t_epoch = meter.elapsed_s
            for b in batches:  # each replica's own order: its generator draws this pass's permutation
                b.start_epoch()
                b.next()
            perms = torch.stack([b.perm for b in batches])  # (R, n)
            losses = []
            for s in range(steps_per_epoch):
                idx = perms[:, s * self.batch_size:(s + 1) * self.batch_size]  # (R, B)
                xb = _rows(X, idx, shared)
                yb, ab = torch.gather(y, 1, idx), (torch.gather(a, 1, idx) if has_a else None)
                logits = batched_forward(params, buffers, xb)  # (R, B, C)
                per = self._losses(logits, xb, yb, ab, idx, w_of,
                                   lambda x: batched_forward(params, buffers, x))
                optimizer.zero_grad(set_to_none=True)
                per.sum().backward()
                optimizer.step()
                losses.append(per.detach())
            train_loss = torch.stack(losses).mean(0)
            eval_t0 = meter.elapsed_s
            live = [r for r in live if epoch <= self.epochs[r]]
            vals = self._validate(batched_forward, base, params, buffers, tasks, live, metrics, val_X)
            meter.sample()
            for r in live:
                histories[r].append(EpochRecord(
                    epoch=epoch, steps=steps_per_epoch, train_loss=float(train_loss[r]), val=vals[r],
                    weights=dict(weights[r]), time_s=meter.elapsed_s / R, epoch_time_s=(meter.elapsed_s - t_epoch) / R,
                    eval_time_s=(meter.elapsed_s - eval_t0) / max(1, len(live)), peak_memory_mb=meter.peak_memory_mb,
                    flops=self._epoch_flops * epoch, partial=False, fractions={k: 1.0 for k in weights[r]}, settings={},
                    term_time_s={}, callback_s=0.0))
                if epoch == self.epochs[r]:  # this replica is done: its model is copied out now
                    _load(models[r], params, buffers, r)
                    finished[r] = self._record(r, tasks[r], models[r], histories[r], meter, metrics)
            if bar is not None:
                bar.update(1)
        meter.stop()
        if bar is not None:
            bar.close()
        self.models_ = [m.eval() for m in models]
        job_s = meter.usage.time_s
        for rec in finished:
            rec.usage.update(time_s=job_s / R, replicas=R, replica_job_s=job_s)
        return finished

    def _validate(self, batched_forward, base, params, buffers, tasks, live, metrics, val_X) -> dict:
        """Each live replica's validation metrics, from one batched forward pass over its split."""
        if not live:
            return {}
        rows = torch.tensor(live, device=self.device)
        p = {k: v[rows] for k, v in params.items()}
        b = {k: v[rows] for k, v in buffers.items()}
        if val_X.dim() == 1 + len(tasks[0].input_shape):  # one split for all: a view, not R copies
            x = val_X.expand(len(live), *val_X.shape)
        else:
            x = val_X[rows]
        base.eval()
        try:
            with torch.no_grad():
                logits = batched_forward(p, b, x)  # (live, n_val, C)
        finally:
            base.train()
        out = {}
        for i, r in enumerate(live):
            probs = torch.softmax(logits[i].detach().cpu().double(), dim=1)
            out[r] = compute_metrics(metrics, tasks[r].val.y, probs, tasks[r].val.a)
        return out

    def _losses(self, logits, xb, yb, ab, idx, w_of, forward) -> torch.Tensor:
        """Each replica's loss, (R,): its terms weighted as a separate fit weighs them."""
        R, B, C = logits.shape
        total = logits.new_zeros(R)
        for j, term in enumerate(self.terms):
            w = w_of[term.name]
            if not bool((w > 0).any()):
                continue
            if isinstance(term, CrossEntropy):
                value = F.cross_entropy(logits.reshape(R * B, C), yb.reshape(-1), reduction="none",
                                        label_smoothing=term.label_smoothing).reshape(R, B).mean(1)
            elif isinstance(term, AdversarialLoss):  # each replica's attack from its own random start
                x_adv = self._perturb([ts[j] for ts in self.replica_terms], forward, xb, yb)
                value = F.cross_entropy(forward(x_adv).reshape(R * B, C), yb.reshape(-1),
                                        reduction="none").reshape(R, B).mean(1)
            else:  # O(batch) per replica, on the shared forward pass's logits
                value = torch.stack([term(None, Batch(x=None, y=yb[r], a=None if ab is None else ab[r], idx=idx[r]),
                                          logits[r]) if float(w[r]) > 0 else logits.new_zeros(())
                                     for r in range(R)])
            total = total + torch.where(w > 0, w * value, torch.zeros_like(value))
        return total

    @staticmethod
    def _perturb(advs, forward, xb, yb) -> torch.Tensor:
        """The attack of :class:`AdversarialLoss` on every replica at once: (R, B, ...) inputs."""
        from ..metrics import pgd

        t = advs[0]
        t._check()
        bounds, mask = t.geometry()
        if t.attack == "fgsm_rs":
            steps, alpha = 1, 1.25 * t.eps if t.step_size is None else t.step_size
        else:
            steps, alpha = t.steps, t.step_size
        model = _Stacked(forward)
        return pgd(model, xb, yb.reshape(-1), t.eps, steps=steps, step_size=alpha, bounds=bounds,
                   mask=None if mask is None else mask.to(xb.device), generator=[a._gen for a in advs])

    def _record(self, r, task, model, history, meter, metrics) -> RunRecord:
        tr = self._trainers[r]
        t0 = time.perf_counter()
        test = evaluate(model, task.test, metrics=metrics)
        usage = meter.usage.to_dict()
        usage["report_s"] = time.perf_counter() - t0
        usage["flops"] = self._epoch_flops * len(history)
        return RunRecord(task=task.name, seed=tr.seed, config={**tr.config(task), "replicas": len(self.seeds)},
                         epochs=list(history), test=test, usage=usage, budget=tr.budget.to_dict(),
                         budget_fraction={k: None for k in ("time_s", "memory_mb", "max_params", "flops")},
                         stopped_by="epochs")


def _settings_of(term) -> list:
    """What must be equal for replicas to batch a term: its public settings (not its seed)."""
    return sorted((k, repr(v)) for k, v in vars(term).items() if not k.startswith("_") and k != "seed")


def _replica_terms(terms, R: int) -> list[list]:
    """One list of terms per replica: ``terms`` given per replica, or one list copied for each
    (a term with state, such as the attack's random generator, is then each replica's own)."""
    if terms is None:
        terms = [CrossEntropy()]
    terms = list(terms)
    per = terms and all(isinstance(t, (list, tuple)) for t in terms)
    lists = [list(t) for t in terms] if per else [copy.deepcopy(terms) for _ in range(R)]
    if len(lists) != R:
        raise ValueError(f"terms must be one list for all replicas or one list per replica ({R}); got {len(lists)}")
    first = lists[0]
    for ts in lists:
        for t in ts:
            if not isinstance(t, REPLICA_TERMS):
                raise ValueError(f"replicas train with the terms {[c.__name__ for c in REPLICA_TERMS]}; got "
                                 f"{type(t).__name__}: fit runs with it one at a time with Trainer")
            if isinstance(t, CrossEntropy) and t.cell_weights is not None:
                raise ValueError("replicas train with an unweighted CrossEntropy (cell_weights=None)")
        if [(type(t), _settings_of(t)) for t in ts] != [(type(t), _settings_of(t)) for t in first]:
            raise ValueError("every replica's terms must be the same kinds with the same settings (their seeds "
                             f"may differ); got {ts} and {first}")
    return lists


class _Stacked(torch.nn.Module):
    """The replicas as one model for an attack: inputs (R, B, ...) → logits (R·B, C), one row per
    replica's example, so a cross-entropy over all rows has each replica's gradient in its slice."""

    def __init__(self, forward):
        super().__init__()
        self._forward = forward

    def forward(self, x):
        logits = self._forward(x)
        return logits.reshape(-1, logits.shape[-1])


def _grouped_forward(base):
    """The stacked forward pass of an MLP (Linear and ReLU layers only) as grouped matrix products:
    ``(params, buffers, x (R, B, d)) → logits (R, B, C)`` by one ``torch.baddbmm`` per layer.

    It computes what ``vmap`` over ``functional_call`` computes, with less overhead per step (about
    20% less time for forward and backward of ten 64-wide replicas on one CPU thread); any other
    model returns None and goes through ``vmap``.
    """
    from ..models import MLP

    if type(base) is not MLP:
        return None
    layers = list(base.features)
    if not all(isinstance(m, torch.nn.ReLU) or (isinstance(m, torch.nn.Linear) and m.bias is not None)
               for m in layers):
        return None
    plan = [(f"features.{i}", isinstance(m, torch.nn.Linear)) for i, m in enumerate(layers)] + [("head", True)]

    def forward(p, b, x):
        h = x
        for name, linear in plan:
            if linear:
                h = torch.baddbmm(p[f"{name}.bias"].unsqueeze(1), h, p[f"{name}.weight"].transpose(1, 2))
            else:
                h = torch.relu(h)
        return h

    return forward


def _rows(X: torch.Tensor, idx: torch.Tensor, shared: bool) -> torch.Tensor:
    """Each replica's batch, (R, B, ...): rows ``idx[r]`` of the shared split ``X`` (n, ...) or of
    its own split ``X[r]`` (R, n, ...), by one ``index_select`` (several times faster on the CPU
    than advanced indexing with a 2-d index)."""
    R, B = idx.shape
    if shared:
        return X.index_select(0, idx.reshape(-1)).view(R, B, *X.shape[1:])
    n = X.shape[1]
    flat = (idx + n * torch.arange(R, device=idx.device)[:, None]).reshape(-1)
    return X.reshape(R * n, *X.shape[2:]).index_select(0, flat).view(R, B, *X.shape[2:])


def _load(model, params, buffers, r: int) -> None:
    """Copy replica ``r``'s slice of the stacked state into ``model`` (for validation and the result)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name][r])
        for name, b in model.named_buffers():
            if name in buffers:
                b.copy_(buffers[name][r])

