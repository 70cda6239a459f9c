"""A resumable result store and the grid runner every sweep uses.

Every finished run is written to the store at once, atomically (a temporary file renamed into
place), as JSON — so a sweep that is killed keeps every finished result, and running it again
skips what is already there. No pickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

__all__ = ["ResultStore", "run_key", "run_grid"]


def run_key(config: Mapping) -> str:
    """A stable short hash of a JSON-able config; the store's file name for that run."""
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ResultStore:
    """A folder of JSON records, one file per run, written atomically.

    Examples
    --------
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> store.put({"dataset": "adult", "seed": 0}, {"accuracy": 0.85})
    >>> store.has({"dataset": "adult", "seed": 0}), len(store)
    (True, 1)
    >>> store.frame()[["dataset", "seed", "accuracy"]].values.tolist()
    [['adult', 0, 0.85]]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def _file(self, config: Mapping) -> Path:
        return self.path / f"{run_key(config)}.json"

    def has(self, config: Mapping) -> bool:
        return self._file(config).is_file()

    def put(self, config: Mapping, result: Mapping) -> None:
        payload = json.dumps({"config": dict(config), "result": dict(result)}, default=float, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._file(config))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, config: Mapping) -> dict:
        return json.loads(self._file(config).read_text())["result"]

    def records(self) -> list[dict]:
        out = []
        for f in sorted(self.path.glob("*.json")):
            d = json.loads(f.read_text())
            out.append({**d["config"], **d["result"]})
        return out

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records())

    def __len__(self) -> int:
        return len(list(self.path.glob("*.json")))


def run_grid(
    configs: Iterable[Mapping],
    run: Callable[[Mapping], Mapping],
    *,
    store: ResultStore | None = None,
    progress: bool = True,
    desc: str = "runs",
) -> pd.DataFrame:
    """Run ``run(config)`` for each config, skipping configs already in ``store``.

    Results are stored as each run finishes. Returns one row per config (config and result).
    """
    configs = [dict(c) for c in configs]
    it = configs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(configs, desc=desc)
    rows = []
    for cfg in it:
        if store is not None and store.has(cfg):
            result = store.get(cfg)
        else:
            result = dict(run(cfg))
            if store is not None:
                store.put(cfg, result)
        rows.append({**cfg, **result})
    return pd.DataFrame(rows)

