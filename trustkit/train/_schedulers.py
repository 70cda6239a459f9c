r"""Schedulers: each epoch, decide the λ of each trust term and how to spend the next slice of compute.

A scheduler is a :class:`~trustkit.train.Callback` with one method to write, :meth:`Scheduler.decide`,
which the trainer calls at the start of every epoch and which returns an :class:`Action`:
the next :math:`\lambda_f` (weight of the ``"fair"`` term) and :math:`\lambda_r` (the ``"rob"``
term), the share of the epoch's steps each term is on (compute allocation), the adversarial
attack and its steps, and per-(label, group) reweighting of the accuracy term. The trainer applies
it and charges what it costs; the epoch record keeps the λ values, the shares and the time spent
in steps with each term on.

Sign conventions (one for all schedulers): a trust *improvement* is positive,
:math:`\Delta R_{fair}(t) = \mathrm{gap}(t-1) - \mathrm{gap}(t)` (the gap fell) and
:math:`\Delta R_{rob}(t) = \mathrm{rob}(t) - \mathrm{rob}(t-1)` (robust accuracy rose), both on
validation after epoch :math:`t`.

Schedulers here: :class:`StaticLambda`, :class:`PeriodicFairness`, :class:`DynamicLambda` (000's
rule), :class:`CausalScheduler` (000's linear-SCM allocator, with its ablations),
:class:`OracleScheduler` (tries every allocation: the causal validity check), :class:`FairBatch`
(Roh et al. 2021) and :class:`DualAscent` (Lagrangian multipliers with cooper). The ATATS policies
(001) are in :mod:`trustkit.train._atats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import _suggest, check_fraction, check_int
from ._records import Callback, EpochRecord, TrainState

__all__ = [
    "Action", "Scheduler", "StaticLambda", "PeriodicFairness", "DynamicLambda", "Allocation",
    "CausalScheduler", "OracleScheduler", "FairBatch", "DualAscent", "FAIRNESS_METRICS",
    "fair_gain", "rob_gain", "default_allocations",
]

#: validation metrics a scheduler may use as its fairness signal (lower is better)
FAIRNESS_METRICS = ("dp_gap", "eo_gap", "eo_gap_mean", "eopp_gap")


def _check_nonneg(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


@dataclass
class Action:
    """What to do in the next epoch; ``None`` leaves a setting as it is.

    ``fractions`` maps a term name to the share of the epoch's steps it is on (0–1);
    ``attack`` / ``steps`` set the adversarial term; ``cell_weights`` (``(n_classes, n_groups)``)
    reweights the accuracy term per (label, group) cell.
    """

    lam_fair: float | None = None
    lam_rob: float | None = None
    fractions: dict | None = None
    attack: str | None = None
    steps: int | None = None
    cell_weights: torch.Tensor | None = None


def fair_gain(prev: Mapping, cur: Mapping, metric: str) -> float:
    """:math:`\\Delta R_{fair}` = previous gap − current gap (positive: fairer)."""
    return float(prev[metric]) - float(cur[metric])


def rob_gain(prev: Mapping, cur: Mapping) -> float:
    """:math:`\\Delta R_{rob}` = current − previous robust accuracy (positive: more robust)."""
    return float(cur["robust_accuracy"]) - float(prev["robust_accuracy"])


class Scheduler(Callback):
    """Base class: subclasses implement :meth:`decide`; the base applies the action and checks needs.

    Parameters common to all
    ------------------------
    fairness : str
        The validation metric used as the fairness signal (one of :data:`FAIRNESS_METRICS`).

    Attributes
    ----------
    trajectory : list of dict
        Per epoch: the λ values, fractions and attack settings applied.
    decide_s : float
        Seconds spent in the scheduler's own decisions (its overhead).
    """

    #: which trust terms the scheduler steers: a subset of {"fair", "rob"}
    needs: tuple[str, ...] = ()

    def __init__(self, *, fairness: str = "dp_gap"):
        if fairness not in FAIRNESS_METRICS:
            raise ValueError(f"fairness must be one of {list(FAIRNESS_METRICS)}; got {fairness!r}.{_suggest(str(fairness), FAIRNESS_METRICS)}")
        self.fairness = fairness
        self.trajectory: list[dict] = []
        self.decide_s = 0.0

    # -- checks ----------------------------------------------------------------------------
    def signals(self, state: TrainState) -> tuple[str, ...]:
        """The validation metrics this scheduler reads in this run (checked at the start of the run)."""
        out = ("accuracy",) if self._reads_accuracy else ()
        if "fair" in self.needs:
            out += (self.fairness,)
        if "rob" in self.needs:
            out += ("robust_accuracy",)
        return out

    def lambdas_set(self) -> dict:
        """The λ this scheduler will apply to each term whatever the run (a λ > 0 needs its term)."""
        return {}

    #: whether :meth:`signals` includes validation accuracy
    _reads_accuracy = False

    def _check_state(self, state: TrainState) -> None:
        name = type(self).__name__
        terms = {"fair": "a fairness term (FairnessPenalty)", "rob": "an adversarial term (AdversarialLoss)"}
        for term, lam in self.lambdas_set().items():
            if lam > 0 and term not in state.terms:
                raise ValueError(f"{name} sets lam_{term}={lam:g}, but the trainer has no {term!r} term, so the λ "
                                 f"would do nothing: add {terms[term]} to the trainer's terms, or set lam_{term}=0")
        self._check_needs(state)
        for metric in self.signals(state):
            if metric in state.metrics:
                continue
            if metric == "robust_accuracy":
                raise ValueError(f"{name} reads robust accuracy on validation, which this run does not measure: "
                                 "give the trainer robust_eval=RobustEval(eps=...)")
            raise ValueError(f"{name} reads the validation metric {metric!r}, which this run does not compute "
                             f"(metrics: {list(state.metrics)}): add {metric!r} to the trainer's metrics, or leave "
                             "metrics=None for the defaults")

    def _check_needs(self, state: TrainState) -> None:
        name = type(self).__name__
        if "fair" in self.needs:
            if state.task.train.a is None:
                raise ValueError(f"{name} steers fairness, but task {state.task.name!r} has no sensitive "
                                 "attribute; load it with sensitive=... or use a robustness-only scheduler")
            if "fair" not in state.terms:
                raise ValueError(f"{name} steers fairness: add a fairness term (FairnessPenalty) to the trainer's terms")
        if "rob" in self.needs:
            if "rob" not in state.terms:
                raise ValueError(f"{name} steers robustness: add an adversarial term (AdversarialLoss) to the trainer's terms")
            if state.robust_eval is None:
                raise ValueError(f"{name} steers robustness: give the trainer robust_eval=RobustEval(eps=...) so "
                                 "robust accuracy is measured on validation each epoch")

    def on_fit_start(self, state: TrainState) -> None:
        self._check_state(state)
        self.trajectory = []
        self.decide_s = 0.0
        self.reset(state)

    def reset(self, state: TrainState) -> None:
        """Called once per run before the first decision."""

    def on_epoch_start(self, state: TrainState) -> None:
        t = state.meter.elapsed_s
        action = self.decide(state)
        self.decide_s += state.meter.elapsed_s - t
        self.apply(state, action)

    def decide(self, state: TrainState) -> Action:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def apply(state: TrainState, action: Action) -> None:
        if action.lam_fair is not None and "fair" in state.weights:
            state.weights["fair"] = float(action.lam_fair)
        if action.lam_rob is not None and "rob" in state.weights:
            state.weights["rob"] = float(action.lam_rob)
        for k, v in (action.fractions or {}).items():
            if k in state.fractions:
                state.fractions[k] = float(v)
        rob = state.terms.get("rob")
        if rob is not None:
            if action.attack is not None:
                rob.attack = action.attack
            if action.steps is not None:
                rob.steps = int(action.steps)
        if action.cell_weights is not None and "ce" in state.terms:
            state.terms["ce"].cell_weights = action.cell_weights

    def on_epoch_end(self, state: TrainState, record: EpochRecord) -> None:
        rob = state.terms.get("rob")
        self.trajectory.append({
            "epoch": record.epoch,
            "lam_fair": state.weights.get("fair", 0.0),
            "lam_rob": state.weights.get("rob", 0.0),
            "frac_fair": state.fractions.get("fair", 1.0) if "fair" in state.weights else 0.0,
            "frac_rob": state.fractions.get("rob", 1.0) if "rob" in state.weights else 0.0,
            "attack": None if rob is None else (rob.attack if rob.attack == "fgsm_rs" else f"{rob.attack}-{rob.steps}"),
        })
        t = state.meter.elapsed_s
        self.observe(state, record)
        self.decide_s += state.meter.elapsed_s - t

    def observe(self, state: TrainState, record: EpochRecord) -> None:
        """Learn from the epoch that just ended (default: nothing)."""

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.startswith("_") and k not in ("trajectory", "decide_s")]
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"


def _term_signals(scheduler: Scheduler, state: TrainState) -> tuple[str, ...]:
    """Signals of a scheduler that adapts whichever trust terms the trainer has (at least one)."""
    has = [k for k in ("fair", "rob") if k in state.terms]
    if not has:
        raise ValueError(f"{type(scheduler).__name__} adapts λ_f and λ_r, but the trainer has neither a fairness "
                         "term (FairnessPenalty) nor an adversarial term (AdversarialLoss): add at least one")
    out = ("accuracy",) if scheduler._reads_accuracy else ()
    if "fair" in has:
        out += (scheduler.fairness,)
    if "rob" in has:
        out += ("robust_accuracy",)
    return out


class StaticLambda(Scheduler):
    """Fixed :math:`\\lambda_f, \\lambda_r` for the whole run (the grid-search baseline picks them).

    Examples
    --------
    >>> StaticLambda(lam_fair=1.0).decide(None).lam_fair
    1.0
    """

    def __init__(self, *, lam_fair: float = 0.0, lam_rob: float = 0.0, fairness: str = "dp_gap"):
        super().__init__(fairness=fairness)
        self.lam_fair = _check_nonneg("lam_fair", lam_fair)
        self.lam_rob = _check_nonneg("lam_rob", lam_rob)

    def lambdas_set(self) -> dict:
        return {"fair": self.lam_fair, "rob": self.lam_rob}

    def decide(self, state) -> Action:
        return Action(lam_fair=self.lam_fair, lam_rob=self.lam_rob)


class PeriodicFairness(Scheduler):
    """Fairness regularisation every ``every`` epochs: :math:`\\lambda_f` on epochs k, 2k, …, 0 otherwise."""

    needs = ("fair",)

    def __init__(self, *, every: int = 2, lam_fair: float = 1.0, lam_rob: float = 0.0, fairness: str = "dp_gap"):
        super().__init__(fairness=fairness)
        self.every = check_int("every", every, minimum=1)
        self.lam_fair = _check_nonneg("lam_fair", lam_fair)
        self.lam_rob = _check_nonneg("lam_rob", lam_rob)

    def lambdas_set(self) -> dict:
        return {"rob": self.lam_rob}

    def decide(self, state) -> Action:
        on = state.epoch % self.every == 0
        return Action(lam_fair=self.lam_fair if on else 0.0, lam_rob=self.lam_rob)


class DynamicLambda(Scheduler):
    r"""EfficientTrust's dynamic λ rule (000): spend λ where trust improves per unit of compute.

    After each epoch :math:`t`,

    .. math:: \lambda(t+1) = \mathrm{clip}\big(\lambda(t) + \rho\,(\Delta R(t)/\Delta C(t) - \tau),\ 0,\ \lambda_{max}\big)

    for fairness (:math:`\rho_f`) and robustness (:math:`\rho_r`), with :math:`\Delta R` the
    improvement of the trust metric on validation (positive = better, see the module docstring) and
    :math:`\Delta C` the epoch's compute in units of the first epoch's time (so ρ does not depend on
    the machine). With :math:`\tau = 0` (the proposal's rule) λ rises while its metric improves and
    falls when it worsens; :math:`\tau > 0` is the improvement rate worth paying for: a metric that
    improved by less than τ per unit of compute lowers its λ.

    Examples
    --------
    >>> rule = DynamicLambda(rho_fair=2.0, lam_max=3.0)
    >>> rule.update(1.0, gain=0.1, cost=1.0, rho=2.0)   # fairer: λ_f goes up
    1.2
    >>> rule.update(1.0, gain=-0.1, cost=1.0, rho=2.0)  # less fair: λ_f goes down
    0.8
    """

    needs: tuple[str, ...] = ()

    def __init__(self, *, rho_fair: float = 5.0, rho_rob: float = 5.0, lam_max: float = 4.0,
                 lam_fair: float = 1.0, lam_rob: float = 1.0, tau: float = 0.0, fairness: str = "dp_gap"):
        super().__init__(fairness=fairness)
        self.rho_fair = _check_nonneg("rho_fair", rho_fair)
        self.rho_rob = _check_nonneg("rho_rob", rho_rob)
        self.lam_max = _check_nonneg("lam_max", lam_max)
        self.lam_fair0 = _check_nonneg("lam_fair", lam_fair)
        self.lam_rob0 = _check_nonneg("lam_rob", lam_rob)
        if self.lam_fair0 > self.lam_max or self.lam_rob0 > self.lam_max:
            raise ValueError(f"initial lam_fair / lam_rob must be <= lam_max={self.lam_max}; got {lam_fair}, {lam_rob}")
        self.tau = _check_nonneg("tau", tau)

    def signals(self, state) -> tuple[str, ...]:
        return _term_signals(self, state)

    def reset(self, state) -> None:
        self._lam = {"fair": self.lam_fair0, "rob": self.lam_rob0}
        self._c0 = None

    def update(self, lam: float, *, gain: float, cost: float, rho: float) -> float:
        """One application of the rule: ``clip(lam + rho·(gain/cost − tau), 0, lam_max)``."""
        if cost <= 0:
            raise ValueError(f"cost must be > 0; got {cost}")
        return float(min(self.lam_max, max(0.0, lam + rho * (gain / cost - self.tau))))

    def step_lambdas(self, state: TrainState) -> dict:
        """Update and return ``{"fair": λ_f, "rob": λ_r}`` from the last two epochs of ``state``."""
        h = state.history
        if len(h) >= 2:
            if self._c0 is None:
                self._c0 = max(h[0].epoch_time_s, 1e-9)
            cost = max(h[-1].epoch_time_s, 1e-9) / self._c0
            if "fair" in state.weights and self.fairness in h[-1].val:
                self._lam["fair"] = self.update(self._lam["fair"], gain=fair_gain(h[-2].val, h[-1].val, self.fairness),
                                                cost=cost, rho=self.rho_fair)
            if "rob" in state.weights and "robust_accuracy" in h[-1].val:
                self._lam["rob"] = self.update(self._lam["rob"], gain=rob_gain(h[-2].val, h[-1].val),
                                               cost=cost, rho=self.rho_rob)
        return dict(self._lam)

    def decide(self, state) -> Action:
        lam = self.step_lambdas(state)
        return Action(lam_fair=lam["fair"], lam_rob=lam["rob"])


@dataclass(frozen=True)
class Allocation:
    """How the next epoch's compute is split: the share of steps with each term on, and the attack."""

    fair: float
    rob: float
    attack: str = "pgd"
    steps: int = 7

    @property
    def attack_iters(self) -> int:
        """Forward/backward passes the attack adds to a step with the robustness term on."""
        return 1 if self.attack == "fgsm_rs" else self.steps

    def label(self) -> str:
        if not self.rob:
            return f"fair {self.fair:g} / rob 0"
        rob = f"rob {self.rob:g} {self.attack}" + ("" if self.attack == "fgsm_rs" else f"-{self.steps}")
        return f"fair {self.fair:g} / {rob}"


def default_allocations(*, fair: bool, rob: bool, steps: int = 7) -> list[Allocation]:
    """The candidate allocations a causal or oracle scheduler chooses from."""
    out = [Allocation(0.0, 0.0)]
    if fair:
        out.append(Allocation(1.0, 0.0))
    if rob:
        out += [Allocation(0.0, 1.0, "fgsm_rs"), Allocation(0.0, 1.0, "pgd", steps), Allocation(0.0, 0.5, "pgd", steps)]
    if fair and rob:
        out += [Allocation(1.0, 1.0, "fgsm_rs"), Allocation(1.0, 1.0, "pgd", steps), Allocation(1.0, 0.5, "pgd", steps)]
    return out


class _Allocator(Scheduler):
    """Shared machinery of the causal and oracle schedulers: candidates, cost model, objective."""

    def __init__(self, *, alpha: float, beta: float, gamma: float, kappa: float,
                 allocations: Sequence[Allocation] | None, fairness: str, lambdas: DynamicLambda | None,
                 lam_fair: float, lam_rob: float):
        super().__init__(fairness=fairness)
        self.alpha = _check_nonneg("alpha", alpha)
        self.beta = _check_nonneg("beta", beta)
        self.gamma = _check_nonneg("gamma", gamma)
        self.kappa = _check_nonneg("kappa", kappa)
        self.allocations = None if allocations is None else list(allocations)
        for al in self.allocations or ():
            if not isinstance(al, Allocation):
                raise TypeError(f"allocations must be Allocation objects; got {type(al).__name__}")
            check_fraction("Allocation.fair", al.fair, inclusive_low=True, inclusive_high=True)
            check_fraction("Allocation.rob", al.rob, inclusive_low=True, inclusive_high=True)
        if lambdas is not None and not isinstance(lambdas, DynamicLambda):
            raise TypeError(f"lambdas must be a DynamicLambda or None; got {type(lambdas).__name__}")
        self.lambdas = lambdas
        self.lam_fair = _check_nonneg("lam_fair", lam_fair)
        self.lam_rob = _check_nonneg("lam_rob", lam_rob)

    _reads_accuracy = True

    def signals(self, state) -> tuple[str, ...]:
        return _term_signals(self, state)

    def reset(self, state) -> None:
        has_fair, has_rob = "fair" in state.terms, "rob" in state.terms
        rob = state.terms.get("rob")
        steps = getattr(rob, "steps", 7)
        cands = self.allocations or default_allocations(fair=has_fair, rob=has_rob, steps=steps)
        self._cands = [c for c in cands if (has_fair or c.fair == 0) and (has_rob or c.rob == 0)]
        if not self._cands:
            raise ValueError("no allocation is possible with the trainer's terms")
        self._base = None  # seconds of one step with no adversarial term
        self._c0 = None
        if self.lambdas is not None:
            self.lambdas.reset(state)
        self._current: Allocation | None = None

    # cost model: a step with the robustness term on costs (attack_iters + 2) clean steps
    def _learn_cost(self, record: EpochRecord, alloc: Allocation) -> None:
        steps_time = max(record.epoch_time_s - record.eval_time_s - record.callback_s, 1e-9)
        units = record.steps * (1.0 + alloc.rob * (alloc.attack_iters + 1))
        base = steps_time / units
        self._base = base if self._base is None else 0.5 * self._base + 0.5 * base
        if self._c0 is None:
            self._c0 = steps_time

    def cost(self, alloc: Allocation, steps: int) -> dict:
        """Predicted seconds of an epoch under ``alloc``: total, and in steps with each term on."""
        base = self._base or 0.0
        t_rob = alloc.rob * steps * base * (alloc.attack_iters + 2)
        total = steps * base * (1.0 - alloc.rob) + t_rob
        return {"total": total, "fair": alloc.fair * total, "rob": t_rob}

    def objective(self, d_fair: float, d_rob: float, d_acc: float, cost_s: float) -> float:
        """:math:`\\alpha\\Delta R_{fair} + \\beta\\Delta R_{rob} + \\kappa\\Delta acc - \\gamma\\Delta C` (ΔC in first-epoch units)."""
        c = cost_s / (self._c0 or 1.0)
        return self.alpha * d_fair + self.beta * d_rob + self.kappa * d_acc - self.gamma * c

    def _affordable(self, state: TrainState) -> list[Allocation]:
        left = state.remaining()["time_s"]
        steps = state.steps_per_epoch
        if left is None or self._base is None:
            return list(self._cands)
        ok = [c for c in self._cands if self.cost(c, steps)["total"] <= left]
        return ok or [min(self._cands, key=lambda c: self.cost(c, steps)["total"])]

    def _action(self, state: TrainState, alloc: Allocation) -> Action:
        self._current = alloc
        if self.lambdas is not None:
            lam = self.lambdas.step_lambdas(state)
        else:
            lam = {"fair": self.lam_fair, "rob": self.lam_rob}
        return Action(lam_fair=lam["fair"], lam_rob=lam["rob"], fractions={"fair": alloc.fair, "rob": alloc.rob},
                      attack=alloc.attack if alloc.rob else None, steps=alloc.steps if alloc.rob else None)

    def _gains(self, prev: Mapping, cur: Mapping) -> tuple[float, float, float]:
        d_fair = fair_gain(prev, cur, self.fairness) if self.fairness in cur else 0.0
        d_rob = rob_gain(prev, cur) if "robust_accuracy" in cur else 0.0
        return d_fair, d_rob, float(cur["accuracy"]) - float(prev["accuracy"])

    def observe(self, state, record) -> None:
        if self._current is not None:
            self._learn_cost(record, self._current)


class CausalScheduler(_Allocator):
    r"""EfficientTrust's causal scheduler (000): a linear SCM from compute to trust gains.

    Over a sliding ``window`` of epochs it fits, by ridge least squares, one linear structural
    equation per outcome :math:`o \in \{\Delta R_{fair}, \Delta R_{rob}, \Delta acc\}`:

    .. math:: o = b_0 + b_f C_{fair} + b_r C_{rob} + b_t C_{total} + \varepsilon

    where :math:`C_{fair}, C_{rob}` are the seconds spent in steps with each term on and
    :math:`C_{total}` the epoch's step time. Because the scheduler itself sets the allocation, the
    intervention :math:`do(C)` is just evaluating the fitted equations at the candidate's predicted
    costs. Each epoch it picks, among the :class:`Allocation` candidates that fit in the remaining
    time, the one maximising
    :math:`\alpha E[\Delta R_{fair}|do(C)] + \beta E[\Delta R_{rob}|do(C)] + \kappa E[\Delta acc|do(C)] - \gamma \Delta C`.
    The first ``warmup`` epochs explore distinct candidates; later an ε-greedy choice
    (``explore``) keeps the window informative.

    Ablations: ``causal=False`` picks allocations at random (the causal module off);
    ``lambdas=None`` freezes λ at ``lam_fair, lam_rob`` (λ updates off). EfficientTrust proper is
    ``CausalScheduler(lambdas=DynamicLambda(...))``.

    Attributes
    ----------
    predictions : list of dict
        Per decided epoch: the candidate chosen, its predicted gains, and (after the epoch) the
        realised ones — the data of the causal validity check.
    """

    needs: tuple[str, ...] = ()

    def __init__(self, *, alpha: float = 1.0, beta: float = 1.0, gamma: float = 0.01, kappa: float = 0.5,
                 window: int = 6, warmup: int = 3, explore: float = 0.1, ridge: float = 1e-3,
                 allocations: Sequence[Allocation] | None = None, lambdas: DynamicLambda | None = None,
                 lam_fair: float = 1.0, lam_rob: float = 1.0, causal: bool = True, seed: int = 0,
                 fairness: str = "dp_gap"):
        super().__init__(alpha=alpha, beta=beta, gamma=gamma, kappa=kappa, allocations=allocations,
                         fairness=fairness, lambdas=lambdas, lam_fair=lam_fair, lam_rob=lam_rob)
        self.window = check_int("window", window, minimum=2)
        self.warmup = check_int("warmup", warmup, minimum=1)
        self.explore = check_fraction("explore", explore, inclusive_low=True, inclusive_high=True)
        self.ridge = _check_nonneg("ridge", ridge)
        self.causal = bool(causal)
        self.seed = check_int("seed", seed, minimum=0)

    def reset(self, state) -> None:
        super().reset(state)
        self._rng = np.random.default_rng(self.seed)
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []
        self.predictions: list[dict] = []
        # warm-up order: the most expensive candidate first, then every k-th one down the cost order
        order = sorted(self._cands, key=lambda c: -(c.rob * (c.attack_iters + 2) + c.fair))
        self._warm = order[:: max(1, len(order) // self.warmup)][: self.warmup]

    @staticmethod
    def _features(c: Mapping) -> np.ndarray:
        return np.array([1.0, c["fair"], c["rob"], c["total"]])

    def fit(self) -> np.ndarray | None:
        """Ridge least squares of the outcomes on the window's costs: coefficients ``(4, 3)``."""
        rows = self._rows[-self.window:]
        if len(rows) < 2:
            return None
        X = np.stack([r[0] for r in rows])
        Y = np.stack([r[1] for r in rows])
        scale = np.maximum(np.abs(X).max(axis=0), 1e-12)
        Xs = X / scale
        reg = self.ridge * np.eye(X.shape[1])
        reg[0, 0] = 0.0
        # least squares, not solve: with ridge=0 and fewer independent epochs than coefficients the
        # normal equations are singular; this gives their minimum-norm solution
        coef = np.linalg.lstsq(Xs.T @ Xs + reg, Xs.T @ Y, rcond=None)[0]
        return coef / scale[:, None]

    def predict(self, alloc: Allocation, steps: int, coef: np.ndarray) -> np.ndarray:
        """:math:`E[(\\Delta R_{fair}, \\Delta R_{rob}, \\Delta acc) | do(C = cost(alloc))]`."""
        return self._features(self.cost(alloc, steps)) @ coef

    def decide(self, state: TrainState) -> Action:
        cands = self._affordable(state)
        n_dec = len(self.predictions)
        if not self.causal:
            choice = cands[int(self._rng.integers(len(cands)))]
            pred = None
        elif n_dec < len(self._warm) or self._base is None:
            choice = self._warm[n_dec % len(self._warm)]
            choice = choice if choice in cands else cands[0]
            pred = None
        else:
            steps = state.steps_per_epoch
            coef = self.fit()
            if coef is None or self._rng.random() < self.explore:
                choice, pred = cands[int(self._rng.integers(len(cands)))], None
            else:
                scores = []
                for c in cands:
                    p = self.predict(c, steps, coef)
                    scores.append(self.objective(p[0], p[1], p[2], self.cost(c, steps)["total"]))
                choice = cands[int(np.argmax(scores))]
                pred = self.predict(choice, steps, coef).tolist()
        self.predictions.append({"epoch": state.epoch, "allocation": choice.label(), "predicted": pred})
        return self._action(state, choice)

    def observe(self, state, record) -> None:
        super().observe(state, record)
        h = state.history
        if len(h) >= 2 and self._current is not None and not record.partial:
            gains = np.array(self._gains(h[-2].val, h[-1].val))
            steps_time = max(record.epoch_time_s - record.eval_time_s - record.callback_s, 1e-9)
            c = {"fair": record.term_time_s.get("fair", 0.0), "rob": record.term_time_s.get("rob", 0.0),
                 "total": steps_time}
            self._rows.append((self._features(c), gains))
            if self.predictions:
                self.predictions[-1]["realised"] = gains.tolist()


class OracleScheduler(_Allocator):
    """The oracle of the causal validity check: tries every allocation, keeps the truly best one.

    Before each epoch it trains one epoch under each candidate :class:`Allocation` on a copy of the
    model (the exact batches of the next epoch; time excluded from the budget and reported as
    ``usage["excluded_s"]``), measures the true gains on validation, and picks the candidate with
    the best objective (same as :class:`CausalScheduler`). ``true_gains`` keeps, per epoch, every
    candidate's realised gains, to compare with what the causal model predicted.
    """

    def __init__(self, *, alpha: float = 1.0, beta: float = 1.0, gamma: float = 0.01, kappa: float = 0.5,
                 allocations: Sequence[Allocation] | None = None, lambdas: DynamicLambda | None = None,
                 lam_fair: float = 1.0, lam_rob: float = 1.0, fairness: str = "dp_gap"):
        super().__init__(alpha=alpha, beta=beta, gamma=gamma, kappa=kappa, allocations=allocations,
                         fairness=fairness, lambdas=lambdas, lam_fair=lam_fair, lam_rob=lam_rob)

    def reset(self, state) -> None:
        super().reset(state)
        self.true_gains: list[dict] = []
        self._prev_val = None

    def decide(self, state: TrainState) -> Action:
        h = state.history
        if self._prev_val is None:
            with state.meter.paused():
                from ..metrics import evaluate

                self._prev_val = h[-1].val if h else _initial_val(state, evaluate)
        prev = h[-1].val if h else self._prev_val
        lam = self.lambdas.step_lambdas(state) if self.lambdas is not None else {"fair": self.lam_fair, "rob": self.lam_rob}
        steps = state.steps_per_epoch
        best, best_score, row = None, -math.inf, {"epoch": state.epoch}
        for c in self._affordable(state):
            val = state.trial_epoch({**state.weights, "fair": lam["fair"], "rob": lam["rob"]},
                                    fractions={"fair": c.fair, "rob": c.rob},
                                    settings={"rob": {"attack": c.attack, "steps": c.steps}} if c.rob else {})
            g = self._gains(prev, val)
            cost = self.cost(c, steps)["total"] if self._base is not None else c.rob * (c.attack_iters + 1)
            score = self.objective(*g, cost)
            row[c.label()] = list(g)
            if score > best_score:
                best, best_score = c, score
        self.true_gains.append(row)
        self._current = best
        return Action(lam_fair=lam["fair"], lam_rob=lam["rob"], fractions={"fair": best.fair, "rob": best.rob},
                      attack=best.attack if best.rob else None, steps=best.steps if best.rob else None)


def _initial_val(state: TrainState, evaluate) -> dict:
    val = evaluate(state.model, state.task.val)
    if state.robust_eval is not None:
        val["robust_accuracy"] = state.robust_eval.measure(state.model, state.task, "val")
    return val


class FairBatch(Scheduler):
    r"""FairBatch-style adaptive reweighting of (label, group) cells (Roh et al., ICLR 2021).

    FairBatch adjusts, for each label, the share of each group in the mini-batches so that the
    group with the larger loss is seen more, which drives the per-(label, group) losses together
    (equalised odds) or the per-group losses (``target="dp"`` here uses the positive-prediction gap's
    surrogate, the per-group loss within each label, as FairBatch's DP variant does). Here the share
    is applied as a weight on the accuracy term (same expectation as resampling, no new data
    loader): after each epoch, for each label :math:`y`,
    :math:`\lambda_{y,g} \leftarrow \lambda_{y,g} + \alpha\,\mathrm{sign}(\bar\ell_{y,g} - \bar\ell_{y,\cdot})`,
    projected back to the simplex over groups, with :math:`\bar\ell` the mean training loss of the
    cell. The cell weight is :math:`\lambda_{y,g} / \hat p(g|y)` so that the effective share is λ.
    """

    needs = ()

    def __init__(self, *, alpha: float = 0.05, max_rows: int = 8192, fairness: str = "eo_gap"):
        super().__init__(fairness=fairness)
        self.alpha = _check_nonneg("alpha", alpha)
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0; got {alpha}")
        self.max_rows = check_int("max_rows", max_rows, minimum=1)

    def _check_needs(self, state) -> None:
        if state.task.train.a is None:
            raise ValueError(f"FairBatch reweights groups, but task {state.task.name!r} has no sensitive attribute")
        if state.task.n_classes != 2:
            raise ValueError("FairBatch needs a binary task")

    def reset(self, state) -> None:
        y = torch.as_tensor(state.task.train.y).long()
        a = torch.as_tensor(state.task.train.a).long()
        self._n_groups = int(a.max()) + 1
        counts = torch.zeros(2, self._n_groups).index_put_((y, a), torch.ones(len(y)), accumulate=True)
        self._p = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
        self._lam = self._p.clone()
        self.history: list[list[list[float]]] = []

    def decide(self, state) -> Action:
        w = self._lam / self._p.clamp_min(1e-12)
        return Action(cell_weights=w)

    def observe(self, state, record) -> None:
        tr = state.task.train
        n = min(len(tr), self.max_rows)
        X = torch.as_tensor(tr.X[:n])
        y = torch.as_tensor(tr.y[:n]).long()
        a = torch.as_tensor(tr.a[:n]).long()
        dev = next((p.device for p in state.model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            state.model.eval()
            losses = F.cross_entropy(state.model(X.to(dev)), y.to(dev), reduction="none").cpu()
            state.model.train()
        for label in (0, 1):
            m = y == label
            cell = torch.stack([losses[m & (a == g)].mean() if bool((m & (a == g)).any()) else torch.tensor(float("nan"))
                                for g in range(self._n_groups)])
            ok = ~torch.isnan(cell)
            if int(ok.sum()) < 2:
                continue
            mean = cell[ok].mean()
            step = torch.zeros_like(cell)
            step[ok] = torch.sign(cell[ok] - mean)
            lam = (self._lam[label] + self.alpha * step).clamp_min(1e-3)
            self._lam[label] = lam / lam.sum()
        self.history.append(self._lam.tolist())


class DualAscent(Scheduler):
    r"""Lagrangian dual ascent on a fairness constraint, with cooper's multiplier and a dual optimiser.

    Solves :math:`\min_\theta L_{acc}(\theta)` s.t. :math:`g(\theta) = R_{fair}(\theta) - \epsilon \le 0`
    through the Lagrangian :math:`L_{acc} + \lambda_f\,(R_{fair} - \epsilon)`: the model takes its
    usual step, and after every step the multiplier takes a projected ascent step on the batch's
    constraint violation, :math:`\lambda_f \leftarrow [\lambda_f + \eta\,(R_{fair} - \epsilon)]_+`
    (``cooper.multipliers.DenseMultiplier`` + ``torch.optim.SGD(maximize=True)``, the standard
    gradient-descent-ascent of Cotter et al. 2019 and the cooper library). ``R_fair`` is the
    trainer's fairness term (its surrogate), measured on each batch.
    """

    needs = ("fair",)

    def __init__(self, *, epsilon: float = 0.02, dual_lr: float = 0.05, lam_init: float = 0.0,
                 lam_rob: float = 0.0, fairness: str = "dp_gap"):
        super().__init__(fairness=fairness)
        self.epsilon = _check_nonneg("epsilon", epsilon)
        self.dual_lr = _check_nonneg("dual_lr", dual_lr)
        if self.dual_lr <= 0:
            raise ValueError(f"dual_lr must be > 0; got {dual_lr}")
        self.lam_init = _check_nonneg("lam_init", lam_init)
        self.lam_rob = _check_nonneg("lam_rob", lam_rob)

    def lambdas_set(self) -> dict:
        return {"rob": self.lam_rob}

    def reset(self, state) -> None:
        from cooper import ConstraintType
        from cooper.multipliers import DenseMultiplier

        self._mult = DenseMultiplier(init=torch.tensor([self.lam_init]))
        self._mult.set_constraint_type(ConstraintType.INEQUALITY)
        self._opt = torch.optim.SGD(self._mult.parameters(), lr=self.dual_lr, maximize=True)

    def decide(self, state) -> Action:
        return Action(lam_fair=float(self._mult.weight.detach()[0]), lam_rob=self.lam_rob)

    def on_step_end(self, state, batch, parts) -> None:
        if "fair" not in parts:  # λ_f is 0 at the start: the constraint is still measured and enforced
            with torch.no_grad():
                logits = state.model(batch.x)
                value = state.terms["fair"](state.model, batch, logits)
        else:
            value = parts["fair"]
        self._opt.zero_grad(set_to_none=True)
        self._mult.weight.grad = (value.detach().reshape(1) - self.epsilon).to(self._mult.weight.dtype)
        self._opt.step()
        self._mult.post_step_()
        state.weights["fair"] = float(self._mult.weight.detach()[0])
