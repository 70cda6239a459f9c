"""Look up a loader by dataset name."""

from __future__ import annotations

from .._validation import check_choice
from ._images import load_cifar10, load_digits, load_mnist
from ._tabular import adult_frame, compas_frame, german_frame, load_adult, load_compas, load_german
from ._task import Task, from_csv

__all__ = ["DATASETS", "TABULAR_DATASETS", "IMAGE_DATASETS", "load_task", "dataset_overview", "source_frame"]

_LOADERS = {
    "adult": load_adult,
    "compas": load_compas,
    "german": load_german,
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "csv": from_csv,
}
TABULAR_DATASETS = ("adult", "compas", "german")
IMAGE_DATASETS = ("digits", "mnist", "cifar10")
#: Every name :func:`load_task` knows; ``"csv"`` is your own table (``path=``, ``label=``, …).
DATASETS = TABULAR_DATASETS + IMAGE_DATASETS + ("csv",)


def load_task(name: str, **kwargs) -> Task:
    """Load a dataset by name: one of :data:`DATASETS`; keyword arguments go to its loader.

    ``load_task("csv", path="mine.csv", label=..., sensitive=..., positive_label=...)`` puts your
    own table through the same validation and splitting (see :func:`~trustkit.data.from_csv`).

    Examples
    --------
    >>> from trustkit.data import load_task
    >>> load_task("german", sensitive="sex", seed=1).group_names
    ('female', 'male')
    """
    check_choice("dataset", name, DATASETS)
    return _LOADERS[name](**kwargs)


def dataset_overview(names=("adult", "compas", "german", "digits"), *, seed: int = 0, dataset_kwargs=None):
    """Two tables for a quick look at datasets: split sizes, and sensitive-group balance (all rows).

    ``dataset_kwargs`` maps a name to its loader's keyword arguments (e.g. ``{"csv": {"path": …}}``).

    Examples
    --------
    >>> sizes, balance = dataset_overview(["german"])
    >>> int(sizes["rows"].sum()), balance["group"].tolist()
    (1000, ['female', 'male'])
    """
    import pandas as pd

    sizes, balance = [], []
    for name in names:
        task = load_task(name, seed=seed, **dict((dataset_kwargs or {}).get(name, {})))
        s = task.summary()
        sizes.append(pd.DataFrame([{
            "task": task.name, "kind": task.kind, "rows": int(s["rows"].sum()), "train": len(task.train),
            "val": len(task.val), "test": len(task.test), "features": len(task.feature_names)
            if task.kind == "tabular" else "x".join(map(str, task.input_shape)),
            "classes": task.n_classes, "sensitive": task.sensitive or "-", "card": f"data_cards/{task.card}.md",
        }]))
        if task.has_sensitive:
            parts = [task.group_balance(sp) for sp in ("train", "val", "test")]
            g = pd.concat(parts).groupby(["task", "attribute", "group"], sort=False)
            tab = g["rows"].sum().to_frame()
            pos = pd.concat([p.assign(pos=p["rows"] * p["positive_rate"]) for p in parts]).groupby(
                ["task", "attribute", "group"], sort=False)["pos"].sum()
            tab["share"] = tab["rows"] / tab["rows"].sum()
            tab["positive_rate"] = pos / tab["rows"]
            balance.append(tab.reset_index())
    return pd.concat(sizes, ignore_index=True), (pd.concat(balance, ignore_index=True) if balance else pd.DataFrame())


def source_frame(name: str):
    """The preprocessed source table of a built-in tabular dataset (``Split.index`` points into it)."""
    check_choice("dataset", name, TABULAR_DATASETS)
    return {"adult": adult_frame, "compas": compas_frame, "german": german_frame}[name]()
