"""VTruST value functions (checked against autograd) and the selector's behaviour and errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trustkit.data import Split, Task, load_digits, load_german
from trustkit.models import make_model
from trustkit.select import (
    VTruST,
    accuracy_value,
    composite_value,
    fairness_value,
    make_value_function,
    per_sample_grads,
    subset_task,
)


@pytest.fixture(scope="module")
def german():
    return load_german(seed=0)


def _planted(seed, *, n=600, d=5, group_noise=(0.0, 0.0), group_sigma=(0.0, 0.0), n_eval=400):
    """A binary task with known structure: ``y = 1[x·w + σ_a ε > 0]``, then the training labels of
    group ``a`` flipped with probability ``group_noise[a]``. Returns the task and the training
    split's flipped (harmful) points; validation and test labels are clean."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)

    def split(m, train):
        X = rng.normal(size=(m, d)).astype(np.float32)
        a = rng.integers(0, 2, m)
        y = (X @ w + np.asarray(group_sigma)[a] * rng.normal(size=m) > 0).astype(np.int64)
        flip = (rng.random(m) < np.asarray(group_noise)[a]) if train else np.zeros(m, bool)
        return Split(X=X, y=np.where(flip, 1 - y, y), a=a.astype(np.int64), index=np.arange(m)), flip

    (tr, flipped), (va, _), (te, _) = split(n, True), split(n_eval, False), split(n_eval, False)
    task = Task(name="planted", train=tr, val=va, test=te, feature_names=tuple(f"x{i}" for i in range(d)),
                n_classes=2, kind="tabular", card="synthetic", seed=seed, sensitive="g", group_names=("g0", "g1"))
    return task, flipped


def _head_grad(model, loss):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.head.parameters()))])


def test_accuracy_value_is_per_point_loss_and_gradient(german):
    model = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=0)
    v = accuracy_value(german.val.X, german.val.y)
    comp = v(model)
    X, y = torch.as_tensor(german.val.X), torch.as_tensor(german.val.y)
    losses = F.cross_entropy(model(X), y, reduction="none")
    torch.testing.assert_close(comp.values, losses.double().detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(comp.grads, per_sample_grads(model, X, y).double(), atol=1e-6, rtol=1e-6)


def test_fairness_value_matches_autograd_of_the_eo_disparity(german):
    model = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=1)
    fv = fairness_value(german.val.X, german.val.y, german.val.a, n_rows=6, seed=0)
    comp = fv(model)
    X, y = torch.as_tensor(german.val.X), torch.as_tensor(german.val.y)
    for r in range(6):
        losses = F.cross_entropy(model(X), y, reduction="none").double()
        L = {k: (m[r] * losses).sum() for k, m in fv._M.items()}
        ed = torch.maximum((L[(0, 0)] - L[(0, 1)]).abs(), (L[(1, 0)] - L[(1, 1)]).abs())
        assert float(comp.values[r]) == pytest.approx(float(ed.detach()), rel=1e-6)
        torch.testing.assert_close(comp.grads[r], _head_grad(model, ed).double(), atol=1e-6, rtol=1e-5)


def test_composite_blocks_weigh_by_lambda(german):
    a = accuracy_value(german.val.X, german.val.y, max_rows=50)
    f = fairness_value(german.val.X, german.val.y, german.val.a, n_rows=20)
    c = composite_value(a, f, lam=0.3)
    assert c.n_rows == 70
    (s1, w1), (s2, w2) = c.blocks()
    assert (s1, s2) == (slice(0, 50), slice(50, 70)) and w1 == pytest.approx(0.3) and w2 == pytest.approx(0.7)
    comp = c(make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=0))
    assert comp.values.shape == (70,) and comp.grads.shape[0] == 70


def test_value_function_errors(german):
    with pytest.raises(ValueError, match="needs a sensitive attribute"):
        fairness_value(german.val.X, german.val.y, None)
    a = german.val.a.copy()
    a[(german.val.y == 0) & (a == 0)] = 1  # empty (label 0, group 0) cell
    with pytest.raises(ValueError, match=r"validation cell \(label=0, group=0\) is empty"):
        fairness_value(german.val.X, german.val.y, a)
    with pytest.raises(ValueError, match="needs a sensitive attribute"):
        make_value_function(load_digits(seed=0), "fairness")
    with pytest.raises(ValueError, match="unknown value function 'fair'"):
        make_value_function(german, "fair")


@pytest.mark.parametrize("kwargs, pattern", [
    ({"lam": 1.5}, r"lam must be in \[0, 1\]"),
    ({"lam": -0.1}, r"lam must be in \[0, 1\]"),
    ({"fraction": 1.0}, r"fraction must be in \(0, 1\)"),
    ({"fraction": 0}, r"fraction must be in \(0, 1\)"),
    ({"unit": "group"}, "unknown unit"),
    ({"feature": "taylor"}, "unknown feature"),
])
def test_vtrust_argument_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        VTruST(**kwargs)


def test_vtrust_selects_a_tracked_subset(german):
    kw = dict(value="accuracy+fairness", lam=0.5, fraction=0.5, epochs=3, progress=False, seed=0)
    res = VTruST(**kw).select(german)
    d = res.diagnostics
    assert len(np.unique(res.indices)) == len(res.indices) and res.indices.max() < len(german.train)
    assert abs(d["fraction_selected"] - 0.5) < 0.1
    assert 0 <= d["relative_residual"] <= 1.0 + 1e-9
    assert 2 * d["n_atoms"] <= min(d["target_rows"], d["feature_rank"])
    # the selected atoms the non-negative fit gives weight 0 are counted (they only fill ω)
    assert res.weights.min() >= 0 and 0 <= d["n_nonpositive_weight"] <= d["n_selected"] == len(res.atoms)
    assert d["n_nonpositive_weight"] == int((res.weights <= 1e-10).sum()) == res.history[-1]["n_nonpositive_weight"]
    assert d["selection_s"] > 0 and len(res.history) == 3
    again = VTruST(**kw).select(german)
    np.testing.assert_array_equal(res.indices, again.indices)
    sub = subset_task(german, res.indices)
    assert len(sub.train) == len(res.indices) and len(sub.test) == len(german.test)
    np.testing.assert_array_equal(sub.train.index, german.train.index[res.indices])


def test_vtrust_validates_its_training_run_after_the_last_epoch_only(german, monkeypatch):
    # the value function is the per-epoch signal; the Trainer's validation runs once, at the end,
    # and erm_val_accuracy is the final model's validation accuracy
    from trustkit.metrics import evaluate
    from trustkit.select import _vtrust

    seen = []
    fit = _vtrust._FinalValidation.fit

    def spy(self, task):
        record = fit(self, task)
        seen.append(record)
        return record

    monkeypatch.setattr(_vtrust._FinalValidation, "fit", spy)
    res = VTruST(value="accuracy", fraction=0.5, epochs=3, progress=False, seed=0).select(german)
    (record,) = seen
    assert [bool(e.val) for e in record.epochs] == [False, False, True]
    assert res.diagnostics["erm_val_accuracy"] == evaluate(res.model, german.val, metrics=["accuracy"])["accuracy"]
    assert len(res.history) == 3


def test_vtrust_starts_from_the_values_of_the_initial_model(german, monkeypatch):
    # the rank probe's value evaluation is reused at the start of training: it must be the
    # initial model's own (the realised target is the decrease since then)
    from trustkit.select import _vtrust

    seen = {}
    start = _vtrust._Collector.on_fit_start

    def spy(self, state):
        start(self, state)
        seen["reused"] = self.values0 is self.initial[1].values
        seen["values0"], seen["fresh"] = self.values0.clone(), self.value(state.model).values

    monkeypatch.setattr(_vtrust._Collector, "on_fit_start", spy)
    VTruST(value="accuracy+fairness", fraction=0.5, epochs=1, progress=False, seed=3).select(german)
    assert seen["reused"] and torch.equal(seen["values0"], seen["fresh"])


def test_vtrust_warns_when_not_over_determined(german):
    with pytest.warns(RuntimeWarning, match="not over-determined"):
        VTruST(value="accuracy", unit="sample", fraction=0.5, epochs=1, progress=False).select(german)


def test_vtrust_group_size_follows_the_measured_rank_of_the_gradients(german):
    # the guard must use the rank the features can have, measured on real per-sample gradients of
    # the model the selection starts from, not the gradient's length
    torch.manual_seed(0)
    model = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=0)
    g = per_sample_grads(model, torch.as_tensor(german.train.X), torch.as_tensor(german.train.y))
    rank = int(torch.linalg.matrix_rank(g))
    assert rank < g.shape[1]  # a 2-class head: the gradient has fewer directions than numbers
    res = VTruST(value="accuracy+fairness", fraction=0.5, epochs=1, progress=False).select(german)
    d = res.diagnostics
    assert d["gradient_dim"] == g.shape[1] and d["gradient_rank"] == rank
    capacity = min(d["target_rows"], d["feature_rank"])
    assert d["feature_rank"] <= rank and 2 * d["n_atoms"] <= capacity
    # and the group size is the smallest that keeps the fit over-determined
    n, size = len(german.train), d["atom_size"]
    assert size == 1 or 2 * round(0.5 * np.ceil(n / (size - 1))) > capacity


def test_reported_residual_is_least_squares_on_the_final_features(german):
    from trustkit.select import value_features

    sel = VTruST(value="accuracy+fairness", lam=0.5, fraction=0.5, epochs=4, progress=False, seed=0)
    res = sel.select(german)
    d = res.diagnostics
    # recompute the last epoch's problem from the final model: target, atoms, least squares
    value = make_value_function(german, "accuracy+fairness", lam=0.5, seed=0)
    comp = value(res.model)
    y = value(make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=0)).values - comp.values
    scale = torch.ones(len(y), dtype=torch.double)
    for rows, w in value.blocks():
        scale[rows] = w / y[rows].norm()
    g = per_sample_grads(res.model, torch.as_tensor(german.train.X), torch.as_tensor(german.train.y)).double()
    f = value_features(g, comp.grads, lr=sel.lr, kind="paper") * scale[:, None]
    atoms = sel._atoms(german, min(d["target_rows"], d["feature_rank"]))[0]
    cols = torch.stack([f[:, atoms[k]].mean(1) for k in res.atoms], 1)
    cols = cols / cols.norm(dim=0)
    target = y * scale
    beta = torch.linalg.lstsq(cols, target.unsqueeze(1)).solution.squeeze(1)
    expected = float((target - cols @ beta).norm() / target.norm())
    assert d["relative_residual"] == pytest.approx(expected, rel=1e-4)
    assert res.history[-1]["relative_residual"] == pytest.approx(expected, rel=1e-4)
    # the online pursuit's own residual mixes epochs and is reported under a name that says so
    assert d["online_residual_mixed_epochs"] != pytest.approx(expected, rel=1e-3)


def _selected_vs_random(value, seeds, *, harmful="keep", target="realized", **task_kw):
    from trustkit.select import random_subset
    from trustkit.train import Trainer

    rows = []
    for seed in seeds:
        task, flipped = _planted(seed, **task_kw)
        res = VTruST(value=value, fraction=0.5, epochs=5, seed=seed, progress=False, harmful=harmful,
                     target=target).select(task)
        if harmful == "exclude":  # no point of non-positive label margin is ever in the subset
            assert (res.label_margins[res.indices] > 0).all() and res.diagnostics["n_excluded"] > 0
        rnd = random_subset(task, len(res.indices) / len(task.train), seed=seed)
        row = []
        for idx in (res.indices, rnd):
            tr = Trainer(model="mlp", epochs=20, lr=3e-3, seed=seed, progress=False)
            tr.fit(subset_task(task, idx))
            with torch.no_grad():
                loss = F.cross_entropy(tr.model_(torch.as_tensor(task.val.X)), torch.as_tensor(task.val.y))
            row += [float(loss), float(flipped[idx].mean())]
        rows.append(row)
    return np.mean(rows, axis=0)  # VTruST loss, VTruST flipped share, random loss, random flipped share


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "VTruST's selection is a least-squares approximation of the value vector, not a ranking by value: on these "
    "3 seeds it reaches validation loss 0.366 keeping 0.194 flipped points against random's 0.365 and 0.207 "
    "(with group 1 all flipped: 0.741 and 0.484 against 0.749 and 0.516). Not a fault of the online pursuit: "
    "the offline greedy OMP, VTruST's own replacement rule and the NNLS optimum over every atom also keep "
    "harmful atoms at the base rate, because an atom opposed to the target cancels the off-target part of "
    "helpful atoms' columns with a positive weight (all-flipped group, 'remaining' target: relative residual "
    "0.54-0.60 with helpful atoms only, 0.33-0.41 with both); flipping the features' sign changes nothing"))
def test_vtrust_accuracy_value_beats_random_on_planted_noisy_labels():
    # 40% of group 1's training labels are flipped (validation is clean): the accuracy value targets
    # the validation loss, so VTruST's subset should reach a lower one than a random subset of the
    # same size, and keep fewer flipped points
    vt_loss, vt_flip, rnd_loss, rnd_flip = _selected_vs_random("accuracy", range(3), n=800, group_noise=(0.0, 0.4))
    assert vt_loss < rnd_loss - 0.01 and vt_flip < rnd_flip - 0.03


@pytest.mark.parametrize("target", ["realized", "remaining"])
@pytest.mark.parametrize("group_noise", [(0.0, 0.4), (0.2, 0.2)], ids=["group", "uniform"])
def test_value_aware_vtrust_beats_random_on_planted_noisy_labels(target, group_noise):
    # the same planted problem as above (and uniform noise): with harmful="exclude" a point for which
    # the value prefers another label as strongly as it does for that label's typical point stays out
    # (measured: validation loss 0.27 against random's 0.38, flipped points kept 0.08 against 0.21)
    vt_loss, vt_flip, rnd_loss, rnd_flip = _selected_vs_random("accuracy", range(3), harmful="exclude", target=target,
                                                               n=800, group_noise=group_noise)
    assert vt_loss < rnd_loss - 0.01 and vt_flip < rnd_flip - 0.03


def test_value_aware_vtrust_fills_each_label_to_its_share_with_helpful_points(german):
    res = VTruST(value="accuracy", fraction=0.4, epochs=3, seed=0, progress=False, harmful="exclude").select(german)
    m, y = res.label_margins, german.train.y
    assert (m[res.indices] > 0).all() and res.diagnostics["n_excluded"] == int((m <= 0).sum()) > 0
    for c in (0, 1):  # the subset keeps the split's class shares
        assert (y[res.indices] == c).sum() == round(0.4 * (y == c).sum())
    assert res.diagnostics["harmful"] == "exclude" and res.diagnostics["n_filled"] > 0
    keep = VTruST(value="accuracy", fraction=0.4, epochs=3, seed=0, progress=False).select(german)
    assert keep.label_margins is None and keep.diagnostics["n_excluded"] == 0
    with pytest.raises(ValueError, match="harmful"):
        VTruST(harmful="drop")


def test_value_aware_vtrust_keeps_every_class_of_clean_digits():
    # ten classes, clean labels: the per-class thresholds exclude a minority of points and every
    # label keeps its share where it has enough helpful points (a rule comparing labels without
    # per-point centring and thresholds dropped whole classes)
    task = load_digits(image_size=8, seed=0)
    task = task.replace(**{n: task.split(n).replace(X=task.split(n).X.reshape(len(task.split(n)), -1))
                           for n in ("train", "val", "test")})
    res = VTruST(value="accuracy", fraction=0.6, epochs=5, seed=0, progress=False, harmful="exclude", model="mlp").select(task)
    y = task.train.y
    assert 0 < res.diagnostics["n_excluded"] < 0.3 * len(y)
    helpful = np.bincount(y[res.label_margins > 0], minlength=10)
    quota = np.round(0.6 * np.bincount(y, minlength=10))
    np.testing.assert_array_equal(np.bincount(y[res.indices], minlength=10), np.minimum(quota, helpful))
    assert (helpful >= 0.5 * quota).all()


def test_value_aware_top_up_takes_the_highest_margins_outside():
    margin = np.array([1.0, -1.0, 0.5, 3.0, 2.0, -2.0, 0.2, 0.1])
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    # label 0: quota 3 of 6, selected helpful {0, 2}, top-up by margin from {3, 4}: 3; label 1: quota 1 of 2
    idx, filled = VTruST._without_harmful(np.array([0, 1, 2]), margin, labels, 0.5)
    assert idx.tolist() == [0, 2, 3, 6] and filled == 2
    # a quota larger than the helpful points: never a harmful point, the subset is smaller
    idx, filled = VTruST._without_harmful(np.array([0, 1, 2]), margin, labels, 1.0)
    assert idx.tolist() == [0, 2, 3, 4, 6, 7] and filled == 4
    # more selected helpful points than the quota: the highest margins stay
    idx, _ = VTruST._without_harmful(np.array([0, 2, 3, 4]), margin, labels, 2 / 6)
    assert idx.tolist() == [3, 4, 6]


def test_label_margin_is_confident_learning_on_values():
    from types import SimpleNamespace

    from trustkit.select._vtrust import _Collector

    margin = lambda V, y: _Collector.label_margin.fget(SimpleNamespace(label_value=V, labels=y))
    # two labels: points 0-2 labelled 0, 3-5 labelled 1; V[i, c] their summed label values
    V = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.double)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    # s = V less its row mean: s[:, 1] = (V1 - V0) / 2 = [-1.5, -1, 1, 2, 1, 0]; thresholds t0 = 0.5, t1 = 1
    # point 2 (label 0) reaches t1 exactly and clears it by 0 > its own -1.5: harmful, margin 0
    m = margin(V, y)
    torch.testing.assert_close(m, torch.tensor([3.5, 2.5, 0.0, 3.5, 1.5, 0.5], dtype=torch.double))
    # a constant added to one label's values changes nothing
    torch.testing.assert_close(margin(V + torch.tensor([10.0, 0.0], dtype=torch.double), y), m)
    # three labels, random values: positive margin exactly when no other label passes the rule
    g = torch.Generator().manual_seed(0)
    V, y = torch.randn(60, 3, generator=g, dtype=torch.double), torch.randint(0, 3, (60,), generator=g)
    m = margin(V, y)
    s = V - V.mean(1, keepdim=True)
    t = [float(s[y == c, c].mean()) for c in range(3)]
    for i in range(60):
        yi = int(y[i])
        harmful = any(s[i, c] >= t[c] and s[i, c] - t[c] >= s[i, yi] - t[yi] for c in range(3) if c != yi)
        assert harmful == bool(m[i] <= 0)
    assert 0 < int((m <= 0).sum()) < 60


def test_label_values_match_autograd_per_label(german):
    from trustkit.select import label_values

    model = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=0)
    X = torch.as_tensor(german.train.X[:20])
    w = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    w_head = torch.randn(sum(p.numel() for p in model.head.parameters()), dtype=torch.float64,
                         generator=torch.Generator().manual_seed(1))
    for scope, vec, params in (("full", w, list(model.parameters())), ("last_layer", w_head, list(model.head.parameters()))):
        v = label_values(model, X, vec, n_classes=2, scope=scope)
        for i in (0, 7):
            for c in (0, 1):
                loss = F.cross_entropy(model(X[i : i + 1]), torch.tensor([c]))
                g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)]).double()
                assert float(v[i, c]) == pytest.approx(float(g @ vec), rel=1e-4, abs=1e-9)


def test_subset_task_errors(german):
    with pytest.raises(ValueError, match="empty"):
        subset_task(german, [])
    with pytest.raises(ValueError, match=r"must lie in \[0, 600\)"):
        subset_task(german, [0, 600])


# --- baselines -------------------------------------------------------------------------------

def test_random_subset_is_stratified_and_seeded(compas_task):
    from trustkit.select import random_subset

    idx = random_subset(compas_task, 0.6, seed=0)
    assert abs(len(idx) / len(compas_task.train) - 0.6) < 0.01
    np.testing.assert_array_equal(idx, random_subset(compas_task, 0.6, seed=0))
    assert not np.array_equal(idx, random_subset(compas_task, 0.6, seed=1))
    cells = lambda y, a: np.bincount(y * 2 + a, minlength=4) / len(y)
    np.testing.assert_allclose(cells(compas_task.train.y[idx], compas_task.train.a[idx]),
                               cells(compas_task.train.y, compas_task.train.a), atol=0.005)


@pytest.mark.parametrize("seed", [0, 1])
def test_tracin_topk_drops_planted_noisy_labels(seed):
    # 20% of the training labels are flipped; validation is clean, so a flipped point raises the
    # validation loss and must rank low: the top 60% keep far fewer flipped points than the data
    from trustkit.select import random_subset, tracin_topk

    task, flipped = _planted(seed, group_noise=(0.2, 0.2))
    k = round(0.6 * len(task.train))
    for stratify in (False, True):
        idx, scores = tracin_topk(task, 0.6, value="accuracy", epochs=3, seed=seed, stratify=stratify, return_scores=True)
        assert len(idx) == k and len(np.unique(idx)) == k
        assert flipped[idx].mean() < 0.5 * flipped[random_subset(task, 0.6, seed=seed)].mean()
        np.testing.assert_array_equal(idx, tracin_topk(task, 0.6, value="accuracy", epochs=3, seed=seed, stratify=stratify))
    assert scores[flipped].mean() < 0 < scores[~flipped].mean()  # helpful points score higher
    # the stratified variant keeps each class's share of the split
    assert abs(task.train.y[idx].mean() - task.train.y.mean()) <= 1 / k


def test_plain_tracin_is_a_class_filter_and_the_stratified_variant_is_not(compas_task):
    from trustkit.select import tracin_topk

    y = compas_task.train.y
    plain, scores = tracin_topk(compas_task, 0.6, value="accuracy", epochs=3, return_scores=True)
    strat = tracin_topk(compas_task, 0.6, value="accuracy", epochs=3, stratify=True)
    # the sign of a last-layer score follows the label: one class scores almost entirely above 0
    assert max((scores[y == 0] > 0).mean(), (scores[y == 1] > 0).mean()) > 0.95
    assert abs(y[plain].mean() - y.mean()) > 0.15
    assert len(strat) == len(plain) and abs(y[strat].mean() - y.mean()) <= 1 / len(strat)
    with pytest.raises(TypeError, match="stratify must be True or False"):
        tracin_topk(compas_task, 0.6, stratify="label")


def test_fairlearn_threshold_optimizer_reduces_the_eo_gap(compas_task):

    from trustkit.select import fairlearn_reference
    from trustkit.train import Trainer

    ref = fairlearn_reference(compas_task, method="threshold", seed=0)
    erm = Trainer(epochs=10, progress=False).fit(compas_task).test
    assert ref["eo_gap"] < erm["eo_gap"]
    assert 0.05 < ref["positive_rate"] < 0.95
    with pytest.raises(ValueError, match="unknown method"):
        fairlearn_reference(compas_task, method="reweigh")
    with pytest.raises(ValueError, match="need a binary task with a sensitive attribute"):
        fairlearn_reference(load_digits(seed=0))


def test_remaining_target_variant_runs(german):
    res = VTruST(value="fairness", target="remaining", fraction=0.5, epochs=2, progress=False).select(german)
    assert len(res.indices) > 0 and res.diagnostics["relative_residual"] <= 1 + 1e-9


@pytest.mark.parametrize("seed", [0, 2])
def test_ssfr_raises_the_share_of_the_higher_loss_group(seed):
    # group 1's labels are far noisier functions of x than group 0's, so its cells have the larger
    # loss; equalised odds asks for more of group 1 within each label, never less
    from trustkit.select import ssfr_subset

    task, _ = _planted(seed, n=1200, group_sigma=(0.0, 2.0))
    _, hist = ssfr_subset(task, 0.6, epochs=6, lr=1e-2, seed=seed, return_history=True)
    assert len(hist) == 5  # one warm-start epoch, then a selection per epoch
    for lab in (0, 1):
        share = [h[f"share_y{lab}_1"] for h in hist]
        assert all(b >= a - 1e-9 for a, b in zip(share, share[1:])), share
        assert all(h[f"loss_y{lab}_1"] >= h[f"loss_y{lab}_0"] for h in hist[:1])
    assert sum(hist[-1][f"share_y{lab}_1"] - hist[0][f"share_y{lab}_1"] for lab in (0, 1)) > 0.02


def test_ssfr_drops_planted_noisy_labels():
    from trustkit.select import ssfr_subset

    task, flipped = _planted(0, n=1200, group_noise=(0.2, 0.2), group_sigma=(0.3, 0.3))
    idx = ssfr_subset(task, 0.6, epochs=6, lr=1e-2, seed=0)
    assert flipped[idx].mean() < 0.25 * flipped.mean()


def test_ssfr_returns_the_size_asked_with_bounded_shares(compas_task):
    # on COMPAS the shares used to run away (one cell down to 1 of its 688 points, 0.548 of the
    # data kept when 0.6 was asked); now every selection has exactly round(0.6 n) points and each
    # cell keeps at least min_share of its label's places (or all its points if it has fewer)
    from trustkit.select import ssfr_subset

    y, a = compas_task.train.y, compas_task.train.a
    n = round(0.6 * len(y))
    for cell_loss in ("quantile", "selected"):
        idx, hist = ssfr_subset(compas_task, 0.6, epochs=10, cell_loss=cell_loss, seed=0, return_history=True)
        assert len(idx) == n and len(hist) == 9 and all(h["selected"] == n for h in hist)
        for h in hist:
            for lab in (0, 1):
                m = h[f"n_y{lab}_0"] + h[f"n_y{lab}_1"]
                assert abs(m - n * (y == lab).mean()) <= 1  # label sizes fixed
                assert h[f"share_y{lab}_0"] + h[f"share_y{lab}_1"] == pytest.approx(1.0)
                for g in (0, 1):
                    cell = int(((y == lab) & (a == g)).sum())
                    assert h[f"n_y{lab}_{g}"] <= cell
                    assert h[f"n_y{lab}_{g}"] >= min(round(0.1 * m), cell) - 1
        # the last selection is the subset returned: the counts per cell match
        for lab in (0, 1):
            for g in (0, 1):
                assert int(((y[idx] == lab) & (a[idx] == g)).sum()) == hist[-1][f"n_y{lab}_{g}"]


def test_ssfr_errors(compas_task):
    from trustkit.select import ssfr_subset

    with pytest.raises(ValueError, match="SSFR needs a binary task"):
        ssfr_subset(load_digits(seed=0), 0.5)
    with pytest.raises(ValueError, match="epochs must exceed warm_start"):
        ssfr_subset(compas_task, 0.5, epochs=1)
    with pytest.raises(ValueError, match=r"min_share must be a number in \[0, 0.5\)"):
        ssfr_subset(compas_task, 0.5, min_share=0.5)
    with pytest.raises(ValueError, match="unknown cell_loss"):
        ssfr_subset(compas_task, 0.5, cell_loss="all")


def test_cf_gap_and_data_map():
    from trustkit.data import load_compas
    from trustkit.select import cf_gap, data_map
    from trustkit.train import Trainer

    task = load_compas(seed=0, sensitive_as_feature=True)
    tr = Trainer(epochs=3, progress=False)
    tr.fit(task)
    gaps = cf_gap(tr.model_, task)
    assert gaps.shape == (len(task.train),) and (gaps >= 0).all() and gaps.max() > 0
    blind = load_compas(seed=0)
    with pytest.raises(ValueError, match="sensitive_as_feature=True"):
        cf_gap(tr.model_, blind)
    dm = data_map(tr.model_, task.train.X[:300])
    assert list(dm.columns) == ["uncertainty", "distinctiveness"] and len(dm) == 300
    assert (dm["uncertainty"] >= 0).all() and (dm["uncertainty"] <= np.log(2) + 1e-6).all()
    p = torch.softmax(tr.model_(torch.as_tensor(task.train.X[:5])), 1).detach()
    np.testing.assert_allclose(dm["uncertainty"][:5], -(p * p.log()).sum(1).numpy(), rtol=1e-5)
    f = tr.model_.features(torch.as_tensor(task.train.X[:300])).detach()
    np.testing.assert_allclose(dm["distinctiveness"][0], torch.cdist(f[:1], f).sum().item() / 299, rtol=1e-4)


def test_cf_gap_is_the_change_when_only_the_sensitive_columns_swap():
    from trustkit.data import load_compas
    from trustkit.select import cf_gap
    from trustkit.select._explain import _sensitive_columns

    task = load_compas(seed=0, sensitive_as_feature=True)
    c0, c1 = _sensitive_columns(task)
    X = task.train.X[:200]
    d = X.shape[1]
    blind = torch.nn.Linear(d, 2)
    with torch.no_grad():
        blind.weight[:, [c0, c1]] = 0.0
    np.testing.assert_allclose(cf_gap(blind, task, X), 0.0, atol=1e-6)  # the attribute is ignored: no gap
    # a model that reads only the attribute: logit of class 1 = 2 on group column c1, 0 on c0
    only = torch.nn.Linear(d, 2)
    with torch.no_grad():
        only.weight.zero_(); only.bias.zero_()
        only.weight[1, c1] = 2.0
    p_c1, p_c0 = 1 / (1 + np.exp(-2.0)), 0.5
    np.testing.assert_allclose(cf_gap(only, task, X), abs(p_c1 - p_c0), rtol=1e-5)


def test_feature_rank_is_the_smaller_of_the_two_ranks(german):
    from trustkit.select import feature_rank, make_value_function
    from trustkit.select._vtrust import make_model_probe

    few = german.replace(val=german.val.replace(**{k: getattr(german.val, k)[:20] for k in ("X", "y", "a", "index")}))
    value = make_value_function(few, "accuracy", seed=0)
    ranks = feature_rank(make_model_probe(few, "mlp", 0), few, value, seed=0)
    assert ranks["value_rank"] <= 20 < ranks["gradient_rank"]
    assert ranks["rank"] == min(ranks["gradient_rank"], ranks["value_rank"]) == ranks["value_rank"]


def test_ssfr_label_sizes_use_the_largest_remainders():
    from trustkit.select._ssfr import _SelectedCrossEntropy, label_sizes

    assert label_sizes([1, 3], 2).tolist() == [1, 1]  # remainders .5 and .5: the first one rounds up
    assert label_sizes([2017, 1685], 2221).tolist() == [1210, 1011]
    assert label_sizes([1, 1, 2], 3).sum() == 3
    # the training term is the mean cross-entropy over the selected rows of the batch
    term = _SelectedCrossEntropy(4)
    term.mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    from trustkit.train import Batch

    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    got = term(None, Batch(x=torch.zeros(4, 1), y=y, a=None, idx=torch.arange(4)), logits)
    assert float(got) == pytest.approx(float((ce[0] + ce[2]) / 2))


# --- augmentation pools -------------------------------------------------------------------------

def test_counts_sum_and_proportions():
    from trustkit.select._saug import _counts

    n = _counts(np.array([0.5, 0.25, 0.25, -1.0]), 101)
    assert n.sum() == 101 and n[3] == 0 and abs(n[0] - 50.5) <= 1
    assert _counts(np.array([-1.0, -2.0]), 10).tolist() == [5, 5]  # nothing positive: uniform


def test_augmented_task_adds_tagged_corrupted_copies():
    from trustkit.select import augmented_task, uniform_counts

    task = load_digits(seed=0)
    counts = uniform_counts(["fog", "pixelate"], 101)
    assert counts == {"fog": 51, "pixelate": 50}
    aug = augmented_task(task, counts, seed=0)
    tags = aug.notes["augmentation"]
    assert len(aug.train) == len(task.train) + 101 and (tags == "fog").sum() == 51
    extra = aug.train.X[len(task.train):]
    assert extra.shape[1:] == task.input_shape and not np.allclose(extra, task.train.X[:101])
    # class balance of the added copies follows the training split's
    frac = np.bincount(aug.train.y[len(task.train):], minlength=10) / 101
    np.testing.assert_allclose(frac, np.bincount(task.train.y, minlength=10) / len(task.train), atol=0.02)
    with pytest.raises(ValueError, match="for image tasks"):
        augmented_task(load_german(seed=0), counts)
    with pytest.raises(ValueError, match="unknown corruption"):
        augmented_task(task, {"rain": 3})


def test_saug_returns_a_pool_of_the_budget():
    from trustkit.select import saug

    task = load_digits(seed=0)
    res = saug(task, ["gaussian_noise", "contrast"], aug_factor=0.2, rounds=2, epochs=1, seed=0)
    assert sum(res.counts.values()) == round(0.2 * len(task.train))
    assert res.mat.shape == (3, 2) and 1 <= len(res.history) <= 2
    assert max(h["mean_robust_acc"] for h in res.history) == pytest.approx(
        next(h["mean_robust_acc"] for h in res.history if all(h[f"n[{c}]"] == n for c, n in res.counts.items())))


def test_vtrust_full_model_projected_gradients(german):
    res = VTruST(value="accuracy+fairness", scope="full", projection=256, fraction=0.5, epochs=2, progress=False).select(german)
    d = res.diagnostics
    assert d["gradient_dim"] == 256 and 2 * d["n_atoms"] <= 256
    assert d["atom_size"] < VTruST(value="accuracy+fairness", fraction=0.5, epochs=1, progress=False).select(german).diagnostics["atom_size"]
    with pytest.raises(ValueError, match="unknown scope"):
        VTruST(scope="head")


# --- subset_task ----------------------------------------------------------------------------------

def test_subset_task_keeps_every_array_of_the_chosen_rows(german):
    idx = np.array([17, 0, 5, 599])
    sub = subset_task(german, idx)
    for name in ("X", "y", "a", "index"):
        np.testing.assert_array_equal(getattr(sub.train, name), getattr(german.train, name)[idx], err_msg=name)
    assert sub.val is german.val and sub.test is german.test and sub.notes["subset"] == 4
    # a task without a sensitive attribute stays without one
    digits = load_digits(seed=0)
    assert subset_task(digits, [0, 3]).train.a is None


@pytest.mark.parametrize("idx", [[3, -1], [-5, -2], [0, 600]])
def test_subset_task_refuses_indices_outside_the_split(german, idx):
    with pytest.raises(ValueError, match=r"subset indices must lie in \[0, 600\); got \[" + str(min(idx))):
        subset_task(german, idx)


# --- what the selector hands the pursuit each epoch -----------------------------------------------

def test_collector_offers_each_atoms_mean_feature_and_a_target_scaled_per_block(german):
    # atoms of 1 to 4 rows: the column of an atom is the mean of its members' features; the target is
    # the decrease of every value component, each block scaled to norm λ or 1 − λ, and the features
    # get the same row scaling
    from types import SimpleNamespace

    from trustkit.select import OnlineOMP, value_features
    from trustkit.select._vtrust import _Collector

    class Spy(OnlineOMP):
        def start_epoch(self, y):
            self.seen_target = torch.as_tensor(y).clone()
            super().start_epoch(y)

        def offer(self, ids, X):
            self.seen = (list(ids), torch.as_tensor(X).clone())
            super().offer(ids, X)

    lam = 0.3
    sel = VTruST(value="accuracy+fairness", lam=lam, fraction=0.5, progress=False, seed=0, exact=True)
    value = make_value_function(german, "accuracy+fairness", lam=lam, max_rows=40, fair_rows=16, seed=0)
    n = len(german.train)
    order = np.random.default_rng(0).permutation(n)
    cuts = np.cumsum(np.resize([1, 2, 3, 4], n))
    atoms = [order[a:b] for a, b in zip(np.r_[0, cuts], cuts) if a < n]
    assert {len(a) for a in atoms} == {1, 2, 3, 4} and sum(len(a) for a in atoms) == n
    spy = Spy(n_atoms=8)
    collector = _Collector(sel, value, atoms, spy)
    start = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=0)
    now = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=1)
    collector.on_fit_start(SimpleNamespace(model=start))
    collector.on_epoch_end(SimpleNamespace(model=now, task=german, epoch=1), None)

    comp = value(now)
    y = value(start).values - comp.values
    (rows_a, w_a), (rows_f, w_f) = value.blocks()
    assert (w_a, w_f) == pytest.approx((lam, 1 - lam))
    target = spy.seen_target
    assert float(target[rows_a].norm()) == pytest.approx(lam) and float(target[rows_f].norm()) == pytest.approx(1 - lam)
    scale = torch.cat([torch.full((rows_a.stop,), w_a / float(y[rows_a].norm())),
                       torch.full((rows_f.stop - rows_f.start,), w_f / float(y[rows_f].norm()))]).double()
    torch.testing.assert_close(target, y * scale)
    g = per_sample_grads(now, torch.as_tensor(german.train.X), torch.as_tensor(german.train.y)).double()
    f = value_features(g, comp.grads, lr=sel.lr, kind="paper") * scale[:, None]
    ids, X = spy.seen
    assert sorted(ids) == list(range(len(atoms)))
    expected = torch.stack([f[:, atoms[k]].mean(1) for k in ids], 1)
    torch.testing.assert_close(X, expected, atol=1e-9, rtol=1e-6)
    # the residual reported is the least-squares fit of the selection on these features and target
    d = collector.history[-1]
    cols = expected[:, [ids.index(k) for k in spy.selected_ids]]
    cols = cols / cols.norm(dim=0)
    beta = torch.linalg.lstsq(cols, target.unsqueeze(1)).solution.squeeze(1)
    assert d["relative_residual"] == pytest.approx(float((target - cols @ beta).norm() / target.norm()), rel=1e-6)


# --- SSFR's rules on planted losses (no training) -------------------------------------------------

class _PlantedLosses(torch.nn.Module):
    """Returns logits whose cross-entropy against ``y`` is exactly ``losses`` (set between calls)."""

    def __init__(self, y):
        super().__init__()
        self.y = torch.as_tensor(y)
        self.losses = None

    def forward(self, X):
        L = torch.as_tensor(self.losses, dtype=torch.float64)
        logits = torch.zeros(len(L), 2, dtype=torch.float64)
        logits[torch.arange(len(L)), 1 - self.y] = torch.log(torch.expm1(L))  # log(1 + e^z) = L
        return logits.float()


def _ssfr_cells(sizes, seed=0):
    """Labels and groups with the given (label, group) cell sizes, shuffled."""
    y = np.concatenate([np.full(sizes[(lab, g)], lab) for lab in (0, 1) for g in (0, 1)])
    a = np.concatenate([np.full(sizes[(lab, g)], g) for lab in (0, 1) for g in (0, 1)])
    p = np.random.default_rng(seed).permutation(len(y))
    return y[p].astype(np.int64), a[p].astype(np.int64)


def test_ssfr_selection_rules_on_planted_losses():
    from types import SimpleNamespace

    from trustkit.select._ssfr import _SelectedCrossEntropy, _SSFR

    sizes = {(0, 0): 40, (0, 1): 10, (1, 0): 20, (1, 1): 30}
    y, a = _ssfr_cells(sizes)
    n = len(y)
    task = SimpleNamespace(train=SimpleNamespace(X=np.zeros((n, 3), np.float32), y=y, a=a))
    term = _SelectedCrossEntropy(n)
    alpha = 0.08
    cb = _SSFR(term, task, 0.5, alpha, 0.1, 1, "quantile")
    model = _PlantedLosses(y)
    rng = np.random.default_rng(1)
    cell = {key: (y == key[0]) & (a == key[1]) for key in sizes}

    def select(epoch, mean_loss):
        losses = np.zeros(n)
        for key, m in cell.items():
            losses[m] = mean_loss[key] + rng.uniform(0.0, 0.2, m.sum())  # distinct losses within a cell
        model.losses = losses
        cb.on_epoch_start(SimpleNamespace(epoch=epoch, task=task, model=model))
        return losses, cb.history[-1]

    # warm start: no selection
    cb.on_epoch_start(SimpleNamespace(epoch=1, task=task, model=model))
    assert cb.history == [] and bool((term.mask == 1).all())
    # first selection: 25 places per label, group 1's ratio is its own share of the label (10/50, 30/50)
    even = {key: 0.5 for key in sizes}
    losses, h = select(2, even)
    assert (h["n_y0_0"], h["n_y0_1"], h["n_y1_0"], h["n_y1_1"]) == (20, 5, 10, 15)
    assert (h["share_y0_1"], h["share_y1_1"]) == (0.2, 0.6) and h["selected"] == 50
    # each cell contributes its lowest-loss points, and its loss is the mean of its τ·|cell| lowest
    mask = term.mask.numpy() > 0
    for (lab, g), m in cell.items():
        idx = np.flatnonzero(m)
        low = idx[np.argsort(losses[idx])]
        assert sorted(np.flatnonzero(mask & m)) == sorted(low[: h[f"n_y{lab}_{g}"]])
        assert h[f"loss_y{lab}_{g}"] == pytest.approx(losses[low[: round(0.5 * len(idx))]].mean())
    # label 1's gap is the larger and group 1 has the larger loss there: λ_1 rises by α, λ_0 stays
    _, h = select(3, {(0, 0): 0.6, (0, 1): 0.5, (1, 0): 0.5, (1, 1): 1.5})
    assert (h["n_y0_1"], h["n_y1_1"]) == (5, round((0.6 + alpha) * 25))
    # label 0's gap is now the larger, with group 0 the worse: λ_0 falls by α, then stops at min_share
    _, h = select(4, {(0, 0): 2.0, (0, 1): 0.5, (1, 0): 0.5, (1, 1): 0.6})
    assert (h["n_y0_1"], h["n_y1_1"]) == (round((0.2 - alpha) * 25), round((0.6 + alpha) * 25))
    _, h = select(5, {(0, 0): 2.0, (0, 1): 0.5, (1, 0): 0.5, (1, 1): 0.6})
    assert h["n_y0_1"] == round(0.1 * 25) and cb.lam[0] == pytest.approx(0.1)
    assert [r["epoch"] for r in cb.history] == [2, 3, 4, 5]


def test_ssfr_returns_indices_unless_the_history_is_asked(german):
    from trustkit.select import ssfr_subset

    idx = ssfr_subset(german, 0.5, epochs=2)
    assert isinstance(idx, np.ndarray) and len(idx) == 300
    again, hist = ssfr_subset(german, 0.5, epochs=2, return_history=True)
    np.testing.assert_array_equal(again, idx)
    assert len(hist) == 1 and hist[0]["selected"] == 300


def _ssfr_on(sizes, *, seed, alpha, cell_loss):
    """SSFR's callback (step alpha, min_share 0.1, no warm start) on planted cells, keeping half the rows."""
    from types import SimpleNamespace

    from trustkit.select._ssfr import _SelectedCrossEntropy, _SSFR

    y, a = _ssfr_cells(sizes, seed=seed)
    n = len(y)
    task = SimpleNamespace(train=SimpleNamespace(X=np.zeros((n, 3), np.float32), y=y, a=a))
    term = _SelectedCrossEntropy(n)
    cb = _SSFR(term, task, 0.5, alpha, 0.1, 0, cell_loss)
    return y, a, task, term, cb, _PlantedLosses(y)


def test_ssfr_ratios_stop_at_their_bounds_and_selected_cell_losses():
    # label 0's group-1 cell has 5 points for 25 places: λ_0 lies in [min_share, 5/25] = [0.1, 0.2];
    # label 1's group-0 cell has 12 points for 25 places: λ_1 lies in [1 − 12/25, 1 − min_share] =
    # [0.52, 0.9]. A ratio past a bound is clipped there, so the next step starts from the bound.
    from types import SimpleNamespace

    sizes = {(0, 0): 45, (0, 1): 5, (1, 0): 12, (1, 1): 38}
    y, a, task, term, cb, model = _ssfr_on(sizes, seed=1, alpha=0.15, cell_loss="selected")
    n = len(y)
    rng = np.random.default_rng(2)
    cell = {key: (y == key[0]) & (a == key[1]) for key in sizes}
    up0 = {(0, 0): 0.5, (0, 1): 1.5, (1, 0): 0.5, (1, 1): 0.6}  # label 0's gap is the larger, group 1 worse
    down0 = {(0, 0): 1.5, (0, 1): 0.5, (1, 0): 0.5, (1, 1): 0.6}
    down1 = {(0, 0): 0.5, (0, 1): 0.6, (1, 0): 1.5, (1, 1): 0.5}
    up1 = {(0, 0): 0.5, (0, 1): 0.6, (1, 0): 0.5, (1, 1): 1.5}
    plan = [up0, up0, up0, down0, down1, down1, up1, up1, up1, up1]
    expected = [  # (n_y0_1, n_y1_1) after each selection
        (2, 19),  # the data's own shares 5/50 and 38/50
        (5, 19), (5, 19),  # λ_0: 0.1 → 0.2 (0.25 clipped) → 0.2
        (2, 19),  # λ_0: 0.2 → 0.1 (0.05 clipped), not 0.1 below where it went without the bound
        (2, 15), (2, 13),  # λ_1: 0.76 → 0.61 → 0.52 (0.46 clipped): group 0's 12 points all kept
        (2, 17), (2, 20), (2, 22), (2, 22),  # λ_1: 0.67 → 0.82 → 0.9 (0.97 clipped) → 0.9
    ]
    for epoch, mean_loss in enumerate(plan, start=1):
        old_mask = term.mask.numpy().copy()
        losses = np.zeros(n)
        for key, m in cell.items():
            losses[m] = mean_loss[key] + rng.uniform(0.0, 0.2, m.sum())
        model.losses = losses
        cb.on_epoch_start(SimpleNamespace(epoch=epoch, task=task, model=model))
        h = cb.history[-1]
        # "selected": a cell's loss is the mean over its points selected in the previous epoch
        for (lab, g), m in cell.items():
            assert h[f"loss_y{lab}_{g}"] == pytest.approx(losses[m & (old_mask > 0)].mean())
        assert (h["n_y0_1"], h["n_y1_1"]) == expected[epoch - 1], epoch
        assert h["n_y0_0"] + h["n_y0_1"] == h["n_y1_0"] + h["n_y1_1"] == 25
        assert h["n_y1_0"] <= 12 and h["n_y0_1"] <= 5


def test_ssfr_a_cell_smaller_than_min_share_gives_all_its_points():
    # label 1's group-0 cell has 2 points, fewer than min_share · 25 places: it gives both and group 1
    # takes the other 23 places, so the label still gets its 25
    from types import SimpleNamespace

    sizes = {(0, 0): 25, (0, 1): 25, (1, 0): 2, (1, 1): 48}
    y, a, task, term, cb, model = _ssfr_on(sizes, seed=3, alpha=0.05, cell_loss="quantile")
    n = len(y)
    model.losses = np.random.default_rng(0).uniform(0.1, 1.0, n)
    cb.on_epoch_start(SimpleNamespace(epoch=1, task=task, model=model))
    h = cb.history[-1]
    assert (h["n_y1_0"], h["n_y1_1"]) == (2, 23) and (h["n_y0_0"], h["n_y0_1"]) == (13, 12)
    assert h["selected"] == int(term.mask.sum()) == 50


def _atom_features(german, *, exact, feature="paper", quad_sample=16, sizes=(1, 2, 3, 4, 20)):
    """The features a collector offers for atoms of the given sizes (one epoch, planted models)."""
    from types import SimpleNamespace

    from trustkit.select import OnlineOMP
    from trustkit.select._value import set_precision
    from trustkit.select._vtrust import _Collector

    class Spy(OnlineOMP):
        def offer(self, ids, X):
            self.seen = (list(ids), torch.as_tensor(X).clone())
            super().offer(ids, X)

    sel = VTruST(value="accuracy+fairness", lam=0.5, fraction=0.5, progress=False, seed=0, exact=exact,
                 feature=feature, quad_sample=quad_sample)
    value = make_value_function(german, "accuracy+fairness", lam=0.5, max_rows=40, fair_rows=16, seed=0)
    set_precision(value, torch.float64 if exact else torch.float32)
    n = len(german.train)
    order = np.random.default_rng(0).permutation(n)
    cuts = np.cumsum(np.resize(list(sizes), n))
    atoms = [order[a:b] for a, b in zip(np.r_[0, cuts], cuts) if a < n]
    spy = Spy(n_atoms=8)
    collector = _Collector(sel, value, atoms, spy)
    collector.on_fit_start(SimpleNamespace(model=make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=0)))
    now = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=1)
    collector.on_epoch_end(SimpleNamespace(model=now, task=german, epoch=1), None)
    ids, X = spy.seen
    return X[:, np.argsort(ids)], atoms


def test_fast_features_equal_the_exact_ones_when_every_member_is_used(german):
    exact, atoms = _atom_features(german, exact=True)
    fast, _ = _atom_features(german, exact=False, quad_sample=20)  # every member of every atom
    torch.testing.assert_close(fast, exact, rtol=2e-4, atol=1e-6)
    # first-order features are linear in the gradient: exact from the mean gradient with any sample
    lin_exact, _ = _atom_features(german, exact=True, feature="tracin")
    lin_fast, _ = _atom_features(german, exact=False, feature="tracin", quad_sample=1)
    torch.testing.assert_close(lin_fast, lin_exact, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("quad_sample", [4, 2])
def test_fast_features_of_a_multiclass_head_equal_the_exact_ones_where_every_member_is_used(quad_sample):
    # three classes (no two-class shortcut): atoms of 1 to 4 points; with quad_sample=4 every member
    # is sampled and each member's products give both terms, with 2 only the small atoms are exact
    from types import SimpleNamespace

    from trustkit.select import OnlineOMP
    from trustkit.select._value import set_precision
    from trustkit.select._vtrust import _Collector

    rng = np.random.default_rng(0)

    def split(m):
        X = rng.normal(size=(m, 6)).astype(np.float32)
        return Split(X=X, y=(X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5), a=None, index=np.arange(m))

    task = Task(name="three", train=split(90), val=split(40), test=split(40), feature_names=tuple("abcdef"),
                n_classes=3, kind="tabular", card="synthetic", seed=0)
    atoms = [a for a in np.array_split(rng.permutation(90), np.cumsum(np.resize([1, 2, 3, 4], 36)))[:36] if len(a)]
    F, values = {}, {}
    for exact in (True, False):
        sel = VTruST(value="accuracy", fraction=0.3, progress=False, seed=0, exact=exact, quad_sample=quad_sample)
        value = make_value_function(task, "accuracy", seed=0)
        set_precision(value, torch.float64 if exact else torch.float32)
        collector = _Collector(sel, value, atoms, OnlineOMP(n_atoms=4))
        collector.on_fit_start(SimpleNamespace(model=make_model("mlp", input_shape=(6,), n_classes=3, seed=0)))
        now = make_model("mlp", input_shape=(6,), n_classes=3, seed=1)
        comp = value(now)
        X, Y = torch.as_tensor(task.train.X), torch.as_tensor(task.train.y)
        w = comp.grads.double().sum(0)  # a value direction: the points' first-order values come out too
        F[exact] = collector._exact_features(now, X, Y, comp, w) if exact else collector._fast_features(now, X, Y, comp, w)
        values[exact] = collector.point_value
    torch.testing.assert_close(values[False], values[True], rtol=1e-4, atol=1e-6)
    small = torch.as_tensor([len(a) <= quad_sample for a in atoms])
    assert small.all() == (quad_sample == 4)
    torch.testing.assert_close(F[False][:, small], F[True][:, small], rtol=2e-4, atol=1e-6)


def test_fast_features_estimate_the_square_term_from_a_sample_of_members(german):
    exact, atoms = _atom_features(german, exact=True)
    fast, _ = _atom_features(german, exact=False, quad_sample=2)
    small = torch.as_tensor([len(a) <= 2 for a in atoms])
    torch.testing.assert_close(fast[:, small], exact[:, small], rtol=2e-4, atol=1e-6)  # all members used
    big = ~small
    err = (fast[:, big] - exact[:, big]).norm() / exact[:, big].norm()
    assert 0 < err < 0.05  # an estimate (not exact) that moves the features little


def test_fast_selection_matches_the_exact_one_within_selector_noise(german):
    """Same seeds: the fast path's subset overlaps the exact one more than two exact runs with
    different selector seeds overlap, and the retrained models' test metrics agree within noise."""
    from trustkit.select import subset_task
    from trustkit.train import Trainer

    def run(**kw):
        kw = {"value": "accuracy+fairness", "fraction": 0.3, "epochs": 5, "progress": False, "seed": 0, **kw}
        return VTruST(**kw).select(german)

    exact, fast, other = run(exact=True), run(), run(exact=True, seed=1)
    same = set(exact.indices) & set(fast.indices)
    overlap = len(same) / len(set(exact.indices) | set(fast.indices))
    noise = len(set(exact.indices) & set(other.indices)) / len(set(exact.indices) | set(other.indices))
    assert overlap > noise and overlap >= 0.5, (overlap, noise)
    # with every member used for the square term, float32 changes nothing in the selection
    assert set(run(quad_sample=10_000).indices) == set(exact.indices)

    def test_metrics(res):
        rec = Trainer(model="mlp", epochs=10, seed=0, progress=False).fit(subset_task(german, res.indices))
        return rec.test["accuracy"], rec.test["eo_gap"]

    (acc_e, eo_e), (acc_f, eo_f), (acc_o, eo_o) = test_metrics(exact), test_metrics(fast), test_metrics(other)
    assert abs(acc_f - acc_e) <= max(abs(acc_o - acc_e), 0.03)
    assert abs(eo_f - eo_e) <= max(abs(eo_o - eo_e), 0.05)
    assert fast.diagnostics["exact"] is False and exact.diagnostics["exact"] is True


def test_fairness_components_without_forming_the_weight_matrix(german):
    import torch.nn.functional as F

    from trustkit.select._features import sample_grads

    value = make_value_function(german, "fairness", fair_rows=32, seed=0)
    model = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=3)
    comp = value(model)
    with torch.no_grad():
        losses = F.cross_entropy(model(value.X), value.y, reduction="none").double()
    g = sample_grads(model, value.X, value.y).double()
    W = value.weights(losses)  # the dense (rows × points) map the components are defined by
    torch.testing.assert_close(comp.values, W @ losses)
    torch.testing.assert_close(comp.grads, W @ g)


def test_point_values_of_the_two_class_fast_path_equal_the_exact_ones(german):
    # the fast path forms two-class gradients in half form (e₀h̃) and the value direction likewise
    from trustkit.select import OnlineOMP
    from trustkit.select._value import set_precision
    from trustkit.select._vtrust import _Collector

    atoms = [np.arange(i, min(i + 5, len(german.train))) for i in range(0, len(german.train), 5)]
    out = {}
    for exact in (True, False):
        sel = VTruST(value="accuracy+fairness", fraction=0.3, progress=False, seed=0, exact=exact)
        value = make_value_function(german, "accuracy+fairness", seed=0)
        set_precision(value, torch.float64 if exact else torch.float32)
        collector = _Collector(sel, value, atoms, OnlineOMP(n_atoms=4))
        now = make_model("mlp", input_shape=german.input_shape, n_classes=2, seed=1)
        comp = value(now)
        w = comp.grads.double().sum(0)
        X, Y = torch.as_tensor(german.train.X), torch.as_tensor(german.train.y)
        (collector._exact_features if exact else collector._fast_features)(now, X, Y, comp, w)
        out[exact] = collector.point_value
    assert out[True].abs().max() > 0
    torch.testing.assert_close(out[False], out[True], rtol=1e-3, atol=1e-6 * float(out[True].abs().max()))
