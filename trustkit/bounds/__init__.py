"""Compute–trust bounds: sample / step lower and upper bounds, admissible regions, a closed-form frontier.

Statements, assumptions and proofs are in ``theory/``; :mod:`._symbolic` re-derives every
algebraic step with sympy (the tests run it).

>>> from trustkit.bounds import lower_bound_steps, upper_bound_steps
>>> lower_bound_steps(0.1, 0.01, 0.5) < upper_bound_steps(0.1, 0.01, 0.5)
True
"""

from ._numeric import (
    KL_GAUSSIAN_FACTOR,
    achievable_gap,
    admissible_region,
    bernoulli_sigma,
    frontier_thresholds,
    gaussian_frontier,
    lower_bound_steps,
    min_certifiable_gap,
    upper_bound_steps,
)

__all__ = ["lower_bound_steps", "upper_bound_steps", "admissible_region", "min_certifiable_gap", "achievable_gap",
           "bernoulli_sigma", "gaussian_frontier", "frontier_thresholds", "KL_GAUSSIAN_FACTOR"]
