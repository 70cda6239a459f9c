"""Pruning: zero the smallest weights (unstructured), or remove whole neurons and channels (structured)."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn.utils import prune

from .._validation import check_choice
from ._core import Compressed, copy_model, footprint, prunable_layers

__all__ = ["prune_unstructured", "prune_structured", "SCOPES"]

SCOPES = ("global", "layer")


def _check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"sparsity must be a number in [0, 1); got {sparsity!r} ({type(sparsity).__name__})")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1) (the share of weights to remove); got {sparsity!r}")
    return float(sparsity)


def prune_unstructured(model: nn.Module, *, sparsity: float, scope: str = "global",
                       include_head: bool = True) -> Compressed:
    """Zero the ``sparsity`` share of Linear/Conv weights with the smallest magnitude.

    ``scope="global"`` ranks all weights together (``torch.nn.utils.prune.global_unstructured``,
    L1), so layers lose different shares; ``"layer"`` removes the same share from each layer. Biases
    are kept. The masks are made permanent: the result is a plain model whose pruned weights are
    exact zeros. It is stored densely, so it is **no smaller and no faster** (``saves_memory`` is
    False); its ``nonzero_params`` say how small a sparse format could make it. Use
    :func:`prune_structured` for a model that really shrinks.

    Examples
    --------
    >>> import torch
    >>> from trustkit.models import make_model
    >>> dense = make_model("mlp", input_shape=(20,), n_classes=2, seed=0)
    >>> c = prune_unstructured(dense, sparsity=0.5)
    >>> round(c.sparsity, 2), c.after["params"] == c.before["params"]
    (0.48, True)
    """
    sparsity = _check_sparsity(sparsity)
    check_choice("scope", scope, SCOPES)
    t0 = time.perf_counter()
    before = footprint(model)
    new = copy_model(model)
    layers = [m for n, m in prunable_layers(new) if include_head or not n.startswith("head")]
    if not layers:
        raise ValueError("the model has no Linear or Conv layers to prune")
    if sparsity > 0:
        if scope == "global":
            prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured,
                                      amount=sparsity)
        else:
            for m in layers:
                prune.l1_unstructured(m, "weight", amount=sparsity)
        for m in layers:
            prune.remove(m, "weight")
    return Compressed(
        model=new, method="prune_unstructured", settings={"sparsity": sparsity, "scope": scope,
                                                          "include_head": include_head},
        before=before, after=footprint(new), cost_s=time.perf_counter() - t0,
        notes="weights zeroed by magnitude (L1) and stored densely: same bytes and speed as the dense model",
    )


def _head(model: nn.Module) -> nn.Module:
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("structured pruning needs a final Linear layer (the classifier) to keep intact")
    return linears[-1]


def prune_structured(model: nn.Module, *, sparsity: float, input_shape: tuple[int, ...],
                     importance: str = "l2") -> Compressed:
    """Remove the ``sparsity`` share of neurons / channels of every hidden layer, by weight norm.

    The result is a **smaller dense model**: layers get fewer output units, and the layers that
    read them fewer inputs (torch-pruning's dependency graph keeps those shapes consistent, through
    convolutions, flattening and residual additions). The classifier's outputs are kept. Because a
    removed unit takes its incoming and outgoing weights with it, the share of *parameters* removed
    is larger than ``sparsity`` (about ``1 − (1 − sparsity)²`` between two pruned layers);
    ``param_ratio`` reports it. Units are ranked by the ``importance`` norm ("l1" or "l2") of their
    weights (Li et al. 2017, "Pruning filters for efficient ConvNets").

    Examples
    --------
    >>> from trustkit.models import make_model
    >>> dense = make_model("mlp", input_shape=(20,), n_classes=2, seed=0)
    >>> c = prune_structured(dense, sparsity=0.5, input_shape=(20,))
    >>> c.model.head.in_features, dense.head.in_features
    (32, 64)
    """
    import torch_pruning as tp

    sparsity = _check_sparsity(sparsity)
    check_choice("importance", importance, ("l1", "l2"))
    t0 = time.perf_counter()
    before = footprint(model)
    new = copy_model(model)
    if sparsity > 0:
        example = torch.zeros((2, *tuple(input_shape)))
        imp = tp.importance.MagnitudeImportance(p=1 if importance == "l1" else 2)
        pruner = tp.pruner.MetaPruner(new, example, importance=imp, pruning_ratio=sparsity,
                                      ignored_layers=[_head(new)])
        pruner.step()
        new.eval()
    return Compressed(
        model=new, method="prune_structured", settings={"sparsity": sparsity, "importance": importance},
        before=before, after=footprint(new), cost_s=time.perf_counter() - t0,
        notes="whole neurons/channels removed (torch-pruning dependency graph): a smaller dense model",
    )
