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

import contextlib
import functools

import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from ..config import set_threads, using_threads, worker_threads

__all__ = ["ResultStore", "run_key", "run_grid", "EXECUTORS", "worker_threads", "RunFailed"]

#: how :func:`run_grid` runs configs: one after another, in local processes (joblib/loky), or on a
#: Dask cluster (a LocalCluster, or any scheduler given by address)
EXECUTORS = ("sequential", "processes", "dask")

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
        self._clear_failure(config)

    # -- failures: kept beside the records (``failed/<key>.json``), never mixed into the results
    @property
    def _failed_dir(self) -> Path:
        return self.path / "failed"

    def put_failure(self, config: Mapping, error: str) -> None:
        """Record that ``config`` failed with ``error`` (a later successful run clears it)."""
        self._failed_dir.mkdir(exist_ok=True)
        payload = json.dumps({"config": _jsonable(dict(config), "config"), "error": str(error)}, indent=1)
        key = run_key(config)
        fd, tmp = tempfile.mkstemp(dir=self._failed_dir, prefix=f".{key}.", suffix=_TMP_SUFFIX)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(payload)
        os.replace(tmp, self._failed_dir / f"{key}.json")

    def failures(self) -> pd.DataFrame:
        """Configs whose last run failed, with the error (one row each)."""
        rows = []
        if self._failed_dir.is_dir():
            for f in sorted(self._failed_dir.glob("*.json")):
                try:
                    d = json.loads(f.read_text(encoding="utf-8"))
                    rows.append({**d["config"], "error": d["error"]})
                except (ValueError, KeyError, OSError):
                    _warn_corrupt(f, "unreadable failure record", "skipped")
        return pd.DataFrame(rows)

    def _clear_failure(self, config: Mapping) -> None:
        (self._failed_dir / f"{run_key(config)}.json").unlink(missing_ok=True)

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


class RunFailed(RuntimeError):
    """Raised by :func:`run_grid` (``on_error="raise"``) when a config's run raised; names the config."""


def _call(run: Callable[[Mapping], Mapping], cfg: Mapping, threads: int | None, catch: bool = True):
    """Run one config in a worker: set the torch threads first; return (result, error text)."""
    import traceback

    if threads is not None:
        set_threads(int(threads))
    if not catch:
        return dict(run(cfg)), None
    try:
        return dict(run(cfg)), None
    except Exception as e:  # reported to the parent, which records or raises it
        return None, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"


def _run_unit(run: Callable, run_group: Callable | None, payload) -> dict:
    """One unit of work: a config (``run``) or a list of configs run together (``run_group``)."""
    if isinstance(payload, list):
        results = list(run_group(payload))
        if len(results) != len(payload):
            raise ValueError(f"run_group returned {len(results)} results for {len(payload)} configs")
        return {"results": [dict(r) for r in results]}
    return {"results": [dict(run(payload))]}


def _units(todo: list, group_by: Callable | None, max_group: int) -> list[tuple[list[int], Any]]:
    """(positions, payload) per unit of work, in the order of each unit's first config."""
    if group_by is None:
        return [([i], cfg) for i, cfg in todo]
    singles, buckets = [], {}
    for i, cfg in todo:
        key = group_by(cfg)
        if key is None:
            singles.append(([i], cfg))
        else:
            buckets.setdefault(key, []).append((i, cfg))
    units = list(singles)
    for members in buckets.values():
        for lo in range(0, len(members), max_group):
            chunk = members[lo:lo + max_group]
            units.append(([i for i, _ in chunk], [c for _, c in chunk]) if len(chunk) > 1 else ([chunk[0][0]], chunk[0][1]))
    return sorted(units, key=lambda u: u[0][0])


def _results(todo, run, *, executor, workers, scheduler_address, threads, catch):
    """Yield (index, result, error) as runs finish (in completion order for parallel executors)."""
    if executor == "sequential":  # in this process: the caller's threads come back afterwards
        with using_threads(threads) if threads is not None else contextlib.nullcontext():
            for i, cfg in todo:
                yield (i, *_call(run, cfg, None, catch))
        return
    if executor == "processes":
        from joblib import Parallel, delayed

        par = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")
        yield from par(delayed(lambda i, c: (i, *_call(run, c, threads)))(i, cfg) for i, cfg in todo)
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler_address is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40)
        client = Client(cluster)
    else:
        client = Client(scheduler_address)
    try:
        futures = {client.submit(_call, run, cfg, threads, pure=False): i for i, cfg in todo}
        for fut in as_completed(futures):
            yield (futures[fut], *fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_grid(
    configs: Iterable[Mapping],
    run: Callable[[Mapping], Mapping],
    *,
    store: ResultStore | None = None,
    progress: bool = True,
    desc: str = "runs",
    executor: str = "sequential",
    workers: int | None = None,
    scheduler_address: str | None = None,
    threads: int | None = None,
    on_error: str = "raise",
    group_by: Callable[[Mapping], Any] | None = None,
    run_group: Callable[[list], Sequence[Mapping]] | None = None,
    max_group: int = 32,
) -> pd.DataFrame:
    """Run ``run(config)`` for each config, skipping configs already in ``store``.

    Results are stored as each run finishes. A config whose stored record is corrupt is run again
    (with a warning naming the file) and its record overwritten. Returns one row per config
    (config and result), in the order of ``configs``; with a store, each result is given as the
    store keeps it (numpy arrays and tensors as lists), so a resumed sweep returns the same frame
    as a fresh one.

    Parameters
    ----------
    executor : {"sequential", "processes", "dask"}
        Where runs happen: here, one after another; in ``workers`` local processes (joblib's
        loky); or on a Dask cluster — the one at ``scheduler_address`` (``"tcp://host:8786"``),
        else a ``LocalCluster`` of ``workers`` processes. One code path: the parent receives each
        result the moment it finishes and writes it to the store, so the store is the parent's
        folder whatever runs the work. ``run`` must be picklable for the parallel executors
        (cloudpickle: closures are fine).
    workers : int, optional
        Processes (default: the cores available); ignored with an existing cluster.
    threads : int, optional
        Torch threads each run uses, set in the worker before the run. Default: the cores divided
        by the workers (:func:`worker_threads`) for the parallel executors; unchanged when
        sequential (given, it holds for the grid's runs and the caller's threads come back after).
    on_error : {"raise", "record"}
        ``"raise"``: the first failure stops the grid (finished runs are kept) with a
        :class:`RunFailed` naming the config (sequentially: the run's own exception).
        ``"record"``: failures are kept in the store's
        ``failed/`` folder (see :meth:`ResultStore.failures`), left out of the frame, and run again
        next time.
    group_by, run_group : callable, optional
        Configs still to run that ``group_by`` gives the same key (not ``None``) are run together,
        at most ``max_group`` at a time, by ``run_group(list of configs)``, which returns one result
        per config in order (e.g. seeds trained as one replica job). Each config's result is
        still written to the store on its own as soon as its group finishes; a failed group
        fails each of its configs.

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
    from .._validation import check_choice, check_int

    check_choice("executor", executor, EXECUTORS)
    check_choice("on_error", on_error, ("raise", "record"))
    if scheduler_address is not None:
        if not isinstance(scheduler_address, str) or not scheduler_address:
            raise TypeError(f"scheduler_address must be a string such as 'tcp://127.0.0.1:8786'; got {scheduler_address!r}")
        executor = "dask"
    if workers is not None:
        check_int("workers", workers, minimum=1)
    if threads is not None:
        check_int("threads", threads, minimum=1)
    check_int("max_group", max_group, minimum=1)
    if (group_by is None) != (run_group is None):
        raise ValueError("group_by and run_group go together: give both (configs run in groups) or neither")
    if executor != "sequential":
        workers = workers or worker_threads(1)
        threads = threads or worker_threads(workers)
    configs = [dict(c) for c in configs]
    results: dict[int, dict] = {}
    todo = []
    for i, cfg in enumerate(configs):
        result = None if store is None else store._lookup(cfg, "running this config again to overwrite it")
        if result is None:
            todo.append((i, cfg))
        else:
            results[i] = result
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs), initial=len(results), desc=desc)
    failed = []
    units = _units(todo, group_by, max_group)
    unit_run = functools.partial(_run_unit, run, run_group)
    try:
        for u, out, error in _results(list(enumerate(p for _, p in units)), unit_run, executor=executor,
                                      workers=workers, scheduler_address=scheduler_address, threads=threads,
                                      catch=not (executor == "sequential" and on_error == "raise")):
            for k, i in enumerate(units[u][0]):
                cfg = configs[i]
                if error is not None:
                    if store is not None and on_error == "record":
                        store.put_failure(cfg, error)
                    if on_error == "raise":
                        raise RunFailed(f"the run of config {cfg!r} failed: {error}")
                    failed.append(i)
                else:
                    result = out["results"][k]
                    if store is not None:
                        # the row holds what the store keeps, so a resumed sweep returns the same frame
                        result = _jsonable(result, "result")
                        store.put(cfg, result)
                    results[i] = result
                if bar is not None:
                    bar.update(1)
                    if failed:
                        bar.set_postfix(failed=len(failed))
    finally:
        if bar is not None:
            bar.close()
    rows = [{**configs[i], **results[i]} for i in range(len(configs)) if i in results]
    return pd.DataFrame(rows)
