import numpy as np
import pandas as pd
import pytest

from trustkit.stats import format_mean_std, mean_std


def test_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"d": np.repeat(["a", "b"], 5), "m": rng.random(10)})
    s = mean_std(df, by="d", metrics=["m"]).set_index("d")
    for g in ("a", "b"):
        v = df.loc[df.d == g, "m"].to_numpy()
        assert s.loc[g, "m_mean"] == pytest.approx(v.mean())
        assert s.loc[g, "m_std"] == pytest.approx(v.std(ddof=1))
        assert s.loc[g, "n"] == 5


def test_format_and_errors():
    df = pd.DataFrame({"d": ["a", "a", "b"], "m": [1.0, 2.0, 3.0]})
    out = format_mean_std(df, by="d", metrics=["m"], digits=2)
    assert out["m"].tolist() == ["1.50 ± 0.71", "3.00"]
    with pytest.raises(ValueError, match=r"columns \['x'\] are not in the results"):
        mean_std(df, by="d", metrics=["x"])


def test_paired_ttest_matches_scipy_and_handles_missing_seeds():
    from scipy.stats import ttest_rel

    from trustkit.stats import paired_ttest

    rng = np.random.default_rng(0)
    base = rng.normal(0.2, 0.03, 5)
    other = base - 0.05 + rng.normal(0, 0.01, 5)
    df = pd.DataFrame({"method": ["b"] * 5 + ["m"] * 5, "seed": list(range(5)) * 2, "gap": np.r_[base, other]})
    row = paired_ttest(df, metric="gap", baseline="b").iloc[0]
    ref = ttest_rel(other, base)
    assert row["p_value"] == pytest.approx(ref.pvalue) and row["t"] == pytest.approx(ref.statistic)
    assert row["diff"] == pytest.approx((other - base).mean()) and row["n"] == 5
    assert row["rel_change"] == pytest.approx((other - base).mean() / base.mean())
    short = df.drop(index=[9])  # seed 4 missing for m: 4 pairs
    assert paired_ttest(short, metric="gap", baseline="b").iloc[0]["n"] == 4
    with pytest.raises(ValueError, match="baseline 'x'"):
        paired_ttest(df, metric="gap", baseline="x")
    with pytest.raises(ValueError, match="column 'acc'"):
        paired_ttest(df, metric="acc", baseline="b")


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    from trustkit.stats import pareto_front

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"t": rng.uniform(0, 1, 60), "acc": rng.uniform(0, 1, 60)})
    front = pareto_front(df, x="t", y="acc", minimize=["t"])
    for i, r in df.iterrows():
        dominated = ((df.t <= r.t) & (df.acc >= r.acc) & ((df.t < r.t) | (df.acc > r.acc))).any()
        assert (i in front.index) == (not dominated)
    assert front["t"].is_monotonic_increasing and front["acc"].is_monotonic_increasing


def test_best_baseline_uses_the_mean_score_per_group():
    from trustkit.stats import best_baseline

    df = pd.DataFrame({"regime": ["low"] * 4 + ["high"] * 4, "method": ["a", "a", "b", "b"] * 2,
                       "val_score": [0.9, 0.1, 0.6, 0.6, 0.2, 0.3, 0.5, 0.4]})
    out = best_baseline(df, methods=["a", "b"], by=["regime"]).set_index("regime")["method"].to_dict()
    assert out == {"low": "b", "high": "b"}
    with pytest.raises(ValueError, match="none of the baseline methods"):
        best_baseline(df, methods=["z"])


def test_best_baseline_ignores_runs_without_a_score():
    from trustkit.stats import best_baseline

    nan = float("nan")
    df = pd.DataFrame({"regime": ["low"] * 4 + ["high"] * 4, "method": ["a", "a", "b", "b"] * 2,
                       "val_score": [nan, nan, 0.2, 0.4, nan, nan, nan, nan]})
    assert best_baseline(df[df.regime == "low"], methods=["a", "b"]).iloc[0]["method"] == "b"
    out = best_baseline(df, methods=["a", "b"], by=["regime"])
    assert out["regime"].tolist() == ["low"] and out["method"].tolist() == ["b"]
    with pytest.raises(ValueError, match="no baseline among .* has a 'val_score'.*held no epoch"):
        best_baseline(df[df.regime == "high"], methods=["a", "b"])


def test_adaptive_tests_skip_a_regime_no_static_run_was_validated_in():
    from trustkit.experiments import tests_against_best_static

    nan = float("nan")
    rows = []
    for regime, ok in (("low", False), ("high", True)):
        for seed in range(3):
            for method, gap in (("erm", 0.3), ("static", 0.2), ("efficienttrust", 0.1)):
                rows.append({"regime": regime, "seed": seed, "method": method, "budget_s": 0.05 if regime == "low" else None,
                             "val_score": (1.0 if method == "static" else 0.5) + 0.01 * seed if ok else nan,
                             "dp_gap": gap + 0.01 * seed * (method == "efficienttrust")})
    tests, skipped = tests_against_best_static(pd.DataFrame(rows), metrics=["dp_gap"])
    assert len(skipped) == 1 and skipped[0].startswith("regime low: no comparison") and "0.05 s" in skipped[0]
    assert tests["regime"].unique().tolist() == ["high"]
    row = tests.set_index("method").loc["efficienttrust"]
    assert row["baseline"] == "static" and row["rel_change"] < 0


def test_one_way_anova_matches_scipy_f_oneway():
    import numpy as np
    import pandas as pd
    from scipy.stats import f_oneway

    from trustkit.stats import anova

    rng = np.random.default_rng(1)
    df = pd.DataFrame({"level": np.repeat(["0.1", "0.5", "1.0"], [7, 9, 8])})
    df["gap"] = df["level"].astype(float) * 0.1 + rng.normal(0, 0.05, len(df))
    t = anova(df, metric="gap", factors=["level"])
    ref = f_oneway(*[g["gap"].to_numpy() for _, g in df.groupby("level")])
    assert t.loc["C(level)", "F"] == pytest.approx(ref.statistic)
    assert t.loc["C(level)", "p_value"] == pytest.approx(ref.pvalue)
    assert t["eta_sq"].sum() == pytest.approx(1.0)


def test_anova_finds_a_planted_interaction_and_no_phantom_effect():
    import numpy as np
    import pandas as pd

    from trustkit.stats import anova

    rng = np.random.default_rng(0)
    rows = [{"constraint": c, "mitigation": m, "noise": z, "seed": s}
            for c in ("none", "prune") for m in ("erm", "fair") for z in ("a", "b") for s in range(6)]
    df = pd.DataFrame(rows)
    # pruning widens the gap only without the fairness mitigation; "noise" does nothing
    df["gap"] = 0.1 + 0.1 * ((df["constraint"] == "prune") & (df["mitigation"] == "erm")) + rng.normal(0, 0.01, len(df))
    t = anova(df, metric="gap", factors=["constraint", "mitigation", "noise"])
    assert t.loc["C(constraint):C(mitigation)", "p_value"] < 1e-6
    assert t.loc["C(noise)", "p_value"] > 0.01 and t.loc["C(constraint):C(noise)", "p_value"] > 0.01
    main = anova(df, metric="gap", factors=["constraint", "mitigation"], interactions=1)
    assert "C(constraint):C(mitigation)" not in main.index
    with pytest.raises(ValueError, match="single level"):
        anova(df[df["constraint"] == "none"], metric="gap", factors=["constraint"])


def test_mean_ci_is_the_student_t_interval():
    import numpy as np
    import pandas as pd
    from scipy import stats as st

    from trustkit.stats import mean_ci

    x = np.array([0.31, 0.28, 0.35, 0.30])
    df = pd.DataFrame({"c": ["a"] * 4 + ["b"], "acc": [*x, 0.5]})
    out = mean_ci(df, by="c", metrics=["acc"]).set_index("c")
    lo, hi = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert out.loc["a", "acc_lo"] == pytest.approx(lo) and out.loc["a", "acc_hi"] == pytest.approx(hi)
    assert np.isnan(out.loc["b", "acc_lo"]) and out.loc["b", "n"] == 1
