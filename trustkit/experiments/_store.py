"""A resumable result store and the grid runner every sweep uses.

Every finished run is written to the store at once, atomically (a hidden temporary file renamed
into place), as JSON — so a sweep that is killed keeps every finished result, and running it again
skips what is already there. No pickles.

Results may hold numpy arrays and scalars and torch tensors: they are stored as JSON lists and
numbers, and come back with their kind kept (integers as ``int``, booleans as ``bool``, NaN as NaN).
A record that cannot be read (a damaged or hand-edited file) is skipped with a warning that names
the file, and :func:`run_grid` runs that config again and overwrites it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

__all__ = ["ResultStore", "run_key", "run_grid"]

# A record is ``<key>.json``; a write in progress is ``.<key>.<random>.part`` (hidden, and never
# matched by ``*.json``), renamed onto the record only once it is complete.
_TMP_SUFFIX = ".part"
# A write takes milliseconds; a temporary file this old was left by a writer that was killed.
_STALE_TMP_S = 3600.0


def _jsonable(obj: Any, where: str) -> Any:
    """``obj`` as plain JSON types: numpy arrays and torch tensors to (nested) lists, numpy and
    0-d torch scalars to Python numbers, tuples to lists. ``where`` names the value in errors."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.kind in "biufU":
            return obj.tolist()
        if obj.dtype.kind == "O":
            return _jsonable(obj.tolist(), where)
        raise TypeError(f"{where} is a numpy {type(obj).__name__} of dtype {obj.dtype}; the result store "
                        f"keeps numpy booleans, integers, floats and strings (and arrays of them)")
    if isinstance(obj, float):
        return float(obj)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        if obj.is_complex():
            raise TypeError(f"{where} is a complex torch tensor; the result store keeps real tensors")
        return obj.detach().cpu().tolist()
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            key = k.item() if isinstance(k, np.generic) else k
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise TypeError(f"{where} has the key {k!r} of type {type(k).__name__}; keys of a stored "
                                f"mapping must be str, int, float, bool or None")
            out[key] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which the result store "
                    f"cannot keep as JSON; allowed are str, int, float, bool, None, lists, tuples and mappings "
                    f"of them, numpy arrays and scalars, and torch tensors")


def run_key(config: Mapping) -> str:
    """A stable short hash of a JSON-able config; the store's file name for that run.

    numpy and torch numbers hash like the Python numbers they hold, so ``{"seed": np.int64(0)}``
    and ``{"seed": 0}`` are the same run; other values that JSON cannot hold hash by ``str``.

    Examples
    --------
    >>> run_key({"a": 1, "b": 2}) == run_key({"b": 2, "a": 1})
    True
    """
    try:
        config = _jsonable(dict(config), "config")
    except TypeError:
        pass  # hashed by str below, as before
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _CorruptRecord(ValueError):
    pass


def _read_record(path: Path) -> dict:
    """The ``{"config", "result"}`` record in ``path``; raises ``_CorruptRecord`` saying why not."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise _CorruptRecord(f"not valid JSON ({e})") from None
    if not isinstance(d, dict) or not isinstance(d.get("config"), dict) or not isinstance(d.get("result"), dict):
        raise _CorruptRecord("not a record with a 'config' mapping and a 'result' mapping")
    return d


def _warn_corrupt(path: Path, why: str, then: str) -> None:
    warnings.warn(f"result store: corrupt record {str(path)!r}: {why}; {then}", UserWarning, stacklevel=3)


class ResultStore:
    """A folder of JSON records, one file per run, written atomically.

    Parameters
    ----------
    path : str or path-like
        The folder; created if missing. Temporary files more than an hour old (left by a writer
        that was killed before its rename) are removed when the store is opened.

    Notes
    -----
    Results are stored as JSON: numpy arrays and torch tensors become lists, numpy scalars become
    Python numbers; anything else JSON cannot hold raises a ``TypeError`` that names the key,
    before anything is written. A record that cannot be read is skipped by every reader with a
    warning that names its file; :meth:`has` is then ``False``, so :func:`run_grid` runs the
    config again and overwrites the record.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> store.put({"dataset": "adult", "seed": 0}, {"accuracy": 0.85, "counts": np.array([3, 4])})
    >>> store.has({"dataset": "adult", "seed": 0}), len(store)
    (True, 1)
    >>> store.get({"dataset": "adult", "seed": 0})
    {'accuracy': 0.85, 'counts': [3, 4]}
    >>> store.frame()[["dataset", "seed", "accuracy"]].values.tolist()
    [['adult', 0, 0.85]]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        now = time.time()
        for f in self.path.glob(f".*{_TMP_SUFFIX}"):
            try:
                if now - f.stat().st_mtime > _STALE_TMP_S:
                    f.unlink()
            except FileNotFoundError:  # renamed or removed by its writer meanwhile
                pass

    def _file(self, config: Mapping) -> Path:
        return self.path / f"{run_key(config)}.json"

    def _record_files(self) -> list[Path]:
        return sorted(f for f in self.path.glob("*.json") if not f.name.startswith(".") and f.is_file())

    def _load(self, path: Path, then: str) -> dict | None:
        """The record in ``path``, or ``None`` (with a warning that ends with ``then``) if it is corrupt."""
        try:
            return _read_record(path)
        except _CorruptRecord as e:
            _warn_corrupt(path, str(e), then)
            return None

    def _lookup(self, config: Mapping, then: str) -> dict | None:
        path = self._file(config)
        if not path.is_file():
            return None
        d = self._load(path, then)
        return None if d is None else d["result"]

    def has(self, config: Mapping) -> bool:
        """Whether a readable record of ``config`` is stored (a corrupt one warns and counts as missing)."""
        return self._lookup(config, "treated as missing") is not None

    def put(self, config: Mapping, result: Mapping) -> None:
        """Store ``result`` for ``config`` atomically, replacing any earlier record of ``config``."""
        record = {"config": _jsonable(dict(config), "config"), "result": _jsonable(dict(result), "result")}
        payload = json.dumps(record, indent=1)
        key = run_key(config)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{key}.", suffix=_TMP_SUFFIX)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / f"{key}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, config: Mapping) -> dict:
        """The stored result of ``config``.

        Raises ``FileNotFoundError`` if none is stored, ``ValueError`` (naming the file) if its
        record is corrupt.
        """
        path = self._file(config)
        if not path.is_file():
            raise FileNotFoundError(f"no result stored for config {dict(config)!r} (expected {str(path)!r})")
        try:
            return _read_record(path)["result"]
        except _CorruptRecord as e:
            raise ValueError(f"result store: corrupt record {str(path)!r}: {e}; run this config again "
                             f"(run_grid does so) to overwrite it") from None

    def __iter__(self) -> Iterator[dict]:
        """Each readable record as one flat dict (config, then result), corrupt ones skipped with a warning."""
        for f in self._record_files():
            d = self._load(f, "skipped")
            if d is not None:
                yield {**d["config"], **d["result"]}

    def records(self) -> list[dict]:
        """All readable records, as flat dicts (config, then result); corrupt ones skipped with a warning."""
        return list(self)

    def frame(self) -> pd.DataFrame:
        """All readable records as a DataFrame, one row per run."""
        return pd.DataFrame(self.records())

    def __len__(self) -> int:
        return sum(1 for _ in self)


def run_grid(
    configs: Iterable[Mapping],
    run: Callable[[Mapping], Mapping],
    *,
    store: ResultStore | None = None,
    progress: bool = True,
    desc: str = "runs",
) -> pd.DataFrame:
    """Run ``run(config)`` for each config, skipping configs already in ``store``.

    Results are stored as each run finishes. A config whose stored record is corrupt is run again
    (with a warning naming the file) and its record overwritten. Returns one row per config
    (config and result); with a store, each result is given as the store keeps it (numpy arrays and
    tensors as lists), so a resumed sweep returns the same frame as a fresh one.

    Examples
    --------
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> df = run_grid([{"x": 1}, {"x": 2}], lambda c: {"y": c["x"] ** 2}, store=store, progress=False)
    >>> df.values.tolist()
    [[1, 1], [2, 4]]
    >>> len(store)
    2
    """
    configs = [dict(c) for c in configs]
    it = configs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(configs, desc=desc)
    rows = []
    for cfg in it:
        result = None if store is None else store._lookup(cfg, "running this config again to overwrite it")
        if result is None:
            result = dict(run(cfg))
            if store is not None:
                # the row holds what the store keeps, so a resumed sweep returns the same frame
                result = _jsonable(result, "result")
                store.put(cfg, result)
        rows.append({**cfg, **result})
    return pd.DataFrame(rows)
