"""The ERM overview: train plain ERM on each dataset under a time budget and measure its trust profile."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from .._validation import check_choice, check_positive
from ..budget import Budget
from ..data import DATASETS, IMAGE_DATASETS, TABULAR_DATASETS, load_task, with_label_noise
from ..metrics import trust_profile
from ..train import Trainer
from ._store import ResultStore, run_grid

__all__ = ["erm_overview", "QUICK_CORRUPTIONS"]

#: One corruption per family, for quick runs.
QUICK_CORRUPTIONS = ("gaussian_noise", "impulse_noise", "defocus_blur", "motion_blur", "fog", "contrast", "pixelate")


def _erm_run(cfg: Mapping) -> dict:
    task = load_task(cfg["dataset"], seed=cfg["seed"], **cfg.get("loader", {}))
    model = "cnn" if task.kind == "image" else "mlp"
    budget = Budget(time_s=cfg["time_budget_s"])
    trainer = Trainer(model=model, epochs=cfg["epochs"], lr=cfg["lr"], budget=budget, seed=cfg["seed"], progress=False)
    record = trainer.fit(task)
    quick = cfg["quick"]
    row = trust_profile(
        trainer.model_, task,
        corruptions=QUICK_CORRUPTIONS if quick else None,
        severities=(1, 3, 5) if quick else (1, 2, 3, 4, 5),
        max_examples=400 if quick else None,
        corruption_examples=cfg.get("corruption_examples"),
        # one corrupted test set for every seed: the ± std is the models', computed once per dataset
        corruption_seed=cfg.get("corruption_seed", cfg["seed"]),
        seed=cfg["seed"],
    )
    if task.kind == "tabular" and cfg.get("label_noise"):
        noisy = with_label_noise(task, cfg["label_noise"], seed=cfg["seed"])
        t2 = Trainer(model=model, epochs=cfg["epochs"], lr=cfg["lr"], budget=budget, seed=cfg["seed"], progress=False)
        r2 = t2.fit(noisy)
        row["label_noise_acc"] = r2.test["accuracy"]
    row.update({
        "task": task.name,
        "model": model,
        "epochs_done": record.completed_epochs,
        "stopped_by": record.stopped_by,
        "train_time_s": record.usage["time_s"],
        "peak_memory_mb": record.usage["peak_memory_mb"],
        "est_memory_mb": record.usage["est_memory_mb"],
        "params": record.usage["params"],
        "gflops": record.usage["flops"] / 1e9,
        "n_train": len(task.train),
    })
    return row


def erm_overview(
    datasets: Sequence[str] = ("adult", "compas", "german", "digits"),
    *,
    seeds: Sequence[int] = (0, 1, 2),
    time_budget_s: float = 5.0,
    epochs: int = 30,
    lr: float = 3e-3,
    label_noise: float = 0.2,
    quick: bool = True,
    corruption_examples: int | None = None,
    store: ResultStore | str | None = None,
    dataset_kwargs: Mapping[str, Mapping] | None = None,
    progress: bool = True,
    executor: str = "sequential", workers: int | None = None, scheduler_address: str | None = None,
) -> pd.DataFrame:
    """Train ERM on each dataset and seed under a time budget and measure its full trust profile.

    ``executor``, ``workers`` and ``scheduler_address`` choose where runs happen (sequentially, local
    processes, a Dask cluster), as in :func:`run_grid`; results and resuming are the same.

    One row per (dataset, seed): test utility, fairness, adversarial, corruption/noise and OOD
    metrics, the clean test accuracy when trained on labels flipped at ``label_noise`` (tables),
    and the run's measured costs. With ``store``, finished runs are kept and skipped on re-run.

    Image corruptions are drawn with seed 0 whatever the model's seed (on a fixed test split, such
    as Fashion-MNIST's, every seed is scored on the same corrupted images, computed once);
    ``corruption_examples`` scores the corruptions and the OOD AUROC on a fixed class-stratified
    subset of that many test images (all of them by default; attacks always use every test image
    outside quick runs).

    ``dataset_kwargs`` maps a dataset name to its loader's arguments: your own table is
    ``"csv": {"path": ..., "label": ..., "sensitive": ..., "positive_label": ...}``, MNIST is
    ``"mnist": {"root": ..., "max_train": 10000}``. The ``task`` column names each task.
    """
    check_positive("time_budget_s", time_budget_s)
    check_positive("corruption_examples", corruption_examples, allow_none=True, integer=True)
    if isinstance(store, (str, os.PathLike)):
        store = ResultStore(store)
    configs = [
        {"job": "erm_overview", "dataset": d, "seed": int(s), "time_budget_s": float(time_budget_s),
         "epochs": int(epochs), "lr": float(lr), "quick": bool(quick), "corruption_seed": 0,
         # a table's runs do not depend on it: their stored results stay valid when it changes
         **({"corruption_examples": int(corruption_examples)}
            if corruption_examples is not None and d in IMAGE_DATASETS else {}),
         "label_noise": float(label_noise) if d in (*TABULAR_DATASETS, "csv") else 0.0}
        for d in datasets for s in seeds
    ]
    dataset_kwargs = {k: dict(v) for k, v in (dataset_kwargs or {}).items()}
    for d in datasets:  # fail fast on a bad name or a missing loader argument, before any training
        check_choice("dataset", d, DATASETS)
        needs = {"mnist": "root", "cifar10": "root", "csv": "path"}.get(d)
        if needs and needs not in dataset_kwargs.get(d, {}):
            raise ValueError(f"dataset {d!r} needs dataset_kwargs={{{d!r}: {{{needs!r}: ...}}}}")
    for c in configs:
        if dataset_kwargs.get(c["dataset"]):
            c["loader"] = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in dataset_kwargs[c["dataset"]].items()}
    return run_grid(configs, _erm_run, store=store, progress=progress, desc="ERM runs",
                    executor=executor, workers=workers, scheduler_address=scheduler_address)
