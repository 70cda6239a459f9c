"""Summaries over seeds: mean ± standard deviation tables, paired t-tests, Pareto fronts."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["mean_std", "format_mean_std", "paired_ttest", "paired_effect", "best_baseline", "pareto_front", "mean_ci", "anova"]


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


def best_baseline(df: pd.DataFrame, *, methods: Sequence[str], score: str = "val_score", by: Sequence[str] = (),
                  method_col: str = "method") -> pd.DataFrame:
    """The method among ``methods`` with the highest mean ``score`` (a validation score) per ``by`` group.

    Returns one row per group with columns ``by`` + ``[method_col, score]``. Choosing on validation
    keeps the test comparison honest. Runs without a score (NaN: e.g. a run whose budget held no
    epoch, so it was never validated) do not count; a group where no baseline has a score is left
    out, and if that is every group a ``ValueError`` says so.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"method": ["a", "a", "b", "b"], "val_score": [0.5, 0.7, 0.8, 0.6]})
    >>> best_baseline(df, methods=["a", "b"]).values.tolist()
    [['b', 0.7]]
    """
    by = list(by)
    sub = df[df[method_col].isin(methods)]
    if sub.empty:
        raise ValueError(f"none of the baseline methods {list(methods)} is in the results")
    means = sub.groupby(by + [method_col], sort=False)[score].mean().reset_index().dropna(subset=[score])
    if means.empty:
        raise ValueError(f"no baseline among {list(methods)} has a {score!r}: every run of them is NaN there "
                         "(a run whose budget held no epoch has no validation score)")
    if not by:
        return means.loc[[means[score].idxmax()]].reset_index(drop=True)
    idx = means.groupby(by, sort=False)[score].idxmax()
    return means.loc[idx].reset_index(drop=True)


def paired_ttest(df: pd.DataFrame, *, metric: str, baseline: str, methods: Sequence[str] | None = None,
                 pair_on: str = "seed", method_col: str = "method") -> pd.DataFrame:
    """Paired t-test (scipy ``ttest_rel``) of each method against ``baseline`` on ``metric``, paired by seed.

    Returns, per method: the mean of the baseline and of the method, the mean difference
    (method − baseline), its relative change, the t statistic, the two-sided p-value and the number
    of pairs. Seeds missing for either side are dropped; fewer than 2 pairs or constant
    differences give a NaN p-value.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"method": ["b"] * 3 + ["m"] * 3, "seed": [0, 1, 2] * 2, "gap": [0.2, 0.3, 0.25, 0.1, 0.22, 0.14]})
    >>> row = paired_ttest(df, metric="gap", baseline="b").iloc[0]
    >>> row["method"], round(float(row["diff"]), 3), round(float(row["p_value"]), 4)
    ('m', -0.097, 0.0082)
    """
    from scipy import stats as st

    for c in (metric, pair_on, method_col):
        if c not in df.columns:
            raise ValueError(f"column {c!r} is not in the results; available: {list(df.columns)}")
    if baseline not in set(df[method_col]):
        raise ValueError(f"baseline {baseline!r} is not among the methods {sorted(set(df[method_col]))}")
    base = df[df[method_col] == baseline].set_index(pair_on)[metric]
    rows = []
    for m in methods if methods is not None else [m for m in dict.fromkeys(df[method_col]) if m != baseline]:
        cur = df[df[method_col] == m].set_index(pair_on)[metric]
        pairs = pd.concat([base, cur], axis=1, keys=["b", "m"]).dropna()
        d = pairs["m"] - pairs["b"]
        p = t = float("nan")
        if len(pairs) >= 2 and float(d.std(ddof=1)) > 0:
            res = st.ttest_rel(pairs["m"], pairs["b"])
            t, p = float(res.statistic), float(res.pvalue)
        mb = float(pairs["b"].mean()) if len(pairs) else float("nan")
        rows.append({"method": m, "baseline": baseline, "metric": metric, "baseline_mean": mb,
                     "method_mean": float(pairs["m"].mean()) if len(pairs) else float("nan"),
                     "diff": float(d.mean()) if len(pairs) else float("nan"),
                     "rel_change": float(d.mean() / mb) if len(pairs) and mb else float("nan"),
                     "t": t, "p_value": p, "n": len(pairs)})
    return pd.DataFrame(rows)


def pareto_front(df: pd.DataFrame, *, x: str, y: str, minimize: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of ``df`` not dominated in (``x``, ``y``); a column listed in ``minimize`` is better lower.

    Sorted by ``x``. A row is dominated when another is at least as good in both and better in one.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"time": [1, 2, 3, 2], "gap": [0.3, 0.2, 0.25, 0.1]})
    >>> pareto_front(df, x="time", y="gap", minimize=["time", "gap"])[["time", "gap"]].values.tolist()
    [[1.0, 0.3], [2.0, 0.1]]
    """
    for c in (x, y):
        if c not in df.columns:
            raise ValueError(f"column {c!r} is not in the frame; available: {list(df.columns)}")
    sx = 1.0 if x in minimize else -1.0
    sy = 1.0 if y in minimize else -1.0
    vals = np.stack([sx * df[x].to_numpy(float), sy * df[y].to_numpy(float)], 1)
    keep = []
    for i, v in enumerate(vals):
        if not np.isfinite(v).all():
            continue
        dominated = np.any(np.all(vals <= v, axis=1) & np.any(vals < v, axis=1))
        keep.append(not dominated)
    ok = [i for i, v in enumerate(vals) if np.isfinite(v).all()]
    out = df.iloc[[i for i, k in zip(ok, keep) if k]]
    return out.sort_values(x).astype({x: float, y: float})


def mean_ci(df: pd.DataFrame, *, by: str | Sequence[str], metrics: Sequence[str], confidence: float = 0.95) -> pd.DataFrame:
    """Mean, standard deviation, count and a Student-t confidence interval of each metric per group.

    Columns ``<metric>_mean``, ``<metric>_std``, ``<metric>_lo``, ``<metric>_hi`` and ``n``: the
    interval is ``mean ± t_{(1+confidence)/2, n−1} · std / √n`` over the rows of the group (seeds);
    NaN for a single row. NaN values of a metric are left out of its statistics.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"c": ["a"] * 3, "gap": [0.1, 0.2, 0.3]})
    >>> mean_ci(df, by="c", metrics=["gap"]).round(3).values.tolist()
    [['a', 0.2, 0.1, -0.048, 0.448, 3]]
    """
    from scipy import stats as st

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    s = mean_std(df, by=by, metrics=metrics)
    by = [by] if isinstance(by, str) else list(by)
    counts = df.groupby(by, sort=False)[list(metrics)].count().reset_index()
    out = s[by].copy()
    for m in metrics:
        n = counts[m].to_numpy(float)
        mu, sd = s[f"{m}_mean"].to_numpy(float), s[f"{m}_std"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            half = np.where(n > 1, st.t.ppf((1 + confidence) / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(n), np.nan)
        out[f"{m}_mean"], out[f"{m}_std"], out[f"{m}_lo"], out[f"{m}_hi"] = mu, sd, mu - half, mu + half
    out["n"] = s["n"]
    return out


def anova(df: pd.DataFrame, *, metric: str, factors: Sequence[str], interactions: int = 2, typ: int = 2) -> pd.DataFrame:
    """Which factors move ``metric``, and do they interact: an OLS fit with categorical factors and ANOVA.

    Fits ``metric ~ C(f1) + C(f2) + … + C(f1):C(f2) + …`` (interaction terms up to order
    ``interactions``; 1 = main effects only) with statsmodels and returns its type-``typ`` ANOVA
    table: per term the sum of squares, degrees of freedom, F, the p-value and ``eta_sq`` (the
    term's share of the total sum of squares). Rows with a NaN metric are dropped; a factor with a
    single level is dropped (it cannot explain anything). The residual row is ``Residual``.

    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"a": np.repeat(["x", "y"], 20), "b": np.tile(["u", "v"], 20)})
    >>> df["m"] = (df["a"] == "y") * 1.0 + rng.normal(0, 0.1, 40)
    >>> t = anova(df, metric="m", factors=["a", "b"])
    >>> bool(t.loc["C(a)", "p_value"] < 1e-10), bool(t.loc["C(b)", "p_value"] > 0.05)
    (True, True)
    """
    import itertools
    import re

    import statsmodels.api as sm
    from statsmodels.formula.api import ols

    missing = [c for c in [metric, *factors] if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the results; available: {list(df.columns)}")
    if not factors:
        raise ValueError("anova needs at least one factor")
    d = df[[metric, *factors]].dropna(subset=[metric]).copy()
    d[metric] = d[metric].astype(float)
    used = [f for f in factors if d[f].astype(str).nunique() > 1]
    if not used:
        raise ValueError(f"every factor of {list(factors)} has a single level in these results; nothing to test")
    names = {f: f"f{i}" for i, f in enumerate(used)}
    d = d.rename(columns={metric: "y", **names})
    for f in names.values():
        d[f] = d[f].astype(str)
    terms = [f"C({names[f]})" for f in used]
    for k in range(2, max(1, int(interactions)) + 1):
        terms += [":".join(f"C({names[f]})" for f in combo) for combo in itertools.combinations(used, k)]
    model = ols("y ~ " + " + ".join(terms), data=d).fit()
    table = sm.stats.anova_lm(model, typ=typ)
    back = {v: k for k, v in names.items()}
    table.index = [re.sub(r"f\d+", lambda m: back[m.group(0)], i) for i in table.index]
    table = table.rename(columns={"PR(>F)": "p_value", "sum_sq": "sum_sq", "df": "df", "F": "F"})
    table["eta_sq"] = table["sum_sq"] / table["sum_sq"].sum()
    return table


def paired_effect(base: pd.Series, cur: pd.Series) -> dict:
    """``cur − base`` paired on the index (the seed): mean, sample std, Student-t 95% interval, the
    paired t-test's p-value (NaN with fewer than 2 pairs or constant differences) and the pairs.

    >>> e = paired_effect(pd.Series([0.2, 0.3, 0.25], index=[0, 1, 2]), pd.Series([0.1, 0.22, 0.14], index=[0, 1, 2]))
    >>> round(e["diff"], 3), e["n"], round(e["p_value"], 4)
    (-0.097, 3, 0.0082)
    """
    from scipy import stats as st

    pairs = pd.concat([base, cur], axis=1, keys=["b", "c"]).dropna()
    n = len(pairs)
    if n == 0:
        return {"diff": float("nan"), "std": float("nan"), "lo": float("nan"), "hi": float("nan"), "p_value": float("nan"), "n": 0}
    d = (pairs["c"] - pairs["b"]).to_numpy(float)
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    p = float(st.ttest_rel(pairs["c"], pairs["b"]).pvalue) if n > 1 and sd > 0 else float("nan")
    half = float(st.t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
    return {"diff": float(d.mean()), "std": sd, "lo": float(d.mean()) - half, "hi": float(d.mean()) + half, "p_value": p, "n": n}
