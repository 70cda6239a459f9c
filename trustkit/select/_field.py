"""Field baselines for subset selection: what a practitioner would take off the shelf.

Each keeps the ``round(fraction · n)`` training points (at least one) a published data-cleaning or
data-valuation method rates highest, with the same call as the other baselines
(``task, fraction, *, seed`` → sorted indices into ``task.train``; ``return_scores=True`` also
gives every training point's score, higher = kept first). They see the features and labels only:
no sensitive attribute, no value function, no trustkit model (images are flattened to rows).

* :func:`cleanlab_subset` — confident learning (Northcutt, Jiang & Chuang, JAIR 2021) through
  ``cleanlab.filter.find_label_issues`` on out-of-fold predicted probabilities of a logistic
  regression (``folds``-fold stratified cross-validation, seeded). Suspected label issues are
  dropped; the rest are ranked by self-confidence (the out-of-fold probability of the given
  label). If fewer than the fraction remain, the least suspect issues (highest self-confidence)
  fill the remaining places. Score = self-confidence.
* :func:`data_oob_subset` — Data-OOB (Kwon & Zou, ICML 2023) with pyDVL's ``DataOOBValuation``: a
  point's value is the mean 0/1 accuracy on it of the bagged trees that did not see it (a
  ``BaggingClassifier`` of depth-limited decision trees, seeded). Score = that value.
* :func:`knn_shapley_subset` — exact KNN-Shapley (Jia et al., VLDB 2019) with pyDVL's
  ``KNNShapleyValuation``: the Shapley value of each training point for a ``n_neighbors``-NN
  classifier's accuracy on (a seeded subsample of at most ``max_val`` rows of) the validation
  split. Score = that value.

Cost on one core (``OMP_NUM_THREADS=1``, measured on a shared 2-core machine): COMPAS train
(3,702 × 9) about 0.1 s / 1.1 s / 1.3 s, Adult train (27,132 × 85) about 0.8 s / 9 s / 10 s for
cleanlab / Data-OOB / KNN-Shapley with the defaults. KNN-Shapley is linear in
``n_train × max_val`` (a Python loop inside pyDVL), Data-OOB in ``n_estimators``.

None of them keeps the class balance: on Adult (25% positives) the kept 60% hold 10% (cleanlab),
14% (Data-OOB) and 9% (KNN-Shapley) positives, since hard or minority-class points look like noise.

pyDVL is imported lazily: it is installed without its declared dependencies (see
``requirements-nodeps.txt``) and pulls in cvxpy on import.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import check_fraction, check_int
from ..data import Task

__all__ = ["cleanlab_subset", "data_oob_subset", "knn_shapley_subset", "FIELD_SELECTORS"]


def _table(split) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(split.X, dtype=np.float64).reshape(len(split), -1)
    return X, np.asarray(split.y, dtype=np.int64)


def _top(scores: np.ndarray, fraction: float, *, first: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the ``round(fraction · n)`` highest scores (ties: lower index first);
    rows where ``first`` is True are ranked before all others."""
    n = len(scores)
    k = max(1, int(round(fraction * n)))
    order = np.lexsort((np.arange(n), -scores)) if first is None else np.lexsort((np.arange(n), -scores, ~first))
    return np.sort(order[:k])


def _check_common(task: Task, fraction: float, seed) -> None:
    if not isinstance(task, Task):
        raise TypeError(f"task must be a trustkit.data.Task; got {type(task).__name__}")
    check_fraction("fraction", fraction)
    check_int("seed", seed, minimum=0)
    if len(np.unique(task.train.y)) < 2:
        raise ValueError("the training split has one class only; these selectors need at least two")


def cleanlab_subset(task: Task, fraction: float, *, folds: int = 5, seed: int = 0, return_scores: bool = False):
    """Keep the ``fraction`` of training points cleanlab trusts most (see the module docstring).

    Parameters
    ----------
    task : Task
    fraction : float in (0, 1)
    folds : int ≥ 2
        Cross-validation folds for the out-of-fold probabilities.
    seed : int
        Seeds the folds (and nothing else: the logistic regression is deterministic).
    return_scores : bool
        Also return every training point's self-confidence.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> task = load_german(seed=0)
    >>> idx = cleanlab_subset(task, 0.5)
    >>> len(idx)
    300
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_self_confidence_for_each_label
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    _check_common(task, fraction, seed)
    check_int("folds", folds, minimum=2)
    X, y = _table(task.train)
    smallest = int(min(c for c in np.bincount(y) if c > 0))
    if smallest < folds:
        raise ValueError(f"folds must be at most the smallest class's count ({smallest}); got {folds}")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of single folds
        probs = cross_val_predict(LogisticRegression(max_iter=1000), X, y, cv=cv, method="predict_proba")
    if probs.shape[1] != int(y.max()) + 1:
        raise ValueError("labels must be 0..K-1 with every class present in the training split")
    issues = find_label_issues(y, probs, n_jobs=1)
    scores = get_self_confidence_for_each_label(y, probs)
    keep = _top(scores, fraction, first=~issues)
    return (keep, scores) if return_scores else keep


def _values(result, n: int) -> np.ndarray:
    """A pyDVL ``ValuationResult``'s values in data-index order (NaN where a point got no count)."""
    out = np.full(n, np.nan)
    out[np.asarray(result.indices, dtype=int)] = result.values
    counts = np.zeros(n, dtype=int)
    counts[np.asarray(result.indices, dtype=int)] = result.counts
    out[counts == 0] = np.nan
    return out


def data_oob_subset(task: Task, fraction: float, *, n_estimators: int = 100, max_depth: int | None = 8,
                    seed: int = 0, return_scores: bool = False):
    """Keep the ``fraction`` of training points with the highest Data-OOB value (pyDVL).

    Parameters
    ----------
    task : Task
    fraction : float in (0, 1)
    n_estimators : int
        Bagged decision trees (bootstrap samples of the whole training split).
    max_depth : int or None
        Depth limit of each tree (``None``: grown to purity, slower on large splits).
    seed : int
        Seeds the bootstrap samples and the trees.
    return_scores : bool
        Also return every training point's value (its mean out-of-bag accuracy). A point that no
        tree left out (probability ``0.37^n_estimators``) gets ``NaN`` and ranks last.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> idx = data_oob_subset(load_german(seed=0), 0.5, n_estimators=20)
    >>> len(idx)
    300
    """
    from sklearn.ensemble import BaggingClassifier
    from sklearn.tree import DecisionTreeClassifier

    _check_common(task, fraction, seed)
    check_int("n_estimators", n_estimators, minimum=2)
    if max_depth is not None:
        check_int("max_depth", max_depth, minimum=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pydvl.valuation import Dataset, DataOOBValuation

    X, y = _table(task.train)
    model = BaggingClassifier(DecisionTreeClassifier(max_depth=max_depth, random_state=seed), n_estimators=n_estimators,
                              bootstrap=True, random_state=seed, n_jobs=1).fit(X, y)
    valuation = DataOOBValuation(model).fit(Dataset(X, y))
    scores = _values(valuation.result, len(y))
    keep = _top(np.nan_to_num(scores, nan=-np.inf), fraction)
    return (keep, scores) if return_scores else keep


def knn_shapley_subset(task: Task, fraction: float, *, n_neighbors: int = 10, max_val: int | None = 300,
                       seed: int = 0, return_scores: bool = False):
    """Keep the ``fraction`` of training points with the highest KNN-Shapley value (pyDVL).

    Parameters
    ----------
    task : Task
    fraction : float in (0, 1)
    n_neighbors : int
        K of the KNN classifier whose validation accuracy is the utility.
    max_val : int or None
        Validation rows the utility is measured on: a seeded, label-stratified subsample of at
        most this many (``None``: all of them). The cost is linear in it.
    seed : int
        Seeds the validation subsample.
    return_scores : bool
        Also return every training point's Shapley value.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> idx = knn_shapley_subset(load_german(seed=0), 0.5, max_val=50)
    >>> len(idx)
    300
    """
    from sklearn.neighbors import KNeighborsClassifier

    _check_common(task, fraction, seed)
    check_int("n_neighbors", n_neighbors, minimum=1)
    if max_val is not None:
        check_int("max_val", max_val, minimum=1)
    if len(task.val) == 0:
        raise ValueError("the validation split is empty; KNN-Shapley measures its utility there")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pydvl.valuation import Dataset, KNNShapleyValuation

    X, y = _table(task.train)
    Xv, yv = _table(task.val)
    if max_val is not None and max_val < len(yv):
        from sklearn.model_selection import train_test_split

        try:
            rows, _ = train_test_split(np.arange(len(yv)), train_size=max_val, random_state=seed, stratify=yv)
        except ValueError:  # a class too rare to stratify: a plain draw
            rows = np.random.default_rng(seed).choice(len(yv), max_val, replace=False)
        rows = np.sort(rows)
        Xv, yv = Xv[rows], yv[rows]
    knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, len(y)))
    valuation = KNNShapleyValuation(knn, test_data=Dataset(Xv, yv), progress=False).fit(Dataset(X, y))
    scores = _values(valuation.result, len(y))
    keep = _top(np.nan_to_num(scores, nan=-np.inf), fraction)
    return (keep, scores) if return_scores else keep


#: method name (as ``select_subset`` spells it) → selector
FIELD_SELECTORS = {"cleanlab": cleanlab_subset, "data_oob": data_oob_subset, "knn_shapley": knn_shapley_subset}
