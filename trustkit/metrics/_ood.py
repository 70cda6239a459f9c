"""Out-of-distribution detection: score functions and the AUROC between in- and out-of-distribution data."""

from __future__ import annotations

import torch

from ._utility import roc_auc

__all__ = ["msp_score", "energy_score", "ood_auroc"]


def msp_score(logits) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel 2017); higher means more in-distribution."""
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=1).max(dim=1).values


def energy_score(logits, *, temperature: float = 1.0) -> torch.Tensor:
    r"""Negative free energy :math:`T \log\sum_k e^{f_k/T}` (Liu et al. 2020); higher is more in-distribution."""
    z = torch.as_tensor(logits, dtype=torch.float32)
    return temperature * torch.logsumexp(z / temperature, dim=1)


def ood_auroc(score_in, score_out) -> float:
    """AUROC of telling in-distribution (positives) from shifted data by a score (higher = in).

    0.5 means the score cannot tell them apart; 1.0 means every in-distribution point scores higher.

    >>> ood_auroc([0.9, 0.8, 0.7], [0.6, 0.75])
    0.8333333333333334
    """
    s_in = torch.as_tensor(score_in, dtype=torch.double).reshape(-1)
    s_out = torch.as_tensor(score_out, dtype=torch.double).reshape(-1)
    y = torch.cat([torch.ones(len(s_in)), torch.zeros(len(s_out))]).long()
    return roc_auc(y, torch.cat([s_in, s_out]))
