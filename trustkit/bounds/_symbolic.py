r"""Every algebraic step of theory/ re-derived with sympy.

Each ``check_*`` function derives one step symbolically and returns a :class:`Check` with the
derived expression, the expression the text states, and whether they agree (``ok``). The tests
run :func:`all_checks`; the lower-bounds notebook renders them.

>>> all(c.ok for c in all_checks())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

__all__ = ["Check", "all_checks", "check_gaussian_kl", "check_lower_bound_solution", "check_upper_bound_solution",
           "check_bound_ratio", "check_bernoulli_kl", "check_hoeffding_bernoulli", "check_gradient_oracle_reduction",
           "check_frontier_ratio", "check_frontier_stationarity", "check_frontier_slope", "check_rate_slope",
           "check_bernoulli_variance"]


@dataclass
class Check:
    """One derivation: what sympy derived, what theory/ states, and whether they agree."""

    name: str
    statement: str
    derived: sp.Expr
    stated: sp.Expr
    ok: bool

    def latex(self) -> str:
        return rf"\text{{{self.name}}}:\quad {sp.latex(self.derived)} = {sp.latex(self.stated)}"


def _same(a, b) -> bool:
    return bool(sp.simplify(a - b) == 0)


delta, eta, sigma, n, T = sp.symbols("delta eta sigma n T", positive=True)


def check_gaussian_kl() -> Check:
    r""":math:`KL(N(0,\sigma^2)\,\|\,N(2\delta,\sigma^2)) = 2\delta^2/\sigma^2` (one observation)."""
    x = sp.symbols("x", real=True)
    p0 = sp.exp(-x**2 / (2 * sigma**2)) / sp.sqrt(2 * sp.pi * sigma**2)
    log_ratio = sp.expand(sp.log(sp.exp(-x**2 / (2 * sigma**2))) - sp.log(sp.exp(-(x - 2 * delta) ** 2 / (2 * sigma**2))),
                          force=True)
    kl = sp.integrate(sp.expand(p0 * log_ratio), (x, -sp.oo, sp.oo))
    stated = 2 * delta**2 / sigma**2
    return Check("Gaussian KL", "KL(N(0,σ²)‖N(2δ,σ²)) = 2δ²/σ²", sp.simplify(kl), stated, _same(kl, stated))


def check_lower_bound_solution() -> Check:
    r"""Bretagnolle–Huber: :math:`2\eta \ge \tfrac12 e^{-n\,KL}` ⇔ :math:`n \ge \sigma^2\log(1/(4\eta))/(2\delta^2)`."""
    kl = 2 * delta**2 / sigma**2
    (sol,) = sp.solve(sp.Eq(2 * eta, sp.exp(-n * kl) / 2), n)
    stated = sigma**2 * sp.log(1 / (4 * eta)) / (2 * delta**2)
    return Check("two-point lower bound", "n* = σ² log(1/(4η)) / (2δ²)", sp.expand_log(sol, force=True), stated,
                 _same(sp.expand_log(sol, force=True), sp.expand_log(stated, force=True)))


def check_upper_bound_solution() -> Check:
    r"""Sub-Gaussian tail of the mean: :math:`2e^{-n\delta^2/(2\sigma^2)} = \eta` ⇔ :math:`n = 2\sigma^2\log(2/\eta)/\delta^2`."""
    (sol,) = sp.solve(sp.Eq(2 * sp.exp(-n * delta**2 / (2 * sigma**2)), eta), n)
    stated = 2 * sigma**2 * sp.log(2 / eta) / delta**2
    return Check("mean upper bound", "n = 2σ² log(2/η) / δ²", sp.expand_log(sol, force=True), stated,
                 _same(sp.expand_log(sol, force=True), sp.expand_log(stated, force=True)))


def check_bound_ratio() -> Check:
    r"""Upper / lower bound :math:`= 4\log(2/\eta)/\log(1/(4\eta)) \to 4` as :math:`\eta \to 0`."""
    lower = sigma**2 * sp.log(1 / (4 * eta)) / (2 * delta**2)
    upper = 2 * sigma**2 * sp.log(2 / eta) / delta**2
    lim = sp.limit(sp.simplify(upper / lower), eta, 0, "+")
    return Check("bounds match up to 4", "lim_{η→0} upper/lower = 4", lim, sp.Integer(4), _same(lim, 4))


def check_bernoulli_kl() -> Check:
    r""":math:`KL(\mathrm{Ber}(\tfrac12)\|\mathrm{Ber}(\tfrac12+2\delta)) = 8\delta^2 + O(\delta^4)`, i.e. the
    Gaussian factor :math:`2\delta^2/\sigma^2` with :math:`\sigma^2 = 1/4`."""
    p, q = sp.Rational(1, 2), sp.Rational(1, 2) + 2 * delta
    kl = p * sp.log(p / q) + (1 - p) * sp.log((1 - p) / (1 - q))
    series = sp.series(kl, delta, 0, 4).removeO()
    stated = 2 * delta**2 / sp.Rational(1, 4)
    return Check("Bernoulli KL", "KL(Ber(1/2)‖Ber(1/2+2δ)) = 8δ² + O(δ⁴)", sp.simplify(series), stated, _same(series, stated))


def check_hoeffding_bernoulli() -> Check:
    r"""Hoeffding's lemma for a fair coin: :math:`\lambda^2/8 - \log\cosh(\lambda/2) \ge 0`, shown by
    its derivative :math:`\lambda/4 - \tanh(\lambda/2)/2 \ge 0` (as :math:`\tanh u \le u`) and its
    value 0 at 0; so the indicator is (1/2)-sub-Gaussian."""
    lam = sp.symbols("lambda", positive=True)
    gap = lam**2 / 8 - sp.log(sp.cosh(lam / 2))
    d = sp.simplify(sp.diff(gap, lam))
    stated = lam / 4 - sp.tanh(lam / 2) / 2
    ok = _same(d.rewrite(sp.exp), stated.rewrite(sp.exp)) and gap.subs(lam, 0) == 0
    u = sp.symbols("u", positive=True)
    ok = ok and sp.series(u - sp.tanh(u), u, 0, 4).removeO() == u**3 / 3  # tanh u <= u near 0 (and tanh <= 1)
    return Check("Hoeffding (p = 1/2)", "d/dλ[λ²/8 − log cosh(λ/2)] = λ/4 − tanh(λ/2)/2", d, stated, ok)


def check_bernoulli_variance() -> Check:
    r""":math:`\max_p p(1-p) = 1/4` (so a Bernoulli's variance never exceeds its sub-Gaussian :math:`\sigma^2`)."""
    p = sp.symbols("p", positive=True)
    crit = sp.solve(sp.diff(p * (1 - p), p), p)
    value = (p * (1 - p)).subs(p, crit[0])
    return Check("Bernoulli variance", "max_p p(1−p) = 1/4", value, sp.Rational(1, 4), _same(value, sp.Rational(1, 4)))


def check_gradient_oracle_reduction() -> Check:
    r"""Theorem 2's class: for :math:`f_v(\theta) = (\theta-v)^2/2` a stochastic gradient at a known
    :math:`\theta` is :math:`g = \theta - v + \xi`, so :math:`\theta - g = v - \xi`: one step is one
    noisy evaluation of v (with the sign of the noise flipped, same law for symmetric noise)."""
    theta, v, xi = sp.symbols("theta v xi", real=True)
    f = (theta - v) ** 2 / 2
    g = sp.diff(f, theta) + xi
    return Check("gradient = evaluation", "θ − ∂f/∂θ − ξ = v", sp.simplify(theta - g), v - xi, _same(theta - g, v - xi))


def _frontier_symbols():
    t, m, q = sp.symbols("t m q", positive=True)
    phi = lambda z: sp.exp(-z**2 / 2) / sp.sqrt(2 * sp.pi)  # noqa: E731
    acc_d = -q * phi(m - t) + (1 - q) * phi(t + m)     # d/dt accuracy of 1{x > t}
    rate_d = -q * phi(m - t) - (1 - q) * phi(t + m)    # d/dt positive rate
    t_star = sp.log((1 - q) / q) / (2 * m)
    return t, m, q, acc_d, rate_d, t_star


def check_frontier_ratio() -> Check:
    r""":math:`\mathrm{acc}'(t)/r'(t) = \tanh(m(t - t^*))`, :math:`t^* = \log((1-q)/q)/(2m)`."""
    t, m, q, acc_d, rate_d, t_star = _frontier_symbols()
    ratio = acc_d / rate_d
    stated = sp.tanh(m * (t - t_star))
    diff = sp.simplify(sp.expand(sp.simplify((ratio - stated).rewrite(sp.exp)), force=True))
    return Check("frontier ratio", "acc'(t)/r'(t) = tanh(m(t − t*))", sp.simplify(ratio), stated, diff == 0)


def check_frontier_stationarity(sign: int = 1) -> Check:
    r"""The thresholds :math:`t_0 = t_0^* + \operatorname{artanh}(\mu/\pi_0)/m` satisfy the KKT condition
    :math:`\pi_0\,\mathrm{acc}_0'(t_0) - \mu\,r_0'(t_0) = 0` (group 1 is the mirror image).
    ``sign=-1`` checks the wrong-signed thresholds (the tests use it to show the check can fail)."""
    t, m, q, acc_d, rate_d, t_star = _frontier_symbols()
    mu, pi0 = sp.symbols("mu pi0", positive=True)
    t0 = t_star + sign * sp.atanh(mu / pi0) / m
    expr = (pi0 * acc_d - mu * rate_d).subs(t, t0)
    val = sp.simplify(sp.expand(sp.simplify(expr.rewrite(sp.exp)), force=True))
    if val != 0:  # fall back to exact rational points
        pts = [(sp.Rational(1, 3), sp.Rational(3, 2), sp.Rational(2, 5), sp.Rational(1, 2)),
               (sp.Rational(1, 7), sp.Rational(1, 2), sp.Rational(7, 10), sp.Rational(3, 10))]
        val = max(abs(sp.N(expr.subs({mu: a, m: b, q: c, pi0: d}), 50)) for a, b, c, d in pts)
        ok = val < sp.Float(10) ** -40
    else:
        ok = True
    return Check("KKT thresholds", "π₀ acc₀'(t₀(μ)) − μ r₀'(t₀(μ)) = 0", sp.sympify(val), sp.Integer(0), bool(ok))


def check_frontier_slope() -> Check:
    r"""Envelope theorem along the frontier: :math:`d\,\mathrm{acc}/d\,\mathrm{gap} = \mu`.

    With :math:`\pi_0 a_0' = \mu r_0'` and :math:`\pi_1 a_1' = -\mu r_1'` (KKT),
    :math:`\frac{\pi_0 a_0' t_0' + \pi_1 a_1' t_1'}{r_0' t_0' - r_1' t_1'} = \mu` for any path
    derivatives :math:`t_0', t_1'`: accuracy falls at rate μ per unit of gap removed, and since μ grows
    as the gap shrinks the frontier is concave.
    """
    mu, r0, r1, dt0, dt1 = sp.symbols("mu r0p r1p dt0 dt1", real=True)
    pi0, pi1 = sp.symbols("pi0 pi1", positive=True)
    a0 = mu * r0 / pi0
    a1 = -mu * r1 / pi1
    slope = sp.simplify((pi0 * a0 * dt0 + pi1 * a1 * dt1) / (r0 * dt0 - r1 * dt1))
    return Check("frontier slope", "d acc / d gap = μ", slope, mu, _same(slope, mu))


def check_rate_slope() -> Check:
    r"""The achievable gap :math:`\sigma\sqrt{2\log(2/\eta)/T}` has log–log slope −1/2 in T."""
    gap = sigma * sp.sqrt(2 * sp.log(2 / eta) / T)
    logT = sp.symbols("logT", real=True)
    slope = sp.simplify(sp.diff(sp.log(gap.subs(T, sp.exp(logT))), logT))
    return Check("rate slope", "d log δ / d log T = −1/2", slope, sp.Rational(-1, 2), _same(slope, sp.Rational(-1, 2)))


def all_checks() -> list[Check]:
    """Run every derivation (a few seconds)."""
    return [check_gaussian_kl(), check_lower_bound_solution(), check_upper_bound_solution(), check_bound_ratio(),
            check_bernoulli_kl(), check_bernoulli_variance(), check_hoeffding_bernoulli(),
            check_gradient_oracle_reduction(), check_frontier_ratio(), check_frontier_stationarity(),
            check_frontier_slope(), check_rate_slope()]
