"""Benchmark: the Trainer against the plain loop it replaces, as ratios measured in one run.

Per task, the same model, seed, batches and epochs, interleaved and repeated (only ratios within
one run are reported; the machine is shared):

* plain        — a hand-written Adam loop (``trustkit.train.plain_loop``) that validates every
                 epoch with the same metrics (``trustkit.metrics.evaluate`` on the validation
                 split) and reports them on the test split at the end, as ``Trainer.fit`` does;
* trainer      — ``Trainer`` (ERM, default metrics), no budget;
* budgeted     — the same with time, memory and FLOP limits too large to stop it (meter on);
* adaptive     — ``Trainer`` with fairness and PGD-3 terms, a PGD-5 validation on 512 points and
                 an adaptive scheduler (the dynamic λ rule), where the record's per-epoch ``eval_time_s`` and
                 ``callback_s`` give the share of wall time spent validating and scheduling.

Prints the median seconds of each and trainer ÷ plain, budgeted ÷ plain, and the validation +
scheduler share of the adaptive run. Threads: ``--threads`` (default 1, one process).

    .venv/bin/python benchmarks/trainer_overhead.py [--repeats 3] [--epochs 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time


from trustkit.budget import Budget
from trustkit.config import set_threads
from trustkit.data import load_task
from trustkit.metrics import default_metrics, evaluate
from trustkit.train import AdversarialLoss, CrossEntropy, DynamicLambda, FairnessPenalty, RobustEval, Trainer, plain_loop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tasks", nargs="*", default=["compas", "adult", "digits"])
    args = ap.parse_args()
    threads = set_threads(args.threads)
    print(f"torch threads: {threads}; {args.epochs} epochs, batch 128, {args.repeats} repeats (median)")
    Trainer(model="mlp", epochs=1, progress=False).fit(load_task("german", seed=0))  # imports and warm-up, not timed
    head = f"{'task':8s} {'plain s':>8s} {'trainer s':>9s} {'budget s':>9s} {'trainer/plain':>13s} {'budget/plain':>12s}"
    print(head + f" {'adaptive s':>10s} {'val+sched share':>15s}")
    for name in args.tasks:
        task = load_task(name, seed=0)
        model = "cnn" if task.kind == "image" else "mlp"
        kw = dict(model=model, epochs=args.epochs, batch_size=128, lr=3e-3, seed=0, progress=False)
        metrics = default_metrics(n_classes=task.n_classes, has_sensitive=task.has_sensitive)
        times = {"plain": [], "trainer": [], "budgeted": [], "adaptive": []}
        shares = []
        for _ in range(args.repeats):
            t = time.perf_counter(); evaluate(plain_loop(task, model=model, epochs=args.epochs, validate=lambda m: evaluate(m, task.val, metrics=metrics)), task.test, metrics=metrics); times["plain"].append(time.perf_counter() - t)
            t = time.perf_counter(); Trainer(**kw).fit(task); times["trainer"].append(time.perf_counter() - t)
            b = Budget(time_s=1e6, memory_mb=1e6, flops=1e18)
            t = time.perf_counter(); Trainer(**kw, budget=b).fit(task); times["budgeted"].append(time.perf_counter() - t)
            terms = [CrossEntropy(), *([FairnessPenalty(surrogate="dp")] if task.has_sensitive else []),
                     AdversarialLoss.for_task(task, eps=0.1, steps=3)]
            t = time.perf_counter()
            rec = Trainer(**kw, terms=terms, robust_eval=RobustEval(eps=0.1), callbacks=[DynamicLambda()]).fit(task)
            times["adaptive"].append(time.perf_counter() - t)
            ep = rec.epochs_frame()
            spent = float(ep["eval_time_s"].sum() + ep.get("callback_s", 0.0).sum())
            shares.append(spent / rec.usage["time_s"])
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:8s} {med['plain']:8.2f} {med['trainer']:9.2f} {med['budgeted']:9.2f} "
              f"{med['trainer'] / med['plain']:13.2f} {med['budgeted'] / med['plain']:12.2f} "
              f"{med['adaptive']:10.2f} {statistics.median(shares):15.1%}")


if __name__ == "__main__":
    main()
