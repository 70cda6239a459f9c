"""Benchmark: which training subset to keep when labels are noisy.

Labels of the *training* split are flipped at a known rate (validation and test stay clean):
``uniform`` flips points drawn from the whole split, ``group`` only points of the minority
sensitive group (Adult: Female, COMPAS: Other; digits: labels 0–4), so that the flipped share of
the split is the rate either way (:func:`trustkit.data.plant_label_noise`). Each method then keeps
``--fraction`` of the noisy split, the same MLP is retrained on it, and per dataset × kind × rate
and method the benchmark prints, as mean ± std over seeds:

* ``flipped_kept``: the share of flipped points in the kept subset (random keeps the rate);
* ``val_loss``: cross-entropy of the retrained model on the clean validation split;
* ``error`` and ``eo_gap`` (tasks with a sensitive attribute) on the clean test split;

VTruST and TracIn use the accuracy value (``--value``: the noise is in the labels); digits is
read at its native 8×8 pixels, flattened into 64 columns.
* ``select_x``: selection time over one plain training loop of the selector's epochs;
* ``degenerate``: runs whose model predicts one class or errs 0.10 above whole data (left out of tests);

and, per metric, the paired difference against a random subset (95% interval), with
Benjamini–Hochberg q-values over every test printed as one family, and the verdict.

    .venv/bin/python benchmarks/planted_noise.py --quick
    .venv/bin/python benchmarks/planted_noise.py --datasets compas digits --out benchmarks/results/planted_noise_compas_digits.txt

Runs are kept in ``--store`` (one store per dataset), so a killed run resumes where it stopped.
A (kind, rate) that the group cannot hold (Adult's Female group is 32% of the split, so no 40%
group noise) is skipped with a note.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pandas as pd

from trustkit.experiments import planted_noise_table, selection_comparison

#: loader settings per dataset (digits at its native 8×8 pixels, flattened into 64 columns)
LOADER = {"digits": {"image_size": 8}}
DEFAULT_METHODS = ["whole", "random", "tracin", "tracin_stratified", "vtrust", "vtrust_va", "cleanlab", "data_oob",
                   "knn_shapley"]


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["compas", "adult", "digits"])
    ap.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.2, 0.4])
    ap.add_argument("--kinds", nargs="+", default=["uniform", "group"], choices=["uniform", "group"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--fraction", type=float, default=0.6)
    ap.add_argument("--select-epochs", type=int, default=10)
    ap.add_argument("--train-epochs", type=int, default=30)
    ap.add_argument("--lam", type=float, default=0.5, help="λ of VTruST and TracIn")
    ap.add_argument("--value", default="accuracy",
                    help="value function of VTruST and TracIn (the noise is in the labels, so accuracy by default; "
                         "accuracy+fairness weighs the EO disparity too)")
    ap.add_argument("--store", default="reports/planted_noise_store", help="folder of the resumable stores")
    ap.add_argument("--out", default=None, help="also write the printed tables to this file")
    ap.add_argument("--quick", action="store_true",
                    help="compas, rate 0.2, both kinds, seeds 0 1, 3 selection / 10 training epochs (about 2 minutes)")
    a = ap.parse_args(argv)
    if a.quick:
        a.datasets, a.rates, a.seeds, a.select_epochs, a.train_epochs = ["compas"], [0.2], [0, 1], 3, 10
    return a


def main(argv=None) -> None:
    import torch

    torch.set_num_threads(1)
    a = _args(argv)
    lines: list[str] = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    t0 = time.perf_counter()
    frames, skipped = [], []
    for d in a.datasets:
        for kind in a.kinds:
            for rate in a.rates:
                try:
                    frames.append(selection_comparison(
                        d, methods=a.methods, fraction=a.fraction, lams=[a.lam], seeds=a.seeds,
                        value=a.value, dataset_kwargs=LOADER.get(d),
                        select_epochs=a.select_epochs, train_epochs=a.train_epochs, store=os.path.join(a.store, d),
                        label_noise={"rate": rate, "kind": kind}, progress=False))
                except ValueError as e:
                    if "is more than the share of the group" not in str(e):
                        raise
                    skipped.append(f"{d}, {kind} {rate:g}: {e}")
                print(f"[{time.perf_counter() - t0:.0f} s] {d} {kind} {rate:g} done", file=sys.stderr, flush=True)
    df = pd.concat(frames, ignore_index=True)
    table = planted_noise_table(df, baseline="random")
    say(f"planted label noise: methods keep {a.fraction:g} of the noisy training split; seeds {a.seeds}; "
        f"select_epochs={a.select_epochs}, train_epochs={a.train_epochs}, value {a.value}, λ={a.lam:g}")
    say("columns: mean ± std over seeds; 'vs random': paired difference [95% CI] over the non-degenerate seeds, "
        "q, verdict")
    with pd.option_context("display.width", 400, "display.max_columns", 40, "display.max_colwidth", 60):
        for (d, kind, rate), g in table.groupby(["dataset", "noise_kind", "flip_rate"], sort=False):
            say(f"\n== {d}, {kind} noise, flip rate {rate:g} ==")
            say(g.drop(columns=["dataset", "noise_kind", "flip_rate"]).to_string(index=False))
    say(f"\nfamily: {table.attrs['family']}")
    deg = df[df["degenerate"]]
    if len(deg):
        say("\ndegenerate runs (left out of every difference):")
        say(deg[["dataset", "noise_kind", "flip_rate", "label", "seed", "degenerate_reason"]].to_string(index=False))
    for s in skipped:
        say(f"skipped: {s}")
    say(f"\nwall time {time.perf_counter() - t0:.0f} s on this machine (stored runs are read, not rerun)")
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
