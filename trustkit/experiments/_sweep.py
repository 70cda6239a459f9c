"""Factorial sweeps of computational constraints × mitigations: a declarative grid, one record per cell.

A grid (a YAML file or a dict) names datasets, models, constraint types with their levels,
mitigations and seeds; :func:`expand_grid` turns it into cells (refusing, before anything runs, a
grid that expands to nothing, an unknown factor or level, or a combination that makes no sense),
and :func:`run_sweep` runs them through :func:`~trustkit.experiments.run_grid` — sequentially, in
local processes or on a Dask cluster — writing each finished cell to a
:class:`~trustkit.experiments.ResultStore`.

Every cell is one training run under its constraint, measured on the test split: utility,
fairness, PGD robustness, calibration, training time, memory, parameters, FLOPs, model bytes and
inference latency. Unconstrained cells (``constraint="none"``) run first: they are the reference
whose training time sets the ``time`` levels and where the fairness penalty's λ is chosen on
validation; the constrained cells reuse both.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .._validation import _suggest
from ._store import ResultStore, run_grid, run_key

__all__ = ["CONSTRAINTS", "MITIGATIONS", "GRID_KEYS", "DESIGN_COLUMNS", "grid_file", "load_grid", "expand_grid", "sweep_cell", "run_sweep",
           "sweep_status", "sweep_frame", "sweep_effects", "sweep_findings", "describe_setting"]

#: constraint type → what its levels mean
CONSTRAINTS = {
    "none": "the unconstrained reference (level 1.0; added to every grid)",
    "time": "training time as a fraction of the reference cell's measured training time (Budget.time_s)",
    "epochs": "training epochs as a fraction of the grid's epochs",
    "memory": "training memory (weights, gradients, optimiser state, activations) as a fraction of the "
              "reference model's estimate; the widest model that fits at a batch of 32 is trained, with the "
              "grid's batch size halved until it fits",
    "params": "parameters as a fraction of the reference model's; the widest model that fits is trained",
    "prune_unstructured": "share of weights zeroed by global magnitude pruning after training (then a fine-tune)",
    "prune_structured": "share of neurons/channels removed after training (a smaller dense model; then a fine-tune)",
    "quantize": "post-training quantisation: 'int8' or 'int4' (4-bit weights)",
    "distill": "a student of this fraction of the model's width, distilled from the trained model",
}
#: mitigation → what it trains
MITIGATIONS = {
    "erm": "cross-entropy only",
    "fair_penalty": "cross-entropy + λ·soft DP gap, λ chosen on validation in the reference cell",
    "expgrad": "fairlearn ExponentiatedGradient (logistic regression); only 'none' and 'time' apply to it",
    "pgd_at": "cross-entropy + PGD adversarial loss (PGD-3, ε from the grid's training settings)",
    "adaptive": "cross-entropy + soft DP gap weighted by Lagrangian dual ascent (cooper multiplier)",
}
FAIR_MITIGATIONS = ("fair_penalty", "expgrad", "adaptive")
GRID_KEYS = ("name", "datasets", "models", "constraints", "mitigations", "seeds", "training", "evaluation", "exclude")
TRAINING_DEFAULTS = {"epochs": 10, "lr": 3e-3, "batch_size": 256, "finetune_steps": 50,
                     "fair_lambdas": [0.3, 1.0, 3.0], "pgd_eps": 0.1}
EVALUATION_DEFAULTS = {"eps": 0.1, "pgd_steps": 10, "max_attack": 1000, "latency": True}
#: the cell settings that make two sweep runs comparable: runs that differ in one are never paired or pooled
DESIGN_COLUMNS = [f"train_{k}" for k in TRAINING_DEFAULTS] + [f"eval_{k}" for k in EVALUATION_DEFAULTS]
_FAMILY_KINDS = {"mlp": "tabular", "cnn": "image"}
_WIDTH_KNOB = {"mlp": "hidden", "cnn": "width"}
_DEFAULT_WIDTH = {"mlp": 64, "cnn": 16}


def load_grid(grid) -> dict:
    """A grid as a dict: from a YAML file's path, or a dict (copied). Nothing is checked yet."""
    if isinstance(grid, Mapping):
        return copy.deepcopy(dict(grid))
    if isinstance(grid, (str, os.PathLike)):
        import yaml

        path = Path(grid)
        if not path.is_file():
            raise FileNotFoundError(f"grid file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"grid file {str(path)!r} is not valid YAML: {e}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"grid file {str(path)!r} must hold a mapping of {list(GRID_KEYS)}; got {type(data).__name__}")
        return dict(data)
    raise TypeError(f"grid must be a path to a YAML file or a dict; got {type(grid).__name__}")


def grid_file(name: str) -> Path:
    """The YAML file of a grid that ships with trustkit (``"quick"``, ``"medium"``, ``"scaling"``) in the
    repository's ``grids/`` folder; a ``ValueError`` names the grids there when ``name`` is not one.

    >>> grid_file("quick").name
    'quick.yaml'
    """
    folder = Path(__file__).resolve().parents[2] / "grids"
    if not folder.is_dir():
        raise FileNotFoundError(f"the grids folder is not at {folder}; run trustkit from a checkout of the repository")
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    if name not in names:
        raise ValueError(f"unknown grid {name!r}; the grids that ship with trustkit: {names}.{_suggest(str(name), names)}")
    return folder / f"{name}.yaml"


def _model_label(m: Mapping) -> str:
    rest = ",".join(f"{k}={v}" for k, v in sorted(m.items()) if k != "family")
    return m["family"] + (f"[{rest}]" if rest else "")


def _check_level(ctype: str, level) -> Any:
    where = f"constraints.{ctype}"
    if ctype == "quantize":
        if level not in ("int8", "int4"):
            raise ValueError(f"{where}: unknown level {level!r}; allowed: ['int4', 'int8']")
        return level
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
        raise ValueError(f"{where}: levels must be numbers; got {level!r}")
    level = float(level)
    if ctype.startswith("prune"):
        if not 0.0 <= level < 1.0:
            raise ValueError(f"{where}: a sparsity level must be in [0, 1); got {level!r}")
    elif ctype == "none":
        if level != 1.0:
            raise ValueError(f"{where}: the reference has the single level 1.0; got {level!r}")
    elif not 0.0 < level <= 1.0:
        raise ValueError(f"{where}: a level is a fraction of the reference in (0, 1]; got {level!r}")
    return level


def expand_grid(grid) -> list[dict]:
    """Check a grid and expand it into cells (one dict per run), reference cells first.

    Refused with a ``ValueError`` naming the problem: an unknown key, dataset, model family,
    constraint type, level or mitigation; a model family that does not fit the data (an MLP on
    images, a CNN on tables); a fairness mitigation on a dataset without a sensitive attribute;
    ExponentiatedGradient with a constraint other than ``none`` / ``time`` (it trains logistic
    regressions, which cannot be pruned, quantised or distilled; leave the pair out with
    ``exclude``); a grid that expands to no cells.

    Examples
    --------
    >>> cells = expand_grid({"datasets": ["compas"], "models": [{"family": "mlp", "hidden": 32}],
    ...                      "constraints": {"prune_structured": [0.5, 0.9]}, "mitigations": ["erm"], "seeds": [0, 1]})
    >>> len(cells), [(c["constraint"], c["level"]) for c in cells if c["seed"] == 0]
    (6, [('none', 1.0), ('prune_structured', 0.5), ('prune_structured', 0.9)])
    """
    from ..data import DATASETS, IMAGE_DATASETS

    g = load_grid(grid)
    unknown = [k for k in g if k not in GRID_KEYS]
    if unknown:
        raise ValueError(f"unknown grid key(s) {unknown}; allowed: {list(GRID_KEYS)}.{_suggest(unknown[0], GRID_KEYS)}")
    for key in ("datasets", "models", "mitigations", "seeds"):
        if key not in g:
            raise ValueError(f"the grid needs {key!r} (a list); keys: {list(GRID_KEYS)}")
        if not isinstance(g[key], list):
            raise ValueError(f"grid {key!r} must be a list; got {type(g[key]).__name__}")
    datasets = g["datasets"]
    for d in datasets:
        if d not in DATASETS or d == "csv":
            allowed = [x for x in DATASETS if x != "csv"]
            raise ValueError(f"unknown dataset {d!r} in datasets; allowed: {allowed}.{_suggest(str(d), allowed)}")
    models = []
    for m in g["models"]:
        m = {"family": m} if isinstance(m, str) else dict(m)
        fam = m.get("family")
        if fam not in _FAMILY_KINDS:
            raise ValueError(f"unknown model family {fam!r} in models; allowed: {sorted(_FAMILY_KINDS)} "
                             "(e.g. {family: mlp, hidden: 64})")
        from ..models import make_model

        try:  # unknown keyword arguments fail here, before anything runs
            make_model(fam, input_shape=(4,) if fam == "mlp" else (1, 28, 28), n_classes=2,
                       **{k: v for k, v in m.items() if k != "family"})
        except TypeError as e:
            raise ValueError(f"model {m}: {e}") from None
        models.append(m)
    constraints = g.get("constraints") or {}
    if not isinstance(constraints, Mapping):
        raise ValueError("grid 'constraints' must map a constraint type to a list of levels, e.g. {time: [0.5, 0.1]}")
    levels: list[tuple[str, Any]] = [("none", 1.0)]
    for ctype, lv in constraints.items():
        if ctype not in CONSTRAINTS:
            raise ValueError(f"unknown constraint type {ctype!r}; allowed: {sorted(CONSTRAINTS)}.{_suggest(str(ctype), CONSTRAINTS)}")
        if not isinstance(lv, list) or not lv:
            raise ValueError(f"constraints.{ctype} must be a non-empty list of levels; got {lv!r}")
        for level in lv:
            pair = (ctype, _check_level(ctype, level))
            if pair not in levels:
                levels.append(pair)
    mitigations = g["mitigations"]
    for mit in mitigations:
        if mit not in MITIGATIONS:
            raise ValueError(f"unknown mitigation {mit!r}; allowed: {sorted(MITIGATIONS)}.{_suggest(str(mit), MITIGATIONS)}")
    seeds = g["seeds"]
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0; got {s!r}")
    training = {**TRAINING_DEFAULTS, **dict(g.get("training") or {})}
    evaluation = {**EVALUATION_DEFAULTS, **dict(g.get("evaluation") or {})}
    for name, given, allowed in (("training", g.get("training") or {}, TRAINING_DEFAULTS),
                                 ("evaluation", g.get("evaluation") or {}, EVALUATION_DEFAULTS)):
        bad = [k for k in given if k not in allowed]
        if bad:
            raise ValueError(f"unknown {name} setting(s) {bad}; allowed: {sorted(allowed)}")
    exclude = list(g.get("exclude") or [])
    for e in exclude:
        if not isinstance(e, Mapping) or not e or any(k not in ("dataset", "model", "constraint", "level", "mitigation", "seed") for k in e):
            raise ValueError(f"each exclude entry maps some of dataset/model/constraint/level/mitigation/seed to a value; got {e!r}")

    cells = []
    for d, m, (ctype, level), mit, seed in itertools.product(datasets, models, levels, mitigations, seeds):
        cell = {"dataset": d, "model": _model_label(m), "family": m["family"],
                "model_kwargs": {k: v for k, v in m.items() if k != "family"},
                "constraint": ctype, "level": level, "mitigation": mit, "seed": seed,
                **{f"train_{k}": v for k, v in training.items()}, **{f"eval_{k}": v for k, v in evaluation.items()}}
        if any(all(cell.get(k) == v for k, v in e.items()) for e in exclude):
            continue
        kind = "image" if d in IMAGE_DATASETS else "tabular"
        if _FAMILY_KINDS[m["family"]] != kind:
            raise ValueError(f"model family {m['family']!r} does not fit the {kind} dataset {d!r}: use "
                             f"{'cnn' if kind == 'image' else 'mlp'} (or exclude the pair)")
        if mit in FAIR_MITIGATIONS and kind == "image":
            raise ValueError(f"mitigation {mit!r} needs a sensitive attribute; dataset {d!r} has none "
                             f"(exclude {{dataset: {d}, mitigation: {mit}}})")
        if mit == "expgrad" and ctype not in ("none", "time"):
            raise ValueError(f"mitigation 'expgrad' (fairlearn ExponentiatedGradient, an ensemble of logistic "
                             f"regressions) cannot take constraint {ctype!r}: only 'none' and 'time' apply to it; add "
                             f"{{mitigation: expgrad, constraint: {ctype}}} to exclude")
        cells.append(cell)
    if not cells:
        raise ValueError("the grid expands to zero cells: check datasets, models, mitigations, seeds and exclude")
    cells.sort(key=lambda c: c["constraint"] != "none")  # references first (a stable sort keeps the rest in order)
    return cells


def reference_of(cell: Mapping) -> dict:
    """The reference cell (constraint ``none``) of a cell: same dataset, model, mitigation and seed."""
    return {**cell, "constraint": "none", "level": 1.0}


# -- one cell ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _task(dataset: str, seed: int):
    from ..data import load_task

    kwargs = {"max_train": 20000} if dataset == "fashion_mnist" else {}
    return load_task(dataset, seed=seed, **kwargs)


def _terms(cell: Mapping, task, lam: float | None):
    from ..train import AdversarialLoss, CrossEntropy, DualAscent, FairnessPenalty

    mit = cell["mitigation"]
    terms, weights, callbacks = [CrossEntropy()], {"ce": 1.0}, []
    if mit == "fair_penalty":
        terms.append(FairnessPenalty(surrogate="dp"))
        weights["fair"] = float(lam if lam is not None else 1.0)
    elif mit == "adaptive":
        terms.append(FairnessPenalty(surrogate="dp"))
        weights["fair"] = 0.0
        callbacks.append(DualAscent(epsilon=0.02, dual_lr=0.05))
    elif mit == "pgd_at":
        terms.append(AdversarialLoss.for_task(task, eps=float(cell["train_pgd_eps"]), steps=3, seed=int(cell["seed"])))
        weights["rob"] = 1.0
    return terms, weights, callbacks


def _scaled(family: str, kwargs: Mapping, fraction: float) -> dict:
    """The model arguments at ``fraction`` of the asked width (a distillation student)."""
    from ..models import width_kwargs

    top = int(kwargs.get(_WIDTH_KNOB[family], _DEFAULT_WIDTH[family]))
    return width_kwargs(family, max(1, int(round(top * fraction))), **kwargs)


def _memory_fit(family: str, kwargs: Mapping, task, cap_mb: float, batch_size: int) -> tuple[dict, int]:
    """The widest model (at most the reference width), then the largest batch, whose training estimate fits ``cap_mb``.

    Capacity is kept first: the width is the largest that fits at a batch of 32, and the batch size
    is then the grid's, halved until it fits (inputs and activations of a small model often take
    more memory than its weights, and a smaller batch is what a person short of memory tries
    first). Returns (model arguments, batch size).
    """
    from ..budget import training_memory_mb
    from ..models import make_model, widest_kwargs, width_kwargs

    smallest_batch = min(32, int(batch_size))

    def mb(kw, b):
        return training_memory_mb(make_model(family, input_shape=task.input_shape, n_classes=task.n_classes, **kw),
                                  task.input_shape, batch_size=b)

    kw = widest_kwargs(family, lambda k: mb(k, smallest_batch) <= cap_mb, **kwargs)
    if kw is None:
        raise ValueError(f"a memory cap of {cap_mb:.3g} MB is below the smallest {family} for {task.name} "
                         f"({mb(width_kwargs(family, 1, **kwargs), smallest_batch):.3g} MB at batch size "
                         f"{smallest_batch}); raise the level")
    b = int(batch_size)
    while b > smallest_batch and mb(kw, b) > cap_mb:
        b = max(smallest_batch, b // 2)
    return kw, b


def _train(cell, task, model_kwargs, *, epochs, budget=None, lam=None, batch_size=None):
    from ..train import Trainer

    terms, weights, callbacks = _terms(cell, task, lam)
    trainer = Trainer(model=cell["family"], model_kwargs=model_kwargs, terms=terms, weights=weights,
                      callbacks=callbacks, epochs=epochs, lr=float(cell["train_lr"]),
                      batch_size=int(batch_size or cell["train_batch_size"]), budget=budget, seed=int(cell["seed"]),
                      progress=False)
    record = trainer.fit(task)
    return trainer.model_.eval(), record, terms


def _val_score(record) -> float:
    from ._adaptive import val_score

    last = record.epochs[-1].val if record.epochs else {}
    return val_score(last, fair=True) if last else float("nan")


def sweep_cell(cell: Mapping, *, derived: Mapping | None = None) -> dict:
    """Run one cell of a sweep and return its record (config values are not repeated).

    ``derived`` maps the reference's run key to what the reference measured (``ref_time_s``,
    ``fair_lambda``); :func:`run_sweep` fills it in after the reference cells ran.
    """
    import torch

    from ..budget import Budget, count_params, training_memory_mb
    from ..compress import compressed_profile, distill, finetune, prune_structured, prune_unstructured, quantize
    from ..compress._finetune import _as_compressed
    from ..models import capped_kwargs, make_model

    t_cell = time.perf_counter()
    task = _task(cell["dataset"], int(cell["seed"]))
    family, kwargs = cell["family"], dict(cell["model_kwargs"])
    ctype, level, mit = cell["constraint"], cell["level"], cell["mitigation"]
    epochs = int(cell["train_epochs"])
    ref = dict((derived or {}).get(run_key(reference_of(cell)), {}))
    out: dict[str, Any] = {"threads": torch.get_num_threads()}

    if mit == "expgrad":
        from ._adaptive import expgrad_under_budget

        time_s = None
        if ctype == "time":
            time_s = float(level) * _need(ref, "ref_time_s", cell)
        row = expgrad_under_budget(task, time_s=time_s, seed=int(cell["seed"]))
        out.update({k: row[k] for k in ("accuracy", "dp_gap", "eo_gap", "eo_gap_mean")})
        out.update({"train_time_s": row["time_s"], "epochs_done": row["epochs"], "trained": row["epochs"] > 0,
                    "stopped_by": row["stopped_by"],
                    "val_score": row["val_score"], "message": row["message"], "cell_s": time.perf_counter() - t_cell})
        return out

    lam = ref.get("fair_lambda")
    if mit == "fair_penalty" and ctype == "none":  # the reference picks λ on validation
        best = None
        for cand in cell["train_fair_lambdas"]:
            model, record, terms = _train(cell, task, kwargs, epochs=epochs, lam=float(cand))
            score = _val_score(record)
            if best is None or (math.isfinite(score) and score > best[0]):
                best = (score, float(cand), model, record, terms)
        _, lam, model, record, terms = best
        out["fair_lambda"] = lam
    else:
        budget, batch_size = None, int(cell["train_batch_size"])
        if ctype == "epochs":
            epochs = max(1, int(round(float(level) * epochs)))
        elif ctype == "time":
            budget = Budget(time_s=float(level) * _need(ref, "ref_time_s", cell))
        elif ctype == "params":
            full = count_params(make_model(family, input_shape=task.input_shape, n_classes=task.n_classes, **kwargs))
            kwargs = capped_kwargs(family, input_shape=task.input_shape, n_classes=task.n_classes,
                                   max_params=max(1, int(float(level) * full)), **kwargs)
        elif ctype == "memory":
            full = training_memory_mb(make_model(family, input_shape=task.input_shape, n_classes=task.n_classes, **kwargs),
                                      task.input_shape, batch_size=int(cell["train_batch_size"]))
            out["memory_cap_mb"] = float(level) * full
            kwargs, batch_size = _memory_fit(family, kwargs, task, out["memory_cap_mb"], batch_size)
        out["batch_size_used"] = batch_size
        model, record, terms = _train(cell, task, kwargs, epochs=epochs, budget=budget, lam=lam, batch_size=batch_size)
        if mit == "fair_penalty":
            out["fair_lambda"] = lam
    dense = model
    usage = record.usage
    out.update({"train_time_s": usage["time_s"], "fit_wall_s": usage["wall_s"], "epochs_done": len(record.epochs),
                "trained": record.trained, "train_steps": sum(e.steps for e in record.epochs), "message": record.message,
                "stopped_by": record.stopped_by, "peak_memory_mb": usage["peak_memory_mb"],
                "est_memory_mb": usage["est_memory_mb"], "gflops": usage["flops"] / 1e9,
                "val_score": _val_score(record), "trained_model_kwargs": kwargs})

    weights = dict(record.epochs[-1].weights) if record.epochs else None
    steps = int(cell["train_finetune_steps"])
    if ctype == "prune_unstructured":
        c, _ = finetune(prune_unstructured(dense, sparsity=float(level)), task, steps=steps, terms=terms,
                        weights=weights, seed=int(cell["seed"]), lr=1e-3, batch_size=int(cell["train_batch_size"]))
    elif ctype == "prune_structured":
        c, _ = finetune(prune_structured(dense, sparsity=float(level), input_shape=task.input_shape), task,
                        steps=steps, terms=terms, weights=weights, seed=int(cell["seed"]), lr=1e-3,
                        batch_size=int(cell["train_batch_size"]))
    elif ctype == "quantize":
        if level == "int8":
            c = (quantize(dense, scheme="int8_static", calibration=task.train) if task.kind == "image"
                 else quantize(dense, scheme="int8_dynamic", backend="torch.ao"))
        else:
            c = quantize(dense, scheme="int4_weight")
    elif ctype == "distill":
        extra = [t for t in terms if t.name != "ce"]
        c, _ = distill(dense, task, student=family, student_kwargs=_scaled(family, kwargs, float(level)), epochs=epochs,
                       lr=float(cell["train_lr"]), batch_size=int(cell["train_batch_size"]), seed=int(cell["seed"]),
                       extra_terms=extra, extra_weights={t.name: (weights or {}).get(t.name, 1.0) for t in extra},
                       callbacks=[cb for cb in _terms(cell, task, lam)[2]])
    else:
        c = _as_compressed(dense)
    row = compressed_profile(c, dense, task, eps=float(cell["eval_eps"]), pgd_steps=int(cell["eval_pgd_steps"]),
                             max_attack=int(cell["eval_max_attack"]), latency=bool(cell["eval_latency"]),
                             min_run_time=0.05, threads=torch.get_num_threads(), seed=int(cell["seed"]))
    row.pop("exemplars", None)
    row = {k: v for k, v in row.items() if not k.startswith("setting_")}
    row["robust_accuracy"] = row.pop(f"pgd@{float(cell['eval_eps']):g}")
    out.update(row)
    out["compress_s"] = c.cost_s
    out["cell_s"] = time.perf_counter() - t_cell
    return out


def _need(ref: Mapping, key: str, cell: Mapping):
    if key not in ref:
        raise ValueError(f"cell {cell['constraint']}={cell['level']} needs {key!r} from its reference cell "
                         "(constraint 'none'), which has not run; run the whole grid with run_sweep")
    return ref[key]


# -- the sweep --------------------------------------------------------------------------------
def run_sweep(grid, *, store, executor: str = "sequential", workers: int | None = None,
              scheduler_address: str | None = None, threads: int | None = None, progress: bool = True,
              on_error: str = "record") -> pd.DataFrame:
    """Expand ``grid``, run every cell not yet in ``store`` (references first), return all records.

    The grid is checked before anything runs (:func:`expand_grid`) and saved beside the records
    (``grid.yaml``, for :func:`sweep_status`). Cells run through :func:`run_grid` with the
    executor given (``"sequential"``, ``"processes"``, ``"dask"``; ``scheduler_address`` for an
    existing Dask cluster): each finished cell is written to the store at once, so a killed sweep
    loses only the cells that were running and a re-run skips the finished ones. Failed cells are
    recorded (``store.failures()``) and retried on the next run.
    """
    cells = expand_grid(grid)
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    _save_grid(store.path, load_grid(grid), len(cells))
    kw = dict(store=store, executor=executor, workers=workers, scheduler_address=scheduler_address, threads=threads,
              progress=progress, on_error=on_error)
    refs = [c for c in cells if c["constraint"] == "none"]
    rest = [c for c in cells if c["constraint"] != "none"]
    run_grid(refs, sweep_cell, desc="sweep: reference cells", **kw)
    derived = {}
    for c in refs:
        if store.has(c):
            r = store.get(c)
            derived[run_key(c)] = {"ref_time_s": r["train_time_s"], "fair_lambda": r.get("fair_lambda")}
    runnable = [c for c in rest if run_key(reference_of(c)) in derived]
    run_grid(runnable, functools.partial(sweep_cell, derived=derived), desc="sweep: constrained cells", **kw)
    return sweep_frame(store, cells)


def _save_grid(path: Path, grid: Mapping, n_cells: int) -> None:
    """Keep the grid beside the records (not a ``.json``: the store's records are its ``*.json`` files)."""
    import yaml

    tmp = path / ".grid.yaml.part"
    tmp.write_text(yaml.safe_dump({"cells": n_cells, "grid": json.loads(json.dumps(grid, default=str))}, sort_keys=False),
                   encoding="utf-8")
    tmp.replace(path / "grid.yaml")


def sweep_frame(store, cells=None) -> pd.DataFrame:
    """The store's records as one DataFrame (only the grid's cells when ``cells`` is given)."""
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    if cells is None:
        return store.frame()
    rows = []
    for c in cells:
        if store.has(c):
            rows.append({**c, **store.get(c)})
    return pd.DataFrame(rows)


def sweep_status(store) -> dict:
    """Done / total / failed of the sweep in ``store`` (``total`` from the grid saved there)."""
    path = Path(store.path if isinstance(store, ResultStore) else store)
    if not path.is_dir():
        raise FileNotFoundError(f"no sweep store at {str(path)!r}")
    store = ResultStore(path)
    meta = path / "grid.yaml"
    total = None
    if meta.is_file():
        import yaml

        total = int(yaml.safe_load(meta.read_text(encoding="utf-8"))["cells"])
    done = len(store)
    failed = len(store.failures())
    return {"store": str(path), "done": done, "total": total, "failed": failed,
            "remaining": None if total is None else max(0, total - done)}


# -- what a sweep says ------------------------------------------------------------------------
_CELL = ["dataset", "model", "mitigation"]
_NAMES = {"time": "cutting training time to {l:.0%} of the reference", "epochs": "training for {l:.0%} of the epochs",
          "memory": "capping training memory at {l:.0%}", "params": "capping parameters at {l:.0%}",
          "prune_unstructured": "pruning {l:.0%} of the weights (unstructured)",
          "prune_structured": "pruning {l:.0%} of the neurons (structured)", "quantize": "quantising to {l}",
          "distill": "distilling into a student of {l:.0%} width"}
_METRIC_NAMES = {"eo_gap": "the EO gap", "dp_gap": "the DP gap", "accuracy": "accuracy", "positive_rate": "the positive rate",
                 "robust_accuracy": "PGD accuracy", "ece": "calibration error (ECE)"}


def describe_setting(constraint: str, level) -> str:
    """Words for a constraint at a level ("pruning 80% of the neurons (structured)")."""
    if constraint == "none":
        return "the unconstrained reference"
    return _NAMES[constraint].format(l=level if constraint == "quantize" else float(level))


def _setting(constraint, level) -> str:
    return f"{constraint}={level}"


def sweep_effects(df: pd.DataFrame, *, metrics=("accuracy", "eo_gap", "robust_accuracy"), correction: str = "bh",
                  alpha: float = 0.05, min_seeds: int = 3, margins: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Each constrained cell's change from its reference, paired by seed, as one corrected family.

    For every (dataset, model, mitigation, constraint, level) and metric: the per-seed difference
    *cell − reference* (the same dataset, model, mitigation and seed without the constraint), its
    mean, sample std, Student-t 95% interval (``lo``, ``hi``), the paired t-test's p-value, the
    equivalence test against the metric's margin (:data:`trustkit.stats.EQUIVALENCE_MARGINS`) and,
    over every row as one family (Benjamini–Hochberg by default), ``q_value``, ``q_equiv`` and a
    ``verdict``: ``changed``, ``no change``, ``inconclusive`` (with ``seeds_needed``), ``not tested``
    (fewer than ``min_seeds`` seeds) or ``did not train``. The family is named in the ``family``
    column. Runs that did not train (a time level too small for one epoch) are left out and
    counted in ``untrained``. Runs of different training or evaluation settings (two grids in one
    store) are never paired with each other: ``design`` names what tells them apart. For PGD
    accuracy, ``attack`` says whether the constrained model was attacked white-box or through the
    dense model's gradients (``transfer``: an upper bound).

    >>> import pandas as pd
    >>> rows = [{"dataset": "d", "model": "m", "mitigation": "erm", "seed": s, "constraint": c, "level": lv,
    ...          "eo_gap": g} for s, (g0, g1) in enumerate([(0.1, 0.2), (0.12, 0.21), (0.11, 0.23)])
    ...         for c, lv, g in (("none", 1.0, g0), ("prune_structured", 0.8, g1))]
    >>> e = sweep_effects(pd.DataFrame(rows), metrics=["eo_gap"])
    >>> round(float(e["diff"].iloc[0]), 3), int(e["n"].iloc[0]), e["verdict"].iloc[0]
    (0.103, 3, 'changed')
    """
    from ._evidence import add_verdicts, design_labels, paired_tests

    need = [*_CELL, "seed", "constraint", "level"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"sweep_effects needs columns {missing}; the frame has {list(df.columns)}")
    metrics = [m for m in metrics if m in df.columns]
    d = df.assign(level=df["level"].astype(str), design=design_labels(df, columns=DESIGN_COLUMNS))
    d["setting"] = [_setting(c, lv) for c, lv in zip(d["constraint"], d["level"])]
    tests = paired_tests(d, within=["design", *_CELL], arm="setting", baseline=_setting("none", "1.0"), metrics=metrics,
                         margins=margins)
    cells = d.drop_duplicates("setting").set_index("setting")[["constraint", "level"]]
    tests.insert(4, "constraint", tests["setting"].map(cells["constraint"]))
    tests.insert(5, "level", tests["setting"].map(cells["level"]))
    if "attack" in d.columns:
        kinds = d.groupby(["design", *_CELL, "setting"], dropna=False)["attack"].agg(
            lambda s: ",".join(sorted(set(s.dropna().astype(str)))))
        tests["attack"] = [kinds.get(tuple(r[c] for c in ["design", *_CELL, "setting"]), "")
                           if r["metric"] == "robust_accuracy" else "" for _, r in tests.iterrows()]
    else:
        tests["attack"] = ""
    names = ", ".join(_METRIC_NAMES.get(m, m) for m in metrics)
    out = add_verdicts(tests.drop(columns=["setting"]), correction=correction, alpha=alpha, min_seeds=min_seeds,
                       what=f"constraint effects ({names})")
    out["family"] = out.attrs["family"]
    return out


def _sentence_start(r) -> str:
    text = describe_setting(r["constraint"], r["level"])
    return text[0].upper() + text[1:]


def _q(x) -> str:
    return "n/a" if not np.isfinite(x) else (f"{x:.2g}" if x >= 0.001 else f"{x:.1e}")


def sweep_findings(effects: pd.DataFrame, *, metric: str = "eo_gap", top: int = 5) -> list[str]:
    """Sentences about ``metric`` computed from :func:`sweep_effects`'s verdicts, each with its uncertainty.

    A change is called a change only when its corrected test says so (the sentence names the
    family); "no change" only when the corrected equivalence test puts it inside its margin;
    everything else is inconclusive, with the number of seeds that would decide it. Runs that did
    not train are reported as such, never as an effect. A narrower gap that came with a significant
    loss of accuracy *and* a significant move of the positive-prediction rate says so, with both
    tests; without them nothing is said about why a gap moved.
    """
    need = {"metric", "verdict", "diff", "q_value"}
    if not need <= set(effects.columns):
        raise ValueError(f"sweep_findings needs the output of sweep_effects (columns {sorted(need)})")
    e = effects[effects["metric"] == metric]
    name = _METRIC_NAMES.get(metric, metric)
    if e.empty:
        return [f"No constrained cell has {name} measured against its reference."]
    family = str(effects["family"].iloc[0]) if "family" in effects.columns and len(effects) else ""
    keys = [*_CELL, "constraint", "level"] + (["design"] if "design" in effects.columns else [])
    other = {m: effects[effects["metric"] == m].set_index(keys) for m in ("accuracy", "positive_rate")}
    out = []

    def where(r) -> str:
        d = f"; {r['design']}" if r.get("design") else ""
        return f"{r['dataset']} ({r['model']}, {r['mitigation']}{d})"

    def why(r) -> str:
        if metric not in ("eo_gap", "dp_gap", "eo_gap_mean") or r["diff"] >= 0:
            return ""
        k = tuple(r[c] for c in keys)
        acc, pos = other["accuracy"], other["positive_rate"]
        if k not in acc.index or k not in pos.index:
            return ""
        a, p = acc.loc[k], pos.loc[k]
        if bool(a["significant"]) and a["diff"] < 0 and bool(p["significant"]):
            return (f"; in the same runs accuracy fell by {-a['diff']:.3f} (q = {_q(a['q_value'])}) and the share of positive "
                    f"predictions moved by {p['diff']:+.3f} (q = {_q(p['q_value'])}): the gap narrowed as the model "
                    "leaned towards one class")
        return ""

    def note(r) -> str:
        if metric == "robust_accuracy" and "transfer" in str(r.get("attack", "")):
            return ("; the constrained model has no gradients, so it was attacked through the dense model's (a transfer "
                    "attack: its PGD accuracy is an upper bound, not a white-box number like the reference's)")
        return ""

    changed = e[e["verdict"] == "changed"]
    changed = changed.reindex(changed["diff"].abs().sort_values(ascending=False).index)
    for _, r in changed.head(top).iterrows():
        out.append(f"{_sentence_start(r)} changed {name} on {where(r)} by {r['diff']:+.3f} ± {r['std']:.3f} "
                   f"(from {r['reference']:.3f} to {r['value']:.3f}; 95% CI [{r['lo']:+.3f}, {r['hi']:+.3f}], "
                   f"q = {_q(r['q_value'])}, {int(r['n'])} seeds){why(r)}{note(r)}.")
    if len(changed) > top:
        out.append(f"{len(changed) - top} more cells changed {name} (see the effects table).")
    same = e[e["verdict"] == "no change"]
    if len(same):
        transfer = [r for _, r in same.iterrows() if note(r)]
        out.append(f"Within ±{same['margin'].iloc[0]:g} of the reference ({name}; equivalence tests, q < "
                   f"{_alpha_of(family)}): " + "; ".join(f"{describe_setting(r['constraint'], r['level'])} on {where(r)}"
                                                       for _, r in same.iterrows())
                   + (f" (for {len(transfer)} of them{note(transfer[0])})" if transfer else "") + ".")
    unsure = e[e["verdict"] == "inconclusive"]
    if len(unsure):
        need_s = unsure["seeds_needed"].dropna()
        plan = (f"; telling a change of {unsure['margin'].iloc[0]:g} from none would take about "
                f"{int(need_s.median())} seeds per cell (median; 80% power)" if len(need_s) else "")
        out.append(f"Inconclusive for {name} in {len(unsure)} cell(s): neither a change nor its absence is shown "
                   f"with {int(unsure['n'].max())} seeds{plan}.")
    few = e[e["verdict"] == "not tested"]
    if len(few):
        out.append(f"Not tested for {name} in {len(few)} cell(s): {int(few['n'].max())} seed(s) per cell is fewer than a "
                   "paired test needs; run more seeds before reading the table.")
    dead = e[e["verdict"] == "did not train"]
    for _, r in dead.iterrows():
        out.append(f"{_sentence_start(r)} left no run that trained on {where(r)} ({int(r['untrained'])} seed(s): the budget "
                   "could not hold one epoch); these runs are kept out of every effect.")
    partial = e[(e["verdict"] != "did not train") & (e["untrained"] > 0)]
    if len(partial):
        out.append(f"{int(partial['untrained'].sum())} run(s) that did not train were left out of {len(partial)} "
                   f"cell(s) of {name}.")
    if family:
        out.append(f"Tests: {family}.")
    return out


def _alpha_of(family: str) -> str:
    import re

    m = re.search(r"< ([0-9.]+)$", family)
    return m.group(1) if m else "0.05"
