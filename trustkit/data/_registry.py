"""Look up a loader by dataset name."""

from __future__ import annotations

from .._validation import check_choice
from ._images import load_cifar10, load_digits, load_mnist
from ._tabular import load_adult, load_compas, load_german
from ._task import Task

__all__ = ["DATASETS", "TABULAR_DATASETS", "IMAGE_DATASETS", "load_task"]

_LOADERS = {
    "adult": load_adult,
    "compas": load_compas,
    "german": load_german,
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
}
TABULAR_DATASETS = ("adult", "compas", "german")
IMAGE_DATASETS = ("digits", "mnist", "cifar10")
DATASETS = TABULAR_DATASETS + IMAGE_DATASETS


def load_task(name: str, **kwargs) -> Task:
    """Load a dataset by name: one of :data:`DATASETS`; keyword arguments go to its loader.

    Examples
    --------
    >>> from trustkit.data import load_task
    >>> load_task("german", sensitive="sex", seed=1).group_names
    ('female', 'male')
    """
    check_choice("dataset", name, DATASETS)
    return _LOADERS[name](**kwargs)
