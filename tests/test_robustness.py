"""Attacks, corruption accuracy and noise accuracy on trained models."""

import numpy as np
import pytest
import torch
import torchattacks

from trustkit import metrics as tm
from trustkit.data import CORRUPTIONS


def _first(task, n=200):
    return torch.tensor(task.test.X[:n]), torch.tensor(task.test.y[:n])


def test_fgsm_equals_torchattacks(trained_digits, digits_task):
    x, y = _first(digits_task, 64)
    ours = tm.fgsm(trained_digits, x, y, 0.1)
    ref = torchattacks.FGSM(trained_digits, eps=0.1)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_pgd_without_random_start_equals_torchattacks(trained_digits, digits_task):
    x, y = _first(digits_task, 64)
    ours = tm.pgd(trained_digits, x, y, 0.1, steps=10, step_size=0.02, random_start=False)
    ref = torchattacks.PGD(trained_digits, eps=0.1, alpha=0.02, steps=10, random_start=False)(x, y)
    # torchattacks projects with x0 + clamp(x - x0, -eps, eps), trustkit with min(max(x, x0 - eps), x0 + eps):
    # the iterates differ in the last bit, and where an input gradient is within rounding of 0 its sign,
    # so a whole step of 0.02, can flip on a few of the 65,536 pixels (1 with PyTorch's non-vectorised
    # kernels). Every other pixel agrees to 1e-5; a wrong step, sign, projection or clamp moves thousands
    off = (ours - ref).abs() > 1e-5
    worst = float((ours - ref).abs().max())
    assert int(off.sum()) <= 16, f"{int(off.sum())} of {off.numel()} pixels differ, by up to {worst:.3g}"


def test_pgd_stays_in_the_ball_and_the_box(trained_digits, digits_task):
    x, y = _first(digits_task, 64)
    xa = tm.pgd(trained_digits, x, y, 0.05, steps=5, generator=torch.Generator().manual_seed(0))
    assert float((xa - x).abs().max()) <= 0.05 + 1e-6
    assert float(xa.min()) >= 0 and float(xa.max()) <= 1


@pytest.mark.parametrize("eps", [0.03, 0.1, 0.2])
def test_pgd_le_fgsm_le_clean_on_images(trained_digits, digits_task, eps):
    X, y = digits_task.test.X, digits_task.test.y
    clean = tm.accuracy(y, tm.predict_logits(trained_digits, X).argmax(1))
    f = tm.adversarial_accuracy(trained_digits, X, y, eps, attack="fgsm")
    p = tm.adversarial_accuracy(trained_digits, X, y, eps, attack="pgd", steps=20)
    assert p <= f <= clean
    assert p < clean  # a real attack does damage


def test_pgd_le_fgsm_le_clean_on_tabular(trained_compas, compas_task):
    X, y = compas_task.test.X, compas_task.test.y
    table = tm.attack_table(trained_compas, X, y, [0.1, 0.3], bounds=None)
    clean = table.query("attack == 'clean'").accuracy.item()
    for eps in (0.1, 0.3):
        f = table.query("attack == 'fgsm' and eps == @eps").accuracy.item()
        p = table.query("attack == 'pgd' and eps == @eps").accuracy.item()
        assert p <= f + 1e-9 <= clean + 1e-9
    # accuracy falls as eps grows
    assert table.query("attack == 'pgd' and eps == 0.3").accuracy.item() <= table.query("attack == 'pgd' and eps == 0.1").accuracy.item()


def test_adversarial_accuracy_is_deterministic(trained_digits, digits_task):
    X, y = digits_task.test.X[:100], digits_task.test.y[:100]
    a1 = tm.adversarial_accuracy(trained_digits, X, y, 0.1, seed=3)
    a2 = tm.adversarial_accuracy(trained_digits, X, y, 0.1, seed=3)
    assert a1 == a2


def test_attack_errors():
    m = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="eps must be a number > 0"):
        tm.adversarial_accuracy(m, np.zeros((2, 2)), np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="attack must be 'fgsm' or 'pgd'"):
        tm.adversarial_accuracy(m, np.zeros((2, 2)), np.zeros(2), 0.1, attack="cw")


def test_corruption_table_covers_grid_and_hurts(trained_digits, digits_task):
    X, y = digits_task.test.X[:120], digits_task.test.y[:120]
    names = ["gaussian_noise", "impulse_noise", "defocus_blur", "contrast", "pixelate"]
    table = tm.corruption_table(trained_digits, X, y, corruptions=names, severities=(1, 5), seed=0)
    assert len(table) == len(names) * 2
    assert set(table.columns) >= {"corruption", "family", "severity", "accuracy"}
    clean = tm.accuracy(y, tm.predict_logits(trained_digits, X).argmax(1))
    sev5 = table.query("severity == 5").accuracy.mean()
    sev1 = table.query("severity == 1").accuracy.mean()
    assert sev5 < sev1 <= clean + 0.02
    assert set(table.corruption) <= set(CORRUPTIONS)


def test_feature_noise_accuracy_degrades_to_chance(trained_compas, compas_task):
    X, y = compas_task.test.X, compas_task.test.y
    clean = tm.accuracy(y, tm.predict_logits(trained_compas, X).argmax(1))
    small = tm.feature_noise_accuracy(trained_compas, X, y, 0.05, seed=0)
    huge = tm.feature_noise_accuracy(trained_compas, X, y, 50.0, seed=0)
    assert abs(small - clean) < 0.03
    assert huge < clean - 0.05


def test_ood_auroc_detects_severe_corruption(trained_digits, digits_task):
    from trustkit.data import corrupt_images

    X = digits_task.test.X[:150]
    s_in = tm.msp_score(tm.predict_logits(trained_digits, X))
    s_out = tm.msp_score(tm.predict_logits(trained_digits, corrupt_images(X, "impulse_noise", 5, seed=0)))
    assert tm.ood_auroc(s_in, s_out) > 0.6


def test_mask_limits_the_attack_to_numeric_columns(trained_compas, compas_task):
    x, y = torch.tensor(compas_task.test.X[:100]), torch.tensor(compas_task.test.y[:100])
    mask = torch.zeros(x.shape[1])
    mask[list(compas_task.numeric_columns)] = 1.0
    xa = tm.pgd(trained_compas, x, y, 0.3, bounds=None, mask=mask, generator=torch.Generator().manual_seed(0))
    moved = (xa - x).abs().amax(dim=0) > 0
    assert moved.tolist() == mask.bool().tolist()
    assert float((xa - x).abs().max()) <= 0.3 + 1e-6


def test_trust_profile_has_every_family(trained_digits, digits_task):
    row = tm.trust_profile(trained_digits, digits_task, eps=[0.05], corruptions=["fog", "pixelate"],
                           severities=(1, 5), max_examples=60)
    for key in ("accuracy", "ece", "fgsm@0.05", "pgd@0.05", "corruption_acc", "corruption_acc@1",
                "corruption_acc@5", "ood_auroc"):
        assert key in row, key
    assert row["pgd@0.05"] <= row["fgsm@0.05"]


def test_trust_profile_scores_corruptions_on_a_fixed_stratified_subset(trained_digits, digits_task, monkeypatch):
    from trustkit.metrics import _profile

    seen, real = [], _profile.corruption_table

    def spy(model, X, y, **kw):
        seen.append((np.asarray(y).copy(), kw["seed"]))
        return real(model, X, y, **kw)

    monkeypatch.setattr(_profile, "corruption_table", spy)
    kw = dict(eps=[0.05], pgd_steps=2, corruptions=["contrast"], severities=(2,), corruption_examples=50)
    row = tm.trust_profile(trained_digits, digits_task, seed=3, **kw)
    tm.trust_profile(trained_digits, digits_task, seed=4, corruption_seed=0, **kw)
    (y3, seed3), (y4, seed4) = seen
    assert (seed3, seed4) == (3, 0)
    assert len(y3) == 50 and np.array_equal(y3, y4)  # the same subset whatever the seed
    # every class keeps its share of the test split, to within one image
    share = np.bincount(digits_task.test.y, minlength=10) / len(digits_task.test.y)
    assert np.abs(np.bincount(y3, minlength=10) - 50 * share).max() < 1
    # the attacks still use every test example
    bounds, mask = tm.attack_geometry(digits_task)
    assert row["fgsm@0.05"] == tm.adversarial_accuracy(trained_digits, digits_task.test.X, digits_task.test.y, 0.05,
                                                      attack="fgsm", bounds=bounds, mask=mask, seed=3)


@pytest.mark.parametrize("field, value, error", [("corruption_examples", 0, ValueError),
                                                 ("corruption_examples", 2.5, TypeError),
                                                 ("corruption_seed", -1, ValueError)])
def test_trust_profile_rejects_a_bad_corruption_setting(trained_digits, digits_task, field, value, error):
    with pytest.raises(error, match=field):
        tm.trust_profile(trained_digits, digits_task, **{field: value})


# --- the random start, the generator and the attack geometry ----------------------------------

class _Flat(torch.nn.Module):
    """A model whose loss does not depend on the input: its input gradient is 0, so PGD's steps do
    not move and the attack ends at its random start (projected to the ball and the box)."""

    def forward(self, x):
        return torch.zeros(len(x), 2) + 0.0 * x.reshape(len(x), -1).sum(1, keepdim=True)


def _flat_batch(n=400, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, 2, (n,), generator=g)


def test_pgd_random_start_is_uniform_in_the_ball_and_centred():
    x, y = _flat_batch()
    eps = 0.1
    xa = tm.pgd(_Flat(), x, y, eps, steps=3, bounds=None, generator=torch.Generator().manual_seed(0))
    delta = (xa - x) / eps
    assert float(delta.abs().max()) <= 1 + 1e-6
    # uniform on [-1, 1]: both ends reached, mean 0, half the draws below 0, variance 1/3
    assert float(delta.min()) < -0.95 and float(delta.max()) > 0.95
    assert abs(float(delta.mean())) < 0.03
    assert abs(float((delta < 0).double().mean()) - 0.5) < 0.03
    assert float(delta.var()) == pytest.approx(1 / 3, abs=0.02)


def test_pgd_random_start_adds_the_generators_uniform_draw():
    # the start is x0 + ε·(2U − 1) with U ~ Uniform[0, 1) drawn from the generator given, so the same
    # seed reproduces the attack exactly
    x, y = _flat_batch(50, 3)
    eps = 0.2
    xa = tm.pgd(_Flat(), x, y, eps, steps=1, bounds=None, generator=torch.Generator().manual_seed(7))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(xa, x + eps * (2 * u - 1), atol=1e-6, rtol=0)
    # in the box, the start is clamped to [0, 1]
    xb = tm.pgd(_Flat(), x, y, eps, steps=1, bounds=(0.0, 1.0), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(xb, (x + eps * (2 * u - 1)).clamp(0, 1), atol=1e-6, rtol=0)
    # without a random start and without a gradient nothing moves
    torch.testing.assert_close(tm.pgd(_Flat(), x, y, eps, steps=2, random_start=False, bounds=None), x)


def test_pgd_uses_its_generator_not_the_global_random_state():
    x, y = _flat_batch(60, 4)
    attack = lambda seed: tm.pgd(_Flat(), x, y, 0.1, steps=1, bounds=None,
                                 generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(1)
    first = attack(3)
    torch.manual_seed(2)  # the global state must not matter
    torch.testing.assert_close(attack(3), first, atol=0, rtol=0)
    assert not torch.equal(attack(4), first)


def test_adversarial_accuracy_depends_on_the_seed_only(trained_digits, digits_task):
    # same seed: the same random starts whatever the global state; another seed: other starts
    X, y = digits_task.test.X[:150], digits_task.test.y[:150]
    run = lambda seed: tm.adversarial_accuracy(trained_digits, X, y, 0.15, steps=1, seed=seed, batch_size=50)
    torch.manual_seed(0)
    a = run(3)
    torch.manual_seed(123)
    assert run(3) == a
    assert len({run(s) for s in range(4, 10)} | {a}) > 1


def test_attack_geometry_of_images_and_tables(digits_task, compas_task):
    bounds, mask = tm.attack_geometry(digits_task)
    assert bounds == (0.0, 1.0) and mask is None
    bounds, mask = tm.attack_geometry(compas_task)
    assert bounds is None and mask.shape == (compas_task.input_shape[0],)
    assert torch.nonzero(mask).reshape(-1).tolist() == sorted(compas_task.numeric_columns)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_trust_profile_on_images_attacks_within_the_pixel_box(trained_digits, digits_task):
    # the image branch of attack_geometry: every pixel may move, clamped to [0, 1]
    X, y = digits_task.test.X[:40], digits_task.test.y[:40]
    row = tm.trust_profile(trained_digits, digits_task, eps=[0.1], pgd_steps=2, corruptions=["fog"], severities=(1,),
                           max_examples=40)
    assert row["pgd@0.1"] == tm.adversarial_accuracy(trained_digits, X, y, 0.1, steps=2, bounds=(0.0, 1.0), mask=None)
    assert row["fgsm@0.1"] == tm.adversarial_accuracy(trained_digits, X, y, 0.1, attack="fgsm", bounds=(0.0, 1.0))


# --- trust_profile and evaluate ----------------------------------------------------------------

def _linear(task, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(task.input_shape[0], task.n_classes).eval()


def test_trust_profile_truncates_attacks_and_noise_to_max_examples(compas_task):
    model, k = _linear(compas_task, seed=3), 80
    s = compas_task.test
    X, y = s.X[:k], s.y[:k]
    bounds, mask = tm.attack_geometry(compas_task)
    row = tm.trust_profile(model, compas_task, eps=[0.3], pgd_steps=3, noise_std=2.0, max_examples=k)
    expected = {
        "fgsm@0.3": tm.adversarial_accuracy(model, X, y, 0.3, attack="fgsm", bounds=bounds, mask=mask),
        "pgd@0.3": tm.adversarial_accuracy(model, X, y, 0.3, attack="pgd", steps=3, bounds=bounds, mask=mask),
        "noise_acc": tm.feature_noise_accuracy(model, X, y, 2.0, columns=compas_task.numeric_columns),
    }
    assert {key: row[key] for key in expected} == expected
    # the utility and fairness metrics stay on the whole split
    assert row["accuracy"] == tm.accuracy(s.y, tm.predict_logits(model, s.X).argmax(1))
    # and the first k examples give other numbers than the whole split, so truncation is visible
    full = tm.trust_profile(model, compas_task, eps=[0.3], pgd_steps=3, noise_std=2.0)
    assert full["pgd@0.3"] == tm.adversarial_accuracy(model, s.X, s.y, 0.3, steps=3, bounds=bounds, mask=mask)
    assert any(full[key] != row[key] for key in expected)


def test_evaluate_default_metrics_follow_the_task(compas_task, digits_task):
    from trustkit.metrics import DEFAULT_METRICS

    model = _linear(compas_task)
    with_a = tm.evaluate(model, compas_task.test)
    assert tuple(with_a) == DEFAULT_METRICS["binary_sensitive"]
    assert with_a["dp_gap"] == tm.dp_gap(compas_task.test.y, tm.predict_logits(model, compas_task.test.X).argmax(1),
                                         compas_task.test.a)
    without = tm.evaluate(model, compas_task.test.replace(a=None))
    assert tuple(without) == DEFAULT_METRICS["binary"]
    assert {k: with_a[k] for k in without} == without
    digits = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(digits_task.input_shape)), 10))
    assert tuple(tm.evaluate(digits, digits_task.test)) == DEFAULT_METRICS["multiclass"]
