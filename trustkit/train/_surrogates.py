r"""Differentiable surrogates of the fairness gaps (the functional core of the fairness terms).

The reported gaps (:mod:`trustkit.metrics`) count hard decisions and have no useful gradient;
training uses these smooth stand-ins instead:

* :func:`soft_dp_gap`: the demographic-parity gap of *soft* predictions,
  :math:`\max_g \bar p_g - \min_g \bar p_g` with :math:`\bar p_g` the mean predicted probability of
  the positive class in group :math:`g`.
* :func:`soft_eo_gap`: the same within each true label (the soft TPR and FPR gaps), combined as the
  mean of the two (``agg="mean"``, 001's EO) or the larger (``agg="worst_case"``, fairlearn's).
* :func:`cell_loss_gap`: VTruST's disparity ``ed = max_y |l(y, a0) − l(y, a1)|`` of the mean losses of
  the (label, group) cells; its gradient is a subgradient through the active pair.

A group (or cell) absent from the batch contributes nothing: the gap is computed over the groups
present, and is 0 when fewer than two are.
"""

from __future__ import annotations

import torch

__all__ = ["soft_dp_gap", "soft_eo_gap", "cell_loss_gap", "group_means"]

AGGREGATIONS = ("mean", "worst_case")


def group_means(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` in each group present in ``groups`` (in the order of ``groups.unique()``)."""
    uniq, inv = torch.unique(groups, return_inverse=True)
    sums = values.new_zeros(len(uniq)).index_add(0, inv, values)
    counts = values.new_zeros(len(uniq)).index_add(0, inv, torch.ones_like(values))
    return sums / counts


def _spread(means: torch.Tensor) -> torch.Tensor:
    if means.numel() < 2:
        return means.new_zeros(())
    return means.max() - means.min()


def soft_dp_gap(p: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    r"""Soft demographic-parity gap :math:`\max_g \bar p_g - \min_g \bar p_g`.

    Parameters
    ----------
    p : tensor (n,)
        Predicted probability of the positive class.
    a : tensor (n,)
        Group codes.

    Examples
    --------
    >>> import torch
    >>> round(float(soft_dp_gap(torch.tensor([0.9, 0.7, 0.2, 0.4]), torch.tensor([0, 0, 1, 1]))), 6)
    0.5
    """
    return _spread(group_means(p, a))


def soft_eo_gap(p: torch.Tensor, y: torch.Tensor, a: torch.Tensor, *, agg: str = "mean") -> torch.Tensor:
    r"""Soft equalised-odds gap: the soft TPR gap (label 1) and FPR gap (label 0), combined by ``agg``.

    Examples
    --------
    >>> import torch
    >>> p = torch.tensor([0.9, 0.5, 0.2, 0.4])
    >>> y = torch.tensor([1, 1, 0, 0]); a = torch.tensor([0, 1, 0, 1])
    >>> round(float(soft_eo_gap(p, y, a)), 6), round(float(soft_eo_gap(p, y, a, agg="worst_case")), 6)
    (0.3, 0.4)
    """
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {list(AGGREGATIONS)}; got {agg!r}")
    gaps = [_spread(group_means(p[y == label], a[y == label])) for label in (0, 1) if bool((y == label).any())]
    if not gaps:
        return p.new_zeros(())
    g = torch.stack(gaps)
    return g.mean() if agg == "mean" else g.max()


def cell_loss_gap(losses: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    r"""VTruST's loss disparity :math:`\max_y (\max_g \bar l_{y,g} - \min_g \bar l_{y,g})` over labels.

    ``losses`` are per-example losses; with two groups this is
    :math:`\max(|l(y_0,a_0) − l(y_0,a_1)|, |l(y_1,a_0) − l(y_1,a_1)|)`.

    Examples
    --------
    >>> import torch
    >>> losses = torch.tensor([1.0, 0.2, 0.5, 0.5])
    >>> round(float(cell_loss_gap(losses, torch.tensor([1, 1, 0, 0]), torch.tensor([0, 1, 0, 1]))), 6)
    0.8
    """
    gaps = [_spread(group_means(losses[y == label], a[y == label])) for label in torch.unique(y)]
    return torch.stack(gaps).max() if gaps else losses.new_zeros(())
