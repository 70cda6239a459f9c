"""VTruST value functions (checked against autograd) and the selector's behaviour and errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trustkit.data import load_digits, load_german
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
    assert 2 * d["n_atoms"] <= min(d["target_rows"], d["gradient_dim"])
    assert d["selection_s"] > 0 and len(res.history) == 3
    again = VTruST(**kw).select(german)
    np.testing.assert_array_equal(res.indices, again.indices)
    sub = subset_task(german, res.indices)
    assert len(sub.train) == len(res.indices) and len(sub.test) == len(german.test)
    np.testing.assert_array_equal(sub.train.index, german.train.index[res.indices])


def test_vtrust_warns_when_not_over_determined(german):
    with pytest.warns(RuntimeWarning, match="not over-determined"):
        VTruST(value="accuracy", unit="sample", fraction=0.5, epochs=1, progress=False).select(german)


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


def test_tracin_topk_selects_k_distinct_points(german):
    from trustkit.select import tracin_topk

    idx = tracin_topk(german, 0.4, value="accuracy", epochs=2)
    assert len(idx) == 240 and len(np.unique(idx)) == 240
    np.testing.assert_array_equal(idx, tracin_topk(german, 0.4, value="accuracy", epochs=2))


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


def test_ssfr_adapts_group_shares_and_selects_low_loss_points(compas_task):
    from trustkit.select import ssfr_subset

    idx, hist = ssfr_subset(compas_task, 0.6, epochs=4, seed=0, return_history=True)
    assert abs(len(idx) / len(compas_task.train) - 0.6) < 0.02
    assert len(hist) == 4 and hist[0] != hist[-1]  # shares moved
    for lab in (0, 1):
        assert sum(v for k, v in hist[-1].items() if k.startswith(f"share_y{lab}_")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="SSFR needs a binary task"):
        ssfr_subset(load_digits(seed=0), 0.5)


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
