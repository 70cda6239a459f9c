r"""Group fairness metrics: one per-group computation, thin gap functions on top of it.

All gaps are "between groups" differences (largest minus smallest group rate), which is what
fairlearn's ``*_difference`` functions return by default; ``tests/test_metrics.py`` and
``tests/test_metrics_properties.py`` check the agreement on many random inputs.

Inputs
    ``y_true`` and ``y_pred`` hold binary labels 0/1 (ints, bools or whole-number floats);
    probabilities are refused: threshold them first, e.g. ``(p >= 0.5)``. ``sensitive`` holds one
    group value per row: integer codes, strings, bools or any sortable values, as a list, numpy
    array, pandas Series or torch tensor. Groups are the sorted distinct values, so the encoding is
    deterministic and a group keeps its name in :func:`group_table`.

Undefined rates
    A group without positives (``y_true == 1``) has no TPR, a group without negatives has no FPR.
    :func:`group_rates` and :func:`group_table` show such a rate as NaN. The gaps follow fairlearn
    (whose rates come from scikit-learn's ``confusion_matrix(normalize="true")``, which turns 0/0
    into 0): the undefined rate **counts as 0** and the group stays in the gap, so
    ``tpr_gap``, ``fpr_gap``, ``eopp_gap`` and ``eo_gap`` (``agg="worst_case"`` and ``"mean"``)
    equal fairlearn's numbers on every input and are never NaN. Each gap that meets an undefined
    rate emits an :class:`UndefinedRateWarning` naming the groups and the rate, because a 0 put in
    for a missing rate can make the gap as large as the largest defined rate.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .._validation import check_choice
from ._utility import _labels, _to_numpy

__all__ = [
    "group_rates", "group_table", "dp_gap", "eo_gap", "eopp_gap", "tpr_gap", "fpr_gap", "UndefinedRateWarning",
]

_RATES = ("count", "selection_rate", "tpr", "fpr", "accuracy", "base_rate")
_UNDEFINED = {
    "tpr": ("TPR", "it has no positives, y_true == 1"),
    "fpr": ("FPR", "it has no negatives, y_true == 0"),
}


# while a caller computes several gaps of the same predictions (compute_metrics), the per-group
# rates are computed once: keyed by the inputs' identities, which the caller keeps alive
_SHARED_RATES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("trustkit_group_rates", default=None)


@contextlib.contextmanager
def sharing_group_rates():
    """Inside the block, :func:`group_rates` of the same three input objects is computed once."""
    token = _SHARED_RATES.set({})
    try:
        yield
    finally:
        _SHARED_RATES.reset(token)


class UndefinedRateWarning(RuntimeWarning):
    """A group's TPR or FPR is undefined (the group has no positives or no negatives).

    The fairness gaps count such a rate as 0, as fairlearn does; the message names the groups.
    """


def _encode_groups(sensitive) -> tuple[np.ndarray, torch.Tensor]:
    """Sorted distinct values of ``sensitive`` and each row's position among them."""
    arr = _to_numpy(sensitive)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"sensitive must be one-dimensional (one group value per row); got shape {tuple(arr.shape)}. "
            "Combine several attributes into one first, e.g. strings such as 'sex=F|race=x'"
        )
    if arr.dtype.kind in "fcOmM":
        missing = pd.isna(arr)
        if missing.any():
            raise ValueError(
                f"sensitive holds {int(missing.sum())} missing values (NaN/None); give every row a group"
            )
    try:
        groups, codes = np.unique(arr, return_inverse=True)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in arr})
        raise ValueError(
            f"sensitive mixes values that cannot be sorted ({', '.join(kinds)}); use one type for all groups, "
            "e.g. all strings"
        ) from None
    return groups, torch.from_numpy(codes.reshape(-1).astype(np.int64))


def group_rates(y_true, y_pred, sensitive) -> dict:
    """Per-group rates as tensors indexed by group position (sorted distinct values of ``sensitive``).

    Returns a dict with ``groups`` (a numpy array of the sorted group values: codes, strings,
    bools...) and, per group, ``count``, ``selection_rate`` P(ŷ=1), ``tpr`` P(ŷ=1|y=1), ``fpr``
    P(ŷ=1|y=0), ``accuracy`` and ``base_rate`` P(y=1), each a double tensor. Undefined rates (the
    TPR of a group without positives, the FPR of a group without negatives) are NaN.

    >>> r = group_rates([1, 1, 0, 0], [1, 0, 1, 0], ["m", "m", "f", "f"])
    >>> r["groups"].tolist(), r["tpr"].tolist(), r["fpr"].tolist()
    (['f', 'm'], [nan, 0.5], [0.5, nan])
    """
    memo = _SHARED_RATES.get()
    key = (id(y_true), id(y_pred), id(sensitive))
    if memo is not None and key in memo:
        return memo[key][1]
    out = _group_rates(y_true, y_pred, sensitive)
    if memo is not None:
        memo[key] = ((y_true, y_pred, sensitive), out)  # the inputs stay alive, so their ids stay theirs
    return out


def _group_rates(y_true, y_pred, sensitive) -> dict:
    yt = _labels("y_true", y_true, binary=True)
    yp = _labels("y_pred", y_pred, binary=True)
    groups, inv = _encode_groups(sensitive)
    if not (len(yt) == len(yp) == len(inv)):
        raise ValueError(
            f"y_true, y_pred and sensitive must have the same length; got {len(yt)}, {len(yp)}, {len(inv)}"
        )
    if len(groups) < 2:
        raise ValueError(
            f"sensitive holds a single group ({groups.tolist()}); fairness gaps need at least two groups"
        )
    k = len(groups)

    def per_group(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # counts of 0/1 values: sums of whole numbers, exact in double whatever the order
        w = values.double() if mask is None else values.double() * mask
        num = torch.bincount(inv, weights=w, minlength=k)
        den = count if mask is None else torch.bincount(inv, weights=mask.double(), minlength=k)
        return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(den, float("nan")))

    everyone = None
    count = torch.bincount(inv, minlength=k).double()
    return {
        "groups": groups,
        "count": count,
        "selection_rate": per_group(yp, everyone),
        "tpr": per_group(yp, yt == 1),
        "fpr": per_group(yp, yt == 0),
        "accuracy": per_group((yp == yt).long(), everyone),
        "base_rate": per_group(yt, everyone),
    }


def group_table(y_true, y_pred, sensitive, *, group_names: Sequence[str] | None = None) -> pd.DataFrame:
    """A per-group table: size, selection rate, TPR, FPR, accuracy, base rate.

    Groups are the sorted distinct values of ``sensitive`` and keep their names (strings stay
    strings). ``group_names[k]`` labels group code ``k`` when ``sensitive`` holds integer codes.
    An undefined rate (TPR of a group without positives, FPR of a group without negatives) is NaN
    here, although the gaps count it as 0 (see :func:`tpr_gap`).

    >>> group_table([1, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1], group_names=["A", "B"])[["group", "tpr"]]
      group  tpr
    0     A  1.0
    1     B  0.0
    >>> group_table([1, 1, 0, 0], [1, 0, 1, 0], ["m", "m", "f", "f"])[["group", "tpr", "fpr"]]
      group  tpr  fpr
    0     f  NaN  0.5
    1     m  0.5  NaN
    """
    r = group_rates(y_true, y_pred, sensitive)
    groups = r["groups"].tolist()
    if group_names is not None:
        if r["groups"].dtype.kind not in "iub":
            raise ValueError(
                f"group_names labels integer group codes 0..K-1, but sensitive holds other values ({groups}); "
                "leave group_names out to use those values as names"
            )
        if min(groups) < 0 or max(groups) >= len(group_names):
            raise ValueError(
                f"group_names has {len(group_names)} names, so codes must lie in 0..{len(group_names) - 1}; "
                f"sensitive holds codes {groups}"
            )
        groups = [group_names[int(g)] for g in groups]
    data = {"group": groups}
    for name in _RATES:
        data[name] = r[name].numpy()
    df = pd.DataFrame(data)
    df["count"] = df["count"].astype(int)
    return df


def _gap(r: dict, rate: str, *, stacklevel: int) -> float:
    """Largest minus smallest group ``rate``; an undefined rate counts as 0 (as fairlearn), with a warning."""
    values = r[rate]
    undefined = torch.isnan(values)
    if bool(undefined.any()):
        label, why = _UNDEFINED[rate]
        names = [r["groups"].tolist()[i] for i in torch.nonzero(undefined).reshape(-1).tolist()]
        warnings.warn(
            f"{label} is undefined for group{'s' if len(names) > 1 else ''} "
            f"{', '.join(repr(n) for n in names)} ({why}); it counts as 0 in the {label} gap, as in fairlearn",
            UndefinedRateWarning,
            stacklevel=stacklevel + 1,
        )
        values = torch.where(undefined, torch.zeros_like(values), values)
    return float(values.max() - values.min())


def dp_gap(y_true, y_pred, sensitive) -> float:
    r"""Demographic-parity gap :math:`\max_g P(\hat y=1|a=g) - \min_g P(\hat y=1|a=g)`.

    Equals fairlearn's ``demographic_parity_difference``. ``y_pred`` holds labels 0/1 and
    ``sensitive`` any group values (codes, strings, bools).

    >>> dp_gap([0, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 1])
    0.5
    >>> dp_gap([0, 0, 0, 0], [1, 1, 0, 1], ["m", "m", "f", "f"])
    0.5
    """
    return _gap(group_rates(y_true, y_pred, sensitive), "selection_rate", stacklevel=2)


def tpr_gap(y_true, y_pred, sensitive) -> float:
    r"""Largest minus smallest true-positive rate over groups, :math:`\max_g \mathrm{TPR}_g - \min_g \mathrm{TPR}_g`.

    A group without positives counts with TPR 0, as in fairlearn, and an
    :class:`UndefinedRateWarning` names it.

    >>> tpr_gap([1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1])
    0.5
    """
    return _gap(group_rates(y_true, y_pred, sensitive), "tpr", stacklevel=2)


def fpr_gap(y_true, y_pred, sensitive) -> float:
    r"""Largest minus smallest false-positive rate over groups.

    A group without negatives counts with FPR 0, as in fairlearn, and an
    :class:`UndefinedRateWarning` names it.

    >>> fpr_gap([0, 1, 0, 1], [1, 1, 0, 1], [0, 0, 1, 1])
    1.0
    """
    return _gap(group_rates(y_true, y_pred, sensitive), "fpr", stacklevel=2)


def eopp_gap(y_true, y_pred, sensitive) -> float:
    """Equal-opportunity gap: the TPR gap, fairlearn's ``equal_opportunity_difference``.

    A group without positives counts with TPR 0 (see :func:`tpr_gap`).

    >>> eopp_gap([1, 1, 1, 0], [1, 0, 1, 0], [0, 0, 1, 1])
    0.5
    """
    return _gap(group_rates(y_true, y_pred, sensitive), "tpr", stacklevel=2)


def eo_gap(y_true, y_pred, sensitive, *, agg: str = "worst_case") -> float:
    r"""Equalised-odds gap from the TPR gap and the FPR gap, fairlearn's ``equalized_odds_difference``.

    ``agg="worst_case"`` returns :math:`\max(\Delta\mathrm{TPR}, \Delta\mathrm{FPR})` (fairlearn's
    default); ``agg="mean"`` returns their mean, the EOD of the EfficientTrust (B) proposal.
    A group without positives counts with TPR 0 and a group without negatives with FPR 0, as in
    fairlearn, with an :class:`UndefinedRateWarning`; the result is never NaN.

    >>> eo_gap([1, 0, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1], agg="mean")
    1.0
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", UndefinedRateWarning)
    ...     eo_gap([1, 1, 0, 0, 0, 0], [1, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1])  # group 1: no positives
    0.5
    """
    check_choice("agg", agg, ("worst_case", "mean"))
    r = group_rates(y_true, y_pred, sensitive)
    tpr = _gap(r, "tpr", stacklevel=2)
    fpr = _gap(r, "fpr", stacklevel=2)
    return max(tpr, fpr) if agg == "worst_case" else (tpr + fpr) / 2
