"""Benchmark: how close a run comes to its hard budget without crossing it.

For time budgets of 0.5–4 s and FLOP budgets of 10–90% of a full run, on Adult (MLP) and digits
(CNN), prints used/limit (mean and max over repeats) and how many runs went over. A hard budget is
honoured when max used/limit <= 1; the closer the mean is to 1, the less of the budget is wasted.

    .venv/bin/python benchmarks/budget_adherence.py [--repeats 3]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from trustkit.budget import Budget
from trustkit.data import load_task
from trustkit.train import Trainer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"{'task':7s} {'limit':>14s} {'used/limit mean':>16s} {'max':>6s} {'over':>5s} {'epochs':>7s}")
    for name, model in (("adult", "mlp"), ("digits", "cnn")):
        task = load_task(name, seed=0)
        kw = dict(model=model, lr=3e-3, seed=0, progress=False)
        for t in (0.5, 1.0, 2.0, 4.0):
            fr, ep, over = [], [], 0
            for _ in range(args.repeats):
                r = Trainer(epochs=10_000, budget=Budget(time_s=t), **kw).fit(task)
                fr.append(r.budget_fraction["time_s"])
                ep.append(len(r.epochs))
                over += bool(r.over_budget)
            print(f"{name:7s} {f'time_s={t:g}':>14s} {np.mean(fr):16.3f} {max(fr):6.3f} {over:5d} {np.mean(ep):7.1f}")
        full = Trainer(epochs=3, **kw).fit(task).usage["flops"]
        for frac in (0.1, 0.5, 0.9):
            r = Trainer(epochs=3, budget=Budget(flops=frac * full), **kw).fit(task)
            print(f"{name:7s} {f'flops={frac:.0%} run':>14s} {r.budget_fraction['flops']:16.3f} "
                  f"{r.budget_fraction['flops']:6.3f} {int(bool(r.over_budget)):5d} {len(r.epochs):7d}")


if __name__ == "__main__":
    main()
