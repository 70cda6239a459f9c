"""Benchmark: what the corruption suite costs per image, and what scoring several seeds costs.

The corruption package works one image at a time in numpy, so a model's corruption table
(19 corruptions × 5 severities) over a whole test set is the largest single cost of the tour's
full report. This prints, on ``--dataset``'s test images (one process, ``--threads`` threads):

* milliseconds per image for each corruption at severity 3 (images upsampled to 32 px inside);
* the seconds of ``corruption_table`` for ``--seeds`` models scored one after another on one
  corrupted test set (the tour's rule: one corruption seed for every model), the first model
  computing the corruptions and the others reading them from the cache, against the same models
  each drawing their own corruptions (no cache); the ratio of the two is measured in this run;
* what the whole test set would cost one model, from the per-image figures (an estimate: it is not run).

    .venv/bin/python benchmarks/corruption_cost.py [--dataset fashion_mnist] [--examples 300] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trustkit.config import set_threads
from trustkit.data import CORRUPTIONS, clear_corruption_cache, corrupt_images, load_task
from trustkit.metrics import corruption_table
from trustkit.train import Trainer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--examples", type=int, default=300, help="test images scored (a class-stratified subset)")
    ap.add_argument("--seeds", type=int, default=3, help="models scored one after another")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    from trustkit.data._images import _stratified_subset

    task = load_task(args.dataset, seed=0, **({"max_train": 2000} if args.dataset == "fashion_mnist" else {}))
    keep = _stratified_subset(task.test.y, args.examples, 0, "examples")
    X, y = task.test.X[keep], task.test.y[keep]
    n_test = len(task.test)
    print(f"{task.name}: {len(X)} of {n_test:,} test images, shape {X.shape[1:]}, {args.threads} thread(s)")
    corrupt_images(X[:4], "glass_blur", 1, cache=False)  # compiles glass_blur's numba loop once
    per = {}
    for c in CORRUPTIONS:
        t0 = time.perf_counter()
        corrupt_images(X, c, 3, seed=0, cache=False)
        per[c] = (time.perf_counter() - t0) / len(X) * 1e3
    print(f"{'corruption':<20} {'ms / image':>10}")
    for c, ms in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"{c:<20} {ms:>10.2f}")
    total = sum(per.values())
    print(f"{'all 19':<20} {total:>10.2f}")
    print(f"estimate for one model on all {n_test:,} test images at 5 severities: "
          f"{total * n_test * 5 / 1e3:,.0f} s (+ {total * n_test / 1e3:,.0f} s for the severity-5 OOD score "
          f"without the cache)")

    models = []
    for s in range(args.seeds):
        tr = Trainer(model="cnn", epochs=1, seed=s, progress=False)
        tr.fit(task)
        models.append(tr.model_)
    clear_corruption_cache()
    t0 = time.perf_counter()
    fresh = [corruption_table(m, X, y, seed=s) for s, m in enumerate(models)]  # each model its own draw
    own = time.perf_counter() - t0
    clear_corruption_cache()
    t0 = time.perf_counter()
    laps = []
    for m in models:  # one corruption seed for every model: computed once, then read from the cache
        t1 = time.perf_counter()
        corruption_table(m, X, y, seed=0)
        laps.append(time.perf_counter() - t1)
    shared = time.perf_counter() - t0
    clear_corruption_cache()
    mean_acc = np.mean([f["accuracy"].mean() for f in fresh])
    print(f"\n{args.seeds} models, 19 corruptions x 5 severities on {len(X)} images (mean corruption accuracy {mean_acc:.3f}):")
    print(f"  each model its own corruption draw: {own:.1f} s")
    print(f"  one draw for all, cached:           {shared:.1f} s (first model {laps[0]:.1f} s, then "
          f"{', '.join(f'{t:.2f}' for t in laps[1:])} s)")
    print(f"  ratio cached / own draws: {shared / own:.2f}")


if __name__ == "__main__":
    main()
