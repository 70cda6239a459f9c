"""Planted label noise in the selection runner, degenerate selections, the value-aware VTruST
method name, the planted-noise chart and the planted-noise claim."""

import inspect

import numpy as np
import pandas as pd
import pytest

from trustkit.data import load_task, noise_group, plant_label_noise
from trustkit.experiments import selection_comparison, selection_tests
from trustkit.experiments._selection import (DEGENERATE_ERROR_MARGIN, DEGENERATE_NOTE, VARIANT_METHODS, flag_degenerate,
                                             select_subset)

FAST = dict(select_epochs=1, train_epochs=2, progress=False)


def _has_harmful() -> bool:
    from trustkit.select import VTruST

    return "harmful" in inspect.signature(VTruST).parameters


# ------------------------------------------------------------------------------------------------
# planting the noise


def test_uniform_noise_flips_the_training_labels_only_and_is_seeded():
    task = load_task("compas", seed=0)
    noisy, flipped = plant_label_noise(task, 0.2, kind="uniform", seed=3)
    assert flipped.sum() == round(0.2 * len(task.train))
    np.testing.assert_array_equal(noisy.train.y[flipped], 1 - task.train.y[flipped])
    np.testing.assert_array_equal(noisy.train.y[~flipped], task.train.y[~flipped])
    np.testing.assert_array_equal(noisy.val.y, task.val.y)
    np.testing.assert_array_equal(noisy.test.y, task.test.y)
    again = plant_label_noise(task, 0.2, kind="uniform", seed=3)[1]
    other = plant_label_noise(task, 0.2, kind="uniform", seed=4)[1]
    assert (again == flipped).all() and not (other == flipped).all()


def test_group_noise_flips_only_within_the_minority_group():
    task = load_task("adult", seed=0)
    mask, name = noise_group(task)
    assert name == "sex=Female" and 0.3 < mask.mean() < 0.35
    noisy, flipped = plant_label_noise(task, 0.2, kind="group", seed=0)
    assert abs(flipped.mean() - 0.2) < 1e-3 and not flipped[~mask].any()
    with pytest.raises(ValueError, match=r"group sex=Female has .*'group' noise needs rate <= 0\.32"):
        plant_label_noise(task, 0.4, kind="group", seed=0)


def test_group_noise_without_a_sensitive_attribute_is_the_lower_half_of_the_classes():
    task = load_task("digits", seed=0)
    noisy, flipped = plant_label_noise(task, 0.3, kind="group", seed=0)
    assert (task.train.y[flipped] <= 4).all() and abs(flipped.mean() - 0.3) < 1e-3
    assert (noisy.train.y[flipped] != task.train.y[flipped]).all()
    assert set(np.unique(noisy.train.y[flipped])) - set(range(5))  # flipped to any other class


@pytest.mark.parametrize("noise, message", [
    ({"rate": 0.0, "kind": "uniform"}, r"label_noise\['rate'\] must be a number in \(0, 0\.5\]"),
    ({"rate": 0.6, "kind": "uniform"}, r"label_noise\['rate'\] must be a number in \(0, 0\.5\]"),
    ({"rate": 0.2, "kind": "pairs"}, r"label_noise\['kind'\] must be one of \['uniform', 'group'\]; got 'pairs'"),
    ({"rate": 0.2}, r"label_noise must have exactly the keys \['rate', 'kind'\]"),
    ({"rate": 0.45, "kind": "group"}, r"label_noise\['rate'\] = 0\.45 is more than the share of the group sex=Female"),
])
def test_label_noise_is_validated_before_anything_runs(noise, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        selection_comparison("adult" if noise.get("kind") == "group" else "compas", methods=["whole"], seeds=[0],
                             label_noise=noise, store=tmp_path, **FAST)
    assert not list(tmp_path.iterdir())


def test_noisy_runs_have_their_own_store_key_and_report_the_flips_kept(tmp_path):
    noisy = selection_comparison("compas", methods=["whole", "random", "cleanlab"], seeds=[0], store=tmp_path,
                                 label_noise={"rate": 0.3, "kind": "uniform"}, **FAST)
    clean = selection_comparison("compas", methods=["whole", "random"], seeds=[0], store=tmp_path, **FAST)
    assert len(list(tmp_path.glob("*.json"))) == 5  # the clean runs were not served the noisy records
    by = noisy.set_index("method")
    assert by.loc["cleanlab", "flipped_kept"] < 0.2  # confident learning drops many flipped points
    assert by.loc["whole", "flipped_kept"] == pytest.approx(0.3, abs=1e-3)
    assert abs(by.loc["random", "flipped_kept"] - 0.3) < 0.03
    assert (noisy["noise_kind"] == "uniform").all() and (noisy["flip_rate"] == 0.3).all()
    assert (clean["noise_kind"] == "none").all() and (clean["flipped_kept"] == 0).all()
    assert noisy["val_loss"].between(0.3, 2).all() and clean["val_loss"].notna().all()
    assert (by.loc[["whole", "random"], "val_loss"] != clean.set_index("method")["val_loss"]).all()


def test_replica_retraining_gives_the_same_noisy_rows(tmp_path):
    kw = dict(methods=["whole", "random"], seeds=[0, 1], label_noise={"rate": 0.2, "kind": "group"}, **FAST)
    one = selection_comparison("compas", store=tmp_path / "one", **kw)
    rep = selection_comparison("compas", store=tmp_path / "rep", replicas=True, **kw)
    assert (rep["replicas"] == 2).all()
    cols = ["flipped_kept", "val_loss", "error", "top_class_share"]
    np.testing.assert_allclose(rep[cols].to_numpy(float), one[cols].to_numpy(float), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# the value-aware VTruST name


def test_vtrust_va_is_a_lambda_aware_variant():
    assert VARIANT_METHODS == ("vtrust_va",)
    if not _has_harmful():
        pytest.skip("VTruST has no harmful= parameter yet")
    task = load_task("german", seed=0)
    idx, diag = select_subset("vtrust_va", task, fraction=0.5, epochs=2, seed=0)
    assert len(idx) == 300 and {"residual", "replacements", "atom_size", "feature_rank"} <= set(diag)


@pytest.mark.skipif(not _has_harmful(), reason="VTruST has no harmful= parameter yet")
def test_vtrust_va_runs_in_the_comparison_once_per_lambda(tmp_path):
    df = selection_comparison("german", methods=["vtrust_va"], lams=[0.0, 1.0], seeds=[0], fraction=0.5,
                              store=tmp_path, label_noise={"rate": 0.2, "kind": "uniform"}, **FAST)
    assert df["label"].tolist() == ["vtrust_va λ=0", "vtrust_va λ=1"]
    assert df["flipped_kept"].between(0, 1).all() and df["residual"].notna().all()


# ------------------------------------------------------------------------------------------------
# degenerate selections


def test_a_selector_keeping_one_class_is_flagged_and_a_sound_one_is_not(tmp_path, monkeypatch):
    from trustkit.select import FIELD_SELECTORS

    def positives_only(task, fraction, *, seed=0):
        return np.flatnonzero(task.train.y == 1)[: int(round(fraction * len(task.train)))]

    monkeypatch.setitem(FIELD_SELECTORS, "cleanlab", positives_only)
    df = selection_comparison("compas", methods=["whole", "random", "cleanlab"], seeds=[0], store=tmp_path,
                              select_epochs=1, train_epochs=3, progress=False).set_index("method")
    assert df.loc["cleanlab", "degenerate"] and "predicts one class" in df.loc["cleanlab", "degenerate_reason"]
    assert df.loc["cleanlab", "top_class_share"] >= 0.98
    assert not df.loc["random", "degenerate"] and df.loc["random", "degenerate_reason"] == ""
    assert not df.loc["whole", "degenerate"]


def test_the_error_rule_compares_with_whole_data_on_the_same_seed_and_setting():
    rows = []
    for seed, (w, r, t) in enumerate([(0.10, 0.15, 0.30), (0.12, 0.30, 0.13)]):
        for method, e in (("whole", w), ("random", r), ("tracin", t)):
            rows.append({"method": method, "seed": seed, "dataset": "digits", "fraction": 0.6, "noise_kind": "none",
                         "flip_rate": 0.0, "error": e, "top_class_share": 0.2})
    rows.append({"method": "tracin", "seed": 0, "dataset": "digits", "fraction": 0.6, "noise_kind": "uniform",
                 "flip_rate": 0.4, "error": 0.30, "top_class_share": 0.985})  # no whole run of its own setting
    f = flag_degenerate(pd.DataFrame(rows))
    assert f["degenerate"].tolist() == [False, False, True, False, True, False, True]
    assert f["degenerate_reason"].iloc[2] == "test error 0.300 is 0.200 above whole data on seed 0"
    assert f["degenerate_reason"].iloc[6] == "predicts one class for 98.5% of test points"
    assert not flag_degenerate(pd.DataFrame(rows), error_margin=0.25)["degenerate"].iloc[2]
    assert DEGENERATE_ERROR_MARGIN == 0.10


def _arms(values: dict, degenerate: dict | None = None, seeds=range(6)) -> pd.DataFrame:
    rows = []
    for label, vs in values.items():
        for s in seeds:
            rows.append({"label": label, "method": label, "dataset": "compas", "fraction": 0.6, "seed": s,
                         "flip_rate": 0.2, "noise_kind": "uniform", "flipped_kept": vs[s], "error": 0.33,
                         "degenerate": (degenerate or {}).get((label, s), False)})
    return pd.DataFrame(rows)


def test_selection_tests_leave_degenerate_runs_out():
    rng = np.random.default_rng(0)
    base = 0.2 + rng.normal(0, 0.01, 6)
    values = {"random": base, "whole": base + rng.normal(0, 0.005, 6), "collapsed": base - 0.1 + rng.normal(0, 0.005, 6),
              "partly": base - 0.05 + rng.normal(0, 0.005, 6)}
    df = _arms(values)
    dead = {("collapsed", s): True for s in range(6)} | {("partly", 0): True, ("partly", 1): True}
    t = selection_tests(_arms(values, dead), metrics=["flipped_kept"], baseline="random").set_index("label")
    assert t.loc["collapsed", "verdict"] == DEGENERATE_NOTE and t.loc["collapsed", "degenerate"] == 6
    assert t.loc["partly", "n"] == 4 and t.loc["partly", "degenerate"] == 2 and t.loc["partly", "verdict"] == "changed"
    assert "Benjamini–Hochberg over 2 tests of selections against random" in t["family"].iloc[0]
    kept = selection_tests(df, metrics=["flipped_kept"], baseline="random").set_index("label")
    assert kept.loc["collapsed", "verdict"] == "changed" and kept.loc["partly", "n"] == 6
    with pytest.raises(ValueError, match="baseline 'nothing' is not a label"):
        selection_tests(df, baseline="nothing")


# ------------------------------------------------------------------------------------------------
# the chart


def _chart_frame() -> pd.DataFrame:
    rows = []
    for kind in ("uniform", "group"):
        for rate in (0.1, 0.2):
            for s in range(3):
                for label, kept, loss, bad in (("random", rate, 0.6, False), ("cleanlab", rate / 2, 0.7, False),
                                               ("tracin λ=0.5", rate * 1.2, 2.0, s == 1)):
                    rows.append({"label": label, "seed": s, "noise_kind": kind, "flip_rate": rate, "flipped_kept": kept,
                                 "val_loss": loss + 0.01 * s, "error": 0.3, "degenerate": bad})
    return pd.DataFrame(rows)


def test_planted_noise_chart_has_the_expected_encodings():
    from trustkit.plots import planted_noise_chart

    spec = planted_noise_chart(_chart_frame()).to_dict()
    assert spec["facet"]["row"]["field"] == "noise_kind" and spec["facet"]["column"]["field"] == "flip_rate"
    seeds, means = spec["spec"]["layer"]
    for layer in (seeds, means):
        enc = layer["encoding"]
        assert enc["x"]["field"] == "flipped_kept" and enc["y"]["field"] == "val_loss"
        assert enc["color"]["field"] == "label" and enc["shape"]["field"] == "run"
        assert enc["shape"]["scale"]["range"] == ["circle", "cross"]
    data = pd.DataFrame(next(iter(spec["datasets"].values())))
    m = data[data["level"] == "mean over seeds"].set_index(["noise_kind", "flip_rate", "label"])
    assert len(m) == 12 and len(data) == 12 + 36
    assert (m.xs("tracin λ=0.5", level="label")["run"] == "degenerate").all()  # one bad seed marks the method
    assert (m.drop(index="tracin λ=0.5", level="label")["run"] == "sound").all()
    assert m.loc[("uniform", 0.2, "cleanlab"), "flipped_kept"] == pytest.approx(0.1)
    err = planted_noise_chart(_chart_frame(), y="error").to_dict()
    assert err["spec"]["layer"][1]["encoding"]["y"]["field"] == "error"
    with pytest.raises(ValueError, match="y must be 'val_loss' or 'error'; got 'eo_gap'"):
        planted_noise_chart(_chart_frame(), y="eo_gap")


# ------------------------------------------------------------------------------------------------
# the planted-noise claim


def _noisy(shift: float, *, seeds=range(8), rng=0, rate=0.2) -> pd.DataFrame:
    from trustkit.experiments import planted_selection

    return planted_selection(shift={("vtrust_va λ=0.5", "flipped_kept"): shift}, seeds=seeds, rng=rng,
                             others=("random",), variants=("vtrust_va",), label_noise={"rate": rate, "kind": "uniform"})


def _noise_rows(claims: pd.DataFrame) -> pd.DataFrame:
    from trustkit.experiments._guidelines import NOISE_CLAIM

    return claims[claims["claim"] == NOISE_CLAIM]


def test_the_planted_reduction_of_flipped_points_is_recovered():
    from trustkit.experiments import claims_check

    c = _noise_rows(claims_check({"vtrust": _noisy(-0.05)}))
    assert len(c) == 1 and c["verdict"].iloc[0] == "supported"
    assert "uniform label noise at 0.2" in c["setting"].iloc[0] and "Holm" in c["family"].iloc[0]
    import re

    m = re.search(r"keeps ([0-9.]+) flipped against random's ([0-9.]+): ([-+0-9.]+) \[([-+0-9.]+), ([-+0-9.]+)\]",
                  c["measured"].iloc[0])
    diff, lo, hi = (float(m.group(i)) for i in (3, 4, 5))
    assert lo < -0.05 < hi and abs(diff + 0.05) < 0.01  # the planted -0.05 is inside the measured interval


def test_a_zero_effect_is_supported_no_more_often_than_the_test_level():
    from trustkit.experiments import claims_check

    verdicts = [_noise_rows(claims_check({"vtrust": _noisy(0.0, rng=r)}))["verdict"].iloc[0] for r in range(40)]
    assert verdicts.count("supported") <= 5  # one-sided tests at 0.05: about 2 of 40 by chance
    assert set(verdicts) <= {"supported", "inconclusive", "contradicted"}
    more = [_noise_rows(claims_check({"vtrust": _noisy(+0.05, rng=r)}))["verdict"].iloc[0] for r in range(5)]
    assert more == ["contradicted"] * 5


def test_the_claim_is_not_tested_without_noisy_runs_or_seeds():
    from trustkit.experiments import claims_check, planted_selection

    clean = planted_selection(seeds=range(8), others=("random",), variants=("vtrust_va",))
    c = claims_check({"vtrust": clean})
    assert _noise_rows(c)["verdict"].tolist() == ["not tested"]
    assert "no planted-noise runs" in _noise_rows(c)["measured"].iloc[0]
    assert _noise_rows(claims_check({"vtrust": _noisy(-0.05, seeds=range(2))}))["verdict"].iloc[0].startswith("not tested")


def test_noisy_runs_leave_the_table_one_claim_alone_and_survive_the_store(tmp_path):
    from trustkit.experiments import claims_check, load_phase_results, planted_selection, write_planted_reports

    clean = planted_selection(seeds=range(8), others=("random",), shift={("vtrust λ=0.5", "eo_gap"): -0.08})
    noisy = _noisy(-0.05, rng=1).assign(eo_gap=0.5)  # far worse gaps under noise must not reach the clean claim
    both = claims_check({"vtrust": pd.concat([clean, noisy], ignore_index=True)})
    alone = claims_check({"vtrust": clean})
    assert both["verdict"].iloc[0] == alone["verdict"].iloc[0] and both["measured"].iloc[0] == alone["measured"].iloc[0]
    loaded = load_phase_results(write_planted_reports(tmp_path, selection=pd.concat([clean, noisy], ignore_index=True)))
    c = claims_check(loaded)
    assert _noise_rows(c)["verdict"].tolist() == ["supported"]
    assert c["verdict"].iloc[0] == alone["verdict"].iloc[0]


def test_degenerate_runs_are_left_out_of_the_claim():
    from trustkit.experiments import claims_check

    df = _noisy(-0.05)
    dead = (df["method"] == "vtrust_va") & (df["seed"] < 6)
    df.loc[dead, "error"] = 0.9  # far above whole data: degenerate
    c = _noise_rows(claims_check({"vtrust": df}))
    assert c["verdict"].iloc[0].startswith("not tested") and "6 degenerate run(s) left out" in c["measured"].iloc[0]
    df.loc[df["method"] == "vtrust_va", "error"] = 0.9
    text = _noise_rows(claims_check({"vtrust": df}))["measured"].iloc[0]
    assert "no pair of sound runs" in text and "nan" not in text


def test_digits_run_on_flattened_pixels_with_noise_in_the_lower_classes(tmp_path):
    df = selection_comparison("digits", methods=["whole", "random", "cleanlab"], seeds=[0], store=tmp_path,
                              dataset_kwargs={"image_size": 8}, label_noise={"rate": 0.2, "kind": "group"}, **FAST)
    by = df.set_index("method")
    assert by.loc["whole", "flipped_kept"] == pytest.approx(0.2, abs=1e-3) and "eo_gap" not in df
    assert df["top_class_share"].between(0.05, 0.98).all() and df["val_loss"].notna().all()


def test_degenerate_arms_do_not_decide_the_table_one_claim_or_the_guidelines():
    from trustkit.experiments import claims_check, guidelines_table, planted_selection

    df = planted_selection(seeds=range(8), others=("random",), shift={("vtrust λ=0.5", "eo_gap"): -0.08})
    assert claims_check({"vtrust": df})["verdict"].iloc[0] == "supported"
    collapsed = df.copy()
    m = collapsed["method"] == "random"
    collapsed.loc[m, "positive_rate"], collapsed.loc[m, "eo_gap"] = 0.999, 0.0  # one class for everyone: no gap
    c = claims_check({"vtrust": collapsed})
    assert c["verdict"].iloc[0] == "supported" and "8 degenerate run(s) left out" in c["measured"].iloc[0]
    g = guidelines_table({"vtrust": collapsed})
    assert "random" not in set(g["best_candidate"]) and "random" not in set(g["recommended"])
