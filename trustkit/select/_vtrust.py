"""VTruST (Das et al. 2024): select a training subset by online OMP over value features, during
one ERM training run, then retrain a standard model on the subset.

Protocol (the fixes a careful re-implementation needs, issue 3):

* one split: the value function is built from ``task.val``; ``task.test`` is only touched by the
  final report of whoever trains on the subset;
* atoms are single training points (``unit="sample"``, the paper's unit) or fixed groups of
  ``atom_size`` points whose members are tracked (``unit="batch"``). The approximation must be
  over-determined, and not only in rows: every feature column is ``G g_i`` (plus the paper's
  elementwise square), so the feature matrix has rank at most P, the per-sample gradient's
  dimension (130 for the last layer of a 64-unit MLP), whatever M is. The default group size is
  the smallest that keeps ``2ω ≤ min(M, P)``;
* features are scaled to unit norm, the greedy step and the swap test are exact least squares
  (:class:`~trustkit.select.OnlineOMP`), and the residual and replacement counts are reported;
* the target is the cumulative decrease of every value component since the start of training.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .._validation import check_choice, check_fraction, check_int, check_positive
from ..data import CORRUPTIONS, Task, corrupt_images, feature_noise, flip_labels
from ..models import make_model
from ..train import Callback, Trainer
from ._features import sample_grads, value_features
from ._omp import OnlineOMP
from ._value import (
    VALUE_FUNCTIONS,
    accuracy_value,
    composite_value,
    fairness_value,
    robustness_value,
)

__all__ = ["VTruST", "SelectionResult", "subset_task", "make_value_function"]


def make_model_probe(task: Task, model: str, seed: int) -> torch.nn.Module:
    return make_model(model, input_shape=task.input_shape, n_classes=task.n_classes, seed=seed)


def subset_task(task: Task, indices) -> Task:
    """The task with its training split restricted to ``indices`` (positions in ``task.train``)."""
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) == 0:
        raise ValueError("the subset is empty")
    if idx.min() < 0 or idx.max() >= len(task.train):
        raise ValueError(f"subset indices must lie in [0, {len(task.train)}); got [{idx.min()}, {idx.max()}]")
    tr = task.train
    sub = tr.replace(X=tr.X[idx], y=tr.y[idx], a=None if tr.a is None else tr.a[idx], index=tr.index[idx])
    return task.replace(train=sub, notes=dict(task.notes, subset=len(idx)))


def _perturbed_validation(task: Task, *, label_noise: float, feature_std: float, seed: int):
    v = task.val
    if task.kind == "image":
        rng = np.random.default_rng(seed)
        names = rng.choice(CORRUPTIONS, size=len(v.y))
        X = v.X.copy()
        for c in np.unique(names):
            m = names == c
            X[m] = corrupt_images(v.X[m], str(c), 3, seed=seed)
        return X, v.y
    cols = task.numeric_columns
    X = feature_noise(v.X, feature_std, seed=seed, columns=cols) if cols else v.X
    return X, flip_labels(v.y, label_noise, seed=seed, n_classes=task.n_classes)


def make_value_function(task: Task, name: str, *, lam: float = 0.5, max_rows: int = 2000, fair_rows: int = 512,
                        label_noise: float = 0.2, feature_std: float = 0.3, seed: int = 0, scope: str = "last_layer",
                        projection: int | None = None):
    """Build a value function from the task's validation split by name (see ``VALUE_FUNCTIONS``)."""
    check_choice("value function", name, VALUE_FUNCTIONS)
    v = task.val
    g = {"scope": scope, "projection": projection, "projection_seed": seed}

    def one(kind):
        if kind == "accuracy":
            return accuracy_value(v.X, v.y, max_rows=max_rows, seed=seed, **g)
        if kind == "fairness":
            return fairness_value(v.X, v.y, v.a, n_rows=fair_rows, seed=seed, **g)
        X, y = _perturbed_validation(task, label_noise=label_noise, feature_std=feature_std, seed=seed)
        return robustness_value(X, y, max_rows=max_rows, seed=seed, **g)

    if "+" in name:
        first, second = name.split("+")
        return composite_value(one(first), one(second), lam=lam)
    return one(name)


@dataclass
class SelectionResult:
    """The selected training points and how the selection went."""

    indices: np.ndarray
    atoms: list
    weights: np.ndarray
    diagnostics: dict
    history: list = field(default_factory=list)


class _Collector(Callback):
    def __init__(self, selector: "VTruST", value, atoms: list[np.ndarray], omp: OnlineOMP):
        self.sel, self.value, self.atoms, self.omp = selector, value, atoms, omp
        self.values0 = None
        self.history: list[dict] = []
        self.seconds = 0.0
        # each training point's atom and averaging weight (members tracked)
        n = sum(len(a) for a in atoms)
        self.atom_of = torch.zeros(n, dtype=torch.long)
        self.weight_of = torch.zeros(n, dtype=torch.double)
        for k, a in enumerate(atoms):
            self.atom_of[a] = k
            self.weight_of[a] = 1.0 / len(a)

    def on_fit_start(self, state):
        t0 = time.perf_counter()
        self.values0 = self.value(state.model).values
        self.seconds += time.perf_counter() - t0

    def on_epoch_end(self, state, record):
        t0 = time.perf_counter()
        model, task = state.model, state.task
        comp = self.value(model)
        if self.sel.target == "realized":
            y = self.values0 - comp.values  # cumulative decrease of each component since θ_0 (the paper)
        else:
            y = comp.values.clone()  # the decrease still wanted: drive each component to zero
        scale = torch.ones(len(y), dtype=torch.double)
        for rows, w in self.value.blocks():
            nrm = float(y[rows].norm())
            scale[rows] = w / nrm if nrm > 0 else 0.0
        X = torch.as_tensor(task.train.X)
        Y = torch.as_tensor(task.train.y)
        # mean feature of each atom, accumulated chunk by chunk (never the full M × N matrix)
        F_atoms = torch.zeros(len(y), len(self.atoms), dtype=torch.double)
        for s in range(0, len(Y), 2048):
            g = sample_grads(model, X[s : s + 2048], Y[s : s + 2048], scope=self.sel.scope,
                             projection=self.sel.projection, seed=self.sel.seed).double()
            f = value_features(g, comp.grads, lr=self.sel.lr, kind=self.sel.feature)  # (M, chunk)
            F_atoms.index_add_(1, self.atom_of[s : s + 2048], f * self.weight_of[s : s + 2048])
        self.omp.start_epoch(y * scale)
        order = np.random.default_rng(self.sel.seed + state.epoch).permutation(len(self.atoms))
        self.omp.offer(order, (F_atoms * scale[:, None])[:, order])
        self.seconds += time.perf_counter() - t0
        self.history.append({"epoch": state.epoch, **self.omp.summary(), "selection_s": self.seconds})


class VTruST:
    """Value-function-based training-subset selection with online OMP.

    Parameters
    ----------
    value : str
        One of ``VALUE_FUNCTIONS``: ``"accuracy"``, ``"fairness"``, ``"robustness"`` or a pair
        ``"accuracy+fairness"`` (VTruST-F), ``"accuracy+robustness"`` (VTruST-R),
        ``"robustness+fairness"``.
    lam : float in [0, 1]
        λ of the composite ``λ·V1 + (1 − λ)·V2``.
    fraction : float in (0, 1)
        Share of the training split to select.
    unit : {"batch", "sample"}
        Atoms are fixed groups of ``atom_size`` points (members tracked) or single points.
    atom_size : int, optional
        Group size for ``unit="batch"``; default: the smallest that keeps M ≥ 2ω.
    feature : {"paper", "tracin"}
        ``s + s²/2`` (the paper) or ``s`` (first order).
    scope, projection
        Gradients of the last layer (default) or the full model, optionally projected to
        ``projection`` dimensions with a seeded Gaussian matrix (TRAK-style); the rank bound P of
        the features is then ``projection``.
    epochs, lr, batch_size, model, seed
        The ERM run during which features are collected (``lr`` is also η in the features).

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> res = VTruST(value="accuracy+fairness", lam=0.5, fraction=0.5, epochs=2, progress=False).select(load_german(seed=0))
    >>> len(res.indices) <= 300, res.diagnostics["unit"]
    (True, 'batch')
    """

    def __init__(self, *, value: str = "accuracy+fairness", lam: float = 0.5, fraction: float = 0.6,
                 unit: str = "batch", atom_size: int | None = None, feature: str = "paper",
                 scope: str = "last_layer", projection: int | None = None, epochs: int = 10, lr: float = 3e-3, batch_size: int = 128,
                 model: str = "mlp", max_rows: int = 2000, fair_rows: int = 512, label_noise: float = 0.2,
                 feature_std: float = 0.3, target: str = "realized", seed: int = 0, progress: bool = True):
        check_choice("value function", value, VALUE_FUNCTIONS)
        self.value = value
        self.lam = check_fraction("lam", lam, inclusive_low=True, inclusive_high=True)
        self.fraction = check_fraction("fraction", fraction)
        self.unit = check_choice("unit", unit, ("batch", "sample"))
        self.atom_size = None if atom_size is None else check_int("atom_size", atom_size, minimum=1)
        self.feature = check_choice("feature", feature, ("paper", "tracin"))
        self.scope = check_choice("scope", scope, ("last_layer", "full"))
        self.projection = None if projection is None else check_int("projection", projection, minimum=1)
        self.epochs = check_int("epochs", epochs, minimum=1)
        self.lr = check_positive("lr", lr)
        self.batch_size = batch_size
        self.model = model
        self.max_rows, self.fair_rows = max_rows, fair_rows
        self.label_noise, self.feature_std = label_noise, feature_std
        self.target = check_choice("target", target, ("realized", "remaining"))
        self.seed = check_int("seed", seed, minimum=0)
        self.progress = progress

    def _atoms(self, task: Task, capacity: int) -> tuple[list[np.ndarray], int]:
        n = len(task.train)
        size = 1 if self.unit == "sample" else self.atom_size
        if size is None:  # smallest group size with 2ω <= min(M, P)
            size = 1
            while round(self.fraction * np.ceil(n / size)) * 2 > capacity:
                size += 1
        rng = np.random.default_rng(self.seed)
        # groups drawn within (label, group) strata so each atom is homogeneous where possible
        strata = task.train.y * 1000 + (0 if task.train.a is None else task.train.a)
        order = np.concatenate([rng.permutation(np.flatnonzero(strata == s)) for s in np.unique(strata)])
        atoms = [order[i : i + size] for i in range(0, n, size)]
        return atoms, size

    def select(self, task: Task) -> SelectionResult:
        """Train ERM on ``task.train`` for ``epochs`` while selecting; return the subset."""
        if not isinstance(task, Task):
            raise TypeError(f"task must be a trustkit.data.Task; got {type(task).__name__}")
        value = make_value_function(task, self.value, lam=self.lam, max_rows=self.max_rows, fair_rows=self.fair_rows,
                                    label_noise=self.label_noise, feature_std=self.feature_std, seed=self.seed,
                                    scope=self.scope, projection=self.projection)
        probe = make_model_probe(task, self.model, self.seed)
        n_grad = sample_grads(probe, torch.as_tensor(task.train.X[:1]), torch.as_tensor(task.train.y[:1]),
                              scope=self.scope, projection=self.projection, seed=self.seed).shape[1]
        atoms, size = self._atoms(task, min(value.n_rows, n_grad))
        n_select = max(1, int(round(self.fraction * len(atoms))))
        if 2 * n_select > min(value.n_rows, n_grad):
            warnings.warn(
                f"selecting ω={n_select} atoms from features of rank at most min(M={value.n_rows}, P={n_grad}): "
                "the least-squares fit is not over-determined and the selection is close to arbitrary; "
                "use unit='batch' (default) or a larger atom_size",
                RuntimeWarning, stacklevel=2,
            )
        omp = OnlineOMP(n_atoms=n_select, ridge=1e-8)
        collector = _Collector(self, value, atoms, omp)
        trainer = Trainer(model=self.model, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                          seed=self.seed, callbacks=[collector], progress=self.progress, metrics=["accuracy"])
        t0 = time.perf_counter()
        record = trainer.fit(task)
        total = time.perf_counter() - t0
        chosen = omp.selected_ids
        indices = np.sort(np.concatenate([atoms[k] for k in chosen])) if chosen else np.zeros(0, np.int64)
        diagnostics = {
            **omp.summary(), "unit": self.unit, "atom_size": size, "n_candidate_atoms": len(atoms),
            "n_points": len(indices), "fraction_selected": len(indices) / len(task.train),
            "value": self.value, "lam": self.lam, "feature": self.feature, "gradient_dim": n_grad,
            "selection_s": collector.seconds, "training_s": total - collector.seconds,
            "erm_val_accuracy": record.epochs[-1].val["accuracy"] if record.epochs else float("nan"),
        }
        return SelectionResult(indices=indices, atoms=chosen, weights=omp.beta.numpy().copy(),
                               diagnostics=diagnostics, history=collector.history)
