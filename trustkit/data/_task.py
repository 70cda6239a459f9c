"""The :class:`Task` and its :class:`Split`: features, labels and sensitive group codes, three ways split.

A task is built either by a built-in loader (``load_adult`` …) or from a person's own table with
:func:`~trustkit.data.from_frame` / :func:`~trustkit.data.from_csv`; both go through
:func:`~trustkit.data.make_tabular_task` (in ``_frame``), so the same validation, stratified
splitting (``_split``) and train-only encoding apply to every table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Split", "Task"]


@dataclass(frozen=True)
class Split:
    """One split of a task: features ``X``, labels ``y`` and sensitive group codes ``a``.

    ``X`` is float32, shape ``(n, d)`` for tables or ``(n, C, H, W)`` for images in [0, 1];
    ``y`` is int64 (0/1 for binary tasks, class ids otherwise); ``a`` is int64 group codes
    indexing :attr:`Task.group_names`, or ``None`` for a task without a sensitive attribute.
    ``index`` gives each row's position in the source table (before splitting).
    """

    X: np.ndarray
    y: np.ndarray
    a: np.ndarray | None
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def replace(self, **changes) -> "Split":
        """Return a copy with some arrays replaced (e.g. noisy labels)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Task:
    """A supervised learning task with deterministic splits and an optional sensitive attribute.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"adult"``.
    train, val, test : Split
        The three splits, made from ``seed``; the test split is for final reports only.
    feature_names : tuple of str
        One name per column of ``X`` (tables) or ``("pixel",)`` descriptors (images).
    n_classes : int
        2 for binary tasks.
    kind : {"tabular", "image"}
    card : str
        Name of the data card in ``data_cards/`` that documents the source.
    seed : int
        The seed the splits were drawn with.
    sensitive : str or None
        Name of the sensitive attribute (e.g. ``"sex"``), ``None`` when the task has none.
    group_names : tuple of str
        Names of the sensitive groups; ``a == k`` means ``group_names[k]``.
    sensitive_as_feature : bool
        Whether the sensitive attribute is also one of the features (an explicit option).
    label_name, positive_label : str
        The label column and the value mapped to ``y == 1``.
    """

    name: str
    train: Split
    val: Split
    test: Split
    feature_names: tuple[str, ...]
    n_classes: int
    kind: str
    card: str
    seed: int
    sensitive: str | None = None
    group_names: tuple[str, ...] = ()
    sensitive_as_feature: bool = False
    label_name: str = "label"
    positive_label: str = "1"
    notes: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(104,)`` or ``(1, 32, 32)``."""
        return tuple(self.train.X.shape[1:])

    @property
    def numeric_columns(self) -> tuple[int, ...]:
        """Indices of the numeric (standardised, not one-hot) columns of a tabular task."""
        if self.kind != "tabular":
            return ()
        return tuple(i for i, f in enumerate(self.feature_names) if "=" not in f)

    @property
    def has_sensitive(self) -> bool:
        return self.sensitive is not None

    def split(self, name: str) -> Split:
        """Return the split called ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test'; got {name!r}")
        return getattr(self, name)

    def replace(self, **changes) -> "Task":
        """Return a copy of the task with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> pd.DataFrame:
        """One row per split: size, positive (or majority-class) rate, and group sizes."""
        rows = []
        for name in ("train", "val", "test"):
            s = self.split(name)
            row = {"task": self.name, "split": name, "rows": len(s)}
            if self.n_classes == 2:
                row["positive_rate"] = float(s.y.mean())
            else:
                row["classes"] = int(len(np.unique(s.y)))
            if s.a is not None:
                for k, g in enumerate(self.group_names):
                    row[f"n[{self.sensitive}={g}]"] = int((s.a == k).sum())
            rows.append(row)
        return pd.DataFrame(rows)

    def group_balance(self, split: str = "train") -> pd.DataFrame:
        """Size, share and positive rate of each sensitive group in one split."""
        if not self.has_sensitive:
            raise ValueError(f"task {self.name!r} has no sensitive attribute; group balance is undefined")
        s = self.split(split)
        rows = []
        for k, g in enumerate(self.group_names):
            m = s.a == k
            rows.append(
                {
                    "task": self.name,
                    "attribute": self.sensitive,
                    "group": g,
                    "rows": int(m.sum()),
                    "share": float(m.mean()),
                    "positive_rate": float(s.y[m].mean()) if m.any() else float("nan"),
                }
            )
        return pd.DataFrame(rows)
