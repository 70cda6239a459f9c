"""Group fairness metrics: one per-group computation, thin gap functions on top of it.

All gaps are "between groups" differences (largest minus smallest group rate), which is what
fairlearn's ``*_difference`` functions return by default; ``tests/test_metrics.py`` checks the
agreement on many random inputs. A group whose rate is undefined (e.g. no positives, so no TPR)
is left out of that gap, as fairlearn does.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import pandas as pd
import torch

from .._validation import check_choice

__all__ = ["group_rates", "group_table", "dp_gap", "eo_gap", "eopp_gap", "tpr_gap", "fpr_gap"]

_RATES = ("count", "selection_rate", "tpr", "fpr", "accuracy", "base_rate")


def group_rates(y_true, y_pred, sensitive) -> dict[str, torch.Tensor]:
    """Per-group rates as tensors indexed by group position (sorted unique values of ``sensitive``).

    Returns a dict with ``groups`` (the sorted group values) and, per group, ``count``,
    ``selection_rate`` P(ŷ=1), ``tpr`` P(ŷ=1|y=1), ``fpr`` P(ŷ=1|y=0), ``accuracy`` and
    ``base_rate`` P(y=1). Undefined rates are NaN.
    """
    yt = torch.as_tensor(y_true).long().reshape(-1)
    yp = torch.as_tensor(y_pred).long().reshape(-1)
    a = torch.as_tensor(sensitive).reshape(-1)
    if not (len(yt) == len(yp) == len(a)):
        raise ValueError(
            f"y_true, y_pred and sensitive must have the same length; got {len(yt)}, {len(yp)}, {len(a)}"
        )
    if len(yt) == 0:
        raise ValueError("fairness metrics need at least one prediction")
    for name, t in (("y_true", yt), ("y_pred", yp)):
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name} must be binary (0/1) for fairness metrics")
    groups, inv = torch.unique(a, return_inverse=True)
    if len(groups) < 2:
        raise ValueError(
            f"sensitive holds a single group ({groups.tolist()}); fairness gaps need at least two groups"
        )
    k = len(groups)

    def per_group(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        num = torch.zeros(k, dtype=torch.double).scatter_add_(0, inv[mask], values[mask].double())
        den = torch.zeros(k, dtype=torch.double).scatter_add_(0, inv[mask], torch.ones(int(mask.sum()), dtype=torch.double))
        return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(den, float("nan")))

    everyone = torch.ones_like(yt, dtype=torch.bool)
    count = torch.zeros(k, dtype=torch.double).scatter_add_(0, inv, torch.ones(len(yt), dtype=torch.double))
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

    ``group_names[k]`` labels group code ``k`` when ``sensitive`` holds integer codes.

    >>> group_table([1, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1], group_names=["A", "B"])[["group", "tpr"]]
      group  tpr
    0     A  1.0
    1     B  0.0
    """
    r = group_rates(y_true, y_pred, sensitive)
    groups = r["groups"].tolist()
    if group_names is not None:
        groups = [group_names[int(g)] for g in groups]
    data = {"group": groups}
    for name in _RATES:
        data[name] = r[name].numpy()
    df = pd.DataFrame(data)
    df["count"] = df["count"].astype(int)
    return df


def _spread(rate: torch.Tensor, what: str) -> float:
    ok = ~torch.isnan(rate)
    if int(ok.sum()) < 2:
        warnings.warn(f"{what} is defined for fewer than two groups; the gap is NaN", RuntimeWarning, stacklevel=3)
        return float("nan")
    r = rate[ok]
    return float(r.max() - r.min())


def dp_gap(y_true, y_pred, sensitive) -> float:
    r"""Demographic-parity gap :math:`\max_g P(\hat y=1|a=g) - \min_g P(\hat y=1|a=g)`.

    Equals fairlearn's ``demographic_parity_difference``.

    >>> dp_gap([0, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 1])
    0.5
    """
    return _spread(group_rates(y_true, y_pred, sensitive)["selection_rate"], "selection rate")


def tpr_gap(y_true, y_pred, sensitive) -> float:
    """Largest minus smallest true-positive rate over groups."""
    return _spread(group_rates(y_true, y_pred, sensitive)["tpr"], "TPR")


def fpr_gap(y_true, y_pred, sensitive) -> float:
    """Largest minus smallest false-positive rate over groups."""
    return _spread(group_rates(y_true, y_pred, sensitive)["fpr"], "FPR")


def eopp_gap(y_true, y_pred, sensitive) -> float:
    """Equal-opportunity gap: the TPR gap (fairlearn's ``equal_opportunity_difference``)."""
    return tpr_gap(y_true, y_pred, sensitive)


def eo_gap(y_true, y_pred, sensitive, *, agg: str = "worst_case") -> float:
    r"""Equalised-odds gap from the TPR gap and the FPR gap.

    ``agg="worst_case"`` returns :math:`\max(\Delta\mathrm{TPR}, \Delta\mathrm{FPR})` (fairlearn's
    default); ``agg="mean"`` returns their mean, the EOD of the EfficientTrust (B) proposal.

    >>> eo_gap([1, 0, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1], agg="mean")
    1.0
    """
    check_choice("agg", agg, ("worst_case", "mean"))
    r = group_rates(y_true, y_pred, sensitive)
    tpr = _spread(r["tpr"], "TPR")
    fpr = _spread(r["fpr"], "FPR")
    return max(tpr, fpr) if agg == "worst_case" else (tpr + fpr) / 2
