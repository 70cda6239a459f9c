"""Deterministic perturbations: a CIFAR-10-C-style corruption suite, label flips, feature noise.

The corruptions are those of Hendrycks & Dietterich (2019) as implemented by the
``imagecorruptions`` package family; trustkit uses the maintained fork ``imagecorruptions-imaug``
(same import name), with which all 19 corruptions (15 benchmark + 4 held-out) run on numpy 2 and
scikit-image 0.26 (checked by ``tests/test_data.py``). The package needs images of at least
32×32 pixels, so smaller images are bilinearly upsampled to 32, corrupted, and resized back.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
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
    "clear_corruption_cache",
    "flip_labels",
    "feature_noise",
    "with_label_noise",
    "plant_label_noise",
    "noise_group",
    "NOISE_KINDS",
]

#: how :func:`plant_label_noise` chooses the training labels it flips
NOISE_KINDS = ("uniform", "group")

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
#: corrupted batches kept in memory, least recently used first; at most this many bytes
CORRUPTION_CACHE_BYTES = 1 << 30
_CACHE: "OrderedDict[tuple, np.ndarray]" = OrderedDict()


def _cache_key(X: np.ndarray, corruption: str, severity: int, seed: int) -> tuple:
    digest = hashlib.blake2b(np.ascontiguousarray(X).view(np.uint8), digest_size=16).hexdigest()
    return (X.shape, X.dtype.str, digest, corruption, int(severity), int(seed))


def _cache_put(key: tuple, value: np.ndarray) -> None:
    if value.nbytes > CORRUPTION_CACHE_BYTES:
        return
    _CACHE[key] = value
    while sum(v.nbytes for v in _CACHE.values()) > CORRUPTION_CACHE_BYTES:
        _CACHE.popitem(last=False)


def clear_corruption_cache() -> None:
    """Forget every corrupted batch :func:`corrupt_images` kept."""
    _CACHE.clear()


@contextmanager
def _numpy_global_seed(seed: int):
    """imagecorruptions draws from numpy's global generator; seed it and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


def corrupt_images(X: np.ndarray, corruption: str, severity: int, *, seed: int = 0, cache: bool = True) -> np.ndarray:
    """Apply one corruption at one severity to a batch of images, deterministically from ``seed``.

    The corruption package works one image at a time (about 20 ms per image for all 19
    corruptions at 32 px), so results are kept in memory: a second call with the same images,
    corruption, severity and seed (the next seed's model on the same test images, or the OOD
    score after the corruption table) returns a copy of the first call's result.

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
    cache : bool
        Keep the result in (and read it from) an in-memory cache of at most
        :data:`CORRUPTION_CACHE_BYTES` bytes; :func:`clear_corruption_cache` empties it.

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
    key = _cache_key(X, corruption, severity, seed) if cache else None
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key].copy()
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
    out = np.clip(out, 0.0, 1.0).astype(X.dtype, copy=False)
    if key is not None:
        _cache_put(key, out.copy())
    return out


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


def noise_group(task: Task) -> tuple[np.ndarray, str]:
    """The training points that ``"group"`` label noise flips within: a boolean mask over
    ``task.train`` and the group's name.

    With a sensitive attribute it is the *minority* group, the smaller sensitive group of the
    training split (ties: the lower code): Adult by sex gives ``Female`` (about 32% of the
    training split), COMPAS by race ``Other`` (about 49%). Without one (digits, MNIST,
    CIFAR-10) it is the points whose label lies in the lower half of the classes (digits: labels
    0–4, about half of the split).

    >>> from trustkit.data import load_task
    >>> mask, name = noise_group(load_task("digits", seed=0))
    >>> name, round(float(mask.mean()), 2)
    ('labels 0–4', 0.5)
    """
    tr = task.train
    if tr.a is not None and len(task.group_names):
        counts = np.bincount(tr.a, minlength=len(task.group_names))
        g = int(np.argmin(counts))
        return tr.a == g, f"{task.sensitive}={task.group_names[g]}"
    half = task.n_classes // 2
    return tr.y < half, f"labels 0–{half - 1}"


def plant_label_noise(task: Task, rate: float, *, kind: str = "uniform", seed: int = 0) -> tuple[Task, np.ndarray]:
    """Flip training labels at ``rate``; validation and test stay clean.

    ``round(rate · n)`` of the ``n`` training labels are flipped (binary: ``1 - y``; multi-class:
    a uniformly chosen other class, as :func:`flip_labels` does), so the flipped share of the
    training split is ``rate`` up to rounding:

    * ``"uniform"``: the flipped points are drawn uniformly from the whole training split (each
      point is flipped with probability ``rate``, the count fixed);
    * ``"group"``: they are drawn only from :func:`noise_group` (the minority sensitive group, or
      the lower half of the classes), each of its points flipped with probability
      ``rate · n / n_group``. That needs ``rate ≤ n_group / n``; above one half of the group
      its labels are mostly inverted.

    Returns the noisy task (``notes["label_noise"]`` says what was done) and a boolean mask over
    ``task.train`` of the flipped points. ``seed`` fixes which points flip.

    >>> from trustkit.data import load_task
    >>> noisy, flipped = plant_label_noise(load_task("compas", seed=0), 0.2, kind="group", seed=0)
    >>> round(float(flipped.mean()), 3), noisy.notes["label_noise"]["group"]
    (0.2, 'race=Other')
    """
    check_choice("kind", kind, NOISE_KINDS)
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 < rate <= 0.5:
        raise ValueError(f"rate must be a number in (0, 0.5] (the share of training labels to flip); got {rate!r}")
    check_int("seed", seed, minimum=0)
    y = np.asarray(task.train.y).astype(np.int64)
    n, k = len(y), int(round(rate * len(y)))
    noisy, group = y.copy(), None
    if kind == "uniform":
        noisy = flip_labels(y, rate, seed=seed, n_classes=task.n_classes)
    else:
        mask, group = noise_group(task)
        members = np.flatnonzero(mask)
        if k > len(members):
            raise ValueError(f"rate {rate:g} asks for {k} flipped training labels, but the group {group} has "
                             f"{len(members)} ({len(members) / n:.1%} of the training split); 'group' noise needs "
                             f"rate <= {len(members) / n:.3f} here")
        noisy[members] = flip_labels(y[members], k / len(members), seed=seed, n_classes=task.n_classes)
    flipped = noisy != y
    notes = dict(task.notes, label_noise={"rate": float(rate), "kind": kind, "seed": int(seed), "group": group,
                                          "flipped": int(flipped.sum())})
    return task.replace(train=task.train.replace(y=noisy), notes=notes), flipped
