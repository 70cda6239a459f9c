"""Mitigations a sweep can apply, as registered classes.

A mitigation gives the loss terms and weights a cell trains with and the callbacks (schedulers)
that steer them (:meth:`Mitigation.setup`), the candidate settings its reference cell chooses
among on validation (:meth:`Mitigation.candidates`), and an optional post-processing step on the
constrained model (:meth:`Mitigation.post_process`). :func:`register_mitigation` adds one under its
``name``; a grid then names it like a built-in one.

Examples
--------
A mitigation added from outside trustkit (label smoothing, through a loss term the Trainer knows):

>>> from trustkit.experiments.mitigations import Mitigation, register_mitigation
>>> @register_mitigation
... class Smooth(Mitigation):
...     name = "smooth"
...     description = "cross-entropy with label smoothing 0.1"
...     def setup(self, cell, task, choice):
...         from trustkit.train import CrossEntropy
...         return [CrossEntropy(label_smoothing=0.1)], {"ce": 1.0}, []
>>> "smooth" in MITIGATIONS
True
>>> _ = MITIGATION_REGISTRY.pop("smooth"); _ = MITIGATIONS.pop("smooth")
"""

from __future__ import annotations

import time
from typing import Mapping

import numpy as np

from .._validation import _suggest

__all__ = ["Mitigation", "MITIGATION_REGISTRY", "MITIGATIONS", "register_mitigation", "get_mitigation",
           "FAIR_MITIGATIONS", "threshold_postprocess"]


class Mitigation:
    """A mitigation of a sweep (subclass it and :func:`register_mitigation` it).

    Class attributes: ``name`` (its key in a grid's ``mitigations``), ``description``,
    ``needs_sensitive`` (it needs a binary task with a sensitive attribute), ``constraints`` (the
    constraint types it can take; ``None``: all), ``robust_validation`` (its schedulers read
    validation PGD accuracy each epoch).
    """

    name: str = ""
    description: str = ""
    needs_sensitive: bool = False
    constraints: tuple | None = None
    robust_validation: bool = False

    def candidates(self, cell: Mapping) -> list:
        """Settings the reference cell chooses among on validation (``[None]``: nothing to choose)."""
        return [None]

    def setup(self, cell: Mapping, task, choice) -> tuple[list, dict, list]:
        """``(terms, weights, callbacks)`` to train with; ``choice`` is the reference's pick."""
        from ..train import CrossEntropy

        return [CrossEntropy()], {"ce": 1.0}, []

    def trainer_kwargs(self, cell: Mapping) -> dict:
        """Further :class:`~trustkit.train.Trainer` arguments for every network this mitigation
        trains in a cell (the model and a distilled student alike): validation PGD accuracy when
        ``robust_validation`` is set."""
        if not self.robust_validation:
            return {}
        from ..train import RobustEval

        return {"robust_eval": RobustEval(eps=float(cell["train_pgd_eps"]), val_n=256, val_steps=3)}

    def post_process(self, compressed, *, dense, cell: Mapping, task) -> dict | None:
        """Test metrics after a post-processing step on the constrained model (a
        :class:`~trustkit.compress.Compressed`; ``dense`` is the trained model before the constraint
        acted), or ``None`` when the mitigation has none."""
        return None

    def run_cell(self, cell: Mapping, *, task, ref: Mapping) -> dict | None:
        """A whole cell for mitigations that do not train a network (``None``: the usual pipeline)."""
        return None


FAIR_MITIGATIONS: list[str] = []
#: name → mitigation instance
MITIGATION_REGISTRY: dict[str, Mitigation] = {}
#: name → what it trains (the table the README and the notebooks show)
MITIGATIONS: dict[str, str] = {}


def register_mitigation(cls: type[Mitigation]) -> type[Mitigation]:
    """Register a :class:`Mitigation` subclass under its ``name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Mitigation)):
        raise TypeError(f"register_mitigation takes a subclass of trustkit.experiments.mitigations.Mitigation; got {cls!r}")
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a mitigation's name must be an identifier (its key in a grid's mitigations); got {name!r}")
    if name in MITIGATION_REGISTRY:
        raise ValueError(f"mitigation {name!r} is already registered ({type(MITIGATION_REGISTRY[name]).__name__})")
    MITIGATION_REGISTRY[name] = cls()
    MITIGATIONS[name] = cls.description
    if cls.needs_sensitive and name not in FAIR_MITIGATIONS:
        FAIR_MITIGATIONS.append(name)
    return cls


def get_mitigation(name: str) -> Mitigation:
    """The registered mitigation called ``name``; a ``ValueError`` names the registered ones."""
    if name not in MITIGATION_REGISTRY:
        raise ValueError(f"unknown mitigation {name!r}; allowed: {sorted(MITIGATION_REGISTRY)}."
                         f"{_suggest(str(name), MITIGATION_REGISTRY)}")
    return MITIGATION_REGISTRY[name]


# -- the built-in mitigations -------------------------------------------------------------------
@register_mitigation
class ERM(Mitigation):
    name = "erm"
    description = "cross-entropy only"


@register_mitigation
class FairPenalty(Mitigation):
    name = "fair_penalty"
    description = "cross-entropy + λ·soft DP gap, λ chosen on validation in the reference cell"
    needs_sensitive = True

    def candidates(self, cell):
        return [float(v) for v in cell["train_fair_lambdas"]]

    def setup(self, cell, task, choice):
        from ..train import CrossEntropy, FairnessPenalty

        return ([CrossEntropy(), FairnessPenalty(surrogate="dp")],
                {"ce": 1.0, "fair": float(choice if choice is not None else 1.0)}, [])


@register_mitigation
class DualAscentMitigation(Mitigation):
    name = "adaptive"
    description = "cross-entropy + soft DP gap weighted by Lagrangian dual ascent (cooper multiplier)"
    needs_sensitive = True

    def setup(self, cell, task, choice):
        from ..train import CrossEntropy, DualAscent, FairnessPenalty

        return [CrossEntropy(), FairnessPenalty(surrogate="dp")], {"ce": 1.0, "fair": 0.0}, [
            DualAscent(epsilon=0.02, dual_lr=0.05)]


@register_mitigation
class PGDTraining(Mitigation):
    name = "pgd_at"
    description = "cross-entropy + PGD adversarial loss (PGD-3, ε from the grid's training settings)"

    def setup(self, cell, task, choice):
        from ..train import AdversarialLoss, CrossEntropy

        return ([CrossEntropy(), AdversarialLoss.for_task(task, eps=float(cell["train_pgd_eps"]), steps=3,
                                                         seed=int(cell["seed"]))], {"ce": 1.0, "rob": 1.0}, [])


class _Scheduled(Mitigation):
    """Cross-entropy, the soft DP gap and PGD-3 training, their weights steered by a scheduler."""

    needs_sensitive = True
    robust_validation = True

    def scheduler(self, cell, task):
        raise NotImplementedError

    def setup(self, cell, task, choice):
        from ..train import AdversarialLoss, CrossEntropy, FairnessPenalty

        terms = [CrossEntropy(), FairnessPenalty(surrogate="dp"),
                 AdversarialLoss.for_task(task, eps=float(cell["train_pgd_eps"]), steps=3, seed=int(cell["seed"]))]
        return terms, {"ce": 1.0, "fair": 0.0, "rob": 0.0}, [self.scheduler(cell, task)]


# the score EfficientTrust's schedulers maximise: accuracy − DP gap + robust accuracy − 0.01·compute
_SCORE = {"alpha": 1.0, "beta": 1.0, "kappa": 1.0, "gamma": 0.01}


@register_mitigation
class EfficientTrust(_Scheduled):
    name = "efficienttrust"
    description = ("EfficientTrust: the causal scheduler allocates each epoch's compute to fairness and PGD "
                   "training, and the dynamic λ rule sets their weights (DP gap and PGD-3 terms)")

    def scheduler(self, cell, task):
        from ..train import CausalScheduler, DynamicLambda

        return CausalScheduler(**_SCORE, lambdas=DynamicLambda(lam_fair=1.0, lam_rob=1.0), causal=True,
                               seed=int(cell["seed"]))


@register_mitigation
class ATATSRule(_Scheduled):
    name = "atats_rule"
    description = ("ATATS, rule-based: λ_f steps up while the validation DP gap is above 0.05 and down once "
                   "below; PGD training at weight 1, FGSM-RS once less than 30% of the budget is left")

    def scheduler(self, cell, task):
        from ..train import RulePolicy

        return RulePolicy(fair_target=0.05, rob_target=None, lam_fair=0.0, lam_rob=1.0)


@register_mitigation
class ATATSPID(_Scheduled):
    name = "atats_pid"
    description = ("ATATS, PID: λ_f is a multiplier driven by the validation DP gap's distance to 0.05 "
                   "(cooper's nuPI controller); PGD training at weight 1")

    def scheduler(self, cell, task):
        from ..train import PIDPolicy

        return PIDPolicy(fair_target=0.05, rob_target=None, lam_rob=1.0)


@register_mitigation
class ATATSBandit(_Scheduled):
    name = "atats_bandit"
    description = ("ATATS, learned: a LinUCB bandit picks λ_f, λ_r and the attack each epoch, learning within "
                   "the run (notebook 03 trains it across episodes first)")

    def scheduler(self, cell, task):
        from ..train import BanditPolicy

        return BanditPolicy(**_SCORE, seed=int(cell["seed"]))


@register_mitigation
class ExpGrad(Mitigation):
    name = "expgrad"
    description = "fairlearn ExponentiatedGradient (logistic regression); only 'none' and 'time' apply to it"
    needs_sensitive = True
    constraints = ("none", "time")

    def run_cell(self, cell, *, task, ref):
        from ._adaptive import expgrad_under_budget

        t0 = time.perf_counter()
        time_s = float(cell["level"]) * ref["ref_time_s"] if cell["constraint"] == "time" else None
        row = expgrad_under_budget(task, time_s=time_s, seed=int(cell["seed"]))
        out = {k: row[k] for k in ("accuracy", "dp_gap", "eo_gap", "eo_gap_mean")}
        out.update({"train_time_s": row["time_s"], "epochs_done": row["epochs"], "trained": row["epochs"] > 0,
                    "stopped_by": row["stopped_by"], "val_score": row["val_score"], "message": row["message"],
                    "cell_s": time.perf_counter() - t0})
        return out


def threshold_postprocess(model, task, *, eps: float, pgd_steps: int, max_attack: int | None, seed: int = 0,
                          constraint: str = "equalized_odds", attack_model=None) -> dict:
    """fairlearn's ``ThresholdOptimizer`` on a trained (possibly compressed) model's scores.

    The group-specific thresholds are fit on the **validation** split (the model is not refit:
    ``prefit=True``) and applied to the test split; predictions are the optimiser's seeded
    randomised draw, so ECE and AUC are not reported. Robust accuracy: PGD examples against the
    model's scores (through ``attack_model``, e.g. :func:`~trustkit.compress.attack_surrogate`, when
    the model has no gradients), then the thresholds.

    Returns test ``accuracy``, ``error``, ``positive_rate``, the DP / EO gaps and ``robust_accuracy``
    after post-processing.
    """
    import torch
    from fairlearn.postprocessing import ThresholdOptimizer
    from sklearn.base import BaseEstimator, ClassifierMixin

    from ..metrics import attack_geometry, compute_metrics, pgd, predict_logits

    if task.n_classes != 2 or not task.has_sensitive:
        raise ValueError("threshold post-processing needs a binary task with a sensitive attribute")

    class _Scores(ClassifierMixin, BaseEstimator):
        """The torch model as a fitted scikit-learn classifier (predict_proba from its logits)."""

        def fit(self, X, y):  # prefit: never called by ThresholdOptimizer
            return self

        def predict_proba(self, X):
            logits = predict_logits(model, torch.as_tensor(np.asarray(X), dtype=torch.float32))
            return torch.softmax(logits.double(), 1).numpy()

        def predict(self, X):
            return self.predict_proba(X).argmax(1)

    est = _Scores()
    est.classes_ = np.array([0, 1])
    va, te = task.val, task.test
    opt = ThresholdOptimizer(estimator=est, constraints=constraint, objective="accuracy_score", prefit=True,
                             predict_method="predict_proba")
    opt.fit(np.asarray(va.X), np.asarray(va.y), sensitive_features=np.asarray(va.a))
    names = ["accuracy", "positive_rate", "dp_gap", "eo_gap", "eo_gap_mean"]

    def metrics(X, y, a):
        pred = np.asarray(opt.predict(np.asarray(X), sensitive_features=np.asarray(a), random_state=seed)).astype(int)
        return compute_metrics(names, y, np.stack([1 - pred, pred], 1).astype(float), a)

    out = metrics(te.X, te.y, te.a)
    out["error"] = 1.0 - out["accuracy"]
    n = len(te.y) if max_attack is None else min(int(max_attack), len(te.y))
    bounds, mask = attack_geometry(task)
    X = torch.as_tensor(np.asarray(te.X[:n]), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(te.y[:n]), dtype=torch.long)
    xa = pgd(attack_model if attack_model is not None else model, X, y, float(eps), steps=int(pgd_steps), bounds=bounds, mask=mask,
             generator=torch.Generator().manual_seed(seed))
    out["robust_accuracy"] = metrics(xa.numpy(), te.y[:n], te.a[:n])["accuracy"]
    return out


@register_mitigation
class Threshold(Mitigation):
    name = "threshold"
    description = ("post-processing: fairlearn ThresholdOptimizer (equalised odds), its group thresholds fit on "
                   "the validation split and applied to the constrained model's scores")
    needs_sensitive = True

    def post_process(self, compressed, *, dense, cell, task):
        from ..compress import attack_surrogate

        target = compressed.model if compressed.differentiable else attack_surrogate(compressed.model, dense)
        return threshold_postprocess(compressed.model, task, eps=float(cell["eval_eps"]),
                                     pgd_steps=int(cell["eval_pgd_steps"]), max_attack=int(cell["eval_max_attack"]),
                                     seed=int(cell["seed"]), attack_model=target)
