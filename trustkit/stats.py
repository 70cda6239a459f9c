"""Statistics behind every number and sentence trustkit reports: the one module that computes p-values.

* Summaries over seeds: :func:`mean_std`, :func:`format_mean_std`, :func:`mean_ci`.
* Paired comparisons (same seed = same split and initialisation): :func:`paired_effect`,
  :func:`paired_ttest`, and the equivalence test :func:`equivalence_test` (two one-sided tests,
  TOST) that a "no difference" needs.
* Multiplicity: :func:`adjust_pvalues` and :func:`correct` (Benjamini–Hochberg false-discovery
  control for a family of tests, Holm for a few pre-declared claims, through statsmodels'
  ``multipletests``); :func:`family_text` names the family in words.
* Verdicts: :func:`change_verdict` (changed / equivalent / inconclusive) and
  :func:`claim_verdict` (supported / contradicted / inconclusive); :func:`seeds_needed` says how
  many seeds an inconclusive comparison would need at 80% power.
* Designs: :func:`anova` (with seed as a block factor, η² and partial η²), :func:`friedman_nemenyi`
  (ranking methods over datasets or settings, Demšar 2006), :func:`pareto_front`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["mean_std", "format_mean_std", "paired_ttest", "paired_effect", "best_baseline", "pareto_front", "mean_ci", "anova",
           "adjust_pvalues", "correct", "family_text", "equivalence_test", "noninferiority_test", "paired_power", "difference_effect", "difference_tost", "seeds_needed", "change_verdict", "claim_verdict",
           "friedman_nemenyi", "CORRECTIONS", "EQUIVALENCE_MARGINS", "VERDICTS"]

#: correction name -> (statsmodels ``multipletests`` method, what the text calls it)
CORRECTIONS = {"bh": ("fdr_bh", "Benjamini–Hochberg"), "holm": ("holm", "Holm"), "none": (None, "no correction")}
#: the smallest change of each metric worth telling apart from zero: the margin an equivalence test
#: ("no difference") uses, and the effect :func:`seeds_needed` plans for
EQUIVALENCE_MARGINS = {"accuracy": 0.01, "error": 0.01, "balanced_accuracy": 0.01, "eo_gap": 0.02, "eo_gap_mean": 0.02,
                       "dp_gap": 0.02, "robust_accuracy": 0.02, "robust_acc": 0.02, "standard_acc": 0.01, "ece": 0.01}
#: the three answers a question or claim can get
VERDICTS = ("supported", "contradicted", "inconclusive")


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


def anova(df: pd.DataFrame, *, metric: str, factors: Sequence[str], interactions: int = 2, typ: int = 2,
          block: str | None = None) -> pd.DataFrame:
    """Which factors move ``metric``, and do they interact: an OLS fit with categorical factors and ANOVA.

    Fits ``metric ~ C(f1) + C(f2) + … + C(f1):C(f2) + …`` (interaction terms up to order
    ``interactions``; 1 = main effects only) with statsmodels and returns its type-``typ`` ANOVA
    table: per term the sum of squares, degrees of freedom, F and the p-value, and two effect sizes:

    * ``eta_sq``, the term's share of the **total** sum of squares, ``SS_term / Σ (y − ȳ)²``
      (in an unbalanced design the type-2 sums of squares do not add up to the total, so these
      shares need not sum to 1);
    * ``partial_eta_sq``, ``SS_term / (SS_term + SS_residual)``.

    ``block`` names a blocking factor (the seed: runs with the same seed share a split and an
    initialisation), entered as a main effect ``C(block)`` without interactions, so the paired
    structure of the runs is not left in the residual. Rows with a NaN metric are dropped; a factor
    with a single level is dropped (it cannot explain anything). The residual row is ``Residual``.

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

    cols = [metric, *factors] + ([block] if block else [])
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the results; available: {list(df.columns)}")
    if not factors:
        raise ValueError("anova needs at least one factor")
    if block is not None and block in factors:
        raise ValueError(f"block {block!r} is also listed in factors; a block enters once, without interactions")
    d = df[cols].dropna(subset=[metric]).copy()
    d[metric] = d[metric].astype(float)
    used = [f for f in factors if d[f].astype(str).nunique() > 1]
    if not used:
        raise ValueError(f"every factor of {list(factors)} has a single level in these results; nothing to test")
    names = {f: f"f{i}" for i, f in enumerate(used)}
    if block is not None and d[block].astype(str).nunique() > 1:
        names[block] = "blk"
    d = d.rename(columns={metric: "y", **names})
    for f in names.values():
        d[f] = d[f].astype(str)
    terms = [f"C({names[f]})" for f in used]
    for k in range(2, max(1, int(interactions)) + 1):
        terms += [":".join(f"C({names[f]})" for f in combo) for combo in itertools.combinations(used, k)]
    if "blk" in names.values():
        terms.append("C(blk)")
    model = ols("y ~ " + " + ".join(terms), data=d).fit()
    table = sm.stats.anova_lm(model, typ=typ)
    back = {v: k for k, v in names.items()}
    table.index = [re.sub(r"f\d+|blk", lambda m: back[m.group(0)], i) for i in table.index]
    table = table.rename(columns={"PR(>F)": "p_value", "sum_sq": "sum_sq", "df": "df", "F": "F"})
    total = float(((d["y"] - d["y"].mean()) ** 2).sum())
    resid = float(table.loc["Residual", "sum_sq"])
    table["eta_sq"] = table["sum_sq"] / total if total > 0 else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        table["partial_eta_sq"] = table["sum_sq"] / (table["sum_sq"] + resid)
    table.loc["Residual", "partial_eta_sq"] = np.nan
    return table


def _aligned(base: pd.Series, cur: pd.Series) -> np.ndarray:
    """``cur − base`` over the index values both have (NaN on either side dropped)."""
    pairs = pd.concat([base, cur], axis=1, keys=["b", "c"]).dropna()
    return (pairs["c"] - pairs["b"]).to_numpy(float)


def difference_effect(d, *, confidence: float = 0.95, alternative: str = "two-sided") -> dict:
    """The paired effect from the per-seed differences ``d`` (``cur − base``): what
    :func:`paired_effect` returns, for callers that have already paired the runs.

    The p-value is the paired (one-sample on ``d``) Student-t test's: ``t = mean / (sd/√n)``
    with ``n − 1`` degrees of freedom, two-sided or one-sided by ``alternative``.

    >>> e = difference_effect([-0.1, -0.08, -0.11])
    >>> round(e["diff"], 3), e["n"], round(e["p_value"], 4)
    (-0.097, 3, 0.0082)
    """
    from scipy import stats as st

    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater'; got {alternative!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    d = np.asarray(d, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    nan = float("nan")
    if n == 0:
        return {"diff": nan, "std": nan, "lo": nan, "hi": nan, "p_value": nan, "n": 0, "constant": False}
    mean = float(d.mean())
    if n == 1:
        return {"diff": mean, "std": nan, "lo": nan, "hi": nan, "p_value": nan, "n": 1, "constant": False}
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # every pair moved by the same amount (up to rounding)
        return {"diff": mean, "std": 0.0, "lo": mean, "hi": mean, "p_value": nan, "n": n, "constant": True}
    se = sd / np.sqrt(n)
    t = mean / se
    if alternative == "two-sided":
        p = float(2 * st.t.sf(abs(t), n - 1))
    elif alternative == "less":
        p = float(st.t.cdf(t, n - 1))
    else:
        p = float(st.t.sf(t, n - 1))
    half = float(st.t.ppf((1 + confidence) / 2, n - 1) * se)
    return {"diff": mean, "std": sd, "lo": mean - half, "hi": mean + half, "p_value": p, "n": n, "constant": False}


def difference_tost(d, *, margin: float, alpha: float = 0.05) -> dict:
    """Two one-sided tests that the mean of the per-seed differences ``d`` lies within ±``margin``:
    what :func:`equivalence_test` returns, from differences already paired."""
    from scipy import stats as st

    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not np.isfinite(margin) or margin <= 0:
        raise ValueError(f"margin must be a positive number; got {margin!r}")
    d = np.asarray(d, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    nan = float("nan")
    if n < 2:
        return {"p_value": nan, "lo": nan, "hi": nan, "n": n, "margin": float(margin)}
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return {"p_value": 0.0 if abs(mean) < margin else 1.0, "lo": mean, "hi": mean, "n": n, "margin": float(margin)}
    se = sd / np.sqrt(n)
    p_low = st.t.sf((mean + margin) / se, n - 1)  # H0: mean <= -margin
    p_high = st.t.cdf((mean - margin) / se, n - 1)  # H0: mean >= +margin
    half = float(st.t.ppf(1 - alpha, n - 1) * se)
    return {"p_value": float(max(p_low, p_high)), "lo": mean - half, "hi": mean + half, "n": n, "margin": float(margin)}


def paired_effect(base: pd.Series, cur: pd.Series, *, confidence: float = 0.95, alternative: str = "two-sided") -> dict:
    """``cur − base`` paired on the index (the seed): mean, sample std, Student-t interval, the
    paired t-test's p-value and the number of pairs.

    ``alternative``: ``"two-sided"`` (default), ``"less"`` (the claim is that ``cur`` is lower) or
    ``"greater"``; the interval is two-sided at ``confidence`` either way.

    The p-value is NaN with fewer than 2 pairs, and when every pair has the same difference (no
    spread: a t-test is not defined; ``constant`` is then True and the interval is that single
    value, which no reader should take for certainty).

    >>> e = paired_effect(pd.Series([0.2, 0.3, 0.25], index=[0, 1, 2]), pd.Series([0.1, 0.22, 0.14], index=[0, 1, 2]))
    >>> round(e["diff"], 3), e["n"], round(e["p_value"], 4)
    (-0.097, 3, 0.0082)
    """
    return difference_effect(_aligned(base, cur), confidence=confidence, alternative=alternative)


# ----------------------------------------------------------------------------------------------
# Families of tests, equivalence, verdicts


def _correction(method: str) -> tuple:
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {list(CORRECTIONS)}; got {method!r}")
    return CORRECTIONS[method]


def adjust_pvalues(p_values, *, method: str = "bh") -> np.ndarray:
    """Adjusted p-values (q-values for Benjamini–Hochberg) of one family of tests.

    ``method``: ``"bh"`` (Benjamini–Hochberg false-discovery rate), ``"holm"`` (Holm's family-wise
    error rate) or ``"none"``. NaN p-values (tests that could not be run) stay NaN and are not
    counted in the family. A test is significant at level α when its adjusted value is below α.

    >>> adjust_pvalues([0.01, 0.04, 0.03, float("nan")]).round(3).tolist()
    [0.03, 0.04, 0.04, nan]
    >>> adjust_pvalues([0.01, 0.04, 0.03], method="holm").round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    sm_method, _ = _correction(method)
    p = np.asarray(p_values, dtype=float).copy()
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional; got shape {p.shape}")
    ok = np.isfinite(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError("p_values must lie in [0, 1]")
    if sm_method is None or not ok.any():
        return p
    from statsmodels.stats.multitest import multipletests

    p[ok] = multipletests(p[ok], method=sm_method)[1]
    return p


def family_text(method: str, n: int, what: str, *, alpha: float = 0.05) -> str:
    """The family in words, as every corrected sentence names it.

    >>> family_text("bh", 276, "changes of the EO gap")
    'Benjamini–Hochberg over 276 tests of changes of the EO gap, q < 0.05'
    >>> family_text("none", 3, "claims")
    'no correction over 3 tests of claims, p < 0.05'
    """
    _, name = _correction(method)
    sym = "p" if method == "none" else ("q" if method == "bh" else "adjusted p")
    return f"{name} over {int(n)} tests of {what}, {sym} < {alpha:g}"


def correct(frame: pd.DataFrame, *, method: str = "bh", alpha: float = 0.05, p_col: str = "p_value",
            what: str = "comparisons", out: str = "q_value") -> pd.DataFrame:
    """``frame`` with the adjusted p-values of its rows as one family (column ``out``) and
    ``significant`` (adjusted value below ``alpha``); ``frame.attrs["family"]`` names the family.

    >>> df = correct(pd.DataFrame({"p_value": [0.001, 0.2, 0.04]}), what="planted effects")
    >>> df["significant"].tolist(), df.attrs["family"]
    ([True, False, False], 'Benjamini–Hochberg over 3 tests of planted effects, q < 0.05')
    """
    if p_col not in frame.columns:
        raise ValueError(f"column {p_col!r} is not in the frame; available: {list(frame.columns)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    f = frame.copy()
    f[out] = adjust_pvalues(f[p_col].to_numpy(float), method=method)
    f["significant"] = (f[out] < alpha).fillna(False).astype(bool)
    f.attrs["family"] = family_text(method, int(np.isfinite(f[p_col].to_numpy(float)).sum()), what, alpha=alpha)
    f.attrs["correction"] = method
    return f


def equivalence_test(base: pd.Series, cur: pd.Series, *, margin: float, alpha: float = 0.05) -> dict:
    """Two one-sided paired t-tests (TOST): is ``cur − base`` within ±``margin``?

    Returns the TOST p-value (the larger of the two one-sided p-values; below ``alpha`` means the
    change lies within the margin at level α), the ``1 − 2α`` interval of the mean difference
    that the test corresponds to, and the number of pairs. NaN p-value with fewer than 2 pairs;
    when every pair has the same difference the answer is exact (0 inside the margin, 1 outside).
    The tests check it against statsmodels' ``ttost_paired``.

    >>> b = pd.Series([0.20, 0.25, 0.22, 0.30, 0.27])
    >>> round(equivalence_test(b, b + [0.002, -0.001, 0.001, 0.0, -0.002], margin=0.01)["p_value"], 6) < 0.05
    True
    >>> equivalence_test(b, b + [0.05, 0.03, 0.04, 0.06, 0.05], margin=0.01)["p_value"] > 0.05
    True
    """
    return difference_tost(_aligned(base, cur), margin=margin, alpha=alpha)


def noninferiority_test(base: pd.Series, cur: pd.Series, *, margin: float, confidence: float = 0.95) -> dict:
    """One-sided paired t-test that ``cur − base`` stays below ``margin`` ("no worse than ``base`` by
    more than ``margin``", for a metric where higher is worse, such as error): ``p_value`` small
    means the mean difference is below the margin. Also returns the mean difference, the
    two-sided ``confidence`` interval and the number of pairs; NaN p-value with fewer than 2 pairs.
    With no spread the answer is exact (0 below the margin, 1 otherwise).

    >>> b = pd.Series([0.30, 0.32, 0.31, 0.33, 0.29])
    >>> noninferiority_test(b, b + [0.004, 0.0, 0.006, 0.002, 0.003], margin=0.02)["p_value"] < 0.05
    True
    """
    from scipy import stats as st

    pairs = pd.concat([base, cur], axis=1, keys=["b", "c"]).dropna()
    n = len(pairs)
    e = paired_effect(pairs["b"], pairs["c"], confidence=confidence)
    if n < 2:
        return {**e, "p_value": float("nan"), "margin": float(margin)}
    d = (pairs["c"] - pairs["b"]).to_numpy(float)
    if float(d.std(ddof=1)) == 0:
        return {**e, "p_value": 0.0 if d.mean() < margin else 1.0, "margin": float(margin)}
    p = float(st.ttest_1samp(d - margin, 0.0, alternative="less").pvalue)
    return {**e, "p_value": p, "margin": float(margin)}


def seeds_needed(std: float, effect: float, *, power: float = 0.8, alpha: float = 0.05, max_seeds: int = 10_000) -> int | None:
    """Seeds (pairs) a paired t-test needs to detect a mean change of ``effect`` with probability
    ``power`` at two-sided level ``alpha``, given the per-seed spread ``std`` of the differences: the
    smallest ``n >= 2`` whose :func:`paired_power` reaches ``power`` (a bisection on the exact
    noncentral-t power, which statsmodels' ``TTestPower`` computes alike; its root finder fails
    silently for large effects). ``None`` when ``std`` or ``effect`` is not a positive number;
    capped at ``max_seeds``.

    >>> seeds_needed(0.03, 0.02)
    20
    >>> seeds_needed(0.001, 0.5)
    2
    """
    if not (np.isfinite(std) and np.isfinite(effect)) or std <= 0 or effect == 0:
        return None
    if paired_power(effect, std, 2, alpha=alpha) >= power:
        return 2
    if paired_power(effect, std, max_seeds, alpha=alpha) < power:
        return max_seeds
    lo, hi = 2, max_seeds  # power(lo) < power <= power(hi); the power grows with n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if paired_power(effect, std, mid, alpha=alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def paired_power(effect: float, std: float, n: int, *, alpha: float = 0.05) -> float:
    """The probability that a two-sided paired t-test at level ``alpha`` detects a true mean change
    ``effect`` with ``n`` pairs whose differences have standard deviation ``std``: the statistic
    follows a noncentral t with ``n − 1`` degrees of freedom and noncentrality ``effect/std·√n``
    (scipy ``nct``; the tests check it against statsmodels' ``TTestPower``). Used to state the
    power a planted effect is recovered with.

    >>> round(paired_power(0.02, 0.03, 20), 2)
    0.81
    """
    from scipy import stats as st

    if n < 2 or not (np.isfinite(std) and std > 0):
        return float("nan")
    crit = st.t.ppf(1 - alpha / 2, n - 1)
    nc = abs(effect) / std * np.sqrt(n)
    return float(min(1.0, st.nct.sf(crit, n - 1, nc) + st.nct.cdf(-crit, n - 1, nc)))


def change_verdict(*, significant: bool, equivalent: bool, n: int, min_seeds: int = 3) -> str:
    """The answer to "does X change Y": ``"changed"`` (the corrected test rejects no change),
    ``"no change"`` (the corrected equivalence test puts the change inside its margin),
    ``"inconclusive"`` (neither) or ``"not tested"`` (fewer than ``min_seeds`` seeds).

    >>> change_verdict(significant=False, equivalent=False, n=8)
    'inconclusive'
    """
    if n < min_seeds:
        return "not tested"
    if significant:
        return "changed"
    if equivalent:
        return "no change"
    return "inconclusive"


def claim_verdict(*, lo: float, hi: float, significant: bool, direction: int, n: int, min_seeds: int = 3) -> str:
    """The verdict on a directional claim ("X lowers Y": ``direction=-1``; "raises": ``+1``).

    ``supported``: the corrected test is significant and the effect points the claimed way;
    ``contradicted``: the interval ``[lo, hi]`` excludes every effect in the claimed direction
    (it lies entirely on the other side of zero, zero included); ``inconclusive``: neither — a
    non-significant change in the claimed direction is not a contradiction. ``not tested`` with
    fewer than ``min_seeds`` seeds.

    >>> claim_verdict(lo=-0.05, hi=0.01, significant=False, direction=-1, n=5)
    'inconclusive'
    >>> claim_verdict(lo=0.0, hi=0.04, significant=False, direction=-1, n=5)
    'contradicted'
    """
    if direction not in (-1, 1):
        raise ValueError(f"direction must be -1 (the claim lowers the metric) or +1 (raises it); got {direction!r}")
    if n < min_seeds or not (np.isfinite(lo) and np.isfinite(hi)):
        return "not tested"
    mid = (lo + hi) / 2
    if significant and np.sign(mid) == direction:
        return "supported"
    if (direction < 0 and lo >= 0) or (direction > 0 and hi <= 0):
        return "contradicted"
    return "inconclusive"


def friedman_nemenyi(frame: pd.DataFrame, *, block: str | Sequence[str], method: str, value: str,
                     higher_is_better: bool = True, alpha: float = 0.05) -> dict:
    """Rank methods over blocks (datasets, settings) as Demšar (2006) recommends.

    ``frame`` holds one value per (block, method) — mean over seeds (more rows per pair are
    averaged). Blocks missing a method are dropped. Within each block the methods are ranked (1 =
    best, ties get their average rank); the Friedman test (scipy ``friedmanchisquare``) asks whether
    the average ranks differ more than chance would make them; the Nemenyi critical difference
    ``CD = q_α √(k(k+1) / (6N))`` (``q_α`` from the studentized range distribution divided by √2)
    is the least difference of average ranks that tells two methods apart.

    Returns ``{"ranks": Series (average rank per method, best first), "statistic", "p_value",
    "cd", "blocks", "methods", "alpha"}``; the p-value is NaN with fewer than 2 blocks or 3 methods
    (the Friedman test needs them).

    >>> df = pd.DataFrame({"b": ["x"] * 3 + ["y"] * 3 + ["z"] * 3, "m": ["A", "B", "C"] * 3,
    ...                    "v": [0.9, 0.8, 0.7, 0.85, 0.8, 0.6, 0.95, 0.7, 0.72]})
    >>> r = friedman_nemenyi(df, block="b", method="m", value="v")
    >>> r["ranks"].round(2).to_dict(), round(r["cd"], 3)
    ({'A': 1.0, 'B': 2.33, 'C': 2.67}, 1.914)
    """
    from scipy import stats as st

    by = [block] if isinstance(block, str) else list(block)
    for c in [*by, method, value]:
        if c not in frame.columns:
            raise ValueError(f"column {c!r} is not in the frame; available: {list(frame.columns)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    wide = frame.groupby(by + [method], sort=False)[value].mean().unstack(method).dropna()
    n, k = wide.shape
    if k < 2 or n < 1:
        raise ValueError(f"ranking needs at least 2 methods measured in at least one common block; got {k} methods, {n} blocks")
    ranks = wide.rank(axis=1, ascending=not higher_is_better).mean().sort_values()
    stat = p = float("nan")
    if n >= 2 and k >= 3:
        res = st.friedmanchisquare(*[wide[c].to_numpy(float) for c in wide.columns])
        stat, p = float(res.statistic), float(res.pvalue)
    q = float(st.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))
    cd = q * float(np.sqrt(k * (k + 1) / (6.0 * n)))
    return {"ranks": ranks, "statistic": stat, "p_value": p, "cd": cd, "blocks": int(n), "methods": int(k), "alpha": alpha}
