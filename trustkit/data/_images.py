"""Image tasks: scikit-learn's embedded digits, Fashion-MNIST from Debian's package, and MNIST /
CIFAR-10 from a local torchvision root."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_fraction, check_int, check_positive
from ._split import stratified_split
from ._task import Split, Task

__all__ = [
    "load_digits", "load_fashion_mnist", "load_mnist", "load_cifar10", "resize_images",
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT",
]

#: Fashion-MNIST's class names; label ``k`` is ``FASHION_MNIST_CLASSES[k]``.
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Where Debian's ``dataset-fashion-mnist`` package puts the files (``TRUSTKIT_FASHION_MNIST`` overrides it).
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
_FASHION_MNIST_ENV = "TRUSTKIT_FASHION_MNIST"
_FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
)


def resize_images(X: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize a batch ``(n, C, H, W)`` of float images to ``size × size``."""
    if X.shape[-1] == size and X.shape[-2] == size:
        return X
    t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0, 1).numpy()


def _image_task(name, card, X, y, train_idx, val_idx, test_idx, seed, notes, index=None) -> Task:
    """``index`` (default: the row of ``X``) is each row's position in the source files."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    index = np.arange(len(y)) if index is None else np.asarray(index)

    def part(idx):
        return Split(X=X[idx], y=y[idx], a=None, index=index[np.asarray(idx)])

    c, h, w = X.shape[1:]
    return Task(
        name=name,
        train=part(train_idx),
        val=part(val_idx),
        test=part(test_idx),
        feature_names=(f"image[{c}x{h}x{w}]",),
        n_classes=int(y.max()) + 1,
        kind="image",
        card=card,
        seed=seed,
        label_name="digit" if card in ("digits", "mnist") else "class",
        positive_label="",
        notes=notes,
    )


def load_digits(*, image_size: int = 32, seed: int = 0, val_size: float = 0.2, test_size: float = 0.2) -> Task:
    """scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), embedded, no download.

    Pixels are scaled to [0, 1] and bilinearly upsampled to ``image_size`` (default 32, the
    smallest size the corruption suite supports). Splits are stratified by class.

    Examples
    --------
    >>> from trustkit.data import load_digits
    >>> task = load_digits(seed=0)
    >>> task.input_shape, task.n_classes, len(task.train) + len(task.val) + len(task.test)
    ((1, 32, 32), 10, 1797)
    """
    from sklearn.datasets import load_digits as _sk_digits

    check_int("image_size", image_size, minimum=8, maximum=256)
    check_int("seed", seed, minimum=0)
    d = _sk_digits()
    X = (d.images.astype(np.float32) / 16.0)[:, None]
    X = resize_images(X, image_size)
    tr, va, te = stratified_split(d.target, val_size=val_size, test_size=test_size, seed=seed)
    return _image_task("digits", "digits", X, d.target, tr, va, te, seed, {"image_size": image_size})


# --- Fashion-MNIST ------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_idx(path, *, ndim: int) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) holding an ``ndim``-dimensional array.

    The header is two zero bytes, a type code (0x08 = unsigned byte …), the number of dimensions
    and one big-endian uint32 per dimension; the data follow. A file that is not gzip, is cut
    short, or whose size does not match its header raises ``ValueError`` naming the file.
    """
    path = Path(path)
    fix = "the file is corrupt or truncated: replace it (Debian: apt-get install --reinstall dataset-fashion-mnist)"
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            raw = fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{str(path)!r} is not a readable gzip file ({type(exc).__name__}: {exc}); {fix}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (magic number {raw[:4].hex() or 'absent'}); {fix}")
    if raw[3] != ndim:
        raise ValueError(f"{str(path)!r} holds a {raw[3]}-dimensional array, expected {ndim}; {fix}")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(f"{str(path)!r} ends inside its IDX header; {fix}")
    shape = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = _IDX_TYPES[raw[2]]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - start != expected:
        raise ValueError(
            f"{str(path)!r} holds {len(raw) - start} data bytes but its header {shape} needs {expected}; {fix}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=start).reshape(shape)


def _fashion_mnist_root(root=None) -> Path:
    """The Fashion-MNIST folder: ``root`` if given, else ``$TRUSTKIT_FASHION_MNIST``, else Debian's."""
    if root is None:
        root = os.environ.get(_FASHION_MNIST_ENV) or FASHION_MNIST_ROOT
    return Path(root)


def _fashion_mnist_missing(root: Path) -> list[str]:
    return [f for f in _FASHION_MNIST_FILES if not (root / f).is_file()]


def _fashion_mnist_install_hint() -> str:
    return (
        "On Debian/Ubuntu install them with `sudo apt-get install dataset-fashion-mnist` (it puts them in "
        f"{FASHION_MNIST_ROOT}); elsewhere set {_FASHION_MNIST_ENV} (or load_fashion_mnist's root=) to a "
        f"folder holding the four IDX files {', '.join(_FASHION_MNIST_FILES)}"
    )


def _stratified_subset(y: np.ndarray, n: int | None, seed: int, field: str) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``n`` rows (all if ``n`` is None or ≥ len).

    Each class keeps its share of ``n``, rounded by largest remainder, so the class sizes of the
    subset differ from ``n × share`` by less than one.
    """
    if n is None or n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    if n < len(classes):
        raise ValueError(f"{field} must be at least {len(classes)}, one image per class; got {n}")
    quota = counts * (n / len(y))
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota, kind="stable")[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(y == c), size=t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(keep))


def _fashion_mnist_split(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(root / f"{part}-images-idx3-ubyte.gz", ndim=3)
    labels = _read_idx(root / f"{part}-labels-idx1-ubyte.gz", ndim=1)
    where = f"Fashion-MNIST's {part} files under {str(root)!r}"
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise ValueError(f"{where} must hold unsigned bytes; got {images.dtype} images and {labels.dtype} labels")
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{where} must hold 28x28 images; got {images.shape[1]}x{images.shape[2]}")
    if len(images) != len(labels):
        raise ValueError(f"{where} disagree: {len(images)} images but {len(labels)} labels")
    if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{where} hold label {int(labels.max())}; Fashion-MNIST's labels are 0-9")
    return images, labels


def load_fashion_mnist(
    *,
    root=None,
    image_size: int = 28,
    seed: int = 0,
    val_size: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Task:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from Debian's ``dataset-fashion-mnist`` package.

    70,000 grey 28×28 images of Zalando's clothing articles in 10 balanced classes
    (:data:`FASHION_MNIST_CLASSES`; also in ``task.notes["classes"]``), read offline from the
    four gzip IDX files. The official test set (10,000 images) is the test split; validation is a
    class-stratified ``val_size`` fraction of the official training set (60,000 images).

    Parameters
    ----------
    root : str or Path, optional
        Folder with ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``. Default:
        ``$TRUSTKIT_FASHION_MNIST`` if set, else :data:`FASHION_MNIST_ROOT`
        (``/usr/share/datasets/fashion-mnist``, where the Debian package puts them).
    image_size : int
        Side of the returned images (default 28, the original); other sizes are resized
        bilinearly. The corruption suite takes 28 px images as they are (it upsamples to 32 px
        internally and resizes back).
    seed : int
        Seeds the subsets and the validation split; the same arguments give the same task.
    val_size : float
        Fraction of the (possibly subsampled) training images kept for validation, stratified.
    max_train, max_test : int, optional
        Keep a seeded random subset of this many training / test images (default: all) in which
        every class keeps its share, to within one image.

    Returns
    -------
    Task
        ``kind="image"``, inputs ``(1, image_size, image_size)`` in [0, 1], 10 classes, label
        ``class``, no sensitive attribute. ``Split.index`` is the row in the training file
        (0–59,999) or 60,000 + the row in the test file, whatever the subsets.

    Raises
    ------
    FileNotFoundError
        If a file is absent: it says what to install (``apt-get install dataset-fashion-mnist``).
    ValueError
        If a file is corrupt or truncated, or an argument is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from trustkit.data import dataset_availability, load_fashion_mnist
    >>> if dataset_availability("fashion_mnist")["status"].item() != "available":
    ...     import pytest; pytest.skip("Fashion-MNIST absent: apt-get install dataset-fashion-mnist")
    >>> task = load_fashion_mnist(max_train=1000, max_test=500, seed=0)
    >>> task.input_shape, task.n_classes, (len(task.train), len(task.val), len(task.test))
    ((1, 28, 28), 10, (900, 100, 500))
    >>> [int(c) for c in np.bincount(task.test.y)]  # stratified: 50 test images per class
    [50, 50, 50, 50, 50, 50, 50, 50, 50, 50]
    >>> task.notes["classes"][:3]
    ['T-shirt/top', 'Trouser', 'Pullover']
    """
    check_int("image_size", image_size, minimum=8, maximum=256)
    check_int("seed", seed, minimum=0)
    check_fraction("val_size", val_size)
    check_positive("max_train", max_train, allow_none=True, integer=True)
    check_positive("max_test", max_test, allow_none=True, integer=True)
    root = _fashion_mnist_root(root)
    missing = _fashion_mnist_missing(root)
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST was not found under {str(root)!r}: {len(missing)} of 4 files absent "
            f"(e.g. {missing[0]}). {_fashion_mnist_install_hint()}. The embedded alternative is load_digits()."
        )
    img_tr, y_tr = _fashion_mnist_split(root, "train")
    img_te, y_te = _fashion_mnist_split(root, "t10k")
    keep_tr = _stratified_subset(y_tr, max_train, seed, "max_train")
    keep_te = _stratified_subset(y_te, max_test, seed, "max_test")
    n, k = len(keep_tr), len(FASHION_MNIST_CLASSES)
    n_val = math.ceil(val_size * n)
    if n_val < k or n - n_val < k:
        raise ValueError(
            f"val_size={val_size} of {n} training images leaves {n - n_val} for training and {n_val} for "
            f"validation; each needs at least one image per class ({k}): raise max_train or change val_size"
        )
    from sklearn.model_selection import train_test_split

    tr, va = train_test_split(np.arange(n), test_size=val_size, stratify=y_tr[keep_tr], random_state=seed)
    X = np.concatenate([img_tr[keep_tr], img_te[keep_te]]).astype(np.float32)
    X /= 255.0
    X = resize_images(X[:, None], image_size)
    y = np.concatenate([y_tr[keep_tr], y_te[keep_te]])
    index = np.concatenate([keep_tr, len(y_tr) + keep_te])
    te = np.arange(n, len(y))
    notes = {"root": str(root), "image_size": image_size, "classes": list(FASHION_MNIST_CLASSES),
             "max_train": max_train, "max_test": max_test}
    return _image_task("fashion_mnist", "fashion_mnist", X, y, np.sort(tr), np.sort(va), te, seed, notes, index)


def _torchvision(cls_name: str, root, download: bool, train: bool):
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    if root is None:
        raise ValueError(f"root is required for {cls_name}: the folder that holds (or will hold) the data")
    root = Path(root)
    try:
        return cls(root=str(root), train=train, download=download)
    except RuntimeError as exc:
        if download:
            raise
        raise FileNotFoundError(
            f"{cls_name} was not found under {str(root)!r} ({exc}). Put the torchvision files there, "
            f"or pass download=True on a machine with internet access. The embedded alternative is "
            f"load_digits()."
        ) from None


def _load_torchvision(cls_name, card, root, download, seed, val_size, max_train) -> Task:
    check_int("seed", seed, minimum=0)
    check_fraction("val_size", val_size)
    check_positive("max_train", max_train, allow_none=True, integer=True)
    train_ds = _torchvision(cls_name, root, download, True)
    test_ds = _torchvision(cls_name, root, download, False)

    def arrays(ds):
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        X = data.astype(np.float32) / 255.0
        X = X[:, None] if X.ndim == 3 else X.transpose(0, 3, 1, 2)
        return X, np.asarray(ds.targets, dtype=np.int64)

    Xtr, ytr = arrays(train_ds)
    Xte, yte = arrays(test_ds)
    rng = np.random.default_rng(seed)
    if max_train is not None and max_train < len(ytr):
        keep = np.sort(rng.choice(len(ytr), size=max_train, replace=False))
        Xtr, ytr = Xtr[keep], ytr[keep]
    from sklearn.model_selection import train_test_split

    tr, va = train_test_split(np.arange(len(ytr)), test_size=val_size, stratify=ytr, random_state=seed)
    X = np.concatenate([Xtr, Xte])
    y = np.concatenate([ytr, yte])
    te = np.arange(len(ytr), len(y))
    return _image_task(cls_name.lower(), card, X, y, np.sort(tr), np.sort(va), te, seed, {"root": str(root)})


def load_mnist(root, *, download: bool = False, seed: int = 0, val_size: float = 0.1, max_train: int | None = None) -> Task:
    """MNIST from a local torchvision root; the official test set is the test split.

    Raises ``FileNotFoundError`` if the files are absent and ``download`` is False.
    """
    return _load_torchvision("MNIST", "mnist", root, download, seed, val_size, max_train)


def load_cifar10(root, *, download: bool = False, seed: int = 0, val_size: float = 0.1, max_train: int | None = None) -> Task:
    """CIFAR-10 from a local torchvision root; the official test set is the test split.

    Raises ``FileNotFoundError`` if the files are absent and ``download`` is False.
    """
    return _load_torchvision("CIFAR10", "cifar10", root, download, seed, val_size, max_train)
