"""Guidelines from result stores: planted effects must give the planted recommendation, and nothing else."""

import numpy as np
import pandas as pd
import pytest

from trustkit.experiments import (ResultStore, claims_check, find_stores, guidelines_table, load_phase_results,
                                  markdown_table)
from trustkit.stats import paired_effect


def planted_adaptive(seeds=range(5), shift=-0.06, noise=0.004):
    """ERM, a scheduler that narrows the DP gap by ``shift`` (tiny seed noise), one that does nothing."""
    rng = np.random.default_rng(0)
    rows = []
    for s in seeds:
        base = 0.20 + 0.02 * s
        for m, d in (("erm", 0.0), ("atats_pid", shift), ("dynamic", 0.0)):
            rows.append({"dataset": "compas", "regime": "medium", "method": m, "seed": s, "store": "adaptive/store",
                         "dp_gap": base + d + (rng.normal(0, noise) if m != "erm" else 0.0),
                         "robust_accuracy": 0.5 + 0.01 * s + (rng.normal(0, 0.02) if m != "erm" else 0.0),
                         "accuracy": 0.66 - (0.01 if m == "atats_pid" else 0.0) + 0.001 * s, "time_s": 1.0 + (m != "erm") * 0.1,
                         "val_score": 0.9 - 0.01 * s, "record": f"r{m}{s}"})
    return pd.DataFrame(rows)


def test_paired_effect_matches_scipy():
    from scipy import stats

    b, c = pd.Series([0.2, 0.3, 0.25, 0.4]), pd.Series([0.1, 0.22, 0.14, 0.33])
    e = paired_effect(b, c)
    assert e["p_value"] == pytest.approx(stats.ttest_rel(c, b).pvalue) and e["n"] == 4
    assert e["lo"] < e["diff"] < e["hi"] and e["diff"] == pytest.approx((c - b).mean())


def test_a_planted_improvement_is_recommended_and_a_null_one_is_not():
    t = guidelines_table({"adaptive": planted_adaptive()})
    fair = t[t.goal == "smaller fairness gap"].iloc[0]
    assert fair.recommended == "atats_pid" and fair.significant and fair.verdict == "recommended"
    assert fair.effect == pytest.approx(-0.06, abs=0.01) and fair.q_value < 0.001 and fair.seeds == 5
    assert "accuracy -0.010" in fair.cost and "1.10× the training time" in fair.cost
    assert "store adaptive/store, regime=medium" in fair.evidence and "seeds 0–4" in fair.evidence
    assert fair.guideline.startswith("On tabular data (compas), training time: 50% of a full run, for a smaller "
                                     "fairness gap: use atats_pid")
    assert "Benjamini–Hochberg over 4 tests of adaptive training comparisons" in fair.guideline
    rob = t[t.goal == "higher robust accuracy"].iloc[0]  # robust accuracy: only noise was planted (sd 0.02, 5 seeds)
    assert rob.verdict == "inconclusive" and rob.recommended == "" and not rob.significant
    assert "inconclusive" in rob.guideline and f"about {rob.seeds_needed} seeds would tell" in rob.guideline


def test_a_worse_method_or_too_few_seeds_is_never_recommended():
    worse = guidelines_table({"adaptive": planted_adaptive(shift=+0.06)})  # widens the gap
    fair = worse[worse.goal == "smaller fairness gap"].iloc[0]
    # atats_pid is significantly worse, dynamic within ±0.02 of ERM (TOST): ERM is unbeaten, and that is shown
    assert fair.verdict == "no method beat ERM" and fair.recommended == "ERM"
    assert (worse.verdict != "recommended").all()
    few = guidelines_table({"adaptive": planted_adaptive(seeds=range(2))})
    assert (few.verdict == "not tested").all() and (few.recommended == "").all()
    assert "not tested: 2 paired seed(s), fewer than the 3 a paired test needs" in few.guideline.iloc[0]


def test_runs_that_did_not_train_never_enter_a_guideline():
    df = planted_adaptive()
    df["trained"] = True
    df.loc[df.method == "atats_pid", "trained"] = False  # its planted gain came from untrained runs
    t = guidelines_table({"adaptive": df})
    assert (t.verdict != "recommended").all() and (t.untrained == 5).all()
    assert "5 run(s) that did not train left out" in t.evidence.iloc[0]


def test_the_sweep_compares_mitigations_under_the_same_constraint():
    rng = np.random.default_rng(3)
    rows = []
    for s in range(6):
        for c, lv in (("none", 1.0), ("time", 0.25)):
            for mit, eo in (("erm", 0.2), ("fair_penalty", 0.1 if c == "time" else 0.2)):
                rows.append({"dataset": "adult", "model": "mlp-32", "constraint": c, "level": lv, "mitigation": mit,
                             "seed": s, "eo_gap": eo + 0.01 * s + rng.normal(0, 0.004),
                             "accuracy": 0.8, "train_time_s": 1.0, "store": "tradeoffs/sweep_x", "record": "k"})
    t = guidelines_table({"sweep": pd.DataFrame(rows)})
    got = dict(zip(t.budget_regime, t.verdict))
    assert got["no constraint"] == "no method beat ERM"  # the penalty changed nothing without the constraint (TOST)
    timed = [k for k in got if k != "no constraint"][0]
    assert got[timed] == "recommended" and "25%" in timed
    assert t.set_index("budget_regime").loc[timed, "recommended"] == "fair_penalty"


def _selection_rows(seeds=range(6), eo=None, noise=0.005):
    rng = np.random.default_rng(1)
    eo = eo or {"whole": 0.30, "vtrust": 0.28, "random": 0.25}
    rows = []
    for s in seeds:
        for m, lam, err in (("whole", None, 0.33), ("vtrust", 0.5, 0.335), ("random", None, 0.35)):
            rows.append({"dataset": "compas", "fraction": 0.6, "method": m, "lam": lam, "seed": s,
                         "eo_gap": eo[m] + 0.01 * s + rng.normal(0, noise), "error": err + rng.normal(0, noise),
                         "val_eo_gap": eo[m] + rng.normal(0, noise), "val_error": err + rng.normal(0, noise),
                         "store": "vtrust/vtrust_store_compas", "record": "k"})
    return pd.DataFrame(rows)


def test_claims_check_calls_a_missed_claim_contradicted():
    c = claims_check({"vtrust": _selection_rows()})
    assert len(c) == 2 and c.verdict.iloc[0] == "contradicted"  # random's gap was clearly lower
    assert c.verdict.iloc[1] == "not tested"  # the planted-noise claim: no noisy runs here
    assert "lowest other: random 0.2" in c.measured.iloc[0] and c.family.iloc[0].startswith("Holm over 3 tests")
    ok = _selection_rows(eo={"whole": 0.30, "vtrust": 0.12, "random": 0.25})
    assert claims_check({"vtrust": ok}).verdict.iloc[0] == "supported"
    close = _selection_rows(eo={"whole": 0.30, "vtrust": 0.248, "random": 0.25}, noise=0.02)
    assert claims_check({"vtrust": close}).verdict.iloc[0] == "inconclusive"  # not lower, but not shown higher
    two = _selection_rows(seeds=range(2))
    assert claims_check({"vtrust": two}).verdict.iloc[0] == "not tested"


def test_stores_are_found_and_read_with_their_record_keys(tmp_path):
    s = ResultStore(tmp_path / "adaptive" / "adaptive_store_compas_quick")
    s.put({"dataset": "compas", "regime": "medium", "method": "erm", "seed": 0}, {"dp_gap": 0.2})
    s.put({"job": "reference", "dataset": "compas"}, {"time_s": 3.0})  # not a comparison row
    (tmp_path / "tradeoffs" / "sweep_quick").mkdir(parents=True)
    (tmp_path / "tradeoffs" / "sweep_quick" / "grid.yaml").write_text("name: quick\n")
    found = find_stores(tmp_path)
    assert [p.name for p in found["adaptive"]] == ["adaptive_store_compas_quick"] and len(found["sweep"]) == 1
    res = load_phase_results(tmp_path)
    assert len(res["adaptive"]) == 1 and res["adaptive"].store.iloc[0] == "adaptive/adaptive_store_compas_quick"
    assert res["vtrust"].empty
    with pytest.raises(FileNotFoundError, match="reports_dir .* is not a folder"):
        find_stores(tmp_path / "nowhere")


def test_markdown_table_escapes_pipes():
    md = markdown_table(pd.DataFrame({"a": [0.5], "b": ["x | y"]}))
    assert md.splitlines()[2] == "| 0.500 | x \\| y |"
