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
from .constraints import CONSTRAINTS, Plan, get_constraint
from .mitigations import MITIGATIONS, get_mitigation

__all__ = ["CONSTRAINTS", "MITIGATIONS", "GRID_KEYS", "DESIGN_COLUMNS", "grid_file", "load_grid", "expand_grid", "sweep_cell", "run_sweep",
           "sweep_status", "sweep_frame", "sweep_effects", "sweep_findings", "describe_setting"]

GRID_KEYS = ("name", "datasets", "models", "constraints", "mitigations", "seeds", "training", "evaluation", "exclude")
TRAINING_DEFAULTS = {"epochs": 10, "lr": 3e-3, "batch_size": 256, "finetune_steps": 50,
                     "fair_lambdas": [0.3, 1.0, 3.0], "pgd_eps": 0.1}
EVALUATION_DEFAULTS = {"eps": 0.1, "pgd_steps": 10, "max_attack": 1000, "latency": True}
#: what each training / evaluation setting allows: (kind, lowest allowed, whether the lowest is excluded)
_SETTING_RULES = {
    "training.epochs": ("int", 1, False), "training.lr": ("float", 0.0, True), "training.batch_size": ("int", 1, False),
    "training.finetune_steps": ("int", 1, False), "training.fair_lambdas": ("floats", 0.0, False),
    "training.pgd_eps": ("float", 0.0, True), "evaluation.eps": ("float", 0.0, True),
    "evaluation.pgd_steps": ("int", 1, False), "evaluation.max_attack": ("int", 1, False),
    "evaluation.latency": ("bool", None, False),
}
#: the cell settings that make two sweep runs comparable: runs that differ in one are never paired or pooled
DESIGN_COLUMNS = [f"train_{k}" for k in TRAINING_DEFAULTS] + [f"eval_{k}" for k in EVALUATION_DEFAULTS]
_FAMILY_KINDS = {"mlp": "tabular", "cnn": "image"}
_WIDTH_KNOB = {"mlp": "hidden", "cnn": "width"}
_DEFAULT_WIDTH = {"mlp": 64, "cnn": 16}
_CSV_KEYS = ("csv", "label", "sensitive", "positive_label", "name")


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


def _no_duplicates(key: str, values: list) -> None:
    seen = []
    for v in values:
        if v in seen:
            raise ValueError(f"grid {key!r} lists {v!r} twice; each value may appear once (a repeated seed or dataset "
                             f"would run the same cells twice and count them as more evidence)")
        seen.append(v)


def _check_setting(where: str, value):
    kind, low, strict = _SETTING_RULES[where]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: must be true or false; got {value!r}")
        return value
    if kind == "floats":
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: must be a non-empty list of numbers >= 0; got {value!r}")
        _no_duplicates(where, value)
        return [_check_setting_number(where, v, "float", low, strict) for v in value]
    return _check_setting_number(where, value, kind, low, strict)


def _check_setting_number(where, value, kind, low, strict):
    ok_type = (isinstance(value, int) if kind == "int" else isinstance(value, (int, float))) and not isinstance(value, bool)
    if not ok_type or (kind == "float" and not math.isfinite(value)):
        raise ValueError(f"{where}: must be {'an integer' if kind == 'int' else 'a finite number'}; got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{where}: must be {'>' if strict else '>='} {low:g}; got {value!r}")
    return value


def _file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _dataset_entry(d) -> tuple[str, dict | None, str]:
    """(name, CSV spec or None, kind) of one entry of a grid's ``datasets``."""
    from ..data import DATASETS, IMAGE_DATASETS

    if isinstance(d, Mapping):
        bad = [k for k in d if k not in _CSV_KEYS]
        if bad or "csv" not in d:
            raise ValueError(f"datasets: a table of your own is {{csv: path, label: column, sensitive: column, "
                             f"positive_label: value (optional), name: a name (optional)}}; got keys {sorted(d)}")
        for k in ("csv", "label", "sensitive"):
            if not isinstance(d.get(k), str) or not d.get(k):
                raise ValueError(f"datasets: {{csv: ...}} needs {k!r} as a non-empty string; got {d.get(k)!r}")
        path = Path(d["csv"])
        if not path.is_file():
            raise ValueError(f"datasets: csv file {d['csv']!r} does not exist (relative paths are read from the folder "
                             f"trustkit runs in)")
        name = str(d.get("name") or path.stem)
        if name in DATASETS:
            raise ValueError(f"datasets: the csv table's name {name!r} is a built-in dataset's; give it another with name:")
        spec = {"csv": str(d["csv"]), "label": d["label"], "sensitive": d["sensitive"],
                "positive_label": d.get("positive_label"), "sha256": _file_sha256(path)}
        return name, spec, "tabular"
    if d not in DATASETS or d == "csv":
        allowed = [x for x in DATASETS if x != "csv"]
        raise ValueError(f"unknown dataset {d!r} in datasets; allowed: {allowed} or {{csv: path, label: ..., "
                         f"sensitive: ...}}.{_suggest(str(d), allowed)}")
    return d, None, "image" if d in IMAGE_DATASETS else "tabular"


def expand_grid(grid) -> list[dict]:
    """Check a grid whole and expand it into cells (one dict per run), reference cells first.

    Refused with a ``ValueError`` naming the key, the value and what is allowed, before anything
    runs: an unknown key, dataset, model family, constraint type, level or mitigation (constraints
    and mitigations are the registered ones, :mod:`trustkit.experiments.constraints` and
    :mod:`trustkit.experiments.mitigations`); a value listed twice in any list; a training or
    evaluation setting of the wrong type or out of range; a model family that does not fit the data
    (an MLP on images, a CNN on tables); a mitigation that needs a sensitive attribute on a dataset
    without one; a mitigation with a constraint it cannot take (ExponentiatedGradient's ensemble
    of logistic regressions cannot be pruned, quantised or distilled; leave the pair out with
    ``exclude``); a grid that expands to no cells.

    A dataset is a built-in name or your own table, ``{csv: path, label: ..., sensitive: ...,
    positive_label: ...}``; its cells carry the file's SHA-256, so records of a changed file are
    never mixed with the old ones.

    Examples
    --------
    >>> cells = expand_grid({"datasets": ["compas"], "models": [{"family": "mlp", "hidden": 32}],
    ...                      "constraints": {"prune_structured": [0.5, 0.9]}, "mitigations": ["erm"], "seeds": [0, 1]})
    >>> len(cells), [(c["constraint"], c["level"]) for c in cells if c["seed"] == 0]
    (6, [('none', 1.0), ('prune_structured', 0.5), ('prune_structured', 0.9)])
    >>> expand_grid({"datasets": ["compas"], "models": ["mlp"], "mitigations": ["erm"], "seeds": [0, 0, 1]})
    Traceback (most recent call last):
    ...
    ValueError: grid 'seeds' lists 0 twice; each value may appear once (a repeated seed or dataset would run the same cells twice and count them as more evidence)
    """
    g = load_grid(grid)
    unknown = [k for k in g if k not in GRID_KEYS]
    if unknown:
        raise ValueError(f"unknown grid key(s) {unknown}; allowed: {list(GRID_KEYS)}.{_suggest(unknown[0], GRID_KEYS)}")
    for key in ("datasets", "models", "mitigations", "seeds"):
        if key not in g:
            raise ValueError(f"the grid needs {key!r} (a list); keys: {list(GRID_KEYS)}")
        if not isinstance(g[key], list):
            raise ValueError(f"grid {key!r} must be a list; got {type(g[key]).__name__}")
        _no_duplicates(key, g[key])
    datasets = [_dataset_entry(d) for d in g["datasets"]]
    _no_duplicates("datasets (names)", [name for name, _, _ in datasets])
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
    _no_duplicates("models", [_model_label(m) for m in models])
    constraints = g.get("constraints") or {}
    if not isinstance(constraints, Mapping):
        raise ValueError("grid 'constraints' must map a constraint type to a list of levels, e.g. {time: [0.5, 0.1]}")
    levels: list[tuple[str, Any]] = [("none", 1.0)]
    for ctype, lv in constraints.items():
        con = get_constraint(ctype)
        if not isinstance(lv, list) or not lv:
            raise ValueError(f"constraints.{ctype} must be a non-empty list of levels; got {lv!r}")
        _no_duplicates(f"constraints.{ctype}", lv)
        for level in lv:
            pair = (ctype, con.check_level(level, where=f"constraints.{ctype}"))
            if pair not in levels:
                levels.append(pair)
    mitigations = g["mitigations"]
    for mit in mitigations:
        get_mitigation(mit)
    seeds = g["seeds"]
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0; got {s!r}")
    sections = {}
    for name, defaults in (("training", TRAINING_DEFAULTS), ("evaluation", EVALUATION_DEFAULTS)):
        given = g.get(name) or {}
        if not isinstance(given, Mapping):
            raise ValueError(f"grid {name!r} must map settings to values, e.g. {{{next(iter(defaults))}: ...}}")
        bad = [k for k in given if k not in defaults]
        if bad:
            raise ValueError(f"unknown {name} setting(s) {bad}; allowed: {sorted(defaults)}.{_suggest(str(bad[0]), defaults)}")
        sections[name] = {k: _check_setting(f"{name}.{k}", v) for k, v in {**defaults, **dict(given)}.items()}
    training, evaluation = sections["training"], sections["evaluation"]
    exclude = list(g.get("exclude") or [])
    for e in exclude:
        if not isinstance(e, Mapping) or not e or any(k not in ("dataset", "model", "constraint", "level", "mitigation", "seed") for k in e):
            raise ValueError(f"each exclude entry maps some of dataset/model/constraint/level/mitigation/seed to a value; got {e!r}")
    _no_duplicates("exclude", exclude)

    cells = []
    for (d, spec, kind), m, (ctype, level), mit, seed in itertools.product(datasets, models, levels, mitigations, seeds):
        cell = {"dataset": d, "model": _model_label(m), "family": m["family"],
                "model_kwargs": {k: v for k, v in m.items() if k != "family"},
                "constraint": ctype, "level": level, "mitigation": mit, "seed": seed,
                **{f"train_{k}": v for k, v in training.items()}, **{f"eval_{k}": v for k, v in evaluation.items()}}
        if spec is not None:
            cell["dataset_spec"] = spec
        if any(all(cell.get(k) == v for k, v in e.items()) for e in exclude):
            continue
        if _FAMILY_KINDS[m["family"]] != kind:
            raise ValueError(f"model family {m['family']!r} does not fit the {kind} dataset {d!r}: use "
                             f"{'cnn' if kind == 'image' else 'mlp'} (or exclude the pair)")
        miti = get_mitigation(mit)
        if miti.needs_sensitive and kind == "image":
            raise ValueError(f"mitigation {mit!r} needs a sensitive attribute; dataset {d!r} has none "
                             f"(exclude {{dataset: {d}, mitigation: {mit}}})")
        if miti.constraints is not None and ctype not in miti.constraints:
            raise ValueError(f"mitigation {mit!r} ({miti.description}) cannot take constraint {ctype!r}: allowed "
                             f"{list(miti.constraints)}; add {{mitigation: {mit}, constraint: {ctype}}} to exclude")
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
def _task(dataset: str, seed: int, spec: str | None = None):
    from ..data import from_csv, load_task

    if spec is not None:
        s = json.loads(spec)
        path = Path(s["csv"])
        if not path.is_file():
            raise FileNotFoundError(f"dataset {dataset!r}: csv file {s['csv']!r} is gone")
        if _file_sha256(path) != s["sha256"]:
            raise ValueError(f"dataset {dataset!r}: csv file {s['csv']!r} changed since the grid was expanded "
                             "(its SHA-256 differs); run the grid again to give it cells of its own")
        return from_csv(path, label=s["label"], sensitive=s["sensitive"], positive_label=s["positive_label"],
                        name=dataset, seed=seed)
    kwargs = {"max_train": 20000} if dataset == "fashion_mnist" else {}
    return load_task(dataset, seed=seed, **kwargs)


def _cell_task(cell: Mapping):
    spec = cell.get("dataset_spec")
    return _task(cell["dataset"], int(cell["seed"]), None if spec is None else json.dumps(spec, sort_keys=True))


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


def _train(cell, task, plan: Plan, mitigation, choice):
    from ..train import Trainer

    terms, weights, callbacks = mitigation.setup(cell, task, choice)
    trainer = Trainer(model=cell["family"], model_kwargs=plan.model_kwargs, terms=terms, weights=weights,
                      callbacks=callbacks, epochs=plan.epochs, lr=plan.lr, batch_size=plan.batch_size,
                      budget=plan.budget, seed=int(cell["seed"]), progress=False, **mitigation.trainer_kwargs(cell))
    record = trainer.fit(task)
    return trainer.model_.eval(), record, terms


def _val_score(record) -> float:
    from ._adaptive import val_score

    last = record.epochs[-1].val if record.epochs else {}
    return val_score(last, fair=True) if last else float("nan")


def _plan(cell: Mapping) -> Plan:
    return Plan(model_kwargs=dict(cell["model_kwargs"]), epochs=int(cell["train_epochs"]), lr=float(cell["train_lr"]),
                batch_size=int(cell["train_batch_size"]))


def sweep_cell(cell: Mapping, *, derived: Mapping | None = None, trained: Mapping | None = None) -> dict:
    """Run one cell of a sweep and return its record (config values are not repeated).

    A short pipeline over the registered classes: the task; the constraint's changes to the plan
    (budget, epochs, width, batch size); training with the mitigation's terms and schedulers (in a
    reference cell, each of the mitigation's candidates, the best on validation kept); the
    constraint's step on the trained model (prune, quantise, distil); the test profile; the
    mitigation's post-processing. ``derived`` maps the reference's run key to what the reference
    measured (``ref_time_s``, ``choice``); :func:`run_sweep` fills it in after the reference cells ran.
    ``trained`` maps a candidate setting (as JSON) to a ``(model, record, terms)`` already trained
    for this cell (a replica job, see :func:`~trustkit.experiments._replica_sweep.sweep_group`).
    """
    import torch

    from ..compress import compressed_profile

    t_cell = time.perf_counter()
    task = _cell_task(cell)
    constraint, mitigation = get_constraint(cell["constraint"]), get_mitigation(cell["mitigation"])
    level = cell["level"]
    ref = dict((derived or {}).get(run_key(reference_of(cell)), {}))
    for key in constraint.needs:
        _need(ref, key, cell)
    out: dict[str, Any] = {"threads": torch.get_num_threads()}

    whole = mitigation.run_cell(cell, task=task, ref=ref)
    if whole is not None:
        return {**out, **whole}

    plan = _plan(cell)
    choices = mitigation.candidates(cell) if cell["constraint"] == "none" else [ref.get("choice")]
    constraint.before(level, plan, cell=cell, task=task, ref=ref)
    best = None
    for choice in choices:  # the reference picks the mitigation's setting on validation
        done = (trained or {}).get(json.dumps(choice))
        model, record, terms = done if done is not None else _train(cell, task, plan, mitigation, choice)
        score = _val_score(record)
        if best is None or (math.isfinite(score) and score > best[0]):
            best = (score, choice, model, record, terms)
    _, choice, dense, record, terms = best
    if choice is not None:
        out["choice"] = choice
        if cell["mitigation"] == "fair_penalty":
            out["fair_lambda"] = choice
    out.update(plan.record)
    out["batch_size_used"] = plan.batch_size
    usage = record.usage
    out["replicas"] = int(usage.get("replicas", 1))  # >1: trained in a replica job, its time shared out
    out.update({"train_time_s": usage["time_s"], "fit_wall_s": usage["wall_s"], "epochs_done": len(record.epochs),
                "trained": record.trained, "train_steps": sum(e.steps for e in record.epochs), "message": record.message,
                "stopped_by": record.stopped_by, "peak_memory_mb": usage["peak_memory_mb"],
                "est_memory_mb": usage["est_memory_mb"], "gflops": usage["flops"] / 1e9,
                "val_score": _val_score(record), "trained_model_kwargs": plan.model_kwargs})

    weights = dict(record.epochs[-1].weights) if record.epochs else None
    out["final_weights"] = weights  # the loss weights the last epoch trained with (schedulers move them)
    c = constraint.after(level, dense, cell=cell, task=task, terms=terms, weights=weights,
                         callbacks=mitigation.setup(cell, task, choice)[2])
    row = compressed_profile(c, dense, task, eps=float(cell["eval_eps"]), pgd_steps=int(cell["eval_pgd_steps"]),
                             max_attack=int(cell["eval_max_attack"]), latency=bool(cell["eval_latency"]),
                             min_run_time=0.05, threads=torch.get_num_threads(), seed=int(cell["seed"]))
    row.pop("exemplars", None)
    row = {k: v for k, v in row.items() if not k.startswith("setting_")}
    row["robust_accuracy"] = row.pop(f"pgd@{float(cell['eval_eps']):g}")
    out.update(row)
    post = mitigation.post_process(c, dense=dense, cell=cell, task=task)
    if post is not None:  # the post-processed predictions are the cell's; the model's own are kept beside them
        for k, v in post.items():
            if k in out:
                out[f"pre_{k}"] = out[k]
            out[k] = v
        out["post_processed"] = cell["mitigation"]
        for k in ("ece", "auc"):  # a randomised hard prediction has no calibrated probabilities
            if k in out:
                out[f"pre_{k}"], out[k] = out[k], float("nan")
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
              on_error: str = "record", extend: bool = False, replicas: bool = False) -> pd.DataFrame:
    """Expand ``grid``, run every cell not yet in ``store`` (references first), return the grid's records.

    The grid is checked whole before anything runs (:func:`expand_grid`) and saved beside the
    records (``grid.yaml``: the grid and its cells' keys, for :func:`sweep_status`). A store that
    holds another grid is refused unless ``extend=True`` (then both grids' cells count as the
    store's). Cells run through :func:`run_grid` with the executor given (``"sequential"``,
    ``"processes"``, ``"dask"``; ``scheduler_address`` for an existing Dask cluster): each finished
    cell is written to the store at once, so a killed sweep loses only the cells that were running
    and a re-run skips the finished ones. Failed cells are recorded (``store.failures()``) and
    retried on the next run.

    With ``replicas=True``, cells that differ only in their seed and train a plain MLP (no budget,
    no schedulers, loss terms a replica job can batch) are trained together as one
    :class:`~trustkit.train.ReplicaTrainer` job per group (every candidate setting of a reference
    cell too); the steps after training (pruning, quantisation, distillation, the test profile,
    post-processing) run per cell, and each cell's record is still written on its own. A cell's
    ``train_time_s`` is then its share of the job (``replicas`` says how many shared it). A reference
    cell whose training time sets a ``time`` level is always trained alone.
    """
    cells = expand_grid(grid)
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    _save_grid(store.path, load_grid(grid), cells, extend=extend)
    kw = dict(store=store, executor=executor, workers=workers, scheduler_address=scheduler_address, threads=threads,
              progress=progress, on_error=on_error)
    if not isinstance(replicas, bool):
        raise TypeError(f"replicas must be True or False; got {replicas!r}")
    if replicas:
        from ._replica_sweep import replica_key, sweep_group

        timed = {run_key(reference_of(c)) for c in cells if "ref_time_s" in get_constraint(c["constraint"]).needs}
        kw.update(group_by=functools.partial(replica_key, timed_refs=frozenset(timed)), run_group=sweep_group)
    refs = [c for c in cells if c["constraint"] == "none"]
    rest = [c for c in cells if c["constraint"] != "none"]
    run_grid(refs, sweep_cell, desc="sweep: reference cells", **kw)
    derived = {}
    for c in refs:
        if store.has(c):
            r = store.get(c)
            derived[run_key(c)] = {"ref_time_s": r["train_time_s"], "choice": r.get("choice", r.get("fair_lambda"))}
    runnable = [c for c in rest if run_key(reference_of(c)) in derived]
    if replicas:
        kw["run_group"] = functools.partial(sweep_group, derived=derived)
    run_grid(runnable, functools.partial(sweep_cell, derived=derived), desc="sweep: constrained cells", **kw)
    return sweep_frame(store, cells)


def _read_grid_meta(path: Path) -> dict | None:
    import yaml

    meta = path / "grid.yaml"
    if not meta.is_file():
        return None
    return yaml.safe_load(meta.read_text(encoding="utf-8")) or {}


def _save_grid(path: Path, grid: Mapping, cells: list, *, extend: bool = False) -> None:
    """Keep the grid and its cells' keys beside the records (not a ``.json``: the store's records are
    its ``*.json`` files); refuse a store written by another grid unless ``extend``."""
    import yaml

    grid = json.loads(json.dumps(grid, default=str))
    keys = [run_key(c) for c in cells]
    old = _read_grid_meta(path)
    grids = [grid]
    if old is not None:
        old_grids = old.get("grids") or ([old["grid"]] if "grid" in old else [])
        old_keys = old.get("keys")
        same = grid in old_grids and (old_keys is None or set(keys) <= set(old_keys))
        if not same and not extend:
            raise ValueError(f"the store {path.name!r} holds the records of another grid "
                             f"({(old_grids or [{}])[-1].get('name', 'unnamed')!r}); use another store, or pass "
                             "extend=True (trustkit sweep --extend) to add this grid's cells to it")
        if old_keys is not None:
            keys = list(dict.fromkeys([*old_keys, *keys]))
        grids = old_grids if grid in old_grids else [*old_grids, grid]
    tmp = path / ".grid.yaml.part"
    tmp.write_text(yaml.safe_dump({"cells": len(keys), "grid": grids[-1], "grids": grids, "keys": keys},
                                  sort_keys=False), encoding="utf-8")
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
    """Done / total / failed of the sweep in ``store``: the cells of the grid(s) saved there, not
    every file in the folder (a store written before grids kept their keys counts its records)."""
    path = Path(store.path if isinstance(store, ResultStore) else store)
    if not path.is_dir():
        raise FileNotFoundError(f"no sweep store at {str(path)!r}")
    store = ResultStore(path)
    meta = _read_grid_meta(path)
    keys = None if meta is None else meta.get("keys")
    if keys is None:
        total = None if meta is None else int(meta["cells"])
        done, failed = len(store), len(store.failures())
    else:
        total = len(keys)
        done = sum((path / f"{k}.json").is_file() for k in keys)
        failed = sum((path / "failed" / f"{k}.json").is_file() for k in keys)
    return {"store": str(path), "done": done, "total": total, "failed": failed,
            "remaining": None if total is None else max(0, total - done)}


# -- what a sweep says ------------------------------------------------------------------------
_CELL = ["dataset", "model", "mitigation"]
_METRIC_NAMES = {"eo_gap": "the EO gap", "dp_gap": "the DP gap", "accuracy": "accuracy", "positive_rate": "the positive rate",
                 "robust_accuracy": "PGD accuracy", "ece": "calibration error (ECE)"}


def describe_setting(constraint: str, level) -> str:
    """Words for a constraint at a level ("pruning 80% of the neurons (structured)")."""
    return get_constraint(constraint).describe(level)


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
