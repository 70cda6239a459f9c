"""Schedulers and ATATS policies: sign conventions, the SCM, the oracle, cooper multipliers, errors."""

import math
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

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
    EpochRecord,
    FairBatch,
    FairnessPenalty,
    OracleScheduler,
    PeriodicFairness,
    PIDPolicy,
    RobustEval,
    RulePolicy,
    Scheduler,
    StaticLambda,
    Trainer,
    default_allocations,
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


# -- planted states: closed forms of the cost model, the objective, the SCM and the updates -------
def _state(terms=("fair", "rob"), *, steps=100, time_left=None, rob_steps=7, history=()):
    """A trainer state with only what the allocators read: terms, weights, fractions, budget left."""
    objs = {"ce": SimpleNamespace(cell_weights=None)}
    if "fair" in terms:
        objs["fair"] = SimpleNamespace()
    if "rob" in terms:
        objs["rob"] = SimpleNamespace(attack="pgd", steps=rob_steps)
    return SimpleNamespace(terms=objs, weights={k: 0.0 for k in terms}, fractions={k: 1.0 for k in terms},
                           history=list(history), epoch=len(history) + 1, steps_per_epoch=steps,
                           remaining=lambda: {"time_s": time_left}, meter=SimpleNamespace(paused=nullcontext))


def _record(epoch=1, *, val=None, steps=100, epoch_time_s=1.0, eval_time_s=0.0, callback_s=0.0,
            term_time_s=None, partial=False):
    return EpochRecord(epoch=epoch, steps=steps, train_loss=0.0, val=dict(val or {}), weights={}, time_s=0.0,
                       epoch_time_s=epoch_time_s, eval_time_s=eval_time_s, peak_memory_mb=0.0, flops=0,
                       partial=partial, term_time_s=dict(term_time_s or {}), callback_s=callback_s)


def _labels(allocs):
    return [a.label() for a in allocs]


def test_default_allocations_follow_the_terms_the_trainer_has():
    assert _labels(default_allocations(fair=False, rob=False)) == ["fair 0 / rob 0"]
    assert _labels(default_allocations(fair=True, rob=False)) == ["fair 0 / rob 0", "fair 1 / rob 0"]
    rob_only = ["fair 0 / rob 0", "fair 0 / rob 1 fgsm_rs", "fair 0 / rob 1 pgd-3", "fair 0 / rob 0.5 pgd-3"]
    assert _labels(default_allocations(fair=False, rob=True, steps=3)) == rob_only
    both = default_allocations(fair=True, rob=True, steps=3)
    assert _labels(both) == ["fair 0 / rob 0", "fair 1 / rob 0", *rob_only[1:],
                             "fair 1 / rob 1 fgsm_rs", "fair 1 / rob 1 pgd-3", "fair 1 / rob 0.5 pgd-3"]
    # a step with the robustness term on adds attack_iters passes: 1 for FGSM-RS, `steps` for PGD
    assert [a.attack_iters for a in both if a.rob] == [1, 3, 3, 1, 3, 3]


def test_allocator_keeps_only_the_candidates_the_trainer_terms_allow():
    allocs = [Allocation(0.0, 0.0), Allocation(1.0, 0.0), Allocation(0.0, 1.0, "fgsm_rs"),
              Allocation(0.5, 0.5, "pgd", 3)]
    sched = OracleScheduler(allocations=allocs)
    for terms, kept in [(("fair", "rob"), allocs), (("fair",), allocs[:2]), (("rob",), [allocs[0], allocs[2]]),
                        ((), allocs[:1])]:
        sched.reset(_state(terms))
        assert sched._cands == kept, terms
    # without explicit candidates: the defaults, with the PGD steps of the trainer's adversarial term
    sched = OracleScheduler()
    sched.reset(_state(("fair", "rob"), rob_steps=3))
    assert sched._cands == default_allocations(fair=True, rob=True, steps=3)
    sched.reset(_state(("rob",), rob_steps=5))
    assert sched._cands == default_allocations(fair=False, rob=True, steps=5)
    with pytest.raises(ValueError, match="no allocation is possible"):
        OracleScheduler(allocations=[Allocation(0.0, 1.0, "fgsm_rs")]).reset(_state(("fair",)))
    with pytest.raises(ValueError, match="Allocation.fair"):
        OracleScheduler(allocations=[Allocation(1.5, 0.0)])
    with pytest.raises(TypeError, match="allocations must be Allocation"):
        OracleScheduler(allocations=[(1.0, 0.0)])


def test_allocator_learns_the_clean_step_cost_from_the_epoch_time():
    sched = OracleScheduler()
    sched.reset(_state())
    # no allocation applied yet: nothing to learn from
    sched.observe(None, _record(epoch_time_s=5.0))
    assert sched._base is None and sched._c0 is None
    # epoch 1: 10 steps with PGD-3 on half of them; a PGD-3 step costs 1 + (3 + 1) clean steps
    sched._current = Allocation(0.0, 0.5, "pgd", 3)
    sched.observe(None, _record(steps=10, epoch_time_s=5.0, eval_time_s=1.0, callback_s=0.5))
    step_s = 5.0 - 1.0 - 0.5  # the epoch's time in steps: validation and callbacks excluded
    base1 = step_s / (10 * (1 + 0.5 * (3 + 1)))
    assert sched._base == pytest.approx(base1) and sched._c0 == pytest.approx(step_s)
    # epoch 2: FGSM-RS on every step; the estimate averages the old one and the new one
    sched._current = Allocation(1.0, 1.0, "fgsm_rs")
    sched.observe(None, _record(steps=8, epoch_time_s=4.0, eval_time_s=0.5, callback_s=0.25))
    base2 = (4.0 - 0.5 - 0.25) / (8 * (1 + 1.0 * (1 + 1)))
    assert sched._base == pytest.approx(0.5 * base1 + 0.5 * base2)
    assert sched._c0 == pytest.approx(step_s)  # the first epoch stays the unit of ΔC
    # an epoch whose steps took no measurable time cannot make the cost negative
    sched._base = None
    sched.observe(None, _record(steps=10, epoch_time_s=1.0, eval_time_s=2.0))
    assert 0 < sched._base <= 1e-9


def test_allocator_cost_model_closed_form():
    sched = OracleScheduler()
    sched.reset(_state())
    steps = 50
    assert sched.cost(Allocation(0.0, 1.0, "pgd", 3), steps) == {"total": 0.0, "fair": 0.0, "rob": 0.0}  # not learnt
    sched._base = base = 0.02
    for alloc in [Allocation(0.5, 0.5, "pgd", 3), Allocation(0.0, 1.0, "fgsm_rs"), Allocation(1.0, 0.0),
                  Allocation(0.25, 0.0), Allocation(0.0, 0.5, "pgd", 7)]:
        # a step with the robustness term on costs attack_iters + 2 clean steps (forward/backward of the
        # attack, then of the clean and the adversarial batch)
        iters = 1 if alloc.attack == "fgsm_rs" else alloc.steps
        t_rob = steps * alloc.rob * base * (iters + 2)
        total = steps * (1 - alloc.rob) * base + t_rob
        got = sched.cost(alloc, steps)
        assert got["total"] == pytest.approx(total) and got["rob"] == pytest.approx(t_rob), alloc
        assert got["fair"] == pytest.approx(alloc.fair * total), alloc
    assert sched.cost(Allocation(0.5, 0.5, "pgd", 3), steps)["total"] == pytest.approx(50 * 0.02 * (0.5 + 0.5 * 5))


def test_allocator_objective_and_gains_closed_form():
    sched = OracleScheduler(alpha=2.0, beta=3.0, kappa=0.5, gamma=0.25)
    sched.reset(_state())
    # before the first epoch's cost is known, ΔC is in seconds
    assert sched.objective(0.1, 0.2, -0.3, 2.0) == pytest.approx(2 * 0.1 + 3 * 0.2 + 0.5 * -0.3 - 0.25 * 2.0)
    sched._c0 = 4.0  # then in units of the first epoch's step time
    assert sched.objective(0.1, 0.2, -0.3, 2.0) == pytest.approx(2 * 0.1 + 3 * 0.2 + 0.5 * -0.3 - 0.25 * 2.0 / 4.0)
    assert sched.objective(0.0, 0.0, 0.0, 8.0) == pytest.approx(-0.5)
    # gains: positive = better (the gap fell, robust accuracy and accuracy rose)
    prev = {"dp_gap": 0.30, "eo_gap": 0.10, "robust_accuracy": 0.40, "accuracy": 0.70}
    cur = {"dp_gap": 0.25, "eo_gap": 0.16, "robust_accuracy": 0.50, "accuracy": 0.68}
    assert sched._gains(prev, cur) == pytest.approx((0.05, 0.10, -0.02))
    assert sched._gains(cur, prev) == pytest.approx((-0.05, -0.10, 0.02))
    eo = OracleScheduler(fairness="eo_gap")
    assert eo._gains(prev, cur) == pytest.approx((-0.06, 0.10, -0.02))
    # a signal the run does not measure contributes no gain
    assert sched._gains({"accuracy": 0.5}, {"accuracy": 0.6}) == pytest.approx((0.0, 0.0, 0.1))


def test_allocator_affordable_candidates_fit_the_time_left():
    allocs = [Allocation(0.0, 1.0, "fgsm_rs"), Allocation(0.0, 0.5, "pgd", 7), Allocation(0.0, 0.0),
              Allocation(0.0, 1.0, "pgd", 7)]  # predicted epoch seconds with base 0.01, 100 steps: 3, 5, 1, 9
    sched = OracleScheduler(allocations=allocs)
    sched.reset(_state(("rob",)))
    assert sched._affordable(_state(("rob",), time_left=-1.0)) == allocs  # cost not learnt yet: no filter
    sched._base = 0.01
    assert sched._affordable(_state(("rob",), time_left=None)) == allocs  # no time budget
    assert sched._affordable(_state(("rob",), time_left=5.0)) == allocs[:3]
    assert sched._affordable(_state(("rob",), time_left=2.0)) == [allocs[2]]
    assert sched._affordable(_state(("rob",), time_left=0.5)) == [allocs[2]]  # nothing fits: the cheapest


_PLANTED_ALLOCS = [Allocation(0.0, 0.0), Allocation(1.0, 0.0), Allocation(0.0, 1.0, "fgsm_rs"),
                   Allocation(0.0, 1.0, "pgd", 3), Allocation(1.0, 0.5, "pgd", 3)]
# outcome columns (ΔR_fair, ΔR_rob, Δacc); rows: intercept, C_fair, C_rob, C_total (seconds)
_PLANTED_COEF = np.array([[0.0, 0.0, 0.01], [0.02, 0.0, -0.005], [0.0, 0.03, -0.004], [0.0, -0.005, 0.002]])


def _planted_rows(n=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        x = np.array([1.0, rng.uniform(0, 3), rng.uniform(0, 5), rng.uniform(1, 6)])
        rows.append((x, x @ _PLANTED_COEF))
    return rows


def _planted_best(base, steps, *, alpha, beta, kappa, gamma, c0):
    """Independent closed form: each candidate's predicted costs, outcomes and objective."""
    out = {}
    for a in _PLANTED_ALLOCS:
        iters = 1 if a.attack == "fgsm_rs" else a.steps
        t_rob = a.rob * steps * base * (iters + 2)
        total = (1 - a.rob) * steps * base + t_rob
        pred = np.array([1.0, a.fair * total, t_rob, total]) @ _PLANTED_COEF
        out[a] = (alpha * pred[0] + beta * pred[1] + kappa * pred[2] - gamma * total / c0, pred)
    return out


def test_causal_scheduler_picks_the_best_predicted_allocation_on_a_planted_scm():
    kw = {"alpha": 1.0, "beta": 1.0, "kappa": 0.5, "gamma": 0.02}
    sched = CausalScheduler(**kw, warmup=1, explore=0.0, ridge=0.0, window=6, allocations=_PLANTED_ALLOCS)
    state = _state()
    sched.reset(state)
    sched._base, sched._c0 = 0.01, 1.0
    sched._rows = _planted_rows()
    scores = _planted_best(0.01, 100, **kw, c0=1.0)
    best = max(scores, key=lambda a: scores[a][0])
    worst = min(scores, key=lambda a: scores[a][0])
    assert best == Allocation(1.0, 0.5, "pgd", 3) and worst == Allocation(0.0, 0.0)  # the plant is not degenerate
    # decision 1 is the warm-up (the most expensive candidate), decision 2 the SCM's argmax
    first = sched.decide(state)
    assert sched.predictions[0] == {"epoch": 1, "allocation": "fair 0 / rob 1 pgd-3", "predicted": None}
    assert first.fractions == {"fair": 0.0, "rob": 1.0} and first.attack == "pgd" and first.steps == 3
    second = sched.decide(state)
    assert sched.predictions[1]["allocation"] == best.label()
    assert np.allclose(sched.predictions[1]["predicted"], scores[best][1], atol=1e-9)
    assert second.fractions == {"fair": 1.0, "rob": 0.5} and second.attack == "pgd" and second.steps == 3
    assert (second.lam_fair, second.lam_rob) == (1.0, 1.0)
    # a costlier ΔC moves the choice to a cheaper candidate, by the same closed form
    dear = CausalScheduler(**{**kw, "gamma": 0.2}, warmup=1, explore=0.0, ridge=0.0, allocations=_PLANTED_ALLOCS)
    dear.reset(state)
    dear._base, dear._c0, dear._rows = 0.01, 1.0, _planted_rows()
    scores = _planted_best(0.01, 100, **{**kw, "gamma": 0.2}, c0=1.0)
    dear.predictions = [{}]  # warm-up done
    dear.decide(state)
    assert dear.predictions[-1]["allocation"] == max(scores, key=lambda a: scores[a][0]).label() != best.label()


def test_causal_scheduler_without_a_model_explores_at_random():
    state = _state()
    # after the warm-up but with fewer than two observed epochs: no model yet, a random candidate
    sched = CausalScheduler(warmup=1, explore=0.0, allocations=_PLANTED_ALLOCS, seed=3)
    sched.reset(state)
    sched._base, sched._c0 = 0.01, 1.0
    sched._rows = _planted_rows(1)
    sched.predictions = [{}]
    sched.decide(state)
    assert sched.predictions[-1]["predicted"] is None
    assert sched.predictions[-1]["allocation"] in _labels(_PLANTED_ALLOCS)
    # explore=1: always a random candidate, never the model's
    always = CausalScheduler(warmup=1, explore=1.0, allocations=_PLANTED_ALLOCS, seed=0)
    always.reset(state)
    always._base, always._c0, always._rows = 0.01, 1.0, _planted_rows()
    always.predictions = [{}]
    for _ in range(6):
        always.decide(state)
    assert all(p["predicted"] is None for p in always.predictions[1:])
    assert len({p["allocation"] for p in always.predictions[1:]}) >= 2
    # the causal module on is the default
    assert CausalScheduler().causal is True


def test_causal_warmup_tries_the_most_expensive_candidates_first_then_spreads():
    state = _state(rob_steps=7)
    # order by cost: a robust step weighs attack_iters + 2, the fairness term 1
    full = CausalScheduler(warmup=8)
    full.reset(state)
    assert _labels(full._warm) == ["fair 1 / rob 1 pgd-7", "fair 0 / rob 1 pgd-7", "fair 1 / rob 0.5 pgd-7",
                                   "fair 0 / rob 0.5 pgd-7", "fair 1 / rob 1 fgsm_rs", "fair 0 / rob 1 fgsm_rs",
                                   "fair 1 / rob 0", "fair 0 / rob 0"]
    three = CausalScheduler(warmup=3)  # every (8 // 3)-th of that order
    three.reset(state)
    assert three._warm == full._warm[0:6:2]
    # before the step cost is known, the warm-up candidates are cycled
    for i in range(4):
        three.decide(state)
    assert [p["allocation"] for p in three.predictions] == _labels(three._warm + three._warm[:1])
    assert all(p["predicted"] is None for p in three.predictions)
    # a warm-up candidate that does not fit the time left is replaced by the first one that does
    tight = _state(rob_steps=7, time_left=2.0)
    two = CausalScheduler(warmup=2)
    two.reset(tight)
    two._base = 0.01
    two.decide(tight)
    assert two.predictions[0]["allocation"] == "fair 0 / rob 0"


def test_causal_fit_is_ridge_on_max_scaled_costs_with_a_free_intercept():
    rng = np.random.default_rng(1)
    rows = [(np.array([1.0, rng.uniform(0, 2), rng.uniform(0, 30), rng.uniform(1, 40)]), rng.normal(size=3))
            for _ in range(9)]
    sched = CausalScheduler(window=5, ridge=0.7)
    sched._rows = rows
    X = np.stack([r[0] for r in rows[-5:]])  # only the window's last epochs
    Y = np.stack([r[1] for r in rows[-5:]])
    scale = np.abs(X).max(axis=0)
    ref = Ridge(alpha=0.7, fit_intercept=True).fit(X[:, 1:] / scale[1:], Y)  # the intercept is not penalised
    expected = np.vstack([ref.intercept_[None, :], ref.coef_.T / scale[1:, None]])
    assert np.allclose(sched.fit(), expected, rtol=1e-6, atol=1e-9)
    # the penalty matters here: least squares gives other coefficients
    ols = Ridge(alpha=1e-12, fit_intercept=True).fit(X[:, 1:] / scale[1:], Y)
    assert not np.allclose(ref.coef_, ols.coef_, atol=1e-3)
    # with ridge -> 0, the planted coefficients come back exactly from a window of noise-free rows
    exact = CausalScheduler(window=6, ridge=0.0)
    exact._rows = _planted_rows(10, seed=2)
    assert np.allclose(exact.fit(), _PLANTED_COEF, atol=1e-10)
    # fewer than two epochs: no model
    exact._rows = exact._rows[:1]
    assert exact.fit() is None
    # two epochs, no ridge: fewer epochs than coefficients, the minimum-norm fit through both
    exact._rows = two = _planted_rows(2)
    X = np.stack([r[0] for r in two])
    scale = np.abs(X).max(axis=0)
    coef = exact.fit()
    assert np.allclose(X @ coef, np.stack([r[1] for r in two]), atol=1e-12)
    assert np.allclose(coef, np.linalg.pinv(X / scale) @ np.stack([r[1] for r in two]) / scale[:, None], atol=1e-10)


def test_causal_scheduler_without_ridge_decides_from_its_first_two_epochs():
    state = _state()
    sched = CausalScheduler(ridge=0.0, warmup=1, explore=0.0, allocations=_PLANTED_ALLOCS)
    sched.reset(state)
    sched._base, sched._c0, sched._rows = 0.01, 1.0, _planted_rows(2)
    sched.predictions = [{}]  # warm-up done
    sched.decide(state)
    assert len(sched.predictions[-1]["predicted"]) == 3


def test_causal_observe_adds_the_epoch_as_a_row_of_the_scm():
    sched = CausalScheduler(allocations=_PLANTED_ALLOCS)
    state = _state()
    sched.reset(state)
    vals = [{"dp_gap": 0.30, "robust_accuracy": 0.20, "accuracy": 0.60},
            {"dp_gap": 0.25, "robust_accuracy": 0.30, "accuracy": 0.65},
            {"dp_gap": 0.18, "robust_accuracy": 0.45, "accuracy": 0.64}]
    rec = _record(3, val=vals[2], epoch_time_s=6.0, eval_time_s=1.5, callback_s=0.5,
                  term_time_s={"fair": 1.25, "rob": 2.5})
    state.history = [_record(1, val=vals[0]), _record(2, val=vals[1]), rec]
    sched.predictions = [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
    sched._current = Allocation(1.0, 0.5, "pgd", 3)
    sched.observe(state, rec)
    x, g = sched._rows[-1]
    assert np.allclose(x, [1.0, 1.25, 2.5, 6.0 - 1.5 - 0.5])
    assert np.allclose(g, [0.25 - 0.18, 0.45 - 0.30, 0.64 - 0.65])  # the last two epochs
    assert sched.predictions[-1]["realised"] == pytest.approx(list(g))
    assert "realised" not in sched.predictions[1]
    assert sched._base is not None  # and the step cost was learnt
    # a partial epoch, a first epoch, or no allocation applied: no row
    for hist, r, cur in [(state.history, _record(3, val=vals[2], partial=True), sched._current),
                         (state.history[:1], state.history[0], sched._current), (state.history, rec, None)]:
        s = CausalScheduler(allocations=_PLANTED_ALLOCS)
        s.reset(state)
        s._current = cur
        s.observe(SimpleNamespace(history=hist), r)
        assert s._rows == []


def test_oracle_picks_the_candidate_with_the_best_true_objective():
    allocs = [Allocation(0.0, 0.0), Allocation(0.0, 1.0, "fgsm_rs"), Allocation(0.0, 1.0, "pgd", 3)]
    gamma = 0.1
    # true robust-accuracy gain of one epoch under each candidate; before the cost is learnt ΔC is
    # rob·(attack_iters + 1), so FGSM-RS (ΔC = 2) is worth 0.1 - 0.2 < 0 and PGD-3 (ΔC = 4) 0.3 - 0.4 < 0
    gain = {"fair 0 / rob 0": 0.0, "fair 0 / rob 1 fgsm_rs": gamma, "fair 0 / rob 1 pgd-3": 3 * gamma}
    vals = [{"accuracy": 0.6, "robust_accuracy": 0.1}, {"accuracy": 0.7, "robust_accuracy": 0.3},
            {"accuracy": 0.8, "robust_accuracy": 0.2}]
    state = _state(("rob",), history=[_record(i + 1, val=v) for i, v in enumerate(vals)])
    seen = []

    def trial_epoch(weights, *, fractions, settings):
        seen.append((dict(weights), dict(fractions), dict(settings)))
        rob = settings.get("rob", {"attack": "pgd", "steps": 7})
        a = next(c for c in allocs if (c.rob, c.attack, c.steps) == (fractions["rob"], rob["attack"], rob["steps"]))
        return {"accuracy": 0.8, "robust_accuracy": 0.2 + gain[a.label()]}

    state.trial_epoch = trial_epoch
    oracle = OracleScheduler(allocations=allocs, alpha=0.0, beta=1.0, kappa=1.0, gamma=gamma, lam_rob=2.0)
    oracle.reset(state)
    action = oracle.decide(state)
    assert action.fractions == {"fair": 0.0, "rob": 0.0} and action.attack is None and action.lam_rob == 2.0
    # gains are measured against the last epoch's validation metrics
    assert oracle.true_gains[0] == {"epoch": 4, **{k: pytest.approx([0.0, v, 0.0]) for k, v in gain.items()}}
    assert all(w["rob"] == 2.0 for w, _, _ in seen)
    # once the step cost is known ΔC comes from the cost model: PGD-3 costs 5 clean steps' time per step
    oracle._base, oracle._c0 = 0.01, 10.0  # ΔC: no term 0.1, FGSM-RS 0.3, PGD-3 0.5 (first-epoch units)
    action = oracle.decide(state)
    assert action.fractions == {"fair": 0.0, "rob": 1.0} and action.attack == "pgd" and action.steps == 3


# -- the base scheduler: applying an action, the trajectory, the decision time -------------------
def test_apply_sets_only_what_the_trainer_has():
    w = torch.ones(2, 2)
    state = _state(("fair",))
    Scheduler.apply(state, Action(lam_fair=2.0, lam_rob=3.0, fractions={"fair": 0.5, "rob": 0.25}, cell_weights=w))
    assert state.weights == {"fair": 2.0} and state.fractions == {"fair": 0.5}
    assert state.terms["ce"].cell_weights is w and "rob" not in state.terms
    # None leaves a setting as it is
    Scheduler.apply(state, Action())
    assert state.weights == {"fair": 2.0} and state.fractions == {"fair": 0.5} and state.terms["ce"].cell_weights is w
    rob = _state(("rob",), rob_steps=7)
    Scheduler.apply(rob, Action(lam_fair=1.0, lam_rob=3.0, attack="fgsm_rs", steps=2))
    assert rob.weights == {"rob": 3.0} and (rob.terms["rob"].attack, rob.terms["rob"].steps) == ("fgsm_rs", 2)
    Scheduler.apply(rob, Action(lam_rob=None, attack=None, steps=None))
    assert rob.weights == {"rob": 3.0} and (rob.terms["rob"].attack, rob.terms["rob"].steps) == ("fgsm_rs", 2)
    no_ce = SimpleNamespace(weights={}, fractions={}, terms={})
    Scheduler.apply(no_ce, Action(cell_weights=w, attack="pgd", steps=3))  # nothing to reweight or attack with
    assert no_ce.terms == {}


def test_scheduler_records_its_trajectory_and_its_own_time():
    class Probe(Scheduler):
        def decide(self, state):
            state.meter.elapsed_s += 0.25
            return Action(lam_fair=1.5, lam_rob=2.0, fractions={"fair": 0.5, "rob": 0.25})

        def observe(self, state, record):
            state.meter.elapsed_s += 0.125

    probe = Probe()
    state = _state(rob_steps=3)
    state.meter = SimpleNamespace(elapsed_s=10.0)
    probe.on_epoch_start(state)
    assert probe.decide_s == pytest.approx(0.25)
    probe.on_epoch_end(state, _record(1))
    assert probe.decide_s == pytest.approx(0.375)
    assert probe.trajectory[-1] == {"epoch": 1, "lam_fair": 1.5, "lam_rob": 2.0, "frac_fair": 0.5, "frac_rob": 0.25,
                                    "attack": "pgd-3"}
    # a term the trainer lacks has share 0; FGSM-RS has no step count; no adversarial term, no attack
    fgsm = _state(("rob",))
    fgsm.terms["rob"].attack = "fgsm_rs"
    fgsm.fractions = {}
    fgsm.meter = SimpleNamespace(elapsed_s=0.0)
    probe.on_epoch_end(fgsm, _record(2))
    assert probe.trajectory[-1] == {"epoch": 2, "lam_fair": 0.0, "lam_rob": 0.0, "frac_fair": 0.0, "frac_rob": 1.0,
                                    "attack": "fgsm_rs"}
    plain = _state(("fair",))
    plain.meter = SimpleNamespace(elapsed_s=0.0)
    probe.on_epoch_end(plain, _record(3))
    assert probe.trajectory[-1]["attack"] is None and probe.trajectory[-1]["frac_rob"] == 0.0


# -- DynamicLambda on a planted history ----------------------------------------------------------
def test_dynamic_lambda_steps_from_the_last_two_epochs_of_a_planted_history():
    times = [2.0, 3.0, 1.0, 4.0]
    gaps = [0.30, 0.25, 0.28, 0.20]
    robs = [0.40, 0.42, 0.50, 0.45]
    rule = DynamicLambda(rho_fair=2.0, rho_rob=3.0, lam_fair=1.0, lam_rob=1.0, lam_max=10.0)
    state = _state(("fair", "rob"))
    rule.reset(state)
    lam_f, lam_r = 1.0, 1.0
    for t in range(4):
        state.history.append(_record(t + 1, val={"dp_gap": gaps[t], "robust_accuracy": robs[t]},
                                     epoch_time_s=times[t]))
        if t >= 1:  # ΔC in units of the first epoch's time
            lam_f += 2.0 * (gaps[t - 1] - gaps[t]) / (times[t] / times[0])
            lam_r += 3.0 * (robs[t] - robs[t - 1]) / (times[t] / times[0])
        got = rule.step_lambdas(state)
        assert got == pytest.approx({"fair": lam_f, "rob": lam_r}), t
    # a term the trainer lacks keeps its λ, even when its signal is measured
    fair_only = _state(("fair",))
    rule.reset(fair_only)
    fair_only.history = list(state.history[:3])
    assert rule.step_lambdas(fair_only) == pytest.approx(
        {"fair": 1.0 + 2.0 * (gaps[1] - gaps[2]) / (times[2] / times[0]), "rob": 1.0})
    rob_only = _state(("rob",))
    rule.reset(rob_only)
    rob_only.history = list(state.history[:3])
    assert rule.step_lambdas(rob_only) == pytest.approx(
        {"fair": 1.0, "rob": 1.0 + 3.0 * (robs[2] - robs[1]) / (times[2] / times[0])})
    # an epoch that did not measure a signal leaves its λ as it is
    for missing in ("dp_gap", "robust_accuracy"):
        unmeasured = _state(("fair", "rob"))
        rule.reset(unmeasured)
        unmeasured.history = list(state.history[:2]) + [
            _record(3, val={k: v for k, v in state.history[2].val.items() if k != missing}, epoch_time_s=1.0)]
        got = rule.step_lambdas(unmeasured)
        assert got["fair" if missing == "dp_gap" else "rob"] == 1.0


# -- FairBatch on planted per-cell losses ---------------------------------------------------------
class _FlagModel(torch.nn.Module):
    """Predicts the label (column 0) with confidence ``scale``, wrongly on the rows flagged in column 2."""

    def __init__(self, scale=3.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        y, wrong = x[:, 0], x[:, 2]
        target = torch.where(wrong > 0.5, 1 - y, y)
        return torch.stack([(1 - target) * self.scale, target * self.scale], dim=1)


def _fairbatch_state(y, a, wrong, scale=3.0):
    class Rows(SimpleNamespace):
        def __len__(self):
            return len(self.y)

    X = torch.stack([y, a, wrong], dim=1).float().numpy()
    train = Rows(X=X, y=y.numpy(), a=a.numpy())
    return SimpleNamespace(task=SimpleNamespace(train=train, n_classes=2, name="planted"), model=_FlagModel(scale))


def test_fairbatch_update_closed_form_per_label():
    g = torch.Generator().manual_seed(1)
    n, head = 400, 100
    y = torch.randint(0, 2, (n,), generator=g)
    a = torch.randint(0, 2, (n,), generator=g)
    # in the rows FairBatch reads (the first max_rows): label 0 is wrong on group 0, label 1 on group 1;
    # the rows after are the other way round and must not count
    wrong = torch.where(y == 0, a == 0, a == 1).long()
    wrong[head:] = 1 - wrong[head:]
    state = _fairbatch_state(y, a, wrong)
    fb = FairBatch(alpha=0.1, max_rows=head)
    fb.reset(state)
    counts = np.zeros((2, 2))
    np.add.at(counts, (y.numpy(), a.numpy()), 1.0)
    p = counts / counts.sum(1, keepdims=True)  # p(g | y) over the whole training split
    assert np.allclose(fb._lam.numpy(), p) and np.allclose(fb.decide(state).cell_weights.numpy(), 1.0)
    fb.observe(state, None)
    # λ_y ← normalise(λ_y + α·sign(ℓ_{y,g} − mean_g ℓ_{y,g})): the wrong group's share rises by α
    expected = np.stack([p[0] + 0.1 * np.array([1.0, -1.0]), p[1] + 0.1 * np.array([-1.0, 1.0])])
    assert np.allclose(fb._lam.numpy(), expected, atol=1e-6)
    assert len(fb.history) == 1 and np.allclose(fb.history[0], expected, atol=1e-6)
    assert np.allclose(fb.decide(state).cell_weights.numpy(), expected / p, atol=1e-5)
    # three groups: one cell above the label's mean loss and two below; the step no longer sums to
    # 0, so λ_y is renormalised over the groups
    a3 = torch.randint(0, 3, (n,), generator=g)
    wrong3 = torch.where(y == 0, a3 == 0, a3 == 2).long()
    three = FairBatch(alpha=0.1)
    state3 = _fairbatch_state(y, a3, wrong3)
    three.reset(state3)
    counts3 = np.zeros((2, 3))
    np.add.at(counts3, (y.numpy(), a3.numpy()), 1.0)
    p3 = counts3 / counts3.sum(1, keepdims=True)
    three.observe(state3, None)
    raw = np.stack([p3[0] + 0.1 * np.array([1.0, -1.0, -1.0]), p3[1] + 0.1 * np.array([-1.0, -1.0, 1.0])])
    assert np.allclose(three._lam.numpy(), raw / raw.sum(1, keepdims=True), atol=1e-6)
    # all cells with the same loss: nothing moves
    right = _fairbatch_state(y, a, torch.zeros(n, dtype=torch.long), scale=100.0)
    even = FairBatch(alpha=0.1)
    even.reset(right)
    before = even._lam.clone()
    even.observe(right, None)
    assert torch.equal(even._lam, before)
