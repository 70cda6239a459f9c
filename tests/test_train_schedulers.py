"""Schedulers and ATATS policies: sign conventions, the SCM, the oracle, cooper multipliers, errors."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from trustkit.budget import Budget
from trustkit.train import (
    SCHEDULERS,
    Action,
    AdversarialLoss,
    Allocation,
    BanditAction,
    BanditPolicy,
    CausalScheduler,
    CrossEntropy,
    DualAscent,
    DynamicLambda,
    FairBatch,
    FairnessPenalty,
    OracleScheduler,
    PeriodicFairness,
    PIDPolicy,
    RobustEval,
    RulePolicy,
    StaticLambda,
    Trainer,
    make_scheduler,
)


def _fit(task, scheduler, *, rob=False, epochs=4, budget=None, fair=True, steps=2):
    terms = [CrossEntropy()]
    weights = {}
    if fair:
        terms.append(FairnessPenalty(surrogate="dp"))
        weights["fair"] = 0.0
    if rob:
        terms.append(AdversarialLoss.for_task(task, eps=0.1, steps=steps))
        weights["rob"] = 0.0
    trainer = Trainer(model="mlp", terms=terms, weights=weights, epochs=epochs, callbacks=[scheduler], progress=False,
                      budget=budget, robust_eval=RobustEval(eps=0.1, val_n=256, test_steps=5) if rob else None)
    return trainer.fit(task), trainer


# -- DynamicLambda: the sign convention -------------------------------------------------------
def test_dynamic_lambda_sign_convention():
    rule = DynamicLambda(rho_fair=1.0, lam_max=2.0)
    assert rule.update(1.0, gain=+0.1, cost=1.0, rho=1.0) == pytest.approx(1.1)   # fairer -> more λ
    assert rule.update(1.0, gain=-0.1, cost=1.0, rho=1.0) == pytest.approx(0.9)   # less fair -> less λ
    assert rule.update(1.0, gain=+0.1, cost=2.0, rho=1.0) == pytest.approx(1.05)  # same gain, twice the compute
    assert rule.update(1.95, gain=1.0, cost=1.0, rho=1.0) == 2.0                   # clipped at λ_max
    assert rule.update(0.05, gain=-1.0, cost=1.0, rho=1.0) == 0.0                  # clipped at 0
    slow = DynamicLambda(tau=0.2)
    # improved, but by less than τ per unit of compute: λ goes down
    assert slow.update(1.0, gain=0.1, cost=1.0, rho=1.0) < 1.0


def test_dynamic_lambda_reads_gains_from_validation(compas_task):
    sched = DynamicLambda(rho_fair=10.0, lam_fair=1.0, lam_max=4.0)
    r, _ = _fit(compas_task, sched, epochs=5)
    traj = [t["lam_fair"] for t in sched.trajectory]
    assert traj[0] == traj[1] == 1.0  # no gain can be measured before two epochs
    for t in range(2, len(traj)):
        gain = r.epochs[t - 2].val["dp_gap"] - r.epochs[t - 1].val["dp_gap"]
        if gain > 0:
            assert traj[t] > traj[t - 1] or traj[t - 1] == 4.0
        elif gain < 0:
            assert traj[t] < traj[t - 1] or traj[t - 1] == 0.0
    assert [e.weights["fair"] for e in r.epochs] == traj


@pytest.mark.parametrize("kwargs, field", [
    ({"rho_fair": -1.0}, "rho_fair"), ({"rho_rob": -0.1}, "rho_rob"), ({"lam_max": -1.0}, "lam_max"),
    ({"lam_fair": 5.0, "lam_max": 4.0}, "lam_max"), ({"tau": float("nan")}, "tau"),
])
def test_dynamic_lambda_rejects_bad_parameters(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DynamicLambda(**kwargs)


# -- static, periodic -------------------------------------------------------------------------
def test_periodic_fairness_is_on_every_k_epochs(compas_task):
    sched = PeriodicFairness(every=3, lam_fair=2.0)
    r, _ = _fit(compas_task, sched, epochs=6)
    assert [e.weights["fair"] for e in r.epochs] == [0.0, 0.0, 2.0, 0.0, 0.0, 2.0]


def test_static_lambda_reduces_the_dp_gap(compas_task):
    r0, _ = _fit(compas_task, StaticLambda(lam_fair=0.0), epochs=6)
    r1, _ = _fit(compas_task, StaticLambda(lam_fair=3.0), epochs=6)
    assert r1.test["dp_gap"] < r0.test["dp_gap"]


# -- causal scheduler and oracle --------------------------------------------------------------
def test_causal_scm_recovers_planted_coefficients():
    sched = CausalScheduler(window=20, ridge=0.0)
    rng = np.random.default_rng(0)
    true = np.array([[0.01, 0.0, 0.02], [0.5, -0.1, 0.0], [0.0, 0.3, -0.05], [-0.02, 0.01, 0.04]])
    sched._rows = []
    for _ in range(20):
        c = {"fair": rng.uniform(0, 2), "rob": rng.uniform(0, 3), "total": rng.uniform(1, 4)}
        x = sched._features(c)
        sched._rows.append((x, x @ true))
    assert np.allclose(sched.fit(), true, atol=1e-8)


def test_causal_scheduler_uses_its_model_and_logs_predictions(compas_task):
    sched = CausalScheduler(warmup=2, explore=0.0, window=4, lambdas=None, lam_fair=1.0, lam_rob=1.0)
    r, _ = _fit(compas_task, sched, rob=True, epochs=6)
    assert len(sched.predictions) == 6
    later = [p for p in sched.predictions[2:] if p["predicted"] is not None]
    assert later, "after warm-up the choice must come from the fitted SCM"
    assert all(len(p["predicted"]) == 3 for p in later)
    assert all("realised" in p for p in sched.predictions[1:])
    # λ updates frozen (the ablation): λ stays at its initial values
    assert {t["lam_fair"] for t in sched.trajectory} == {1.0} and {t["lam_rob"] for t in sched.trajectory} == {1.0}
    labels = {p["allocation"] for p in sched.predictions}
    assert len(labels) >= 2
    # the record charged the allocation: epochs with the robustness term off spent no time on it
    for e, t in zip(r.epochs, sched.trajectory):
        if t["frac_rob"] == 0:
            assert e.term_time_s.get("rob", 0.0) == 0.0


def test_causal_module_off_is_a_random_allocation(compas_task):
    a = CausalScheduler(causal=False, seed=1)
    _fit(compas_task, a, rob=True, epochs=4)
    assert all(p["predicted"] is None for p in a.predictions)


def test_oracle_tries_allocations_without_touching_the_run(compas_task):
    allocs = [Allocation(0.0, 0.0), Allocation(1.0, 0.0)]
    oracle = OracleScheduler(allocations=allocs, lam_fair=2.0, alpha=1.0, kappa=0.0, gamma=0.0)
    r, _ = _fit(compas_task, oracle, epochs=3)
    assert r.usage["excluded_s"] > 0
    assert len(oracle.true_gains) == 3 and all(len(g) == 3 for g in oracle.true_gains)  # epoch + 2 candidates
    # with α=1 and no other weight the oracle picks the candidate with the larger true fairness gain
    for row, traj in zip(oracle.true_gains, oracle.trajectory):
        best = max(["fair 0 / rob 0", "fair 1 / rob 0"], key=lambda k: row[k][0])
        assert traj["frac_fair"] == (1.0 if best == "fair 1 / rob 0" else 0.0)


def test_trial_epoch_sees_the_next_batches_and_leaves_the_model_alone(compas_task):
    from trustkit.train import Callback

    class Probe(Callback):
        def on_epoch_start(self, state):
            if state.epoch == 2:
                before = [p.detach().clone() for p in state.model.parameters()]
                self.trial = state.trial_epoch(dict(state.weights))
                assert all(torch.equal(b, p) for b, p in zip(before, state.model.parameters()))

    probe = Probe()
    r = Trainer(model="mlp", epochs=2, callbacks=[probe], progress=False).fit(compas_task)
    # the trial trained epoch 2 exactly as the real run then did
    assert probe.trial["accuracy"] == pytest.approx(r.epochs[1].val["accuracy"])
    assert probe.trial["dp_gap"] == pytest.approx(r.epochs[1].val["dp_gap"])


# -- ATATS --------------------------------------------------------------------------------------
def test_rule_policy_steps_lambda_toward_the_target(compas_task):
    strict = RulePolicy(fair_target=0.0, step=0.5, acc_drop=1.0)
    _fit(compas_task, strict, epochs=4)
    assert [t["lam_fair"] for t in strict.trajectory] == [0.0, 0.5, 1.0, 1.5]
    lax = RulePolicy(fair_target=1.0, step=0.5, lam_fair=1.0)
    _fit(compas_task, lax, epochs=3)
    assert [t["lam_fair"] for t in lax.trajectory] == [1.0, 0.5, 0.0]


def test_pid_policy_uses_cooper_nupi_and_integrates_the_error():
    pid = PIDPolicy(fair_target=0.05, kp=0.0, ki=1.0, lr=1.0, lam_max=10.0)
    state = SimpleNamespace(history=[], weights={"fair": 0.0}, terms={"fair": None})
    pid.reset(state)
    lams = []
    for gap in [0.25, 0.15, 0.05, 0.0]:
        state.history.append(SimpleNamespace(val={"dp_gap": gap}))
        lams.append(pid.decide(state).lam_fair)
    # pure integral control: λ is the running sum of the errors, projected on λ >= 0
    assert lams == pytest.approx([0.2, 0.3, 0.3, 0.25])
    pi = PIDPolicy(fair_target=0.05, kp=1.0, ki=1.0, lr=1.0)
    pi.reset(state)
    state.history = [SimpleNamespace(val={"dp_gap": 0.25})]
    first = pi.decide(state).lam_fair
    state.history.append(SimpleNamespace(val={"dp_gap": 0.15}))
    second = pi.decide(state).lam_fair
    # cooper's nuPI with its SGD initialisation: the first step is Ki*e0 (no proportional part), then
    # the positional PI form λ_t = Ki*Σe + Kp*e_t
    assert first == pytest.approx(0.2) and second == pytest.approx(1.0 * (0.2 + 0.1) + 1.0 * 0.1)


def test_pid_policy_lowers_the_gap(compas_task):
    r0, _ = _fit(compas_task, StaticLambda(lam_fair=0.0), epochs=6)
    r1, _ = _fit(compas_task, PIDPolicy(fair_target=0.02), epochs=6)
    assert r1.test["dp_gap"] < r0.test["dp_gap"]


def test_bandit_learns_across_episodes_and_freezes(compas_task):
    bandit = BanditPolicy(arms=[BanditAction(0.0, 0.0), BanditAction(2.0, 0.0)], seed=0)
    _fit(compas_task, bandit, epochs=3)
    _fit(compas_task, bandit, epochs=3)
    assert bandit.episodes == 2
    A = bandit._A.copy()
    assert not np.allclose(A, np.stack([np.eye(A.shape[1])] * 2))
    bandit.learning = False
    _fit(compas_task, bandit, epochs=3)
    assert bandit.episodes == 2 and np.array_equal(A, bandit._A)


def test_bandit_prefers_the_arm_with_the_higher_reward():
    bandit = BanditPolicy(arms=[BanditAction(0.0, 0.0), BanditAction(1.0, 0.0)], ucb=0.0, seed=0)
    bandit.arms = bandit.arms
    d = 9
    bandit._A = np.stack([np.eye(d), np.eye(d)])
    bandit._b = np.zeros((2, d))
    x = np.ones(d)
    for _ in range(10):
        bandit._A[1] += np.outer(x, x)
        bandit._b[1] += 1.0 * x
        bandit._A[0] += np.outer(x, x)
        bandit._b[0] -= 1.0 * x
    state = SimpleNamespace(history=[], weights={"fair": 0.0}, budget=Budget(), epoch=1, max_epochs=3,
                            progress=lambda: 0.0, meter=None)
    bandit.context = lambda s: x
    assert bandit.decide(state).lam_fair == 1.0


# -- FairBatch, dual ascent ---------------------------------------------------------------------
def test_fairbatch_shifts_weight_to_the_group_with_the_larger_loss(compas_task):
    fb = FairBatch(alpha=0.1)
    r, trainer = _fit(compas_task, fb, epochs=2, fair=False)
    lam = torch.tensor(fb.history[0])
    assert torch.allclose(lam.sum(1), torch.ones(2))
    model = trainer.model_
    tr = compas_task.train
    # recompute the first update direction from the model after epoch 1 is not possible (the model moved
    # on); check the weights sent to the CE term instead: they are λ / p(g|y), averaging 1 under p
    w = trainer.terms[0].cell_weights
    y = torch.as_tensor(tr.y).long(); a = torch.as_tensor(tr.a).long()
    counts = torch.zeros(2, w.shape[1]).index_put_((y, a), torch.ones(len(y)), accumulate=True)
    p = counts / counts.sum(1, keepdim=True)
    assert torch.allclose((w * p).sum(1), torch.ones(2), atol=1e-5)
    assert model is not None


def test_dual_ascent_raises_the_multiplier_while_the_constraint_is_violated(compas_task):
    dual = DualAscent(epsilon=0.0, dual_lr=0.01)
    r, _ = _fit(compas_task, dual, epochs=3)
    lams = [e.weights["fair"] for e in r.epochs]  # λ_f at the end of each epoch (it moves every step)
    assert 0.0 < lams[0] < lams[1] < lams[2]
    loose = DualAscent(epsilon=1.0, dual_lr=0.5, lam_init=0.3)
    r, _ = _fit(compas_task, loose, epochs=2)
    assert r.epochs[-1].weights["fair"] == 0.0  # never violated: projected back to 0


# -- interface, errors -------------------------------------------------------------------------
def test_registry_and_unknown_scheduler():
    assert set(SCHEDULERS) >= {"static", "periodic", "dynamic", "causal", "oracle", "rule", "pid", "bandit",
                               "fairbatch", "dual"}
    with pytest.raises(ValueError, match="unknown scheduler 'ATATS'"):
        make_scheduler("ATATS")
    assert isinstance(make_scheduler("static", lam_fair=1.0), StaticLambda)


def test_schedulers_refuse_what_the_task_cannot_compute(digits_task, compas_task):
    t = Trainer(model="cnn", epochs=1, progress=False, callbacks=[PIDPolicy(fair_target=0.05)])
    with pytest.raises(ValueError, match="no sensitive attribute"):
        t.fit(digits_task)
    with pytest.raises(ValueError, match="add a fairness term"):
        Trainer(model="mlp", epochs=1, progress=False, callbacks=[DualAscent()]).fit(compas_task)
    rob_only = Trainer(model="mlp", epochs=1, progress=False, terms=[CrossEntropy(), AdversarialLoss.for_task(compas_task, eps=0.1)],
                       callbacks=[RulePolicy(fair_target=None, rob_target=0.5)])
    with pytest.raises(ValueError, match="robust_eval"):
        rob_only.fit(compas_task)
    with pytest.raises(ValueError, match="FairBatch"):
        Trainer(model="cnn", epochs=1, progress=False, callbacks=[FairBatch()]).fit(digits_task)
    with pytest.raises(ValueError, match="fairness must be one of"):
        DynamicLambda(fairness="dp")
    with pytest.raises(ValueError, match="at least one"):
        PIDPolicy(fair_target=None, rob_target=None)
    with pytest.raises(ValueError, match="fair_target"):
        RulePolicy(fair_target=1.5)
    with pytest.raises(TypeError, match="Callback"):
        Trainer(callbacks=[lambda s: None])


def _plain(task, scheduler, *, terms=(), metrics=None, robust_eval=None):
    return Trainer(model="mlp", epochs=1, progress=False, terms=[CrossEntropy(), *terms], metrics=metrics,
                   robust_eval=robust_eval, callbacks=[scheduler])


def test_schedulers_refuse_to_silently_do_nothing(compas_task):
    fair, rob = FairnessPenalty(surrogate="dp"), AdversarialLoss.for_task(compas_task, eps=0.1, steps=2)
    # a λ for a term the trainer does not have
    with pytest.raises(ValueError, match=r"lam_fair=2.*no 'fair' term.*FairnessPenalty"):
        _plain(compas_task, StaticLambda(lam_fair=2, lam_rob=3)).fit(compas_task)
    with pytest.raises(ValueError, match=r"lam_rob=3.*no 'rob' term.*AdversarialLoss"):
        _plain(compas_task, StaticLambda(lam_fair=2, lam_rob=3), terms=[fair]).fit(compas_task)
    with pytest.raises(ValueError, match=r"lam_rob=1.*AdversarialLoss"):
        _plain(compas_task, PeriodicFairness(lam_rob=1.0), terms=[fair]).fit(compas_task)
    # an adaptive rule with nothing to adapt
    with pytest.raises(ValueError, match="neither a fairness term.*nor an adversarial term"):
        _plain(compas_task, DynamicLambda()).fit(compas_task)
    # the validation signal it reads is not computed
    with pytest.raises(ValueError, match=r"DynamicLambda reads the validation metric 'dp_gap'.*add 'dp_gap' to the trainer's metrics"):
        _plain(compas_task, DynamicLambda(), terms=[fair], metrics=["accuracy"]).fit(compas_task)
    with pytest.raises(ValueError, match=r"DynamicLambda reads robust accuracy.*robust_eval=RobustEval"):
        _plain(compas_task, DynamicLambda(), terms=[rob]).fit(compas_task)
    with pytest.raises(ValueError, match=r"RulePolicy reads the validation metric 'dp_gap'"):
        _plain(compas_task, RulePolicy(fair_target=0.05), terms=[fair], metrics=["accuracy", "eo_gap"]).fit(compas_task)
    with pytest.raises(ValueError, match=r"CausalScheduler reads the validation metric 'eo_gap'"):
        _plain(compas_task, CausalScheduler(fairness="eo_gap"), terms=[fair], metrics=["accuracy", "dp_gap"]).fit(compas_task)
    with pytest.raises(ValueError, match=r"BanditPolicy reads robust accuracy"):
        _plain(compas_task, BanditPolicy(), terms=[rob]).fit(compas_task)
    with pytest.raises(ValueError, match=r"BanditPolicy sets lam_fair=1"):
        _plain(compas_task, BanditPolicy(arms=[BanditAction(0, 0), BanditAction(1, 0)])).fit(compas_task)
    # what works keeps working: the signal is there
    r = _plain(compas_task, DynamicLambda(), terms=[fair], metrics=["accuracy", "dp_gap"]).fit(compas_task)
    assert r.completed_epochs == 1


class _CellModel(torch.nn.Module):
    """Right and confident on group 0, wrong on group 1: group 1's cells carry the larger loss."""

    def forward(self, x):
        y, a = x[:, 0], x[:, 1]
        target = torch.where(a > 0.5, 1 - y, y)  # what the model predicts
        return torch.stack([(1 - target) * 3.0, target * 3.0], dim=1)


def test_fairbatch_moves_share_towards_the_cell_with_the_larger_loss():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=g)
    a = torch.randint(0, 2, (400,), generator=g)

    class Rows(SimpleNamespace):
        def __len__(self):
            return len(self.y)

    train = Rows(X=torch.stack([y, a], dim=1).float().numpy(), y=y.numpy(), a=a.numpy())
    state = SimpleNamespace(task=SimpleNamespace(train=train, n_classes=2, name="planted"), model=_CellModel())
    fb = FairBatch(alpha=0.1)
    fb.reset(state)
    before = fb._lam.clone()
    fb.observe(state, None)
    after = fb._lam
    # group 1 has the larger loss under both labels: its share rises, group 0's falls
    assert torch.all(after[:, 1] > before[:, 1]) and torch.all(after[:, 0] < before[:, 0])
    assert torch.allclose(after.sum(dim=1), torch.ones(2))
    w = fb.decide(state).cell_weights
    assert torch.all(w[:, 1] > 1.0) and torch.all(w[:, 0] < 1.0)


def test_action_applies_attack_settings(compas_task):
    from trustkit.train import Scheduler

    class Cheap(Scheduler):
        def decide(self, state):
            return Action(lam_rob=1.0, attack="fgsm_rs") if state.epoch > 1 else Action(lam_rob=1.0, steps=4)

    r, _ = _fit(compas_task, Cheap(), rob=True, fair=False, epochs=2)
    assert r.epochs[0].settings["rob_steps"] == 4 and r.epochs[0].settings["rob_attack"] == "pgd"
    assert r.epochs[1].settings["rob_attack"] == "fgsm_rs"
    assert r.usage["flops"] > 0 and math.isfinite(r.test["robust_accuracy"])


def test_a_scheduler_that_turns_on_pgd_late_still_respects_a_flop_budget(compas_task):
    from trustkit.train import Scheduler

    class Late(Scheduler):
        def decide(self, state):
            return Action(lam_rob=1.0 if state.epoch >= 2 else 0.0)

    r, _ = _fit(compas_task, Late(), rob=True, fair=False, epochs=10, budget=Budget(flops=4e8), steps=7)
    assert r.stopped_by == "flops" and r.usage["flops"] <= 4e8 and not r.over_budget
