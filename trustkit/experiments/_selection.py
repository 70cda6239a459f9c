"""Training-subset selection experiments: VTruST against its baselines (Table 1), λ search, robust selection."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .._validation import check_choice, check_int
from ..data import DATASETS, load_task
from ..train import Trainer, plain_loop
from ._overview import QUICK_CORRUPTIONS
from ._store import ResultStore, run_grid, run_key

__all__ = ["select_subset", "selection_comparison", "selection_explanations", "lambda_search", "SELECTION_METHODS",
           "REFERENCE_METHODS", "robust_selection_comparison", "ROBUST_METHODS", "saug_pool", "subset_balance",
           "class_balance_reading", "selection_tests", "FIELD_METHODS", "VARIANT_METHODS", "flag_degenerate",
           "DEGENERATE_ERROR_MARGIN", "DEGENERATE_SHARE", "DEGENERATE_NOTE", "planted_noise_table", "NOISE_METRICS"]

SELECTION_METHODS = ("whole", "random", "ssfr", "tracin", "tracin_stratified", "vtrust")
# part of every selection run's config: stored runs of an earlier selector are not reused
SELECTOR_VERSION = 5
_LAMBDA_METHODS = ("vtrust", "vtrust_va", "tracin", "tracin_stratified")
REFERENCE_METHODS = ("expgrad", "threshold")
# off-the-shelf selectors (trustkit.select._field); asked for by name, not in the default comparison
FIELD_METHODS = ("cleanlab", "data_oob", "knn_shapley")
#: variants of VTruST asked for by name: "vtrust_va" is value-aware (``harmful="exclude"``: points whose
#: label works against the value function are kept out of the subset)
VARIANT_METHODS = ("vtrust_va",)
#: a retrained model whose test error exceeds whole-data training's on the same seed by more than
#: this (absolute) is degenerate
DEGENERATE_ERROR_MARGIN = 0.10
#: a retrained model that gives one class to at least this share of the test points is degenerate
#: (binary tasks: a positive-prediction rate below 1 − this or above it)
DEGENERATE_SHARE = 0.98
#: the verdict of a comparison whose runs were all degenerate (left out of every effect)
DEGENERATE_NOTE = "degenerate (left out)"
_NOISE_KEYS = ("rate", "kind")
#: what a planted-noise comparison reports per method (the EO gap where the task has a sensitive attribute)
NOISE_METRICS = ("flipped_kept", "val_loss", "error", "eo_gap", "select_x")


def select_subset(method: str, task, *, fraction: float, value: str = "accuracy+fairness", lam: float = 0.5,
                  epochs: int = 10, seed: int = 0) -> tuple[np.ndarray | None, dict]:
    """Indices chosen by a selection method (``None`` for ``"whole"``) and its diagnostics.

    ``method`` is one of ``SELECTION_METHODS``, ``VARIANT_METHODS`` (``"vtrust_va"``: VTruST with
    ``harmful="exclude"``, the same diagnostics as ``"vtrust"``) or ``FIELD_METHODS`` (which
    ignore ``value``, ``lam`` and ``epochs``)."""
    from ..select import FIELD_SELECTORS, VTruST, random_subset, ssfr_subset, tracin_topk

    check_choice("method", method, SELECTION_METHODS + VARIANT_METHODS + FIELD_METHODS)
    if method == "whole":
        return None, {}
    if method in FIELD_METHODS:
        return FIELD_SELECTORS[method](task, fraction, seed=seed), {}
    if method == "random":
        return random_subset(task, fraction, seed=seed), {}
    if method == "ssfr":
        return ssfr_subset(task, fraction, epochs=epochs, warm_start=min(1, epochs - 1), seed=seed), {}
    if method in ("tracin", "tracin_stratified"):
        return tracin_topk(task, fraction, value=value, lam=lam, epochs=epochs, seed=seed,
                           stratify=method == "tracin_stratified"), {}
    extra = {"harmful": "exclude"} if method == "vtrust_va" else {}
    res = VTruST(value=value, lam=lam, fraction=fraction, epochs=epochs, seed=seed, progress=False, **extra).select(task)
    d = res.diagnostics
    return res.indices, {"residual": d["relative_residual"], "residual_mixed_epochs": d["online_residual_mixed_epochs"],
                         "replacements": d["replacements"], "atom_size": d["atom_size"], "feature_rank": d["feature_rank"]}


def subset_balance(y_subset, y_train) -> dict:
    """Class make-up of a training subset against the whole training split.

    ``subset_pos_rate`` and ``train_pos_rate`` are the shares of label 1; ``class_shift`` their
    difference; ``class_balance`` the smaller class's count over the larger's in the subset (1 =
    balanced, 0 = one class only).

    >>> subset_balance([1, 1, 1, 0], [1, 0, 1, 0])
    {'subset_pos_rate': 0.75, 'train_pos_rate': 0.5, 'class_shift': 0.25, 'class_balance': 0.3333333333333333}
    """
    ys, yt = np.asarray(y_subset), np.asarray(y_train)
    pos, n = int((ys == 1).sum()), len(ys)
    sub, tr = pos / n, float((yt == 1).mean())
    return {"subset_pos_rate": sub, "train_pos_rate": tr, "class_shift": sub - tr,
            "class_balance": min(pos, n - pos) / max(pos, n - pos)}


def _noisy_task(cfg: Mapping):
    """The run's task with its planted label noise (training labels only), the flipped-point mask
    (``None`` without noise) and the noise columns of its row."""
    from ..data import plant_label_noise

    task = load_task(cfg["dataset"], seed=cfg["seed"], **cfg.get("loader", {}))
    if task.kind == "image":  # the selection runner's MLP reads rows: an image is its flattened pixels
        task = task.replace(**{n: task.split(n).replace(X=task.split(n).X.reshape(len(task.split(n)), -1))
                               for n in ("train", "val", "test")})
    noise = cfg.get("label_noise")
    if not noise:
        return task, None, {"flip_rate": 0.0, "noise_kind": "none"}
    task, flipped = plant_label_noise(task, noise["rate"], kind=noise["kind"], seed=cfg["seed"])
    return task, flipped, {"flip_rate": float(noise["rate"]), "noise_kind": noise["kind"]}


def _selected(cfg: Mapping):
    """(task, the subset's task, what the selection measured) of a run; the subset is ``None`` for
    fairlearn's references, whose measurements are the whole result. With planted label noise the
    task's training labels are the noisy ones (validation and test stay clean)."""
    import time
    import warnings

    from ..select import fairlearn_reference, subset_task

    task, flipped, noise = _noisy_task(cfg)
    if cfg["method"] in REFERENCE_METHODS:
        m = fairlearn_reference(task, method=cfg["method"], seed=cfg["seed"])
        return task, None, {**m, "error": 1 - m["accuracy"], "select_x": 0.0, "n_train": len(task.train),
                            **subset_balance(task.train.y, task.train.y), **noise,
                            "flipped_kept": 0.0 if flipped is None else float(flipped.mean())}
    t_plain = None
    if cfg["method"] != "whole":  # the plain loop of the selector's epochs, to express selection time as a multiple of it
        t0 = time.perf_counter()
        plain_loop(task, model="mlp", epochs=cfg["select_epochs"], lr=3e-3, seed=cfg["seed"])
        t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        idx, diag = select_subset(cfg["method"], task, fraction=cfg["fraction"], value=cfg["value"], lam=cfg["lam"],
                                  epochs=cfg["select_epochs"], seed=cfg["seed"])
    t_select = time.perf_counter() - t0
    sub = task if idx is None else subset_task(task, idx)
    kept = 0.0 if flipped is None else float(flipped.mean() if idx is None else flipped[np.asarray(idx)].mean())
    return task, sub, {"select_x": 0.0 if t_plain is None else t_select / t_plain, **diag, **noise, "flipped_kept": kept}


def _model_columns(task, model) -> dict:
    """The retrained model's cross-entropy on the (clean) validation split and the largest share of
    test points it gives one class."""
    import torch

    from ..metrics import predict_logits

    with torch.no_grad():
        val_loss = float(torch.nn.functional.cross_entropy(predict_logits(model, task.val.X).double(),
                                                           torch.as_tensor(task.val.y, dtype=torch.long)))
        pred = predict_logits(model, task.test.X).argmax(1).numpy()
    return {"val_loss": val_loss, "top_class_share": float(np.bincount(pred).max() / len(pred))}


def _retrained(task, sub, r, measured: Mapping, model) -> dict:
    val = r.epochs[-1].val if r.epochs else {}
    return {**r.test, "error": 1 - r.test["accuracy"], "select_x": measured["select_x"], **_model_columns(task, model),
            "n_train": len(sub.train), **subset_balance(sub.train.y, task.train.y),
            **{k: v for k, v in measured.items() if k != "select_x"},
            **{f"val_{k}": val[k] for k in ("eo_gap", "dp_gap") if k in val},
            "val_error": 1 - val["accuracy"] if "accuracy" in val else float("nan"),
            "replicas": int(r.usage.get("replicas", 1))}


def _selection_run(cfg: Mapping) -> dict:
    task, sub, measured = _selected(cfg)
    if sub is None:
        return measured
    tr = Trainer(model="mlp", epochs=cfg["train_epochs"], lr=3e-3, seed=cfg["seed"], progress=False)
    r = tr.fit(sub)
    return _retrained(task, sub, r, measured, tr.model_)


def _selection_key(cfg: Mapping) -> str | None:
    """Runs that differ only in their seed retrain as one replica job (not fairlearn's references)."""
    if cfg["method"] in REFERENCE_METHODS:
        return None
    return run_key({k: v for k, v in cfg.items() if k != "seed"})


def _selection_group(cfgs: Sequence[Mapping]) -> list[dict]:
    """Each run's selection on its own, then every subset retrained at once as replicas (one per seed)."""
    from ..train import ReplicaTrainer

    parts = [_selected(c) for c in cfgs]
    subs = [sub for _, sub, _ in parts]
    if len({(len(s.train), len(s.val), s.input_shape) for s in subs}) != 1:  # other sizes or columns: one at a time
        trainers = [Trainer(model="mlp", epochs=c["train_epochs"], lr=3e-3, seed=c["seed"], progress=False) for c in cfgs]
        records = [t.fit(s) for t, s in zip(trainers, subs)]
        models = [t.model_ for t in trainers]
    else:
        rt = ReplicaTrainer(seeds=[int(c["seed"]) for c in cfgs], model="mlp", epochs=cfgs[0]["train_epochs"],
                            lr=3e-3, progress=False)
        records = rt.fit(subs)
        models = rt.models_
    return [_retrained(task, sub, r, measured, m) for (task, sub, measured), r, m in zip(parts, records, models)]


def _check_label_noise(label_noise, dataset: str, seeds: Sequence[int], dataset_kwargs: Mapping | None) -> dict | None:
    """``label_noise`` validated (``None`` or ``{"rate": r, "kind": k}``), as the run config keeps it."""
    from ..data import NOISE_KINDS, noise_group

    if label_noise is None:
        return None
    if not isinstance(label_noise, Mapping):
        raise TypeError(f"label_noise must be None or a dict {{'rate': r, 'kind': 'uniform' | 'group'}}; got {label_noise!r}")
    extra = set(label_noise) - set(_NOISE_KEYS)
    if extra or set(_NOISE_KEYS) - set(label_noise):
        raise ValueError(f"label_noise must have exactly the keys {list(_NOISE_KEYS)}; got {sorted(label_noise)}")
    rate, kind = label_noise["rate"], label_noise["kind"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 < rate <= 0.5:
        raise ValueError(f"label_noise['rate'] must be a number in (0, 0.5] (the share of training labels flipped); "
                         f"got {rate!r}")
    if kind not in NOISE_KINDS:
        raise ValueError(f"label_noise['kind'] must be one of {list(NOISE_KINDS)}; got {kind!r}")
    if kind == "group":  # the group must hold enough points for every seed's split
        for s in seeds:
            mask, name = noise_group(load_task(dataset, seed=int(s), **dict(dataset_kwargs or {})))
            if rate * len(mask) > mask.sum():
                raise ValueError(f"label_noise['rate'] = {rate:g} is more than the share of the group {name} in the "
                                 f"training split of seed {s} ({mask.mean():.3f}); 'group' noise flips only within it")
    return {"rate": float(rate), "kind": str(kind)}


def flag_degenerate(df: pd.DataFrame, *, share: float = DEGENERATE_SHARE,
                    error_margin: float = DEGENERATE_ERROR_MARGIN) -> pd.DataFrame:
    """``df`` with ``degenerate`` (bool) and ``degenerate_reason`` (empty when sound) per run.

    A run's retrained model is degenerate when it predicts one class: one class for at least
    ``share`` of the test points (``top_class_share``; rows without it use ``positive_rate``:
    below ``1 − share`` or above ``share``), or when its test error exceeds whole-data training's
    on the same seed (same dataset, fraction, planted noise and retraining epochs) by more than
    ``error_margin``. Its small fairness gaps then mean nothing; :func:`selection_tests` leaves
    such runs out of every effect, as :func:`~trustkit.experiments.trained_mask` does untrained ones.

    >>> df = pd.DataFrame({"method": ["whole", "random", "tracin"], "seed": 0, "dataset": "compas",
    ...                    "error": [0.33, 0.35, 0.50], "positive_rate": [0.40, 0.999, 0.45]})
    >>> flag_degenerate(df)[["degenerate", "degenerate_reason"]].values.tolist()
    [[False, ''], [True, 'predicts one class for 99.9% of test points'], [True, 'test error 0.500 is 0.170 above whole data on seed 0']]
    """
    out = df.copy()
    n = len(out)
    reasons: list[list[str]] = [[] for _ in range(n)]
    top = pd.to_numeric(out["top_class_share"], errors="coerce") if "top_class_share" in out else pd.Series(np.nan, index=out.index)
    pos = pd.to_numeric(out["positive_rate"], errors="coerce") if "positive_rate" in out else pd.Series(np.nan, index=out.index)
    one = top.where(top.notna(), np.maximum(pos, 1 - pos))
    for i, v in enumerate(one.to_numpy(float)):
        if np.isfinite(v) and v >= share:
            reasons[i].append(f"predicts one class for {v:.1%} of test points")
    if {"method", "seed", "error"} <= set(out.columns):
        keys = [c for c in ("store", "dataset", "fraction", "seed", "noise_kind", "flip_rate", "train_epochs", "loader",
                            "selector_version") if c in out]
        text = out[keys].apply(lambda r: _json_key(r.tolist()), axis=1) if n else pd.Series(dtype=object)
        err = pd.to_numeric(out["error"], errors="coerce")
        is_whole = (out["method"] == "whole").to_numpy()
        whole = dict(zip(text[is_whole], err[is_whole]))
        for i, (k, e, w) in enumerate(zip(text, err, is_whole)):
            b = whole.get(k, np.nan)
            if not w and np.isfinite(b) and np.isfinite(e) and e - b > error_margin:
                reasons[i].append(f"test error {e:.3f} is {e - b:.3f} above whole data on seed {out['seed'].iloc[i]}")
    out["degenerate"] = [bool(r) for r in reasons]
    out["degenerate_reason"] = ["; ".join(r) for r in reasons]
    return out


def _json_key(values) -> str:
    import json

    return json.dumps([None if isinstance(v, float) and np.isnan(v) else v for v in values], sort_keys=True, default=str)


def selection_comparison(
    dataset: str = "compas",
    *,
    methods: Sequence[str] = SELECTION_METHODS + REFERENCE_METHODS,
    fraction: float = 0.6,
    value: str = "accuracy+fairness",
    lams: Sequence[float] = (0.5,),
    seeds: Sequence[int] = (0, 1, 2),
    select_epochs: int = 10,
    train_epochs: int = 30,
    dataset_kwargs: Mapping | None = None,
    store: ResultStore | str | None = None,
    progress: bool = True,
    executor: str = "sequential", workers: int | None = None, scheduler_address: str | None = None,
    replicas: bool = False,
    label_noise: Mapping | None = None,
) -> pd.DataFrame:
    """Select a subset with each method, retrain the MLP on it, and report test metrics per seed.

    ``executor``, ``workers`` and ``scheduler_address`` choose where runs happen (sequentially, local
    processes, a Dask cluster), as in :func:`run_grid`; results and resuming are the same.

    The seed fixes the split, the selection and the retraining. ``select_x`` is the selection
    time divided by the time of :func:`trustkit.train.plain_loop` (a hand-written Adam loop, no
    validation) on the whole training split for the same number of epochs as the selector's own
    training (``select_epochs``), measured in the same process just before.
    VTruST and TracIn (plain and class-stratified) run once per λ in ``lams``; the others ignore
    λ. fairlearn's references (``"expgrad"``, ``"threshold"``) train on the whole split. Every
    row also gives the class make-up of its training subset (:func:`subset_balance`), so a
    selection that mostly keeps one class is visible; :func:`class_balance_reading` turns those
    columns into sentences.

    With ``replicas=True`` the seeds of a method select one by one and then retrain their subsets
    as one :class:`~trustkit.train.ReplicaTrainer` job (``replicas`` in each row says how many
    shared it); the rows equal those of separate retraining within rounding.

    ``label_noise={"rate": r, "kind": "uniform" | "group"}`` plants label noise before selection
    (:func:`trustkit.data.plant_label_noise`, seeded by the run's seed): ``round(r · n)``
    *training* labels are flipped, drawn from the whole split (``"uniform"``) or only from the
    minority sensitive group (``"group"``; digits and other tasks without a sensitive attribute:
    the points of the lower half of the classes, labels 0–4), with ``r`` in (0, 0.5];
    validation and test stay clean. It is part of each run's config, so noisy and clean runs are
    stored apart. Every row has ``flip_rate``, ``noise_kind`` (``"none"`` without noise) and
    ``flipped_kept``, the share of flipped points in the training subset (whole data: the
    training split's share, ``r``).

    Image tasks (digits, MNIST, …) are selected and retrained on their flattened pixels with the
    same MLP (``dataset_kwargs={"image_size": 8}`` keeps digits at its native 8×8 = 64 columns).

    Every retrained row also has ``val_loss`` (the cross-entropy of the retrained model on the
    clean validation split), ``top_class_share`` (the largest share of test points given one
    class), and ``degenerate`` / ``degenerate_reason`` (:func:`flag_degenerate`).
    """
    check_choice("dataset", dataset, DATASETS)
    if not isinstance(replicas, bool):
        raise TypeError(f"replicas must be True or False; got {replicas!r}")
    for m in methods:
        check_choice("method", m, SELECTION_METHODS + VARIANT_METHODS + FIELD_METHODS + REFERENCE_METHODS)
    noise = _check_label_noise(label_noise, dataset, seeds, dataset_kwargs)
    if isinstance(store, (str, os.PathLike)):
        store = ResultStore(store)
    configs = []
    for s in seeds:
        for m in methods:
            for lam in (lams if m in _LAMBDA_METHODS else (None,)):
                cfg = {"job": "selection", "selector_version": SELECTOR_VERSION, "dataset": dataset, "method": m,
                       "seed": int(s), "fraction": float(fraction), "value": value, "lam": None if lam is None else float(lam),
                       "select_epochs": int(select_epochs), "train_epochs": int(train_epochs)}
                if dataset_kwargs:
                    cfg["loader"] = dict(dataset_kwargs)
                if noise:
                    cfg["label_noise"] = dict(noise)
                configs.append(cfg)
    group = dict(group_by=_selection_key, run_group=_selection_group) if replicas else {}
    df = run_grid(configs, _selection_run, store=store, progress=progress, desc="selection runs",
                  executor=executor, workers=workers, scheduler_address=scheduler_address, **group)
    df["label"] = [m if lam is None or m not in _LAMBDA_METHODS else f"{m} λ={lam:g}" for m, lam in zip(df["method"], df["lam"])]
    # runs stored before these columns existed: the noise is in their config
    df["flip_rate"] = df["flip_rate"].fillna(noise["rate"] if noise else 0.0) if "flip_rate" in df else (noise or {}).get("rate", 0.0)
    df["noise_kind"] = df["noise_kind"].fillna(noise["kind"] if noise else "none") if "noise_kind" in df else (noise or {}).get("kind", "none")
    for c in ("flipped_kept", "val_loss", "top_class_share"):
        if c not in df:
            df[c] = float("nan")
    if not noise:
        df["flipped_kept"] = df["flipped_kept"].fillna(0.0)
    return flag_degenerate(df)


def selection_tests(df: pd.DataFrame, *, metrics: Sequence[str] = ("eo_gap", "error"), alpha: float = 0.05,
                    min_seeds: int = 3, baseline: str = "whole") -> pd.DataFrame:
    """Every selection of a :func:`selection_comparison` frame against ``baseline`` (a label;
    whole-data training by default), paired by seed, per dataset, fraction, planted noise (when the
    frame has ``noise_kind`` and ``flip_rate``) and metric: the paired effect, the equivalence test
    against the metric's margin, and over every row as one family the Benjamini–Hochberg
    ``q_value`` and a ``verdict`` (``changed`` / ``no change`` / ``inconclusive`` / ``not
    tested``), with the family named in the ``family`` column
    (:func:`~trustkit.experiments._evidence.add_verdicts`).

    Degenerate runs (:func:`flag_degenerate`; computed here when the frame lacks the column) are
    left out of both sides of every pair; ``degenerate`` counts the arm's runs left out, and an
    arm whose runs were all degenerate gets the verdict ``"degenerate (left out)"``.
    """
    from ._evidence import add_verdicts, paired_tests

    need = {"label", "dataset", "fraction", "seed"}
    if not need <= set(df.columns):
        raise ValueError(f"the frame lacks the columns {sorted(need - set(df.columns))}; pass selection_comparison's output")
    if baseline not in set(df["label"]):
        raise ValueError(f"baseline {baseline!r} is not a label of the frame; it has {sorted(set(df['label']))}")
    if "degenerate" not in df.columns:
        df = flag_degenerate(df)
    within = ["dataset", "fraction", *[c for c in ("noise_kind", "flip_rate") if c in df.columns]]
    bad = df["degenerate"].fillna(False).astype(bool)
    t = paired_tests(df[~bad], within=within, arm="label", baseline=baseline, metrics=list(metrics))
    counts = df[bad].groupby([*within, "label"], sort=False, dropna=False).size()
    t["degenerate"] = [int(counts.get(tuple(r[c] for c in [*within, "label"]), 0)) for _, r in t.iterrows()]
    gone = []  # arms with every run degenerate: no pair is left, but the reader should see them
    alive = set(df.loc[~bad, [*within, "label"]].itertuples(index=False, name=None))
    for key, k in counts.items():
        if key[-1] != baseline and key not in alive:
            gone += [{**dict(zip([*within, "label"], key)), "metric": m, "n": 0, "untrained": 0, "degenerate": int(k),
                      "seeds": []} for m in metrics if m in df.columns]
    what = f"selections against {'whole data' if baseline == 'whole' else baseline} ({', '.join(metrics)})"
    out = add_verdicts(t, alpha=alpha, min_seeds=min_seeds, what=what)
    family = out.attrs["family"]
    if gone:
        out = pd.concat([out, pd.DataFrame(gone).assign(verdict=DEGENERATE_NOTE)], ignore_index=True)
    out["family"] = family
    out.attrs["family"] = family
    return out


def planted_noise_table(df: pd.DataFrame, *, baseline: str = "random", metrics: Sequence[str] = NOISE_METRICS,
                        tested: Sequence[str] = ("flipped_kept", "val_loss", "error", "eo_gap"), alpha: float = 0.05,
                        min_seeds: int = 3, digits: int = 3) -> pd.DataFrame:
    """One row per (dataset, noise kind, flip rate, method) of planted-noise runs: each of ``metrics``
    as ``mean ± std`` over seeds, ``degenerate`` (degenerate runs out of all, :func:`flag_degenerate`),
    and for each of ``tested`` a column ``vs <baseline>: <metric>`` with the paired difference
    against ``baseline`` over the non-degenerate seeds, its 95% interval, the Benjamini–Hochberg
    ``q`` over every test of the frame as one family, and the verdict (:func:`selection_tests`).
    ``attrs["family"]`` names the family.

    >>> rows = [{"label": m, "method": m, "dataset": "digits", "fraction": 0.6, "seed": s, "noise_kind": "uniform",
    ...          "flip_rate": 0.2, "flipped_kept": v + 0.01 * s, "error": 0.1} for m, v in (("random", 0.2), ("cleanlab", 0.05))
    ...         for s in range(2)]
    >>> t = planted_noise_table(pd.DataFrame(rows), metrics=["flipped_kept"], tested=["flipped_kept"])
    >>> t[["label", "flipped_kept", "degenerate", "vs random: flipped_kept"]].values.tolist()
    [['random', '0.205 ± 0.007', '0/2', ''], ['cleanlab', '0.055 ± 0.007', '0/2', '-0.150, 2 seeds: not tested']]
    """
    from ..stats import format_mean_std

    if "degenerate" not in df.columns:
        df = flag_degenerate(df)
    keys = ["dataset", "noise_kind", "flip_rate", "label"]
    metrics = [m for m in metrics if m in df.columns and df[m].notna().any()]
    tested = [m for m in tested if m in df.columns and df[m].notna().any()]
    table = format_mean_std(df, by=keys, metrics=metrics, digits=digits).drop(columns="n")
    bad = df["degenerate"].fillna(False).astype(bool)
    counts = df.assign(bad=bad).groupby(keys, sort=False).agg(k=("bad", "sum"), n=("bad", "size"))
    table["degenerate"] = [f"{int(counts.loc[tuple(r)]['k'])}/{int(counts.loc[tuple(r)]['n'])}"
                           for r in table[keys].itertuples(index=False, name=None)]
    tests = selection_tests(df, metrics=tested, alpha=alpha, min_seeds=min_seeds, baseline=baseline)
    cells = {}
    for _, r in tests.iterrows():
        if r["verdict"] == DEGENERATE_NOTE:
            text = DEGENERATE_NOTE
        elif r["n"] < min_seeds:
            text = f"{r['diff']:+.{digits}f}, {int(r['n'])} seeds: not tested"
        else:
            text = (f"{r['diff']:+.{digits}f} [{r['lo']:+.{digits}f}, {r['hi']:+.{digits}f}] q={r['q_value']:.2g} "
                    f"{r['verdict']}")
        cells[(r["dataset"], r["noise_kind"], r["flip_rate"], r["label"], r["metric"])] = text
    for m in tested:
        table[f"vs {baseline}: {m}"] = [cells.get((*k, m), "") for k in table[keys].itertuples(index=False, name=None)]
    table.attrs["family"] = tests.attrs.get("family", "")
    return table


def class_balance_reading(df: pd.DataFrame, *, shift: float = 0.05, worse: float = 0.02) -> pd.DataFrame:
    """One sentence per method of a :func:`selection_comparison` frame about its subset's class make-up.

    Means over seeds per ``label``: the subset's share of label 1 against the training split's,
    the retrained model's test positive-prediction rate and error against whole-data training.
    A subset whose positive share moves by more than ``shift`` is said to change the class
    balance; a method whose mean error exceeds whole data's by more than ``worse`` is said to
    lose, and when both hold the sentence names the class shift as the reason. For plain TracIn
    the sentence adds where that shift comes from: a last-layer TracIn score's sign follows the
    point's label, so top-k keeps mostly the class whose points score positive.

    Returns the columns ``label, subset_pos_rate, train_pos_rate, class_shift, positive_rate,
    error, whole_error, reading``.
    """
    need = {"label", "method", "subset_pos_rate", "train_pos_rate", "positive_rate", "error"}
    missing = need - set(df.columns)
    if missing:
        raise ValueError(f"the frame lacks the columns {sorted(missing)}; pass the output of selection_comparison")
    g = df.groupby("label", sort=False).agg(method=("method", "first"), subset_pos_rate=("subset_pos_rate", "mean"),
                                             train_pos_rate=("train_pos_rate", "mean"),
                                             positive_rate=("positive_rate", "mean"), error=("error", "mean"))
    g["class_shift"] = g["subset_pos_rate"] - g["train_pos_rate"]
    whole = g[g["method"] == "whole"]
    w_err = float(whole["error"].iloc[0]) if len(whole) else float("nan")
    w_pos = float(whole["positive_rate"].iloc[0]) if len(whole) else float("nan")
    rows = []
    for label, r in g.iterrows():
        shifted = abs(r.class_shift) > shift
        diff = r.error - w_err
        if r.method == "whole":
            text = f"trains on the whole split ({r.train_pos_rate:.0%} positives)"
        elif r.method in REFERENCE_METHODS:
            text = f"trains on the whole split ({r.train_pos_rate:.0%} positives; a fairlearn reference)"
        else:
            text = (f"keeps {r.subset_pos_rate:.0%} positives against {r.train_pos_rate:.0%} in the training split"
                    f" (shift {r.class_shift:+.2f})")
            if shifted:
                text += (f": it changes the class balance, and the model trained on it predicts positive for "
                         f"{r.positive_rate:.0%} of test points (whole data: {w_pos:.0%})")
            else:
                text += ": the class balance is kept"
        if r.method != "whole" and np.isfinite(w_err):
            text += f"; test error {r.error:.3f} against {w_err:.3f} for whole data"
            if diff > worse and shifted:
                text += f" — it loses ({diff:+.3f}) through the class shift"
            elif diff > worse:
                text += f" — it loses ({diff:+.3f}), and not through the class balance"
        if r.method == "tracin" and shifted:
            text += (". A last-layer TracIn score's sign follows the point's label (the gradient is "
                     "(p₁ − y)·[−h, h, −1, 1]), so top-k keeps mostly one class")
        rows.append({"label": label, "subset_pos_rate": r.subset_pos_rate, "train_pos_rate": r.train_pos_rate,
                     "class_shift": r.class_shift, "positive_rate": r.positive_rate, "error": r.error,
                     "whole_error": w_err, "reading": text + "."})
    return pd.DataFrame(rows)


def selection_explanations(
    dataset: str = "compas",
    *,
    methods: Sequence[str] = ("random", "ssfr", "tracin", "vtrust"),
    fraction: float = 0.6,
    value: str = "accuracy+fairness",
    lam: float = 0.5,
    seed: int = 0,
    select_epochs: int = 10,
    train_epochs: int = 30,
) -> pd.DataFrame:
    """Per selected point and method: its counterfactual-fairness gap and data-map coordinates.

    The task is loaded with the sensitive attribute as a feature (otherwise the model cannot see
    it and every counterfactual gap is 0); each method's model is trained on its own subset, and
    the explanations are computed on that subset. Row ``index`` points into the source table.
    """
    import warnings

    from ..select import cf_gap, data_map, subset_task

    task = load_task(dataset, seed=seed, sensitive_as_feature=True)
    frames = []
    for m in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            idx, _ = select_subset(m, task, fraction=fraction, value=value, lam=lam, epochs=select_epochs, seed=seed)
        sub = task if idx is None else subset_task(task, idx)
        tr = Trainer(model="mlp", epochs=train_epochs, lr=3e-3, seed=seed, progress=False, metrics=["accuracy"])
        tr.fit(sub)
        dm = data_map(tr.model_, sub.train.X, seed=seed)
        dm["cf_gap"] = cf_gap(tr.model_, task, sub.train.X)
        dm["method"] = m
        dm["index"] = sub.train.index
        dm["label"] = sub.train.y
        dm["group"] = [task.group_names[g] for g in sub.train.a]
        frames.append(dm)
    return pd.concat(frames, ignore_index=True)


def lambda_search(
    task,
    *,
    threshold: float,
    metric: str = "error",
    value: str = "accuracy+fairness",
    fraction: float = 0.6,
    steps: int = 5,
    select_epochs: int = 10,
    train_epochs: int = 30,
    seed: int = 0,
) -> dict:
    """Binary search on VTruST's λ for the most weight on the second objective that keeps
    ``metric`` (measured on the *validation* split) at most ``threshold``.

    VTruST's paper proposes this when the first metric is monotone in λ (error falls as λ, the
    weight of the accuracy value, grows). The search checks λ = 1 first: if even the accuracy-only
    subset misses the threshold, no λ can meet it and ``lam`` is ``None``. Returns the chosen λ and
    every evaluated point, so a violation of monotonicity is visible.
    """
    import warnings

    from ..metrics import evaluate
    from ..select import subset_task

    check_int("steps", steps, minimum=1)
    if metric not in ("error",) and not metric.endswith("_gap"):
        raise ValueError(f"metric must be 'error' or a *_gap metric (lower is better); got {metric!r}")
    history = []

    def measure(lam):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            idx, _ = select_subset("vtrust", task, fraction=fraction, value=value, lam=lam, epochs=select_epochs, seed=seed)
        tr = Trainer(model="mlp", epochs=train_epochs, lr=3e-3, seed=seed, progress=False)
        tr.fit(subset_task(task, idx))
        val = evaluate(tr.model_, task.val)
        val["error"] = 1 - val["accuracy"]
        history.append({"lam": lam, **val})
        return val[metric]

    if measure(1.0) > threshold:
        return {"lam": None, "history": history,
                "message": f"even λ = 1 gives validation {metric} {history[0][metric]:.3f} > {threshold}"}
    lo, hi = 0.0, 1.0
    if measure(0.0) <= threshold:
        return {"lam": 0.0, "history": history, "message": "λ = 0 already meets the threshold"}
    for _ in range(steps):
        mid = (lo + hi) / 2
        if measure(mid) <= threshold:
            hi = mid
        else:
            lo = mid
    return {"lam": hi, "history": history, "message": f"λ = {hi:.3f} after {steps} halvings"}


_SAUG_CACHE: dict = {}


def saug_pool(task, corruptions, *, aug_factor: float, rounds: int, epochs: int, seed: int):
    """The SAug-augmented task for these settings (computed once per process, then reused)."""
    from ..select import augmented_task, saug

    key = (task.name, task.seed, len(task.train), tuple(corruptions), float(aug_factor), int(rounds), int(epochs), int(seed))
    if key not in _SAUG_CACHE:
        s = saug(task, list(corruptions), aug_factor=aug_factor, rounds=rounds, epochs=epochs, seed=seed)
        _SAUG_CACHE[key] = (augmented_task(task, s.counts, seed=seed), s)
    return _SAUG_CACHE[key]


def _robust_selection_run(cfg: Mapping) -> dict:
    import warnings

    from ..metrics import corruption_table, predict_logits
    from ..select import VTruST, augmented_task, random_subset, subset_task, uniform_counts

    task = load_task(cfg["dataset"], seed=cfg["seed"], **cfg.get("loader", {}))
    corr, seed, epochs = list(cfg["corruptions"]), cfg["seed"], cfg["epochs"]
    n_aug = int(round(cfg["aug_factor"] * len(task.train)))
    method = cfg["method"]
    if method == "clean":
        train = task
    elif method == "uaug":
        train = augmented_task(task, uniform_counts(corr, n_aug), seed=seed)
    else:
        train, _ = saug_pool(task, corr, aug_factor=cfg["aug_factor"], rounds=cfg["saug_rounds"], epochs=epochs, seed=seed)
        if method == "random":
            train = subset_task(train, random_subset(train, cfg["fraction"], seed=seed))
        elif method == "vtrust":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                sel = VTruST(value="accuracy+robustness", lam=cfg["lam"], fraction=cfg["fraction"], epochs=epochs,
                             model="cnn", seed=seed, progress=False).select(train)
            train = subset_task(train, sel.indices)
    tr = Trainer(model="cnn", epochs=epochs, lr=3e-3, seed=seed, progress=False, metrics=["accuracy"])
    tr.fit(train)
    sa = float((predict_logits(tr.model_, task.test.X).argmax(1).numpy() == task.test.y).mean())
    ra = corruption_table(tr.model_, task.test.X, task.test.y, corruptions=corr, severities=(1, 3, 5), seed=seed)
    return {"standard_acc": sa, "robust_acc": float(ra["accuracy"].mean()), "n_train": len(train.train)}


ROBUST_METHODS = ("clean", "uaug", "saug", "random", "vtrust")


def robust_selection_comparison(
    dataset: str = "digits",
    *,
    methods: Sequence[str] = ROBUST_METHODS,
    corruptions: Sequence[str] = QUICK_CORRUPTIONS,
    aug_factor: float = 1.0,
    fraction: float = 0.5,
    lam: float = 0.5,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 10,
    saug_rounds: int = 2,
    dataset_kwargs: Mapping | None = None,
    store: ResultStore | str | None = None,
    progress: bool = True,
    executor: str = "sequential", workers: int | None = None, scheduler_address: str | None = None,
) -> pd.DataFrame:
    """VTruST-R against clean training, UAug, SAug and a random subset of the SAug pool (images).

    ``standard_acc`` is clean test accuracy; ``robust_acc`` the test accuracy averaged over
    ``corruptions`` × severities 1, 3, 5. The SAug pool (and hence random and VTruST-R, which
    select ``fraction`` of it) is built from validation robust accuracies only.
    """
    check_choice("dataset", dataset, ("digits", "mnist", "cifar10"))
    for m in methods:
        check_choice("method", m, ROBUST_METHODS)
    if isinstance(store, (str, os.PathLike)):
        store = ResultStore(store)
    configs = [{"job": "robust_selection", "selector_version": SELECTOR_VERSION, "dataset": dataset, "method": m,
                "seed": int(s), "corruptions": list(corruptions), "aug_factor": float(aug_factor), "fraction": float(fraction),
                "lam": float(lam), "epochs": int(epochs), "saug_rounds": int(saug_rounds),
                **({"loader": dict(dataset_kwargs)} if dataset_kwargs else {})}
               for s in seeds for m in methods]
    return run_grid(configs, _robust_selection_run, store=store, progress=progress, desc="robust selection runs",
                    executor=executor, workers=workers, scheduler_address=scheduler_address)
