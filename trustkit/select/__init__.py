"""VTruST building blocks: per-sample gradient value features and (online) orthogonal matching pursuit.

Issue 3 builds the full method (value functions, baselines, SAug, explanations) on these.

>>> import numpy as np
>>> from trustkit.select import omp
>>> X = np.eye(4)
>>> omp(X, np.array([0.0, 3.0, 0.0, 1.0]), 1).support
[1]
"""

from ._features import normalise_columns, per_sample_grads, random_projection, value_features
from ._omp import OMPResult, OnlineOMP, omp

__all__ = ["per_sample_grads", "random_projection", "value_features", "normalise_columns",
           "omp", "OMPResult", "OnlineOMP"]
