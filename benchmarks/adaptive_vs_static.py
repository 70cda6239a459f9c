"""Benchmark: adaptive trust-aware training (EfficientTrust / ATATS / adaptive baselines) vs static baselines.

For each dataset and budget regime (low = 10% / medium = 50% of the reference full run's time,
measured in this run; high = unrestricted), every method trains the same model with the same loss
``L_acc + λ_f·R_fair + λ_r·R_rob`` under the same hard budget, for each seed. Prints, per
(dataset, regime, method): test error, DP gap, EO gap (worst case), PGD-20 robust accuracy, time
used, peak memory, runs over budget, as mean ± std over seeds; then, against the best static
baseline (chosen by mean validation score), the relative change of the DP gap and robust accuracy
with paired t-test p-values (paired by seed). The proposal (000) hopes for −30% fairness gap and
+20% robust accuracy at a fixed budget.

    .venv/bin/python benchmarks/adaptive_vs_static.py [--datasets compas adult digits] [--seeds 5]
        [--regimes low medium high] [--store DIR] [--quick]

With ``--store`` finished runs are kept, and a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from trustkit.experiments import adaptive_claims, adaptive_comparison, tests_against_best_static
from trustkit.stats import format_mean_std

METRICS = ["error", "dp_gap", "eo_gap", "robust_accuracy", "time_s", "epochs", "peak_memory_mb"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["compas", "adult", "digits"])
    ap.add_argument("--regimes", nargs="+", default=["low", "medium", "high"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="the notebooks' quick preset (fewer passes)")
    ap.add_argument("--store", default=None, help="a folder to keep finished runs in (resumable)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    frames = []
    for d in args.datasets:
        t0 = time.perf_counter()
        df = adaptive_comparison(d, regimes=args.regimes, seeds=range(args.seeds), quick=args.quick,
                                 store=None if args.store is None else f"{args.store}/{d}")
        df["dataset"] = d
        frames.append(df)
        print(f"{d}: {len(df)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    df = pd.concat(frames, ignore_index=True)
    df["over"] = (df["over_budget"].fillna("") != "").astype(float)
    table = format_mean_std(df, by=["dataset", "regime", "method"], metrics=METRICS)
    table["over_budget_runs"] = df.groupby(["dataset", "regime", "method"], sort=False)["over"].sum().to_numpy().astype(int)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_rows", 500):
        print("\n== per method: mean ± std over seeds (time_s = training time used; budget = share of the reference run)")
        print(table.to_string(index=False))
        tests, skipped = tests_against_best_static(df, by=["dataset", "regime"])
        print("\n== adaptive vs the best static baseline at the same budget (paired t-test over seeds, BH-corrected)")
        for line in skipped:
            print(line)
        if tests.empty:
            return
        print(tests["family"].iloc[0])
        view = tests[tests["metric"].isin(["dp_gap", "robust_accuracy"])].copy()
        view["rel_change"] = (100 * view["rel_change"]).round(1).astype(str) + "%"
        print(view[["dataset", "regime", "metric", "baseline", "method", "baseline_mean", "method_mean", "rel_change",
                    "p_value", "q_value", "n"]].round(4).to_string(index=False))
        claims = adaptive_claims(df.assign(store="benchmark"))
        print("\n== the proposal's claim (every EfficientTrust / ATATS scheduler vs the best static baseline, Holm):")
        for _, c in claims.iterrows():
            print(f"[{c.verdict}] {c.setting}: {c.measured}")

if __name__ == "__main__":
    main()
