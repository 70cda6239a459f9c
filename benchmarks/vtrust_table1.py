"""Benchmark: VTruST's Table-1 layout (fairness at a 60% subset) on COMPAS (and Adult).

For each seed (the split, the selection and every model use it), on the same split and 2-layer
MLP: whole data, a random subset, an SSFR-style subset (Roh et al. 2021), TracIn top-k and
VTruST-F (accuracy+fairness value, λ = 0.5 and λ = 0), and fairlearn's ExponentiatedGradient
(EqualizedOdds) and ThresholdOptimizer around a logistic regression. Prints error, worst-case and
mean EO gap, DP gap and positive rate as mean ± std over seeds, and the selection time as a
multiple of plain whole-data training time measured in the same run; lists collapsed runs.

    .venv/bin/python benchmarks/vtrust_table1.py [--datasets compas adult] [--seeds 5] [--fraction 0.6]
"""

from __future__ import annotations

import argparse

import pandas as pd

from trustkit.experiments import selection_comparison
from trustkit.stats import format_mean_std

METRICS = ["error", "eo_gap", "eo_gap_mean", "dp_gap", "positive_rate", "select_x"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["compas"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--fraction", type=float, default=0.6)
    ap.add_argument("--store", default=None, help="a folder to keep finished runs in (resumable)")
    args = ap.parse_args()
    frames = [selection_comparison(d, fraction=args.fraction, lams=(0.5, 0.0), seeds=range(args.seeds),
                                   store=None if args.store is None else f"{args.store}/{d}")
              for d in args.datasets]
    df = pd.concat(frames, ignore_index=True)
    table = format_mean_std(df, by=["dataset", "label"], metrics=METRICS)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    collapsed = df[(df["positive_rate"] < 0.05) | (df["positive_rate"] > 0.95)]
    if len(collapsed):
        print("\ncollapsed runs (positive rate < 0.05 or > 0.95):")
        print(collapsed[["dataset", "label", "seed", "positive_rate"]].to_string(index=False))
    print("\nselect_x: selection time / plain whole-data training time of the same seed, same process")


if __name__ == "__main__":
    main()
