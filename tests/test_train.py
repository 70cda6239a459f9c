"""The Trainer: learning, reproducibility, budgets honoured, callbacks, terms, errors."""

import json
import time

import pytest
import torch

from trustkit._validation import resolve_device
from trustkit.budget import Budget
from trustkit.data import load_german
from trustkit.train import AdversarialLoss, Callback, CrossEntropy, FairnessPenalty, RobustEval, Trainer

VOLATILE = {"time_s", "epoch_time_s", "eval_time_s", "peak_memory_mb", "peak_rss_mb", "term_time_s", "callback_s",
            "excluded_s", "max_step_s", "report_s", "wall_s"}


@pytest.fixture(scope="module")
def german():
    return load_german(seed=0)


def _strip(d):
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in VOLATILE and k != "budget_fraction"}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def test_erm_learns_compas(compas_task):
    r = Trainer(model="mlp", epochs=10, seed=0, progress=False).fit(compas_task)
    assert r.test["accuracy"] > 0.62
    assert r.epochs[-1].train_loss < r.epochs[0].train_loss
    assert r.stopped_by == "epochs" and r.completed_epochs == 10
    assert 0.05 < r.test["positive_rate"] < 0.95


def test_same_config_and_seed_give_identical_records(compas_task):
    kw = dict(model="mlp", epochs=3, seed=7, progress=False, budget=Budget(flops=1e12))
    a = Trainer(**kw).fit(compas_task).to_dict()
    b = Trainer(**kw).fit(compas_task).to_dict()
    assert _strip(a) == _strip(b)
    c = Trainer(**{**kw, "seed": 8}).fit(compas_task).to_dict()
    assert _strip(a)["test"] != _strip(c)["test"]


def test_records_serialise_to_json(german):
    r = Trainer(epochs=2, progress=False).fit(german)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["completed_epochs"] == 2 and len(d["epochs"]) == 2
    frame = r.epochs_frame()
    assert {"epoch", "val_accuracy", "val_dp_gap", "w_ce", "flops"} <= set(frame.columns)
    assert r.summary()["task"] == "german"


def test_flops_budget_is_never_exceeded(compas_task):
    full = Trainer(epochs=2, progress=False).fit(compas_task)
    limit = full.usage["flops"] * 0.6
    r = Trainer(epochs=2, progress=False, budget=Budget(flops=limit)).fit(compas_task)
    assert r.stopped_by == "flops"
    assert 0 < r.usage["flops"] <= limit
    assert r.budget_fraction["flops"] <= 1.0
    assert r.epochs[-1].partial
    assert not r.over_budget


def test_time_budget_is_honoured(compas_task):
    r = Trainer(epochs=10_000, batch_size=32, progress=False, budget=Budget(time_s=1.0)).fit(compas_task)
    assert r.stopped_by == "time_s"
    assert r.usage["time_s"] <= 1.0 * 1.15  # predicted step + validation time; noise allowed
    assert len(r.epochs) >= 1 and r.epochs[0].steps > 0
    assert "time_s" in r.message


# a robust evaluation that costs about as much as the budget (PGD-100 on 9,000 validation points)
COSTLY_EVAL = RobustEval(eps=0.1, val_steps=100, val_n=9000, test_steps=5)


def _timed_fit(trainer, task):
    t0 = time.perf_counter()
    r = trainer.fit(task)
    return r, time.perf_counter() - t0


@pytest.mark.parametrize("robust", [None, COSTLY_EVAL], ids=["plain", "costly-robust-eval"])
@pytest.mark.parametrize("seconds", [1.0, 3.0])
def test_time_budget_covers_everything_but_the_test_report(adult_task, seconds, robust):
    """Measured from outside: fit()'s whole wall time, less the final test report, stays within the budget.

    A machine shared with other work can stall a process for a few hundred milliseconds, so a run
    that misses the bound gets one more try; a systematic overrun (time the clock leaves out) fails both.
    """
    trainer = Trainer(model="mlp", epochs=10_000, budget=Budget(time_s=seconds), robust_eval=robust, progress=False)
    misses = []
    for _ in range(2):
        r, outside = _timed_fit(trainer, adult_task)
        u = r.usage
        assert u["time_s"] >= 0 and u["report_s"] > 0 and u["excluded_s"] == 0
        assert u["time_s"] <= u["wall_s"] <= outside
        assert ("time_s" in r.over_budget) == (u["time_s"] > seconds)
        assert r.stopped_by == "time_s"
        # the bound, and the record telling the truth: budgeted time = wall time less the report
        if outside - u["report_s"] <= 1.05 * seconds + u["max_step_s"] and outside - u["report_s"] - u["time_s"] < 0.05:
            return
        misses.append({"outside_s": outside, **u})
    pytest.fail(f"fit() overran its {seconds} s budget twice, measured from outside: {misses}")


def test_a_validation_that_cannot_fit_is_refused_before_training(adult_task):
    r = Trainer(model="mlp", epochs=10, budget=Budget(time_s=0.5), robust_eval=COSTLY_EVAL, progress=False).fit(adult_task)
    assert r.epochs == [] and r.stopped_by == "time_s"
    assert "cannot hold a single validation" in r.message and "val_steps" in r.message
    assert r.usage["time_s"] < 0.5 and not r.over_budget


def test_budget_too_small_for_one_step_returns_a_record(german):
    r = Trainer(epochs=5, progress=False, budget=Budget(flops=10)).fit(german)
    assert r.epochs == [] and r.usage["flops"] == 0
    assert "too small for a single training step" in r.message
    assert set(r.test) >= {"accuracy", "dp_gap"}


def test_max_params_is_checked_before_training(german):
    with pytest.raises(ValueError, match=r"has 3,842 parameters, more than Budget.max_params=1,000"):
        Trainer(epochs=1, progress=False, budget=Budget(max_params=1000)).fit(german)


def test_memory_cap_below_static_footprint_is_an_error(german):
    with pytest.raises(ValueError, match="Budget.memory_mb=0.001 is below the estimated footprint of one training step"):
        Trainer(epochs=1, progress=False, budget=Budget(memory_mb=0.001)).fit(german)


def test_memory_is_measured(digits_task):
    r = Trainer(model="cnn", epochs=1, progress=False, budget=Budget(memory_mb=4096)).fit(digits_task)
    assert r.usage["peak_memory_mb"] > 0
    assert r.budget_fraction["memory_mb"] < 1


class _Halve(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, state, record):
        self.seen.append(record.epoch)
        state.weights["ce"] *= 0.5
        if record.epoch == 3:
            state.stop = True


def test_callbacks_change_weights_and_stop(german):
    cb = _Halve()
    r = Trainer(epochs=10, progress=False, callbacks=[cb]).fit(german)
    assert cb.seen == [1, 2, 3]
    assert [e.weights["ce"] for e in r.epochs] == [1.0, 0.5, 0.25]
    assert r.stopped_by == "callback"


class _Exploding:
    name = "boom"

    def __call__(self, model, batch, logits):
        raise AssertionError("a term with weight 0 must not be computed")


class _Logged:
    name = "l2"

    def __init__(self):
        self.calls = 0

    def __call__(self, model, batch, logits):
        self.calls += 1
        return sum((p ** 2).sum() for p in model.parameters())


def test_loss_is_a_weighted_sum_of_terms(german):
    l2 = _Logged()
    r = Trainer(terms=[CrossEntropy(), _Exploding(), l2], weights={"boom": 0.0, "l2": 1e-3},
                epochs=1, progress=False).fit(german)
    assert l2.calls > 0 and r.completed_epochs == 1
    assert r.epochs[0].weights == {"ce": 1.0, "boom": 0.0, "l2": 1e-3}


def test_terms_that_cannot_run_on_meta_are_counted_on_the_real_step(german):
    class NeedsData:
        name = "data_dependent"

        def __call__(self, model, batch, logits):
            if logits.device.type == "meta":
                raise RuntimeError("meta tensors have no data")
            return logits.abs().mean()

    r = Trainer(terms=[CrossEntropy(), NeedsData()], epochs=1, progress=False).fit(german)
    plain = Trainer(epochs=1, progress=False).fit(german)
    assert r.usage["flops"] == plain.usage["flops"] > 0  # abs().mean() adds no matmul FLOPs


def test_custom_model_factory(german):
    def tiny(task, seed):
        return torch.nn.Linear(task.input_shape[0], 2)

    r = Trainer(model=tiny, epochs=2, progress=False).fit(german)
    assert r.usage["params"] == german.input_shape[0] * 2 + 2
    assert r.config["model"] == "tiny"


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"optimizer": "adamm"}, ValueError, "unknown optimizer 'adamm'.*Did you mean 'adam'"),
        ({"epochs": 0}, ValueError, r"epochs must be an integer in \[1, inf\]"),
        ({"lr": -1.0}, ValueError, "lr must be a number > 0"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
        ({"weights": {"ce": -1.0}}, ValueError, "weight of term 'ce' must be a finite number >= 0"),
        ({"weights": {"fair": 1.0}}, ValueError, "unknown term 'fair'"),
        ({"budget": {"time_s": 3}}, TypeError, "budget must be a trustkit.budget.Budget"),
    ],
)
def test_trainer_argument_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        Trainer(progress=False, **kwargs)


def test_unknown_metric_and_fairness_without_sensitive(german, digits_task):
    with pytest.raises(ValueError, match="unknown metric"):
        Trainer(metrics=["accuracy", "fairness"], epochs=1, progress=False).fit(german)
    from trustkit.data import german_frame, make_tabular_task

    no_groups = make_tabular_task(german_frame(), label="credit", sensitive=None, positive_label="good",
                                  name="german", card="german")
    with pytest.raises(ValueError, match="metric 'dp_gap' needs a sensitive attribute"):
        Trainer(metrics=["dp_gap"], epochs=1, progress=False).fit(no_groups)
    with pytest.raises(ValueError, match="metric 'dp_gap' needs a binary task"):
        Trainer(model="cnn", metrics=["dp_gap"], epochs=1, progress=False).fit(digits_task)
    with pytest.raises(TypeError, match="task must be a trustkit.data.Task"):
        Trainer(epochs=1, progress=False).fit("adult")


def test_estimated_memory_grows_with_batch_size_and_is_deterministic(digits_task):
    small = Trainer(model="cnn", epochs=1, batch_size=16, progress=False, budget=Budget(flops=1)).fit(digits_task)
    large = Trainer(model="cnn", epochs=1, batch_size=256, progress=False, budget=Budget(flops=1)).fit(digits_task)
    again = Trainer(model="cnn", epochs=1, batch_size=256, progress=False, budget=Budget(flops=1)).fit(digits_task)
    assert large.usage["est_memory_mb"] > small.usage["est_memory_mb"] > 4 * 4 * small.usage["params"] / 2**20
    assert large.usage["est_memory_mb"] == again.usage["est_memory_mb"]
    with pytest.raises(ValueError, match="lower batch_size"):
        Trainer(model="cnn", epochs=1, batch_size=256, progress=False,
                budget=Budget(memory_mb=small.usage["est_memory_mb"] * 1.01)).fit(digits_task)


# -- device ------------------------------------------------------------------------------------


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("device", [None, "cpu", torch.device("cpu"), "auto"])
def test_resolve_device_accepts_the_cpu_and_auto(monkeypatch, device):
    _no_cuda(monkeypatch)
    assert resolve_device(device) == torch.device("cpu")


def test_resolve_device_picks_and_accepts_cuda_when_torch_reports_it(monkeypatch):
    # only torch.cuda.is_available is patched: resolving a name touches no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(torch.device("cuda")) == torch.device("cuda")
    assert Trainer(device="cuda", progress=False).device == torch.device("cuda")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_resolve_device_refuses_cuda_when_unavailable(monkeypatch, device):
    _no_cuda(monkeypatch)
    pattern = (r"device='cuda(:0)?' is not available on this machine \(torch.cuda.is_available\(\) is False\); "
               r"allowed here: 'cpu', 'auto'")
    with pytest.raises(ValueError, match=pattern):
        resolve_device(device)
    with pytest.raises(ValueError, match=pattern):
        Trainer(device=device, progress=False)


@pytest.mark.parametrize(
    "device, error, pattern",
    [
        ("gpu", ValueError, r"unknown device 'gpu'; allowed: \['auto', 'cpu', 'cuda', 'cuda:N', 'mps'\].*'cuda'"),
        ("cuda:x", ValueError, "unknown device 'cuda:x'; allowed"),
        (torch.device("meta"), ValueError, "device type 'meta' is not supported; allowed"),
        (0, TypeError, r"device must be None, a string \('auto', 'cpu', 'cuda', 'cuda:N', 'mps'\) or a torch.device; got 0"),
    ],
)
def test_resolve_device_refuses_what_is_not_a_device(device, error, pattern):
    with pytest.raises(error, match=pattern):
        resolve_device(device)
    with pytest.raises(error, match=pattern):
        Trainer(device=device, progress=False)


class _WhereAmI(Callback):
    """Records the device of the model, the optimiser's parameters and every training batch; tries an epoch."""

    def __init__(self):
        self.devices, self.same_params, self.trial = set(), [], None

    def on_step_end(self, state, batch, parts):
        self.devices |= {p.device for p in state.model.parameters()}
        self.devices |= {t.device for t in (batch.x, batch.y, batch.a, batch.idx)}
        opt = [p for g in state.optimizer.param_groups for p in g["params"]]
        self.same_params.append(all(p is q for p, q in zip(opt, state.model.parameters())))

    def on_epoch_end(self, state, record):
        if self.trial is None:
            self.trial = state.trial_epoch({"ce": 1.0, "fair": 0.0, "rob": 1.0})


def test_device_cpu_is_bit_identical_to_the_default_and_keeps_everything_there(german):
    def run(**kw):
        terms = [CrossEntropy(), FairnessPenalty(surrogate="dp"), AdversarialLoss.for_task(german, eps=0.1, steps=2)]
        cb = _WhereAmI()
        trainer = Trainer(terms=terms, weights={"fair": 0.5, "rob": 0.5}, epochs=2, seed=3, progress=False,
                          robust_eval=RobustEval(eps=0.1, val_steps=2, val_n=64, test_steps=2), callbacks=[cb], **kw)
        return trainer, trainer.fit(german), cb

    t_default, r_default, cb_default = run()
    t_cpu, r_cpu, cb_cpu = run(device="cpu")
    assert _strip(r_cpu.to_dict()) == _strip(r_default.to_dict())
    assert r_cpu.config["device"] == r_default.config["device"] == "cpu"
    assert cb_cpu.trial == cb_default.trial and "accuracy" in cb_cpu.trial
    for p, q in zip(t_cpu.model_.parameters(), t_default.model_.parameters()):
        assert torch.equal(p, q)
    for cb in (cb_cpu, cb_default):
        assert cb.devices == {torch.device("cpu")}
        assert cb.same_params and all(cb.same_params)
    assert {p.device for p in t_cpu.model_.parameters()} == {torch.device("cpu")}


def test_device_auto_without_cuda_trains_on_the_cpu(german, monkeypatch):
    _no_cuda(monkeypatch)
    kw = {"epochs": 1, "seed": 1, "progress": False}
    auto = Trainer(device="auto", **kw).fit(german)
    plain = Trainer(**kw).fit(german)
    assert auto.config["device"] == "cpu"
    assert _strip(auto.to_dict()) == _strip(plain.to_dict())
