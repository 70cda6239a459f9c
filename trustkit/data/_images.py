"""Image tasks: scikit-learn's embedded digits, and MNIST / CIFAR-10 from a local torchvision root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_fraction, check_int, check_positive
from ._task import Split, Task, stratified_split

__all__ = ["load_digits", "load_mnist", "load_cifar10", "resize_images"]


def resize_images(X: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize a batch ``(n, C, H, W)`` of float images to ``size × size``."""
    if X.shape[-1] == size and X.shape[-2] == size:
        return X
    t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0, 1).numpy()


def _image_task(name, card, X, y, train_idx, val_idx, test_idx, seed, notes) -> Task:
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)

    def part(idx):
        return Split(X=X[idx], y=y[idx], a=None, index=np.asarray(idx))

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
