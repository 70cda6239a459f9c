"""Property tests: every metric against fairlearn, scikit-learn or torchmetrics on small random inputs.

Hypothesis draws the edge cases on purpose: (label, group) cells left empty, groups of one row,
more than two groups, predictions or labels that are all 0 or all 1. ``derandomize=True`` makes the
drawn examples the same on every run.
"""

import warnings

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
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error

from trustkit import metrics as tm

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True)
SLOW_REFERENCE = settings(PROPERTY, max_examples=100)  # fairlearn's MetricFrame takes milliseconds per call
FAIRLEARN_GAPS = {
    "dp_gap": lambda y, p, a: demographic_parity_difference(y, p, sensitive_features=a),
    "eo_gap": lambda y, p, a: equalized_odds_difference(y, p, sensitive_features=a),
    "eo_gap_mean": lambda y, p, a: equalized_odds_difference(y, p, sensitive_features=a, agg="mean"),
    "eopp_gap": lambda y, p, a: equal_opportunity_difference(y, p, sensitive_features=a),
}
TRUSTKIT_GAPS = {
    "dp_gap": tm.dp_gap,
    "eo_gap": tm.eo_gap,
    "eo_gap_mean": lambda y, p, a: tm.eo_gap(y, p, a, agg="mean"),
    "eopp_gap": tm.eopp_gap,
}


def _binary_column(draw, n):
    """0/1 values of length ``n``: all 0, all 1, or mixed."""
    kind = draw(st.sampled_from(["mixed", "mixed", "mixed", "zeros", "ones"]))
    if kind == "zeros":
        return np.zeros(n, dtype=np.int64)
    if kind == "ones":
        return np.ones(n, dtype=np.int64)
    return np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)


@st.composite
def fairness_cases(draw):
    """(y_true, y_pred, group codes) with 2 to 4 groups, each present at least once."""
    k = draw(st.integers(2, 4))
    n = draw(st.integers(k, 20))
    codes = list(range(k)) + draw(st.lists(st.integers(0, k - 1), min_size=n - k, max_size=n - k))
    order = draw(st.permutations(range(n)))
    a = np.asarray(codes, dtype=np.int64)[list(order)]
    return _binary_column(draw, n), _binary_column(draw, n), a


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


# --- fairness ----------------------------------------------------------------------------

@SLOW_REFERENCE
@given(fairness_cases())
def test_gaps_equal_fairlearn(case):
    y, p, a = case
    for name, ours in TRUSTKIT_GAPS.items():
        got = _quiet(ours, y, p, a)
        assert np.isfinite(got), name
        assert got == pytest.approx(_quiet(FAIRLEARN_GAPS[name], y, p, a), abs=1e-12), name


@PROPERTY
@given(fairness_cases(), st.sampled_from(["str", "object", "bool", "shifted", "tensor"]))
def test_gaps_do_not_depend_on_how_groups_are_written(case, kind):
    y, p, a = case
    if kind == "bool":
        a = a % 2 == 1
        assume(0 < a.sum() < len(a))
        codes = a.astype(np.int64)
    else:
        codes = a
    written = {
        "str": np.array([f"g{c}" for c in codes]),
        "object": np.array([["zeta", "alpha", "mid", "x"][c] for c in codes], dtype=object),
        "bool": a,
        "shifted": codes * -7 + 3,
        "tensor": torch.as_tensor(codes),
    }[kind]
    for name, ours in TRUSTKIT_GAPS.items():
        assert _quiet(ours, y, p, written) == _quiet(ours, y, p, codes), name


@PROPERTY
@given(fairness_cases())
def test_undefined_rates_warn_exactly_when_a_group_lacks_a_label(case):
    y, p, a = case
    no_pos = sorted({int(g) for g in np.unique(a) if not (y[a == g] == 1).any()})
    no_neg = sorted({int(g) for g in np.unique(a) if not (y[a == g] == 0).any()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tm.eo_gap(y, p, a)
    messages = [str(w.message) for w in caught if issubclass(w.category, tm.UndefinedRateWarning)]
    tpr_msgs = [m for m in messages if m.startswith("TPR")]
    fpr_msgs = [m for m in messages if m.startswith("FPR")]
    assert len(tpr_msgs) == (1 if no_pos else 0)
    assert len(fpr_msgs) == (1 if no_neg else 0)
    for label, msgs, groups in (("TPR", tpr_msgs, no_pos), ("FPR", fpr_msgs, no_neg)):
        if groups:
            plural = "s" if len(groups) > 1 else ""
            assert msgs[0].split(" (")[0] == f"{label} is undefined for group{plural} {', '.join(map(str, groups))}"


@SLOW_REFERENCE
@given(fairness_cases())
def test_group_table_equals_metricframe_where_defined_and_nan_elsewhere(case):
    y, p, a = case
    rates = {"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate}
    mf = _quiet(lambda: MetricFrame(metrics=rates, y_true=y, y_pred=p, sensitive_features=a))
    table = tm.group_table(y, p, a).set_index("group")
    np.testing.assert_allclose(table["selection_rate"], mf.by_group["selection_rate"], atol=1e-12)
    for rate, label in (("tpr", 1), ("fpr", 0)):
        has = np.array([(y[a == g] == label).any() for g in table.index])
        assert table[rate][~has].isna().all()
        np.testing.assert_allclose(table[rate][has], mf.by_group[rate].to_numpy()[has], atol=1e-12)
        # fairlearn's value for an undefined rate, which is what the gaps use
        np.testing.assert_array_equal(mf.by_group[rate].to_numpy()[~has], 0.0)
    assert table["count"].tolist() == np.bincount(a).tolist()


# --- utility -----------------------------------------------------------------------------

@st.composite
def label_pairs(draw, n_classes=None):
    k = n_classes or draw(st.integers(2, 4))
    n = draw(st.integers(1, 25))
    if k == 2:
        return _binary_column(draw, n), _binary_column(draw, n)
    labels = st.lists(st.integers(0, k - 1), min_size=n, max_size=n)
    return np.array(draw(labels)), np.array(draw(labels))


@PROPERTY
@given(label_pairs())
def test_accuracy_and_balanced_accuracy_equal_sklearn(pair):
    y, p = pair
    assert tm.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
    assert tm.balanced_accuracy(y, p) == pytest.approx(_quiet(skm.balanced_accuracy_score, y, p), abs=1e-12)


@PROPERTY
@given(label_pairs(n_classes=2))
def test_f1_and_positive_rate_equal_sklearn(pair):
    y, p = pair
    assert tm.f1_score(y, p) == pytest.approx(skm.f1_score(y, p, zero_division=0), abs=1e-12)
    assert tm.positive_rate(p) == pytest.approx(np.mean(p == 1), abs=1e-12)


@PROPERTY
@given(st.data())
def test_roc_auc_equals_sklearn_when_both_classes_occur(data):
    n = data.draw(st.integers(0, 20))
    y = np.array([0, 1] + data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    y = y[list(data.draw(st.permutations(range(len(y)))))]
    # few distinct values, so ties are common
    scores = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5001, 0.9, 1.0, -3.0, 7.5]),
                                         min_size=len(y), max_size=len(y))))
    assert tm.roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)


def _edges_distance(conf, n_bins):
    return np.min(np.abs(conf[:, None] - np.arange(n_bins + 1)[None, :] / n_bins))


@PROPERTY
@given(st.data(), st.sampled_from([1, 5, 10, 15]))
def test_ece_binary_vector_equals_torchmetrics(data, n_bins):
    # probabilities on the grid (j + 0.5) / 998, which never meets a bin edge k/n_bins (torchmetrics
    # puts an edge in the bin above, Guo et al. and trustkit in the bin below)
    n = data.draw(st.integers(1, 25))
    p = (np.array(data.draw(st.lists(st.integers(0, 997), min_size=n, max_size=n))) + 0.5) / 998
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    two = torch.tensor(np.stack([1 - p, p], axis=1))
    ref = multiclass_calibration_error(two, torch.tensor(y), num_classes=2, n_bins=n_bins, norm="l1")
    assert tm.expected_calibration_error(y, p, n_bins=n_bins) == pytest.approx(float(ref), abs=1e-6)


@PROPERTY
@given(st.data(), st.integers(2, 5), st.sampled_from([10, 15]))
def test_ece_multiclass_equals_torchmetrics(data, c, n_bins):
    n = data.draw(st.integers(1, 25))
    logits = np.array(data.draw(st.lists(st.lists(st.floats(-4, 4), min_size=c, max_size=c), min_size=n, max_size=n)))
    logits = logits + np.sqrt(2) * 1e-3 * np.arange(c)  # break exact ties between classes
    probs = torch.softmax(torch.tensor(logits), dim=1)
    assume(_edges_distance(probs.max(1).values.numpy(), n_bins) > 1e-6)
    y = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    ref = multiclass_calibration_error(probs, torch.tensor(y), num_classes=c, n_bins=n_bins, norm="l1")
    assert tm.expected_calibration_error(y, probs.numpy(), n_bins=n_bins) == pytest.approx(float(ref), abs=1e-6)


# --- predictions must be labels ----------------------------------------------------------

LABEL_METRICS = {
    "accuracy": lambda y, p: tm.accuracy(y, p),
    "balanced_accuracy": lambda y, p: tm.balanced_accuracy(y, p),
    "f1_score": lambda y, p: tm.f1_score(y, p),
    "positive_rate": lambda y, p: tm.positive_rate(p),
    "dp_gap": lambda y, p: tm.dp_gap(y, p, np.arange(len(y)) % 2),
    "eo_gap": lambda y, p: tm.eo_gap(y, p, np.arange(len(y)) % 2),
    "eopp_gap": lambda y, p: tm.eopp_gap(y, p, np.arange(len(y)) % 2),
}


@PROPERTY
@given(st.data(), st.sampled_from(sorted(LABEL_METRICS)))
def test_label_metrics_refuse_probabilities(data, name):
    n = data.draw(st.integers(2, 12))
    y = np.arange(n) % 2
    probs = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    assume((probs != np.round(probs)).any())
    with pytest.raises(ValueError, match=r"y_pred must be .*labels.*Threshold probabilities first, e.g. \(p >= 0.5\)"):
        LABEL_METRICS[name](y, probs)
    # the thresholded probabilities are labels, as bools or as ints
    assert _quiet(LABEL_METRICS[name], y, probs >= 0.5) == _quiet(LABEL_METRICS[name], y, (probs >= 0.5).astype(int))
