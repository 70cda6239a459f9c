"""Benchmark: R seeds of one tabular cell as R separate fits against one replica job.

For R in ``--replicas`` (default 1, 10, 30): the same model (MLP, ``--hidden`` wide), epochs,
batch size and seeds fitted one after another with ``Trainer`` (each validating every epoch and
reporting on test, as in a sweep) and as one ``ReplicaTrainer`` job, interleaved and repeated;
the median seconds of each and their ratio, measured in the same run. Also the cost of the job
against one fit: the goal is ten seeds within 3× one.

    .venv/bin/python benchmarks/replicas.py [--task adult] [--replicas 1 10 30] [--epochs 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

from trustkit.config import set_threads
from trustkit.data import load_task
from trustkit.train import ReplicaTrainer, Trainer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="adult")
    ap.add_argument("--replicas", type=int, nargs="*", default=[1, 10, 30])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    task = load_task(args.task, seed=0)
    kw = dict(model_kwargs={"hidden": args.hidden}, epochs=args.epochs, batch_size=args.batch_size)
    print(f"{args.task}: {len(task.train):,} training rows, MLP hidden={args.hidden}, {args.epochs} epochs, "
          f"batch {args.batch_size}, {args.threads} thread(s); median of {args.repeats}")

    def separate(R):
        t0 = time.perf_counter()
        for s in range(R):
            Trainer(seed=s, progress=False, **kw).fit(task)
        return time.perf_counter() - t0

    def batched(R):
        t0 = time.perf_counter()
        ReplicaTrainer(seeds=list(range(R)), progress=False, **kw).fit(task)
        return time.perf_counter() - t0

    separate(1), batched(2)  # warm-up: imports, kernels, FLOP counts
    one = None
    print(f"{'seeds':>6} {'separate s':>11} {'replicas s':>11} {'replicas / separate':>20} {'replicas / one fit':>19}")
    for R in args.replicas:
        sep, bat = [], []
        for _ in range(args.repeats):
            sep.append(separate(R))
            bat.append(batched(R))
        s, b = statistics.median(sep), statistics.median(bat)
        if R == 1 or one is None:
            one = statistics.median([separate(1) for _ in range(args.repeats)]) if R != 1 else s
        print(f"{R:>6} {s:>11.2f} {b:>11.2f} {b / s:>20.2f} {b / one:>19.2f}")


if __name__ == "__main__":
    main()
