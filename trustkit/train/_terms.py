"""Loss terms: the trainer's loss is a weighted sum of terms, ``L = Σ_k w_k · term_k``.

The usual composition is EfficientTrust's ``L_acc + λ_f·R_fair + λ_r·R_rob``:

* :class:`CrossEntropy` (name ``"ce"``), the accuracy term, optionally reweighted per
  (label, group) cell (the action FairBatch-style schedulers take);
* :class:`FairnessPenalty` (name ``"fair"``), a differentiable surrogate of the DP or EO gap, or
  VTruST's per-cell loss gap;
* :class:`AdversarialLoss` (name ``"rob"``), the loss at a PGD (Madry et al. 2018) or FGSM with
  random start (Wong et al. 2020) perturbation.

Schedulers change the weights (and the adversarial term's steps) between epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .._validation import _suggest, check_int, check_positive
from ..metrics import attack_geometry, pgd
from ._surrogates import cell_loss_gap, soft_dp_gap, soft_eo_gap

__all__ = ["Batch", "LossTerm", "CrossEntropy", "FairnessPenalty", "AdversarialLoss",
           "FAIRNESS_SURROGATES", "ATTACKS"]

FAIRNESS_SURROGATES = ("dp", "eo", "eo_worst", "loss_gap")
ATTACKS = ("pgd", "fgsm_rs")


@dataclass(frozen=True)
class Batch:
    """A mini-batch: inputs ``x``, labels ``y``, sensitive codes ``a`` (or None), row indices ``idx``."""

    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor | None
    idx: torch.Tensor

    def to(self, device) -> "Batch":
        return Batch(
            x=self.x.to(device), y=self.y.to(device),
            a=None if self.a is None else self.a.to(device), idx=self.idx.to(device),
        )


@runtime_checkable
class LossTerm(Protocol):
    """One term of the training loss.

    ``__call__`` gets the model, the batch and the logits of the clean forward pass (computed once
    by the trainer) and returns a scalar tensor. A term that needs another forward pass (an
    adversarial term, say) runs it itself, and its cost is measured with the step.
    """

    name: str

    def __call__(self, model: torch.nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor: ...


class CrossEntropy:
    r"""The accuracy term :math:`L_{acc}`: mean cross-entropy of the logits against the labels.

    ``cell_weights`` (a ``(n_classes, n_groups)`` tensor, or None) reweights each example by its
    (label, group) cell: :math:`\sum_i w_{y_i a_i} \ell_i / \sum_i w_{y_i a_i}`. Schedulers such as
    :class:`~trustkit.train.FairBatch` set it between epochs; None is the plain mean.
    """

    name = "ce"

    def __init__(self, *, label_smoothing: float = 0.0):
        self.label_smoothing = float(label_smoothing)
        self.cell_weights: torch.Tensor | None = None

    def __call__(self, model, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        if self.cell_weights is None or batch.a is None:
            return F.cross_entropy(logits, batch.y, label_smoothing=self.label_smoothing)
        losses = F.cross_entropy(logits, batch.y, label_smoothing=self.label_smoothing, reduction="none")
        w = self.cell_weights.to(logits.device)[batch.y, batch.a]
        return (w * losses).sum() / w.sum().clamp_min(1e-12)

    def __repr__(self) -> str:
        return f"CrossEntropy(label_smoothing={self.label_smoothing})"


class FairnessPenalty:
    """The fairness term :math:`R_{fair}`: a differentiable surrogate of a group gap on the batch.

    Parameters
    ----------
    surrogate : {"dp", "eo", "eo_worst", "loss_gap"}
        ``"dp"``: soft demographic-parity gap; ``"eo"``: mean of the soft TPR and FPR gaps (001's EO);
        ``"eo_worst"``: their maximum (fairlearn's EO); ``"loss_gap"``: VTruST's per-(label, group)
        loss gap. See :mod:`trustkit.train._surrogates`.

    The surrogate costs O(batch) on top of the clean forward pass (no extra forward); on the meta
    device of a FLOP count it is charged as zero. Needs a task with a sensitive attribute.

    Examples
    --------
    >>> import torch
    >>> from trustkit.train import Batch, FairnessPenalty
    >>> b = Batch(x=torch.zeros(4, 1), y=torch.tensor([1, 1, 0, 0]), a=torch.tensor([0, 1, 0, 1]), idx=torch.arange(4))
    >>> logits = torch.tensor([[0.0, 2.0], [0.0, -2.0], [0.0, 0.0], [0.0, 0.0]])
    >>> round(float(FairnessPenalty(surrogate="dp")(None, b, logits)), 4)
    0.3808
    """

    name = "fair"

    def __init__(self, *, surrogate: str = "dp"):
        if surrogate not in FAIRNESS_SURROGATES:
            raise ValueError(f"surrogate must be one of {list(FAIRNESS_SURROGATES)}; got {surrogate!r}."
                             f"{_suggest(str(surrogate), FAIRNESS_SURROGATES)}")
        self.surrogate = surrogate

    def __call__(self, model, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        if batch.a is None:
            raise ValueError("FairnessPenalty needs a sensitive attribute; this task has none "
                             "(load it with sensitive=... or drop the fairness term)")
        if logits.device.type == "meta":  # data-dependent group sizes: charge the O(n) surrogate as 0
            return logits.sum() * 0.0
        if self.surrogate == "loss_gap":
            return cell_loss_gap(F.cross_entropy(logits, batch.y, reduction="none"), batch.y, batch.a)
        p = torch.softmax(logits, dim=1)[:, 1]
        if self.surrogate == "dp":
            return soft_dp_gap(p, batch.a)
        return soft_eo_gap(p, batch.y, batch.a, agg="mean" if self.surrogate == "eo" else "worst_case")

    def __repr__(self) -> str:
        return f"FairnessPenalty(surrogate={self.surrogate!r})"


def _check_bounds(bounds):
    if bounds is None or (isinstance(bounds, str) and bounds == "task"):
        return bounds
    try:
        lo, hi = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise TypeError(f"bounds must be 'task', None or a pair (lo, hi) of numbers; got {bounds!r}") from None
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi; got {bounds!r}")
    return (lo, hi)


class AdversarialLoss:
    r"""The robustness term :math:`R_{rob}`: cross-entropy at an ℓ∞ perturbation of radius ε.

    :math:`R_{rob} = \ell(f(x + \delta^*), y)`, :math:`\delta^*` found by

    * ``attack="pgd"``: Madry et al. (2018): a uniform random start in the ε-ball, then ``steps``
      signed-gradient steps of size ``step_size`` (default 2.5·ε/steps), projected on the ball;
    * ``attack="fgsm_rs"``: Wong et al. (2020) "fast" adversarial training: a uniform random start
      and one signed step of size ``step_size`` (default 1.25·ε), projected. It costs one extra
      forward/backward instead of ``steps`` of them: the compute-saving action a scheduler can pick.

    ``bounds`` clamps the perturbed input (``(lo, hi)``, or None for no clamp) and ``mask``
    restricts which features move (None: all). Both default to ``"task"``: taken from the task the
    term trains on (:func:`trustkit.metrics.attack_geometry`; the :class:`Trainer` binds them at the
    start of a run, :meth:`for_task` binds them at once): images are clamped to ``[0, 1]``; on tables
    nothing is clamped (features are standardised, ε is in standard deviations, so ε = 0.1 moves
    age, hours, etc. by a tenth of their spread) and only the numeric columns move. Calling a term
    whose geometry is still ``"task"`` outside a trainer is a ``ValueError``. ``steps`` and
    ``attack`` may be changed between epochs by a scheduler; the trainer then charges the new cost.

    Examples
    --------
    >>> import torch
    >>> from trustkit.train import AdversarialLoss, Batch
    >>> term = AdversarialLoss(eps=0.1, attack="fgsm_rs", bounds=None, mask=None)
    >>> model = torch.nn.Linear(3, 2)
    >>> b = Batch(x=torch.randn(8, 3), y=torch.randint(0, 2, (8,)), a=None, idx=torch.arange(8))
    >>> clean = torch.nn.functional.cross_entropy(model(b.x), b.y)
    >>> bool(term(model, b, model(b.x)) >= clean - 1e-6)
    True
    """

    name = "rob"

    def __init__(self, *, eps: float, attack: str = "pgd", steps: int = 7, step_size: float | None = None,
                 bounds="task", mask="task", seed: int = 0):
        self.eps = check_positive("eps", eps)
        self.attack = attack
        self.steps = steps
        if step_size is not None:
            check_positive("step_size", step_size)
        self.step_size = step_size
        self.bounds = _check_bounds(bounds)
        if not (isinstance(mask, str) and mask == "task") and mask is not None and not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be 'task', None or a 0/1 tensor over the features; got {type(mask).__name__}")
        self.mask = mask
        self._task_geometry: tuple | None = None
        self.seed = check_int("seed", seed, minimum=0)
        self._gen = torch.Generator().manual_seed(self.seed)
        self._check()

    def _check(self) -> None:
        if self.attack not in ATTACKS:
            raise ValueError(f"attack must be one of {list(ATTACKS)}; got {self.attack!r}.{_suggest(str(self.attack), ATTACKS)}")
        check_int("steps", self.steps, minimum=1)

    @classmethod
    def for_task(cls, task, *, eps: float, attack: str = "pgd", steps: int = 7, step_size: float | None = None,
                 seed: int = 0) -> "AdversarialLoss":
        """The term with the task's attack geometry (see :func:`trustkit.metrics.attack_geometry`)."""
        bounds, mask = attack_geometry(task)
        return cls(eps=eps, attack=attack, steps=steps, step_size=step_size, bounds=bounds, mask=mask, seed=seed)

    def bind(self, task) -> None:
        """Take the bounds and mask left as ``"task"`` from ``task`` (the trainer calls this)."""
        self._task_geometry = attack_geometry(task)

    def geometry(self) -> tuple:
        """``(bounds, mask)`` the attack uses, with ``"task"`` resolved from the bound task."""
        wants_task = isinstance(self.bounds, str) or isinstance(self.mask, str)
        if wants_task and self._task_geometry is None:
            raise ValueError("AdversarialLoss takes its bounds and mask from the task it trains on, and none is "
                             "bound: use it in a Trainer, build it with AdversarialLoss.for_task(task, ...), or "
                             "pass bounds=(lo, hi) or None and mask=None or a 0/1 tensor")
        tb, tm = self._task_geometry if wants_task else (None, None)
        bounds = tb if isinstance(self.bounds, str) else self.bounds
        mask = tm if isinstance(self.mask, str) else self.mask
        return bounds, mask

    def reset(self, seed: int) -> None:
        """Re-seed the random starts (the trainer calls this at the start of a run)."""
        self._gen = torch.Generator().manual_seed(int(seed) + self.seed)

    @property
    def cost_key(self) -> tuple:
        """What changes the cost of the term (the trainer caches step costs by it)."""
        return (self.attack, 1 if self.attack == "fgsm_rs" else self.steps)

    def perturb(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._check()
        bounds, mask = self.geometry()
        mask = None if mask is None else mask.to(x.device)
        if self.attack == "fgsm_rs":
            alpha = 1.25 * self.eps if self.step_size is None else self.step_size
            return pgd(model, x, y, self.eps, steps=1, step_size=alpha, bounds=bounds, mask=mask, generator=self._gen)
        return pgd(model, x, y, self.eps, steps=self.steps, step_size=self.step_size, bounds=bounds,
                   mask=mask, generator=self._gen)

    def __call__(self, model, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        x_adv = self.perturb(model, batch.x, batch.y)
        return F.cross_entropy(model(x_adv), batch.y)

    def __repr__(self) -> str:
        return f"AdversarialLoss(eps={self.eps}, attack={self.attack!r}, steps={self.steps})"
