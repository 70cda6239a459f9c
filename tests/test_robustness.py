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
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


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
