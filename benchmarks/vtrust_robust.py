"""Benchmark: VTruST-R against clean training, uniform and sampled augmentation, and random subsets.

On digits (32×32, small CNN) with the corruption suite, per seed:
* clean — the clean training split only;
* UAug — clean + ``aug_factor × n`` corrupted copies spread evenly over the corruptions;
* SAug — the same budget spread by VTruST's Algorithm 3 (sampling numbers from validation);
* random — a random ``fraction`` of the SAug pool;
* VTruST-R — a ``fraction`` of the SAug pool selected with the accuracy+robustness value (λ = 0.5).
Reports standard accuracy (clean test) and robust accuracy (test, mean over the corruptions ×
severities 1, 3, 5) as mean ± std over seeds, and training-set sizes.

    .venv/bin/python benchmarks/vtrust_robust.py [--seeds 3] [--fraction 0.5] [--aug-factor 1.0]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd

from trustkit.data import load_digits
from trustkit.experiments import QUICK_CORRUPTIONS
from trustkit.metrics import corruption_table, predict_logits
from trustkit.select import VTruST, augmented_task, random_subset, saug, subset_task, uniform_counts
from trustkit.stats import format_mean_std
from trustkit.train import Trainer


def evaluate(task, train_task, seed, epochs):
    tr = Trainer(model="cnn", epochs=epochs, lr=3e-3, seed=seed, progress=False, metrics=["accuracy"])
    tr.fit(train_task)
    sa = float((predict_logits(tr.model_, task.test.X).argmax(1).numpy() == task.test.y).mean())
    ra = corruption_table(tr.model_, task.test.X, task.test.y, corruptions=QUICK_CORRUPTIONS, severities=(1, 3, 5), seed=seed)
    return {"standard_acc": sa, "robust_acc": float(ra["accuracy"].mean()), "n_train": len(train_task.train)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--aug-factor", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    rows = []
    for seed in range(args.seeds):
        task = load_digits(seed=seed)
        n_aug = int(round(args.aug_factor * len(task.train)))
        uaug = augmented_task(task, uniform_counts(QUICK_CORRUPTIONS, n_aug), seed=seed)
        s = saug(task, QUICK_CORRUPTIONS, aug_factor=args.aug_factor, rounds=2, epochs=args.epochs, seed=seed)
        pool = augmented_task(task, s.counts, seed=seed)
        rnd = subset_task(pool, random_subset(pool, args.fraction, seed=seed))
        sel = VTruST(value="accuracy+robustness", lam=0.5, fraction=args.fraction, epochs=args.epochs, model="cnn",
                     seed=seed, progress=False).select(pool)
        for name, t in (("clean", task), ("UAug", uaug), ("SAug", pool), ("random of SAug", rnd),
                        ("VTruST-R of SAug", subset_task(pool, sel.indices))):
            rows.append({"method": name, "seed": seed, **evaluate(task, t, seed, args.epochs)})
        print(f"seed {seed}: SAug counts {s.counts}", flush=True)
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200):
        print(format_mean_std(df, by="method", metrics=["standard_acc", "robust_acc", "n_train"]).to_string(index=False))


if __name__ == "__main__":
    main()
