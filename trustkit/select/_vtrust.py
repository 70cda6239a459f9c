"""VTruST (Das et al. 2024): select a training subset by online OMP over value features, during
one ERM training run, then retrain a standard model on the subset.

Protocol:

* one split: the value function is built from ``task.val``; ``task.test`` is only touched by the
  final report of whoever trains on the subset;
* atoms are single training points (``unit="sample"``, the paper's unit) or fixed groups of
  ``atom_size`` points whose members are tracked (``unit="batch"``). The approximation must be
  over-determined, and not only in rows: every feature column is ``G g_i`` (plus the paper's
  elementwise square, whose share of a feature is of the order of ``s = η g_i·G_j`` itself and
  so tiny), so the features span at most the rank of the per-sample gradients, whatever M is.
  That rank is smaller than the gradient's dimension: for a 2-class softmax head the last-layer
  gradient is ``(p₁ − y)·[−h, h, −1, 1]``, 130 numbers but rank at most 65 for a 64-unit MLP.
  The selector measures the numerical rank of real per-sample gradients (and of the value
  gradients) at the initial model and the default group size is the smallest that keeps
  ``2ω ≤ min(M, rank)``;
* features are scaled to unit norm, the greedy step and the swap test are exact least squares
  (:class:`~trustkit.select.OnlineOMP`), and the replacement counts are reported;
* the online pursuit keeps, for an atom selected in an earlier epoch, that epoch's column unless a
  fresh one fits better, so its residual mixes epochs
  (``online_residual_mixed_epochs``); the reported ``relative_residual`` is the least-squares
  fit of the final selection on the final epoch's features and target;
* the target is the cumulative decrease of every value component since the start of training;
* the weights are non-negative by default (``nonneg=True``), so no point is kept for the harm it
  does.

What the selection is and is not: a sparse least-squares approximation of the value vector by
unit-norm columns, a coreset of the value of training, not a ranking of points by value. A
weight absorbs a column's magnitude, so the fit sees the *direction* of an atom's value, not how
much value it adds; and least squares uses a column for whatever lowers the approximation error.
Each helpful atom's column is mostly orthogonal to the target (on the planted problems of the
tests its cosine with the target is about ±0.1 with the ``"remaining"`` target), and an atom of
negative value (a column opposed to the target) cancels that orthogonal part with a *positive*
weight. With one group's training labels all flipped, helpful atoms alone leave a relative
residual of about 0.55–0.6 and helpful plus harmful ones about 0.35–0.4, so the online pursuit,
the offline greedy OMP, VTruST's own replacement rule and even the NNLS optimum over every atom
(whose support does not depend on the column scaling) keep flipped points at about the rate a
random subset does, whichever target and feature, and also with the features' sign flipped: the
selection does not read which atoms help. With the realised target the fit also reproduces what
training on every point achieved, harm included. The TracIn ranking of :func:`tracin_topk`, which
sums each point's features, drops the flipped points.
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
from ._features import label_values, penultimate, sample_grads, value_features
from ._omp import OnlineOMP
from ._value import (
    VALUE_FUNCTIONS,
    accuracy_value,
    composite_value,
    fairness_value,
    robustness_value,
    set_precision,
)

__all__ = ["VTruST", "SelectionResult", "subset_task", "make_value_function", "feature_rank"]


def make_model_probe(task: Task, model: str, seed: int) -> torch.nn.Module:
    return make_model(model, input_shape=task.input_shape, n_classes=task.n_classes, seed=seed)


def feature_rank(model: torch.nn.Module, task: Task, value, *, scope: str = "last_layer", projection: int | None = None,
                 seed: int = 0, max_points: int = 4096) -> dict:
    """Numerical ranks that bound the rank of VTruST's feature matrix at ``model``'s parameters.

    Features are ``G g_i``: their span is at most ``min(rank(g), rank(G))`` with ``g`` the training
    points' per-sample gradients (rows) and ``G`` the value components' gradients. Both ranks are
    measured with :func:`torch.linalg.matrix_rank` on float32 matrices (the precision gradients are
    computed in), on up to ``max_points`` training points drawn with ``seed`` (at least twice the
    gradient dimension when the split has them, so the sample does not cap the rank).

    Returns ``{"gradient_dim", "gradient_rank", "value_rank", "rank"}``.
    """
    n = len(task.train)
    rng = np.random.default_rng(seed)
    probe = sample_grads(model, torch.as_tensor(task.train.X[:1]), torch.as_tensor(task.train.y[:1]),
                         scope=scope, projection=projection, seed=seed)
    dim = probe.shape[1]
    k = min(n, max(2 * dim, 512), max_points)
    pick = np.sort(rng.choice(n, size=k, replace=False))
    rows = []
    for s in range(0, k, 2048):
        part = pick[s : s + 2048]
        rows.append(sample_grads(model, torch.as_tensor(task.train.X[part]), torch.as_tensor(task.train.y[part]),
                                 scope=scope, projection=projection, seed=seed).float())
    g_rank = int(torch.linalg.matrix_rank(torch.cat(rows)))
    v_rank = int(torch.linalg.matrix_rank(value(model).grads.float()))
    return {"gradient_dim": int(dim), "gradient_rank": g_rank, "value_rank": v_rank, "rank": min(g_rank, v_rank)}


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
    """The selected training points and how the selection went.

    ``model`` is the network at the end of the selection run (its final features give the
    reported residual). ``point_values`` is each training point's first-order value against the
    pursuit's target summed over the epochs (positive helps); ``label_margins`` (only with
    ``harmful="exclude"``) the margin the value-aware variant excludes by (see ``VTruST``).
    """

    indices: np.ndarray
    atoms: list
    weights: np.ndarray
    diagnostics: dict
    history: list = field(default_factory=list)
    model: torch.nn.Module | None = None
    point_values: np.ndarray | None = None
    label_margins: np.ndarray | None = None


def current_residual(columns: torch.Tensor, target: torch.Tensor) -> float:
    """``‖y − X_S β‖ / ‖y‖`` for the least-squares ``β`` on the unit-norm ``columns`` (nan if none)."""
    yn = float(target.norm())
    if columns.shape[1] == 0 or yn == 0:
        return float("nan")
    norms = columns.norm(dim=0)
    A = columns / torch.where(norms > 1e-12, norms, torch.ones_like(norms))
    beta = torch.linalg.lstsq(A, target.unsqueeze(1), driver="gelsd").solution
    return float((target - (A @ beta).squeeze(1)).norm()) / yn


class _FinalValidation(Trainer):
    """VTruST's ERM run: a :class:`~trustkit.train.Trainer` that validates after its last epoch only.

    The selection's per-epoch signal is its value function; of the Trainer's validation it reports
    the last epoch's accuracy (``erm_val_accuracy``) and nothing else, so the other epochs skip that
    pass and their records have ``val == {}``.
    """

    class _Epoch(Callback):
        def __init__(self, trainer):
            self.trainer = trainer

        def on_epoch_start(self, state):
            self.trainer.epoch_now = state.epoch

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.epoch_now = 0
        self.callbacks.append(self._Epoch(self))

    def _validate(self, model, task, metrics):
        return super()._validate(model, task, metrics) if self.epoch_now >= self.epochs else {}


class _Collector(Callback):
    """The selection inside the training run: after every epoch, the value function, the atoms'
    features, and one pass of the online pursuit over all atoms in a seeded order.

    Per epoch it evaluates the value function once (losses and per-sample gradients of the
    validation rows from one forward pass), computes every training point's last-layer gradient
    from one batched forward pass (``_fast_features``; ``_exact_features`` with ``exact=True``),
    and offers all atoms to :class:`~trustkit.select.OnlineOMP` in one call, which screens them
    together against the residual and runs the exact swap test only for those that could enter.
    The Trainer around it validates after the last epoch only (:class:`_FinalValidation`).
    ``seconds`` is the time spent here (``selection_s``), ``history`` one summary per epoch.
    """

    def __init__(self, selector: "VTruST", value, atoms: list[np.ndarray], omp: OnlineOMP, labels=None):
        self.sel, self.value, self.atoms, self.omp = selector, value, atoms, omp
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.values0 = None
        self.initial: tuple = (torch.nn.Module(), None)  # (a model, its value components) known before the run
        self.history: list[dict] = []
        self.seconds = 0.0
        # each training point's atom and averaging weight (members tracked)
        n = sum(len(a) for a in atoms)
        self.atom_of = torch.zeros(n, dtype=torch.long)
        self.weight_of = torch.zeros(n, dtype=torch.double)
        for k, a in enumerate(atoms):
            self.atom_of[a] = k
            self.weight_of[a] = 1.0 / len(a)
        # fast path: the members whose s²/2 terms estimate each atom's mean (all of a small atom)
        rng = np.random.default_rng(selector.seed + 7919)
        picks = [a if len(a) <= selector.quad_sample else rng.choice(a, selector.quad_sample, replace=False)
                 for a in atoms]
        self.q_idx = torch.as_tensor(np.concatenate(picks), dtype=torch.long)
        self.q_owner = torch.as_tensor(np.repeat(np.arange(len(atoms)), [len(p) for p in picks]), dtype=torch.long)
        self.q_weight = torch.as_tensor(np.concatenate([np.full(len(p), 1.0 / len(p)) for p in picks]), dtype=torch.float32)
        # the value-aware variant: each point's first-order value summed over epochs, and who is kept
        self.point_value = torch.zeros(n, dtype=torch.double)
        self.label_value = None  # (n, classes): the same value were each point's label each class
        self.keep = torch.ones(n, dtype=torch.bool)

    def on_fit_start(self, state):
        t0 = time.perf_counter()
        probe, comp = self.initial
        pa, pb = list(probe.parameters()), list(state.model.parameters())
        # the initial model is the rank probe (same constructor and seed): its values are known
        same = comp is not None and len(pa) == len(pb) and all(
            a.shape == b.shape and a.device == b.device and torch.equal(a, b) for a, b in zip(pa, pb))
        self.values0 = comp.values if same else self.value(state.model).values
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
        # a point's first-order value against this epoch's target: ⟨its feature column, target⟩
        # (scaled rows), i.e. g_i · η Gᵀ(scale² ⊙ y); read by the value-aware variant only
        w = self.sel.lr * (comp.grads.double().T @ (scale.square() * y.double()))
        if self.sel.harmful == "exclude":
            lv = torch.cat([label_values(model, X[s : s + 4096], w, n_classes=task.n_classes, scope=self.sel.scope,
                                         projection=self.sel.projection, seed=self.sel.seed)
                            for s in range(0, len(Y), 4096)])
            self.label_value = lv if self.label_value is None else self.label_value + lv
        F_atoms = self._exact_features(model, X, Y, comp, w) if self.sel.exact else self._fast_features(model, X, Y, comp, w)
        target, feats = y.double() * scale, F_atoms * scale[:, None]
        self.omp.start_epoch(target)
        order = np.random.default_rng(self.sel.seed + state.epoch).permutation(len(self.atoms))
        if self.sel.harmful == "exclude":
            alive = torch.zeros(len(self.atoms), dtype=torch.double).index_add_(0, self.atom_of, self.keep.double()) > 0
            self.omp.discard([k for k in self.omp.selected_ids if not alive[k]])
            order = order[alive.numpy()[order]]
        self.omp.offer(order, feats[:, order])
        summary = self.omp.summary()
        summary["online_residual_mixed_epochs"] = summary.pop("relative_residual")
        summary["relative_residual"] = current_residual(feats[:, self.omp.selected_ids], target)
        self.seconds += time.perf_counter() - t0
        self.history.append({"epoch": state.epoch, **summary, "selection_s": self.seconds})


    @property
    def label_margin(self) -> torch.Tensor:
        """How far each point is from being harmful (positive: kept), by confident learning's rule
        with summed label values in place of predicted probabilities.

        ``s[i, c]`` is the summed value of label ``c`` for point ``i`` less the mean over its
        labels (what all of a point's labels share, as a shift of every logit, says nothing about
        which label is right); ``t[c]`` is the mean of ``s[j, c]`` over the points labelled ``c``,
        the per-class threshold. A point is harmful when some other label ``c`` reaches its
        threshold (``s[i, c] ≥ t[c]``) and clears it by at least as much as the point's own label
        clears its own (``s[i, c] − t[c] ≥ s[i, y_i] − t[y_i]``). The margin is the smallest,
        over the other labels, of the larger of the two shortfalls, so it is positive exactly
        for the points kept. A constant added to one label's values moves ``s`` and ``t`` alike.
        """
        lv, y = self.label_value, self.labels
        s = lv - lv.mean(1, keepdim=True)
        t = torch.full((lv.shape[1],), torch.inf, dtype=lv.dtype)
        for c in torch.unique(y):
            t[c] = s[y == c, c].mean()
        over = s - t  # how far each label clears its threshold (-inf for a label no point carries)
        own = over[torch.arange(len(y)), y]
        short = torch.maximum(-over, own[:, None] - over)
        return short.scatter(1, y[:, None], torch.inf).min(1).values

    def _update_values(self, v: torch.Tensor) -> torch.Tensor:
        """Add this epoch's point values; with ``harmful="exclude"`` a point of non-positive label
        margin (:attr:`label_margin`) leaves its atom. Returns each point's averaging weight within its atom."""
        self.point_value += v
        if self.sel.harmful != "exclude":
            return self.weight_of
        self.keep = self.label_margin > 0
        count = torch.zeros(len(self.atoms), dtype=torch.double).index_add_(0, self.atom_of, self.keep.double())
        return torch.where(self.keep, 1.0 / count.clamp(min=1.0)[self.atom_of], torch.zeros_like(self.weight_of))

    def _sampled_weight(self) -> torch.Tensor:
        """The averaging weights of the members sampled for the ``s²/2`` term: ``1 / picks`` per atom,
        or with ``harmful="exclude"`` over the atom's sampled members of positive margin only."""
        if self.sel.harmful != "exclude":
            return self.q_weight
        kq = self.keep[self.q_idx].float()
        cnt = torch.zeros(len(self.atoms)).index_add_(0, self.q_owner, kq)
        return kq / cnt.clamp(min=1.0)[self.q_owner]

    def _exact_features(self, model, X, Y, comp, w) -> torch.Tensor:
        """Mean feature of each atom over its members (with ``harmful="exclude"``, its members of
        positive value), in float64, chunk by chunk (never the full M × N matrix): ``M × N × P``
        multiply-adds per epoch."""
        def chunks():
            for s in range(0, len(Y), 2048):
                yield s, sample_grads(model, X[s : s + 2048], Y[s : s + 2048], scope=self.sel.scope,
                                      projection=self.sel.projection, seed=self.sel.seed).double()

        if self.sel.harmful == "exclude":  # the members' values first: a second pass over the gradients
            weight = self._update_values(torch.cat([g @ w for _, g in chunks()]))
        F_atoms = torch.zeros(comp.grads.shape[0], len(self.atoms), dtype=torch.double)
        for s, g in chunks():
            if self.sel.harmful != "exclude":
                self.point_value[s : s + len(g)] += g @ w
                weight = self.weight_of
            f = value_features(g, comp.grads, lr=self.sel.lr, kind=self.sel.feature)  # (M, chunk)
            F_atoms.index_add_(1, self.atom_of[s : s + 2048], f * weight[s : s + 2048])
        return F_atoms

    def _fast_features(self, model, X, Y, comp, w) -> torch.Tensor:
        """The same means in float32, the first-order part exactly and the ``s²/2`` part estimated.

        The first-order feature is linear in the gradient, so an atom's mean of ``s = η G g_i`` is
        ``η G ḡ`` with ``ḡ`` the atom's mean gradient: ``M × A × P`` instead of ``M × N × P``.
        The paper's ``s²/2`` is not linear; its atom mean is estimated from ``quad_sample``
        members per atom drawn once (every member of a smaller atom: exact there, and for
        ``unit="sample"``). That term is of the order of ``s`` times ``s`` itself, small beside
        ``s``, so the estimate moves the features little; the selector's tests compare the
        subsets and their test metrics with ``exact=True`` on the same seeds.

        With a two-class softmax head (last layer, no projection) a gradient is
        ``g = [e₀h, e₁h, e₀, e₁]`` with ``e₁ = −e₀``, so ``G·g = G̃·(e₀h̃)`` with
        ``G̃ = [G_w0 − G_w1, G_b0 − G_b1]`` and ``h̃ = [h, 1]``: every product uses half the columns,
        and the gradients are formed in that half form from one forward pass. The ``s²/2`` terms
        are computed as ``(c_q G g_q)²`` with ``c_q = η √(w_q / 2)`` for a sampled member's weight
        ``w_q`` and summed into their atoms row by row. When every member is sampled (atoms of at
        most ``quad_sample`` points) each member's ``G g_i`` is computed once and gives both terms.
        """
        sel = self.sel
        G = comp.grads.float()
        head = getattr(model, "head", None)
        if (sel.scope == "last_layer" and sel.projection is None and isinstance(head, torch.nn.Linear)
                and head.out_features == 2 and head.bias is not None):
            H = head.in_features
            G = torch.cat([G[:, :H] - G[:, H : 2 * H], (G[:, 2 * H] - G[:, 2 * H + 1])[:, None]], 1)
            w = torch.cat([w[:H] - w[H : 2 * H], (w[2 * H] - w[2 * H + 1]).reshape(1)])  # g·w = (e₀h̃)·w̃ likewise
            was = model.training
            model.eval()
            try:
                h = penultimate(model, X)
                with torch.no_grad():
                    e0 = torch.softmax(head(h), dim=1)[:, 0] - (Y == 0).float()
            finally:
                model.train(was)
            g_all = torch.cat([h, torch.ones(len(h), 1)], 1).mul_(e0[:, None])  # e₀h̃, the half gradients
        else:
            g_all = torch.cat([sample_grads(model, X[s : s + 4096], Y[s : s + 4096], scope=sel.scope,
                                            projection=sel.projection, seed=sel.seed).float()
                               for s in range(0, len(Y), 4096)])
        weight = self._update_values(g_all.double() @ w)
        q_weight = self._sampled_weight()
        A, M = len(self.atoms), G.shape[0]
        if sel.feature == "paper" and len(self.q_idx) == len(Y):
            # every member is sampled (atoms of at most quad_sample points): each member's s once,
            # its mean is the first-order feature and its weighted square the s²/2 term
            S = g_all[self.q_idx] @ G.T  # (N, M): s / η, member by member
            F = torch.zeros(A, M).index_add_(0, self.q_owner, S * (sel.lr * q_weight)[:, None])
            F.index_add_(0, self.q_owner, S.mul_((sel.lr * (0.5 * q_weight).sqrt())[:, None]).square_())
            return F.T.double()
        gbar = torch.zeros(A, G.shape[1]).index_add_(0, self.atom_of, g_all * weight.float()[:, None])
        F = sel.lr * (G @ gbar.T)  # (M, A): the exact first-order means
        if sel.feature == "paper":
            gq = g_all[self.q_idx].mul_((sel.lr * (0.5 * q_weight).sqrt())[:, None])
            s = (gq @ G.T).square_()  # (sampled members, M): each member's weighted s²/2
            F += torch.zeros(A, M).index_add_(0, self.q_owner, s).T
        return F.double()


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
        Group size for ``unit="batch"``; default: the smallest that keeps ``2ω ≤ min(M, rank)``, with
        the rank of the features measured by :func:`feature_rank` (not the gradient's dimension).
    feature : {"paper", "tracin"}
        ``s + s²/2`` (the paper) or ``s`` (first order).
    scope, projection
        Gradients of the last layer (default) or the full model, optionally projected to
        ``projection`` dimensions with a seeded Gaussian matrix (TRAK-style); the rank of the
        features is then at most ``projection``.
    target : {"realized", "remaining"}
        The cumulative decrease of every value component since the start (the paper), or the
        decrease still wanted (the components' current values).
    nonneg : bool
        Non-negative weights for the selected atoms (default): a point is selected only for
        the value it adds, never with a negative weight for the harm it does (see
        :class:`~trustkit.select.OnlineOMP`). ``False`` gives the signed least-squares fit.
    exact : bool
        ``False`` (default): the fast path, value functions and features in float32, each
        atom's first-order feature from its mean gradient (exact) and the paper's ``s²/2`` term
        from ``quad_sample`` members per atom (an estimate; see ``_Collector._fast_features``).
        ``True``: every member's feature in float64, as the paper computes it.
    quad_sample : int
        Members per atom that estimate the ``s²/2`` term on the fast path (default 16).
    harmful : {"keep", "exclude"}
        ``"keep"`` (default): the paper's method; a point enters through its atom whatever its
        own value. ``"exclude"``: the value-aware variant, which keeps points whose label works
        against the value function out. At every epoch each point gets, for every label ``c``,
        the first-order value one SGD step on ``(x_i, c)`` would have against the pursuit's
        target (the inner product of that feature column with the target: the decrease of the
        scaled value components, weighted by the decrease wanted; :func:`label_values`), summed
        over the epochs as TracIn sums over checkpoints. Harmful points are found by confident
        learning's rule on these values instead of predicted probabilities
        (``_Collector.label_margin``): another label reaches its per-class threshold (the mean
        value of that label over the points carrying it) and clears it by more than the
        point's own label clears its own; a label every point shares a pull towards does not
        decide, and a rare but plausible label is kept. A
        harmful point leaves its atom (the atom's feature is the mean over its other members; an
        atom with none left is dropped from the selection and not offered) and is never in the
        subset. The pursuit picks atoms as before; the subset is then, per label, the selected
        atoms' helpful members topped up by the helpful points of highest margin outside them,
        to ``fraction`` of the label's points (the split's class shares are kept; a label with
        fewer helpful points gets fewer). ``diagnostics["n_excluded"]`` counts the harmful
        points, ``["n_filled"]`` the points topped up; ``SelectionResult.label_margins`` gives
        every margin. With a fairness block in the value, a label can be "preferred" because it
        would narrow the gap, so more points are excluded than label noise alone explains.
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
                 feature_std: float = 0.3, target: str = "realized", nonneg: bool = True, exact: bool = False,
                 quad_sample: int = 16, harmful: str = "keep", seed: int = 0, progress: bool = True):
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
        if not isinstance(nonneg, bool):
            raise TypeError(f"nonneg must be True or False; got {nonneg!r}")
        self.nonneg = nonneg
        if not isinstance(exact, bool):
            raise TypeError(f"exact must be True or False; got {exact!r}")
        self.exact = exact
        self.quad_sample = check_int("quad_sample", quad_sample, minimum=1)
        self.harmful = check_choice("harmful", harmful, ("keep", "exclude"))
        self.seed = check_int("seed", seed, minimum=0)
        self.progress = progress

    def _atoms(self, task: Task, capacity: int) -> tuple[list[np.ndarray], int]:
        n = len(task.train)
        size = 1 if self.unit == "sample" else self.atom_size
        if size is None:  # smallest group size with 2ω <= min(M, rank)
            size = 1
            while round(self.fraction * np.ceil(n / size)) * 2 > capacity:
                size += 1
        rng = np.random.default_rng(self.seed)
        # groups drawn within (label, group) strata so each atom is homogeneous where possible
        strata = task.train.y * 1000 + (0 if task.train.a is None else task.train.a)
        order = np.concatenate([rng.permutation(np.flatnonzero(strata == s)) for s in np.unique(strata)])
        atoms = [order[i : i + size] for i in range(0, n, size)]
        return atoms, size

    @staticmethod
    def _without_harmful(indices: np.ndarray, margin: np.ndarray, labels: np.ndarray, fraction: float) -> tuple[np.ndarray, int]:
        """Per label, the selected atoms' members of positive ``margin`` (the highest if more than the
        label's quota), topped up to the quota by the unselected points of that label with the highest
        positive margin; the quota is ``fraction`` of the label's training points, so the subset keeps
        the split's class shares. Returns the sorted indices and how many were topped up."""
        chosen = np.zeros(len(margin), bool)
        chosen[indices] = True
        out, filled = [], 0
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            quota = int(round(fraction * len(members)))
            helpful = members[margin[members] > 0]
            inside, outside = helpful[chosen[helpful]], helpful[~chosen[helpful]]
            inside = inside[np.argsort(-margin[inside], kind="stable")][:quota]
            extra = outside[np.argsort(-margin[outside], kind="stable")][: quota - len(inside)]
            out += [inside, extra]
            filled += len(extra)
        return np.sort(np.concatenate(out)).astype(np.int64), filled

    def select(self, task: Task) -> SelectionResult:
        """Train ERM on ``task.train`` for ``epochs`` while selecting; return the subset."""
        if not isinstance(task, Task):
            raise TypeError(f"task must be a trustkit.data.Task; got {type(task).__name__}")
        value = make_value_function(task, self.value, lam=self.lam, max_rows=self.max_rows, fair_rows=self.fair_rows,
                                    label_noise=self.label_noise, feature_std=self.feature_std, seed=self.seed,
                                    scope=self.scope, projection=self.projection)
        set_precision(value, torch.float64 if self.exact else torch.float32)
        probe = make_model_probe(task, self.model, self.seed)
        comp0 = value(probe)
        ranks = feature_rank(probe, task, lambda m: comp0 if m is probe else value(m), scope=self.scope,
                             projection=self.projection, seed=self.seed)
        capacity = min(value.n_rows, ranks["rank"])
        atoms, size = self._atoms(task, capacity)
        n_select = max(1, int(round(self.fraction * len(atoms))))
        if 2 * n_select > capacity:
            warnings.warn(
                f"selecting ω={n_select} atoms from features of rank at most min(M={value.n_rows}, "
                f"rank={ranks['rank']}) (per-sample gradients of dimension {ranks['gradient_dim']} and numerical "
                f"rank {ranks['gradient_rank']}): the least-squares fit is not over-determined and the selection is "
                "close to arbitrary; use unit='batch' (default) or a larger atom_size",
                RuntimeWarning, stacklevel=2,
            )
        omp = OnlineOMP(n_atoms=n_select, ridge=1e-8, nonneg=self.nonneg)
        collector = _Collector(self, value, atoms, omp, labels=task.train.y)
        collector.initial = (probe, comp0)
        trainer = _FinalValidation(model=self.model, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                                   seed=self.seed, callbacks=[collector], progress=self.progress, metrics=["accuracy"])
        t0 = time.perf_counter()
        record = trainer.fit(task)
        total = time.perf_counter() - t0
        chosen = omp.selected_ids
        indices = np.sort(np.concatenate([atoms[k] for k in chosen])) if chosen else np.zeros(0, np.int64)
        n_filled = 0
        if self.harmful == "exclude":
            indices, n_filled = self._without_harmful(indices, collector.label_margin.numpy(), task.train.y, self.fraction)
        last = collector.history[-1] if collector.history else {}
        diagnostics = {
            **omp.summary(),
            # least squares of the final selection on the final features; the pursuit's own mixes epochs
            "relative_residual": last.get("relative_residual", float("nan")),
            "online_residual_mixed_epochs": omp.relative_residual,
            "unit": self.unit, "atom_size": size, "n_candidate_atoms": len(atoms),
            "n_points": len(indices), "fraction_selected": len(indices) / len(task.train),
            "value": self.value, "lam": self.lam, "feature": self.feature, "nonneg": self.nonneg, "exact": self.exact,
            "harmful": self.harmful, "n_excluded": int((~collector.keep).sum()),
            "n_filled": n_filled,
            "gradient_dim": ranks["gradient_dim"], "gradient_rank": ranks["gradient_rank"],
            "value_rank": ranks["value_rank"], "feature_rank": ranks["rank"],
            "selection_s": collector.seconds, "training_s": total - collector.seconds,
            "erm_val_accuracy": record.epochs[-1].val["accuracy"] if record.epochs else float("nan"),
        }
        return SelectionResult(indices=indices, atoms=chosen, weights=omp.beta.numpy().copy(),
                               diagnostics=diagnostics, history=collector.history, model=trainer.model_,
                               point_values=collector.point_value.numpy().copy(),
                               label_margins=None if collector.label_value is None else collector.label_margin.numpy().copy())
