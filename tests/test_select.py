"""VTruST building blocks: per-sample gradients against autograd loops, OMP against scikit-learn,
planted sparse subsets recovered, and the online OMP's exactness and diagnostics."""


import numpy as np
import pytest
import torch
from sklearn.linear_model import OrthogonalMatchingPursuit

from trustkit.models import make_model
from trustkit.select import OnlineOMP, omp, per_sample_grads, random_projection, value_features


def _loop_grads(model, x, y, params):
    rows = []
    for i in range(len(y)):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        gs = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(rows)


@pytest.mark.parametrize("name, shape", [("mlp", (7,)), ("cnn", (1, 32, 32))])
def test_per_sample_grads_match_a_loop(name, shape):
    model = make_model(name, input_shape=shape, n_classes=3, seed=0).eval()
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 1, 0])
    full = per_sample_grads(model, x, y, scope="full")
    torch.testing.assert_close(full, _loop_grads(model, x, y, list(model.parameters())), atol=1e-5, rtol=1e-4)
    last = per_sample_grads(model, x, y, scope="last_layer")
    torch.testing.assert_close(last, _loop_grads(model, x, y, list(model.head.parameters())), atol=1e-5, rtol=1e-4)


def test_last_layer_grads_have_the_closed_form():
    model = make_model("mlp", input_shape=(4,), n_classes=2, seed=1)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 1, 0])
    h = model.features(x).detach()
    p = torch.softmax(model(x), 1).detach()
    delta = p - torch.nn.functional.one_hot(y, 2)
    expected = torch.cat([(delta[:, :, None] * h[:, None, :]).reshape(6, -1), delta], 1)
    torch.testing.assert_close(per_sample_grads(model, x, y), expected, atol=1e-6, rtol=1e-5)


def test_per_sample_grads_errors():
    with pytest.raises(ValueError, match="unknown scope"):
        per_sample_grads(torch.nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), scope="head")
    with pytest.raises(ValueError, match="needs a model with .features and .head"):
        per_sample_grads(torch.nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))


def test_random_projection_preserves_inner_products_on_average():
    g = torch.randn(2, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    true = float(g[0] @ g[1])
    est = [float((lambda p: p[0] @ p[1])(random_projection(g, 64, seed=s))) for s in range(300)]
    assert np.mean(est) == pytest.approx(true, abs=3 * np.std(est) / np.sqrt(300))
    torch.testing.assert_close(random_projection(g, 8, seed=1), random_projection(g, 8, seed=1))


def test_value_feature_sign_convention():
    # one SGD step on a point whose gradient aligns with a validation gradient lowers that loss:
    # the feature is positive; opposed gradients give a negative TracIn feature
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    G = torch.tensor([[0.5, 0.0]])
    s = value_features(g, G, lr=0.1, kind="tracin")
    assert s[0, 0] > 0 > s[0, 1]
    paper = value_features(g, G, lr=0.1, kind="paper")
    torch.testing.assert_close(paper, s + s**2 / 2)


@pytest.mark.parametrize("seed", range(25))
def test_omp_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(30, 80)), int(rng.integers(10, 40))
    X = rng.normal(size=(m, n))
    y = rng.normal(size=m)
    k = int(rng.integers(1, min(8, n)))
    ours = omp(X, y, k)
    Xn = X / np.linalg.norm(X, axis=0)
    ref = OrthogonalMatchingPursuit(n_nonzero_coefs=k, fit_intercept=False).fit(Xn, y)
    assert sorted(ours.support) == sorted(np.flatnonzero(ref.coef_).tolist())
    np.testing.assert_allclose(ours.coef, ref.coef_[ours.support], atol=1e-8)
    assert all(a >= b - 1e-12 for a, b in zip(ours.residual_norms, ours.residual_norms[1:]))


@pytest.mark.parametrize("seed", range(5))
def test_omp_recovers_a_planted_subset(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 400))
    planted = rng.choice(400, size=10, replace=False)
    y = X[:, planted] @ rng.uniform(0.5, 2.0, 10)
    res = omp(X, y, 10)
    assert sorted(res.support) == sorted(planted.tolist())
    assert res.relative_residual < 1e-8


def test_nonneg_omp_keeps_only_helpful_atoms():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 60))
    planted = [4, 11, 30]
    y = X[:, planted] @ np.array([1.0, 2.0, 0.5]) - 0.8 * X[:, 50]  # atom 50 hurts
    res = omp(X, y, 3, nonneg=True)
    assert sorted(res.support) == planted and (res.coef >= 0).all()


def test_underdetermined_pursuit_warns():
    rng = np.random.default_rng(0)
    with pytest.warns(RuntimeWarning, match=r"M=5 rows but up to 5 atoms"):
        omp(rng.normal(size=(5, 20)), rng.normal(size=5), 5)


def test_online_omp_recovers_a_planted_subset_from_a_stream():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 300))
    planted = sorted(rng.choice(300, size=8, replace=False).tolist())
    y = X[:, planted] @ rng.uniform(0.5, 2.0, 8)
    sel = OnlineOMP(n_atoms=8)
    sel.start_epoch(y)
    for epoch in range(3):
        order = rng.permutation(300)
        for start in range(0, 300, 50):  # mini-batches of incoming points
            idx = order[start : start + 50]
            sel.offer(idx, X[:, idx])
    assert sorted(sel.selected_ids) == planted
    assert sel.relative_residual < 1e-6
    s = sel.summary()
    assert s["replacements"] > 0 and s["added"] == 8 and s["offered"] == 900


def test_online_omp_state_stays_exact_and_residual_never_grows_after_filling():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 200))
    y = rng.normal(size=80)
    sel = OnlineOMP(n_atoms=20)
    sel.start_epoch(y)
    sel.offer(np.arange(20), X[:, :20])
    history = [sel.residual_norm]
    for start in range(20, 200, 10):
        sel.offer(np.arange(start, start + 10), X[:, start : start + 10])
        history.append(sel.residual_norm)
    assert all(a >= b - 1e-9 for a, b in zip(history, history[1:]))
    cols = X[:, sel.selected_ids] / np.linalg.norm(X[:, sel.selected_ids], axis=0)
    beta, *_ = np.linalg.lstsq(cols, y, rcond=None)
    np.testing.assert_allclose(sel.beta.numpy(), beta, atol=1e-6)
    np.testing.assert_allclose(sel.residual_norm, np.linalg.norm(y - cols @ beta), rtol=1e-8)


def test_online_omp_refreshes_features_of_a_selected_point():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 5))
    y = X[:, 0] * 2.0
    sel = OnlineOMP(n_atoms=1)
    sel.start_epoch(y)
    sel.offer([0], X[:, [1]] + X[:, [0]])  # point 0 first arrives with stale, mixed features
    sel.offer([0], X[:, [0]])  # fresher features of the same point fit the target better
    assert sel.selected_ids == [0] and sel.trace.refreshed == 1 and sel.relative_residual < 1e-8


def test_online_omp_errors_and_warning():
    sel = OnlineOMP(n_atoms=10)
    with pytest.raises(RuntimeError, match="start_epoch"):
        sel.offer([0], np.ones((3, 1)))
    with pytest.warns(RuntimeWarning, match="M=3 rows but up to 10 atoms"):
        sel.start_epoch(np.ones(3))
    with pytest.raises(ValueError, match=r"X must be \(M, B\) with M = 3"):
        sel.offer([0], np.ones((4, 1)))
    with pytest.raises(ValueError, match="NaN"):
        sel.start_epoch(np.array([1.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="n_atoms must be an integer"):
        OnlineOMP(n_atoms=0)


def test_nonneg_online_omp_never_keeps_a_point_for_its_harm():
    # the target is built from three helpful atoms and one harmful atom (negative weight): a
    # signed fit selects the harmful one, the non-negative fit must not, and its weights are >= 0
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 80))
    helpful, harmful = [3, 17, 42], 60
    y = X[:, helpful] @ np.array([1.0, 1.5, 2.0]) - 1.2 * X[:, harmful]
    picks = {}
    for nonneg in (False, True):
        sel = OnlineOMP(n_atoms=4, nonneg=nonneg)
        sel.start_epoch(y)
        for _ in range(3):
            order = rng.permutation(80)
            sel.offer(order, X[:, order])
        picks[nonneg] = sel
    assert harmful in picks[False].selected_ids
    nn = picks[True]
    assert harmful not in nn.selected_ids and set(helpful) <= set(nn.selected_ids)
    assert (nn.beta.numpy() >= 0).all() and len(nn.selected_ids) == 4
    cols = X[:, nn.selected_ids] / np.linalg.norm(X[:, nn.selected_ids], axis=0)
    from scipy.optimize import nnls

    beta, rnorm = nnls(cols, y)
    np.testing.assert_allclose(nn.beta.numpy(), beta, atol=1e-8)
    assert nn.residual_norm == pytest.approx(rnorm, rel=1e-8)
    with pytest.raises(TypeError, match="nonneg must be True or False"):
        OnlineOMP(n_atoms=2, nonneg="yes")


def test_nonneg_pursuit_keeps_an_atom_opposed_to_the_target_when_it_cancels_another():
    # why non-negative weights do not rank atoms by value: the target is e1; atom 0 is helpful but
    # half off-target, atom 2 is opposed to the target (negative cosine, negative value) and
    # cancels atom 0's off-target part, atom 1 is useless. Least squares keeps atom 2 with a
    # positive weight, in the online pursuit, the offline greedy OMP and the NNLS optimum alike
    from scipy.optimize import nnls

    y = np.array([1.0, 0.0, 0.0])
    X = np.array([[1.0, 0.0, -0.2], [1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    Xn = X / np.linalg.norm(X, axis=0)
    assert Xn[:, 0] @ y > 0 > Xn[:, 2] @ y
    sel = OnlineOMP(n_atoms=2, nonneg=True)
    sel.start_epoch(y)
    sel.offer([0, 1], X[:, :2])  # fills ω; the useless atom gets weight 0
    assert sel.summary()["n_nonpositive_weight"] == 1
    sel.offer([2], X[:, 2:])
    assert sorted(sel.selected_ids) == [0, 2] and (sel.beta.numpy() > 0).all() and sel.relative_residual < 1e-8
    assert sel.n_replacements == 1 and sel.summary()["n_nonpositive_weight"] == 0
    off = omp(X, y, 2, nonneg=True)
    assert sorted(off.support) == [0, 2] and (off.coef > 0).all()
    assert nnls(Xn, y)[0][2] > 0


def test_online_omp_counts_selected_atoms_the_fit_does_not_use():
    # the target is spanned by three atoms: a non-negative pursuit of ω = 6 keeps them and fills
    # the other three places with atoms of weight 0, which the summary counts
    rng = np.random.default_rng(6)
    X = rng.normal(size=(120, 60))
    planted = [3, 17, 42]
    y = X[:, planted] @ np.array([1.0, 1.5, 2.0])
    sel = OnlineOMP(n_atoms=6, nonneg=True)
    sel.start_epoch(y)
    for _ in range(2):
        order = rng.permutation(60)
        sel.offer(order, X[:, order])
    beta = sel.beta.numpy()
    assert set(planted) <= set(sel.selected_ids) and len(sel.selected_ids) == 6 and sel.relative_residual < 1e-8
    assert sel.summary()["n_nonpositive_weight"] == sel.n_nonpositive_weight == 3
    kept = [i for i, b in zip(sel.selected_ids, beta) if b > 1e-10 * np.linalg.norm(y)]
    assert sorted(kept) == planted
