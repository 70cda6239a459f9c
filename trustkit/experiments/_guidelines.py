"""Practitioner guidelines generated from the result stores of the sweep, adaptive training and VTruST.

Each guideline row is one (source, budget regime, dataset, goal): the method with the largest
significant improvement over ERM at that regime, what it costs, and the evidence (paired effect
± std, 95% interval, seeds, p-value, the store and its rows). Without a significant improvement
the row says so. :func:`claims_check` sets published or proposed claims against the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..data import TABULAR_DATASETS
from ..stats import paired_effect
from ._store import ResultStore

__all__ = ["find_stores", "load_phase_results", "guidelines_table", "claims_check", "markdown_table"]

GOALS = {"fairness": "smaller fairness gap", "robustness": "higher robust accuracy"}
_REGIME_NAMES = {"low": "training time: 10% of a full run", "medium": "training time: 50% of a full run",
                 "high": "training time: a full run"}


def find_stores(reports_dir: str | Path) -> dict[str, list[Path]]:
    """The result stores under ``reports_dir`` (searched recursively), by phase: ``sweep`` (folders
    with a ``grid.yaml``), ``adaptive`` (``adaptive_store_*``), ``vtrust`` (``vtrust_store_*``) and
    ``vtrust_robust`` (``vtrust_robust_store``)."""
    root = Path(reports_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"reports_dir {str(root)!r} is not a folder; run the phase notebooks into it first "
                                f"(trustkit report all --out {root})")
    found = {"sweep": sorted(p.parent for p in root.rglob("grid.yaml")),
             "adaptive": sorted(p for p in root.rglob("adaptive_store_*") if p.is_dir()),
             "vtrust": sorted(p for p in root.rglob("vtrust_store_*") if p.is_dir()),
             "vtrust_robust": sorted(p for p in root.rglob("vtrust_robust_store") if p.is_dir())}
    return found


def load_phase_results(reports_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Every record of the stores :func:`find_stores` finds, one frame per phase, with a ``store``
    column (the store's path relative to ``reports_dir``) and ``record`` (the record's file stem,
    its key in the store). Phases without a store give an empty frame."""
    root = Path(reports_dir)
    out = {}
    for phase, stores in find_stores(root).items():
        frames = []
        for s in stores:
            store = ResultStore(s)
            rows = []
            for f in store._record_files():
                d = store._load(f, "skipped")
                if d is not None:
                    rows.append({**d["config"], **d["result"], "record": f.stem})
            if rows:
                frames.append(pd.DataFrame(rows).assign(store=str(s.relative_to(root))))
        out[phase] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(out["adaptive"]) and "method" in out["adaptive"]:
        out["adaptive"] = out["adaptive"][out["adaptive"]["method"].notna() & out["adaptive"].get("regime", pd.Series(dtype=str)).notna()]
    if len(out["sweep"]) and "constraint" in out["sweep"]:
        out["sweep"] = out["sweep"][out["sweep"]["constraint"].notna()]
    return out


def _seeds_text(seeds) -> str:
    s = sorted(int(x) for x in set(seeds))
    return f"seeds {s[0]}–{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 2 else f"seeds {', '.join(map(str, s))}"


def _compare(frame: pd.DataFrame, *, source: str, regime: str, dataset: str, method_col: str, baseline: str,
             goal: str, metric: str, higher: bool, accuracy: str, time_col: str | None, where: str,
             alpha: float, min_seeds: int) -> dict | None:
    """One guideline row: every method of ``frame`` against ``baseline`` on ``metric``, paired by seed."""
    if baseline not in set(frame[method_col]) or metric not in frame or frame[metric].isna().all():
        return None
    b = frame[frame[method_col] == baseline].set_index("seed")
    cands = []
    for m, g in frame[frame[method_col] != baseline].groupby(method_col, sort=False):
        g = g.set_index("seed")
        e = paired_effect(b[metric], g[metric])
        if e["n"] == 0:
            continue
        gain = e["diff"] if higher else -e["diff"]
        acc = paired_effect(b[accuracy], g[accuracy]) if accuracy in g else {"diff": float("nan")}
        t = (float(g[time_col].mean() / b[time_col].mean()) if time_col and time_col in g and b[time_col].mean() > 0
             else float("nan"))
        sig = e["n"] >= min_seeds and np.isfinite(e["p_value"]) and e["p_value"] < alpha and gain > 0
        cands.append({"method": m, **e, "gain": gain, "significant": bool(sig), "accuracy_change": acc["diff"],
                      "time_ratio": t, "seeds": _seeds_text(set(b.index) & set(g.index)),
                      "rows": int(len(g) + len(b))})
    if not cands:
        return None
    c = pd.DataFrame(cands)
    sig = c[c["significant"]]
    best = (sig if len(sig) else c).sort_values("gain", ascending=False).iloc[0]
    kind = "tabular" if dataset in TABULAR_DATASETS else "image"
    name = {"dp_gap": "DP gap", "eo_gap": "EO gap", "robust_accuracy": "robust accuracy"}.get(metric, metric)
    evidence = (f"{name} {best['diff']:+.3f} ± {best['std']:.3f} vs {baseline} (95% CI [{best['lo']:+.3f}, {best['hi']:+.3f}], "
                f"p = {best['p_value']:.2g}, {int(best['n'])} seeds); {where}, {best['method']} and {baseline}, "
                f"{best['seeds']} ({int(best['rows'])} records)")
    cost = []
    if np.isfinite(best["accuracy_change"]):
        cost.append(f"accuracy {best['accuracy_change']:+.3f}")
    if np.isfinite(best["time_ratio"]):
        cost.append(f"{best['time_ratio']:.2f}× the training time")
    row = {"source": source, "budget_regime": regime, "data_type": kind, "dataset": dataset, "goal": GOALS[goal],
           "metric": metric, "recommended": best["method"] if len(sig) else "ERM",
           "best_candidate": best["method"], "effect": best["diff"], "std": best["std"], "ci_low": best["lo"],
           "ci_high": best["hi"], "p_value": best["p_value"], "seeds": int(best["n"]), "significant": bool(len(sig)),
           "accuracy_change": best["accuracy_change"], "time_ratio": best["time_ratio"], "cost": ", ".join(cost) or "not measured",
           "evidence": evidence}
    if len(sig):
        row["guideline"] = (f"On {kind} data ({dataset}), {regime}, for a {GOALS[goal]}: use {best['method']} "
                            f"({name} {best['diff']:+.3f} ± {best['std']:.3f} vs {baseline}, p = {best['p_value']:.2g}, "
                            f"{int(best['n'])} seeds; cost: {row['cost']}).")
    else:
        why = (f"with {int(c['n'].max())} seeds nothing can be told from noise" if c["n"].max() < min_seeds
               else f"the best, {best['method']}, moved {name} by {best['diff']:+.3f} ± {best['std']:.3f} (p = {best['p_value']:.2g})")
        row["guideline"] = (f"On {kind} data ({dataset}), {regime}, for a {GOALS[goal]}: no method was better than "
                            f"ERM here ({why}).")
    return row


def guidelines_table(results: Mapping[str, pd.DataFrame], *, alpha: float = 0.05, min_seeds: int = 3) -> pd.DataFrame:
    """The guideline rows from :func:`load_phase_results`'s frames (or frames of the same columns).

    * ``adaptive``: per dataset and regime, every scheduler against ERM on the DP gap and on PGD accuracy.
    * ``sweep``: per dataset, model and constraint setting, every mitigation against ERM under the
      same constraint on the EO gap and on PGD accuracy.
    * ``vtrust``: per dataset and subset fraction, every selection (and fairlearn's references)
      against whole-data training on the EO gap.

    A method is recommended only with a paired p-value below ``alpha`` over at least ``min_seeds``
    seeds and an effect in the goal's direction; otherwise the row says no method was better.
    """
    rows = []
    kw = dict(alpha=alpha, min_seeds=min_seeds)
    a = results.get("adaptive", pd.DataFrame())
    if len(a):
        for (dataset, regime, store), g in a.groupby(["dataset", "regime", "store"], sort=False):
            where = f"store {store}, regime={regime}"
            for goal, metric, higher in (("fairness", "dp_gap", False), ("robustness", "robust_accuracy", True)):
                r = _compare(g, source="adaptive training", regime=_REGIME_NAMES.get(regime, regime), dataset=dataset,
                             method_col="method", baseline="erm", goal=goal, metric=metric, higher=higher,
                             accuracy="accuracy", time_col="time_s", where=where, **kw)
                if r:
                    rows.append(r)
    s = results.get("sweep", pd.DataFrame())
    if len(s):
        from ._sweep import describe_setting

        s = s.assign(level=s["level"].astype(str))
        for (dataset, model, constraint, level, store), g in s.groupby(["dataset", "model", "constraint", "level", "store"], sort=False):
            regime = "no constraint" if constraint == "none" else describe_setting(constraint, level)
            where = f"store {store}, {model}, constraint={constraint}, level={level}"
            for goal, metric, higher in (("fairness", "eo_gap", False), ("robustness", "robust_accuracy", True)):
                r = _compare(g, source="trade-off sweep", regime=regime, dataset=dataset, method_col="mitigation",
                             baseline="erm", goal=goal, metric=metric, higher=higher, accuracy="accuracy",
                             time_col="train_time_s", where=where, **kw)
                if r:
                    rows.append(r)
    v = results.get("vtrust", pd.DataFrame())
    if len(v):
        v = v.assign(accuracy=1 - v["error"],
                     label=[m if pd.isna(lam) else f"{m} λ={lam:g}" for m, lam in zip(v["method"], v["lam"])])
        for (dataset, fraction, store), g in v.groupby(["dataset", "fraction", "store"], sort=False):
            where = f"store {store}, fraction={fraction:g}"
            r = _compare(g, source="data selection", regime=f"training data: a {fraction:.0%} subset", dataset=dataset,
                         method_col="label", baseline="whole", goal="fairness", metric="eo_gap", higher=False,
                         accuracy="accuracy", time_col=None, where=where, **kw)
            if r:
                rows.append(r)
    cols = ["source", "budget_regime", "data_type", "dataset", "goal", "recommended", "cost", "evidence", "guideline",
            "best_candidate", "metric", "effect", "std", "ci_low", "ci_high", "p_value", "seeds", "significant",
            "accuracy_change", "time_ratio"]
    return pd.DataFrame(rows, columns=cols)


def claims_check(results: Mapping[str, pd.DataFrame], *, alpha: float = 0.05, min_seeds: int = 3) -> pd.DataFrame:
    """Published or proposed claims set against the measurements: claim, who made it, what was
    measured, and the verdict (``supported``, ``contradicted`` or ``not tested``, with the reason)."""
    from ._adaptive import tests_against_best_static

    rows = []
    a = results.get("adaptive", pd.DataFrame())
    claim = ("Adaptive scheduling reduces the fairness gap by up to 30% and raises robust accuracy by up to 20% "
             "over static baselines at a fixed compute budget, in every resource regime")
    if len(a) and {"val_score", "dp_gap", "robust_accuracy"} <= set(a.columns):
        for (dataset, store), g in a.groupby(["dataset", "store"], sort=False):
            try:
                tests, _ = tests_against_best_static(g.drop(columns=["store", "record"]))
            except (ValueError, KeyError):
                continue
            for regime, t in tests.groupby("regime", sort=False):
                parts, held = [], []
                for metric, hope, better in (("dp_gap", -0.30, "min"), ("robust_accuracy", 0.20, "max")):
                    tm = t[t.metric == metric].dropna(subset=["rel_change"])
                    if tm.empty:
                        continue
                    r = tm.loc[tm.rel_change.idxmin() if better == "min" else tm.rel_change.idxmax()]
                    ok = (r.rel_change <= hope if hope < 0 else r.rel_change >= hope) and r.n >= min_seeds and r.p_value < alpha
                    held.append(ok)
                    parts.append(f"{metric} {100 * r.rel_change:+.0f}% ({r.method} vs {r.baseline}, p = {r.p_value:.2g}, {int(r.n)} seeds)")
                if parts:
                    n_max = int(t["n"].max())
                    verdict = ("supported" if all(held) else
                               ("not tested: too few seeds" if n_max < min_seeds else "contradicted"))
                    rows.append({"claim": claim, "made_by": "EfficientTrust proposal", "setting": f"{dataset}, regime {regime}",
                                 "measured": "; ".join(parts) + f" [store {store}]", "verdict": verdict})
    v = results.get("vtrust", pd.DataFrame())
    claim = ("VTruST-F at a 60%-style subset has the lowest fairness gap of all methods (margin 0.01–0.10) at an "
             "error close to whole-data training")
    if len(v):
        v = v.assign(label=[m if pd.isna(lam) else f"{m} λ={lam:g}" for m, lam in zip(v["method"], v["lam"])])
        for (dataset, fraction, store), g in v.groupby(["dataset", "fraction", "store"], sort=False):
            if "whole" not in set(g.method) or "vtrust" not in set(g.method):
                continue
            m = g.groupby("label")[["eo_gap", "error"]].mean()
            n = int(g.seed.nunique())
            vt = [lbl for lbl in m.index if lbl.startswith("vtrust")]
            best_vt = m.loc[vt, "eo_gap"].idxmin()
            others = m.drop(index=vt + ["whole"], errors="ignore")
            lowest = bool(len(others) == 0 or m.loc[best_vt, "eo_gap"] < others["eo_gap"].min())
            close = bool(m.loc[best_vt, "error"] - m.loc["whole", "error"] <= 0.02)
            measured = (f"{best_vt}: EO gap {m.loc[best_vt, 'eo_gap']:.3f}, error {m.loc[best_vt, 'error']:.3f}; whole data "
                        f"{m.loc['whole', 'eo_gap']:.3f}, {m.loc['whole', 'error']:.3f}"
                        + (f"; lowest other: {others['eo_gap'].idxmin()} {others['eo_gap'].min():.3f}" if len(others) else "")
                        + f" (means over {n} seeds) [store {store}]")
            verdict = ("supported" if lowest and close else "contradicted") if n >= min_seeds else \
                f"not tested: only {n} seeds (the means would say {'supported' if lowest and close else 'contradicted'})"
            rows.append({"claim": claim, "made_by": "VTruST paper (Das et al. 2024, Table 1)",
                         "setting": f"{dataset}, fraction {fraction:g}", "measured": measured, "verdict": verdict})
    r = results.get("vtrust_robust", pd.DataFrame())
    if len(r) and {"method", "robust_acc"} <= set(r.columns):
        m = r.groupby("method")["robust_acc"].mean()
        if "vtrust" in m.index and len(m) > 1:
            others = m.drop(index="vtrust")
            best = others.idxmax()
            rows.append({"claim": "VTruST-R's subset gives better robust accuracy than the augmentation baselines",
                         "made_by": "VTruST paper (Das et al. 2024, Tables 3–6)", "setting": "digits, corruption suite",
                         "measured": f"vtrust {m['vtrust']:.3f} vs best other {best} {others.max():.3f} "
                                     f"(means over {int(r.seed.nunique())} seeds) [store {r['store'].iloc[0]}]",
                         "verdict": ("supported" if m["vtrust"] > others.max() else "contradicted")
                         if r.seed.nunique() >= min_seeds else f"not tested: only {int(r.seed.nunique())} seeds"})
    return pd.DataFrame(rows, columns=["claim", "made_by", "setting", "measured", "verdict"])


def markdown_table(df: pd.DataFrame, *, columns=None, digits: int = 3) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table (numbers rounded to ``digits``; ``|`` escaped).

    >>> print(markdown_table(pd.DataFrame({"a": [1.23456], "b": ["x|y"]})))
    | a | b |
    | --- | --- |
    | 1.235 | x\\|y |
    """
    cols = list(columns or df.columns)

    def cell(v):
        if isinstance(v, float):
            return "" if not np.isfinite(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df[cols].itertuples(index=False)]
    return "\n".join(lines)
