"""Deterministic train / validation / test splits stratified by label × sensitive group, and the checks that
every split holds both classes and every group."""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import train_test_split

from .._validation import check_fraction

__all__ = ["stratified_split"]


def stratified_split(
    strata: np.ndarray, *, val_size: float, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train/val/test, stratified on ``strata`` and deterministic in ``seed``.

    Strata with fewer than 3 members cannot be split three ways; they are merged into one
    "rare" stratum so the split still succeeds (sklearn would otherwise refuse).
    """
    check_fraction("val_size", val_size)
    check_fraction("test_size", test_size)
    if val_size + test_size >= 1:
        raise ValueError(f"val_size + test_size must be < 1; got {val_size} + {test_size}")
    strata = np.asarray(strata).astype(str)
    values, counts = np.unique(strata, return_counts=True)
    rare = set(values[counts < 3])
    if rare:
        strata = np.where(np.isin(strata, list(rare)), "__rare__", strata)
        if (strata == "__rare__").sum() < 3:
            strata = np.where(strata == "__rare__", values[np.argmax(counts)], strata)
    idx = np.arange(len(strata))
    rest, test = train_test_split(idx, test_size=test_size, stratify=strata, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_size / (1 - test_size), stratify=strata[rest], random_state=seed + 1
    )
    return np.sort(train), np.sort(val), np.sort(test)


def _default_min_group_size(val_size: float, test_size: float) -> int:
    """Rows a sensitive group needs so that the smallest split expects at least two of them."""
    smallest = min(1.0 - val_size - test_size, val_size, test_size)
    return max(3, math.ceil(2.0 / smallest - 1e-9))


def _check_splits(parts, y, a, *, label, values, positive, group_names, sens_name, seed) -> None:
    """Every split must hold both label classes and every sensitive group."""
    other = next(v for v in values if v != positive)
    whole = {str(positive): int(y.sum()), str(other): int((1 - y).sum())}
    for split, idx in parts.items():
        ys = y[idx]
        counts = {str(positive): int(ys.sum()), str(other): int(len(ys) - ys.sum())}
        if min(counts.values()) == 0:
            raise ValueError(
                f"after splitting (seed {seed}), the {split} split holds a single class of label {label!r}: "
                f"{counts} (whole table: {whole}); every split needs both classes, so the rarer class needs "
                "more rows (add rows, or use larger val_size / test_size)"
            )
    if a is None:
        return
    for k, g in enumerate(group_names):
        per_split = {split: int((a[idx] == k).sum()) for split, idx in parts.items()}
        empty = [split for split, c in per_split.items() if c == 0]
        if empty:
            raise ValueError(
                f"after splitting (seed {seed}), sensitive group {g!r} of {sens_name!r} has no rows in the "
                f"{' and '.join(empty)} split(s) {per_split}; merge it into another group or drop its rows "
                "before making the task"
            )
