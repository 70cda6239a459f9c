"""Every metric against an independent reference on many random inputs."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn import metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error

from trustkit import metrics as tm

SEEDS = range(40)


def _binary_case(seed, n_groups=2):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(60, 400))
    y = rng.integers(0, 2, n)
    p = np.clip(0.6 * y + rng.normal(0.2, 0.3, n), 0, 1)
    yhat = (p > rng.uniform(0.3, 0.7)).astype(int)
    a = rng.integers(0, n_groups, n)
    return y, p, yhat, a


@pytest.mark.parametrize("seed", SEEDS)
def test_utility_matches_sklearn(seed):
    y, p, yhat, _ = _binary_case(seed)
    assert tm.accuracy(y, yhat) == pytest.approx(skm.accuracy_score(y, yhat), abs=1e-12)
    assert tm.balanced_accuracy(y, yhat) == pytest.approx(skm.balanced_accuracy_score(y, yhat), abs=1e-12)
    assert tm.f1_score(y, yhat) == pytest.approx(skm.f1_score(y, yhat, zero_division=0), abs=1e-12)
    assert tm.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    # heavy ties: scores rounded to one decimal
    assert tm.roc_auc(y, np.round(p, 1)) == pytest.approx(skm.roc_auc_score(y, np.round(p, 1)), abs=1e-12)


def test_balanced_accuracy_multiclass_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 5, 200)
        yhat = np.where(rng.random(200) < 0.6, y, rng.integers(0, 5, 200))
        assert tm.balanced_accuracy(y, yhat) == pytest.approx(skm.balanced_accuracy_score(y, yhat), abs=1e-12)


def test_f1_no_positives_is_zero_like_sklearn():
    assert tm.f1_score([0, 0, 0], [0, 0, 0]) == skm.f1_score([0, 0, 0], [0, 0, 0], zero_division=0) == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_ece_matches_torchmetrics(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(50, 500)), int(rng.integers(2, 6))
    logits = rng.normal(size=(n, c)) * rng.uniform(0.5, 4)
    probs = torch.softmax(torch.tensor(logits), dim=1).numpy()
    y = rng.integers(0, c, n)
    for n_bins in (10, 15):
        ref = multiclass_calibration_error(torch.tensor(probs, dtype=torch.float64), torch.tensor(y),
                                           num_classes=c, n_bins=n_bins, norm="l1")
        assert tm.expected_calibration_error(y, probs, n_bins=n_bins) == pytest.approx(float(ref), abs=1e-6)


def test_ece_binary_vector_equals_two_column_form():
    y, p, _, _ = _binary_case(3)
    two = np.stack([1 - p, p], axis=1)
    assert tm.expected_calibration_error(y, p) == tm.expected_calibration_error(y, two)
    ref = multiclass_calibration_error(torch.tensor(two), torch.tensor(y), num_classes=2, n_bins=15)
    assert tm.expected_calibration_error(y, p) == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_groups", [2, 3, 5])
def test_fairness_gaps_match_fairlearn(seed, n_groups):
    y, _, yhat, a = _binary_case(seed, n_groups)
    assert tm.dp_gap(y, yhat, a) == pytest.approx(demographic_parity_difference(y, yhat, sensitive_features=a), abs=1e-12)
    assert tm.eo_gap(y, yhat, a) == pytest.approx(equalized_odds_difference(y, yhat, sensitive_features=a), abs=1e-12)
    assert tm.eo_gap(y, yhat, a, agg="mean") == pytest.approx(
        equalized_odds_difference(y, yhat, sensitive_features=a, agg="mean"), abs=1e-12)
    assert tm.eopp_gap(y, yhat, a) == pytest.approx(equal_opportunity_difference(y, yhat, sensitive_features=a), abs=1e-12)


def test_group_table_matches_metricframe():
    y, _, yhat, a = _binary_case(7, 3)
    mf = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
                     y_true=y, y_pred=yhat, sensitive_features=a)
    table = tm.group_table(y, yhat, a).set_index("group")
    for col in ("selection_rate", "tpr", "fpr"):
        np.testing.assert_allclose(table[col].to_numpy(), mf.by_group[col].to_numpy(), atol=1e-12)
    assert table["count"].sum() == len(y)


def test_group_table_uses_names():
    t = tm.group_table([1, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1], group_names=("women", "men"))
    assert t["group"].tolist() == ["women", "men"]


# --- undefined rates: the gaps follow fairlearn ------------------------------------------

# group 1 has no positives, so its TPR is undefined; fairlearn counts it as 0
NO_POS = dict(y=[1, 1, 0, 0, 0, 0], p=[1, 0, 0, 1, 1, 0], a=[0, 0, 0, 0, 1, 1])
# group 1 has no negatives, so its FPR is undefined
NO_NEG = dict(y=[1, 1, 0, 0, 1, 1], p=[1, 0, 0, 1, 1, 1], a=[0, 0, 0, 0, 1, 1])


@pytest.mark.parametrize("case, rate", [(NO_POS, "TPR"), (NO_NEG, "FPR")])
def test_undefined_rate_counts_as_zero_like_fairlearn(case, rate):
    y, p, a = case["y"], case["p"], case["a"]
    expected = {
        "eo": equalized_odds_difference(y, p, sensitive_features=a),
        "eo_mean": equalized_odds_difference(y, p, sensitive_features=a, agg="mean"),
        "eopp": equal_opportunity_difference(y, p, sensitive_features=a),
    }
    with pytest.warns(tm.UndefinedRateWarning, match=rf"{rate} is undefined for group 1 \(it has no"):
        got = {"eo": tm.eo_gap(y, p, a), "eo_mean": tm.eo_gap(y, p, a, agg="mean"), "eopp": tm.eopp_gap(y, p, a)}
    assert got == pytest.approx(expected, abs=1e-12)
    assert not any(np.isnan(v) for v in got.values())
    if rate == "TPR":  # the planted answer: TPR 1/2 against 0, FPR 1/2 against 1/2
        assert got == pytest.approx({"eo": 0.5, "eo_mean": 0.25, "eopp": 0.5})


def test_undefined_rate_warning_names_the_group_by_its_value():
    with pytest.warns(tm.UndefinedRateWarning, match="TPR is undefined for group 'f'"):
        tm.tpr_gap(NO_POS["y"], NO_POS["p"], ["m", "m", "m", "m", "f", "f"])
    with pytest.warns(tm.UndefinedRateWarning, match="FPR is undefined for groups 0, 1"):
        tm.fpr_gap([1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1])


def test_eo_gap_does_not_depend_on_the_order_of_groups():
    y, p, a = NO_POS["y"], NO_POS["p"], np.asarray(NO_POS["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tm.UndefinedRateWarning)
        for agg in ("worst_case", "mean"):
            ref = tm.eo_gap(y, p, a, agg=agg)
            assert tm.eo_gap(y, p, 1 - a, agg=agg) == ref
            assert tm.eo_gap(y[::-1], p[::-1], a[::-1], agg=agg) == ref


def test_gaps_without_any_positive_equal_fairlearn():
    y, p, a = [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]
    with pytest.warns(tm.UndefinedRateWarning, match="TPR is undefined for groups 0, 1"):
        assert tm.eopp_gap(y, p, a) == equal_opportunity_difference(y, p, sensitive_features=a) == 0.0
    with pytest.warns(tm.UndefinedRateWarning):
        assert tm.eo_gap(y, p, a) == equalized_odds_difference(y, p, sensitive_features=a) == 0.5


def test_defined_rates_do_not_warn():
    y, _, yhat, a = _binary_case(0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tm.eo_gap(y, yhat, a)
        tm.eopp_gap(y, yhat, a)


def test_group_table_shows_undefined_rates_as_nan():
    t = tm.group_table(NO_POS["y"], NO_POS["p"], NO_POS["a"])
    assert np.isnan(t["tpr"][1]) and t["tpr"][0] == 0.5
    assert t["fpr"].tolist() == [0.5, 0.5]
    r = tm.group_rates(NO_NEG["y"], NO_NEG["p"], NO_NEG["a"])
    assert bool(torch.isnan(r["fpr"][1])) and float(r["fpr"][0]) == 0.5


# --- sensitive values of any type ----------------------------------------------------------

@pytest.mark.parametrize("write", [
    lambda codes: [["m", "f", "x"][c] for c in codes],
    lambda codes: np.array([["m", "f", "x"][c] for c in codes], dtype=object),
    lambda codes: pd.Series([["m", "f", "x"][c] for c in codes]),
    lambda codes: pd.Series([["m", "f", "x"][c] for c in codes], dtype="category"),
    lambda codes: np.asarray(codes) * 10 - 5,
    lambda codes: torch.as_tensor(codes),
    lambda codes: pd.Series(codes).to_numpy()[:, None],
], ids=["list-str", "object", "series-str", "category", "shifted-int", "tensor", "column"])
@pytest.mark.parametrize("seed", range(5))
def test_string_groups_give_the_same_gaps_as_integer_codes(write, seed):
    y, _, yhat, a = _binary_case(seed, 3)
    written = write(a)
    for gap in (tm.dp_gap, tm.eo_gap, tm.eopp_gap, tm.tpr_gap, tm.fpr_gap):
        assert gap(y, yhat, written) == gap(y, yhat, a)
    assert tm.eo_gap(y, yhat, written, agg="mean") == tm.eo_gap(y, yhat, a, agg="mean")
    sf = np.asarray(written).reshape(-1)
    ref = demographic_parity_difference(y, yhat, sensitive_features=sf)
    assert tm.dp_gap(y, yhat, written) == pytest.approx(ref, abs=1e-12)


def test_bool_groups_are_accepted():
    y, _, yhat, a = _binary_case(4, 2)
    assert tm.dp_gap(y, yhat, a == 1) == tm.dp_gap(y, yhat, a)
    assert tm.group_table(y, yhat, a == 1)["group"].tolist() == [False, True]


def test_group_table_keeps_group_names():
    t = tm.group_table([1, 0, 1, 0, 1], [1, 0, 0, 0, 1], pd.Series(["women", "women", "men", "men", "non-binary"]))
    assert t["group"].tolist() == ["men", "non-binary", "women"]
    assert t["count"].tolist() == [2, 1, 2]
    assert t["tpr"].tolist() == [0.0, 1.0, 1.0]


def test_compute_metrics_accepts_string_groups():
    y, p, _, a = _binary_case(5)
    probs = np.stack([1 - p, p], axis=1)
    names = ["dp_gap", "eo_gap", "eo_gap_mean", "eopp_gap"]
    assert tm.compute_metrics(names, y, probs, np.array(["g0", "g1"])[a]) == tm.compute_metrics(names, y, probs, a)


def test_sensitive_with_missing_values_is_an_error():
    with pytest.raises(ValueError, match="sensitive holds 1 missing values"):
        tm.dp_gap([0, 1, 1], [0, 1, 0], ["a", None, "b"])
    with pytest.raises(ValueError, match="sensitive holds 1 missing values"):
        tm.dp_gap([0, 1, 1], [0, 1, 0], [0.0, np.nan, 1.0])


def test_sensitive_values_must_be_sortable():
    with pytest.raises(ValueError, match=r"sensitive mixes values that cannot be sorted \(int, str\)"):
        tm.dp_gap([0, 1, 1], [0, 1, 0], np.array([1, "a", 1], dtype=object))


def test_sensitive_must_be_one_column():
    with pytest.raises(ValueError, match="sensitive must be one-dimensional"):
        tm.dp_gap([0, 1], [0, 1], [[0, 1], [1, 0]])


def test_group_names_need_integer_codes():
    with pytest.raises(ValueError, match="group_names labels integer group codes"):
        tm.group_table([1, 0], [1, 0], ["a", "b"], group_names=["x", "y"])
    with pytest.raises(ValueError, match="group_names has 2 names"):
        tm.group_table([1, 0, 1], [1, 0, 1], [0, 1, 2], group_names=["x", "y"])


# --- predicted labels, not probabilities --------------------------------------------------

def test_accuracy_refuses_probabilities():
    y, p, _, _ = _binary_case(2)
    with pytest.raises(ValueError, match=r"y_pred must be class labels \(integers 0..K-1\); got non-integer values"
                                         r".*Threshold probabilities first, e.g. \(p >= 0.5\), or take the argmax"):
        tm.accuracy(y, p)
    assert tm.accuracy(y, p >= 0.5) == skm.accuracy_score(y, p >= 0.5)


@pytest.mark.parametrize("call", [
    lambda p: tm.balanced_accuracy([0, 1, 1], p),
    lambda p: tm.f1_score([0, 1, 1], p),
    lambda p: tm.positive_rate(p),
    lambda p: tm.dp_gap([0, 1, 1], p, [0, 1, 1]),
    lambda p: tm.eo_gap([0, 1, 1], p, [0, 1, 1]),
    lambda p: tm.eopp_gap([0, 1, 1], p, [0, 1, 1]),
    lambda p: tm.group_table([0, 1, 1], p, [0, 1, 1]),
], ids=["balanced_accuracy", "f1", "positive_rate", "dp_gap", "eo_gap", "eopp_gap", "group_table"])
def test_label_metrics_refuse_probabilities(call):
    with pytest.raises(ValueError, match=r"y_pred must be .*labels.*non-integer values such as 0.25.*p >= 0.5"):
        call(np.array([0.25, 0.75, 1.0]))
    with pytest.raises(ValueError, match="y_pred must be .*labels"):
        call(torch.tensor([0.0, float("nan"), 1.0]))


def test_labels_may_be_bools_or_whole_floats():
    assert tm.accuracy([True, False, True], [1, 0, 0]) == pytest.approx(2 / 3)
    assert tm.accuracy([1, 0, 1], [1.0, 0.0, 0.0]) == pytest.approx(2 / 3)
    assert tm.f1_score(torch.tensor([True, False]), np.array([1.0, 1.0])) == skm.f1_score([1, 0], [1, 1])
    assert tm.dp_gap([1, 0, 1, 0], [True, False, False, False], [0, 0, 1, 1]) == 0.5


def test_values_outside_the_label_set_are_an_error():
    with pytest.raises(ValueError, match=r"y_pred must be class labels \(integers 0..K-1\); got -1"):
        tm.accuracy([0, 1], [0, -1])
    with pytest.raises(ValueError, match=r"y_pred must be binary labels \(0/1\); got 2"):
        tm.f1_score([0, 1], [0, 2])
    with pytest.raises(ValueError, match=r"y_true must be binary labels \(0/1\); got 2"):
        tm.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"y_true must be class labels \(integers 0..2\); got 3"):
        tm.expected_calibration_error([0, 3], np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="y_pred must be class labels .*non-numeric"):
        tm.accuracy([0, 1], np.array([0, "a"], dtype=object))


def test_score_and_probability_metrics_take_floats():
    y, p, _, _ = _binary_case(6)
    assert tm.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert tm.roc_auc(y, 10 * p - 3) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert 0 <= tm.expected_calibration_error(y, p) <= 1
    with pytest.raises(ValueError, match="probs must lie in"):
        tm.expected_calibration_error([0, 1], [0.5, float("nan")])
    with pytest.raises(ValueError, match="scores must be finite"):
        tm.roc_auc([0, 1], [0.5, float("nan")])


@pytest.mark.parametrize("seed", range(10))
def test_ood_auroc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    s_in, s_out = rng.normal(1, 1, 100), rng.normal(0, 1, 80)
    ref = skm.roc_auc_score(np.r_[np.ones(100), np.zeros(80)], np.r_[s_in, s_out])
    assert tm.ood_auroc(s_in, s_out) == pytest.approx(ref, abs=1e-12)


def test_ood_scores_are_higher_for_confident_logits():
    z = torch.tensor([[5.0, 0.0], [0.1, 0.0]])
    assert tm.msp_score(z)[0] > tm.msp_score(z)[1]
    assert tm.energy_score(z)[0] > tm.energy_score(z)[1]


# --- errors -----------------------------------------------------------------------------

def test_fairness_single_group_is_an_error():
    with pytest.raises(ValueError, match="single group"):
        tm.dp_gap([0, 1, 1], [0, 1, 0], [1, 1, 1])


def test_fairness_non_binary_prediction_is_an_error():
    with pytest.raises(ValueError, match="y_pred must be binary"):
        tm.dp_gap([0, 1, 1], [0, 2, 0], [0, 1, 1])


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same length"):
        tm.accuracy([0, 1], [0, 1, 1])


def test_auc_single_class_is_an_error():
    with pytest.raises(ValueError, match="single class"):
        tm.roc_auc([1, 1, 1], [0.2, 0.3, 0.4])


def test_eo_agg_must_be_known():
    with pytest.raises(ValueError, match="agg"):
        tm.eo_gap([0, 1], [0, 1], [0, 1], agg="median")


def test_unknown_metric_name_is_an_error():
    with pytest.raises(ValueError, match="unknown metric 'acuracy'.*Did you mean 'accuracy'"):
        tm.check_metrics(["acuracy"], n_classes=2, has_sensitive=True)


def test_metric_needing_binary_or_sensitive_is_refused():
    with pytest.raises(ValueError, match="needs a binary task"):
        tm.check_metrics(["auc"], n_classes=10, has_sensitive=False)
    with pytest.raises(ValueError, match="needs a sensitive attribute"):
        tm.check_metrics(["dp_gap"], n_classes=2, has_sensitive=False)


def test_compute_metrics_agrees_with_direct_calls():
    y, p, yhat, a = _binary_case(11)
    probs = np.stack([1 - p, p], axis=1)
    out = tm.compute_metrics(["accuracy", "error", "auc", "dp_gap", "eo_gap_mean", "positive_rate"], y, probs, a)
    pred = probs.argmax(1)
    assert out["accuracy"] == tm.accuracy(y, pred)
    assert out["error"] == pytest.approx(1.0 - skm.accuracy_score(y, pred))
    assert out["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert out["dp_gap"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=a))
    assert out["positive_rate"] == pytest.approx(pred.mean())


# --- per-group accuracy and base rate --------------------------------------------------------

@pytest.mark.parametrize("seed, n_groups", [(7, 3), (8, 2), (9, 5)])
def test_group_table_accuracy_and_base_rate_match_metricframe(seed, n_groups):
    y, _, yhat, a = _binary_case(seed, n_groups)
    mf = MetricFrame(metrics={"accuracy": skm.accuracy_score, "base_rate": lambda t, p: float(np.mean(t))},
                     y_true=y, y_pred=yhat, sensitive_features=a)
    table = tm.group_table(y, yhat, a).set_index("group")
    for col in ("accuracy", "base_rate"):
        np.testing.assert_allclose(table[col].to_numpy(), mf.by_group[col].to_numpy(), atol=1e-12)
    # the planted answer: group 0 is always right, group 1 always wrong
    t = tm.group_table([1, 0, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1])
    assert t["accuracy"].tolist() == [1.0, 0.0] and t["base_rate"].tolist() == [0.5, 0.5]


# --- ECE input checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("probs", [
    np.full((3, 2), 0.5),  # two-column probabilities of the wrong length
    np.full((5, 3), 1 / 3),
    np.full(3, 0.5),  # P(y=1) of the wrong length
    np.full((4, 2, 1), 0.5),  # the right length but three-dimensional
], ids=["2d-short", "2d-long", "1d-short", "3d"])
def test_ece_refuses_probs_of_the_wrong_shape(probs):
    with pytest.raises(ValueError, match=r"probs must be \(n,\) or \(n, C\) with n = len\(y_true\) = 4"):
        tm.expected_calibration_error([0, 1, 1, 0], probs)


@pytest.mark.parametrize("probs", [
    [0.5, 1.2, 0.3, 0.9],  # above 1 only
    [0.5, -0.2, 0.3, 0.9],  # below 0 only
    [[0.5, 0.5], [1.1, -0.1], [0.2, 0.8], [0.4, 0.6]],  # a row that sums to 1 with one entry past each side
    [[0.5, 0.5], [0.5, 1.3], [0.2, 0.8], [0.4, 0.6]],  # above 1 only, in a 2-D array
    [[0.5, 0.5], [-0.6, 0.4], [0.2, 0.8], [0.4, 0.6]],  # below 0 only
], ids=["1d-above", "1d-below", "2d-both", "2d-above", "2d-below"])
def test_ece_refuses_probabilities_out_of_range_on_either_side(probs):
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        tm.expected_calibration_error([0, 1, 1, 0], probs)


def test_ece_accepts_the_boundaries_of_the_range():
    # confidences of exactly 0 or 1 are valid probabilities; a confident right answer has ECE 0
    assert tm.expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    assert tm.expected_calibration_error([1, 0], [0.0, 1.0]) == 1.0


# -- device ------------------------------------------------------------------------------------

def _linear_case(seed=0, n=70, d=5):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    X = torch.randn(n, d, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    return model, X, y


def test_predict_logits_runs_on_the_models_device_and_returns_cpu_logits():
    model, X, _ = _linear_case()
    with torch.no_grad():
        expected = model(X)
    # batches of 16 against one pass over all 70 rows: float32 GEMMs of another shape may round the
    # last bits differently (kernel choice, threads, instruction set): a few ulp, about 1e-7 here; a
    # wrong or shifted row or a dropped bias moves these logits by more than 1e-2
    close = dict(rtol=1e-5, atol=1e-5)
    for device in (None, "cpu", torch.device("cpu")):
        out = tm.predict_logits(model, X, batch_size=16, device=device)
        assert out.device == torch.device("cpu") and not out.requires_grad
        torch.testing.assert_close(out, expected, **close)
    torch.testing.assert_close(tm.predict_logits(model, X.numpy(), batch_size=16), expected, **close)
    # a model without parameters runs on the CPU; no arithmetic, so the rows come back exactly
    assert torch.equal(tm.predict_logits(torch.nn.Flatten(), X), X)


def test_predict_logits_refuses_an_unavailable_or_foreign_device(monkeypatch):
    model, X, _ = _linear_case()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='cuda' is not available on this machine.*allowed here: 'cpu', 'auto'"):
        tm.predict_logits(model, X, device="cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        tm.evaluate(model, _split(X), device="gpu")
    # torch says CUDA is there (no GPU is touched): the model is still on the CPU, so it is refused
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match=r"device='cuda' but the model's parameters are on 'cpu'; move the model"):
        tm.predict_logits(model, X, device="cuda")
    with pytest.raises(ValueError, match="the model's parameters are on 'cpu'"):
        tm.adversarial_accuracy(model, X, torch.zeros(len(X), dtype=torch.long), 0.1, device="cuda")


def _split(X):
    from types import SimpleNamespace

    n = len(X)
    return SimpleNamespace(X=X.numpy(), y=np.arange(n) % 2, a=(np.arange(n) // 2) % 2)


def test_evaluate_passes_the_device_through():
    model, X, _ = _linear_case(1)
    split = _split(X)
    assert tm.evaluate(model, split, device="cpu") == tm.evaluate(model, split)


def test_attacks_with_a_device_match_the_default_and_stay_on_the_inputs_device():
    model, X, y = _linear_case(2)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    for attack in ("fgsm", "pgd"):
        a = tm.adversarial_accuracy(model, X, y, 0.3, attack=attack, steps=3, bounds=None, mask=mask, batch_size=32)
        b = tm.adversarial_accuracy(model, X.numpy(), y.numpy(), 0.3, attack=attack, steps=3, bounds=None,
                                    mask=mask, batch_size=32, device="cpu")
        assert a == b
    xa = tm.pgd(model, X, y, 0.3, steps=2, bounds=None, mask=mask, generator=torch.Generator().manual_seed(0))
    assert xa.device == X.device and torch.equal(xa[:, [2, 4]], X[:, [2, 4]])
    assert (xa - X).abs().max() <= 0.3 + 1e-6


def test_pgd_random_start_comes_from_the_generator():
    model, X, y = _linear_case(3)
    eps = 0.2

    def start(gen):  # one zero-size step leaves the random start
        return tm.pgd(model, X, y, eps, steps=1, step_size=1e-30, bounds=None, generator=gen)

    g = torch.Generator().manual_seed(5)
    expected = X + eps * (torch.rand(X.shape, generator=g) * 2 - 1)
    assert torch.allclose(start(torch.Generator().manual_seed(5)), expected, atol=1e-6)
    assert torch.equal(start(torch.Generator().manual_seed(5)), start(torch.Generator().manual_seed(5)))
    assert not torch.equal(start(torch.Generator().manual_seed(5)), start(torch.Generator().manual_seed(6)))


def test_shared_group_rates_are_per_input_and_end_with_the_block():
    from trustkit.metrics._fairness import group_rates, sharing_group_rates

    y = np.array([1, 0, 1, 0, 1, 0])
    a = np.array([0, 0, 0, 1, 1, 1])
    p1, p2 = np.array([1, 0, 1, 0, 0, 0]), np.array([0, 0, 0, 1, 1, 1])
    with sharing_group_rates():
        r1 = group_rates(y, p1, a)
        assert group_rates(y, p1, a) is r1  # the same inputs: computed once
        r2 = group_rates(y, p2, a)  # other predictions: their own rates
        assert r2["selection_rate"].tolist() == [0.0, 1.0]
        assert r1["selection_rate"].tolist() == [2 / 3, 0.0]
    assert group_rates(y, p1, a) is not r1  # outside the block nothing is kept


def test_compute_metrics_gaps_equal_fairlearn_when_they_share_rates():
    rng = np.random.default_rng(3)
    y, a = rng.integers(0, 2, 500), rng.integers(0, 3, 500)
    probs = torch.softmax(torch.as_tensor(rng.normal(size=(500, 2))), dim=1)
    pred = probs.argmax(1).numpy()
    out = tm.compute_metrics(["dp_gap", "eo_gap", "eopp_gap"], y, probs, a)
    assert out["dp_gap"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=a))
    assert out["eo_gap"] == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=a))
    assert out["eopp_gap"] == pytest.approx(equal_opportunity_difference(y, pred, sensitive_features=a))
