r"""Numeric side of the compute–trust bounds (theory/ states and proves them).

Setting (theory/01_fairness_lower_bound.md): a quantity :math:`\Delta` (a demographic-parity gap, a
robust accuracy) is observed only through independent noisy evaluations
:math:`Z_i = \Delta + \xi_i` with :math:`\xi_i` σ-sub-Gaussian. To know :math:`\Delta` within δ with
probability at least 1 − η:

* **lower bound** (Le Cam's two-point method with the Bretagnolle–Huber inequality, Gaussian noise):
  every algorithm needs :math:`n \ge \sigma^2 \log(1/(4\eta)) / (2\delta^2)` evaluations (η < 1/4);
* **upper bound** (the sample mean, sub-Gaussian / Hoeffding tail):
  :math:`n \ge 2\sigma^2 \log(2/\eta) / \delta^2` evaluations suffice.

The two differ by a factor 4 and the constant inside the logarithm; both are
:math:`\Theta(\sigma^2 \log(1/\eta)/\delta^2)`. The same numbers bound the gradient steps T of any
algorithm on the problem class of Theorem 2 (a gap observed only through stochastic gradients).
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

__all__ = ["lower_bound_steps", "upper_bound_steps", "admissible_region", "min_certifiable_gap",
           "achievable_gap", "bernoulli_sigma", "gaussian_frontier", "frontier_thresholds", "KL_GAUSSIAN_FACTOR"]

#: KL(N(0, σ²)‖N(2δ, σ²)) = 2δ²/σ² per observation (checked symbolically in :mod:`._symbolic`)
KL_GAUSSIAN_FACTOR = 2.0


def _check_open_unit(name: str, value, *, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a number in (0, {high:g}); got {value!r}")
    if not 0 < value < high:
        raise ValueError(f"{name} must lie in (0, {high:g}); got {value}")
    return float(value)


def _check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, Real) or not math.isfinite(sigma):
        raise TypeError(f"sigma must be a number > 0; got {sigma!r}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    return float(sigma)


def lower_bound_steps(delta: float, eta: float, sigma: float) -> float:
    r"""Fewest noisy evaluations (or gradient steps) any algorithm needs: :math:`\sigma^2\log(1/(4\eta))/(2\delta^2)`.

    Parameters
    ----------
    delta : float in (0, 1)
        Precision (the gap to certify, or the distance to the target).
    eta : float in (0, 1/4)
        Allowed failure probability (the two-point bound is vacuous for η ≥ 1/4).
    sigma : float > 0
        Sub-Gaussian scale of one evaluation's noise.

    Examples
    --------
    >>> round(lower_bound_steps(0.05, 0.01, 0.5), 1)
    160.9
    >>> lower_bound_steps(0.05, 0.3, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: eta must lie in (0, 0.25); got 0.3
    """
    delta = _check_open_unit("delta", delta)
    eta = _check_open_unit("eta", eta, high=0.25)
    sigma = _check_sigma(sigma)
    return sigma**2 * math.log(1.0 / (4.0 * eta)) / (KL_GAUSSIAN_FACTOR * delta**2)


def upper_bound_steps(delta: float, eta: float, sigma: float) -> float:
    r"""Evaluations that suffice for the sample mean: :math:`2\sigma^2\log(2/\eta)/\delta^2`.

    >>> round(upper_bound_steps(0.05, 0.01, 0.5), 1)
    1059.7
    """
    delta = _check_open_unit("delta", delta)
    eta = _check_open_unit("eta", eta)
    sigma = _check_sigma(sigma)
    return 2.0 * sigma**2 * math.log(2.0 / eta) / delta**2


def min_certifiable_gap(T: float, eta: float, sigma: float) -> float:
    r"""Smallest δ any algorithm can certify with T evaluations: :math:`\sigma\sqrt{\log(1/(4\eta))/(2T)}`."""
    T = _check_T(T)
    eta = _check_open_unit("eta", eta, high=0.25)
    sigma = _check_sigma(sigma)
    return sigma * math.sqrt(math.log(1.0 / (4.0 * eta)) / (KL_GAUSSIAN_FACTOR * T))


def achievable_gap(T: float, eta: float, sigma: float) -> float:
    r"""δ the sample mean reaches with T evaluations: :math:`\sigma\sqrt{2\log(2/\eta)/T}`."""
    T = _check_T(T)
    eta = _check_open_unit("eta", eta)
    sigma = _check_sigma(sigma)
    return sigma * math.sqrt(2.0 * math.log(2.0 / eta) / T)


def _check_T(T) -> float:
    if isinstance(T, bool) or not isinstance(T, Real) or not math.isfinite(T):
        raise TypeError(f"T must be a number > 0; got {T!r}")
    if T <= 0:
        raise ValueError(f"T must be > 0; got {T}")
    return float(T)


def admissible_region(T: float, sigma: float, *, etas=None) -> "pd.DataFrame":  # noqa: F821
    r"""The (δ, η) plane for a budget of T evaluations, per η: impossible below ``delta_min``,
    guaranteed by the sample mean above ``delta_achievable``, open in between.

    >>> r = admissible_region(1000, 0.5, etas=[0.01, 0.1])
    >>> bool((r.delta_min < r.delta_achievable).all())
    True
    """
    import pandas as pd

    etas = np.geomspace(1e-4, 0.2, 40) if etas is None else np.asarray(etas, dtype=float)
    return pd.DataFrame({"eta": etas,
                         "delta_min": [min_certifiable_gap(T, e, sigma) for e in etas],
                         "delta_achievable": [achievable_gap(T, e, sigma) for e in etas]})


def bernoulli_sigma(p: float = 0.5) -> float:
    r"""Sub-Gaussian scale of a Bernoulli(p) indicator: 1/2 for every p (Hoeffding); its standard
    deviation :math:`\sqrt{p(1-p)}` is at most that."""
    _check_open_unit("p", p)
    return 0.5


# -- the Gaussian two-group accuracy–fairness frontier (theory/03_gaussian_frontier.md) ----------

def _phi(x):
    return np.exp(-0.5 * np.asarray(x, float) ** 2) / math.sqrt(2 * math.pi)


def _Phi(x):
    from scipy.special import ndtr

    return ndtr(np.asarray(x, float))


def _check_model(pi0, q0, q1, m):
    pi0 = _check_open_unit("pi0", pi0)
    q0 = _check_open_unit("q0", q0)
    q1 = _check_open_unit("q1", q1)
    if isinstance(m, bool) or not isinstance(m, Real) or not m > 0:
        raise ValueError(f"m (half the distance between the class means) must be > 0; got {m!r}")
    return pi0, q0, q1, float(m)


def frontier_thresholds(mu, *, pi0: float, q0: float, q1: float, m: float):
    r"""Group thresholds on the frontier at multiplier μ ∈ [0, min(π_0, π_1)).

    KKT of max accuracy s.t. a DP gap: :math:`t_0 = t_0^* + \operatorname{artanh}(\mu/\pi_0)/m`,
    :math:`t_1 = t_1^* - \operatorname{artanh}(\mu/\pi_1)/m`, with the Bayes thresholds
    :math:`t_a^* = \log((1-q_a)/q_a)/(2m)` (group 0 is the one with the higher base rate).
    """
    pi0, q0, q1, m = _check_model(pi0, q0, q1, m)
    pi1 = 1 - pi0
    mu = np.asarray(mu, float)
    if np.any(mu < 0) or np.any(mu >= min(pi0, pi1)):
        raise ValueError(f"mu must lie in [0, min(pi0, pi1)) = [0, {min(pi0, pi1):g})")
    t0 = math.log((1 - q0) / q0) / (2 * m) + np.arctanh(mu / pi0) / m
    t1 = math.log((1 - q1) / q1) / (2 * m) - np.arctanh(mu / pi1) / m
    return t0, t1


def gaussian_frontier(*, pi0: float = 0.5, q0: float = 0.6, q1: float = 0.3, m: float = 1.0, n: int = 200):
    r"""The closed-form accuracy–DP-gap Pareto frontier of the two-Gaussian-groups model.

    Model: group :math:`A=a` with probability :math:`\pi_a`; label :math:`Y|A=a \sim` Bernoulli
    :math:`(q_a)`; score :math:`X|Y=y \sim N(\pm m, 1)` (+ for y = 1), the same in both groups;
    classifier :math:`\hat y = 1\{x > t_a\}` with a threshold per group (the form optimal fair
    classifiers take). Returns a frame with μ, the thresholds, the accuracy, the positive rates and
    the DP gap, from the unconstrained optimum (μ = 0) to the fair end (gap → 0 or the constraint's
    limit), ordered by decreasing gap.

    >>> f = gaussian_frontier(q0=0.6, q1=0.3)
    >>> bool(f.accuracy.is_monotonic_decreasing and f.dp_gap.is_monotonic_decreasing)
    True
    """
    import pandas as pd

    pi0, q0, q1, m = _check_model(pi0, q0, q1, m)
    if q0 <= q1:
        raise ValueError(f"the model takes group 0 as the one with the higher base rate: need q0 > q1; got {q0}, {q1}")
    pi1 = 1 - pi0
    mus = np.linspace(0, min(pi0, pi1), n + 1)[:-1]
    t0, t1 = frontier_thresholds(mus, pi0=pi0, q0=q0, q1=q1, m=m)
    r0 = q0 * _Phi(m - t0) + (1 - q0) * _Phi(-m - t0)
    r1 = q1 * _Phi(m - t1) + (1 - q1) * _Phi(-m - t1)
    acc0 = q0 * _Phi(m - t0) + (1 - q0) * _Phi(t0 + m)
    acc1 = q1 * _Phi(m - t1) + (1 - q1) * _Phi(t1 + m)
    df = pd.DataFrame({"mu": mus, "t0": t0, "t1": t1, "rate0": r0, "rate1": r1, "dp_gap": r0 - r1,
                       "accuracy": pi0 * acc0 + pi1 * acc1})
    return df[df.dp_gap >= 0].reset_index(drop=True)
