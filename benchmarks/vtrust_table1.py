"""Benchmark: VTruST's Table-1 layout (fairness at a 60% subset) on COMPAS (and Adult).

For each seed (the split and every model use it), on the same split and 2-layer MLP:
whole data, a random 60% subset, an SSFR-style subset (Roh et al. 2021), TracIn top-k 60%, VTruST-F (λ = 0.5 and λ = 0) at 60%, and
fairlearn's ExponentiatedGradient (EqualizedOdds) and ThresholdOptimizer around a logistic
regression. Prints error, worst-case and mean EO gap, DP gap and positive rate as mean ± std over
seeds, and the selection time as a multiple of plain training time measured in the same run.

    .venv/bin/python benchmarks/vtrust_table1.py [--datasets compas adult] [--seeds 5] [--fraction 0.6]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from trustkit.data import load_task
from trustkit.select import VTruST, fairlearn_reference, random_subset, ssfr_subset, subset_task, tracin_topk
from trustkit.stats import format_mean_std
from trustkit.train import Trainer

METRICS = ["error", "eo_gap", "eo_gap_mean", "dp_gap", "positive_rate"]


def train_eval(task, seed, epochs):
    t0 = time.perf_counter()
    r = Trainer(model="mlp", epochs=epochs, lr=3e-3, seed=seed, progress=False).fit(task)
    return {**r.test, "error": 1 - r.test["accuracy"]}, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["compas"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--fraction", type=float, default=0.6)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    rows = []
    for name in args.datasets:
        for seed in range(args.seeds):
            task = load_task(name, seed=seed)
            whole, t_plain = train_eval(task, seed, args.epochs)
            rows.append({"dataset": name, "method": "whole data", "seed": seed, **whole, "select_x": 0.0})
            rows.append({"dataset": name, "method": "random", "seed": seed,
                         **train_eval(subset_task(task, random_subset(task, args.fraction, seed=seed)), seed, args.epochs)[0],
                         "select_x": 0.0})
            t0 = time.perf_counter()
            idx = ssfr_subset(task, args.fraction, epochs=10, seed=seed)
            rows.append({"dataset": name, "method": "SSFR-style", "seed": seed,
                         **train_eval(subset_task(task, idx), seed, args.epochs)[0],
                         "select_x": (time.perf_counter() - t0) / t_plain})
            t0 = time.perf_counter()
            idx = tracin_topk(task, args.fraction, value="accuracy+fairness", lam=0.5, epochs=10, seed=seed)
            rows.append({"dataset": name, "method": "TracIn top-k", "seed": seed,
                         **train_eval(subset_task(task, idx), seed, args.epochs)[0],
                         "select_x": (time.perf_counter() - t0) / t_plain})
            for lam in (0.5, 0.0):
                t0 = time.perf_counter()
                res = VTruST(value="accuracy+fairness", lam=lam, fraction=args.fraction, epochs=10, seed=seed,
                             progress=False).select(task)
                rows.append({"dataset": name, "method": f"VTruST-F λ={lam}", "seed": seed,
                             **train_eval(subset_task(task, res.indices), seed, args.epochs)[0],
                             "select_x": (time.perf_counter() - t0) / t_plain,
                             "residual": res.diagnostics["relative_residual"]})
            for method, label in (("expgrad", "ExpGrad (EO, LR)"), ("threshold", "ThresholdOpt (EO, LR)")):
                m = fairlearn_reference(task, method=method, seed=seed)
                rows.append({"dataset": name, "method": label, "seed": seed, **m, "error": 1 - m["accuracy"], "select_x": 0.0})
            print(f"{name} seed {seed} done", flush=True)
    df = pd.DataFrame(rows)
    table = format_mean_std(df, by=["dataset", "method"], metrics=METRICS + ["select_x"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    collapsed = df[(df["positive_rate"] < 0.05) | (df["positive_rate"] > 0.95)]
    if len(collapsed):
        print("\ncollapsed runs (positive rate < 0.05 or > 0.95):")
        print(collapsed[["dataset", "method", "seed", "positive_rate"]].to_string(index=False))
    print("\nselect_x: selection time / plain whole-data training time of the same seed")


if __name__ == "__main__":
    main()
