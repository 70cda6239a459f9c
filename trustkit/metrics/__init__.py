"""Metrics of utility, fairness, robustness and OOD detection, each a thin function.

>>> from trustkit.metrics import dp_gap, eo_gap
>>> dp_gap([1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1]), eo_gap([1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1])
(1.0, 1.0)
"""

from ._evaluate import DEFAULT_METRICS, METRICS, check_metrics, compute_metrics, default_metrics, evaluate
from ._fairness import UndefinedRateWarning, dp_gap, eo_gap, eopp_gap, fpr_gap, group_rates, group_table, tpr_gap
from ._ood import energy_score, msp_score, ood_auroc
from ._profile import DEFAULT_EPS, trust_profile
from ._robustness import (
    adversarial_accuracy,
    attack_geometry,
    attack_table,
    corruption_table,
    feature_noise_accuracy,
    fgsm,
    pgd,
    predict_logits,
)
from ._utility import (
    accuracy,
    balanced_accuracy,
    expected_calibration_error,
    f1_score,
    positive_rate,
    roc_auc,
)

__all__ = [
    "accuracy", "balanced_accuracy", "roc_auc", "f1_score", "expected_calibration_error", "positive_rate",
    "group_rates", "group_table", "dp_gap", "eo_gap", "eopp_gap", "tpr_gap", "fpr_gap", "UndefinedRateWarning",
    "predict_logits", "fgsm", "pgd", "adversarial_accuracy", "attack_geometry", "attack_table", "corruption_table",
    "feature_noise_accuracy", "msp_score", "energy_score", "ood_auroc",
    "METRICS", "DEFAULT_METRICS", "evaluate", "compute_metrics", "check_metrics", "default_metrics",
    "trust_profile", "DEFAULT_EPS",
]
