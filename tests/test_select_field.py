"""Field baselines (cleanlab, pyDVL's Data-OOB and KNN-Shapley) on planted label noise, their
registration in ``select_subset``, and TracIn's scores against exact per-sample gradient products
computed with ``torch.func``."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from trustkit.data import Split, Task
from trustkit.experiments import FIELD_METHODS, select_subset
from trustkit.select import cleanlab_subset, data_oob_subset, knn_shapley_subset, random_subset

pytest.importorskip("cleanlab")
pytest.importorskip("pydvl")

SELECTORS = {"cleanlab": cleanlab_subset, "data_oob": data_oob_subset, "knn_shapley": knn_shapley_subset}


def _planted(seed, *, n=600, d=5, flip=0.2, n_eval=400):
    """A separable binary table ``y = 1[x·w > 0]`` with ``flip`` of the training labels flipped
    (validation and test clean). Returns the task and the flipped training points."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)

    def split(m, noisy):
        X = rng.normal(size=(m, d)).astype(np.float32)
        y = (X @ w > 0).astype(np.int64)
        flipped = (rng.random(m) < flip) if noisy else np.zeros(m, bool)
        a = rng.integers(0, 2, m).astype(np.int64)
        return Split(X=X, y=np.where(flipped, 1 - y, y), a=a, index=np.arange(m)), flipped

    (tr, flipped), (va, _), (te, _) = split(n, True), split(n_eval, False), split(n_eval, False)
    task = Task(name="planted", train=tr, val=va, test=te, feature_names=tuple(f"x{i}" for i in range(d)),
                n_classes=2, kind="tabular", card="synthetic", seed=seed, sensitive="g", group_names=("g0", "g1"))
    return task, flipped


@pytest.fixture(scope="module", params=[0, 1])
def planted(request):
    return _planted(request.param)


@pytest.mark.parametrize("method", sorted(SELECTORS))
def test_field_selectors_keep_far_fewer_flipped_labels_than_random(planted, method):
    task, flipped = planted
    idx, scores = SELECTORS[method](task, 0.6, seed=task.seed, return_scores=True)
    k = round(0.6 * len(task.train))
    assert len(idx) == k and len(np.unique(idx)) == k and np.all(np.diff(idx) > 0)
    assert scores.shape == (len(task.train),) and np.isfinite(scores).all()
    kept, rnd = flipped[idx].mean(), flipped[random_subset(task, 0.6, seed=task.seed)].mean()
    assert rnd > 0.1  # the planted rate (20%) survives a random draw
    assert kept < 0.3 * rnd, f"{method} kept {kept:.3f} flipped against random's {rnd:.3f}"
    # flipped points are valued lower, by a wide margin
    assert scores[flipped].mean() < scores[~flipped].mean() - 0.5 * scores[~flipped].std()
    # seeded: the same call gives the same subset
    np.testing.assert_array_equal(idx, SELECTORS[method](task, 0.6, seed=task.seed))


def _cleanlab_issues(task, seed):
    """cleanlab's flagged points, computed here the way the docstring says (5 stratified folds,
    logistic regression)."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X, y = task.train.X.astype(np.float64), task.train.y
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probs = cross_val_predict(LogisticRegression(max_iter=1000), X, y, cv=cv, method="predict_proba")
    return find_label_issues(y, probs)


def test_cleanlab_finds_the_planted_flips(planted):
    task, flipped = planted
    issues = _cleanlab_issues(task, task.seed)
    assert 0.1 < issues.mean() < 0.3 and flipped[issues].mean() > 0.8


def test_cleanlab_drops_issues_first_and_fills_with_the_least_suspect(planted, monkeypatch):
    # cleanlab's flags plus 10% of points picked at random (mostly clean, confidently predicted):
    # the selector must drop whatever is flagged, not merely rank by self-confidence
    import cleanlab.filter

    task, _ = planted
    real, seen = cleanlab.filter.find_label_issues, []
    extra = np.random.default_rng(5).random(len(task.train)) < 0.1

    def flagged(labels, pred_probs, **kw):
        seen.append(real(labels, pred_probs, **kw) | extra)
        return seen[-1]

    monkeypatch.setattr(cleanlab.filter, "find_label_issues", flagged)
    # fewer unflagged points than places: every one is kept, the flagged fill up by self-confidence
    idx, conf = cleanlab_subset(task, 0.95, seed=task.seed, return_scores=True)
    issues = seen[-1]
    assert 0.2 < issues.mean() < 0.4
    kept = np.zeros(len(task.train), bool)
    kept[idx] = True
    assert kept[~issues].all()
    filled, left = np.flatnonzero(kept & issues), np.flatnonzero(~kept & issues)
    assert len(filled) and len(left) and conf[filled].min() >= conf[left].max()
    # more unflagged points than places: nothing flagged is kept, and the kept are the most self-confident
    idx = cleanlab_subset(task, 0.6, seed=task.seed)
    kept = np.zeros(len(task.train), bool)
    kept[idx] = True
    assert not (kept & issues).any()
    assert conf[kept].min() >= conf[~kept & ~issues].max()


def test_select_subset_runs_the_field_baselines():
    task, _ = _planted(0, n=300, n_eval=200)
    assert FIELD_METHODS == ("cleanlab", "data_oob", "knn_shapley")
    for method in FIELD_METHODS:
        idx, diag = select_subset(method, task, fraction=0.5, seed=3)
        assert diag == {}
        np.testing.assert_array_equal(idx, SELECTORS[method](task, 0.5, seed=3))


def test_field_baseline_errors():
    task, _ = _planted(0, n=200, n_eval=100)
    with pytest.raises(ValueError, match=r"unknown method 'knn'; allowed: \[.*'data_oob'.*'knn_shapley'.*\]"):
        select_subset("knn", task, fraction=0.5)
    from trustkit.experiments import selection_comparison

    with pytest.raises(ValueError, match="unknown method 'cleanlab2'.*Did you mean 'cleanlab'"):
        selection_comparison("compas", methods=["cleanlab2"], progress=False)
    for f in SELECTORS.values():
        for bad in (0.0, 1.0, 1.5, -0.1):
            with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
                f(task, bad)
        with pytest.raises(TypeError, match="fraction must be a number"):
            f(task, "half")
    with pytest.raises(ValueError, match="folds must be an integer"):
        cleanlab_subset(task, 0.5, folds=1)
    with pytest.raises(ValueError, match="n_neighbors must be an integer"):
        knn_shapley_subset(task, 0.5, n_neighbors=0)
    with pytest.raises(ValueError, match="one class only"):
        data_oob_subset(task.replace(train=task.train.replace(y=np.zeros(200, np.int64))), 0.5)


def test_knn_shapley_subsamples_validation_by_seed():
    task, _ = _planted(0, n=300, n_eval=400)
    _, full = knn_shapley_subset(task, 0.5, max_val=None, return_scores=True)
    _, s0 = knn_shapley_subset(task, 0.5, max_val=100, seed=0, return_scores=True)
    _, s1 = knn_shapley_subset(task, 0.5, max_val=100, seed=1, return_scores=True)
    assert not np.allclose(s0, s1)
    # a subsample's values estimate the full ones
    assert np.corrcoef(s0, full)[0, 1] > 0.8


# --- TracIn against torch.func ---------------------------------------------------------------

def _head_grads(model, X, y):
    """Per-sample gradients of the cross-entropy with respect to the head's weight and bias, by
    ``vmap(grad(...))`` through the whole model (the body's parameters held fixed)."""
    model = model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    head = {k: v for k, v in params.items() if k.startswith("head.")}
    body = {k: v for k, v in params.items() if not k.startswith("head.")}

    def loss(h, xi, yi):
        out = functional_call(model, {**body, **h}, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    g = vmap(grad(loss), in_dims=(None, 0, 0))(head, torch.as_tensor(X), torch.as_tensor(y))
    return torch.cat([g[k].reshape(len(y), -1) for k in head], dim=1).double()


@pytest.mark.parametrize("value, lam", [("accuracy", 0.5), ("accuracy+fairness", 0.3)])
def test_tracin_scores_equal_exact_per_sample_gradient_products(monkeypatch, value, lam):
    """TracIn's score of training point i is, over the checkpoints t (each epoch's end),
    ``Σ_t lr · g_i(θ_t)·T_t`` with ``T_t = Σ_b w_b (1ᵀ W_b G_t) / ‖W_b G_t‖_F``: ``G_t`` the
    validation points' per-sample last-layer gradients, ``W_b`` block b's component weights
    (identity for accuracy) and ``w_b`` its weight (λ, 1 − λ). Every block's summed gradient is
    scaled by the Frobenius norm of its component gradients at that checkpoint; with the accuracy
    value alone that is textbook TracIn (Pruthi et al. 2020, summed over the validation points)
    with checkpoint t weighted by ``1 / ‖G_t‖_F``."""
    import trustkit.select._baselines as baselines
    from trustkit.select import make_value_function, tracin_topk

    checkpoints = []
    original = baselines._Scores.on_epoch_end

    def keep_checkpoint(self, state, record):
        checkpoints.append(copy.deepcopy(state.model))
        return original(self, state, record)

    monkeypatch.setattr(baselines._Scores, "on_epoch_end", keep_checkpoint)
    task, _ = _planted(0, n=120, n_eval=60)
    lr = 3e-3
    _, scores = tracin_topk(task, 0.5, value=value, lam=lam, epochs=3, lr=lr, seed=0, return_scores=True)
    assert len(checkpoints) == 3
    vf = make_value_function(task, value, lam=lam, seed=0)
    parts = [(vf.first, lam), (vf.second, 1 - lam)] if "+" in value else [(vf, 1.0)]
    ref = torch.zeros(len(task.train), dtype=torch.float64)
    textbook = torch.zeros_like(ref)
    for model in checkpoints:
        g_train = _head_grads(model, task.train.X, task.train.y)
        target = torch.zeros(g_train.shape[1], dtype=torch.float64)
        for part, weight in parts:
            with torch.no_grad():
                losses = F.cross_entropy(model(part.X), part.y, reduction="none").double()
            G = part.weights(losses).double() @ _head_grads(model, part.X.numpy(), part.y.numpy())
            target += weight * G.sum(0) / G.norm()
        ref += lr * g_train @ target
        if value == "accuracy":
            textbook += lr * g_train @ _head_grads(model, task.val.X, task.val.y).sum(0)
    torch.testing.assert_close(torch.as_tensor(scores), ref, rtol=1e-4, atol=1e-9)
    if value == "accuracy":  # the per-checkpoint scale is the only difference from textbook TracIn
        assert not torch.allclose(ref / ref.norm(), textbook / textbook.norm(), rtol=1e-3, atol=1e-6)
        assert torch.corrcoef(torch.stack([ref, textbook]))[0, 1] > 0.99
