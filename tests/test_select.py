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


@pytest.mark.parametrize("name, shape, classes", [("mlp", (7,), 2), ("mlp", (5,), 4), ("cnn", (1, 8, 8), 10)])
def test_closed_form_head_grads_equal_torch_func(name, shape, classes):
    model = make_model(name, input_shape=shape, n_classes=classes, seed=2)
    x = torch.randn(9, *shape, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, classes, (9,), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(per_sample_grads(model, x, y), per_sample_grads(model, x, y, closed_form=False),
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name, shape, n", [("cnn", (1, 32, 32), 300), ("cnn", (3, 16, 16), 7), ("mlp", (6,), 600)])
def test_penultimate_features_equal_the_models_own_in_chunks(name, shape, n):
    # chunked, with channels-last input to the max-pooling layers: the same values as features(x)
    from trustkit.select._features import penultimate

    model = make_model(name, input_shape=shape, n_classes=3, seed=0).eval()
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.features(x)
    for chunk in (64, 256, 1000):
        h = penultimate(model, x, chunk=chunk)
        assert h.is_contiguous() and not h.requires_grad
        torch.testing.assert_close(h, expected, atol=1e-6, rtol=1e-5)
    x, y = x[:5], torch.tensor([0, 1, 2, 1, 0])
    g, logits = per_sample_grads(model, x, y, return_logits=True)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g, per_sample_grads(model, x, y))


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


# --- offline OMP: the two early stops ------------------------------------------------------------

@pytest.mark.parametrize("tol, n_selected", [(8.0, 3), (1.0, 4), (0.3, 8)])
def test_omp_tol_stops_as_sklearn(tol, n_selected):
    # four planted atoms and a little noise: the residual norms are about 19.3, 11.7, 6.3, 0.34 and
    # then fall slowly, so each tol stops after another number of atoms
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 40))
    y = X[:, [3, 11, 25, 31]] @ np.array([3.0, -2.0, 1.5, 0.8]) + 0.05 * rng.normal(size=60)
    ours = omp(X, y, 20, tol=tol)
    Xn = X / np.linalg.norm(X, axis=0)
    ref = OrthogonalMatchingPursuit(tol=tol**2, fit_intercept=False).fit(Xn, y)  # sklearn's tol: squared norm
    assert sorted(ours.support) == np.flatnonzero(ref.coef_).tolist()
    np.testing.assert_allclose(ours.coef, ref.coef_[ours.support], atol=1e-8)
    assert len(ours.support) == len(ours.residual_norms) == n_selected
    assert ours.residual_norms[-1] <= tol < ours.residual_norms[-2]
    # without tol the pursuit runs to n_atoms
    assert len(omp(X, y, 7).support) == 7


def test_omp_stops_when_no_correlated_atom_is_left():
    # the target lies exactly in the span of two atoms (and is large, so the stop's threshold
    # 1e-12·‖y‖ is far above rounding): after them every correlation is rounding noise, and the
    # pursuit stops at 2 atoms although 6 were allowed
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 30))
    X[:, 9] = 0.0  # a zero column is never a candidate
    y = 1e3 * (X[:, 2] - 2.0 * X[:, 5])
    res = omp(X, y, 6)
    assert sorted(res.support) == [2, 5] and len(res.residual_norms) == 2
    assert res.residual_norms[-1] < 1e-9 * np.linalg.norm(y)
    np.testing.assert_allclose(res.coef_original[np.argsort(res.support)], [1e3, -2e3], rtol=1e-10)
    # every usable atom selected: the pursuit stops instead of picking the zero column
    full = omp(rng.normal(size=(50, 4)) * np.array([1.0, 1.0, 0.0, 1.0]), rng.normal(size=50), 4)
    assert sorted(full.support) == [0, 1, 3]


# --- online OMP against a brute-force reference ---------------------------------------------------

def _unit(x):
    return x / np.linalg.norm(x)


class _Reference:
    """The online pursuit's rules, computed by brute force with numpy least squares.

    Fill to ω; then an incoming atom replaces the selected atom whose removal raises the residual
    sum of squares least (signed fit) or the atom of smallest weight when the incoming one
    correlates positively with the residual (non-negative fit), and only if the fit improves; a
    selected atom arriving again keeps its fresher column only if the fit improves.
    """

    def __init__(self, n_atoms, y, nonneg):
        from scipy.optimize import nnls

        self.n, self.y, self.nonneg, self.nnls = n_atoms, y, nonneg, nnls
        self.ids, self.cols = [], []
        self.count = {"added": 0, "replacements": 0, "refreshed": 0}

    def fit(self, cols):
        A = np.stack(cols, 1)
        beta = self.nnls(A, self.y)[0] if self.nonneg else np.linalg.lstsq(A, self.y, rcond=None)[0]
        r = self.y - A @ beta
        return beta, float(r @ r)

    def _swap(self, j, x, i):
        cols = list(self.cols)
        cols[j] = x
        _, rss_now = self.fit(self.cols)
        if self.fit(cols)[1] < rss_now - 1e-12 * float(self.y @ self.y):
            self.cols, self.ids[j] = cols, i
            return True
        return False

    def offer(self, i, x):
        x = _unit(x)
        if i in self.ids:
            self.count["refreshed"] += self._swap(self.ids.index(i), x, i)
        elif len(self.ids) < self.n:
            self.ids.append(i)
            self.cols.append(x)
            self.count["added"] += 1
        else:
            beta, rss_now = self.fit(self.cols)
            if self.nonneg:
                r = self.y - np.stack(self.cols, 1) @ beta
                if x @ r <= 1e-12 * np.linalg.norm(self.y):
                    return
                j = int(np.argmin(beta))
            else:  # the atom whose removal costs least
                j = int(np.argmin([self.fit(self.cols[:k] + self.cols[k + 1:])[1] - rss_now
                                   for k in range(len(self.cols))]))
            self.count["replacements"] += self._swap(j, x, i)


@pytest.mark.parametrize("nonneg", [False, True])
def test_online_omp_follows_the_brute_force_rules_offer_by_offer(nonneg):
    rng = np.random.default_rng(11)
    m, n, k = 30, 40, 5
    X = rng.normal(size=(m, n))
    y = X[:, :8] @ rng.uniform(0.5, 2.0, 8) + 0.3 * rng.normal(size=m)
    sel, ref = OnlineOMP(n_atoms=k, nonneg=nonneg), _Reference(k, y, nonneg)
    sel.start_epoch(y)
    stream = [(i, X[:, i]) for i in rng.permutation(n)]
    # a second pass with fresher features, perturbed and moved towards the target: selected atoms refresh
    X2 = X + 0.3 * rng.normal(size=X.shape) + np.outer(y / np.linalg.norm(y) * np.sqrt(m), rng.uniform(0, 0.6, n))
    stream += [(i, X2[:, i]) for i in rng.permutation(n)]
    for step, (i, x) in enumerate(stream):
        sel.offer([i], x[:, None])
        ref.offer(i, x)
        assert sel.selected_ids == ref.ids, step
        beta, rss = ref.fit(ref.cols)
        np.testing.assert_allclose(sel.beta.numpy(), beta, atol=1e-7, err_msg=f"offer {step}")
        assert sel.residual_norm == pytest.approx(np.sqrt(rss), rel=1e-7, abs=1e-9)
    s = sel.summary()
    assert {key: s[key] for key in ref.count} == ref.count and s["offered"] == 2 * n
    # the stream exercised every rule: swaps accepted and refused, refreshes accepted
    assert ref.count["replacements"] >= 3 and ref.count["refreshed"] >= 1 and ref.count["added"] == k
    assert ref.count["replacements"] + ref.count["refreshed"] < 2 * n - k


def test_online_omp_swaps_out_the_atom_whose_removal_costs_least():
    # atoms a and c are nearly collinear, so each has a large weight but costs little to remove (the
    # other takes over); b has the smallest weight but nothing replaces it. Removing atom j raises
    # the residual sum of squares by β_j² / (G⁻¹)_jj: c is the cheapest, b by far the dearest
    rng = np.random.default_rng(3)
    m = 40
    a, b, d = rng.normal(size=m), rng.normal(size=m), rng.normal(size=m)
    c = a + 0.05 * rng.normal(size=m)
    y = 3 * _unit(a) + 3 * _unit(c) + _unit(b) + 0.5 * _unit(d)
    sel = OnlineOMP(n_atoms=3)
    sel.start_epoch(y)
    sel.offer([0, 1, 2], np.stack([a, b, c], 1))
    cols = [_unit(a), _unit(b), _unit(c)]
    beta = sel.beta.numpy()
    rss = lambda cs: float(np.sum((y - np.stack(cs, 1) @ np.linalg.lstsq(np.stack(cs, 1), y, rcond=None)[0]) ** 2))
    drop = np.array([rss(cols[:j] + cols[j + 1:]) - rss(cols) for j in range(3)])
    C = np.stack(cols, 1)
    np.testing.assert_allclose(beta**2 / np.diag(np.linalg.inv(C.T @ C)), drop, rtol=1e-6)
    assert np.argmin(drop) == 2 and np.argmin(np.abs(beta)) == 1 and np.argmax(drop) == 1
    # the incoming atom d (gain about 0.25) replaces c; removing b (cost 0.84) would not pay
    sel.offer([3], d[:, None])
    assert sel.selected_ids == [0, 1, 3] and sel.n_replacements == 1
    assert sel.residual_norm == pytest.approx(np.sqrt(rss([_unit(a), _unit(b), _unit(d)])), rel=1e-8)


def test_online_omp_weights_are_the_ridge_fit_after_every_change():
    # with a ridge that matters, the rank-one and rank-two updates must keep the weights equal to the
    # ridge regression (CᵀC + λI)⁻¹Cᵀy on the selected unit-norm columns, swaps included
    rng = np.random.default_rng(5)
    m, n, k, lam = 25, 50, 4, 0.3
    X = rng.normal(size=(m, n))
    y = X[:, :6] @ rng.uniform(0.5, 2.0, 6) + 0.2 * rng.normal(size=m)
    sel = OnlineOMP(n_atoms=k, ridge=lam, refit_every=1000)
    sel.start_epoch(y)
    for i in rng.permutation(n):
        sel.offer([i], X[:, [i]])
        C = X[:, sel.selected_ids] / np.linalg.norm(X[:, sel.selected_ids], axis=0)
        beta = np.linalg.solve(C.T @ C + lam * np.eye(C.shape[1]), C.T @ y)
        np.testing.assert_allclose(sel.beta.numpy(), beta, atol=1e-10)
        np.testing.assert_allclose(sel.r.numpy(), y - C @ beta, atol=1e-10)
    assert sel.n_replacements >= 3
    # a new target refits the weights of the selected atoms from scratch
    y2 = X[:, 6:9].sum(1)
    sel.start_epoch(y2)
    beta = np.linalg.solve(C.T @ C + lam * np.eye(C.shape[1]), C.T @ y2)
    np.testing.assert_allclose(sel.beta.numpy(), beta, atol=1e-10)
    np.testing.assert_allclose(sel.r.numpy(), y2 - C @ beta, atol=1e-10)


@pytest.mark.parametrize("nonneg", [False, True])
def test_online_omp_swaps_only_for_an_improvement_above_rounding(nonneg):
    # a swap must lower the residual sum of squares by more than 1e-12·‖y‖², so that rounding never
    # churns the selection. One atom, ‖y‖² about 1e6 (tolerance 1e-6), residual sum of squares 1;
    # fresher features tilted by δ towards the residual improve it by about 2000·δ
    rng = np.random.default_rng(0)
    m = 40
    x0 = _unit(rng.normal(size=m))
    e = rng.normal(size=m)
    e = _unit(e - (e @ x0) * x0)
    y = 1e3 * x0 + e
    for delta, refreshed in [(0.0, 0), (5e-11, 0), (2e-10, 0), (1e-9, 1), (3e-9, 1)]:
        sel = OnlineOMP(n_atoms=1, nonneg=nonneg, ridge=0.0)
        sel.start_epoch(y)
        sel.offer([0], x0[:, None])
        x1 = _unit(x0 + delta * e)
        gain = sel.residual_norm**2 - float(np.sum((y - x1 * (x1 @ y)) ** 2))
        assert (gain > 1e-12 * (y @ y)) == bool(refreshed) and (gain < 5e-7 or gain > 1.5e-6), gain
        sel.offer([0], x1[:, None])
        assert sel.trace.refreshed == refreshed, delta


@pytest.mark.parametrize("ridge", [1e-10, 0.0])
def test_online_omp_refuses_an_atom_without_a_new_direction(ridge):
    # ω = 2 with b the cheaper atom; an incoming copy of a lies in the span of what stays once b is
    # removed, so it brings nothing and nothing changes (without a ridge the swap test sees a zero
    # pivot and must refuse at once rather than divide rounding noise by rounding noise)
    rng = np.random.default_rng(8)
    a, b = _unit(rng.normal(size=30)), _unit(rng.normal(size=30))
    y = 3 * a + 0.5 * b + 0.1 * rng.normal(size=30)
    sel = OnlineOMP(n_atoms=2, ridge=ridge)
    sel.start_epoch(y)
    sel.offer([0, 1], np.stack([a, b], 1))
    before = sel.beta.clone()
    sel.offer([2], 2 * a[:, None])
    assert sel.selected_ids == [0, 1] and sel.n_replacements == 0 and torch.equal(sel.beta, before)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nnls_in_gram_form_from_a_warm_start_equals_scipy(seed):
    # one column of A changes, as in a swap: from the old weights with that column's weight set to 0
    # (and from zero) the Gram-form active set reaches scipy's optimum on A itself
    from scipy.optimize import nnls

    from trustkit.select._omp import _nnls_gram

    rng = np.random.default_rng(seed)
    m, k = 50, 12
    A = rng.normal(size=(m, k))
    y = A[:, :6] @ rng.uniform(0.2, 1.0, 6) - 0.7 * A[:, 6] + 0.3 * rng.normal(size=m)
    old = nnls(A, y)[0]
    assert 0 < (old > 0).sum() < k  # some weights at the bound, some free
    for j in range(k):
        B = A.copy()
        B[:, j] = rng.normal(size=m)
        x0 = old.copy()
        x0[j] = 0.0
        for start in (x0, np.zeros(k)):
            beta = _nnls_gram(B.T @ B, B.T @ y, start, tol=1e-13 * np.linalg.norm(y))
            np.testing.assert_allclose(beta, nnls(B, y)[0], atol=1e-10)


def _nonneg_stream(seed, rank=None, m=40, n=70, epochs=4):
    """Epochs of (target, order, features): the features drift towards the target, the target moves.

    With ``rank``, the features lie close to one ``rank``-dimensional space (as VTruST's lie in the
    span of the value gradients): a selection of more atoms than that keeps atoms of weight 0.
    """
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(m, rank)) if rank else np.eye(m)
    X = basis @ rng.normal(size=(basis.shape[1], n)) + (0.01 * rng.normal(size=(m, n)) if rank else 0.0)
    y = X[:, :10] @ rng.uniform(0.3, 1.5, 10) - X[:, 10:14] @ rng.uniform(0.3, 1.0, 4) + 0.5 * rng.normal(size=m)
    for _ in range(epochs):
        yield y.copy(), rng.permutation(n), X.copy()
        X = X + basis @ (0.3 * rng.normal(size=(basis.shape[1], n))) + np.outer(y / np.linalg.norm(y), rng.uniform(-0.5, 1.0, n))
        y = y + 0.3 * rng.normal(size=m)


@pytest.mark.parametrize("seed, rank, n_atoms", [(s, None, 9) for s in range(5)] + [(s, 8, 12) for s in range(3)])
def test_nonneg_screened_pursuit_selects_what_the_per_atom_loop_selects(seed, rank, n_atoms):
    # the fast path (all correlations with the residual at once, only atoms that could enter tested,
    # NNLS warm-started in Gram form) against the per-atom loop that fits scipy's NNLS at every
    # test, offer by offer. With features near rank 8 and ω = 12, atoms of weight 0 are selected
    # (the smallest weight, the one swapped out, is then a tie)
    fast, slow = OnlineOMP(n_atoms=n_atoms, nonneg=True), OnlineOMP(n_atoms=n_atoms, nonneg=True, fast=False)
    zeros = 0
    for y, order, X in _nonneg_stream(seed, rank):
        for sel in (fast, slow):
            sel.start_epoch(y)
        for s in range(0, len(order), 10):  # mini-batches of incoming atoms
            idx = order[s : s + 10]
            for sel in (fast, slow):
                sel.offer(idx, X[:, idx])
            assert fast.selected_ids == slow.selected_ids
            np.testing.assert_allclose(fast.beta.numpy(), slow.beta.numpy(), atol=1e-7)
            assert fast.residual_norm == pytest.approx(slow.residual_norm, rel=1e-9)
            zeros += fast.n_nonpositive_weight > 0 and len(fast.selected_ids) == n_atoms
        # the state is the exact fit of the selected columns (some from earlier epochs)
        np.testing.assert_allclose(fast.r.numpy(), y - fast._cols.numpy() @ fast.beta.numpy(), atol=1e-10)
    a, b = fast.summary(), slow.summary()
    assert a.pop("relative_residual") == pytest.approx(b.pop("relative_residual"), rel=1e-9) and a == b
    # the stream exercised every rule: swaps and refreshes accepted, atoms screened out
    assert a["replacements"] >= 10 and a["refreshed"] >= 3 and a["offered"] == 4 * 70
    assert zeros >= (1 if rank else 0)


# --- per-sample gradient checks and column scaling ------------------------------------------------

class _FeaturesOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Linear(3, 4)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.features(x))


class _HeadOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.head(x)


@pytest.mark.parametrize("model", [_FeaturesOnly(), _HeadOnly()], ids=["features-only", "head-only"])
def test_last_layer_scope_needs_both_features_and_head(model):
    x, y = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"scope='last_layer' needs a model with .features and .head; use scope='full'"):
        per_sample_grads(model, x, y)
    full = per_sample_grads(model, x, y, scope="full")
    torch.testing.assert_close(full, _loop_grads(model, x, y, list(model.parameters())), atol=1e-6, rtol=1e-5)


def test_normalise_columns_gives_unit_columns_and_keeps_zero_columns():
    from trustkit.select import normalise_columns

    X = torch.tensor([[3.0, 0.0, 1.0], [4.0, 0.0, -1.0]], dtype=torch.float64)
    unit, norms = normalise_columns(X)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.0, 2**0.5], dtype=torch.float64))
    torch.testing.assert_close(unit, torch.tensor([[0.6, 0.0, 2**-0.5], [0.8, 0.0, -(2**-0.5)]], dtype=torch.float64))
    # a column below eps is left as it is instead of blowing up
    tiny = torch.tensor([[1e-14], [0.0]], dtype=torch.float64)
    torch.testing.assert_close(normalise_columns(tiny)[0], tiny)
    torch.testing.assert_close(normalise_columns(tiny, eps=1e-16)[0], torch.tensor([[1.0], [0.0]], dtype=torch.float64))


def test_random_projection_refuses_a_matrix_too_large():
    with pytest.raises(ValueError, match="a dense projection of 1,000,000 parameters to 201 dims is too large"):
        random_projection(torch.zeros(1, 1_000_000), 201)


# --- SAug's sampling numbers on a planted accuracy matrix -----------------------------------------

def test_saug_sampling_numbers_and_rounds_on_a_planted_matrix(monkeypatch):
    # training and measuring are replaced by planted accuracies, so the test checks Algorithm 3's
    # arithmetic: SN_j = (Mat[j, j] − mean_{i≠j} Mat[i, j]) / Mat[j, j] in round 0, then
    # SN_j = Mat[j, j] − RA_j, pools in proportion to SN, stop when the mean RA stops improving
    from types import SimpleNamespace

    from trustkit.select import _saug

    corr = ["fog", "pixelate", "contrast"]
    mat = np.array([[0.9, 0.5, 0.6],  # model trained with fog, measured on each corruption
                    [0.4, 0.8, 0.5],
                    [0.5, 0.6, 0.7],
                    [0.3, 0.4, 0.5]])  # clean model
    ra_rounds = [[0.7, 0.75, 0.5], [0.85, 0.7, 0.6], [0.8, 0.7, 0.62], [0.9, 0.9, 0.9]]
    task = SimpleNamespace(train=np.zeros(1000))
    pools, seeds = [], []

    class FakeTrainer:
        def __init__(self, **kwargs):
            pass

        def fit(self, t):
            self.model_ = t

    def fake_augmented(t, counts, *, seed=0, severity=None):
        pools.append(dict(counts))
        seeds.append(seed)
        return ("pool", len(pools) - 1)

    def fake_robust(model, t, corruptions, *, seed=0, **kwargs):
        if model is task:
            row = mat[-1]
        elif model[1] < len(corr):  # round 0: one model per single corruption
            row = mat[corr.index(next(iter(pools[model[1]])))]
        else:
            row = ra_rounds[model[1] - len(corr)]
        return dict(zip(corruptions, row))

    monkeypatch.setattr(_saug, "Trainer", FakeTrainer)
    monkeypatch.setattr(_saug, "augmented_task", fake_augmented)
    monkeypatch.setattr(_saug, "robust_accuracies", fake_robust)
    res = _saug.saug(task, corr, aug_factor=1.0, rounds=4, eps=0.005, seed=5)

    assert pools[:3] == [{"fog": 333}, {"pixelate": 333}, {"contrast": 333}] and seeds[:3] == [5, 5, 5]
    np.testing.assert_array_equal(res.mat, mat)
    diag = np.diag(mat[:3])
    sn = np.array([(diag[j] - np.mean([mat[i, j] for i in range(4) if i != j])) / diag[j] for j in range(3)])
    np.testing.assert_allclose(sn, [0.5 / 0.9, 0.3 / 0.8, (0.7 - 1.6 / 3) / 0.7])
    rounds = pools[3:]
    assert len(rounds) == 3 and seeds[3:] == [5, 6, 7]  # round 3 does not improve on round 2: stop
    for counts, weights in zip(rounds, [sn, diag - ra_rounds[0], diag - ra_rounds[1]]):
        assert sum(counts.values()) == 1000
        expected = 1000 * np.clip(weights, 0, None) / np.clip(weights, 0, None).sum()
        assert np.abs(np.array([counts[c] for c in corr]) - expected).max() < 1, (counts, expected)
    assert [h["round"] for h in res.history] == [1, 2, 3]
    np.testing.assert_allclose([h["mean_robust_acc"] for h in res.history], np.mean(ra_rounds[:3], axis=1))
    assert all(h[f"n[{c}]"] == counts[c] for h, counts in zip(res.history, rounds) for c in corr)
    assert res.counts == rounds[1]  # the pool of the best mean robust accuracy


class _ConstantClass(torch.nn.Module):
    """Predicts class 3 for every image (its lowest logit is class 7)."""

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        logits[:, 3], logits[:, 7] = 5.0, -5.0
        return logits


def test_robust_accuracies_score_the_predicted_class(digits_task):
    from trustkit.select import robust_accuracies

    small = digits_task.replace(val=digits_task.val.replace(**{k: getattr(digits_task.val, k)[:40]
                                                               for k in ("X", "y", "index")}))
    out = robust_accuracies(_ConstantClass(), small, ["gaussian_noise", "contrast"], severities=(1, 5))
    expected = float((small.val.y == 3).mean())
    assert expected > 0 and out == pytest.approx({"gaussian_noise": expected, "contrast": expected})
