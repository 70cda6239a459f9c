"""Deterministic perturbations: a CIFAR-10-C-style corruption suite, label flips, feature noise.

The corruptions are those of Hendrycks & Dietterich (2019) as implemented by the
``imagecorruptions`` package family; trustkit uses the maintained fork ``imagecorruptions-imaug``
(same import name), with which all 19 corruptions (15 benchmark + 4 held-out) run on numpy 2 and
scikit-image 0.26 (checked by ``tests/test_data.py``). The package needs images of at least
32×32 pixels, so smaller images are bilinearly upsampled to 32, corrupted, and resized back.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import numpy as np

from .._validation import check_choice, check_fraction, check_int, check_positive
from ._images import resize_images
from ._task import Task

__all__ = [
    "CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTION_FAMILY",
    "corrupt_images",
    "flip_labels",
    "feature_noise",
    "with_label_noise",
]

#: The 15 corruptions of the CIFAR-10-C benchmark, by family.
CORRUPTION_FAMILY = {
    "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise",
    "defocus_blur": "blur", "glass_blur": "blur", "motion_blur": "blur", "zoom_blur": "blur",
    "snow": "weather", "frost": "weather", "fog": "weather", "brightness": "weather",
    "contrast": "digital", "elastic_transform": "digital", "pixelate": "digital",
    "jpeg_compression": "digital",
    # the four held-out corruptions of the same paper
    "speckle_noise": "extra", "gaussian_blur": "extra", "spatter": "extra", "saturate": "extra",
}
BENCHMARK_CORRUPTIONS = tuple(k for k, v in CORRUPTION_FAMILY.items() if v != "extra")
CORRUPTIONS = tuple(CORRUPTION_FAMILY)
_MIN_SIZE = 32
_SEEDED = ("impulse_noise", "glass_blur")


@contextmanager
def _numpy_global_seed(seed: int):
    """imagecorruptions draws from numpy's global generator; seed it and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


def corrupt_images(X: np.ndarray, corruption: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """Apply one corruption at one severity to a batch of images, deterministically from ``seed``.

    Parameters
    ----------
    X : ndarray of shape (n, C, H, W)
        Float images in [0, 1] with C = 1 (grey) or 3 (RGB).
    corruption : str
        One of :data:`CORRUPTIONS`.
    severity : int
        1 (mild) to 5 (severe).
    seed : int
        Image ``i`` is corrupted with seed ``seed + i``; the same call gives the same images.

    Returns
    -------
    ndarray
        Corrupted images, same shape and dtype as ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> from trustkit.data import corrupt_images
    >>> X = np.random.default_rng(0).random((2, 1, 32, 32)).astype("float32")
    >>> Xc = corrupt_images(X, "gaussian_noise", 3, seed=0)
    >>> Xc.shape, bool(np.allclose(Xc, corrupt_images(X, "gaussian_noise", 3, seed=0)))
    ((2, 1, 32, 32), True)
    """
    check_choice("corruption", corruption, CORRUPTIONS)
    check_int("severity", severity, minimum=1, maximum=5)
    check_int("seed", seed, minimum=0)
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (n, C, H, W) with C in (1, 3); got {X.shape}")
    from imagecorruptions import corrupt

    n, c, h, w = X.shape
    size = max(h, w, _MIN_SIZE)
    work = resize_images(X.astype(np.float32), size) if (h, w) != (size, size) else X
    out = np.empty((n, c, size, size), dtype=np.float32)
    for i in range(n):
        img = np.clip(work[i].transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if c == 1:
            img = img[:, :, 0]
        # most corruptions draw from numpy's global generator; two take an explicit seed instead
        extra = {"seed": seed + i} if corruption in _SEEDED else {}
        with _numpy_global_seed(seed + i):
            res = np.asarray(corrupt(img, corruption_name=corruption, severity=severity, **extra), dtype=np.float32)
        if res.ndim == 2:
            res = res[:, :, None]
        res = res[:size, :size]
        if c == 1:
            res = res.mean(axis=2, keepdims=True)
        out[i] = res.transpose(2, 0, 1) / 255.0
    if (h, w) != (size, size):
        out = resize_images(out, h)
    return np.clip(out, 0.0, 1.0).astype(X.dtype, copy=False)


def flip_labels(y: np.ndarray, rate: float, *, seed: int = 0, n_classes: int = 2) -> np.ndarray:
    """Flip exactly ``round(rate * n)`` labels chosen uniformly at random.

    Binary labels become ``1 - y``; multi-class labels move to a uniformly chosen other class.
    """
    check_fraction("rate", rate, inclusive_low=True, inclusive_high=True)
    check_int("n_classes", n_classes, minimum=2)
    y = np.asarray(y).astype(np.int64)
    rng = np.random.default_rng(seed)
    k = int(round(rate * len(y)))
    idx = rng.choice(len(y), size=k, replace=False)
    out = y.copy()
    if n_classes == 2:
        out[idx] = 1 - out[idx]
    else:
        shift = rng.integers(1, n_classes, size=k)
        out[idx] = (out[idx] + shift) % n_classes
    return out


def feature_noise(X: np.ndarray, std: float, *, seed: int = 0, columns: Sequence[int] | None = None) -> np.ndarray:
    """Add Gaussian noise ``N(0, std²)`` to the features (in standardised units for tables).

    ``columns`` restricts the noise to some columns (e.g. the numeric ones); default all.
    """
    check_positive("std", std)
    X = np.asarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, std, size=X.shape).astype(np.float32)
    if columns is not None:
        mask = np.zeros(X.shape[1], dtype=bool)
        mask[list(columns)] = True
        noise[:, ~mask] = 0.0
    return X + noise


def with_label_noise(task: Task, rate: float, *, seed: int = 0, splits: Sequence[str] = ("train",)) -> Task:
    """A copy of ``task`` whose labels in ``splits`` (default: train only) are flipped at ``rate``."""
    changes = {}
    for i, name in enumerate(splits):
        s = task.split(name)
        changes[name] = s.replace(y=flip_labels(s.y, rate, seed=seed + i, n_classes=task.n_classes))
    notes = dict(task.notes, label_noise={"rate": rate, "seed": seed, "splits": list(splits)})
    return task.replace(notes=notes, **changes)
