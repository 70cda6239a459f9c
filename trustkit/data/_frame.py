"""A table as a :class:`~trustkit.data.Task`: column checks, the positive label, train-only encoding
(one-hot categoricals, standardised numerics) and :func:`make_tabular_task` / :func:`from_frame`."""

from __future__ import annotations

from numbers import Real
from typing import Sequence

import numpy as np
import pandas as pd

from .._validation import _suggest, check_fraction, check_int
from ._split import _check_splits, _default_min_group_size, stratified_split
from ._task import Split, Task

__all__ = ["make_tabular_task", "from_frame"]


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
