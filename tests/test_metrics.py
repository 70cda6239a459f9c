"""Every metric against an independent reference on many random inputs."""

import numpy as np
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
    out = tm.compute_metrics(["accuracy", "auc", "dp_gap", "eo_gap_mean", "positive_rate"], y, probs, a)
    pred = probs.argmax(1)
    assert out["accuracy"] == tm.accuracy(y, pred)
    assert out["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert out["dp_gap"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=a))
    assert out["positive_rate"] == pytest.approx(pred.mean())
