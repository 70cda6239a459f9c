"""Adaptive trust-aware training under budget regimes: EfficientTrust / ATATS against static baselines.

One run = one (dataset, regime, method, seed). Every method trains the same model with the same
loss ``L_acc + λ_f·R_fair + λ_r·R_rob`` (:mod:`trustkit.train`) under the same hard budget; only
the way λ and compute are chosen differs. Regimes (DESIGN.md): the time of a *reference full run*
(every trust term on, PGD, the dataset's full epoch count, no budget; measured once per dataset and
kept in the store) scaled by 10% (low), 50% (medium) or unrestricted (high); memory caps 512 MB /
2 GB / none. The caps do not bind on these small models (their peak RSS increase is reported).

Model selection and the "best static baseline" use one validation score,
``score = accuracy − fairness gap + robust accuracy`` (terms absent on a task count 0).
"""

from __future__ import annotations

import math
import os
import time
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .._validation import _suggest, check_int
from ..budget import Budget
from ..data import load_task
from ..train import (
    AdversarialLoss,
    Allocation,
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
)
from ._store import ResultStore, run_grid

__all__ = ["REGIMES", "STATIC_METHODS", "ADAPTIVE_METHODS", "FAIRNESS_ONLY", "reference_time", "adaptive_run",
           "adaptive_comparison", "interactive_run", "setup_for", "val_score", "expgrad_under_budget"]

#: regime -> (share of the reference run's time, memory cap in MB); None = unrestricted
REGIMES = {"low": (0.1, 512.0), "medium": (0.5, 2048.0), "high": (None, None)}

#: baselines whose λ and compute do not adapt during the run
STATIC_METHODS = ("erm", "static", "periodic", "pgd_at", "fgsm_rs")
#: methods that adapt λ / compute during the run (ExpGrad adapts its Lagrange multipliers too)
ADAPTIVE_METHODS = ("dynamic", "efficienttrust", "causal_frozen", "causal_off", "oracle", "atats_rule",
                    "atats_pid", "atats_bandit", "fairbatch", "dual", "expgrad")
#: methods that only make sense with a sensitive attribute
FAIRNESS_ONLY = ("periodic", "fairbatch", "dual", "expgrad")

_SETUPS = {
    # model, epochs of the full run, lr, batch size, training ε and PGD steps, validation subset for PGD
    "tabular": {"model": "mlp", "epochs": 20, "lr": 3e-3, "batch_size": 128, "eps": 0.1, "steps": 3, "val_n": 512},
    "image": {"model": "cnn", "epochs": 10, "lr": 3e-3, "batch_size": 64, "eps": 0.1, "steps": 3, "val_n": 256},
}
_QUICK = {"tabular": {"epochs": 8, "val_n": 256}, "image": {"epochs": 4, "val_n": 128}}
_ADULT_EPOCHS = 10  # Adult has 7x COMPAS's rows: 10 epochs is already a long run


def setup_for(task, *, quick: bool = False) -> dict:
    """Training settings of a task: model, passes of the reference run, lr, batch size, ε, PGD steps.

    Schedulers decide once per *slice* of ``slice_steps`` steps; the reference run is ``slices``
    slices, about ``epochs`` passes over the training data, so even the low regime (10%) leaves a
    scheduler a few decisions.
    """
    s = dict(_SETUPS[task.kind])
    if task.name == "adult":
        s["epochs"] = _ADULT_EPOCHS
    if quick:
        s.update(_QUICK[task.kind])
    s["fair"] = task.has_sensitive and task.n_classes == 2
    s["slices"] = 12 if quick else 30
    total = math.ceil(len(task.train) / s["batch_size"]) * s["epochs"]
    s["slice_steps"] = max(1, math.ceil(total / s["slices"]))
    return s


def val_score(val: Mapping, *, fair: bool) -> float:
    """The validation score used for model selection: accuracy − DP gap + robust accuracy."""
    s = float(val.get("accuracy", 0.0)) + float(val.get("robust_accuracy", 0.0))
    if fair:
        s -= float(val.get("dp_gap", 0.0))
    return s


def _trainer(task, setup, *, seed, budget, callbacks=(), weights=None, attack="pgd", steps=None, epochs=None):
    terms = [CrossEntropy()]
    w = {"ce": 1.0}
    if setup["fair"]:
        terms.append(FairnessPenalty(surrogate="dp"))
        w["fair"] = 0.0
    terms.append(AdversarialLoss.for_task(task, eps=setup["eps"], attack=attack, steps=steps or setup["steps"]))
    w["rob"] = 0.0
    w.update(weights or {})
    return Trainer(model=setup["model"], terms=terms, weights=w, lr=setup["lr"], batch_size=setup["batch_size"],
                   epochs=epochs or setup["slices"], epoch_steps=setup["slice_steps"], budget=budget, seed=seed, callbacks=list(callbacks), progress=False,
                   robust_eval=RobustEval(eps=setup["eps"], val_n=setup["val_n"], test_steps=20))


def _ref_config(dataset, quick, loader):
    return {"job": "adaptive_reference", "dataset": dataset, "quick": bool(quick), "loader": loader}


def reference_time(dataset: str, *, quick: bool = False, store: ResultStore | None = None, loader: Mapping | None = None) -> dict:
    """Time of the reference full run (all trust terms on with λ = 1, PGD, full epochs, no budget).

    Measured once (seed 0) and kept in ``store``, so every regime of a sweep uses the same number.
    Returns ``{"time_s", "val_accuracy", "epochs", ...}``.
    """
    cfg = _ref_config(dataset, quick, dict(loader or {}))
    if store is not None and store.has(cfg):
        return store.get(cfg)
    task = load_task(dataset, seed=0, **dict(loader or {}))
    setup = setup_for(task, quick=quick)
    weights = {"rob": 1.0, **({"fair": 1.0} if setup["fair"] else {})}
    r = _trainer(task, setup, seed=0, budget=None, weights=weights).fit(task)
    out = {"time_s": r.usage["time_s"], "val_accuracy": r.epochs[-1].val["accuracy"],
           "val_robust_accuracy": r.epochs[-1].val["robust_accuracy"], "passes": setup["epochs"],
           "slices": setup["slices"], "slice_steps": setup["slice_steps"],
           "peak_memory_mb": r.usage["peak_memory_mb"]}
    if store is not None:
        store.put(cfg, out)
    return out


def _budget(regime: str, ref: Mapping) -> Budget:
    share, mem = REGIMES[regime]
    return Budget(time_s=None if share is None else share * ref["time_s"], memory_mb=mem)


def _scheduler(method: str, setup: Mapping, ref: Mapping, seed: int, bandit_state: Mapping | None = None):
    fair = setup["fair"]
    score = {"alpha": 1.0 if fair else 0.0, "beta": 1.0, "kappa": 1.0, "gamma": 0.01}
    # ATATS targets: DP gap <= 0.05, robust accuracy >= what the reference full run reached
    rob_target = round(float(ref["val_robust_accuracy"]), 3)
    if method == "dynamic":
        return DynamicLambda(rho_fair=5.0, rho_rob=5.0, lam_fair=1.0 if fair else 0.0, lam_rob=1.0)
    if method in ("efficienttrust", "causal_off"):
        return CausalScheduler(**score, lambdas=DynamicLambda(lam_fair=1.0 if fair else 0.0, lam_rob=1.0),
                               causal=method == "efficienttrust", seed=seed)
    if method == "causal_frozen":
        return CausalScheduler(**score, lambdas=None, lam_fair=1.0 if fair else 0.0, lam_rob=1.0, seed=seed)
    if method == "oracle":
        steps = setup["steps"]
        allocs = [Allocation(0.0, 0.0), Allocation(0.0, 1.0, "fgsm_rs"), Allocation(0.0, 1.0, "pgd", steps)]
        if fair:
            allocs = [Allocation(1.0, 0.0), Allocation(1.0, 1.0, "fgsm_rs"), Allocation(1.0, 1.0, "pgd", steps), allocs[0]]
        return OracleScheduler(**score, allocations=allocs,
                               lambdas=DynamicLambda(lam_fair=1.0 if fair else 0.0, lam_rob=1.0))
    if method == "atats_rule":
        return RulePolicy(fair_target=0.05 if fair else None, rob_target=rob_target, lam_fair=0.0, lam_rob=1.0)
    if method == "atats_pid":
        return PIDPolicy(fair_target=0.05 if fair else None, rob_target=rob_target)
    if method == "atats_bandit":
        policy = BanditPolicy(**score, seed=seed)
        if bandit_state is not None:
            policy._A = np.asarray(bandit_state["A"])
            policy._b = np.asarray(bandit_state["b"])
            policy.episodes = int(bandit_state["episodes"])
        policy.learning = False
        return policy
    if method == "fairbatch":
        return FairBatch(alpha=0.05)
    if method == "dual":
        return DualAscent(epsilon=0.02, dual_lr=0.05)
    if method == "periodic":
        return PeriodicFairness(every=2, lam_fair=2.0)
    raise ValueError(f"unknown method {method!r}")


#: λ grid of the static baseline (chosen on validation, each point under the same budget)
STATIC_GRID = {"fair": [(0.5, 0.5), (2.0, 0.5), (0.5, 1.0), (2.0, 1.0)], "rob": [(0.0, 0.25), (0.0, 0.5), (0.0, 1.0), (0.0, 2.0)]}


def _summary(r, task, setup) -> dict:
    row = {k: v for k, v in r.test.items() if k in ("accuracy", "dp_gap", "eo_gap", "eo_gap_mean", "robust_accuracy")}
    row["error"] = 1.0 - row["accuracy"]
    last = r.epochs[-1].val if r.epochs else {}
    row.update({
        "val_score": val_score(last, fair=setup["fair"]) if last else float("nan"),
        "time_s": r.usage["time_s"],
        "excluded_s": r.usage["excluded_s"],
        "peak_memory_mb": r.usage["peak_memory_mb"],
        "gflops": r.usage["flops"] / 1e9,
        "epochs": r.completed_epochs,
        "steps": sum(e.steps for e in r.epochs),
        "trained": r.trained,
        "stopped_by": r.stopped_by,
        "over_budget": ",".join(r.over_budget),
        "scheduler_s": sum(e.callback_s for e in r.epochs),
        "message": r.message,
        "trajectory": [{"epoch": e.epoch, "time_s": e.time_s, "lam_fair": e.weights.get("fair", 0.0),
                        "lam_rob": e.weights.get("rob", 0.0), "frac_rob": e.fractions.get("rob", 1.0),
                        "frac_fair": e.fractions.get("fair", 1.0),
                        "attack": e.settings.get("rob_attack"), "val_accuracy": e.val.get("accuracy"),
                        "val_dp_gap": e.val.get("dp_gap"), "val_robust_accuracy": e.val.get("robust_accuracy")}
                       for e in r.epochs],
    })
    return row


def expgrad_under_budget(task, *, time_s: float | None, seed: int = 0, constraint: str = "demographic_parity") -> dict:
    """fairlearn's ExponentiatedGradient (logistic regression) run under a time budget.

    The number of iterations (best-response calls) is what the budget buys: a 2-iteration probe
    measures the time per iteration, then ``max_iter`` is the most that fits in what is left
    (at least 1, at most fairlearn's default 50). The probe counts toward the time used. Predictions
    are the randomised classifier's seeded draw; robust accuracy is not defined for it (NaN).
    """
    from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    from ..metrics import compute_metrics

    tr, va, te = task.train, task.val, task.test
    Xtr = tr.X.astype(np.float64)
    cons = (lambda: DemographicParity()) if constraint == "demographic_parity" else (lambda: EqualizedOdds())

    def fit(max_iter):
        est = ExponentiatedGradient(LogisticRegression(max_iter=500, random_state=seed), constraints=cons(),
                                    max_iter=max_iter, nu=None)
        est.fit(Xtr, tr.y, sensitive_features=tr.a)
        return est

    t0 = time.perf_counter()
    if time_s is None:
        est, max_iter = fit(50), 50
    else:
        fit(2)
        per_iter = (time.perf_counter() - t0) / 2
        left = time_s - (time.perf_counter() - t0)
        max_iter = int(max(1, min(50, math.floor(0.9 * left / per_iter))))
        est = fit(max_iter)
    used = time.perf_counter() - t0

    def metrics(split):
        pred = np.asarray(est.predict(split.X.astype(np.float64), random_state=seed)).astype(int)
        return compute_metrics(["accuracy", "dp_gap", "eo_gap", "eo_gap_mean"], split.y,
                               np.stack([1 - pred, pred], 1).astype(float), split.a)

    row = metrics(te)
    row.update({"error": 1 - row["accuracy"], "robust_accuracy": float("nan"),
                "val_score": val_score(metrics(va), fair=True), "time_s": used, "excluded_s": 0.0,
                "peak_memory_mb": float("nan"), "gflops": float("nan"), "epochs": max_iter, "steps": max_iter, "trained": True,
                "stopped_by": "budget" if time_s is not None else "max_iter",
                "over_budget": "time_s" if time_s is not None and used > time_s else "", "scheduler_s": 0.0,
                "message": f"{max_iter} ExponentiatedGradient iterations", "trajectory": []})
    return row


def adaptive_run(cfg: Mapping, *, bandit_state: Mapping | None = None) -> dict:
    """One run of the comparison; ``cfg`` has dataset, regime, method, seed, quick, ref_time_s, ref_val_accuracy."""
    task = load_task(cfg["dataset"], seed=cfg["seed"], **cfg.get("loader", {}))
    setup = setup_for(task, quick=cfg["quick"])
    ref = {"time_s": cfg["ref_time_s"], "val_accuracy": cfg["ref_val_accuracy"],
           "val_robust_accuracy": cfg["ref_val_robust_accuracy"]}
    budget = _budget(cfg["regime"], ref)
    method, seed = cfg["method"], cfg["seed"]
    if method == "expgrad":
        return expgrad_under_budget(task, time_s=budget.time_s, seed=seed)
    if method == "erm":
        return _summary(_trainer(task, setup, seed=seed, budget=budget).fit(task), task, setup)
    if method in ("pgd_at", "fgsm_rs"):  # Madry / Wong et al.: the adversarial loss alone
        t = _trainer(task, setup, seed=seed, budget=budget, weights={"ce": 0.0, "rob": 1.0},
                     attack="pgd" if method == "pgd_at" else "fgsm_rs")
        return _summary(t.fit(task), task, setup)
    if method == "static":  # grid search on validation, every point under the same budget
        best, best_score, search_s = None, -math.inf, 0.0
        for lam_f, lam_r in STATIC_GRID["fair" if setup["fair"] else "rob"]:
            r = _trainer(task, setup, seed=seed, budget=budget,
                         callbacks=[StaticLambda(lam_fair=lam_f, lam_rob=lam_r)]).fit(task)
            row = _summary(r, task, setup)
            search_s += row["time_s"]
            score = row["val_score"] if math.isfinite(row["val_score"]) else -math.inf  # NaN: no epoch fitted
            if best is None or score > best_score:
                best, best_score = {**row, "lam_fair": lam_f, "lam_rob": lam_r}, score
        best["search_s"] = search_s
        return best
    sched = _scheduler(method, setup, ref, seed, bandit_state)
    r = _trainer(task, setup, seed=seed, budget=budget, callbacks=[sched]).fit(task)
    row = _summary(r, task, setup)
    row["decide_s"] = sched.decide_s
    if method == "oracle":
        row["oracle_trials"] = len(sched.true_gains)
    if isinstance(sched, CausalScheduler):
        row["predictions"] = sched.predictions
    return row


def train_bandit(dataset: str, regime: str, *, episodes: int, quick: bool, ref: Mapping, loader: Mapping | None = None,
                 seed: int = 0) -> dict:
    """Train the ATATS bandit on ``episodes`` runs with task seeds 1000, 1001, … (never the evaluation seeds)."""
    policy = None
    for ep in range(episodes):
        task = load_task(dataset, seed=1000 + ep, **dict(loader or {}))
        setup = setup_for(task, quick=quick)
        if policy is None:
            policy = BanditPolicy(alpha=1.0 if setup["fair"] else 0.0, beta=1.0, kappa=1.0, gamma=0.01, seed=seed)
        _trainer(task, setup, seed=1000 + ep, budget=_budget(regime, ref), callbacks=[policy]).fit(task)
    return {"A": policy._A.tolist(), "b": policy._b.tolist(), "episodes": policy.episodes,
            "arms": [list(a) for a in policy.arms]}


def adaptive_comparison(
    dataset: str = "compas",
    *,
    regimes: Sequence[str] = ("low", "medium", "high"),
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    quick: bool = False,
    bandit_episodes: int = 3,
    store: ResultStore | str | None = None,
    loader: Mapping | None = None,
    progress: bool = True,
    executor: str = "sequential", workers: int | None = None, scheduler_address: str | None = None,
) -> pd.DataFrame:
    """Every method on ``dataset`` in every regime and seed; one row per run (resumable with ``store``).

    ``executor``, ``workers`` and ``scheduler_address`` choose where runs happen (sequentially, local
    processes, a Dask cluster), as in :func:`run_grid`; results and resuming are the same.

    ``methods`` defaults to all that apply to the task (fairness-only methods need a sensitive
    attribute). The ATATS bandit is first trained on ``bandit_episodes`` runs with other task seeds
    in the same regime, then evaluated frozen.
    """
    from ..data import DATASETS

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {sorted(DATASETS)}.{_suggest(str(dataset), DATASETS)}")
    for r in regimes:
        if r not in REGIMES:
            raise ValueError(f"unknown regime {r!r}; allowed: {list(REGIMES)}.{_suggest(str(r), REGIMES)}")
    check_int("bandit_episodes", bandit_episodes, minimum=1)
    if isinstance(store, (str, os.PathLike)):
        store = ResultStore(store)
    loader = dict(loader or {})
    probe = load_task(dataset, seed=0, **loader)
    fair = setup_for(probe).get("fair")
    allowed = [m for m in STATIC_METHODS + ADAPTIVE_METHODS if fair or m not in FAIRNESS_ONLY]
    if methods is None:
        methods = allowed
    for m in methods:
        if m not in STATIC_METHODS + ADAPTIVE_METHODS:
            raise ValueError(f"unknown method {m!r}; allowed: {list(STATIC_METHODS + ADAPTIVE_METHODS)}."
                             f"{_suggest(str(m), STATIC_METHODS + ADAPTIVE_METHODS)}")
        if m not in allowed:
            raise ValueError(f"method {m!r} needs a sensitive attribute; dataset {dataset!r} has none")
    ref = reference_time(dataset, quick=quick, store=store, loader=loader)
    bandits = {}
    if "atats_bandit" in methods:
        for regime in regimes:
            cfg = {"job": "adaptive_bandit", "dataset": dataset, "regime": regime, "quick": bool(quick),
                   "episodes": int(bandit_episodes), "ref_time_s": ref["time_s"], "loader": loader}
            if store is not None and store.has(cfg):
                bandits[regime] = store.get(cfg)
            else:
                bandits[regime] = train_bandit(dataset, regime, episodes=bandit_episodes, quick=quick, ref=ref, loader=loader)
                if store is not None:
                    store.put(cfg, bandits[regime])
    configs = [{"job": "adaptive", "dataset": dataset, "regime": r, "method": m, "seed": int(s), "quick": bool(quick),
                "ref_time_s": ref["time_s"], "ref_val_accuracy": ref["val_accuracy"],
                "ref_val_robust_accuracy": ref["val_robust_accuracy"], "loader": loader}
               for r in regimes for m in methods for s in seeds]

    def run(cfg):
        return adaptive_run(cfg, bandit_state=bandits.get(cfg["regime"]) if cfg["method"] == "atats_bandit" else None)

    df = run_grid(configs, run, store=store, progress=progress, desc=f"{dataset}: adaptive runs",
                    executor=executor, workers=workers, scheduler_address=scheduler_address)
    for col in ("dp_gap", "eo_gap", "eo_gap_mean"):  # absent on tasks without a sensitive attribute
        if col not in df:
            df[col] = np.nan
    share = {r: REGIMES[r][0] for r in regimes}
    df["budget_s"] = [None if share[r] is None else share[r] * ref["time_s"] for r in df["regime"]]
    df["kind"] = ["static" if m in STATIC_METHODS else "adaptive" for m in df["method"]]
    return df


def tests_against_best_static(df: pd.DataFrame, *, by: Sequence[str] = ("regime",),
                              metrics: Sequence[str] = ("dp_gap", "eo_gap", "robust_accuracy", "error"),
                              alpha: float = 0.05, correction: str = "bh") -> tuple[pd.DataFrame, list[str]]:
    """Each adaptive method against the best static baseline of its group, by paired t-tests over seeds.

    The best static baseline of a group (a regime, or a (dataset, regime)) is the static method with
    the best mean validation score (:func:`trustkit.stats.best_baseline`). Runs that did not train are
    left out of every test (and of the choice). Returns the tests (one row per (group, metric,
    method), as :func:`trustkit.stats.paired_ttest` gives them, with the group's columns in front,
    and ``q_value`` / ``significant`` from ``correction`` over every row as one family, named in the
    ``family`` column) and one sentence per group that could not be compared — where no static run
    has a validation score, because its budget held no epoch.
    """
    from ..stats import best_baseline, correct, paired_ttest
    from ._evidence import trained_mask

    by = list(by)
    untrained = df[~trained_mask(df)]
    df = df[trained_mask(df)]
    rows, skipped = [], []
    if len(untrained):
        skipped.append(f"{len(untrained)} run(s) did not train (no step, or stopped inside the first slice) and are left "
                       "out: " + ", ".join(sorted({f"{r.method} ({r.regime})" for r in untrained.itertuples()})))
    for key, g in df.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{k} {v}" for k, v in zip(by, key))
        statics = [m for m in STATIC_METHODS if m in set(g["method"])]
        adaptive = [m for m in dict.fromkeys(g["method"]) if m not in STATIC_METHODS]
        try:
            best = best_baseline(g, methods=statics).iloc[0]["method"]
        except ValueError as e:
            budget = g["budget_s"].dropna() if "budget_s" in g else pd.Series(dtype=float)
            skipped.append(f"{label}: no comparison: {e}"
                           + (f" (time budget {budget.iloc[0]:.3g} s)" if len(budget) else ""))
            continue
        for metric in metrics:
            if metric not in g or g[metric].isna().all():
                continue
            t = paired_ttest(g, metric=metric, baseline=best, methods=adaptive)
            for k, v in reversed(list(zip(by, key))):
                t.insert(0, k, v)
            rows.append(t)
    if not rows:
        return pd.DataFrame(), skipped
    out = correct(pd.concat(rows, ignore_index=True), method=correction, alpha=alpha,
                  what="adaptive methods against the best static baseline")
    out["family"] = out.attrs["family"]
    return out, skipped


def interactive_run(dataset: str = "compas", *, lam_fair: float = 1.0, lam_rob: float = 1.0, time_budget_s: float | None = 2.0,
                    attack: str = "pgd", seed: int = 0, quick: bool = True, loader: Mapping | None = None) -> dict:
    """One run with fixed λ_f, λ_r and a time budget (the notebook's panel); returns the summary row."""
    task = load_task(dataset, seed=seed, **dict(loader or {}))
    setup = setup_for(task, quick=quick)
    budget = Budget(time_s=time_budget_s) if time_budget_s is not None else None
    weights = {"rob": lam_rob, **({"fair": lam_fair} if setup["fair"] else {})}
    r = _trainer(task, setup, seed=seed, budget=budget, weights=weights, attack=attack).fit(task)
    return {"dataset": dataset, "lam_fair": lam_fair, "lam_rob": lam_rob, "attack": attack, **_summary(r, task, setup)}
