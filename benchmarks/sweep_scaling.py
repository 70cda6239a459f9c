"""Benchmark: the same sweep sequentially, in 2 local processes and on a Dask LocalCluster of 2 workers.

Prints, for each executor, the wall time of the whole grid, cells per minute, the ratio to the
sequential run, and the torch threads each run used (sequential: all cores; parallel: the cores
divided by the workers). Then the kill-and-resume check: the sweep runs in a child process
(``trustkit sweep``), is killed with SIGKILL once some cells are written, and is resumed; the
records are counted (expected: every cell exactly once, the ones finished before the kill byte for
byte unchanged).

    .venv/bin/python benchmarks/sweep_scaling.py [--grid grids/scaling.yaml] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trustkit.experiments import expand_grid, run_sweep, worker_threads

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default=str(ROOT / "grids" / "scaling.yaml"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    n = len(expand_grid(args.grid))
    print(f"grid {args.grid}: {n} cells; cores: {worker_threads(1)}")
    base = None
    for executor in ("sequential", "processes", "dask"):
        store = tempfile.mkdtemp(prefix=f"sweep_{executor}_")
        workers = None if executor == "sequential" else args.workers
        t0 = time.perf_counter()
        df = run_sweep(args.grid, store=store, executor=executor, workers=workers, progress=False)
        wall = time.perf_counter() - t0
        base = base or wall
        print(f"{executor:10s} workers={workers or 1} threads/run={sorted(set(df['threads']))} wall {wall:6.1f} s "
              f"{60 * len(df) / wall:6.1f} cells/min  speed-up ×{base / wall:.2f}  (cells {len(df)}/{n})", flush=True)

    store = Path(tempfile.mkdtemp(prefix="sweep_kill_"))
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trustkit.cli", "sweep", args.grid, "--store", str(store)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    want = max(2, n // 2)
    while len(list(store.glob("*.json"))) < want and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in store.glob("*.json")}
    df = run_sweep(args.grid, store=store, progress=False)
    after = {p.name: p.read_bytes() for p in store.glob("*.json")}
    kept = sum(after.get(k) == v for k, v in before.items())
    print(f"kill-and-resume: killed (SIGKILL) with {len(before)} of {n} cells written; after resuming "
          f"{len(after)} records for {n} cells ({len(df)} rows, {len(set(after))} distinct), "
          f"{kept}/{len(before)} records written before the kill unchanged; "
          f"{'OK' if len(after) == n == len(df) and kept == len(before) else 'MISMATCH'}")


if __name__ == "__main__":
    main()
