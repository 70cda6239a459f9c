"""Summaries over seeds: mean ± standard deviation tables."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["mean_std", "format_mean_std"]


def mean_std(df: pd.DataFrame, *, by: str | Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1) and count of each metric per group.

    Columns are ``<metric>_mean``, ``<metric>_std`` and ``n`` (number of seeds).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"d": ["a", "a", "b"], "acc": [0.8, 0.9, 0.7]})
    >>> mean_std(df, by="d", metrics=["acc"]).round(4).values.tolist()
    [['a', 0.85, 0.0707, 2], ['b', 0.7, nan, 1]]
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [m for m in [*by, *metrics] if m not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the results; available: {list(df.columns)}")
    g = df.groupby(by, sort=False)
    out = g[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n"] = g.size()
    return out.reset_index()


def format_mean_std(df: pd.DataFrame, *, by: str | Sequence[str], metrics: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """A display table with one ``mean ± std`` string per metric (std omitted for a single seed).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"d": ["a", "a"], "acc": [0.8, 0.9]})
    >>> format_mean_std(df, by="d", metrics=["acc"]).values.tolist()
    [['a', '0.850 ± 0.071', 2]]
    """
    s = mean_std(df, by=by, metrics=metrics)
    by = [by] if isinstance(by, str) else list(by)
    out = s[by].copy()
    for m in metrics:
        mu, sd = s[f"{m}_mean"], s[f"{m}_std"]
        out[m] = [
            "n/a" if not np.isfinite(a) else (f"{a:.{digits}f}" if not np.isfinite(b) else f"{a:.{digits}f} ± {b:.{digits}f}")
            for a, b in zip(mu, sd)
        ]
    out["n"] = s["n"]
    return out
