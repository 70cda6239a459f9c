"""Practitioner guidelines generated from the result stores of the sweep, adaptive training and VTruST.

Each guideline row is one (source, budget regime, dataset, goal) and ends in one of four verdicts:

* ``recommended``: a method beat ERM in the goal's direction, its paired test significant after
  Benjamini–Hochberg over every test of its section (the row names the family); the largest such
  gain is recommended, with what it costs and the evidence (effect ± std, 95% interval, q, seeds,
  the store and its rows);
* ``no method beat ERM``: every method was either within the metric's equivalence margin of ERM
  (TOST, corrected the same way) or significantly worse — a finding, not a gap;
* ``inconclusive``: neither; the row says how many seeds would decide it;
* ``not tested``: fewer seeds than a paired test needs.

Runs that did not train are left out; runs of different designs (other settings in one store)
are never pooled. :func:`claims_check` sets published or proposed claims against the same stores,
each claim with its own pre-declared family (Holm) and a verdict of *supported*, *contradicted*
(its interval excludes the claimed effect) or *inconclusive*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..data import TABULAR_DATASETS
from ..stats import (adjust_pvalues, best_baseline, claim_verdict, family_text, noninferiority_test,
                     paired_effect)
from ._evidence import add_verdicts, design_labels, paired_tests, trained_mask
from ._store import ResultStore

__all__ = ["find_stores", "load_phase_results", "guideline_tests", "guidelines_table", "claims_check", "adaptive_claims",
           "vtrust_claims", "noise_claims", "robust_claims", "choose_vtrust_lambda", "markdown_table", "GUIDELINE_VERDICTS",
           "PROPOSAL_METHODS"]

GOALS = {"fairness": "smaller fairness gap", "robustness": "higher robust accuracy"}
#: what a guideline row can conclude
GUIDELINE_VERDICTS = ("recommended", "no method beat ERM", "inconclusive", "not tested", "did not train")
#: the schedulers the EfficientTrust and ATATS proposals put forward (their claim is tested on these,
#: all of them, as one family; ablations, the oracle and other work's baselines are not the claim)
PROPOSAL_METHODS = ("dynamic", "efficienttrust", "atats_rule", "atats_pid", "atats_bandit")
_METRIC_WORDS = {"dp_gap": "DP gap", "eo_gap": "EO gap", "robust_accuracy": "robust accuracy", "robust_acc": "robust accuracy",
                 "error": "error", "accuracy": "accuracy"}
#: the settings that make two runs of a phase comparable (runs differing in them are never pooled)
_DESIGN = {"adaptive": ["quick", "ref_time_s", "loader"],
           "vtrust": ["value", "select_epochs", "train_epochs", "selector_version", "loader", "label_noise"],
           "vtrust_robust": ["corruptions", "aug_factor", "epochs", "saug_rounds", "fraction", "lam"]}
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
    if not s:
        return "no seeds"
    return f"seeds {s[0]}–{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 2 else f"seeds {', '.join(map(str, s))}"


def _q(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else (f"{x:.2g}" if x >= 0.001 else f"{x:.1e}")


def _vtrust_labels(v: pd.DataFrame) -> pd.DataFrame:
    lam = v["lam"] if "lam" in v.columns else pd.Series(np.nan, index=v.index)
    return v.assign(label=[m if pd.isna(lv) else f"{m} λ={lv:g}" for m, lv in zip(v["method"], lam)])


def _with_design(frame: pd.DataFrame, phase: str) -> pd.DataFrame:
    if phase == "sweep":
        from ._sweep import DESIGN_COLUMNS

        return frame.assign(design=design_labels(frame, columns=DESIGN_COLUMNS))
    return frame.assign(design=design_labels(frame, columns=_DESIGN.get(phase, [])))


def guideline_tests(results: Mapping[str, pd.DataFrame], *, margins: Mapping[str, float] | None = None) -> dict[str, pd.DataFrame]:
    """The paired tests behind the guidelines, one frame per section (uncorrected; see :func:`guidelines_table`).

    * ``adaptive training``: per store, design, dataset and regime, every scheduler against ERM
      on the DP gap and PGD accuracy;
    * ``trade-off sweep``: per store, design, dataset, model and constraint setting, every
      mitigation against ERM under the same constraint on the EO gap and PGD accuracy;
    * ``data selection``: per store, design, dataset and subset fraction, every selection (and
      fairlearn's references) against whole-data training on the EO gap.

    Each frame has the group's columns, ``arm`` (the method), ``metric`` and the columns of
    :func:`~trustkit.experiments._evidence.paired_tests`; ``accuracy_change`` and ``time_ratio``
    give each method's cost against the baseline over the same seeds.
    """
    out = {}
    a = results.get("adaptive", pd.DataFrame())
    if len(a) and {"method", "regime", "seed"} <= set(a.columns):
        a = _with_design(a, "adaptive").assign(store=a.get("store", ""))
        out["adaptive training"] = _tests(a, within=["store", "design", "dataset", "regime"], arm="method", baseline="erm",
                                          metrics=["dp_gap", "robust_accuracy"], time_col="time_s", margins=margins)
    s = results.get("sweep", pd.DataFrame())
    if len(s) and {"mitigation", "constraint", "seed"} <= set(s.columns):
        s = _with_design(s, "sweep").assign(store=s.get("store", ""), level=s["level"].astype(str))
        out["trade-off sweep"] = _tests(s, within=["store", "design", "dataset", "model", "constraint", "level"],
                                        arm="mitigation", baseline="erm", metrics=["eo_gap", "robust_accuracy"],
                                        time_col="train_time_s", margins=margins)
    v = results.get("vtrust", pd.DataFrame())
    if len(v) and {"method", "fraction", "seed"} <= set(v.columns):
        v = _sound(v)  # degenerate retrained models: their small gaps mean nothing
        v = _with_design(_vtrust_labels(v), "vtrust").assign(store=v.get("store", ""))
        v = v.assign(accuracy=1 - v["error"])
        out["data selection"] = _tests(v, within=["store", "design", "dataset", "fraction"], arm="label", baseline="whole",
                                       metrics=["eo_gap"], time_col=None, margins=margins)
    return out


def _tests(frame, *, within, arm, baseline, metrics, time_col, margins) -> pd.DataFrame:
    metrics = [m for m in metrics if m in frame.columns and frame[m].notna().any()]
    extra = [m for m in ("accuracy",) if m in frame.columns and m not in metrics]
    both = paired_tests(frame, within=within, arm=arm, baseline=baseline, metrics=metrics + extra, margins=margins)
    t = both[both["metric"].isin(metrics)].reset_index(drop=True)
    if t.empty:
        return t.rename(columns={arm: "arm"})
    cost = both[both["metric"] == "accuracy"]
    cost = cost.set_index([*within, arm])["diff"] if len(cost) else pd.Series(dtype=float)
    ok = frame[trained_mask(frame)]
    times = ok.groupby([*within, arm], sort=False, dropna=False)[time_col].mean() if time_col and time_col in frame else None
    acc, ratio = [], []
    for _, r in t.iterrows():
        k = tuple(r[c] for c in within)
        acc.append(float(cost.get(k + (r[arm],), np.nan)) if len(cost) else float("nan"))
        if times is not None:
            b, c = times.get(k + (baseline,), np.nan), times.get(k + (r[arm],), np.nan)
            ratio.append(float(c / b) if np.isfinite(b) and b > 0 and np.isfinite(c) else float("nan"))
        else:
            ratio.append(float("nan"))
    return t.assign(accuracy_change=acc, time_ratio=ratio).rename(columns={arm: "arm"})


_SECTIONS = {"adaptive training": ("regime", "dp_gap"), "trade-off sweep": ("setting", "eo_gap"),
             "data selection": ("fraction", "eo_gap")}


def _regime_words(section: str, r) -> str:
    if section == "adaptive training":
        return _REGIME_NAMES.get(r["regime"], str(r["regime"]))
    if section == "trade-off sweep":
        from ._sweep import describe_setting

        return "no constraint" if r["constraint"] == "none" else describe_setting(r["constraint"], r["level"])
    return f"training data: a {float(r['fraction']):.0%} subset"


def _where(section: str, r) -> str:
    d = f", {r['design']}" if r.get("design") else ""
    if section == "adaptive training":
        return f"store {r['store']}, regime={r['regime']}{d}"
    if section == "trade-off sweep":
        return f"store {r['store']}, {r['model']}, constraint={r['constraint']}, level={r['level']}{d}"
    return f"store {r['store']}, fraction={float(r['fraction']):g}{d}"


def guidelines_table(results: Mapping[str, pd.DataFrame], *, alpha: float = 0.05, min_seeds: int = 3,
                     correction: str = "bh", margins: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The guideline rows from :func:`load_phase_results`'s frames (or frames of the same columns).

    Every test of a section (:func:`guideline_tests`: both goals, every group and method) is one
    family, corrected with ``correction`` (Benjamini–Hochberg by default); each row then gets a
    verdict (see the module's docstring) from the corrected change tests and the corrected
    equivalence tests against the metric's margin (:data:`trustkit.stats.EQUIVALENCE_MARGINS`,
    or ``margins``). A method is recommended only with ``q < alpha``, at least ``min_seeds``
    paired seeds and an effect in the goal's direction. The ``family`` column names the family.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 2:
        raise ValueError(f"min_seeds must be an integer >= 2 (a paired test needs two seeds); got {min_seeds!r}")
    rows = []
    for section, tests in guideline_tests(results, margins=margins).items():
        if tests.empty:
            continue
        metrics = sorted(set(tests["metric"]))
        v = add_verdicts(tests, correction=correction, alpha=alpha, min_seeds=min_seeds,
                         what=f"{section} comparisons against the baseline ({', '.join(_METRIC_WORDS.get(m, m) for m in metrics)})")
        family = v.attrs["family"]
        group_cols = [c for c in v.columns if c in ("store", "design", "dataset", "regime", "model", "constraint", "level", "fraction")]
        for key, g in v.groupby(group_cols + ["metric"], sort=False, dropna=False):
            rows.append(_row(section, g, family=family, min_seeds=min_seeds, alpha=alpha))
    cols = ["source", "budget_regime", "data_type", "dataset", "goal", "verdict", "recommended", "cost", "evidence",
            "guideline", "best_candidate", "metric", "effect", "std", "ci_low", "ci_high", "p_value", "q_value", "seeds",
            "seeds_needed", "significant", "accuracy_change", "time_ratio", "untrained", "family", *_KEYS]
    out = pd.DataFrame(rows, columns=cols)
    out["seeds_needed"] = pd.array([None if pd.isna(x) else int(x) for x in out["seeds_needed"]], dtype="Int64")
    if len(out):  # a stable order whatever order the stores listed their records in
        order = {name: i for i, name in enumerate(_SECTIONS)}
        out = out.assign(_s=out["source"].map(order), _ref=out["constraint"].astype(str) != "none",
                         _g=out["goal"] != GOALS["fairness"])
        out = out.sort_values(["_s", "store", "dataset", "_ref", "budget_regime", "_g"], kind="stable")
        out = out.drop(columns=["_s", "_ref", "_g"]).reset_index(drop=True)
    return out


#: the columns of a guideline row that name the compared group (NaN where a source has no such key)
_KEYS = ["store", "design", "model", "constraint", "level", "regime", "fraction"]


def _row(section: str, g: pd.DataFrame, *, family: str, min_seeds: int, alpha: float) -> dict:
    first = g.iloc[0]
    metric = first["metric"]
    higher = metric in ("robust_accuracy", "accuracy")
    goal = "robustness" if higher else "fairness"
    baseline = "whole data" if section == "data selection" else "ERM"
    gain = g["diff"] if higher else -g["diff"]
    g = g.assign(gain=gain)
    dataset = first["dataset"]
    kind = "tabular" if dataset in TABULAR_DATASETS else "image"
    regime = _regime_words(section, first)
    name = _METRIC_WORDS.get(metric, metric)
    better = g[g["significant"] & (g["gain"] > 0)]
    tested = g[g["n"] >= min_seeds]
    n_max = int(g["n"].max()) if len(g) else 0
    if len(better):
        best, verdict = better.sort_values("gain", ascending=False).iloc[0], "recommended"
    elif n_max < min_seeds:
        best = g.sort_values("gain", ascending=False).iloc[0]
        verdict = "did not train" if n_max == 0 and int(g["untrained"].max()) > 0 else "not tested"
    elif len(tested) == len(g) and (tested["equivalent"] | (tested["significant"] & (tested["gain"] < 0))).all():
        best, verdict = g.sort_values("gain", ascending=False).iloc[0], "no method beat ERM"
    else:
        best, verdict = tested.sort_values("gain", ascending=False).iloc[0], "inconclusive"
    cost = []
    if np.isfinite(best["accuracy_change"]):
        cost.append(f"accuracy {best['accuracy_change']:+.3f}")
    if np.isfinite(best["time_ratio"]):
        cost.append(f"{best['time_ratio']:.2f}× the training time")
    seeds = best["seeds"] if isinstance(best["seeds"], list) else []
    head = f"On {kind} data ({dataset}), {regime}, for a {GOALS[goal]}:"
    if best["constant"]:
        stat = (f"{name} {best['diff']:+.3f} in each of {int(best['n'])} seeds (no spread between seeds, so no test: "
                f"identical differences are not certainty)")
    else:
        stat = (f"{name} {best['diff']:+.3f} ± {best['std']:.3f} vs {baseline} (95% CI [{best['lo']:+.3f}, {best['hi']:+.3f}], "
                f"q = {_q(best['q_value'])}, {int(best['n'])} seeds)")
    evidence = (f"{stat}; {_where(section, first)}, {best['arm']} and {baseline}, {_seeds_text(seeds)}"
                + (f"; {int(g['untrained'].sum())} run(s) that did not train left out" if int(g["untrained"].sum()) else ""))
    needed = best["seeds_needed"]
    needed = int(needed) if needed is not None and not pd.isna(needed) else None
    if verdict == "recommended":
        text = f"{head} use {best['arm']} ({stat}; cost: {', '.join(cost) or 'not measured'}; {family})."
        recommended = best["arm"]
    elif verdict == "no method beat ERM":
        text = (f"{head} no method beat {baseline} here: each was within ±{best['margin']:g} of it in {name} "
                f"(equivalence test) or significantly worse ({family}).")
        recommended = baseline if baseline == "ERM" else "whole data"
    elif verdict == "inconclusive":
        plan = (f"; about {needed} seeds would tell a change of {best['margin']:g} at 80% power" if needed else "")
        text = (f"{head} inconclusive: the best candidate, {best['arm']}, moved {stat}, which neither beats {baseline} "
                f"nor is shown to be within ±{best['margin']:g} of it ({family}){plan}.")
        recommended = ""
    elif verdict == "did not train":
        text = f"{head} not tested: no {baseline} run trained under this budget (left out of every effect)."
        recommended = ""
    else:
        plan = f"; about {needed} seeds would tell a change of {best['margin']:g}" if needed else ""
        text = (f"{head} not tested: {n_max} paired seed(s), fewer than the {min_seeds} a paired test needs "
                f"(largest change so far {name} {best['diff']:+.3f}){plan}.")
        recommended = ""
    return {"source": section, "budget_regime": regime, "data_type": kind, "dataset": dataset, "goal": GOALS[goal],
            "verdict": verdict, "recommended": recommended, "cost": ", ".join(cost) or "not measured",
            "evidence": evidence, "guideline": text, "best_candidate": best["arm"], "metric": metric,
            "effect": best["diff"], "std": best["std"], "ci_low": best["lo"], "ci_high": best["hi"],
            "p_value": best["p_value"], "q_value": best["q_value"], "seeds": int(best["n"]), "seeds_needed": needed,
            "significant": verdict == "recommended", "accuracy_change": best["accuracy_change"],
            "time_ratio": best["time_ratio"], "untrained": int(g["untrained"].sum()), "family": family,
            **{k: first[k] if k in first.index else np.nan for k in _KEYS}}


# ----------------------------------------------------------------------------------------------
# Claims: each pre-declared, each with its own family (Holm), three verdicts


def _holm(tests: list[dict], alpha: float) -> list[dict]:
    q = adjust_pvalues([t["p_value"] for t in tests], method="holm")
    m = int(np.isfinite([t["p_value"] for t in tests]).sum())
    for t, qv in zip(tests, q):
        t["q_value"] = float(qv)
        t["significant"] = bool(np.isfinite(qv) and qv < alpha)
        t["family_size"] = m
    return tests


def _simultaneous(base: pd.Series, cur: pd.Series, m: int, alpha: float) -> dict:
    """The paired effect with a Bonferroni interval (confidence 1 − α/m): a claim is contradicted only
    when this interval, valid for the whole family at once, excludes the claimed direction."""
    return paired_effect(base, cur, confidence=1 - alpha / max(1, m))


def adaptive_claims(frame: pd.DataFrame, *, alpha: float = 0.05, min_seeds: int = 3,
                    methods: tuple = PROPOSAL_METHODS) -> pd.DataFrame:
    """The proposals' claim for adaptive scheduling set against an adaptive-training frame.

    Claim: adaptive scheduling lowers the fairness gap (by up to 30%) and raises robust accuracy
    (by up to 20%) over static baselines at a fixed compute budget, in every regime. Per (store,
    design, dataset): in each regime the best static baseline is chosen on *validation*
    (:func:`trustkit.stats.best_baseline`), and **every** proposal scheduler (``methods``) is
    compared with it on the test DP gap and PGD accuracy, paired by seed; those tests are one
    family, corrected by Holm. A regime's claim is *supported* when some scheduler's corrected test
    shows the claimed direction on both metrics the task has; *contradicted* when, for a metric,
    every scheduler's simultaneous (Bonferroni) interval excludes any gain; *inconclusive*
    otherwise. "Up to" is read as the direction of the effect, not as a size that must be reached:
    the measured relative change is reported beside the verdict.
    """
    from ._adaptive import STATIC_METHODS

    rows = []
    if frame.empty or not {"method", "regime", "seed", "val_score"} <= set(frame.columns):
        return pd.DataFrame(rows)
    f = _with_design(frame, "adaptive")
    f = f[trained_mask(f)]
    if "store" not in f:
        f = f.assign(store="")
    claim = ("Adaptive scheduling reduces the fairness gap by up to 30% and raises robust accuracy by up to 20% over "
             "static baselines at a fixed compute budget, in every resource regime")
    for (store, design, dataset), g in f.groupby(["store", "design", "dataset"], sort=False, dropna=False):
        specs = [(m, d) for m, d in (("dp_gap", -1), ("robust_accuracy", +1)) if m in g and g[m].notna().any()]
        plan = []
        for regime, r in g.groupby("regime", sort=False):
            statics = [m for m in STATIC_METHODS if m in set(r["method"])]
            props = [m for m in methods if m in set(r["method"])]
            if not statics or not props:
                continue
            try:
                base_name = best_baseline(r, methods=statics).iloc[0]["method"]
            except ValueError:
                continue
            base = r[r["method"] == base_name].drop_duplicates("seed").set_index("seed")
            for m in props:
                cur = r[r["method"] == m].drop_duplicates("seed").set_index("seed")
                for metric, direction in specs:
                    e = paired_effect(base[metric], cur[metric])
                    plan.append({"regime": regime, "method": m, "baseline": base_name, "metric": metric,
                                 "direction": direction, "base": base[metric], "cur": cur[metric],
                                 **e, "p_value": e["p_value"] if e["n"] >= min_seeds else float("nan")})
        if not plan:
            continue
        _holm(plan, alpha)
        m_tests = plan[0]["family_size"]
        fam = family_text("holm", m_tests, "this claim (every proposal scheduler × metric × regime)", alpha=alpha)
        for regime in dict.fromkeys(t["regime"] for t in plan):
            parts, verdicts = [], []
            for metric, direction in specs:
                ts = [t for t in plan if t["regime"] == regime and t["metric"] == metric]
                if not ts:
                    continue
                good = [t for t in ts if t["significant"] and np.sign(t["diff"]) == direction]
                n = max(int(t["n"]) for t in ts)
                if n < min_seeds:
                    verdicts.append("not tested")
                elif good:
                    verdicts.append("supported")
                else:
                    sims = [_simultaneous(t["base"], t["cur"], m_tests, alpha) for t in ts]
                    excl = all(claim_verdict(lo=s_["lo"], hi=s_["hi"], significant=False, direction=direction, n=int(s_["n"]),
                                             min_seeds=min_seeds) == "contradicted" for s_ in sims)
                    verdicts.append("contradicted" if excl else "inconclusive")
                show = max(good, key=lambda t: abs(t["diff"])) if good else min(ts, key=lambda t: t["p_value"] if np.isfinite(t["p_value"]) else 2)
                rel = show["diff"] / float(show["base"].mean()) if float(show["base"].mean()) else float("nan")
                lead = "" if good else "no scheduler significantly better (lowest p shown): "
                parts.append(f"{_METRIC_WORDS[metric]} {lead}{100 * rel:+.0f}% ({show['method']} vs {show['baseline']}: "
                             f"{show['diff']:+.3f}, 95% CI [{show['lo']:+.3f}, {show['hi']:+.3f}], Holm-adjusted p = "
                             f"{_q(show['q_value'])}, {int(show['n'])} seeds)")
            if not verdicts:
                continue
            verdict = ("not tested" if "not tested" in verdicts else "contradicted" if "contradicted" in verdicts
                       else "supported" if all(v == "supported" for v in verdicts) else "inconclusive")
            d = f", {design}" if design else ""
            rows.append({"claim": claim, "made_by": "EfficientTrust proposal", "setting": f"{dataset}, regime {regime}{d}",
                         "measured": "; ".join(parts) + f" [store {store}]", "verdict": verdict, "family": fam})
    return pd.DataFrame(rows)


def choose_vtrust_lambda(frame: pd.DataFrame, *, tolerance: float = 0.02) -> tuple[str | None, str]:
    """The VTruST λ a claim or guideline quotes, chosen on **validation**, never on test.

    Among the VTruST labels of ``frame`` (one dataset and fraction), the one with the lowest mean
    validation EO gap whose mean validation error is within ``tolerance`` of whole-data training's
    (all of them when none is). Returns the label and a sentence saying how it was chosen; ``None``
    when the records have no validation metrics.
    """
    f = _vtrust_labels(frame) if "label" not in frame.columns else frame
    vt = f[f["method"] == "vtrust"]
    if vt.empty:
        return None, "no VTruST run"
    if not {"val_eo_gap", "val_error"} <= set(f.columns) or vt["val_eo_gap"].isna().all():
        return None, "these records have no validation metrics to choose λ on (rerun them to get them)"
    m = vt.groupby("label", sort=False)[["val_eo_gap", "val_error"]].mean()
    whole = f[f["method"] == "whole"]["val_error"].mean()
    ok = m[m["val_error"] <= whole + tolerance] if np.isfinite(whole) else m
    pool = ok if len(ok) else m
    label = pool["val_eo_gap"].idxmin()
    return label, (f"{label} chosen on validation: the lowest validation EO gap ({pool.loc[label, 'val_eo_gap']:.3f}) "
                   f"among the λ values whose validation error is within {tolerance:g} of whole data's"
                   + ("" if len(ok) else " (none was, so among all)"))


def vtrust_claims(frame: pd.DataFrame, *, alpha: float = 0.05, min_seeds: int = 3, error_margin: float = 0.02) -> pd.DataFrame:
    """VTruST's Table-1 claim set against a selection frame, per (store, design, dataset, fraction).

    Claim: VTruST-F's subset has the lowest EO gap of all methods at an error close to whole-data
    training. The quoted λ is chosen on validation (:func:`choose_vtrust_lambda`); it is then
    compared, paired by seed, with every other method (lower EO gap, one test each) and with whole
    data on error (no worse than ``error_margin``: a non-inferiority test); these tests are one
    Holm family. *Supported*: all significant in the claimed direction; *contradicted*: some
    comparison's simultaneous interval excludes the claim (another method's gap is not higher, or
    the error is more than the margin worse); *inconclusive*: otherwise.
    """
    rows = []
    if frame.empty or not {"method", "fraction", "seed", "eo_gap", "error"} <= set(frame.columns):
        return pd.DataFrame(rows)
    noise_rows = noise_claims(frame, alpha=alpha, min_seeds=min_seeds)
    frame = frame[~_is_noisy(frame)]  # the paper's claim is about clean labels
    if frame.empty:
        return noise_rows
    n_all = frame.groupby([c for c in ("store", "dataset", "fraction") if c in frame], dropna=False).size()
    frame = _sound(frame)  # a degenerate model's small gap would count as the lowest
    f = _with_design(_vtrust_labels(frame), "vtrust")
    if "store" not in f:
        f = f.assign(store="")
    claim = ("VTruST-F at a 60%-style subset has the lowest fairness gap of all methods (margin 0.01–0.10) at an error "
             "close to whole-data training")
    for (store, design, dataset, fraction), g in f.groupby(["store", "design", "dataset", "fraction"], sort=False, dropna=False):
        if "whole" not in set(g["method"]) or "vtrust" not in set(g["method"]):
            continue
        label, how = choose_vtrust_lambda(g)
        d = f", {design}" if design else ""
        setting = f"{dataset}, fraction {float(fraction):g}{d}"
        if label is None:
            rows.append({"claim": claim, "made_by": "VTruST paper (Das et al. 2024, Table 1)", "setting": setting,
                         "measured": how + f" [store {store}]", "verdict": "not tested", "family": ""})
            continue
        cur = g[g["label"] == label].drop_duplicates("seed").set_index("seed")
        others = [lbl for lbl in dict.fromkeys(g["label"]) if not str(lbl).startswith("vtrust")]
        tests = []
        for o in others:
            b = g[g["label"] == o].drop_duplicates("seed").set_index("seed")
            e = paired_effect(b["eo_gap"], cur["eo_gap"], alternative="less")  # the claim: VTruST's gap is lower
            tests.append({"what": f"EO gap vs {o}", "kind": "lower", "base": b["eo_gap"], "cur": cur["eo_gap"], **e,
                          "p_value": e["p_value"] if e["n"] >= min_seeds else float("nan")})
        w = g[g["label"] == "whole"].drop_duplicates("seed").set_index("seed")
        ni = noninferiority_test(w["error"], cur["error"], margin=error_margin)
        tests.append({"what": f"error vs whole (margin {error_margin:g})", "kind": "noninferior", "base": w["error"],
                      "cur": cur["error"], **ni, "p_value": ni["p_value"] if ni["n"] >= min_seeds else float("nan")})
        _holm(tests, alpha)
        m = tests[0]["family_size"]
        n = min(int(t["n"]) for t in tests)
        contra = False
        for t in tests:
            sim = _simultaneous(t["base"], t["cur"], m, alpha)
            if t["kind"] == "lower" and np.isfinite(sim["lo"]) and sim["lo"] >= 0:
                contra = True
            if t["kind"] == "noninferior" and np.isfinite(sim["lo"]) and sim["lo"] > error_margin:
                contra = True
        verdict = ("not tested" if n < min_seeds else "supported" if all(t["significant"] for t in tests)
                   else "contradicted" if contra else "inconclusive")
        means = g.groupby("label")[["eo_gap", "error"]].mean()
        lowest_other = means.drop(index=[x for x in means.index if str(x).startswith("vtrust")], errors="ignore")["eo_gap"]
        measured = (f"{how}; {label}: EO gap {means.loc[label, 'eo_gap']:.3f}, error {means.loc[label, 'error']:.3f}; "
                    f"whole data {means.loc['whole', 'eo_gap']:.3f}, {means.loc['whole', 'error']:.3f}; lowest other: "
                    f"{lowest_other.idxmin()} {lowest_other.min():.3f} (means over {n} paired seeds); "
                    + "; ".join(f"{t['what']}: {t['diff']:+.3f} [{t['lo']:+.3f}, {t['hi']:+.3f}], Holm p = {_q(t['q_value'])}"
                                for t in tests) + _left_out(n_all, g, store, dataset, fraction) + f" [store {store}]")
        rows.append({"claim": claim, "made_by": "VTruST paper (Das et al. 2024, Table 1)", "setting": setting,
                     "measured": measured, "verdict": verdict,
                     "family": family_text("holm", m, "this claim (VTruST against every other method, and its error)",
                                           alpha=alpha)})
    return pd.concat([pd.DataFrame(rows), noise_rows], ignore_index=True) if len(noise_rows) else pd.DataFrame(rows)


def _sound(frame: pd.DataFrame) -> pd.DataFrame:
    """The selection runs whose retrained model is not degenerate
    (:func:`~trustkit.experiments.flag_degenerate`, computed where the frame lacks the column)."""
    from ._selection import flag_degenerate

    if "degenerate" not in frame.columns:
        if not {"method", "seed", "error"} <= set(frame.columns):
            return frame
        frame = flag_degenerate(frame)
    return frame[~frame["degenerate"].fillna(False).astype(bool)]


def _left_out(n_all: pd.Series, g: pd.DataFrame, store, dataset, fraction) -> str:
    key = tuple(k for k, c in ((store, "store"), (dataset, "dataset"), (fraction, "fraction")) if c in n_all.index.names)
    try:
        n = int(n_all.loc[key if len(key) > 1 else key[0]])
    except KeyError:
        return ""
    gone = n - len(g)
    return f"; {gone} degenerate run(s) left out" if gone > 0 else ""


def _is_noisy(frame: pd.DataFrame) -> pd.Series:
    """True for selection runs trained on planted label noise (``flip_rate`` above 0, or a
    ``label_noise`` config)."""
    out = pd.Series(False, index=frame.index)
    if "flip_rate" in frame.columns:
        out |= pd.to_numeric(frame["flip_rate"], errors="coerce").fillna(0) > 0
    if "label_noise" in frame.columns:
        out |= frame["label_noise"].map(lambda v: isinstance(v, Mapping) and bool(v))
    return out


NOISE_CLAIM = "value-aware VTruST keeps fewer flipped points than a random subset"


def noise_claims(frame: pd.DataFrame, *, alpha: float = 0.05, min_seeds: int = 3) -> pd.DataFrame:
    """The planted-noise claim against a selection frame: value-aware VTruST (``vtrust_va``,
    ``harmful="exclude"``) keeps a smaller share of flipped training points than a random subset.

    Per (store, design, dataset, fraction, noise kind, flip rate) and ``vtrust_va`` λ, a one-sided
    paired test of ``flipped_kept`` against ``random`` over the seeds where neither run is
    degenerate (:func:`~trustkit.experiments.flag_degenerate`); every such test of the frame is
    one Holm family. Each setting's verdict: *supported* (every λ's corrected test significant,
    fewer flipped points), *contradicted* (some λ's simultaneous interval excludes any reduction),
    *inconclusive*, or *not tested* (fewer than ``min_seeds`` paired seeds). A frame with
    selection runs but no planted-noise runs of both methods gives one *not tested* row.
    """
    from ._selection import flag_degenerate

    made_by = "trustkit (VTruST with harmful='exclude')"
    if frame.empty or not {"method", "seed"} <= set(frame.columns):
        return pd.DataFrame()
    f = frame[_is_noisy(frame)]
    if not len(f) or "flipped_kept" not in f or not {"vtrust_va", "random"} <= set(f["method"]):
        return pd.DataFrame([{"claim": NOISE_CLAIM, "made_by": made_by, "setting": "planted label noise",
                              "measured": "no planted-noise runs of vtrust_va and random in the store", "verdict": "not tested",
                              "family": ""}])
    if "degenerate" not in f.columns and {"error"} <= set(f.columns):
        f = flag_degenerate(f)
    bad = f["degenerate"].fillna(False).astype(bool) if "degenerate" in f else pd.Series(False, index=f.index)
    f = _vtrust_labels(f).assign(store=f["store"] if "store" in f else "", degenerate=bad)
    if "noise_kind" not in f or "flip_rate" not in f:
        f = f.assign(noise_kind=f["label_noise"].map(lambda v: v["kind"]), flip_rate=f["label_noise"].map(lambda v: v["rate"]))
    f = f.assign(design=design_labels(f, columns=[c for c in _DESIGN["vtrust"] if c != "label_noise"]))
    keys = ["store", "design", "dataset", "fraction", "noise_kind", "flip_rate"]
    tests = []
    for key, g in f.groupby(keys, sort=False, dropna=False):
        ok = g[~g["degenerate"]]
        base = ok[ok["method"] == "random"].drop_duplicates("seed").set_index("seed")["flipped_kept"]
        for label in dict.fromkeys(g.loc[g["method"] == "vtrust_va", "label"]):
            cur = ok[ok["label"] == label].drop_duplicates("seed").set_index("seed")["flipped_kept"]
            e = paired_effect(base, cur, alternative="less")
            n_bad = int(g.loc[g["label"].isin([label, "random"]), "degenerate"].sum())
            tests.append({"key": key, "label": label, "base": base, "cur": cur, "degenerate": n_bad, **e,
                          "p_value": e["p_value"] if e["n"] >= min_seeds else float("nan")})
    if not tests:
        return pd.DataFrame()
    _holm(tests, alpha)
    m = tests[0]["family_size"]
    fam = family_text("holm", m, "this claim (vtrust_va against random, every planted-noise setting and λ)", alpha=alpha)
    rows = []
    for key in dict.fromkeys(t["key"] for t in tests):
        ts = [t for t in tests if t["key"] == key]
        store, design, dataset, fraction, kind, rate = key
        n = min(int(t["n"]) for t in ts)
        contra = any(np.isfinite(s_["lo"]) and s_["lo"] >= 0
                     for s_ in (_simultaneous(t["base"], t["cur"], m, alpha) for t in ts))
        verdict = ("not tested" if n < min_seeds else "supported" if all(t["significant"] for t in ts)
                   else "contradicted" if contra else "inconclusive")
        parts = []
        for t in ts:
            if not len(t["cur"]) or not len(t["base"]):
                text = f"{t['label']} against random: no pair of sound runs"
            else:
                text = (f"{t['label']} keeps {float(t['cur'].mean()):.3f} flipped against random's "
                        f"{float(t['base'].mean()):.3f}: {t['diff']:+.3f}")
            if n >= min_seeds:
                text += f" [{t['lo']:+.3f}, {t['hi']:+.3f}], Holm p = {_q(t['q_value'])}"
            if t["degenerate"]:
                text += f"; {t['degenerate']} degenerate run(s) left out"
            parts.append(text)
        d = f", {design}" if design else ""
        rows.append({"claim": NOISE_CLAIM, "made_by": made_by,
                     "setting": f"{dataset}, fraction {float(fraction):g}, {kind} label noise at {float(rate):g}{d}",
                     "measured": "; ".join(parts) + f" ({n} paired seed{'s' if n != 1 else ''})"
                                 + (f" [store {store}]" if store else ""),
                     "verdict": verdict + ("" if n >= min_seeds else f": {n} seed(s), {min_seeds} needed"),
                     "family": fam if n >= min_seeds else ""})
    return pd.DataFrame(rows)


def robust_claims(frame: pd.DataFrame, *, alpha: float = 0.05, min_seeds: int = 3) -> pd.DataFrame:
    """VTruST-R's claim (its subset gives better robust accuracy than the augmentation baselines),
    paired by seed against each baseline, one Holm family; verdicts as in :func:`vtrust_claims`."""
    rows = []
    if frame.empty or not {"method", "robust_acc", "seed"} <= set(frame.columns) or "vtrust" not in set(frame["method"]):
        return pd.DataFrame(rows)
    f = _with_design(frame, "vtrust_robust")
    if "store" not in f:
        f = f.assign(store="")
    for (store, design), g in f.groupby(["store", "design"], sort=False, dropna=False):
        cur = g[g["method"] == "vtrust"].drop_duplicates("seed").set_index("seed")
        tests = []
        for o in [m for m in dict.fromkeys(g["method"]) if m != "vtrust"]:
            b = g[g["method"] == o].drop_duplicates("seed").set_index("seed")
            e = paired_effect(b["robust_acc"], cur["robust_acc"], alternative="greater")  # the claim: VTruST-R higher
            tests.append({"other": o, "base": b["robust_acc"], "cur": cur["robust_acc"], **e,
                          "p_value": e["p_value"] if e["n"] >= min_seeds else float("nan")})
        if not tests:
            continue
        _holm(tests, alpha)
        m = tests[0]["family_size"]
        n = min(int(t["n"]) for t in tests)
        contra = any(np.isfinite(s_["hi"]) and s_["hi"] <= 0
                     for s_ in (_simultaneous(t["base"], t["cur"], m, alpha) for t in tests))
        verdict = ("not tested" if n < min_seeds else "supported" if all(t["significant"] for t in tests)
                   else "contradicted" if contra else "inconclusive")
        d = f", {design}" if design else ""
        rows.append({"claim": "VTruST-R's subset gives better robust accuracy than the augmentation baselines",
                     "made_by": "VTruST paper (Das et al. 2024, Tables 3–6)", "setting": f"digits, corruption suite{d}",
                     "measured": f"vtrust {cur['robust_acc'].mean():.3f}; " + "; ".join(
                         f"vs {t['other']}: {t['diff']:+.3f}" + (
                             f" [{t['lo']:+.3f}, {t['hi']:+.3f}], Holm p = {_q(t['q_value'])}" if n >= min_seeds else "")
                         for t in tests) + f" ({n} paired seed{'s' if n != 1 else ''}) [store {store}]",
                     "verdict": verdict + ("" if n >= min_seeds else f": {n} seed(s), {min_seeds} needed"),
                     "family": (family_text("holm", m, "this claim (VTruST-R against each baseline)", alpha=alpha)
                                if n >= min_seeds else "")})
    return pd.DataFrame(rows)


def claims_check(results: Mapping[str, pd.DataFrame], *, alpha: float = 0.05, min_seeds: int = 3) -> pd.DataFrame:
    """Published or proposed claims set against the measurements: claim, who made it, what was
    measured, the verdict (``supported``, ``contradicted``, ``inconclusive`` or ``not tested``) and
    the family its tests were corrected in (each claim is pre-declared and Holm-corrected on its own,
    so the phase notebooks and the guidelines give the same verdict)."""
    parts = [adaptive_claims(results.get("adaptive", pd.DataFrame()), alpha=alpha, min_seeds=min_seeds),
             vtrust_claims(results.get("vtrust", pd.DataFrame()), alpha=alpha, min_seeds=min_seeds),
             robust_claims(results.get("vtrust_robust", pd.DataFrame()), alpha=alpha, min_seeds=min_seeds)]
    parts = [p for p in parts if len(p)]
    cols = ["claim", "made_by", "setting", "measured", "verdict", "family"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


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
