"""Benchmark: how close a run comes to its hard budget without crossing it, measured from outside.

For time budgets of 0.5–4 s and FLOP budgets of 10–90% of a full run, on Adult (MLP; also with a
per-epoch robust evaluation, cheap and costly) and digits (CNN), prints per setting, over repeats:

* ``budgeted/limit``: the time the run charged to its budget, over the limit (mean, max);
* ``outside/limit``: ``fit()``'s wall time measured here with ``time.perf_counter`` (a clock the
  trainer does not control), less the final test report the record says it spent, over the limit
  (mean, max) — the number a hard budget must keep at or below 1 (plus at most one step);
* ``flagged``: runs whose record says ``over_budget``; ``missed``: runs where the outside time
  exceeded 1.05 × limit + the slowest step (should be 0); epochs trained (mean).

    .venv/bin/python benchmarks/budget_adherence.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from trustkit.budget import Budget
from trustkit.data import load_task
from trustkit.train import RobustEval, Trainer

EVALS = {
    "none": None,
    "pgd5": RobustEval(eps=0.1),  # PGD-5 on 512 validation points each epoch
    "pgd100": RobustEval(eps=0.1, val_steps=100, val_n=9000),  # about as costly as the budget
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'task':7s} {'eval':6s} {'limit':>14s} {'budgeted/limit':>15s} {'max':>6s} {'outside/limit':>14s} "
          f"{'max':>6s} {'flagged':>8s} {'missed':>7s} {'epochs':>7s}")
    for name, model, evals in (("adult", "mlp", ("none", "pgd5", "pgd100")), ("digits", "cnn", ("none",))):
        task = load_task(name, seed=0)
        kw = dict(model=model, lr=3e-3, seed=0, progress=False)
        for ev in evals:
            for t in (0.5, 1.0, 2.0, 4.0):
                fr, out, ep, flagged, missed = [], [], [], 0, 0
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    r = Trainer(epochs=10_000, budget=Budget(time_s=t), robust_eval=EVALS[ev], **kw).fit(task)
                    outside = time.perf_counter() - t0 - r.usage["report_s"]
                    fr.append(r.budget_fraction["time_s"])
                    out.append(outside / t)
                    ep.append(len(r.epochs))
                    flagged += bool(r.over_budget)
                    missed += outside > 1.05 * t + r.usage["max_step_s"]
                print(f"{name:7s} {ev:6s} {f'time_s={t:g}':>14s} {np.mean(fr):15.3f} {max(fr):6.3f} {np.mean(out):14.3f} "
                      f"{max(out):6.3f} {flagged:8d} {missed:7d} {np.mean(ep):7.1f}", flush=True)
        full = Trainer(epochs=3, **kw).fit(task).usage["flops"]
        for frac in (0.1, 0.5, 0.9):
            r = Trainer(epochs=3, budget=Budget(flops=frac * full), **kw).fit(task)
            print(f"{name:7s} {'none':6s} {f'flops={frac:.0%} run':>14s} {r.budget_fraction['flops']:15.3f} "
                  f"{r.budget_fraction['flops']:6.3f} {'':>14s} {'':>6s} {int(bool(r.over_budget)):8d} {'':>7s} {len(r.epochs):7d}")


if __name__ == "__main__":
    main()
