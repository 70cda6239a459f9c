"""Threads: the one place that decides how many threads torch and the BLAS libraries use.

Two processes with two torch threads each on two cores slowed small-batch training 5–11× on the
machines trustkit was measured on, so every process trustkit starts (sweep and comparison workers,
report and Voila kernels, benchmarks) sets its threads here:

* :func:`set_threads` ``(n)`` sets torch's intra-op threads and the BLAS/OpenMP pools (through
  threadpoolctl) of this process, and exports ``TRUSTKIT_THREADS`` and ``OMP_NUM_THREADS`` so
  that processes started from it (papermill and Voila kernels, joblib and Dask workers) use the
  same number: importing :mod:`trustkit` in a process where ``TRUSTKIT_THREADS`` is set applies it.
* Without ``n``: ``$TRUSTKIT_THREADS`` if the user or a parent process set it, else the cores
  available to this process divided by the number of worker processes (:func:`worker_threads`).
  The value this process exported itself is not a choice of the user: a later
  ``set_threads(workers=2)`` divides the cores again instead of keeping an earlier call's number.
* :func:`using_threads` sets threads for a block and restores the caller's (torch, the BLAS pools
  and the exported variables) when it ends: a sequential run of a grid does not change the
  caller's threads.
* Every training record keeps the value it ran with (``usage["threads"]``; a sweep cell's
  ``threads``).

>>> worker_threads(2, cores=2), worker_threads(1, cores=8), worker_threads(16, cores=4)
(1, 8, 1)
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["available_cores", "worker_threads", "default_threads", "set_threads", "using_threads", "get_threads",
           "ENV"]

#: the environment variable that carries the thread count into processes trustkit starts
ENV = "TRUSTKIT_THREADS"
_BLAS_LIMIT = None  # the threadpoolctl limiter kept alive for this process
# the value the user or a parent process gave (at import), and the last value this process exported
_OUTSIDE = os.environ.get(ENV)
_EXPORTED: str | None = None


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def worker_threads(workers: int, *, cores: int | None = None) -> int:
    """Threads per worker so that ``workers`` processes do not oversubscribe the cores (at least 1)."""
    cores = available_cores() if cores is None else int(cores)
    return max(1, cores // max(1, int(workers)))


def _from_env() -> int | None:
    text = os.environ.get(ENV)
    if text is not None and text == _EXPORTED:  # this process's own export: only an outside value counts
        text = _OUTSIDE
    if text is None or not text.strip():
        return None
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{ENV} must be a whole number of threads >= 1; got {text!r}") from None
    if n < 1:
        raise ValueError(f"{ENV} must be a whole number of threads >= 1; got {text!r}")
    return n


def default_threads(workers: int = 1) -> int:
    """``$TRUSTKIT_THREADS`` as the user or a parent process set it, else :func:`worker_threads` of
    ``workers``."""
    return _from_env() or worker_threads(workers)


def set_threads(n: int | None = None, *, workers: int = 1) -> int:
    """Use ``n`` threads in this process and in the processes it starts; returns the number set.

    ``n=None`` takes :func:`default_threads` of ``workers``. Raises ``ValueError`` for ``n < 1``.

    >>> import torch
    >>> set_threads(1), torch.get_num_threads()
    (1, 1)
    """
    global _BLAS_LIMIT, _EXPORTED
    if n is None:
        n = default_threads(workers)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a whole number >= 1; got {n!r}")
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    os.environ[ENV] = str(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    _EXPORTED = str(n)
    try:
        from threadpoolctl import threadpool_limits

        _BLAS_LIMIT = threadpool_limits(limits=n)
    except ImportError:  # threadpoolctl comes with scikit-learn; without it only torch is set
        pass
    return n


@contextlib.contextmanager
def using_threads(n: int | None = None, *, workers: int = 1):
    """Within the block, :func:`set_threads` ``(n, workers=workers)``; after it, the caller's torch
    threads, BLAS pools and ``TRUSTKIT_THREADS`` / ``OMP_NUM_THREADS`` as they were.

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with using_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    global _BLAS_LIMIT, _EXPORTED
    import torch

    saved = (torch.get_num_threads(), os.environ.get(ENV), os.environ.get("OMP_NUM_THREADS"), _EXPORTED, _BLAS_LIMIT)
    try:
        yield set_threads(n, workers=workers)
    finally:
        torch_n, env, omp, exported, limit = saved
        if _BLAS_LIMIT is not None and _BLAS_LIMIT is not limit:
            _BLAS_LIMIT.restore_original_limits()  # the pools as they were when the block set them
        if torch.get_num_threads() != torch_n:
            torch.set_num_threads(torch_n)
        for key, value in ((ENV, env), ("OMP_NUM_THREADS", omp)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _EXPORTED, _BLAS_LIMIT = exported, limit


def get_threads() -> int:
    """The torch intra-op threads of this process (what a run record stores)."""
    import torch

    return torch.get_num_threads()
