"""Benchmark: what selecting a training subset costs, against training, as ratios measured in one run.

Per dataset and seed (one process, the same model and epochs everywhere):

* plain          — a hand-written 10-epoch Adam loop on the whole training split (no validation);
* trainer        — ``Trainer`` (ERM, default metrics) for the same epochs;
* each selector  — VTruST fast (default) and exact (``exact=True``), random, SSFR-style,
                   TracIn top-k (plain and class-stratified), selecting ``--fraction`` with
                   ``--epochs`` epochs of its own training (on images: VTruST with the CNN and
                   random; the baselines train the tabular MLP);
* end-to-end     — selection + a ``Trainer`` run on the subset, against the ``Trainer`` on all data;
* quality        — the retrained model's test EO gap (tables) and error, so speed never silently
                   costs quality.

Prints, per dataset and method, the medians over seeds of: selection ÷ plain, end-to-end ÷
whole-data training, EO gap and error (mean ± std over seeds), and VTruST fast's subset overlap
(Jaccard) with the exact one on the same seed, beside the overlap of two fast selections
with different selector seeds on the same split (how much a selection moves anyway). Threads: ``--threads`` (default 1).

    .venv/bin/python benchmarks/selection_cost.py [--datasets compas adult digits] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
import warnings

import numpy as np
from trustkit.config import set_threads
from trustkit.data import load_task
from trustkit.experiments import select_subset
from trustkit.select import VTruST, subset_task
from trustkit.train import Trainer, plain_loop


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="*", default=["compas", "adult", "digits"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--fraction", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-exact", action="store_true", help="skip VTruST's exact path (slow on Adult)")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"torch threads: {threads}; fraction {args.fraction}, {args.epochs} epochs of selection and of training, "
          f"seeds {args.seeds}")
    Trainer(model="mlp", epochs=1, progress=False).fit(load_task("german", seed=0))  # warm-up, not timed
    methods = ["vtrust", "vtrust_exact", "random", "ssfr", "tracin", "tracin_stratified"]
    if args.no_exact:
        methods.remove("vtrust_exact")
    for name in args.datasets:
        task0 = load_task(name, seed=0)
        model = "cnn" if task0.kind == "image" else "mlp"
        value = "accuracy+fairness" if task0.has_sensitive else "accuracy+robustness"
        rows = {m: {"sel": [], "e2e": [], "eo": [], "err": []} for m in ["whole", *methods]}
        overlap, reseeded = [], []
        plain_s, trainer_s = [], []
        for seed in args.seeds:
            task = load_task(name, seed=seed)
            _, tp = timed(lambda: plain_loop(task, model=model, epochs=args.epochs, seed=seed))
            rec, tt = timed(lambda: Trainer(model=model, epochs=args.epochs, seed=seed, progress=False).fit(task))
            plain_s.append(tp)
            trainer_s.append(tt)
            rows["whole"]["eo"].append(rec.test.get("eo_gap", float("nan")))
            rows["whole"]["err"].append(1 - rec.test["accuracy"])
            picked = {}
            for m in methods:
                if m.startswith("vtrust"):
                    extra = {"exact": m == "vtrust_exact"} if "exact" in inspect.signature(VTruST).parameters else {}
                    sel = VTruST(value=value, fraction=args.fraction, epochs=args.epochs, model=model, seed=seed,
                                 progress=False, **extra)
                    res, ts = timed(lambda: sel.select(task))
                    idx = res.indices
                else:
                    if task.kind == "image" and m != "random":  # the baselines' own training is the tabular MLP
                        continue
                    (idx, _), ts = timed(lambda: select_subset(m, task, fraction=args.fraction, value=value,
                                                               epochs=args.epochs, seed=seed))
                picked[m] = set(idx.tolist())
                r, tr = timed(lambda: Trainer(model=model, epochs=args.epochs, seed=seed, progress=False).fit(
                    subset_task(task, idx)))
                rows[m]["sel"].append(ts / tp)
                rows[m]["e2e"].append((ts + tr) / tt)
                rows[m]["eo"].append(r.test.get("eo_gap", float("nan")))
                rows[m]["err"].append(1 - r.test["accuracy"])
            if "vtrust_exact" in picked:
                a, b = picked["vtrust"], picked["vtrust_exact"]
                overlap.append(len(a & b) / len(a | b))
            # the noise reference: the fast selector with another seed (another initialisation and atoms)
            other = VTruST(value=value, fraction=args.fraction, epochs=args.epochs, model=model, seed=seed + 100,
                           progress=False).select(task)
            c = set(other.indices.tolist())
            reseeded.append(len(c & picked["vtrust"]) / len(c | picked["vtrust"]))
        print(f"\n{name} ({model}, {value}): plain loop {statistics.median(plain_s):.2f} s, Trainer "
              f"{statistics.median(trainer_s):.2f} s (Trainer ÷ plain {statistics.median(trainer_s) / statistics.median(plain_s):.2f})")
        print(f"{'method':18s} {'select/plain':>12s} {'e2e/whole':>10s} {'EO gap':>15s} {'error':>15s}")
        for m, r in rows.items():
            if not r["err"]:
                continue
            sel = f"{statistics.median(r['sel']):12.2f}" if r["sel"] else f"{'—':>12s}"
            e2e = f"{statistics.median(r['e2e']):10.2f}" if r["e2e"] else f"{'1.00':>10s}"
            eo = np.array(r["eo"], float)
            err = np.array(r["err"], float)
            eo_s = "—" if np.isnan(eo).all() else f"{np.nanmean(eo):.3f} ± {np.nanstd(eo, ddof=1) if len(eo) > 1 else 0:.3f}"
            print(f"{m:18s} {sel} {e2e} {eo_s:>15s} {err.mean():.3f} ± {(err.std(ddof=1) if len(err) > 1 else 0):.3f}")
        if overlap:
            print(f"VTruST fast vs exact, same seed: subset overlap (Jaccard) {np.mean(overlap):.2f} "
                  f"(per seed {', '.join(f'{o:.2f}' for o in overlap)}); the fast selector with another seed "
                  f"on the same split: {np.mean(reseeded):.2f}")


if __name__ == "__main__":
    main()
