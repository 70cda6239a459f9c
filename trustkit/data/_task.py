"""The :class:`Task`: deterministic train/validation/test splits with a sensitive attribute beside X.

A task is built either by a built-in loader (``load_adult`` …) or from a person's own table with
:func:`from_frame` / :func:`from_csv`. Both paths go through :func:`make_tabular_task`, so the same
validation, stratified splitting and train-only encoding apply to every table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .._validation import _suggest, check_fraction, check_int

__all__ = ["Split", "Task", "make_tabular_task", "from_frame", "from_csv", "stratified_split"]


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


def _encode(
    df: pd.DataFrame, train_idx: np.ndarray, categorical: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """One-hot encode categoricals and standardise numerics, fitting on the training rows only."""
    blocks, names = [], []
    train = df.iloc[train_idx]
    for col in df.columns:
        if col in categorical:
            cats = sorted(train[col].astype(str).unique())
            values = df[col].astype(str).to_numpy()
            onehot = (values[:, None] == np.asarray(cats)[None, :]).astype(np.float32)
            blocks.append(onehot)
            names.extend(f"{col}={c}" for c in cats)
        else:
            x = df[col].to_numpy(dtype=np.float64)
            mu = float(train[col].mean())
            sd = float(train[col].std(ddof=0))
            sd = sd if sd > 0 else 1.0
            blocks.append(((x - mu) / sd).astype(np.float32)[:, None])
            names.append(col)
    X = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(df), 0), np.float32)
    return X, names


def _check_columns(df: pd.DataFrame, field: str, cols: Sequence[str]) -> None:
    for c in cols:
        if c not in df.columns:
            raise ValueError(
                f"{field} column {c!r} is not in the table; columns are {list(df.columns)}."
                f"{_suggest(c, df.columns)}"
            )


def make_tabular_task(
    df: pd.DataFrame,
    *,
    label: str,
    sensitive: str | Sequence[str] | None,
    positive_label,
    name: str,
    card: str,
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
    sensitive_as_feature: bool = False,
    categorical: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    notes: dict | None = None,
) -> Task:
    """Validate a table and turn it into a :class:`Task`.

    Rows are split train/val/test stratified by (label, sensitive group) from ``seed``; one-hot
    categories, means and standard deviations are fitted on the training rows only. Several
    sensitive columns are combined into intersectional groups (``"sex=Female|race=Black"``).

    Raises
    ------
    ValueError
        If a named column is missing, a feature or the label has NaNs, the label does not have
        exactly two values with ``positive_label`` among them, or the sensitive attribute has a
        single group.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame; got {type(df).__name__}")
    check_int("seed", seed, minimum=0)
    if not isinstance(sensitive_as_feature, bool):
        raise TypeError(f"sensitive_as_feature must be True or False; got {sensitive_as_feature!r}")
    sens_cols = [] if sensitive is None else [sensitive] if isinstance(sensitive, str) else list(sensitive)
    if not isinstance(label, str):
        raise TypeError(f"label must be a column name (str); got {type(label).__name__}")
    _check_columns(df, "label", [label])
    _check_columns(df, "sensitive", sens_cols)
    _check_columns(df, "drop", list(drop))
    if label in sens_cols:
        raise ValueError(f"label column {label!r} cannot also be a sensitive column")
    if len(df) < 10:
        raise ValueError(f"the table has {len(df)} rows; at least 10 are needed to make three splits")

    y_raw = df[label]
    if y_raw.isna().any():
        raise ValueError(f"label column {label!r} has {int(y_raw.isna().sum())} missing value(s)")
    values = pd.unique(y_raw)
    if len(values) != 2:
        shown = sorted(map(str, values))[:6]
        raise ValueError(
            f"label column {label!r} must be binary (exactly two values); found {len(values)}: {shown}"
        )
    if positive_label not in set(values.tolist()):
        # a label given as text (papermill, CLI) for a numeric column: match by its string form
        by_text = [v for v in values.tolist() if str(v) == str(positive_label)]
        if len(by_text) == 1:
            positive_label = by_text[0]
    if positive_label not in set(values.tolist()):
        raise ValueError(
            f"positive_label {positive_label!r} is not a value of label column {label!r}; "
            f"allowed: {sorted(map(str, values))}"
        )
    y = (y_raw == positive_label).to_numpy().astype(np.int64)

    if sens_cols:
        for c in sens_cols:
            if df[c].isna().any():
                raise ValueError(f"sensitive column {c!r} has {int(df[c].isna().sum())} missing value(s)")
        if len(sens_cols) == 1:
            groups = df[sens_cols[0]].astype(str).to_numpy()
        else:
            groups = df[sens_cols].astype(str).apply(
                lambda r: "|".join(f"{c}={r[c]}" for c in sens_cols), axis=1
            ).to_numpy()
        group_names = tuple(sorted(np.unique(groups)))
        if len(group_names) < 2:
            raise ValueError(
                f"sensitive attribute {'+'.join(sens_cols)!r} has a single group {group_names}; "
                "fairness needs at least two groups"
            )
        a = np.searchsorted(np.asarray(group_names), groups).astype(np.int64)
        strata = np.char.add(y.astype(str), np.char.add("_", a.astype(str)))
    else:
        group_names, a, strata = (), None, y.astype(str)

    feature_df = df.drop(columns=[label, *drop])
    if not sensitive_as_feature:
        feature_df = feature_df.drop(columns=sens_cols)
    if feature_df.shape[1] == 0:
        raise ValueError("no feature columns left after removing label, sensitive and dropped columns")
    nan_cols = feature_df.columns[feature_df.isna().any()].tolist()
    if nan_cols:
        counts = {c: int(feature_df[c].isna().sum()) for c in nan_cols}
        raise ValueError(f"feature columns contain NaNs {counts}; drop or impute them before making a task")
    if categorical is None:
        categorical = [
            c for c in feature_df.columns
            if not pd.api.types.is_numeric_dtype(feature_df[c]) or pd.api.types.is_bool_dtype(feature_df[c])
        ]
    else:
        _check_columns(df, "categorical", list(categorical))
        categorical = [c for c in categorical if c in feature_df.columns]

    train_idx, val_idx, test_idx = stratified_split(strata, val_size=val_size, test_size=test_size, seed=seed)
    X, names = _encode(feature_df, train_idx, list(categorical))

    def part(idx):
        return Split(X=X[idx], y=y[idx], a=None if a is None else a[idx], index=idx)

    return Task(
        name=name,
        train=part(train_idx),
        val=part(val_idx),
        test=part(test_idx),
        feature_names=tuple(names),
        n_classes=2,
        kind="tabular",
        card=card,
        seed=seed,
        sensitive="+".join(sens_cols) if sens_cols else None,
        group_names=group_names,
        sensitive_as_feature=sensitive_as_feature,
        label_name=label,
        positive_label=str(positive_label),
        notes=dict(notes or {}),
    )


def from_frame(
    df: pd.DataFrame,
    *,
    label: str,
    sensitive: str | Sequence[str],
    positive_label,
    name: str = "custom",
    card: str = "custom",
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
    sensitive_as_feature: bool = False,
    categorical: Sequence[str] | None = None,
    drop: Sequence[str] = (),
) -> Task:
    """Make a :class:`Task` from your own pandas DataFrame.

    The same validation and splitting as the built-in loaders: a binary label with a named
    positive value, one or more sensitive columns with at least two groups, no NaNs in features.

    Examples
    --------
    >>> import pandas as pd
    >>> from trustkit.data import from_frame
    >>> df = pd.DataFrame({"income": [30, 50, 70, 20, 90, 40] * 10,
    ...                    "sex": ["F", "M"] * 30,
    ...                    "approved": ["no", "yes", "yes", "no", "yes", "no"] * 10})
    >>> task = from_frame(df, label="approved", sensitive="sex", positive_label="yes", seed=0)
    >>> task.group_names, len(task.train), task.feature_names
    (('F', 'M'), 36, ('income',))
    """
    return make_tabular_task(
        df,
        label=label,
        sensitive=sensitive,
        positive_label=positive_label,
        name=name,
        card=card,
        seed=seed,
        val_size=val_size,
        test_size=test_size,
        sensitive_as_feature=sensitive_as_feature,
        categorical=categorical,
        drop=drop,
    )


def from_csv(path: str | Path, **kwargs) -> Task:
    """Make a :class:`Task` from a CSV file; keyword arguments as in :func:`from_frame`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist")
    kwargs.setdefault("name", path.stem)
    return from_frame(pd.read_csv(path, skipinitialspace=True), **kwargs)
