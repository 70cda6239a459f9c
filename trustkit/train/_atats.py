r"""ATATS (001): adaptive trust-aware training schedules: a state, three policies, one interface.

The **state** a policy sees each epoch (:func:`atats_state`): the share of the budget used and
left, validation utility (accuracy), fairness gap and robust accuracy, the mean gradient norm of the
last epoch (relative to the first), and the current :math:`\lambda_f, \lambda_r`.
The **actions**: :math:`\lambda_f`, :math:`\lambda_r` and the intensity of adversarial training
(FGSM-RS or PGD with k steps). The **policies**:

* :class:`RulePolicy`: thresholds on the gaps to a trust target, a guard on accuracy, and a switch to
  the cheap attack when the budget runs low;
* :class:`PIDPolicy`: a PI(D) controller on the error to the trust targets; the multipliers are a
  ``cooper`` ``DenseMultiplier`` updated by cooper's ``nuPI`` optimiser (Sohrabi et al., ICML 2024),
  the published PI controller for Lagrange multipliers, plus an optional derivative term;
* :class:`BanditPolicy`: a learned policy, LinUCB (Li et al. 2010) over a discrete set of actions
  with the state as context, trained across episodes (runs) and frozen for evaluation.

All are :class:`~trustkit.train.Scheduler` subclasses: swap one for another in a notebook.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .._validation import check_int, check_positive
from ._schedulers import Action, Scheduler, _check_nonneg, fair_gain, rob_gain
from ._terms import ATTACKS
from ._records import TrainState

__all__ = ["atats_state", "STATE_FEATURES", "RulePolicy", "PIDPolicy", "BanditPolicy", "BanditAction"]

STATE_FEATURES = ("used", "left", "accuracy", "fair_gap", "robust_accuracy", "grad_norm", "lam_fair", "lam_rob")


def atats_state(state: TrainState, *, fairness: str = "dp_gap") -> dict:
    """The ATATS state after the last epoch (before the first: the untrained values are 0 / 1)."""
    h = state.history
    last = h[-1].val if h else {}
    g0 = next((e.grad_norm for e in h if math.isfinite(e.grad_norm) and e.grad_norm > 0), None)
    used = state.progress()
    return {
        "used": used,
        "left": 1.0 - used,
        "accuracy": float(last.get("accuracy", 0.0)),
        "fair_gap": float(last.get(fairness, 0.0)),
        "robust_accuracy": float(last.get("robust_accuracy", 0.0)),
        "grad_norm": (h[-1].grad_norm / g0) if h and g0 and math.isfinite(h[-1].grad_norm) else 1.0,
        "lam_fair": float(state.weights.get("fair", 0.0)),
        "lam_rob": float(state.weights.get("rob", 0.0)),
    }


def _check_target(name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1):
        raise ValueError(f"{name} must be a number in [0, 1] or None; got {value!r}")
    return float(value)


class RulePolicy(Scheduler):
    """Rule-based ATATS: step λ up while a metric misses its target, down once it meets it.

    * fairness: :math:`\\lambda_f \\pm` ``step`` as the validation gap is above / below ``fair_target``;
      if validation accuracy falls more than ``acc_drop`` below the best seen, λ_f steps down
      regardless (utility guard);
    * robustness: :math:`\\lambda_r \\pm` ``step`` as robust accuracy is below / above ``rob_target``;
      the attack is PGD while more than ``cheap_below`` of the budget is left, FGSM-RS after.

    A target of None leaves that λ at its initial value.
    """

    _reads_accuracy = True

    def __init__(self, *, fair_target: float | None = 0.05, rob_target: float | None = None, step: float = 0.5,
                 lam_max: float = 4.0, lam_fair: float = 0.0, lam_rob: float = 1.0, acc_drop: float = 0.02,
                 cheap_below: float = 0.3, fairness: str = "dp_gap"):
        super().__init__(fairness=fairness)
        self.fair_target = _check_target("fair_target", fair_target)
        self.rob_target = _check_target("rob_target", rob_target)
        self.step = _check_nonneg("step", step)
        self.lam_max = _check_nonneg("lam_max", lam_max)
        self.lam_fair = _check_nonneg("lam_fair", lam_fair)
        self.lam_rob = _check_nonneg("lam_rob", lam_rob)
        self.acc_drop = _check_nonneg("acc_drop", acc_drop)
        self.cheap_below = _check_target("cheap_below", cheap_below)
        self.needs = tuple(k for k, t in (("fair", self.fair_target), ("rob", self.rob_target)) if t is not None)

    def reset(self, state) -> None:
        self._lam = {"fair": self.lam_fair, "rob": self.lam_rob}
        self._best_acc = -math.inf

    def _clip(self, v: float) -> float:
        return float(min(self.lam_max, max(0.0, v)))

    def decide(self, state) -> Action:
        h = state.history
        attack = None
        if h:
            s = atats_state(state, fairness=self.fairness)
            self._best_acc = max(self._best_acc, s["accuracy"])
            if self.fair_target is not None:
                up = s["fair_gap"] > self.fair_target and s["accuracy"] >= self._best_acc - self.acc_drop
                self._lam["fair"] = self._clip(self._lam["fair"] + (self.step if up else -self.step))
            if self.rob_target is not None:
                up = s["robust_accuracy"] < self.rob_target
                self._lam["rob"] = self._clip(self._lam["rob"] + (self.step if up else -self.step))
            if "rob" in state.terms and self.cheap_below is not None:
                attack = "fgsm_rs" if s["left"] < self.cheap_below else "pgd"
        return Action(lam_fair=self._lam["fair"], lam_rob=self._lam["rob"], attack=attack)


class PIDPolicy(Scheduler):
    r"""PID ATATS: λ are Lagrange multipliers driven by the error to the trust targets.

    Errors (positive = target missed): :math:`e_f = \mathrm{gap} - \delta_f` and
    :math:`e_r = \rho_r - \mathrm{rob}`. The multipliers live in a ``cooper`` ``DenseMultiplier``
    (projected to :math:`\ge 0` after each step) and are updated once per epoch by
    ``cooper.optim.nuPI(lr, Kp, Ki, ema_nu, maximize=True)``, the PI controller of Sohrabi et al.
    (2024), with the error as the multiplier's gradient; ``kd`` adds a derivative term
    :math:`\eta K_d (e_t - e_{t-1})`. λ is capped at ``lam_max``.
    """

    def __init__(self, *, fair_target: float | None = 0.05, rob_target: float | None = None, kp: float = 2.0,
                 ki: float = 4.0, kd: float = 0.0, lr: float = 1.0, ema_nu: float = 0.0, lam_max: float = 4.0,
                 lam_fair: float = 0.0, lam_rob: float = 0.0, fairness: str = "dp_gap"):
        super().__init__(fairness=fairness)
        self.fair_target = _check_target("fair_target", fair_target)
        self.rob_target = _check_target("rob_target", rob_target)
        if self.fair_target is None and self.rob_target is None:
            raise ValueError("PIDPolicy needs at least one of fair_target, rob_target")
        self.kp = _check_nonneg("kp", kp)
        self.ki = _check_nonneg("ki", ki)
        self.kd = _check_nonneg("kd", kd)
        if self.kp == self.ki == 0:
            raise ValueError("kp and ki cannot both be 0")
        self.lr = check_positive("lr", lr)
        if not (0.0 <= ema_nu < 1.0):
            raise ValueError(f"ema_nu must be in [0, 1); got {ema_nu}")
        self.ema_nu = float(ema_nu)
        self.lam_max = _check_nonneg("lam_max", lam_max)
        self.lam_fair = _check_nonneg("lam_fair", lam_fair)
        self.lam_rob = _check_nonneg("lam_rob", lam_rob)
        self.needs = tuple(k for k, t in (("fair", self.fair_target), ("rob", self.rob_target)) if t is not None)

    def reset(self, state) -> None:
        from cooper import ConstraintType
        from cooper.multipliers import DenseMultiplier
        from cooper.optim import nuPI

        self._mult = DenseMultiplier(init=torch.tensor([self.lam_fair, self.lam_rob]))
        self._mult.set_constraint_type(ConstraintType.INEQUALITY)
        self._opt = nuPI(self._mult.parameters(), lr=self.lr, Kp=self.kp, Ki=self.ki, ema_nu=self.ema_nu, maximize=True)
        self._prev_err = None
        self.errors: list[list[float]] = []

    def error(self, val) -> torch.Tensor:
        e_f = 0.0 if self.fair_target is None else float(val[self.fairness]) - self.fair_target
        e_r = 0.0 if self.rob_target is None else self.rob_target - float(val["robust_accuracy"])
        return torch.tensor([e_f, e_r])

    def decide(self, state) -> Action:
        h = state.history
        if h:
            err = self.error(h[-1].val)
            self._opt.zero_grad(set_to_none=True)
            self._mult.weight.grad = err.clone()
            self._opt.step()
            with torch.no_grad():
                if self.kd and self._prev_err is not None:
                    self._mult.weight += self.lr * self.kd * (err - self._prev_err)
                self._mult.post_step_()
                self._mult.weight.clamp_(max=self.lam_max)
            self._prev_err = err
            self.errors.append(err.tolist())
        lam = self._mult.weight.detach().tolist()
        return Action(lam_fair=lam[0] if self.fair_target is not None else self.lam_fair,
                      lam_rob=lam[1] if self.rob_target is not None else self.lam_rob)


class BanditAction(tuple):
    """``(lam_fair, lam_rob, attack)``: one arm of the bandit (attack None leaves it unchanged)."""

    def __new__(cls, lam_fair: float, lam_rob: float, attack: str | None = None):
        if attack is not None and attack not in ATTACKS:
            raise ValueError(f"attack must be one of {list(ATTACKS)} or None; got {attack!r}")
        return super().__new__(cls, (float(lam_fair), float(lam_rob), attack))


def default_arms(*, fair: bool, rob: bool) -> list[BanditAction]:
    lf = (0.0, 0.5, 1.0, 2.0, 4.0) if fair else (0.0,)
    if not rob:
        return [BanditAction(f, 0.0) for f in lf]
    lr = [(0.0, None), (1.0, "fgsm_rs"), (1.0, "pgd")]
    if fair:
        lf = (0.0, 1.0, 3.0)
    return [BanditAction(f, r, at) for f in lf for r, at in lr]


class BanditPolicy(Scheduler):
    r"""Learned ATATS: a LinUCB contextual bandit over discrete actions, trained across episodes.

    Context: :data:`STATE_FEATURES` plus a constant. After each epoch the arm that was played gets
    the reward :math:`\alpha\Delta R_{fair} + \beta\Delta R_{rob} + \kappa\Delta acc - \gamma\Delta C`
    (ΔC in units of the first epoch's time). The per-arm ridge statistics persist across
    :meth:`~trustkit.train.Trainer.fit` calls, so a policy trained on some episodes (e.g. other
    seeds) is then evaluated with ``learning=False`` (greedy, no updates). ``episodes`` counts the
    runs it learned from.

    Examples
    --------
    >>> policy = BanditPolicy(arms=[BanditAction(0, 0), BanditAction(1, 0)], ucb=0.0)
    >>> policy.episodes, len(policy.arms)
    (0, 2)
    """

    def __init__(self, *, arms: Sequence[BanditAction] | None = None, ucb: float = 0.5, alpha: float = 1.0,
                 beta: float = 1.0, kappa: float = 0.5, gamma: float = 0.01, learning: bool = True,
                 seed: int = 0, fairness: str = "dp_gap"):
        super().__init__(fairness=fairness)
        self.arms = None if arms is None else [a if isinstance(a, BanditAction) else BanditAction(*a) for a in arms]
        self.ucb = _check_nonneg("ucb", ucb)
        self.alpha = _check_nonneg("alpha", alpha)
        self.beta = _check_nonneg("beta", beta)
        self.kappa = _check_nonneg("kappa", kappa)
        self.gamma = _check_nonneg("gamma", gamma)
        self.learning = bool(learning)
        self.seed = check_int("seed", seed, minimum=0)
        self.episodes = 0
        self._A = None
        self._b = None
        self._rng = np.random.default_rng(self.seed)

    _reads_accuracy = True

    def signals(self, state) -> tuple[str, ...]:
        return ("accuracy",) + ((self.fairness,) if "fair" in state.terms else ()) + (
            ("robust_accuracy",) if "rob" in state.terms else ())

    def lambdas_set(self) -> dict:
        if not self.arms:
            return {}
        return {"fair": max(a[0] for a in self.arms), "rob": max(a[1] for a in self.arms)}

    def reset(self, state) -> None:
        if self.arms is None:
            self.arms = default_arms(fair="fair" in state.terms, rob="rob" in state.terms)
        d = len(STATE_FEATURES) + 1
        if self._A is None:
            self._A = np.stack([np.eye(d) for _ in self.arms])
            self._b = np.zeros((len(self.arms), d))
        self._last = None
        self._c0 = None
        self.rewards: list[float] = []

    def context(self, state) -> np.ndarray:
        s = atats_state(state, fairness=self.fairness)
        return np.array([1.0] + [s[k] for k in STATE_FEATURES])

    def decide(self, state) -> Action:
        x = self.context(state)
        scores = []
        for A, b in zip(self._A, self._b):
            Ainv = np.linalg.inv(A)
            theta = Ainv @ b
            bonus = self.ucb * math.sqrt(float(x @ Ainv @ x)) if self.learning else 0.0
            scores.append(float(theta @ x) + bonus)
        scores = np.asarray(scores)
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        k = int(self._rng.choice(best))
        self._last = (k, x)
        lam_f, lam_r, attack = self.arms[k]
        return Action(lam_fair=lam_f, lam_rob=lam_r, attack=attack)

    def observe(self, state, record) -> None:
        h = state.history
        if self._c0 is None:
            self._c0 = max(record.epoch_time_s, 1e-9)
        if len(h) < 2 or self._last is None:
            return
        d_f = fair_gain(h[-2].val, h[-1].val, self.fairness) if self.fairness in record.val else 0.0
        d_r = rob_gain(h[-2].val, h[-1].val) if "robust_accuracy" in record.val else 0.0
        d_a = float(record.val["accuracy"]) - float(h[-2].val["accuracy"])
        reward = self.alpha * d_f + self.beta * d_r + self.kappa * d_a - self.gamma * record.epoch_time_s / self._c0
        self.rewards.append(reward)
        if self.learning:
            k, x = self._last
            self._A[k] += np.outer(x, x)
            self._b[k] += reward * x

    def on_fit_start(self, state) -> None:
        super().on_fit_start(state)
        if self.learning:
            self.episodes += 1
