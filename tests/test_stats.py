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


# -- families, equivalence, verdicts, power, rankings ---------------------------------------------
def test_adjusted_p_values_match_statsmodels_and_a_hand_computed_bh():
    from statsmodels.stats.multitest import multipletests

    from trustkit.stats import adjust_pvalues

    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    q = adjust_pvalues(p)
    # Benjamini & Hochberg (1995) by hand: q_(i) = min_{j >= i} p_(j) * m / j
    m = len(p)
    hand = np.minimum.accumulate((p * m / np.arange(1, m + 1))[::-1])[::-1]
    np.testing.assert_allclose(q, hand, rtol=1e-12)
    assert list(q < 0.05) == [True, True] + [False] * 8  # uncorrected, five would pass
    np.testing.assert_allclose(adjust_pvalues(p, method="holm"), multipletests(p, method="holm")[1], rtol=1e-12)
    with_nan = adjust_pvalues(np.r_[p, np.nan])
    assert np.isnan(with_nan[-1]) and np.allclose(with_nan[:-1], q)  # a test that could not run is not in the family
    with pytest.raises(ValueError, match="correction must be one of"):
        adjust_pvalues(p, method="bonferoni")
    with pytest.raises(ValueError, match=r"p_values must lie in \[0, 1\]"):
        adjust_pvalues([0.5, 1.5])


def test_paired_tests_agree_with_scipy_and_statsmodels():
    from scipy.stats import ttest_rel
    from statsmodels.stats.weightstats import ttost_paired

    from trustkit.stats import difference_effect, difference_tost, equivalence_test, paired_effect

    rng = np.random.default_rng(5)
    b = pd.Series(rng.normal(0.2, 0.03, 9))
    c = b + rng.normal(-0.01, 0.01, 9)
    for alt in ("two-sided", "less", "greater"):
        e = paired_effect(b, c, alternative=alt)
        assert e["p_value"] == pytest.approx(ttest_rel(c, b, alternative=alt).pvalue, rel=1e-9)
    for margin in (0.005, 0.01, 0.03):
        ref = ttost_paired(c.to_numpy(), b.to_numpy(), -margin, margin)[0]
        assert equivalence_test(b, c, margin=margin)["p_value"] == pytest.approx(ref, rel=1e-9)
    d = (c - b).to_numpy()
    assert difference_effect(d)["diff"] == pytest.approx(d.mean()) and difference_tost(d, margin=0.02)["n"] == 9
    const = difference_effect([0.05, 0.05, 0.05])  # no spread: no test, and said so
    assert const["constant"] and np.isnan(const["p_value"]) and const["lo"] == const["hi"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="margin must be a positive number"):
        difference_tost(d, margin=0)


def test_power_and_seeds_needed_are_consistent_with_statsmodels():
    from statsmodels.stats.power import TTestPower

    from trustkit.stats import paired_power, seeds_needed

    for eff, sd, n in ((0.02, 0.03, 12), (0.05, 0.02, 5), (0.01, 0.01, 30)):
        ref = TTestPower().power(effect_size=eff / sd, nobs=n, alpha=0.05, alternative="two-sided")
        assert paired_power(eff, sd, n) == pytest.approx(ref, rel=1e-6)
    n = seeds_needed(0.03, 0.02)
    assert paired_power(0.02, 0.03, n) >= 0.8 > paired_power(0.02, 0.03, n - 1)
    assert seeds_needed(float("nan"), 0.02) is None and seeds_needed(0.03, 0.0) is None


def test_verdicts_have_three_answers_and_a_not_tested():
    from trustkit.stats import change_verdict, claim_verdict

    assert change_verdict(significant=True, equivalent=False, n=8) == "changed"
    assert change_verdict(significant=False, equivalent=True, n=8) == "no change"
    assert change_verdict(significant=False, equivalent=False, n=8) == "inconclusive"
    assert change_verdict(significant=True, equivalent=False, n=2) == "not tested"
    # a claim that X lowers Y
    assert claim_verdict(lo=-0.08, hi=-0.02, significant=True, direction=-1, n=8) == "supported"
    assert claim_verdict(lo=-0.08, hi=0.01, significant=False, direction=-1, n=8) == "inconclusive"  # not a contradiction
    assert claim_verdict(lo=0.01, hi=0.05, significant=True, direction=-1, n=8) == "contradicted"
    assert claim_verdict(lo=0.01, hi=0.05, significant=True, direction=+1, n=8) == "supported"
    with pytest.raises(ValueError, match="direction must be -1"):
        claim_verdict(lo=0, hi=1, significant=False, direction=0, n=8)


def test_friedman_nemenyi_matches_scipy_and_demsar_table():
    from scipy.stats import friedmanchisquare

    from trustkit.stats import friedman_nemenyi

    rng = np.random.default_rng(2)
    k, n = 4, 12
    scores = rng.normal(0, 1, (n, k)) + np.array([0.0, 0.3, 0.6, 1.5])
    df = pd.DataFrame([{"block": b, "method": f"m{j}", "v": scores[b, j]} for b in range(n) for j in range(k)])
    r = friedman_nemenyi(df, block="block", method="method", value="v")
    assert r["p_value"] == pytest.approx(friedmanchisquare(*scores.T).pvalue)
    assert r["ranks"].index[0] == "m3" and r["blocks"] == n  # highest score ranks first
    # Demšar (2006), Table 5: q_0.05 for k = 2..6 is 1.960, 2.343, 2.569, 2.728, 2.850
    for kk, q in zip(range(2, 7), (1.960, 2.343, 2.569, 2.728, 2.850)):
        sub = df[df.method.isin([f"m{j}" for j in range(min(kk, 4))])] if kk <= 4 else None
        if sub is None:
            extra = pd.DataFrame([{"block": b, "method": f"x{j}", "v": rng.normal()} for b in range(n) for j in range(kk - 4)])
            sub = pd.concat([df, extra])
        cd = friedman_nemenyi(sub, block="block", method="method", value="v")["cd"]
        assert cd == pytest.approx(q * np.sqrt(kk * (kk + 1) / (6 * n)), abs=2e-3)
    low = friedman_nemenyi(df, block="block", method="method", value="v", higher_is_better=False)
    assert low["ranks"].index[0] == "m0"


def test_anova_effect_sizes_are_shares_of_the_total_and_the_seed_block_recovers_a_paired_effect():
    from trustkit.stats import anova

    rng = np.random.default_rng(4)
    seeds = np.repeat(np.arange(8), 2)
    seed_effect = rng.normal(0, 0.05, 8)[seeds]
    df = pd.DataFrame({"seed": seeds, "setting": np.tile(["ref", "cut"], 8)})
    df["gap"] = 0.2 + seed_effect - 0.02 * (df["setting"] == "cut") + rng.normal(0, 0.005, len(df))
    plain = anova(df, metric="gap", factors=["setting"])
    blocked = anova(df, metric="gap", factors=["setting"], block="seed")
    total = ((df["gap"] - df["gap"].mean()) ** 2).sum()
    assert blocked.loc["C(setting)", "eta_sq"] == pytest.approx(blocked.loc["C(setting)", "sum_sq"] / total)
    resid = blocked.loc["Residual", "sum_sq"]
    assert blocked.loc["C(setting)", "partial_eta_sq"] == pytest.approx(
        blocked.loc["C(setting)", "sum_sq"] / (blocked.loc["C(setting)", "sum_sq"] + resid))
    # the seed block takes the seed-to-seed spread out of the residual: the paired effect shows
    assert blocked.loc["C(setting)", "p_value"] < 0.01 < 0.05 < plain.loc["C(setting)", "p_value"]
    from scipy.stats import ttest_rel

    wide = df.pivot(index="seed", columns="setting", values="gap")
    assert blocked.loc["C(setting)", "p_value"] == pytest.approx(ttest_rel(wide["cut"], wide["ref"]).pvalue, rel=1e-6)
    with pytest.raises(ValueError, match="block 'seed' is also listed in factors"):
        anova(df, metric="gap", factors=["setting", "seed"], block="seed")
