"""Tasks and datasets: real tabular fairness benchmarks, image datasets and perturbations.

>>> from trustkit.data import load_task
>>> task = load_task("compas", sensitive="race", seed=0)
>>> task.summary()[["split", "rows"]].values.tolist()
[['train', 3702], ['val', 1235], ['test', 1235]]
"""

from ._images import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    resize_images,
)
from ._perturb import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_FAMILY,
    CORRUPTIONS,
    clear_corruption_cache,
    corrupt_images,
    feature_noise,
    NOISE_KINDS,
    flip_labels,
    noise_group,
    plant_label_noise,
    with_label_noise,
)
from ._registry import (
    DATASETS,
    IMAGE_DATASETS,
    TABULAR_DATASETS,
    dataset_availability,
    dataset_overview,
    load_task,
    source_frame,
)
from ._tabular import (
    adult_frame,
    compas_frame,
    data_file,
    fetch_openml_frame,
    german_frame,
    load_adult,
    load_compas,
    load_german,
)
from ._csv import from_csv
from ._frame import from_frame, make_tabular_task
from ._split import stratified_split
from ._task import Split, Task

__all__ = [
    "Task", "Split", "make_tabular_task", "from_frame", "from_csv", "stratified_split",
    "load_task", "dataset_overview", "dataset_availability", "source_frame", "DATASETS", "TABULAR_DATASETS", "IMAGE_DATASETS",
    "load_adult", "load_compas", "load_german", "adult_frame", "compas_frame", "german_frame",
    "data_file", "fetch_openml_frame",
    "load_digits", "load_fashion_mnist", "FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT",
    "load_mnist", "load_cifar10", "resize_images",
    "CORRUPTIONS", "BENCHMARK_CORRUPTIONS", "CORRUPTION_FAMILY", "corrupt_images", "clear_corruption_cache",
    "flip_labels", "feature_noise", "with_label_noise", "plant_label_noise", "noise_group", "NOISE_KINDS",
]
