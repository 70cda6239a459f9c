"""Loss terms: fairness surrogates against fairlearn, adversarial terms, compute allocation, errors."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from trustkit.budget import Budget
from trustkit.metrics import eo_gap
from trustkit.train import (
    AdversarialLoss,
    Batch,
    CrossEntropy,
    FairnessPenalty,
    RobustEval,
    Trainer,
    cell_loss_gap,
    soft_dp_gap,
    soft_eo_gap,
)


def _random_case(seed, n=200, groups=2):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    a = torch.randint(0, groups, (n,), generator=g)
    p = torch.rand(n, generator=g)
    return p, y, a


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("groups", [2, 3])
def test_soft_gaps_equal_fairlearn_on_hard_predictions(seed, groups):
    p, y, a = _random_case(seed, groups=groups)
    hard = (p > 0.5).double()
    dp = demographic_parity_difference(y.numpy(), hard.numpy(), sensitive_features=a.numpy())
    eo = equalized_odds_difference(y.numpy(), hard.numpy(), sensitive_features=a.numpy())
    assert float(soft_dp_gap(hard, a)) == pytest.approx(dp, abs=1e-12)
    assert float(soft_eo_gap(hard, y, a, agg="worst_case")) == pytest.approx(eo, abs=1e-12)
    if groups == 2:
        assert float(soft_eo_gap(hard, y, a, agg="mean")) == pytest.approx(eo_gap(y, hard.long(), a, agg="mean"), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_cell_loss_gap_matches_pandas(seed):
    p, y, a = _random_case(seed)
    losses = -torch.log(p.double().clamp_min(1e-6))
    df = pd.DataFrame({"l": losses.numpy(), "y": y.numpy(), "a": a.numpy()})
    cells = df.groupby(["y", "a"])["l"].mean().unstack()
    expected = (cells.max(axis=1) - cells.min(axis=1)).max()
    assert float(cell_loss_gap(losses, y, a)) == pytest.approx(expected, rel=1e-6)


def test_soft_dp_gap_gradient_moves_groups_together():
    p, _, a = _random_case(0)
    logit = torch.logit(p.double()).requires_grad_(True)
    gap = soft_dp_gap(torch.sigmoid(logit), a)
    gap.backward()
    hi = 0 if float(p[a == 0].mean()) > float(p[a == 1].mean()) else 1
    # descending the gap lowers the scores of the group with the higher rate, raises the other's
    assert (logit.grad[a == hi] > 0).all() and (logit.grad[a == 1 - hi] < 0).all()
    assert torch.autograd.gradcheck(lambda z: soft_dp_gap(torch.sigmoid(z), a), (logit.detach().requires_grad_(True),))


def test_missing_group_gives_zero_gap():
    p = torch.tensor([0.2, 0.9]); a = torch.tensor([1, 1]); y = torch.tensor([0, 1])
    assert float(soft_dp_gap(p, a)) == 0.0 and float(soft_eo_gap(p, y, a)) == 0.0


def test_cell_weights_reweight_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 2, generator=g)
    y = torch.randint(0, 2, (40,), generator=g)
    a = torch.randint(0, 2, (40,), generator=g)
    ce = CrossEntropy()
    b = Batch(x=torch.zeros(40, 1), y=y, a=a, idx=torch.arange(40))
    assert float(ce(None, b, logits)) == pytest.approx(float(F.cross_entropy(logits, y)))
    ce.cell_weights = torch.tensor([[1.0, 3.0], [2.0, 0.5]])
    w = ce.cell_weights[y, a]
    expected = (w * F.cross_entropy(logits, y, reduction="none")).sum() / w.sum()
    assert float(ce(None, b, logits)) == pytest.approx(float(expected))


@pytest.mark.parametrize("attack", ["pgd", "fgsm_rs"])
def test_adversarial_loss_raises_the_loss_and_stays_in_the_ball(compas_task, attack):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(compas_task.input_shape[0], 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    X = torch.as_tensor(compas_task.train.X[:256]); y = torch.as_tensor(compas_task.train.y[:256])
    term = AdversarialLoss.for_task(compas_task, eps=0.2, attack=attack, steps=5)
    x_adv = term.perturb(model, X, y)
    delta = x_adv - X
    assert float(delta.abs().max()) <= 0.2 + 1e-6
    moved = delta.abs().sum(0) > 0
    numeric = torch.zeros(X.shape[1], dtype=torch.bool)
    numeric[list(compas_task.numeric_columns)] = True
    assert not moved[~numeric].any(), "one-hot columns must not move"
    assert moved[numeric].any()
    b = Batch(x=X, y=y, a=None, idx=torch.arange(256))
    with torch.no_grad():
        clean = float(F.cross_entropy(model(X), y))
    assert float(term(model, b, model(X)).detach()) > clean


def test_pgd_is_a_stronger_inner_maximisation_than_fgsm_rs():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
    X = torch.randn(512, 10); y = torch.randint(0, 2, (512,))
    b = Batch(x=X, y=y, a=None, idx=torch.arange(512))
    pgd = AdversarialLoss(eps=0.3, attack="pgd", steps=10, bounds=None, mask=None)(model, b, None)
    fgsm = AdversarialLoss(eps=0.3, attack="fgsm_rs", bounds=None, mask=None)(model, b, None)
    assert float(pgd.detach()) >= float(fgsm.detach()) - 1e-6


def test_adversarial_term_takes_its_geometry_from_the_task(compas_task, digits_task):
    """A default term must not clamp standardised table features to the image range [0, 1]."""
    model = torch.nn.Linear(compas_task.input_shape[0], 2)
    X = torch.as_tensor(compas_task.train.X[:256]); y = torch.as_tensor(compas_task.train.y[:256]).long()
    assert (X < 0).any() or (X > 1).any()
    term = AdversarialLoss(eps=0.1, steps=3)
    with pytest.raises(ValueError, match="takes its bounds and mask from the task.*for_task"):
        term.perturb(model, X, y)
    # in a trainer the term is bound to the task: tables are not clamped and only numeric columns move
    Trainer(model="mlp", terms=[CrossEntropy(), term], epochs=1, progress=False).fit(compas_task)
    delta = term.perturb(model, X, y) - X
    assert float(delta.abs().max()) <= 0.1 + 1e-6
    numeric = torch.zeros(X.shape[1], dtype=torch.bool)
    numeric[list(compas_task.numeric_columns)] = True
    assert not delta[:, ~numeric].any() and delta[:, numeric].abs().max() > 0.05
    # bound to images instead: pixels stay in [0, 1]
    term.bind(digits_task)
    img = torch.as_tensor(digits_task.train.X[:16]); cnn = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x_adv = term.perturb(cnn, img, torch.as_tensor(digits_task.train.y[:16]).long())
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    with pytest.raises(TypeError, match="bounds must be 'task', None or a pair"):
        AdversarialLoss(eps=0.1, bounds="images")
    with pytest.raises(ValueError, match="lo < hi"):
        AdversarialLoss(eps=0.1, bounds=(1.0, 0.0))


def test_term_errors_name_what_is_allowed():
    with pytest.raises(ValueError, match="eps"):
        AdversarialLoss(eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        AdversarialLoss(eps=-1.0)
    with pytest.raises(ValueError, match="Did you mean 'fgsm_rs'"):
        AdversarialLoss(eps=0.1, attack="fgsm-rs")
    with pytest.raises(TypeError, match="steps"):
        AdversarialLoss(eps=0.1, steps=2.5)
    with pytest.raises(ValueError, match="surrogate must be one of"):
        FairnessPenalty(surrogate="demographic")


def test_fairness_term_on_a_task_without_sensitive_attribute_is_refused(digits_task):
    trainer = Trainer(model="cnn", terms=[CrossEntropy(), FairnessPenalty()], epochs=1, progress=False)
    with pytest.raises(ValueError, match="sensitive attribute"):
        trainer.fit(digits_task)


def test_the_trainer_charges_the_attack_it_ran(compas_task):
    """FLOPs per step grow with the PGD steps; FGSM-RS costs about one extra forward/backward."""
    per_step = {}
    for attack, steps in [("none", 1), ("fgsm_rs", 1), ("pgd", 3), ("pgd", 7)]:
        terms = [CrossEntropy()] + ([] if attack == "none" else [AdversarialLoss.for_task(compas_task, eps=0.1, attack=attack, steps=steps)])
        r = Trainer(model="mlp", terms=terms, epochs=1, progress=False, metrics=["accuracy"]).fit(compas_task)
        per_step[(attack, steps)] = r.usage["flops"] / r.epochs[0].steps
    base = per_step[("none", 1)]
    assert 2.5 < per_step[("fgsm_rs", 1)] / base < 5.5
    assert per_step[("pgd", 3)] < per_step[("pgd", 7)]
    # every attack iteration costs the same: cost(7) - cost(3) = 2 * (cost(3) - cost(1))
    c1, c3, c7 = per_step[("fgsm_rs", 1)], per_step[("pgd", 3)], per_step[("pgd", 7)]
    assert c7 - c3 == pytest.approx(2 * (c3 - c1), rel=0.05)


def test_fractions_switch_a_term_on_for_that_share_of_steps(compas_task):
    from trustkit.train import Callback

    class Half(Callback):
        def on_fit_start(self, state):
            state.fractions["rob"] = 0.5

    term = AdversarialLoss.for_task(compas_task, eps=0.1, attack="pgd", steps=3)
    r = Trainer(model="mlp", terms=[CrossEntropy(), term], epochs=1, progress=False, callbacks=[Half()],
                metrics=["accuracy"]).fit(compas_task)
    steps = r.epochs[0].steps
    counts = [sum(1 for s in range(steps) if Trainer._active({"rob": 1.0}, {"rob": 0.5}, s)["rob"])]
    assert counts[0] == steps // 2 or counts[0] == (steps + 1) // 2
    assert r.epochs[0].fractions["rob"] == 0.5
    assert 0 < r.epochs[0].term_time_s["rob"] < r.epochs[0].term_time_s["ce"]
    full = Trainer(model="mlp", terms=[CrossEntropy(), AdversarialLoss.for_task(compas_task, eps=0.1, steps=3)], epochs=1,
                   progress=False, metrics=["accuracy"]).fit(compas_task)
    assert r.usage["flops"] < full.usage["flops"]


def test_robust_eval_adds_robust_accuracy(compas_task):
    r = Trainer(model="mlp", epochs=2, progress=False, robust_eval=RobustEval(eps=0.1, val_n=200)).fit(compas_task)
    assert 0 <= r.epochs[-1].val["robust_accuracy"] <= r.epochs[-1].val["accuracy"] + 1e-9
    assert 0 <= r.test["robust_accuracy"] <= r.test["accuracy"] + 1e-9
    with pytest.raises(ValueError, match="eps"):
        RobustEval(eps=0)
    with pytest.raises(TypeError, match="RobustEval"):
        Trainer(robust_eval={"eps": 0.1})


def test_budget_too_small_for_one_epoch_returns_the_partial_record(digits_task):
    task = digits_task
    r = Trainer(model="cnn", epochs=3, batch_size=32, progress=False,
                terms=[CrossEntropy(), AdversarialLoss.for_task(task, eps=0.1, steps=5)],
                budget=Budget(flops=3e9)).fit(task)
    assert r.stopped_by == "flops"
    assert r.completed_epochs == 0 and len(r.epochs) == 1 and r.epochs[0].partial
    assert "too small for one full epoch" in r.message
    assert r.usage["flops"] <= 3e9
    assert np.isfinite(r.test["accuracy"])
