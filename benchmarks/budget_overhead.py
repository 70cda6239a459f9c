"""Benchmark: what measuring and enforcing a budget costs, as ratios measured in one run.

For each task, trains the same model with the same seed three ways, interleaved and repeated
(the machine is shared and noisy, so only ratios within one run are reported):

* plain     — a minimal hand-written Adam loop, no meter, no validation;
* trainer   — trustkit's Trainer without a budget (meter thread, FLOP counting on the meta
              device, per-epoch validation metrics);
* budgeted  — the Trainer with time, memory and FLOP limits large enough not to stop it.

Prints the median wall time of each and the ratios trainer/plain and budgeted/trainer.

    .venv/bin/python benchmarks/budget_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trustkit.budget import Budget
from trustkit.data import load_task
from trustkit.models import make_model
from trustkit.train import Trainer


def plain_loop(task, model_name, epochs, batch_size, lr, seed):
    model = make_model(model_name, input_shape=task.input_shape, n_classes=task.n_classes, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X, y = torch.as_tensor(task.train.X), torch.as_tensor(task.train.y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"{'task':8s} {'model':5s} {'plain s':>8s} {'trainer s':>9s} {'budget s':>9s} {'trainer/plain':>13s} {'budget/trainer':>14s}")
    for name, model in (("adult", "mlp"), ("compas", "mlp"), ("digits", "cnn")):
        task = load_task(name, seed=0)
        kw = dict(model=model, epochs=args.epochs, batch_size=128, lr=3e-3, seed=0, progress=False)
        times = {"plain": [], "trainer": [], "budgeted": []}
        for _ in range(args.repeats):
            t = time.perf_counter(); plain_loop(task, model, args.epochs, 128, 3e-3, 0); times["plain"].append(time.perf_counter() - t)
            t = time.perf_counter(); Trainer(**kw).fit(task); times["trainer"].append(time.perf_counter() - t)
            b = Budget(time_s=1e6, memory_mb=1e6, flops=1e18)
            t = time.perf_counter(); Trainer(**kw, budget=b).fit(task); times["budgeted"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name:8s} {model:5s} {med['plain']:8.2f} {med['trainer']:9.2f} {med['budgeted']:9.2f} "
              f"{med['trainer'] / med['plain']:13.2f} {med['budgeted'] / med['trainer']:14.2f}")
    print("trainer/plain includes per-epoch validation metrics and the final test evaluation.")


if __name__ == "__main__":
    main()
