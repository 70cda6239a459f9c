"""Computational constraints a sweep can put on a run, as registered classes.

A constraint says which levels it takes (:meth:`Constraint.check_level`), how a setting reads in a
sentence (:meth:`Constraint.describe`), what it changes before training (:meth:`Constraint.before`:
the budget, the epochs, the model's width, the batch size) and what it does to the trained model
(:meth:`Constraint.after`: prune, quantise, distil). :func:`register_constraint` adds one under its
``name``; a grid then names it like a built-in one.

Examples
--------
A constraint that trains on a share of the grid's learning rate, added from outside trustkit:

>>> from trustkit.experiments.constraints import Constraint, register_constraint
>>> @register_constraint
... class SlowLearning(Constraint):
...     name = "lr_share"
...     description = "the learning rate as a fraction of the grid's"
...     template = "learning at {l:.0%} of the rate"
...     def before(self, level, plan, *, cell, task, ref):
...         plan.lr = float(cell["train_lr"]) * level
>>> SlowLearning().describe(0.5)
'learning at 50% of the rate'
>>> _ = CONSTRAINT_REGISTRY.pop("lr_share"); _ = CONSTRAINTS.pop("lr_share")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .._validation import _suggest

__all__ = ["Constraint", "Plan", "CONSTRAINT_REGISTRY", "CONSTRAINTS", "register_constraint", "get_constraint"]


@dataclass
class Plan:
    """How a cell will train, as a constraint's :meth:`Constraint.before` may change it.

    ``record`` collects what the constraint wants written into the cell's record (a memory cap, the
    batch size it settled on).
    """

    model_kwargs: dict
    epochs: int
    lr: float
    batch_size: int
    budget: Any = None
    record: dict = field(default_factory=dict)


class Constraint:
    """A computational constraint of a sweep (subclass it and :func:`register_constraint` it).

    Class attributes: ``name`` (the key in a grid's ``constraints``), ``description`` (what its
    levels mean), ``template`` (a sentence with ``{l}`` for the level), ``needs`` (what it takes from
    its reference cell: ``"ref_time_s"``) and ``acts_after`` (whether it changes the trained model, so
    mitigations that cannot be changed after training, e.g. ExponentiatedGradient's ensemble, refuse
    it).
    """

    name: str = ""
    description: str = ""
    template: str = "{l}"
    needs: tuple = ()
    acts_after: bool = False

    def check_level(self, level, *, where: str) -> Any:
        """The level, checked: by default a fraction of the reference in (0, 1]."""
        return _fraction(level, where=where)

    def describe(self, level) -> str:
        """Words for this constraint at ``level`` (``template`` with the level as a number where it is one)."""
        try:
            level = float(level)
        except (TypeError, ValueError):
            pass
        return self.template.format(l=level)

    def before(self, level, plan: Plan, *, cell: Mapping, task, ref: Mapping) -> None:
        """Change ``plan`` before training (default: nothing)."""

    def after(self, level, model, *, cell: Mapping, task, terms, weights, callbacks):
        """The trained model under the constraint, as a :class:`~trustkit.compress.Compressed`
        (default: the model as it is)."""
        from ..compress._finetune import _as_compressed

        return _as_compressed(model)


def _number(level, *, where: str) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
        raise ValueError(f"{where}: levels must be numbers; got {level!r}")
    return float(level)


def _fraction(level, *, where: str) -> float:
    level = _number(level, where=where)
    if not 0.0 < level <= 1.0:
        raise ValueError(f"{where}: a level is a fraction of the reference in (0, 1]; got {level!r}")
    return level


def _sparsity(level, *, where: str) -> float:
    level = _number(level, where=where)
    if not 0.0 <= level < 1.0:
        raise ValueError(f"{where}: a sparsity level must be in [0, 1); got {level!r}")
    return level


#: name → constraint instance
CONSTRAINT_REGISTRY: dict[str, Constraint] = {}
#: name → what its levels mean (the table the README and the notebooks show)
CONSTRAINTS: dict[str, str] = {}


def register_constraint(cls: type[Constraint]) -> type[Constraint]:
    """Register a :class:`Constraint` subclass under its ``name`` (usable as a class decorator).

    Refuses a class that is not a Constraint, a missing name and a name already taken.
    """
    if not (isinstance(cls, type) and issubclass(cls, Constraint)):
        raise TypeError(f"register_constraint takes a subclass of trustkit.experiments.constraints.Constraint; got {cls!r}")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a constraint's name must be an identifier (the key in a grid's constraints); got {name!r}")
    if name in CONSTRAINT_REGISTRY:
        raise ValueError(f"constraint {name!r} is already registered ({type(CONSTRAINT_REGISTRY[name]).__name__})")
    CONSTRAINT_REGISTRY[name] = cls()
    CONSTRAINTS[name] = cls.description
    return cls


def get_constraint(name: str) -> Constraint:
    """The registered constraint called ``name``; a ``ValueError`` names the registered ones."""
    if name not in CONSTRAINT_REGISTRY:
        raise ValueError(f"unknown constraint type {name!r}; allowed: {sorted(CONSTRAINT_REGISTRY)}."
                         f"{_suggest(str(name), CONSTRAINT_REGISTRY)}")
    return CONSTRAINT_REGISTRY[name]


# -- the built-in constraints -------------------------------------------------------------------
@register_constraint
class NoConstraint(Constraint):
    name = "none"
    description = "the unconstrained reference (level 1.0; added to every grid)"

    def check_level(self, level, *, where: str) -> float:
        level = _number(level, where=where)
        if level != 1.0:
            raise ValueError(f"{where}: the reference has the single level 1.0; got {level!r}")
        return level

    def describe(self, level) -> str:
        return "the unconstrained reference"


@register_constraint
class TimeBudget(Constraint):
    name = "time"
    description = "training time as a fraction of the reference cell's measured training time (Budget.time_s)"
    template = "cutting training time to {l:.0%} of the reference"
    needs = ("ref_time_s",)

    def before(self, level, plan, *, cell, task, ref):
        from ..budget import Budget

        plan.budget = Budget(time_s=float(level) * ref["ref_time_s"])


@register_constraint
class FewerEpochs(Constraint):
    name = "epochs"
    description = "training epochs as a fraction of the grid's epochs"
    template = "training for {l:.0%} of the epochs"

    def before(self, level, plan, *, cell, task, ref):
        plan.epochs = max(1, int(round(float(level) * plan.epochs)))


@register_constraint
class FewerParams(Constraint):
    name = "params"
    description = "parameters as a fraction of the reference model's; the widest model that fits is trained"
    template = "capping parameters at {l:.0%}"

    def before(self, level, plan, *, cell, task, ref):
        from ..budget import count_params
        from ..models import capped_kwargs, make_model

        family = cell["family"]
        full = count_params(make_model(family, input_shape=task.input_shape, n_classes=task.n_classes, **plan.model_kwargs))
        plan.model_kwargs = capped_kwargs(family, input_shape=task.input_shape, n_classes=task.n_classes,
                                          max_params=max(1, int(float(level) * full)), **plan.model_kwargs)


@register_constraint
class MemoryCap(Constraint):
    name = "memory"
    description = ("training memory (weights, gradients, optimiser state, activations) as a fraction of the "
                   "reference model's estimate; the widest model that fits at a batch of 32 is trained, with the "
                   "grid's batch size halved until it fits")
    template = "capping training memory at {l:.0%}"

    def before(self, level, plan, *, cell, task, ref):
        from ..budget import training_memory_mb
        from ..models import make_model
        from ._sweep import _memory_fit

        family = cell["family"]
        full = training_memory_mb(make_model(family, input_shape=task.input_shape, n_classes=task.n_classes,
                                             **plan.model_kwargs), task.input_shape, batch_size=plan.batch_size)
        cap = float(level) * full
        plan.record["memory_cap_mb"] = cap
        plan.model_kwargs, plan.batch_size = _memory_fit(family, plan.model_kwargs, task, cap, plan.batch_size)


def _finetuned(compressed, *, cell, task, terms, weights):
    from ..compress import finetune

    c, _ = finetune(compressed, task, steps=int(cell["train_finetune_steps"]), terms=terms, weights=weights,
                    seed=int(cell["seed"]), lr=1e-3, batch_size=int(cell["train_batch_size"]))
    return c


@register_constraint
class PruneUnstructured(Constraint):
    name = "prune_unstructured"
    description = "share of weights zeroed by global magnitude pruning after training (then a fine-tune)"
    template = "pruning {l:.0%} of the weights (unstructured)"
    acts_after = True

    def check_level(self, level, *, where):
        return _sparsity(level, where=where)

    def after(self, level, model, *, cell, task, terms, weights, callbacks):
        from ..compress import prune_unstructured

        return _finetuned(prune_unstructured(model, sparsity=float(level)), cell=cell, task=task, terms=terms,
                          weights=weights)


@register_constraint
class PruneStructured(Constraint):
    name = "prune_structured"
    description = "share of neurons/channels removed after training (a smaller dense model; then a fine-tune)"
    template = "pruning {l:.0%} of the neurons (structured)"
    acts_after = True

    def check_level(self, level, *, where):
        return _sparsity(level, where=where)

    def after(self, level, model, *, cell, task, terms, weights, callbacks):
        from ..compress import prune_structured

        return _finetuned(prune_structured(model, sparsity=float(level), input_shape=task.input_shape), cell=cell,
                          task=task, terms=terms, weights=weights)


@register_constraint
class Quantize(Constraint):
    name = "quantize"
    description = "post-training quantisation: 'int8' or 'int4' (4-bit weights)"
    template = "quantising to {l}"
    acts_after = True

    def check_level(self, level, *, where):
        if level not in ("int8", "int4"):
            raise ValueError(f"{where}: unknown level {level!r}; allowed: ['int4', 'int8']")
        return level

    def after(self, level, model, *, cell, task, terms, weights, callbacks):
        from ..compress import quantize

        if level == "int8":
            if task.kind == "image":
                return quantize(model, scheme="int8_static", calibration=task.train)
            return quantize(model, scheme="int8_dynamic", backend="torch.ao")
        return quantize(model, scheme="int4_weight")


@register_constraint
class Distill(Constraint):
    name = "distill"
    description = "a student of this fraction of the model's width, distilled from the trained model"
    template = "distilling into a student of {l:.0%} width"
    acts_after = True

    def after(self, level, model, *, cell, task, terms, weights, callbacks):
        from ..compress import distill
        from ._sweep import _scaled
        from .mitigations import get_mitigation

        family = cell["family"]
        extra = [t for t in terms if t.name != "ce"]
        c, _ = distill(model, task, student=family, student_kwargs=_scaled(family, dict(cell["model_kwargs"]), float(level)),
                       epochs=int(cell["train_epochs"]), lr=float(cell["train_lr"]),
                       batch_size=int(cell["train_batch_size"]), seed=int(cell["seed"]), extra_terms=extra,
                       extra_weights={t.name: (weights or {}).get(t.name, 1.0) for t in extra}, callbacks=callbacks,
                       **get_mitigation(cell["mitigation"]).trainer_kwargs(cell))
        return c
