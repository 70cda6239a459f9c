"""Benchmark: what pruning, quantisation and distillation cost in size, speed, accuracy, fairness and robustness.

For the MLP on Adult and COMPAS and the small CNN on Fashion-MNIST (digits with ``--quick``), per
seed: train a dense model, then derive each variant from it —

* ``prune_u50/80/95``: global magnitude pruning (zeros stored densely) + a short fine-tune that
  keeps the zeros; ``prune_s50/80/95``: structured pruning (neurons/channels removed: a smaller
  dense model) + the same fine-tune; ``prune_s80+balanced``: structured 80 % fine-tuned with each
  group's accuracy drop bounded by 2 points (cooper multipliers) instead of plainly;
* ``int8``: tables torchao dynamic int8 (Linear), images PyTorch FX static int8 calibrated on the
  training split; ``int8_fbgemm``: PyTorch dynamic int8 (tables); ``int4``: torchao 4-bit weights
  (stored one per byte); ``int4_sim``: 4-bit rounding simulated in float32 (saves nothing);
* ``student``: a narrower model distilled from the dense one (T=4, α=0.5), same epochs.

Prints one table per dataset (mean ± std over seeds): parameters, bytes, latency at batch 1 and
256 as a ratio to the dense model of the same seed (measured in this process, torch threads
printed), accuracy, DP / EO gap (tables), best−worst group accuracy (sensitive groups on tables,
classes on images), the worst group's accuracy change, agreement with the dense model, PGD
accuracy (ε=0.1; int8 models attacked through the dense gradients, a transfer attack). Then paired
t-tests (by seed) of each variant against the dense model on the fairness gap.

    .venv/bin/python benchmarks/compression.py [--seeds 3] [--quick] [--threads 2] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from trustkit.compress import (
    compressed_profile, constrained_finetune, distill, finetune, prune_structured, prune_unstructured, quantize,
)
from trustkit.compress._finetune import _as_compressed
from trustkit.data import load_task
from trustkit.stats import correct, format_mean_std, paired_ttest
from trustkit.train import Trainer

SETUPS = {
    "adult": dict(model="mlp", epochs=10, lr=3e-3, student={"hidden": 16}, finetune_steps=200, load={}),
    "compas": dict(model="mlp", epochs=20, lr=3e-3, student={"hidden": 16}, finetune_steps=100, load={}),
    "fashion_mnist": dict(model="cnn", epochs=4, lr=3e-3, student={"width": 4, "hidden": 32}, finetune_steps=150,
                          load={"max_train": 20000}),
    "digits": dict(model="cnn", epochs=15, lr=3e-3, student={"width": 4, "hidden": 32}, finetune_steps=60, load={}),
}


def variants(dense, task, setup, seed):
    """(name, thunk) pairs; each thunk returns a Compressed."""
    shape = task.input_shape
    ft = dict(steps=setup["finetune_steps"], lr=1e-3, seed=seed)
    out = [("dense", lambda: _as_compressed(dense))]
    for s in (0.5, 0.8, 0.95):
        out.append((f"prune_u{int(s * 100)}", lambda s=s: finetune(prune_unstructured(dense, sparsity=s), task, **ft)[0]))
        out.append((f"prune_s{int(s * 100)}", lambda s=s: finetune(prune_structured(dense, sparsity=s, input_shape=shape), task, **ft)[0]))
    out.append(("prune_s80+balanced", lambda: constrained_finetune(
        dense, prune_structured(dense, sparsity=0.8, input_shape=shape), task, max_drop=0.02,
        groups="sensitive" if task.has_sensitive else "label", steps=ft["steps"], epochs=1, lr=1e-3, seed=seed)[0]))
    if task.kind == "image":
        out.append(("int8", lambda: quantize(dense, scheme="int8_static", calibration=task.train)))
    else:
        out.append(("int8", lambda: quantize(dense, scheme="int8_dynamic", backend="torchao")))
        out.append(("int8_fbgemm", lambda: quantize(dense, scheme="int8_dynamic", backend="torch.ao")))
    out.append(("int4", lambda: quantize(dense, scheme="int4_weight")))
    out.append(("int4_sim", lambda: quantize(dense, scheme="int4_simulated")))
    out.append(("student", lambda: distill(dense, task, student=setup["model"], student_kwargs=setup["student"],
                                           epochs=setup["epochs"], lr=setup["lr"], seed=seed)[0]))
    return out


def run(name, seeds, store: Path | None, threads: int):
    setup = SETUPS[name]
    rows = []
    for seed in seeds:
        task = load_task(name, seed=seed, **setup["load"])
        tr = Trainer(model=setup["model"], epochs=setup["epochs"], lr=setup["lr"], seed=seed, progress=False)
        tr.fit(task)
        dense = tr.model_.eval()
        for vname, make in variants(dense, task, setup, seed):
            path = None if store is None else store / f"{name}_{seed}_{vname}.json"
            if path is not None and path.exists():
                rows.append(json.loads(path.read_text()))
                continue
            t0 = time.perf_counter()
            c = make()
            row = compressed_profile(c, dense, task, max_attack=1000, pgd_steps=10, min_run_time=0.3, threads=threads,
                                     seed=seed)
            row.pop("exemplars")
            row.update(dataset=name, seed=seed, variant=vname, wall_s=time.perf_counter() - t0)
            rows.append(row)
            if path is not None:
                tmp = path.with_suffix(".part")
                tmp.write_text(json.dumps(row, default=float))
                tmp.replace(path)
            print(f"  {name} seed {seed} {vname:20s} acc {row['accuracy']:.3f} bytes {row['bytes_after']:>9,} "
                  f"lat@1 {row['latency_ms@1']:.3f} ms ({row['wall_s']:.1f} s)", flush=True)
    df = pd.DataFrame(rows)
    dense_lat = df[df.variant == "dense"].set_index("seed")
    for b in (1, 256):
        df[f"latency_x@{b}"] = df[f"latency_ms@{b}"] / df["seed"].map(dense_lat[f"latency_ms@{b}"])
    return df


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="digits instead of Fashion-MNIST, and 2 seeds")
    ap.add_argument("--datasets", nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--store", default=None, help="a folder to keep finished variants in (resumable)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(2 if args.quick else args.seeds))
    names = args.datasets or ["adult", "compas", "digits" if args.quick else "fashion_mnist"]
    store = None if args.store is None else Path(args.store)
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    print(f"torch threads: {torch.get_num_threads()}; seeds: {seeds}")
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    for name in names:
        t0 = time.perf_counter()
        df = run(name, seeds, store, args.threads)
        tab = df[df.columns.intersection(["dp_gap", "eo_gap"])].columns.tolist()
        metrics = ["params_after", "bytes_after", "latency_x@1", "latency_x@256", "accuracy", *tab,
                   "impact_group_acc_gap", "impact_worst_group_change", "impact_agreement", "pgd@0.1"]
        print(f"\n== {name} ({len(seeds)} seeds, {time.perf_counter() - t0:.0f} s) ==")
        print(format_mean_std(df, by="variant", metrics=metrics, digits=3).to_string(index=False))
        gap = "eo_gap" if "eo_gap" in df else "impact_group_acc_gap"
        tests = pd.concat([paired_ttest(df, metric=m, baseline="dense", method_col="variant")
                           for m in dict.fromkeys([gap, "impact_group_acc_gap"])], ignore_index=True)
        tests = correct(tests, what=f"compressed variants against the dense model on {name}")
        print(f"\npaired t-tests vs dense (by seed); {tests.attrs['family']}:")
        print(tests[["metric", "method", "baseline_mean", "method_mean", "diff", "p_value", "q_value", "n"]]
              .round(4).to_string(index=False))


if __name__ == "__main__":
    main()
