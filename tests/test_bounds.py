"""trustkit.bounds: the sympy derivations, the numeric bounds against closed forms and simulation, errors."""

import math

import numpy as np
import pytest
import sympy as sp

from trustkit.bounds import _symbolic as sym
from trustkit.bounds import (
    achievable_gap,
    admissible_region,
    bernoulli_sigma,
    frontier_thresholds,
    gaussian_frontier,
    lower_bound_steps,
    min_certifiable_gap,
    upper_bound_steps,
)


@pytest.mark.parametrize("check", [getattr(sym, n) for n in sym.__all__ if n.startswith("check_")],
                         ids=lambda f: f.__name__)
def test_every_sympy_derivation_holds(check):
    c = check()
    assert c.ok, f"{c.name}: derived {c.derived}, stated {c.stated}"
    assert c.latex()


def test_the_checks_can_fail():
    assert not sym.check_frontier_stationarity(sign=-1).ok
    assert not sym._same(2 * sym.delta**2 / sym.sigma**2, sym.delta**2 / sym.sigma**2)


def test_numeric_bounds_equal_the_symbolic_solutions():
    d, e, s = 0.07, 0.02, 0.6
    lo = sp.sympify(sym.check_lower_bound_solution().stated).subs({sym.delta: d, sym.eta: e, sym.sigma: s})
    hi = sp.sympify(sym.check_upper_bound_solution().stated).subs({sym.delta: d, sym.eta: e, sym.sigma: s})
    assert lower_bound_steps(d, e, s) == pytest.approx(float(lo))
    assert upper_bound_steps(d, e, s) == pytest.approx(float(hi))
    assert min_certifiable_gap(lower_bound_steps(d, e, s), e, s) == pytest.approx(d)
    assert achievable_gap(upper_bound_steps(d, e, s), e, s) == pytest.approx(d)


def test_upper_bound_is_what_the_sample_mean_needs_in_simulation():
    """At n = upper bound the sample mean of N(0, σ²) noise misses by δ with frequency below η."""
    rng = np.random.default_rng(0)
    d, e, s = 0.1, 0.05, 0.5
    n = math.ceil(upper_bound_steps(d, e, s))
    means = rng.normal(0, s, size=(4000, n)).mean(1)
    assert (np.abs(means) >= d).mean() <= e
    # and far below the lower bound no estimator (here the mean) can keep the error under δ
    n_small = max(1, int(lower_bound_steps(d, e, s) / 8))
    means = rng.normal(0, s, size=(4000, n_small)).mean(1)
    assert (np.abs(means) >= d).mean() > e


def test_bounds_scale_as_stated():
    assert lower_bound_steps(0.05, 0.01, 1.0) == pytest.approx(4 * lower_bound_steps(0.1, 0.01, 1.0))
    assert upper_bound_steps(0.1, 0.01, 2.0) == pytest.approx(4 * upper_bound_steps(0.1, 0.01, 1.0))
    assert lower_bound_steps(0.1, 0.001, 1.0) > lower_bound_steps(0.1, 0.01, 1.0)
    region = admissible_region(500, 0.5)
    assert (region.delta_min < region.delta_achievable).all()
    assert bernoulli_sigma(0.3) == 0.5


@pytest.mark.parametrize("call, kind, pattern", [
    (lambda: lower_bound_steps(0.0, 0.1, 1.0), ValueError, r"delta must lie in \(0, 1\)"),
    (lambda: lower_bound_steps(1.2, 0.1, 1.0), ValueError, "delta"),
    (lambda: lower_bound_steps(0.1, 0.25, 1.0), ValueError, r"eta must lie in \(0, 0.25\)"),
    (lambda: upper_bound_steps(0.1, 1.0, 1.0), ValueError, r"eta must lie in \(0, 1\)"),
    (lambda: upper_bound_steps(0.1, 0.1, 0.0), ValueError, "sigma must be > 0"),
    (lambda: upper_bound_steps(0.1, 0.1, "1"), TypeError, "sigma must be a number"),
    (lambda: achievable_gap(0, 0.1, 1.0), ValueError, "T must be > 0"),
    (lambda: gaussian_frontier(q0=0.2, q1=0.5), ValueError, "q0 > q1"),
    (lambda: frontier_thresholds(0.6, pi0=0.5, q0=0.6, q1=0.3, m=1.0), ValueError, "mu must lie in"),
])
def test_bad_inputs_are_named(call, kind, pattern):
    with pytest.raises(kind, match=pattern):
        call()


def test_gaussian_frontier_against_brute_force():
    """Every frontier point is the best accuracy among all threshold pairs with at most its gap."""
    from scipy.special import ndtr

    pi0, q0, q1, m = 0.4, 0.7, 0.35, 0.8
    f = gaussian_frontier(pi0=pi0, q0=q0, q1=q1, m=m, n=60)
    grid = np.linspace(-4, 4, 1601)
    t0, t1 = np.meshgrid(grid, grid, indexing="ij")
    r0 = q0 * ndtr(m - t0) + (1 - q0) * ndtr(-m - t0)
    r1 = q1 * ndtr(m - t1) + (1 - q1) * ndtr(-m - t1)
    acc = pi0 * (q0 * ndtr(m - t0) + (1 - q0) * ndtr(t0 + m)) + (1 - pi0) * (q1 * ndtr(m - t1) + (1 - q1) * ndtr(t1 + m))
    gap = np.abs(r0 - r1)
    for _, row in f.iloc[::6].iterrows():
        best = acc[gap <= row.dp_gap + 1e-12].max()
        assert best <= row.accuracy + 1e-9          # nothing on the grid beats the closed form
        assert row.accuracy - best < 2e-4           # and the grid comes within its resolution
    # concave: the slope (= μ) grows as the gap shrinks
    slopes = np.diff(f.accuracy) / np.diff(f.dp_gap)
    assert np.all(np.diff(slopes) >= -1e-6)
    assert np.allclose(slopes, f.mu.to_numpy()[1:], atol=0.02)
