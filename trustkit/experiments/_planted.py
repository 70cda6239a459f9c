"""Result stores with a planted truth: the check that the chain from store to sentence recovers it.

Each generator builds the records one phase writes — the same configs (the sweep's cells come
from :func:`~trustkit.experiments.expand_grid`), the same result fields, the same store layout —
with metric values drawn from a model whose truth is known:

``value = base[metric] + shift[arm, metric] + seed_effect[seed, metric] + noise``

``shift`` is what is planted (zero everywhere else), ``seed_effect`` (sd ``seed_sd``) is shared by
every run with the same seed, as a split and an initialisation are in real runs, so comparisons
are paired; ``noise`` (sd ``noise_sd``) is each run's own. A paired difference therefore has
standard deviation ``noise_sd·√2`` and a known mean: :func:`planted_truth` gives it for any
comparison. :func:`write_planted_reports` writes the stores into a reports folder, where
:func:`~trustkit.experiments.load_phase_results` reads them like any report's.

The defaults follow what trustkit measured on COMPAS (seed-to-seed sd of accuracy about 0.01 and
of the EO gap about 0.03; paired differences about half as spread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["planted_sweep", "planted_adaptive", "planted_selection", "planted_truth", "write_planted_reports",
           "PLANTED_BASE"]

#: the metric levels planted runs scatter around (COMPAS-like)
PLANTED_BASE = {"accuracy": 0.66, "eo_gap": 0.20, "dp_gap": 0.18, "robust_accuracy": 0.55, "positive_rate": 0.45,
                "ece": 0.04}
_SD = {"accuracy": 0.01, "eo_gap": 0.03, "dp_gap": 0.03, "robust_accuracy": 0.02, "positive_rate": 0.03, "ece": 0.01}


def _draw(rng, arms: Sequence, seeds: Sequence[int], metrics: Sequence[str], shift: Mapping, *, seed_sd, noise_sd,
          base: Mapping) -> dict:
    """values[(arm, seed)][metric] under the planted model."""
    seed_effect = {(s, m): rng.normal(0.0, seed_sd.get(m, 0.02)) for s in seeds for m in metrics}
    out = {}
    for arm in arms:
        for s in seeds:
            out[(arm, s)] = {m: float(base[m] + shift.get((*arm, m) if isinstance(arm, tuple) else (arm, m), 0.0)
                                      + seed_effect[(s, m)] + rng.normal(0.0, noise_sd.get(m, 0.01)))
                             for m in metrics}
    return out


def _sds(value, metrics, default) -> dict:
    if value is None:
        return {m: default[m] for m in metrics}
    if isinstance(value, Mapping):
        return {m: float(value.get(m, default[m])) for m in metrics}
    return {m: float(value) for m in metrics}


def planted_sweep(*, shift: Mapping[tuple, float] | None = None, seeds: Sequence[int] = range(8),
                  constraints: Mapping[str, list] | None = None, mitigations: Sequence[str] = ("erm", "fair_penalty"),
                  dataset: str = "compas", metrics: Sequence[str] = ("accuracy", "eo_gap", "robust_accuracy", "positive_rate"),
                  seed_sd=None, noise_sd=None, untrained: Sequence[tuple] = (), rng: int | np.random.Generator = 0,
                  store: str = "tradeoffs/sweep_planted", training: Mapping | None = None) -> tuple[pd.DataFrame, dict]:
    """A sweep's records with a planted truth: ``(frame, grid)``.

    ``shift`` maps ``(constraint, level, mitigation, metric)`` to the planted change of that cell's
    mean (``level`` as the grid writes it; the reference is ``("none", 1.0, …)``); every other cell
    has none. ``untrained`` lists ``(constraint, level, mitigation, seed)`` cells whose run did not
    train (``trained=False``, ``epochs_done=0``, random-initialisation metrics far from the rest).
    The frame has the columns :func:`~trustkit.experiments.load_phase_results` gives a sweep
    (the cell config, the result fields, ``store`` and ``record``); ``grid`` is the grid it expands.

    >>> frame, grid = planted_sweep(shift={("time", 0.25, "erm", "eo_gap"): -0.05}, seeds=range(3))
    >>> len(frame), sorted(frame["constraint"].unique())
    (24, ['none', 'prune_structured', 'quantize', 'time'])
    """
    from ._store import run_key
    from ._sweep import expand_grid

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    metrics = list(metrics)
    constraints = dict(constraints or {"time": [0.25], "prune_structured": [0.8], "quantize": ["int8"]})
    grid = {"name": "planted", "datasets": [dataset], "models": [{"family": "mlp", "hidden": 32}],
            "constraints": constraints, "mitigations": list(mitigations), "seeds": [int(s) for s in seeds],
            "training": dict(training or {"epochs": 5})}
    cells = expand_grid(grid)
    arms = list(dict.fromkeys((c["constraint"], c["level"], c["mitigation"]) for c in cells))
    vals = _draw(rng, arms, list(seeds), metrics, dict(shift or {}), seed_sd=_sds(seed_sd, metrics, _SD),
                 noise_sd=_sds(noise_sd, metrics, {m: 0.5 * v for m, v in _SD.items()}), base=PLANTED_BASE)
    dead = {tuple(u) for u in untrained}
    rows = []
    for c in cells:
        arm = (c["constraint"], c["level"], c["mitigation"])
        trained = (*arm, c["seed"]) not in dead
        res = dict(vals[(arm, c["seed"])])
        if not trained:  # a random initialisation: one class for everyone, no gap, chance accuracy
            res.update({m: v for m, v in {"accuracy": 0.55, "eo_gap": 0.0, "dp_gap": 0.0, "robust_accuracy": 0.55,
                                           "positive_rate": 0.0}.items() if m in res})
        res.update({"threads": 1, "train_time_s": 1.0 if c["constraint"] != "time" else float(c["level"]),
                    "epochs_done": 5 if trained else 0, "trained": trained, "stopped_by": "epochs" if trained else "time_s",
                    "attack": "transfer" if c["constraint"] == "quantize" else "white-box", "message": ""})
        rows.append({**c, **res, "store": store, "record": run_key(c)})
    return pd.DataFrame(rows), grid


def planted_adaptive(*, shift: Mapping[tuple, float] | None = None, seeds: Sequence[int] = range(8),
                     regimes: Sequence[str] = ("medium",), methods: Sequence[str] = ("erm", "static", "pgd_at", "efficienttrust",
                                                                                      "atats_pid", "dual"),
                     dataset: str = "compas", seed_sd=None, noise_sd=None, rng: int | np.random.Generator = 0,
                     store: str = "adaptive/adaptive_store_planted") -> pd.DataFrame:
    """Adaptive-training records with a planted truth: ``shift`` maps ``(regime, method, metric)``
    (metrics ``dp_gap``, ``robust_accuracy``, ``accuracy``, ``val_score``) to a planted change.

    >>> planted_adaptive(seeds=range(2)).shape[0]
    12
    """
    from ._store import run_key

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    metrics = ["accuracy", "dp_gap", "robust_accuracy", "val_score"]
    base = {**PLANTED_BASE, "val_score": 1.0}
    sd = {**_SD, "val_score": 0.02}
    arms = [(r, m) for r in regimes for m in methods]
    vals = _draw(rng, arms, list(seeds), metrics, dict(shift or {}), seed_sd=_sds(seed_sd, metrics, sd),
                 noise_sd=_sds(noise_sd, metrics, {m: 0.5 * v for m, v in sd.items()}), base=base)
    rows = []
    for (regime, method) in arms:
        for s in seeds:
            cfg = {"job": "adaptive", "dataset": dataset, "regime": regime, "method": method, "seed": int(s), "quick": True,
                   "ref_time_s": 1.0, "ref_val_accuracy": 0.66, "ref_val_robust_accuracy": 0.55, "loader": {}}
            res = dict(vals[((regime, method), s)])
            res.update({"error": 1 - res["accuracy"], "time_s": 0.5, "epochs": 6, "steps": 60, "trained": True,
                        "stopped_by": "time_s", "over_budget": ""})
            rows.append({**cfg, **res, "store": store, "record": run_key(cfg)})
    return pd.DataFrame(rows)


def planted_selection(*, shift: Mapping[tuple, float] | None = None, seeds: Sequence[int] = range(8),
                      fraction: float = 0.6, lams: Sequence[float] = (0.5,), others: Sequence[str] = ("random", "ssfr", "threshold"),
                      dataset: str = "compas", seed_sd=None, noise_sd=None, rng: int | np.random.Generator = 0,
                      store: str = "vtrust/vtrust_store_planted", variants: Sequence[str] = (),
                      label_noise: Mapping | None = None) -> pd.DataFrame:
    """Selection records (VTruST's Table-1 comparison) with a planted truth: ``shift`` maps
    ``(label, metric)`` — labels ``whole``, ``vtrust λ=0.5``, the ``others`` — for metrics
    ``eo_gap``, ``error``, ``val_eo_gap``, ``val_error`` to a planted change.

    ``variants`` adds λ-aware VTruST variants (e.g. ``"vtrust_va"``, labels ``"vtrust_va λ=0.5"``).
    ``label_noise`` (``{"rate": r, "kind": k}``) makes them planted-noise runs: the config holds it,
    and the records gain ``flip_rate``, ``noise_kind``, ``flipped_kept`` (planted around ``r``, sd
    0.01 between seeds) and ``val_loss``, which ``shift`` can move too.

    >>> sorted(planted_selection(seeds=range(2))["method"].unique())
    ['random', 'ssfr', 'threshold', 'vtrust', 'whole']
    >>> noisy = planted_selection(seeds=range(2), variants=["vtrust_va"], label_noise={"rate": 0.2, "kind": "uniform"})
    >>> "vtrust_va" in set(noisy["method"]), round(float(noisy["flipped_kept"].mean()), 1)
    (True, 0.2)
    """
    from ._selection import SELECTOR_VERSION
    from ._store import run_key

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    metrics = ["eo_gap", "error", "val_eo_gap", "val_error"]
    base = {"eo_gap": 0.20, "error": 0.33, "val_eo_gap": 0.20, "val_error": 0.33}
    sd = {"eo_gap": 0.03, "error": 0.01, "val_eo_gap": 0.03, "val_error": 0.01}
    if label_noise:
        metrics += ["flipped_kept", "val_loss"]
        base.update(flipped_kept=float(label_noise["rate"]), val_loss=0.62)
        sd.update(flipped_kept=0.01, val_loss=0.02)
    labels = ["whole", *[f"{v} λ={lam:g}" for v in ("vtrust", *variants) for lam in lams], *others]
    vals = _draw(rng, labels, list(seeds), metrics, dict(shift or {}), seed_sd=_sds(seed_sd, metrics, sd),
                 noise_sd=_sds(noise_sd, metrics, {m: 0.5 * v for m, v in sd.items()}), base=base)
    rows = []
    for label in labels:
        method, lam = ((label.split(" λ=")[0], float(label.split("=")[1])) if " λ=" in label else (label, None))
        for s in seeds:
            cfg = {"job": "selection", "selector_version": SELECTOR_VERSION, "dataset": dataset, "method": method,
                   "seed": int(s), "fraction": float(fraction), "value": "accuracy+fairness", "lam": lam,
                   "select_epochs": 5, "train_epochs": 20, **({"label_noise": dict(label_noise)} if label_noise else {})}
            res = dict(vals[(label, s)])
            res.update({"accuracy": 1 - res["error"], "select_x": 1.0, "positive_rate": 0.45})
            if label_noise:
                res.update({"flip_rate": float(label_noise["rate"]), "noise_kind": label_noise["kind"]})
                if method == "whole":
                    res["flipped_kept"] = float(label_noise["rate"])
            rows.append({**cfg, **res, "store": store, "record": run_key(cfg)})
    return pd.DataFrame(rows)


def planted_truth(frame: pd.DataFrame, shift: Mapping[tuple, float], *, arm_cols: Sequence[str], arm, baseline,
                  metric: str) -> float:
    """The planted mean difference ``arm − baseline`` on ``metric`` (keys of ``shift`` are the
    ``arm_cols`` values followed by the metric, as the generator took them).

    >>> planted_truth(pd.DataFrame(), {("a", "m"): 0.1}, arm_cols=["method"], arm=("a",), baseline=("b",), metric="m")
    0.1
    """
    return float(shift.get((*arm, metric), 0.0) - shift.get((*baseline, metric), 0.0))


def write_planted_reports(root: str | Path, *, sweep: tuple[pd.DataFrame, dict] | None = None,
                          adaptive: pd.DataFrame | None = None, selection: pd.DataFrame | None = None) -> Path:
    """Write planted frames as the stores a report folder holds (each frame's ``store`` column is
    the store's path under ``root``); returns ``root``. The sweep's store gets its ``grid.yaml``."""
    from ._store import ResultStore
    from ._sweep import _save_grid

    root = Path(root)
    result_drop = {"store", "record"}

    def put(frame, config_cols):
        for store_path, g in frame.groupby("store", sort=False):
            store = ResultStore(root / store_path)
            for _, r in g.iterrows():
                cfg = {k: (None if isinstance(r[k], float) and np.isnan(r[k]) else r[k]) for k in config_cols if k in r.index}
                if cfg.get("label_noise", 0) is None:  # a clean run's config has no label_noise key
                    del cfg["label_noise"]
                res = {k: v for k, v in r.items() if k not in config_cols and k not in result_drop}
                store.put(cfg, res)
            yield store

    if sweep is not None:
        frame, grid = sweep
        from ._sweep import expand_grid

        cfg_cols = list(expand_grid(grid)[0].keys())
        for store in put(frame, cfg_cols):
            _save_grid(store.path, grid, expand_grid(grid))
    if adaptive is not None:
        list(put(adaptive, ["job", "dataset", "regime", "method", "seed", "quick", "ref_time_s", "ref_val_accuracy",
                            "ref_val_robust_accuracy", "loader"]))
    if selection is not None:
        list(put(selection, ["job", "selector_version", "dataset", "method", "seed", "fraction", "value", "lam",
                             "select_epochs", "train_epochs", "label_noise"]))
    return root
