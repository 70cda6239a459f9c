"""The :class:`Task`: deterministic train/validation/test splits with a sensitive attribute beside X.

A task is built either by a built-in loader (``load_adult`` …) or from a person's own table with
:func:`from_frame` / :func:`from_csv`. Both paths go through :func:`make_tabular_task`, so the same
validation, stratified splitting and train-only encoding apply to every table.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import dataclasses
import gzip
import io
import json
import lzma
import math
import os
import zipfile
from dataclasses import dataclass, field
from numbers import Real
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
            with np.errstate(over="ignore", invalid="ignore"):
                mu = float(train[col].mean())
                sd = float(train[col].std(ddof=0))
                sd = sd if sd > 0 else 1.0
                z = ((x - mu) / sd).astype(np.float32)
            if not (np.isfinite(mu) and np.isfinite(sd) and np.isfinite(z).all()):
                raise ValueError(
                    f"feature column {col!r} cannot be standardised: its values reach "
                    f"{np.abs(x).max():.3g}, so its mean, standard deviation or standardised values "
                    f"overflow; rescale it (e.g. log10, or divide by a power of ten) or leave it out "
                    f"with drop=[{col!r}]"
                )
            blocks.append(z[:, None])
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


def _column_list(field: str, value, *, allow_none: bool = False) -> list | None:
    """A column name or a list of them, as a list; ``None`` passes through when allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, pd.Index, np.ndarray)) and all(isinstance(v, str) for v in value):
        return list(value)
    none = " or None" if allow_none else ""
    raise TypeError(f"{field} must be a column name (str) or a list of column names{none}; got {value!r}")


def _strip_strings(series: pd.Series) -> pd.Series:
    """The series with surrounding whitespace removed from its string values (others unchanged)."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series
    mapping = {v: v.strip() for v in pd.unique(series) if isinstance(v, str) and v != v.strip()}
    if not mapping:
        return series
    return series.map(lambda v: mapping.get(v, v) if isinstance(v, str) else v)


def _counts(series: pd.Series) -> dict:
    return {str(k): int(v) for k, v in series.value_counts(sort=False).items()}


def _numeric_tokens(series: pd.Series) -> tuple[int, dict]:
    """How many values of a text column read as numbers, and the counts of those that do not."""
    numeric, other = 0, {}
    for value, count in series.value_counts(dropna=True).items():
        if isinstance(value, (bool, np.bool_)):
            other[str(value)] = int(count)
        elif isinstance(value, Real):
            numeric += int(count)
        else:
            try:
                float(str(value))
                numeric += int(count)
            except ValueError:
                other[str(value)] = int(count)
    return numeric, other


_MOSTLY_NUMERIC = 0.8  # share of number-like values above which a text column is taken to be a numeric one
_ID_LIKE = 0.9  # share of distinct values above which a categorical column is taken to be an identifier


def _check_features(feature_df: pd.DataFrame, categorical: list[str], given: bool) -> None:
    """Refuse infinite numbers, numeric columns spoilt by a few text tokens, and identifier columns."""
    n = len(feature_df)
    for c in feature_df.columns:
        col = feature_df[c]
        if c not in categorical:
            if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                raise ValueError(
                    f"feature column {c!r} holds text ({col.dtype}) but is not in categorical={categorical}; "
                    f"add it there to one-hot encode it, or leave it out with drop=[{c!r}]"
                )
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isinf(values)
            if bad.any():
                rows = feature_df.index[bad][:5].tolist()
                raise ValueError(
                    f"feature column {c!r} holds {int(bad.sum())} infinite value(s) (inf or -inf), e.g. in "
                    f"row(s) {rows}; only finite numbers are allowed: replace them (e.g. by NaN, then drop "
                    f"or impute those rows) or leave the column out with drop=[{c!r}]"
                )
            continue
        if not given:
            numeric, other = _numeric_tokens(col)
            total = numeric + sum(other.values())
            if other and total and numeric / total >= _MOSTLY_NUMERIC:
                shown = dict(sorted(other.items(), key=lambda kv: -kv[1])[:5])
                raise ValueError(
                    f"feature column {c!r} looks numeric ({numeric} of {total} values are numbers) but holds "
                    f"non-numeric token(s) {shown} (token: count). If they mean 'missing', mark them as such "
                    f"(from_csv(..., na_values={list(shown)}) or replace them by NaN) and drop or impute those "
                    f"rows; otherwise clean the column, or pass categorical=[{c!r}] if it is really categorical"
                )
        distinct = int(col.nunique(dropna=False))
        if distinct >= _ID_LIKE * n:
            numeric, other = _numeric_tokens(col)
            hint = (
                " Its values are numbers stored as text: convert it with pandas.to_numeric to use it as a "
                "number." if not other else ""
            )
            raise ValueError(
                f"feature column {c!r} has {distinct} distinct values in {n} rows, like an identifier: "
                f"one-hot encoding gives about one column per row and nothing that generalises. Leave it "
                f"out with drop=[{c!r}].{hint}"
            )


def _default_min_group_size(val_size: float, test_size: float) -> int:
    """Rows a sensitive group needs so that the smallest split expects at least two of them."""
    smallest = min(1.0 - val_size - test_size, val_size, test_size)
    return max(3, math.ceil(2.0 / smallest - 1e-9))


def _resolve_positive_label(label: str, values: list, positive_label):
    """The value of the label column that ``positive_label`` names (text, stripped or numeric forms match)."""
    allowed = sorted(map(str, values))
    if positive_label is None:
        ones = [v for v in values if isinstance(v, (Real, np.bool_)) and not isinstance(v, str) and v == 1]
        if len(ones) == 1 and all(isinstance(v, (Real, np.bool_)) and v in (0, 1) for v in values):
            return ones[0]
        raise ValueError(
            f"positive_label is required: name the value of label column {label!r} that counts as "
            f"positive (y = 1); allowed: {allowed}"
        )
    if isinstance(positive_label, str):
        positive_label = positive_label.strip()
    if positive_label in values:
        return positive_label
    # a label given as text (papermill, CLI) for a numeric column: match by its string or numeric form
    by_text = [v for v in values if str(v) == str(positive_label)]
    if len(by_text) == 1:
        return by_text[0]
    try:
        wanted = float(positive_label)
        by_number = [v for v in values if isinstance(v, Real) and not isinstance(v, bool) and float(v) == wanted]
    except (TypeError, ValueError):
        by_number = []
    if len(by_number) == 1:
        return by_number[0]
    raise ValueError(f"positive_label {positive_label!r} is not a value of label column {label!r}; allowed: {allowed}")


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


def make_tabular_task(
    df: pd.DataFrame,
    *,
    label: str,
    sensitive: str | Sequence[str] | None,
    positive_label=None,
    name: str,
    card: str,
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
    sensitive_as_feature: bool = False,
    categorical: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    min_group_size: int | None = None,
    notes: dict | None = None,
) -> Task:
    """Validate a table and turn it into a :class:`Task`.

    Rows are split train/val/test stratified by (label, sensitive group) from ``seed``; one-hot
    categories, means and standard deviations are fitted on the training rows only. Several
    sensitive columns are combined into intersectional groups (``"sex=Female|race=Black"``).
    Surrounding whitespace is removed from the text values of every column (``" >50K"`` and
    ``">50K"`` are one label value), and from a text ``positive_label``. The input frame is never
    modified.

    ``positive_label=None`` means ``1`` for a label whose values are 0 and 1 (or False and True).
    ``min_group_size`` is the fewest rows a sensitive group may have; by default enough for the
    smallest split to expect two of them (10 rows for 60/20/20 splits).

    Raises
    ------
    ValueError
        If a column name is repeated or missing; the label has NaNs, does not have exactly two
        values with ``positive_label`` among them, or a split would hold a single class; the
        sensitive attribute has a single group, a group smaller than ``min_group_size`` or one
        missing from a split; a feature has NaNs or infinite values, cannot be standardised
        (values near 1e300), looks numeric but holds a few text tokens (``"?"``) or has about as
        many categories as rows (an identifier).
    TypeError
        If ``df`` is not a DataFrame or a column argument is not a name or a list of names.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame; got {type(df).__name__}")
    check_int("seed", seed, minimum=0)
    check_fraction("val_size", val_size)
    check_fraction("test_size", test_size)
    if val_size + test_size >= 1:
        raise ValueError(f"val_size + test_size must be < 1; got {val_size} + {test_size}")
    if not isinstance(sensitive_as_feature, bool):
        raise TypeError(f"sensitive_as_feature must be True or False; got {sensitive_as_feature!r}")
    if not isinstance(label, str):
        raise TypeError(f"label must be a column name (str); got {type(label).__name__}")
    sens_cols = _column_list("sensitive", sensitive, allow_none=True) or []
    drop = _column_list("drop", drop)
    categorical = _column_list("categorical", categorical, allow_none=True)
    if min_group_size is None:
        min_group_size = _default_min_group_size(val_size, test_size)
    check_int("min_group_size", min_group_size, minimum=1)

    repeated = df.columns[df.columns.duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"column names must be unique; {repeated} appear more than once")
    _check_columns(df, "label", [label])
    _check_columns(df, "sensitive", sens_cols)
    _check_columns(df, "drop", drop)
    if categorical is not None:
        _check_columns(df, "categorical", categorical)
    if label in sens_cols:
        raise ValueError(f"label column {label!r} cannot also be a sensitive column")
    if len(df) < 10:
        raise ValueError(f"the table has {len(df)} rows; at least 10 are needed to make three splits")

    df = df.copy(deep=False)  # the caller's frame is never modified
    for c in df.columns:
        df[c] = _strip_strings(df[c])

    y_raw = df[label]
    if y_raw.isna().any():
        raise ValueError(f"label column {label!r} has {int(y_raw.isna().sum())} missing value(s)")
    values = pd.unique(y_raw).tolist()
    if len(values) != 2:
        shown = sorted(map(str, values))[:6]
        raise ValueError(
            f"label column {label!r} must be binary (exactly two values); found {len(values)}: {shown}"
        )
    positive_label = _resolve_positive_label(label, values, positive_label)
    y = (y_raw == positive_label).to_numpy().astype(np.int64)

    sens_name = "+".join(sens_cols)
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
        group_names, group_sizes = np.unique(groups, return_counts=True)
        group_names = tuple(group_names.tolist())
        if len(group_names) < 2:
            raise ValueError(
                f"sensitive attribute {sens_name!r} has a single group {group_names}; "
                "fairness needs at least two groups"
            )
        small = {g: int(c) for g, c in zip(group_names, group_sizes) if c < min_group_size}
        if small:
            raise ValueError(
                f"sensitive attribute {sens_name!r} has group(s) too small for the splits {small} (group: rows); "
                f"each group needs at least min_group_size={min_group_size} rows so that every split "
                f"(train {1 - val_size - test_size:.0%}, val {val_size:.0%}, test {test_size:.0%}) holds enough "
                "of it to measure. Merge small groups into a larger one or drop their rows before making "
                "the task, or lower min_group_size"
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
    given = categorical is not None
    if categorical is None:
        categorical = [
            c for c in feature_df.columns
            if not pd.api.types.is_numeric_dtype(feature_df[c]) or pd.api.types.is_bool_dtype(feature_df[c])
        ]
    else:
        categorical = [c for c in categorical if c in feature_df.columns]
    _check_features(feature_df, categorical, given)

    train_idx, val_idx, test_idx = stratified_split(strata, val_size=val_size, test_size=test_size, seed=seed)
    _check_splits(
        {"train": train_idx, "val": val_idx, "test": test_idx}, y, a, label=label, values=values,
        positive=positive_label, group_names=group_names, sens_name=sens_name, seed=seed,
    )
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
        sensitive=sens_name if sens_cols else None,
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
    positive_label=None,
    name: str = "custom",
    card: str = "custom",
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
    sensitive_as_feature: bool = False,
    categorical: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    min_group_size: int | None = None,
) -> Task:
    """Make a :class:`Task` from your own pandas DataFrame.

    The same validation and splitting as the built-in loaders: a binary label with a named
    positive value, one or more sensitive columns with at least two groups each large enough for
    the splits, finite numbers and no NaNs in the features. Text values are compared without
    their surrounding whitespace. Columns that cannot be used (an identifier, a numeric column
    with a few ``"?"`` tokens) are refused with the column's name; leave them out with ``drop=``.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per person; it is not modified.
    label : str
        The binary label column.
    sensitive : str or list of str
        The sensitive column(s); several make intersectional groups.
    positive_label : optional
        The label value that counts as positive (``y = 1``); may be given as text for a numeric
        column (``"1"``). ``None`` means 1 for a 0/1 label.
    categorical : list of str, optional
        Columns to one-hot encode; by default every non-numeric column.
    drop : str or list of str
        Columns to leave out (identifiers, free text).
    min_group_size : int, optional
        The fewest rows a sensitive group may have (default: enough for two in the smallest split).

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
        min_group_size=min_group_size,
    )


_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_MAGIC = {
    b"PK\x03\x04": "a zip archive (an .xlsx workbook is one; save the sheet as CSV)",
    b"\xd0\xcf\x11\xe0": "an old Office document (.xls; save the sheet as CSV)",
    b"PAR1": "a Parquet file (read it with pandas.read_parquet and use from_frame)",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "gzip-compressed data (name it .csv.gz so it is decompressed)",
    b"\x28\xb5\x2f\xfd": "zstd-compressed data (decompress it first)",
    b"SQLite format 3": "an SQLite database",
    b"\x93NUMPY": "a NumPy .npy file",
}
_UTF8_BOM = b"\xef\xbb\xbf"


def _not_csv(path: Path, what: str) -> ValueError:
    return ValueError(f"CSV file {str(path)!r} is not comma-separated text: it looks like {what}")


def _read_bytes(path: Path) -> bytes:
    suffix = path.suffix.lower()
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise ValueError(
                        f"zip file {str(path)!r} must hold exactly one CSV file; it holds {members[:10]}"
                    )
                return zf.read(members[0])
        with _OPENERS.get(suffix, open)(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"file {str(path)!r} is not valid {suffix[1:]} data ({exc})") from None


def _read_csv(
    path: str | Path, *, encoding: str = "utf-8", sep: str = ",", na_values: str | Sequence[str] | None = None
) -> pd.DataFrame:
    """Read a CSV file for :func:`from_csv`, refusing what is not a clean comma-separated table.

    Decodes with ``encoding`` (a UTF-8 byte-order mark is dropped), refuses binary, HTML/XML and
    JSON files, empty and header-only files, a header that repeats a column name, and data rows
    with more fields than the header. Column names and text values lose surrounding spaces.
    ``.gz``, ``.bz2``, ``.xz`` and single-file ``.zip`` files are decompressed first.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable CSV table, naming the file and what to change.
    TypeError
        If an argument has the wrong type.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path); got {type(path).__name__}")
    path = Path(path)
    if not isinstance(encoding, str):
        raise TypeError(f"encoding must be a codec name such as 'utf-8' or 'latin-1'; got {encoding!r}")
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(
            f"unknown encoding {encoding!r}; use a Python codec name such as 'utf-8', 'latin-1' or 'cp1252'"
        ) from None
    if not isinstance(sep, str) or len(sep) != 1:
        raise ValueError(f"sep must be a single character such as ',', ';' or '\\t'; got {sep!r}")
    if na_values is not None and not isinstance(na_values, str):
        if not (isinstance(na_values, (list, tuple, set)) and all(isinstance(v, str) for v in na_values)):
            raise TypeError(f"na_values must be a string or a list of strings; got {na_values!r}")
    if not path.exists():
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"CSV file {str(path)!r} is a folder; give the path of a .csv file")

    raw = _read_bytes(path)
    if not raw.strip():
        raise ValueError(f"CSV file {str(path)!r} is empty; it needs a header row and data rows")
    wide = codec.startswith(("utf-16", "utf-32"))
    for magic, what in _MAGIC.items():
        if raw.startswith(magic):
            raise _not_csv(path, what)
    if not wide and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(
            f"CSV file {str(path)!r} is UTF-16 text (it starts with a UTF-16 byte-order mark); "
            "pass encoding='utf-16'"
        )
    if not wide and b"\x00" in raw[:65536]:
        raise _not_csv(path, "binary data (it holds NUL bytes)")
    if raw.startswith(_UTF8_BOM) and not wide:
        raw = raw[len(_UTF8_BOM):]
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"CSV file {str(path)!r} is not valid {encoding} text: byte 0x{raw[exc.start]:02x} on line {line} "
            "cannot be decoded; pass the file's encoding, e.g. encoding='latin-1' or encoding='cp1252' "
            "(common for files saved by Excel on Windows)"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    head = text.lstrip()
    if head.startswith("<"):
        raise _not_csv(path, f"HTML or XML (it starts with {head[:30]!r}); download the raw CSV file instead")
    if head[:1] in ("{", "["):
        try:
            json.loads(text)
            is_json = True
        except ValueError:
            first = head.splitlines()[0]
            try:
                is_json = isinstance(json.loads(first), dict)
            except ValueError:
                is_json = False
        if is_json:
            raise _not_csv(path, "JSON; read it with pandas.read_json and pass the frame to from_frame")

    rows = csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True)
    try:
        header = [h.strip() for h in next(rows, [])]
        first_row = next(rows, None)
    except csv.Error as exc:
        raise ValueError(f"CSV file {str(path)!r} could not be read as {sep!r}-separated values ({exc})") from None
    seen: dict[str, list[int]] = {}
    for i, h in enumerate(header):
        if h:
            seen.setdefault(h, []).append(i + 1)
    repeated = {h: pos for h, pos in seen.items() if len(pos) > 1}
    if repeated:
        shown = ", ".join(f"{h!r} (columns {' and '.join(map(str, pos))})" for h, pos in repeated.items())
        raise ValueError(
            f"CSV file {str(path)!r} repeats column name(s) in its header: {shown}; column names must be "
            "unique, rename the copies"
        )
    if first_row is not None and len(first_row) > len(header):  # pandas would make the first field an index
        raise ValueError(
            f"CSV file {str(path)!r}: its data rows have more fields than its header ({len(first_row)} > "
            f"{len(header)} on line 2); every row needs as many fields as the header: check the separator "
            "(sep=) and trailing commas"
        )
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, skipinitialspace=True, na_values=na_values)
    except pd.errors.EmptyDataError:
        raise ValueError(f"CSV file {str(path)!r} is empty; it needs a header row and data rows") from None
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(
            f"CSV file {str(path)!r} could not be read as {sep!r}-separated values ({detail}); every row "
            "needs as many fields as the header: check the separator (sep=) and quoting"
        ) from None
    if len(df) == 0:
        raise ValueError(f"CSV file {str(path)!r} has a header but no data rows")
    if len(header) == df.shape[1]:
        df.columns = [h if h else old for h, old in zip(header, df.columns)]
    return df


def from_csv(
    path: str | Path,
    *,
    label: str,
    sensitive: str | Sequence[str],
    positive_label=None,
    encoding: str = "utf-8",
    sep: str = ",",
    na_values: str | Sequence[str] | None = None,
    name: str | None = None,
    **kwargs,
) -> Task:
    """Make a :class:`Task` from a CSV file; other keyword arguments as in :func:`from_frame`.

    Parameters
    ----------
    path : str or pathlib.Path
        A comma-separated file with a header row (``.gz``, ``.bz2``, ``.xz``, ``.zip`` also read).
    encoding : str
        The file's text encoding (default UTF-8; a byte-order mark is dropped). Files saved by
        Excel on Windows are often ``"cp1252"``.
    sep : str
        The field separator, one character (``";"`` for many European exports).
    na_values : str or list of str, optional
        Extra tokens that mean "missing" (e.g. ``"?"``); rows with them must then be dropped or
        imputed, as NaNs in features are refused.
    name : str, optional
        The task's name; the file's stem by default.

    Raises
    ------
    ValueError
        If the file is empty, header-only, binary, HTML or JSON, not valid text in ``encoding``,
        repeats a column name, or fails any check of :func:`from_frame`; the message names the
        file or column and what is allowed.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "loans.csv"
    >>> pd.DataFrame({"income": [30, 50, 70, 20, 90, 40] * 10, "sex": ["F", "M"] * 30,
    ...               "approved": ["no", "yes", "yes", "no", "yes", "no"] * 10}).to_csv(path, index=False)
    >>> task = from_csv(path, label="approved", sensitive="sex", positive_label="yes")
    >>> task.name, task.group_names
    ('loans', ('F', 'M'))
    """
    df = _read_csv(path, encoding=encoding, sep=sep, na_values=na_values)
    return from_frame(
        df, label=label, sensitive=sensitive, positive_label=positive_label,
        name=Path(path).stem if name is None else name, **kwargs,
    )
