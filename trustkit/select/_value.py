"""VTruST value functions: the target rows the selected subset must explain.

A value function here is a set of M *components*, each a differentiable validation quantity
``ℓ_k(θ)``. The value of training is the decrease of each component since the start of training,
``y_k = ℓ_k(θ_0) − ℓ_k(θ_t)``, and a training point's feature for component ``k`` is the decrease
one SGD step on it would cause, ``η g_i·∇ℓ_k`` (see :mod:`trustkit.select._features`).

* accuracy: one component per validation point, its cross-entropy loss (Pruthi et al. 2020).
* robustness: the same on perturbed validation data (label flips and feature noise for tables,
  corruptions for images): points that lower the loss on perturbed data.
* fairness: the equalised-odds disparity of VTruST,
  ``ed = max(|L(y=0,a=0) − L(y=0,a=1)|, |L(y=1,a=0) − L(y=1,a=1)|)`` with ``L`` the mean loss of a
  validation (label, group) cell. One scalar gives one row, far fewer than the atoms selected, so
  ``n_rows`` components are made from random halves of every cell (each row is ``ed`` on its own
  half-sample): the target is over-determined and the rows average out the sampling noise. Its
  gradient is a subgradient: the active cell pair's loss gap, signed.
* composite: ``λ·V1 + (1 − λ)·V2`` as weighted blocks of rows, each block scaled to unit norm
  first so that λ weighs the two objectives, not their units.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_choice, check_fraction, check_int
from ._features import sample_grads

__all__ = ["ValueFunction", "ValueComponents", "accuracy_value", "fairness_value", "robustness_value",
           "composite_value", "VALUE_FUNCTIONS", "check_value_function", "set_precision"]


@dataclass
class ValueComponents:
    """Current component values ``(M,)`` and their gradients ``(M, P)`` at the model's parameters."""

    values: torch.Tensor
    grads: torch.Tensor


class ValueFunction(ABC):
    """Components ``ℓ_k`` computed from per-sample validation losses and gradients.

    ``weights`` is an ``(M, n)`` matrix: component ``k`` is a signed combination of the per-sample
    losses of the ``n`` validation points in ``X, y`` (for fairness the signs are chosen at the
    current parameters, which makes the gradient a subgradient of the max).
    """

    name = "value"
    #: precision of the components and their gradients (float64 for the exact selection path;
    #: the fast path sets float32 through :func:`set_precision`)
    dtype = torch.float64

    def __init__(self, X, y, *, scope: str = "last_layer", projection: int | None = None, projection_seed: int = 0):
        self.X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.scope, self.projection, self.projection_seed = scope, projection, projection_seed

    @abstractmethod
    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """The ``(M, n)`` matrix mapping per-sample losses to components."""

    @property
    @abstractmethod
    def n_rows(self) -> int:
        """M, the number of components."""

    def blocks(self) -> list[tuple[slice, float]]:
        """Row blocks and their weights (a single block of weight 1 for a plain value function)."""
        return [(slice(0, self.n_rows), 1.0)]

    def __call__(self, model: torch.nn.Module) -> ValueComponents:
        # one forward pass: the losses from the logits that come with the per-sample gradients
        g, logits = sample_grads(model, self.X, self.y, scope=self.scope, projection=self.projection,
                                 seed=self.projection_seed, return_logits=True)
        with torch.no_grad():
            losses = F.cross_entropy(logits, self.y, reduction="none").to(self.dtype)
        return self._components(losses, g.to(self.dtype))

    def _components(self, losses: torch.Tensor, g: torch.Tensor) -> ValueComponents:
        W = self.weights(losses)
        return ValueComponents(values=W @ losses, grads=W @ g)


class _PerPoint(ValueFunction):
    def __init__(self, X, y, *, max_rows: int | None = None, seed: int = 0, **grad_options):
        X, y = np.asarray(X), np.asarray(y)
        if max_rows is not None and max_rows < len(y):
            check_int("max_rows", max_rows, minimum=1)
            keep = np.sort(np.random.default_rng(seed).choice(len(y), max_rows, replace=False))
            X, y = X[keep], y[keep]
        super().__init__(X, y, **grad_options)

    @property
    def n_rows(self) -> int:
        return len(self.y)

    def weights(self, losses):
        return torch.eye(len(losses), dtype=losses.dtype)

    def _components(self, losses, g):  # the weights are the identity: skip the product
        return ValueComponents(values=losses, grads=g)


class accuracy_value(_PerPoint):
    """Accuracy value: one component per validation point (at most ``max_rows``), its loss."""

    name = "accuracy"


class robustness_value(_PerPoint):
    """Robustness value: per-point losses on perturbed validation data ``X_perturbed, y_perturbed``."""

    name = "robustness"


class fairness_value(ValueFunction):
    """VTruST's EO disparity over validation (label, group) cells, ``n_rows`` half-sample components.

    Raises
    ------
    ValueError
        If the sensitive attribute is missing or not binary, or a (label, group) cell is empty.
    """

    name = "fairness"

    def __init__(self, X, y, a, *, n_rows: int = 512, seed: int = 0, **grad_options):
        super().__init__(X, y, **grad_options)
        if a is None:
            raise ValueError("the fairness value function needs a sensitive attribute; this task has none")
        a = np.asarray(a)
        groups = np.unique(a)
        if len(groups) != 2:
            raise ValueError(f"the fairness value function needs a binary sensitive attribute; got {len(groups)} groups")
        self._n_rows = check_int("n_rows", n_rows, minimum=1)
        yv = self.y.numpy()
        rng = np.random.default_rng(seed)
        self.cells = {}
        for lab in (0, 1):
            for g_i, g in enumerate(groups):
                idx = np.flatnonzero((yv == lab) & (a == g))
                if len(idx) == 0:
                    raise ValueError(f"validation cell (label={lab}, group={g}) is empty; the EO disparity is undefined")
                self.cells[(lab, g_i)] = idx
        # the random halves: row r of a cell is the mean over the points picked for it; stored as
        # the picked positions within the cell, the (n_rows, n) masks are built only when asked
        self._n = len(yv)
        self._picks = {}
        position = np.empty(len(yv), dtype=np.int64)  # a validation row's position within its cell
        for key, idx in self.cells.items():
            half = max(1, len(idx) // 2)
            picked = np.stack([rng.choice(idx, size=half, replace=False) for _ in range(self._n_rows)])
            position[idx] = np.arange(len(idx))
            self._picks[key] = position[picked]  # positions within the cell
        self._by_dtype = {}

    @property
    def _M(self) -> dict:
        """The dense ``(n_rows, n)`` membership masks of the halves, per cell (built on first use)."""
        if "dense" not in self._by_dtype:
            out = {}
            for key, idx in self.cells.items():
                m = torch.zeros(self._n_rows, self._n, dtype=torch.float64)
                m[:, torch.as_tensor(idx)] = self._cell_masks(torch.float64)[key]
                out[key] = m
            self._by_dtype["dense"] = out
        return self._by_dtype["dense"]

    @property
    def n_rows(self) -> int:
        return self._n_rows

    def _masks(self, dtype) -> dict:
        if dtype not in self._by_dtype:
            self._by_dtype[dtype] = {k: m.to(dtype) for k, m in self._M.items()}
        return self._by_dtype[dtype]

    def _cell_masks(self, dtype) -> dict:
        """Each cell's mask restricted to the cell's own columns, ``(n_rows, |cell|)``: the rest is zero."""
        key = ("cells", dtype)
        if key not in self._by_dtype:
            out = {}
            for k, idx in self.cells.items():
                picks = torch.as_tensor(self._picks[k])
                m = torch.zeros(self._n_rows, len(idx), dtype=dtype)
                m.scatter_(1, picks, 1.0 / picks.shape[1])
                out[k] = m
            self._by_dtype[key] = out
        return self._by_dtype[key]

    def _components(self, losses, g):
        """``W @ losses`` and ``W @ g`` without forming ``W``: the four cells' masks touch disjoint
        columns, so each cell's mean loss and mean gradient per row come from its own columns. A
        row's gradient involves one pair of cells only (the active label's), so the mean gradients
        are computed for that pair's rows only."""
        M = self._cell_masks(losses.dtype)
        idx = {k: torch.as_tensor(v) for k, v in self.cells.items()}
        L = {k: m @ losses[idx[k]] for k, m in M.items()}
        gap0, gap1 = L[(0, 0)] - L[(0, 1)], L[(1, 0)] - L[(1, 1)]
        use1 = gap1.abs() > gap0.abs()
        s0 = torch.where(use1, torch.zeros_like(gap0), torch.sign(gap0))
        s1 = torch.where(use1, torch.sign(gap1), torch.zeros_like(gap1))
        values = s0 * gap0 + s1 * gap1
        grads = g.new_zeros(self._n_rows, g.shape[1])
        for lab, sign in ((0, s0), (1, s1)):
            rows = torch.nonzero(sign).squeeze(1)
            if len(rows):
                a, b = (lab, 0), (lab, 1)
                gap = M[a][rows] @ g[idx[a]] - M[b][rows] @ g[idx[b]]
                grads[rows] = sign[rows, None] * gap
        return ValueComponents(values=values, grads=grads)

    def weights(self, losses):
        M = self._masks(losses.dtype)
        L = {k: m @ losses for k, m in M.items()}  # (n_rows,) cell mean losses per row
        gap0 = L[(0, 0)] - L[(0, 1)]
        gap1 = L[(1, 0)] - L[(1, 1)]
        use1 = gap1.abs() > gap0.abs()
        s0 = torch.where(use1, torch.zeros_like(gap0), torch.sign(gap0))
        s1 = torch.where(use1, torch.sign(gap1), torch.zeros_like(gap1))
        return (s0[:, None] * (M[(0, 0)] - M[(0, 1)]) + s1[:, None] * (M[(1, 0)] - M[(1, 1)]))


class composite_value:
    """``λ·V1 + (1 − λ)·V2`` as two weighted blocks of rows.

    :meth:`blocks` gives each block's rows and weight; the selector scales a block's target and
    features by ``weight / ‖target block‖`` so λ weighs the objectives, not their units. With
    ``λ = 1`` only V1 counts, with ``λ = 0`` only V2.
    """

    def __init__(self, first: ValueFunction, second: ValueFunction, *, lam: float):
        self.first, self.second = first, second
        self.lam = check_fraction("lam", lam, inclusive_low=True, inclusive_high=True)
        self.name = f"{first.name}+{second.name}"

    @property
    def n_rows(self) -> int:
        return self.first.n_rows + self.second.n_rows

    def __call__(self, model) -> ValueComponents:
        a, b = self.first(model), self.second(model)
        return ValueComponents(values=torch.cat([a.values, b.values]), grads=torch.cat([a.grads, b.grads]))

    def blocks(self) -> list[tuple[slice, float]]:
        n1 = self.first.n_rows
        return [(slice(0, n1), self.lam), (slice(n1, n1 + self.second.n_rows), 1.0 - self.lam)]


def set_precision(value, dtype: torch.dtype) -> None:
    """Compute a value function's components (both blocks of a composite) in ``dtype``."""
    for part in (value.first, value.second) if isinstance(value, composite_value) else (value,):
        part.dtype = dtype


VALUE_FUNCTIONS = ("accuracy", "fairness", "robustness", "accuracy+fairness", "accuracy+robustness", "robustness+fairness")


def check_value_function(name: str) -> str:
    return check_choice("value function", name, VALUE_FUNCTIONS)
