"""VTruST building blocks: per-sample gradient value features and (online) orthogonal matching pursuit.

:class:`VTruST` runs the selection during an ERM run; :func:`subset_task` retrains on the result.
:func:`feature_rank` measures the rank the features can have (it sizes VTruST's atoms).
Baselines: :func:`random_subset`, :func:`tracin_topk` (plain or class-stratified), :func:`ssfr_subset`,
:func:`fairlearn_reference`; field baselines (cleanlab, pyDVL's Data-OOB and KNN-Shapley): :func:`cleanlab_subset`,
:func:`data_oob_subset`, :func:`knn_shapley_subset`; explanations: :func:`cf_gap`, :func:`data_map`; augmentation pools: :func:`augmented_task`
(UAug with :func:`uniform_counts`) and :func:`saug` (Algorithm 3).

>>> import numpy as np
>>> from trustkit.select import omp
>>> X = np.eye(4)
>>> omp(X, np.array([0.0, 3.0, 0.0, 1.0]), 1).support
[1]
"""

from ._baselines import fairlearn_reference, random_subset, tracin_topk
from ._explain import cf_gap, data_map
from ._field import FIELD_SELECTORS, cleanlab_subset, data_oob_subset, knn_shapley_subset
from ._features import label_values, normalise_columns, per_sample_grads, random_projection, value_features
from ._omp import OMPResult, OnlineOMP, omp
from ._saug import SAugResult, augmented_task, robust_accuracies, saug, uniform_counts
from ._ssfr import ssfr_subset
from ._value import (
    VALUE_FUNCTIONS,
    ValueComponents,
    ValueFunction,
    accuracy_value,
    composite_value,
    fairness_value,
    robustness_value,
)
from ._vtrust import SelectionResult, VTruST, feature_rank, make_value_function, subset_task

__all__ = ["per_sample_grads", "random_projection", "value_features", "normalise_columns", "label_values",
           "omp", "OMPResult", "OnlineOMP", "VALUE_FUNCTIONS", "ValueFunction", "ValueComponents",
           "accuracy_value", "fairness_value", "robustness_value", "composite_value",
           "VTruST", "SelectionResult", "subset_task", "make_value_function", "feature_rank",
           "random_subset", "tracin_topk", "fairlearn_reference", "ssfr_subset",
           "cleanlab_subset", "data_oob_subset", "knn_shapley_subset", "FIELD_SELECTORS", "cf_gap", "data_map",
           "augmented_task", "uniform_counts", "saug", "SAugResult", "robust_accuracies"]
