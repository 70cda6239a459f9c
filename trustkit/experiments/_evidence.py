"""From result frames to evidence: paired comparisons, one corrected family, a verdict per question.

Every phase asks the same kind of question of its store: *does this arm (a constraint setting, a
mitigation, a scheduler, a selection) change this metric against its baseline, run for run with
the same seeds?* This module answers it once for all of them:

* :func:`trained_mask` keeps runs that did not train (no step, or stopped before the first
  epoch) out of every effect — their metrics are those of a random initialisation;
* :func:`design_labels` keeps runs of different designs (other training or evaluation settings
  in the same store) apart, so two grids are never pooled as more seeds of one;
* :func:`paired_tests` pairs each arm with its baseline by seed and runs, per metric, the paired
  t-test and the equivalence test (TOST against the metric's margin) of :mod:`trustkit.stats`;
* :func:`add_verdicts` corrects the family (Benjamini–Hochberg by default; the family and its
  size are named in ``attrs["family"]``) and gives each question a verdict: ``changed``,
  ``no change`` (the corrected equivalence test puts it within the margin), ``inconclusive``
  (with the seeds a decision would need) or ``not tested`` (too few seeds).

Every p-value comes from :mod:`trustkit.stats`; nothing here tests anything itself.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..stats import (EQUIVALENCE_MARGINS, adjust_pvalues, change_verdict, difference_effect, difference_tost, family_text,
                     seeds_needed)

__all__ = ["trained_mask", "design_labels", "paired_tests", "add_verdicts", "margin_of", "UNTRAINED_NOTE"]

UNTRAINED_NOTE = "did not train"


def margin_of(metric: str, margins: Mapping[str, float] | None = None) -> float:
    """The equivalence margin of ``metric``: ``margins`` first, then :data:`trustkit.stats.EQUIVALENCE_MARGINS`,
    else 0.01."""
    merged = {**EQUIVALENCE_MARGINS, **dict(margins or {})}
    return float(merged.get(metric, 0.01))


def trained_mask(frame: pd.DataFrame) -> pd.Series:
    """True for the rows of runs that trained: a ``trained`` column where records have one, else
    ``epochs_done`` (sweep) or ``epochs`` (adaptive) above zero; rows without either count as trained.

    >>> trained_mask(pd.DataFrame({"epochs_done": [0, 3]})).tolist()
    [False, True]
    """
    out = pd.Series(True, index=frame.index)
    for col in ("epochs_done", "epochs"):
        if col in frame.columns:
            v = pd.to_numeric(frame[col], errors="coerce")
            out &= ~(v.notna() & (v <= 0))
            break
    if "trained" in frame.columns:
        t = frame["trained"]
        out &= ~(t.notna() & (t.astype(object) == False))  # noqa: E712 - NaN (older records) counts as trained
    return out


def _text(v) -> str:
    if isinstance(v, float) and np.isnan(v):
        return "nan"
    return json.dumps(v, sort_keys=True, default=str)


def design_labels(frame: pd.DataFrame, *, columns: Sequence[str] | None = None,
                  prefixes: Sequence[str] = ("train_", "eval_")) -> pd.Series:
    """A label per row naming the settings that tell designs apart (empty when there is one design).

    ``columns`` (default: every column starting with one of ``prefixes``) are the settings a
    comparison must not pool over. Only the settings that vary in ``frame`` appear in the label,
    e.g. ``"train_epochs=5"`` and ``"train_epochs=8"`` for two grids written into one store.

    >>> df = pd.DataFrame({"seed": [0, 1, 0, 1], "train_epochs": [5, 5, 8, 8], "train_lr": [0.1] * 4})
    >>> design_labels(df).tolist()
    ['train_epochs=5', 'train_epochs=5', 'train_epochs=8', 'train_epochs=8']
    """
    cols = [c for c in (columns if columns is not None else
                        [c for c in frame.columns if str(c).startswith(tuple(prefixes))]) if c in frame.columns]
    if not cols or frame.empty:
        return pd.Series("", index=frame.index, dtype=object)
    texts = {c: frame[c].map(_text) for c in cols}
    varying = [c for c in cols if texts[c].nunique() > 1]
    if not varying:
        return pd.Series("", index=frame.index, dtype=object)
    return pd.Series([", ".join(f"{c}={texts[c].iloc[i]}" for c in varying) for i in range(len(frame))],
                     index=frame.index, dtype=object)


def paired_tests(frame: pd.DataFrame, *, within: Sequence[str], arm: str, baseline, metrics: Sequence[str],
                 pair_on: str = "seed", margins: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Every arm against ``baseline`` in each group of ``within``, paired on ``pair_on``, per metric.

    Runs that did not train (:func:`trained_mask`) are left out of both sides and counted in
    ``untrained``; a run repeated with the same ``pair_on`` value in one group is kept once. Per
    (group, arm, metric) the row holds the paired effect of :func:`trustkit.stats.paired_effect`
    (``diff``, ``std``, ``lo``, ``hi``, ``p_value``, ``n``, ``constant``), the baseline's and the
    arm's means over the pairs (``reference``, ``value``), the equivalence test's p-value against
    the metric's margin (``p_equiv``, ``margin``) and ``seeds`` (the paired seeds).

    >>> df = pd.DataFrame({"g": "x", "arm": ["b"] * 3 + ["t"] * 3, "seed": [0, 1, 2] * 2, "m": [1, 2, 3, 2, 3, 4.5]})
    >>> r = paired_tests(df, within=["g"], arm="arm", baseline="b", metrics=["m"]).iloc[0]
    >>> r["arm"], round(float(r["diff"]), 3), int(r["n"])
    ('t', 1.167, 3)
    """
    need = [*within, arm, pair_on]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the columns {missing}; it has {list(frame.columns)}")
    ok = trained_mask(frame)
    metrics = [m for m in metrics if m in frame.columns]
    values = frame[metrics].apply(pd.to_numeric, errors="coerce") if metrics else frame[[]]
    frame = frame[list(dict.fromkeys([*within, arm, pair_on]))]  # group only what is needed (records are wide)
    rows = []
    for key, g in frame.groupby(list(within), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        is_base = (g[arm] == baseline).to_numpy()
        if not is_base.any():
            continue
        good = ok.loc[g.index].to_numpy()
        base_rows = g[is_base & good].drop_duplicates(pair_on)
        base_vals = values.loc[base_rows.index].set_axis(base_rows[pair_on].to_numpy())
        base_bad = set(g.loc[is_base & ~good, pair_on])
        for a, h in g[~is_base].groupby(arm, sort=False, dropna=False):
            h_good = ok.loc[h.index].to_numpy()
            h_rows = h[h_good].drop_duplicates(pair_on)
            h_vals = values.loc[h_rows.index].set_axis(h_rows[pair_on].to_numpy())
            bad = set(h.loc[~h_good, pair_on]) | (base_bad & set(h[pair_on]))
            common = base_vals.index.intersection(h_vals.index)
            b_all, c_all = base_vals.loc[common], h_vals.loc[common]
            for m in metrics:
                both = (b_all[m].notna() & c_all[m].notna()).to_numpy()
                if not both.any() and not bad and b_all[m].isna().all() and c_all[m].isna().all():
                    continue
                bv, cv = b_all[m].to_numpy(float)[both], c_all[m].to_numpy(float)[both]
                e = difference_effect(cv - bv)
                eq = difference_tost(cv - bv, margin=margin_of(m, margins))
                rows.append({**dict(zip(within, key)), arm: a, "metric": m,
                             "reference": float(bv.mean()) if len(bv) else float("nan"),
                             "value": float(cv.mean()) if len(cv) else float("nan"),
                             **e, "p_equiv": eq["p_value"], "margin": eq["margin"], "untrained": len(bad),
                             "seeds": sorted(int(s) if isinstance(s, (int, np.integer)) else s for s in common[both])})
    cols = [*within, arm, "metric", "reference", "value", "diff", "std", "lo", "hi", "p_value", "n", "constant",
            "p_equiv", "margin", "untrained", "seeds"]
    return pd.DataFrame(rows, columns=cols)


def add_verdicts(tests: pd.DataFrame, *, correction: str = "bh", alpha: float = 0.05, min_seeds: int = 3,
                 what: str = "comparisons", power: float = 0.8) -> pd.DataFrame:
    """Correct ``tests`` (from :func:`paired_tests`) as one family and give each row a verdict.

    The family is every row with at least ``min_seeds`` pairs and a p-value (the rows that can
    become a sentence); its change tests get ``q_value`` (adjusted by ``correction``: ``"bh"``,
    ``"holm"`` or ``"none"``) and its equivalence tests ``q_equiv`` (adjusted the same way, as a
    family of their own). ``verdict`` is :func:`trustkit.stats.change_verdict`'s, or ``did not
    train`` where no pair is left because the runs did not train; ``seeds_needed`` is, for an
    inconclusive row, how many seeds would detect a change of the metric's margin at ``power``
    given the measured spread. ``attrs["family"]`` names the family in words.

    >>> df = pd.DataFrame({"g": "x", "arm": ["b"] * 8 + ["t"] * 8, "seed": list(range(8)) * 2,
    ...                    "m": [0.2, 0.3, 0.25, 0.22, 0.28, 0.3, 0.21, 0.26] + [0.1, 0.2, 0.14, 0.1, 0.19, 0.2, 0.1, 0.15]})
    >>> v = add_verdicts(paired_tests(df, within=["g"], arm="arm", baseline="b", metrics=["m"]), what="planted changes")
    >>> v["verdict"].tolist(), v.attrs["family"]
    (['changed'], 'Benjamini–Hochberg over 1 tests of planted changes, q < 0.05')
    """
    t = tests.copy()
    if t.empty:
        for c in ("q_value", "significant", "q_equiv", "equivalent", "verdict", "seeds_needed"):
            t[c] = pd.Series(dtype=object)
        t.attrs["family"] = family_text(correction, 0, what, alpha=alpha)
        t.attrs["correction"] = correction
        return t
    in_family = (t["n"] >= min_seeds)
    p = t["p_value"].where(in_family)
    pe = t["p_equiv"].where(in_family)
    t["q_value"] = adjust_pvalues(p.to_numpy(float), method=correction)
    t["q_equiv"] = adjust_pvalues(pe.to_numpy(float), method=correction)
    t["significant"] = (t["q_value"] < alpha).fillna(False).astype(bool)
    t["equivalent"] = (t["q_equiv"] < alpha).fillna(False).astype(bool) & ~t["significant"]
    verdicts, needed = [], []
    for _, r in t.iterrows():
        if r["n"] == 0 and r["untrained"] > 0:
            verdicts.append(UNTRAINED_NOTE)
        else:
            verdicts.append(change_verdict(significant=bool(r["significant"]), equivalent=bool(r["equivalent"]),
                                           n=int(r["n"]), min_seeds=min_seeds))
        plan = None
        if verdicts[-1] == "inconclusive" and r["n"] >= 3:  # a spread from fewer than 3 seeds plans nothing
            plan = seeds_needed(float(r["std"]), float(r["margin"]), power=power, alpha=alpha)
            plan = plan if plan is not None and plan > r["n"] else None  # enough seeds for the margin: the change is smaller
        needed.append(plan)
    t["verdict"] = verdicts
    t["seeds_needed"] = pd.array(needed, dtype="Int64")
    t.attrs["family"] = family_text(correction, int(np.isfinite(p.to_numpy(float)).sum()), what, alpha=alpha)
    t.attrs["correction"] = correction
    return t
