"""Empirical checks of the compute–trust bounds (theory/, trustkit.bounds).

* :func:`gap_vs_steps`: train with a fairness term for a grid of step budgets T on a real task and
  measure the DP gap reached (mean ± std over seeds);
* :func:`oracle_gap_vs_steps`: the problem class of Theorem 2, where σ is known: SGD on
  ``(θ − v)²/2`` with N(0, σ²) gradient noise; the (1 − η)-quantile of ``|θ_T − v|`` over many runs
  is the δ certified at confidence 1 − η, to compare with the admissible region;
* :func:`loglog_slope`: the least-squares slope of log(gap) against log(T) with a t-interval;
* :func:`gaussian_model_task` and :func:`measured_gaussian_frontier`: samples of the two-Gaussian-groups
  model and the accuracy–DP frontier a trained logistic model reaches on them.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from .._validation import check_int, check_positive
from ..data import load_task
from ._store import ResultStore, run_grid

__all__ = ["gap_vs_steps", "oracle_gap_vs_steps", "loglog_slope", "gaussian_model_task", "measured_gaussian_frontier"]


def _check_grid(name: str, grid: Sequence[int]) -> list[int]:
    if isinstance(grid, (str, bytes)) or not hasattr(grid, "__iter__"):
        raise TypeError(f"{name} must be a list of positive integers; got {grid!r}")
    out = [check_int(name, int(g) if isinstance(g, (np.integer,)) else g, minimum=1) for g in grid]
    if len(out) < 2:
        raise ValueError(f"{name} needs at least two values to fit a slope; got {out}")
    return out


def _gap_run(cfg) -> dict:
    from ..train import CrossEntropy, FairnessPenalty, Trainer

    task = load_task(cfg["dataset"], seed=cfg["seed"])
    t = Trainer(model="mlp", terms=[CrossEntropy(), FairnessPenalty(surrogate="dp")], weights={"fair": cfg["lam_fair"]},
                epochs=1, epoch_steps=cfg["T"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=cfg["seed"],
                progress=False, metrics=["accuracy", "dp_gap", "eo_gap"])
    r = t.fit(task)
    return {"accuracy": r.test["accuracy"], "dp_gap": r.test["dp_gap"], "eo_gap": r.test["eo_gap"],
            "val_dp_gap": r.epochs[-1].val["dp_gap"], "time_s": r.usage["time_s"], "n_test": len(task.test)}


def gap_vs_steps(dataset: str = "compas", *, T_grid: Sequence[int] = (8, 16, 32, 64, 128, 256), seeds: Sequence[int] = (0, 1, 2),
                 lam_fair: float = 2.0, batch_size: int = 64, lr: float = 1e-3, store: ResultStore | str | None = None,
                 progress: bool = True, executor: str = "sequential", workers: int | None = None,
                 scheduler_address: str | None = None) -> pd.DataFrame:
    """DP gap reached after exactly T steps of training with a fairness penalty (one row per T and seed).

    The model is the 2-layer MLP, the loss ``CE + lam_fair · soft DP gap``; T counts optimiser steps
    of ``batch_size`` examples. The gap is measured on the test split (hard predictions).
    ``executor``, ``workers`` and ``scheduler_address`` choose where runs happen, as in :func:`run_grid`.
    """
    grid = _check_grid("T_grid", T_grid)
    check_positive("lam_fair", lam_fair)
    if isinstance(store, (str, os.PathLike)):
        store = ResultStore(store)
    configs = [{"job": "gap_vs_steps", "dataset": dataset, "T": T, "seed": int(s), "lam_fair": float(lam_fair),
                "batch_size": int(batch_size), "lr": float(lr)} for T in grid for s in seeds]
    return run_grid(configs, _gap_run, store=store, progress=progress, desc=f"{dataset}: gap vs T",
                    executor=executor, workers=workers, scheduler_address=scheduler_address)


def oracle_gap_vs_steps(*, T_grid: Sequence[int] = (16, 64, 256, 1024), sigma: float = 0.5, v: float = 0.3,
                        runs: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Theorem 2's class, simulated: SGD with steps 1/t on ``(θ − v)²/2`` under N(0, σ²) gradient noise.

    Returns per (T, run) the distance ``|θ_T − v|`` (θ_0 = 0). With steps 1/t, θ_T is the mean of
    the T evaluations, so ``|θ_T − v|`` is the absolute value of a N(0, σ²/T) draw.
    """
    import torch

    grid = _check_grid("T_grid", T_grid)
    check_positive("sigma", sigma)
    check_int("runs", runs, minimum=10)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for T in grid:
        theta = torch.zeros(runs, dtype=torch.float64)
        for t in range(1, T + 1):
            g = theta - v + sigma * torch.randn(runs, generator=gen, dtype=torch.float64)
            theta = theta - g / t
        rows.append(pd.DataFrame({"T": T, "run": np.arange(runs), "gap": (theta - v).abs().numpy()}))
    return pd.concat(rows, ignore_index=True)


def loglog_slope(T, gap, *, level: float = 0.95) -> dict:
    """Least-squares slope of log(gap) on log(T) with a two-sided t-interval at ``level``.

    >>> T = np.repeat([10, 100, 1000], 4); gap = 0.5 / np.sqrt(T) * np.tile([0.9, 1.0, 1.1, 1.05], 3)
    >>> r = loglog_slope(T, gap); round(r["slope"], 3), r["low"] < -0.5 < r["high"]
    (-0.5, True)
    """
    from scipy import stats

    T = np.asarray(T, float)
    gap = np.asarray(gap, float)
    ok = (T > 0) & (gap > 0) & np.isfinite(gap)
    if ok.sum() < 3 or len(np.unique(T[ok])) < 2:
        raise ValueError("need at least 3 positive gaps at 2 or more distinct T to fit a slope")
    res = stats.linregress(np.log(T[ok]), np.log(gap[ok]))
    q = stats.t.ppf(0.5 + level / 2, ok.sum() - 2)
    return {"slope": float(res.slope), "low": float(res.slope - q * res.stderr), "high": float(res.slope + q * res.stderr),
            "intercept": float(res.intercept), "n": int(ok.sum()), "dropped_zero_gaps": int((~ok).sum())}


def gaussian_model_task(*, n: int = 6000, pi0: float = 0.5, q0: float = 0.6, q1: float = 0.3, m: float = 1.0, seed: int = 0):
    """A :class:`~trustkit.data.Task` sampled from the two-Gaussian-groups model of theory/03.

    Features: the score x and the one-hot group (so a linear model can have one threshold per
    group). Synthetic data: for checking the closed-form frontier only.
    """
    from ..data import from_frame

    rng = np.random.default_rng(seed)
    a = (rng.random(n) >= pi0).astype(int)            # group 0 with probability pi0
    y = (rng.random(n) < np.where(a == 0, q0, q1)).astype(int)
    x = rng.normal(np.where(y == 1, m, -m), 1.0)
    df = pd.DataFrame({"score": x, "group": np.where(a == 0, "g0", "g1"), "label": np.where(y == 1, "pos", "neg")})
    return from_frame(df, label="label", positive_label="pos", sensitive="group", sensitive_as_feature=True,
                      name="gaussian_groups", card="custom", seed=seed)


def measured_gaussian_frontier(*, lams: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0), seeds: Sequence[int] = (0, 1),
                               n: int = 6000, pi0: float = 0.5, q0: float = 0.6, q1: float = 0.3, m: float = 1.0,
                               epochs: int = 30, progress: bool = True) -> pd.DataFrame:
    """Test accuracy and DP gap of a logistic model trained with ``CE + λ · soft DP gap`` on samples of the model."""
    import torch

    from ..train import CrossEntropy, FairnessPenalty, Trainer

    rows = []
    it = [(lam, s) for lam in lams for s in seeds]
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="Gaussian frontier")
    for lam, s in it:
        task = gaussian_model_task(n=n, pi0=pi0, q0=q0, q1=q1, m=m, seed=s)

        def logistic(task, seed):
            return torch.nn.Linear(task.input_shape[0], 2)

        r = Trainer(model=logistic, terms=[CrossEntropy(), FairnessPenalty(surrogate="dp")], weights={"fair": float(lam)},
                    epochs=epochs, lr=0.05, batch_size=256, seed=s, progress=False,
                    metrics=["accuracy", "dp_gap"]).fit(task)
        rows.append({"lam": lam, "seed": s, "accuracy": r.test["accuracy"], "dp_gap": r.test["dp_gap"]})
    return pd.DataFrame(rows)
