"""Schedulers by name, so notebooks and sweeps can pick one with a string."""

from __future__ import annotations

from .._validation import _suggest
from ._atats import BanditPolicy, PIDPolicy, RulePolicy
from ._schedulers import (
    CausalScheduler,
    DualAscent,
    DynamicLambda,
    FairBatch,
    OracleScheduler,
    PeriodicFairness,
    Scheduler,
    StaticLambda,
)

__all__ = ["SCHEDULERS", "make_scheduler"]

SCHEDULERS: dict[str, type[Scheduler]] = {
    "static": StaticLambda,
    "periodic": PeriodicFairness,
    "dynamic": DynamicLambda,
    "causal": CausalScheduler,
    "oracle": OracleScheduler,
    "rule": RulePolicy,
    "pid": PIDPolicy,
    "bandit": BanditPolicy,
    "fairbatch": FairBatch,
    "dual": DualAscent,
}


def make_scheduler(name: str, **kwargs) -> Scheduler:
    """A scheduler by name with keyword arguments.

    >>> make_scheduler("dynamic", rho_fair=2.0).rho_fair
    2.0
    >>> make_scheduler("dynamc")
    Traceback (most recent call last):
    ...
    ValueError: unknown scheduler 'dynamc'; allowed: ['bandit', 'causal', 'dual', 'dynamic', 'fairbatch', 'oracle', 'periodic', 'pid', 'rule', 'static']. Did you mean 'dynamic'?
    """
    if not isinstance(name, str) or name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; allowed: {sorted(SCHEDULERS)}.{_suggest(str(name), SCHEDULERS)}")
    return SCHEDULERS[name](**kwargs)
