"""Benchmark: a sweep with every cell trained alone against the same sweep with replica jobs.

Runs ``--grid`` (default the quick grid) twice into fresh stores, in the same process and order
(alone first, then ``replicas=True``), optionally with ``--seeds N`` seeds instead of the grid's;
prints each wall time, their ratio, the summed training time and how many cells shared a job.

    .venv/bin/python benchmarks/sweep_replicas.py [--grid grids/quick.yaml] [--seeds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from trustkit.config import set_threads
from trustkit.experiments import expand_grid, load_grid, run_sweep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default="grids/quick.yaml")
    ap.add_argument("--seeds", type=int, default=None, help="replace the grid's seeds by 0..N-1")
    ap.add_argument("--workers", type=int, default=1, help="1: sequential with all cores' threads")
    ap.add_argument("--only", choices=["alone", "replicas"], default=None, help="run one of the two")
    args = ap.parse_args()
    grid = load_grid(args.grid)
    if args.seeds:
        grid["seeds"] = list(range(args.seeds))
    threads = set_threads(None if args.workers == 1 else 1)
    n = len(expand_grid(grid))
    print(f"{grid.get('name', args.grid)}: {n} cells, workers {args.workers}, {threads} torch thread(s) per process")
    times = {}
    for rep in ([False, True] if args.only is None else [args.only == "replicas"]):
        store = tempfile.mkdtemp(prefix="sweep_")
        t = time.perf_counter()
        df = run_sweep(grid, store=store, replicas=rep, progress=False,
                       executor="processes" if args.workers > 1 else "sequential",
                       workers=args.workers if args.workers > 1 else None)
        times[rep] = time.perf_counter() - t
        print(f"{'replicas' if rep else 'alone':>8}: {times[rep]:7.1f} s wall for {len(df)} cells; training "
              f"{df['fit_wall_s'].sum():6.1f} s; cells in a shared job {int((df['replicas'] > 1).sum())}; "
              f"did not train {int((~df['trained'].astype(bool)).sum())}", flush=True)
    if len(times) == 2:
        print(f"replicas / alone: {times[True] / times[False]:.2f}")


if __name__ == "__main__":
    main()
