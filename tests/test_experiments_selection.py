"""The selection comparison reports each subset's class make-up, and the reading of it is computed
from the numbers."""

import numpy as np
import pandas as pd
import pytest

from trustkit.experiments._selection import class_balance_reading, subset_balance


def _frame(tracin_pos=0.83, tracin_err=0.45, strat_err=0.37):
    rows = []
    for seed in (0, 1):
        rows += [
            {"label": "whole", "method": "whole", "seed": seed, "subset_pos_rate": 0.46, "train_pos_rate": 0.46,
             "positive_rate": 0.40, "error": 0.33},
            {"label": "tracin λ=0.5", "method": "tracin", "seed": seed, "subset_pos_rate": tracin_pos,
             "train_pos_rate": 0.46, "positive_rate": 0.88, "error": tracin_err},
            {"label": "tracin_stratified λ=0.5", "method": "tracin_stratified", "seed": seed, "subset_pos_rate": 0.46,
             "train_pos_rate": 0.46, "positive_rate": 0.42, "error": strat_err},
            {"label": "threshold", "method": "threshold", "seed": seed, "subset_pos_rate": 0.46, "train_pos_rate": 0.46,
             "positive_rate": 0.41, "error": 0.34},
        ]
    return pd.DataFrame(rows)


def test_subset_balance_counts_classes():
    b = subset_balance([1, 1, 1, 0, 0, 0, 0, 0], [1, 0])
    assert b["subset_pos_rate"] == 0.375 and b["train_pos_rate"] == 0.5
    assert b["class_shift"] == pytest.approx(-0.125) and b["class_balance"] == pytest.approx(0.6)
    assert subset_balance([1, 1], [1, 0])["class_balance"] == 0.0


def test_reading_says_plain_tracin_loses_through_the_class_shift():
    r = class_balance_reading(_frame()).set_index("label")
    text = r.loc["tracin λ=0.5", "reading"]
    assert "83% positives against 46%" in text and "shift +0.37" in text
    assert "predicts positive for 88% of test points (whole data: 40%)" in text
    assert "test error 0.450 against 0.330" in text and "loses (+0.120) through the class shift" in text
    assert "sign follows the point's label" in text
    strat = r.loc["tracin_stratified λ=0.5", "reading"]
    assert "class balance is kept" in strat and "loses (+0.040), and not through the class balance" in strat
    assert r.loc["whole", "reading"].startswith("trains on the whole split")
    assert r.loc["threshold", "reading"].startswith("trains on the whole split (46% positives; a fairlearn reference)")
    assert r.loc["tracin λ=0.5", "class_shift"] == pytest.approx(0.37)


def test_reading_follows_the_numbers():
    # no class shift: no claim about it; no higher error: no claim that the method loses
    r = class_balance_reading(_frame(tracin_pos=0.48, tracin_err=0.33, strat_err=0.33)).set_index("label")
    text = r.loc["tracin λ=0.5", "reading"]
    assert "class balance is kept" in text and "loses" not in text and "sign follows" not in text
    assert "loses" not in r.loc["tracin_stratified λ=0.5", "reading"]
    with pytest.raises(ValueError, match=r"lacks the columns \['subset_pos_rate'\]"):
        class_balance_reading(_frame().drop(columns="subset_pos_rate"))


def test_selection_comparison_reports_the_class_make_up_of_every_subset(tmp_path):
    from trustkit.experiments import selection_comparison

    df = selection_comparison("german", methods=["whole", "random", "tracin", "tracin_stratified", "threshold"],
                              fraction=0.5, lams=[0.5], seeds=[0], select_epochs=2, train_epochs=3, store=tmp_path,
                              progress=False)
    assert df["label"].tolist() == ["whole", "random", "tracin λ=0.5", "tracin_stratified λ=0.5", "threshold"]
    assert df[["subset_pos_rate", "train_pos_rate", "class_shift", "class_balance"]].notna().all().all()
    by = df.set_index("method")
    n_sub = by.loc["tracin_stratified", "n_train"]
    assert n_sub == by.loc["tracin", "n_train"] == 300
    assert abs(by.loc["tracin_stratified", "class_shift"]) <= 1 / n_sub
    assert by.loc["whole", "class_shift"] == 0 and by.loc["threshold", "class_shift"] == 0
    assert abs(by.loc["random", "class_shift"]) < 0.01
    reading = class_balance_reading(df)
    assert len(reading) == 5 and reading["reading"].str.len().min() > 20
    np.testing.assert_allclose(reading.set_index("label").loc["tracin λ=0.5", "class_shift"],
                               by.loc["tracin", "class_shift"])


def test_select_subset_runs_ssfr_with_a_single_epoch():
    from trustkit.data import load_german
    from trustkit.experiments import select_subset

    task = load_german(seed=0)
    idx, _ = select_subset("ssfr", task, fraction=0.5, epochs=1)
    assert len(idx) == 300


def test_stored_runs_of_an_earlier_selector_are_not_reused(tmp_path):
    from trustkit.experiments import ResultStore, run_key, selection_comparison

    df = selection_comparison("german", methods=["whole"], seeds=[0], select_epochs=1, train_epochs=1, store=tmp_path,
                              progress=False)
    cfg = ResultStore(tmp_path).records()[0]
    assert cfg["selector_version"] == df["selector_version"].iloc[0] >= 2
    old = {k: v for k, v in cfg.items() if k in ("job", "dataset", "method", "seed", "fraction", "value", "lam",
                                                   "select_epochs", "train_epochs")}
    assert run_key(old) not in {p.stem for p in tmp_path.iterdir()}


def test_seeds_retrained_as_replicas_give_the_rows_of_separate_retraining(tmp_path):
    from trustkit.experiments import selection_comparison

    kw = dict(methods=["whole", "random", "threshold"], fraction=0.5, seeds=[0, 1, 2], select_epochs=2,
              train_epochs=4, progress=False)
    alone = selection_comparison("german", store=tmp_path / "alone", **kw)
    together = selection_comparison("german", store=tmp_path / "together", replicas=True, **kw)
    assert together[["method", "seed"]].values.tolist() == alone[["method", "seed"]].values.tolist()
    by = together.set_index("method")
    assert (by.loc[["whole", "random"], "replicas"] == 3).all()
    assert (alone.loc[alone["method"] != "threshold", "replicas"] == 1).all()
    assert "replicas" not in alone.columns or alone.loc[alone["method"] == "threshold", "replicas"].isna().all()
    assert together["n_train"].tolist() == alone["n_train"].tolist()
    for col in ("accuracy", "eo_gap", "dp_gap", "class_shift"):
        np.testing.assert_allclose(together[col].to_numpy(float), alone[col].to_numpy(float), atol=0.01, err_msg=col)
    with pytest.raises(TypeError, match="replicas must be True or False"):
        selection_comparison("german", replicas=1, progress=False)
