"""Benchmark: VTruST-R against clean training, uniform and sampled augmentation, and random subsets.

On digits (32×32, small CNN) with the corruption suite (one corruption per family), per seed:
clean training; UAug (clean + ``aug_factor × n`` corrupted copies spread evenly); SAug (the same
budget spread by VTruST's Algorithm 3, from validation robust accuracies); a random ``fraction``
of the SAug pool; and VTruST-R, a ``fraction`` of the SAug pool selected with the
accuracy+robustness value (λ = 0.5). Prints standard accuracy (clean test) and robust accuracy
(test, mean over corruptions × severities 1, 3, 5), mean ± std over seeds, and training-set sizes.

    .venv/bin/python benchmarks/vtrust_robust.py [--seeds 3] [--fraction 0.5] [--aug-factor 1.0]
"""

from __future__ import annotations

import argparse

import pandas as pd

from trustkit.experiments import robust_selection_comparison
from trustkit.stats import format_mean_std


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--aug-factor", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--store", default=None, help="a folder to keep finished runs in (resumable)")
    args = ap.parse_args()
    df = robust_selection_comparison("digits", seeds=range(args.seeds), fraction=args.fraction,
                                     aug_factor=args.aug_factor, epochs=args.epochs, store=args.store)
    with pd.option_context("display.width", 200):
        print(format_mean_std(df, by="method", metrics=["standard_acc", "robust_acc", "n_train"]).to_string(index=False))


if __name__ == "__main__":
    main()
