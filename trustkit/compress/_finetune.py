"""Training after (or as) compression, through the Trainer: fine-tuning, distillation, and a constrained fine-tune."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from .._validation import check_choice, check_fraction, check_int, check_positive
from ..budget import count_params
from ..data import Task
from ..metrics import predict_logits
from ..models import make_model
from ..train import Callback, CrossEntropy, RunRecord, Trainer
from ._core import Compressed, footprint, prunable_layers
from ._impact import GROUPINGS

__all__ = ["finetune", "DistillationLoss", "distill", "GroupLoss", "GroupDropConstraint", "constrained_finetune"]


def _as_compressed(model) -> Compressed:
    if isinstance(model, Compressed):
        return model
    if isinstance(model, nn.Module):
        f = footprint(model)
        return Compressed(model=model, method="dense", settings={}, before=f, after=dict(f), cost_s=0.0)
    raise TypeError(f"model must be a torch.nn.Module or a trustkit.compress.Compressed; got {type(model).__name__}")


def _train_copy(c: Compressed, task: Task, trainer_kwargs: dict, *, keep_sparsity: bool, what: str) -> tuple[nn.Module, RunRecord]:
    if not c.differentiable:
        raise ValueError(f"a {c.method} model ({c.settings.get('scheme', '')}) has no gradients and cannot be {what}; "
                         "fine-tune before quantising, or use scheme='int4_simulated'")
    model = copy.deepcopy(c.model)
    masked = []
    if keep_sparsity:
        for _, m in prunable_layers(model):
            mask = m.weight.detach() != 0
            if not bool(mask.all()):
                prune.custom_from_mask(m, "weight", mask)  # pruned weights stay exactly zero while training
                masked.append(m)
    trainer = Trainer(model=lambda task, seed: model, **trainer_kwargs)
    record = trainer.fit(task)
    trained = trainer.model_
    for m in masked:
        prune.remove(m, "weight")
    return trained.eval(), record


def finetune(model, task: Task, *, steps: int | None = None, epochs: int = 1, lr: float = 1e-3,
             batch_size: int = 128, budget=None, seed: int = 0, terms=None, weights=None, callbacks=(),
             keep_sparsity: bool = True, progress: bool = False, **trainer_kwargs) -> tuple[Compressed, RunRecord]:
    """Fine-tune a compressed model on ``task.train`` with the :class:`~trustkit.train.Trainer`.

    ``steps`` limits the fine-tune to that many optimiser steps per epoch (a step budget; ``None``
    = full passes); ``budget`` adds any :class:`~trustkit.budget.Budget`. With ``keep_sparsity``
    (default) every weight that is exactly zero stays zero (a pruning mask is held during
    training), so an unstructured-pruned model keeps its sparsity. The model given is not changed.
    Returns the fine-tuned model as a :class:`Compressed` (its ``cost_s`` adds the fine-tune's wall
    time) and the run's record. Other keyword arguments (``device=``, ``robust_eval=``…) go to the
    :class:`~trustkit.train.Trainer`.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> from trustkit.compress import prune_unstructured
    >>> task = load_german(seed=0)
    >>> from trustkit.models import make_model
    >>> pruned = prune_unstructured(make_model("mlp", input_shape=task.input_shape, n_classes=2), sparsity=0.8)
    >>> tuned, record = finetune(pruned, task, steps=5)
    >>> round(tuned.sparsity, 2), record.epochs[0].steps
    (0.79, 5)
    """
    c = _as_compressed(model)
    if steps is not None:
        check_int("steps", steps, minimum=1)
    t0 = time.perf_counter()
    trained, record = _train_copy(c, task, dict(epochs=epochs, epoch_steps=steps, lr=lr, batch_size=batch_size,
                                                budget=budget, seed=seed, terms=terms, weights=weights,
                                                callbacks=callbacks, progress=progress, **trainer_kwargs),
                                  keep_sparsity=keep_sparsity, what="fine-tuned")
    after = footprint(trained)
    return Compressed(
        model=trained, method=c.method, settings={**c.settings, "finetune_steps": sum(e.steps for e in record.epochs)},
        before=c.before, after=after, cost_s=c.cost_s + (time.perf_counter() - t0),
        notes=c.notes + "; fine-tuned", differentiable=True, extra={**c.extra, "finetune_time_s": record.usage["time_s"]},
    ), record


class DistillationLoss:
    r"""Knowledge distillation term (name ``"kd"``): match the teacher's softened class probabilities.

    :math:`T^2 \cdot \mathrm{KL}\big(\mathrm{softmax}(z_t/T) \,\|\, \mathrm{softmax}(z_s/T)\big)`, the
    loss of Hinton et al. 2015; the :math:`T^2` keeps its gradients on the scale of the hard-label
    loss. Mix it with the hard labels through the trainer's weights: ``{"ce": 1 − α, "kd": α}``.
    The teacher runs in eval mode without gradients on each batch; its forward pass is charged to
    the step.

    >>> t = nn.Linear(3, 2); loss = DistillationLoss(teacher=t, temperature=2.0)
    >>> from trustkit.train import Batch
    >>> x = torch.randn(4, 3); b = Batch(x=x, y=torch.zeros(4, dtype=torch.long), a=None, idx=torch.arange(4))
    >>> float(loss(t, b, t(x))) < 1e-6   # a student equal to its teacher has nothing to learn
    True
    """

    name = "kd"

    def __init__(self, *, teacher: nn.Module, temperature: float = 4.0):
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be a torch.nn.Module; got {type(teacher).__name__}")
        check_positive("temperature", temperature)
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature = float(temperature)

    def __call__(self, model, batch, logits: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        with torch.no_grad():
            target = F.log_softmax(self.teacher(batch.x) / T, dim=1)
        return T * T * F.kl_div(F.log_softmax(logits / T, dim=1), target, log_target=True, reduction="batchmean")

    def __deepcopy__(self, memo):  # trials copy the terms: share the frozen teacher instead of copying it
        new = object.__new__(type(self))
        new.teacher, new.temperature = self.teacher, self.temperature
        return new

    def __repr__(self) -> str:
        return f"DistillationLoss(temperature={self.temperature:g})"


def distill(teacher: nn.Module, task: Task, *, student: str = "mlp", student_kwargs=None, temperature: float = 4.0,
            alpha: float = 0.5, epochs: int = 20, lr: float = 1e-3, batch_size: int = 128, budget=None,
            seed: int = 0, progress: bool = False, extra_terms=(), extra_weights=None,
            **trainer_kwargs) -> tuple[Compressed, RunRecord]:
    """Train a smaller ``student`` from ``teacher``'s soft labels (and the hard labels) with the Trainer.

    The loss is ``(1 − alpha)·CE(labels) + alpha·KD`` (:class:`DistillationLoss` at
    ``temperature``); ``budget`` limits the student's training like any run. ``student`` is a model
    name with ``student_kwargs`` (e.g. ``{"hidden": 16}``); a student with more parameters than
    the teacher is refused. Returns the student as a :class:`Compressed` (``cost_s`` = its training
    time) and the run's record. ``extra_terms`` (with ``extra_weights`` by name) join the loss, so
    a mitigation (a fairness penalty, adversarial training) can train the student too. Other keyword
    arguments (``device=``…) go to the :class:`~trustkit.train.Trainer`; the teacher is moved to the
    same device.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> task = load_german(seed=0)
    >>> teacher = make_model("mlp", input_shape=task.input_shape, n_classes=2, hidden=64)
    >>> c, record = distill(teacher, task, student_kwargs={"hidden": 8}, epochs=2)
    >>> c.method, c.param_ratio < 0.2
    ('distill', True)
    """
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module; got {type(teacher).__name__}")
    check_fraction("alpha", alpha, inclusive_low=True, inclusive_high=True)
    kwargs = dict(student_kwargs or {})
    probe = make_model(student, input_shape=task.input_shape, n_classes=task.n_classes, seed=seed, **kwargs)
    n_student, n_teacher = count_params(probe), count_params(teacher)
    if n_student > n_teacher:
        raise ValueError(f"the student ({student} {kwargs}) has {n_student:,} parameters, more than the teacher's "
                         f"{n_teacher:,}; choose a smaller student (student_kwargs such as hidden= or width=)")
    teacher = copy.deepcopy(teacher).eval()
    if "device" in trainer_kwargs:
        from .._validation import resolve_device

        teacher = teacher.to(resolve_device(trainer_kwargs["device"]))
    t0 = time.perf_counter()
    extra_terms = list(extra_terms)
    trainer = Trainer(model=student, model_kwargs=kwargs,
                      terms=[CrossEntropy(), DistillationLoss(teacher=teacher, temperature=temperature), *extra_terms],
                      weights={"ce": 1.0 - alpha, "kd": alpha, **{t.name: 1.0 for t in extra_terms}, **dict(extra_weights or {})},
                      epochs=epochs, lr=lr, batch_size=batch_size,
                      budget=budget, seed=seed, progress=progress, **trainer_kwargs)
    record = trainer.fit(task)
    model = trainer.model_.eval()
    return Compressed(
        model=model, method="distill", settings={"student": student, **{f"student_{k}": v for k, v in kwargs.items()},
                                                 "temperature": float(temperature), "alpha": float(alpha)},
        before=footprint(teacher), after=footprint(model), cost_s=time.perf_counter() - t0,
        notes=f"student {student} {kwargs} trained on the teacher's soft labels (T={temperature:g}, α={alpha:g})",
        extra={"train_time_s": record.usage["time_s"]},
    ), record


class GroupLoss:
    r"""Multiplier-weighted per-group cross-entropy (name ``"group"``): :math:`\sum_g \lambda_g\,\mathrm{CE}_g`.

    The differentiable stand-in (proxy) for the per-group accuracy constraints of
    :class:`GroupDropConstraint`, which sets ``multipliers``. Each call also stores the batch's
    per-group accuracy in ``last_accuracy`` (NaN for a group absent from the batch).
    """

    name = "group"

    def __init__(self, *, n_groups: int, groups: str = "sensitive"):
        self.n_groups = check_int("n_groups", n_groups, minimum=1)
        self.groups = check_choice("groups", groups, GROUPINGS)
        self.multipliers = torch.zeros(n_groups)
        self.last_accuracy = torch.full((n_groups,), float("nan"))

    def _codes(self, batch) -> torch.Tensor:
        if self.groups == "sensitive":
            if batch.a is None:
                raise ValueError("GroupLoss(groups='sensitive') needs a task with a sensitive attribute")
            return batch.a
        return batch.y

    def __call__(self, model, batch, logits: torch.Tensor) -> torch.Tensor:
        g = self._codes(batch).long()
        ce = F.cross_entropy(logits, batch.y, reduction="none")
        counts = torch.bincount(g, minlength=self.n_groups).to(ce.dtype)
        sums = torch.zeros(self.n_groups, dtype=ce.dtype, device=ce.device).index_add_(0, g, ce)
        per_group = sums / counts.clamp_min(1)
        with torch.no_grad():
            right = (logits.argmax(1) == batch.y).to(ce.dtype)
            acc = torch.zeros(self.n_groups, dtype=ce.dtype, device=ce.device).index_add_(0, g, right) / counts.clamp_min(1)
            self.last_accuracy = torch.where(counts > 0, acc, torch.full_like(acc, float("nan"))).cpu()
        return (self.multipliers.to(device=ce.device, dtype=ce.dtype) * per_group).sum()

    def __repr__(self) -> str:
        return f"GroupLoss(n_groups={self.n_groups}, groups={self.groups!r})"


class GroupDropConstraint(Callback):
    r"""Lagrange multipliers for "each group's accuracy falls at most ``max_drop`` below the dense model's".

    Constraint per group :math:`g`: :math:`\mathrm{acc}^{dense}_g - \mathrm{acc}_g(\theta) \le \epsilon`,
    as in Hashemizadeh et al. 2023 ("Balancing Act: constraining disparate impact in sparse models").
    Accuracy has no gradient, so this is a proxy-Lagrangian (Cotter et al. 2019): the model descends
    on ``CE + Σ_g λ_g CE_g`` (:class:`GroupLoss`), while each multiplier ascends on the *accuracy*
    violation measured on the batch, :math:`\lambda_g \leftarrow [\lambda_g + \eta(\mathrm{acc}^{dense}_g
    - \mathrm{acc}_g - \epsilon)]_+`, held in a ``cooper`` ``DenseMultiplier`` with an ascent optimiser.
    ``history`` keeps the multipliers after each epoch.
    """

    def __init__(self, *, dense_accuracy, max_drop: float = 0.02, dual_lr: float = 0.5):
        self.dense_accuracy = torch.as_tensor(np.asarray(dense_accuracy, dtype=np.float64))
        if self.dense_accuracy.ndim != 1 or not len(self.dense_accuracy):
            raise ValueError("dense_accuracy must hold one accuracy per group")
        self.max_drop = check_fraction("max_drop", max_drop, inclusive_low=True)
        self.dual_lr = check_positive("dual_lr", dual_lr)
        self.history: list[list[float]] = []

    def on_fit_start(self, state) -> None:
        from cooper import ConstraintType
        from cooper.multipliers import DenseMultiplier

        if "group" not in state.terms:
            raise ValueError("GroupDropConstraint needs the trainer's GroupLoss term (name 'group')")
        self._term = state.terms["group"]
        if self._term.n_groups != len(self.dense_accuracy):
            raise ValueError(f"GroupLoss has {self._term.n_groups} groups; dense_accuracy has {len(self.dense_accuracy)}")
        self._mult = DenseMultiplier(init=torch.zeros(len(self.dense_accuracy)))
        self._mult.set_constraint_type(ConstraintType.INEQUALITY)
        self._opt = torch.optim.SGD(self._mult.parameters(), lr=self.dual_lr, maximize=True)

    def on_step_end(self, state, batch, parts) -> None:
        acc = self._term.last_accuracy.double()
        seen = ~torch.isnan(acc)
        violation = torch.where(seen, self.dense_accuracy - acc - self.max_drop, torch.zeros_like(acc))
        self._opt.zero_grad(set_to_none=True)
        self._mult.weight.grad = violation.to(self._mult.weight.dtype)
        self._opt.step()
        self._mult.post_step_()  # keeps the multipliers of inequality constraints >= 0
        self._term.multipliers = self._mult.weight.detach().clone()

    def on_epoch_end(self, state, record) -> None:
        self.history.append(self._term.multipliers.tolist())


def _group_accuracy(model, split, groups: str, n_groups: int) -> np.ndarray:
    g = np.asarray(split.a if groups == "sensitive" else split.y)
    with torch.no_grad():
        pred = predict_logits(model, split.X).argmax(1).cpu().numpy()
    right = pred == np.asarray(split.y)
    return np.array([right[g == k].mean() if (g == k).any() else np.nan for k in range(n_groups)])


def constrained_finetune(dense: nn.Module, compressed, task: Task, *, max_drop: float = 0.02,
                         groups: str = "sensitive", steps: int | None = None, epochs: int = 3, lr: float = 1e-3,
                         dual_lr: float = 0.5, batch_size: int = 128, budget=None, seed: int = 0,
                         keep_sparsity: bool = True, progress: bool = False,
                         device="cpu") -> tuple[Compressed, RunRecord, GroupDropConstraint]:
    """Fine-tune a compressed model so that no group's accuracy falls more than ``max_drop`` below the dense model's.

    The mitigation of Hashemizadeh et al. 2023 for the disparate impact of compression: the dense
    model's per-group accuracy on ``task.train`` sets the targets, and :class:`GroupDropConstraint`
    (cooper multipliers) weights each group's loss by how far the group is below its bound. Groups
    are the sensitive attribute's (``groups="sensitive"``) or the classes (``"label"``). A pruned
    model keeps its zeros (``keep_sparsity``). Returns the model, the run's record and the
    constraint (its ``history`` of multipliers). ``device`` is the Trainer's.
    """
    c = _as_compressed(compressed)
    check_choice("groups", groups, GROUPINGS)
    if groups == "sensitive" and not task.has_sensitive:
        raise ValueError(f"task {task.name!r} has no sensitive attribute; use groups='label'")
    n_groups = len(task.group_names) if groups == "sensitive" else task.n_classes
    target = _group_accuracy(dense, task.train, groups, n_groups)
    constraint = GroupDropConstraint(dense_accuracy=np.nan_to_num(target, nan=0.0), max_drop=max_drop, dual_lr=dual_lr)
    t0 = time.perf_counter()
    trained, record = _train_copy(
        c, task, dict(terms=[CrossEntropy(), GroupLoss(n_groups=n_groups, groups=groups)], callbacks=[constraint],
                      epochs=epochs, epoch_steps=steps, lr=lr, batch_size=batch_size, budget=budget, seed=seed,
                      progress=progress, device=device),
        keep_sparsity=keep_sparsity, what="fine-tuned")
    return Compressed(
        model=trained, method=c.method, settings={**c.settings, "mitigation": "group_drop_constraint",
                                                  "max_drop": float(max_drop), "groups": groups},
        before=c.before, after=footprint(trained), cost_s=c.cost_s + (time.perf_counter() - t0),
        notes=c.notes + f"; fine-tuned with each {groups} group's accuracy drop ≤ {max_drop:g}",
        extra={**c.extra, "finetune_time_s": record.usage["time_s"]},
    ), record, constraint
