"""Input checks shared by every module.

Each check raises a ``ValueError`` or ``TypeError`` whose message names the offending field and
says what is allowed, so a person sees what to fix instead of a traceback from deep inside torch.
"""

from __future__ import annotations

import difflib
import re
from numbers import Integral, Real
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "check_positive",
    "check_fraction",
    "check_choice",
    "check_binary",
    "check_finite",
    "check_same_length",
    "check_int",
    "resolve_device",
]


def _suggest(name: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_choice(field: str, value, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise raise a ValueError naming both."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, one of {sorted(allowed)}; got {type(value).__name__}")
    if value not in allowed:
        raise ValueError(
            f"unknown {field} {value!r}; allowed: {sorted(allowed)}.{_suggest(value, allowed)}"
        )
    return value


def check_positive(field: str, value, *, allow_none: bool = False, integer: bool = False):
    """Return ``value`` if it is a finite number > 0 (an int when ``integer``)."""
    if value is None and allow_none:
        return None
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, Integral if integer else Real):
        raise TypeError(f"{field} must be {kind} > 0; got {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{field} must be {kind} > 0; got {value!r}")
    return value


def check_int(field: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{field} must be an integer; got {value!r} ({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{field} must be an integer in [{lo}, {hi}]; got {value}")
    return int(value)


def check_fraction(field: str, value, *, inclusive_low: bool = False, inclusive_high: bool = False) -> float:
    """Return ``value`` if it is a number inside (0, 1) (ends included on request)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{field} must be a number in (0, 1); got {value!r} ({type(value).__name__})")
    lo_ok = value >= 0 if inclusive_low else value > 0
    hi_ok = value <= 1 if inclusive_high else value < 1
    if not (lo_ok and hi_ok):
        lo = "[0" if inclusive_low else "(0"
        hi = "1]" if inclusive_high else "1)"
        raise ValueError(f"{field} must be in {lo}, {hi}; got {value!r}")
    return float(value)


def check_finite(field: str, values) -> None:
    """Raise a ValueError naming ``field`` if ``values`` holds NaN or infinity."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{field} contains {bad} NaN or infinite value(s); drop or impute them first")


def check_binary(field: str, values) -> np.ndarray:
    """Return ``values`` as an int64 array if every entry is 0 or 1."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{field} must be one-dimensional; got shape {arr.shape}")
    uniq = np.unique(arr)
    if not np.isin(uniq, [0, 1]).all():
        shown = uniq[:6].tolist()
        raise ValueError(f"{field} must be binary (0/1); found values {shown}")
    return arr.astype(np.int64)


def check_same_length(**arrays) -> int:
    """Return the common length of the given arrays, or raise naming the ones that differ."""
    lengths = {name: len(a) for name, a in arrays.items() if a is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length; got {lengths}")
    return next(iter(lengths.values()), 0)


_DEVICE_KINDS = ("cpu", "cuda", "mps")
_DEVICE_RE = re.compile(r"(cpu|cuda|mps)(?::(\d+))?")
_DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _available_devices() -> list[str]:
    import torch

    out = ["cpu", "auto"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


def resolve_device(device) -> torch.device:
    """Return ``device`` as a ``torch.device`` that exists on this machine.

    Parameters
    ----------
    device : None, str or torch.device
        ``None`` or ``"cpu"``; ``"cuda"`` or ``"cuda:N"``; ``"mps"``; ``"auto"`` (CUDA when
        ``torch.cuda.is_available()``, else the CPU); or a ``torch.device`` of one of those types.

    Raises
    ------
    ValueError
        If the device is unknown, or not available here (the message lists what is).
    TypeError
        If ``device`` is neither None, a string nor a ``torch.device``.

    Examples
    --------
    >>> resolve_device("cpu"), resolve_device(None)
    (device(type='cpu'), device(type='cpu'))
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, str):
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        m = _DEVICE_RE.fullmatch(device)
        if m is None:
            hint = " Did you mean 'cuda'?" if device.strip().lower() in ("gpu", "cuda") else _suggest(device, _DEVICE_FORMS)
            raise ValueError(f"unknown device {device!r}; allowed: {list(_DEVICE_FORMS)} "
                             f"or a torch.device.{hint}")
        dev = torch.device(device)
    elif isinstance(device, torch.device):
        if device.type not in _DEVICE_KINDS:
            raise ValueError(f"device type {device.type!r} is not supported; allowed: {list(_DEVICE_FORMS)}")
        dev = device
    else:
        raise TypeError(f"device must be None, a string ({', '.join(map(repr, _DEVICE_FORMS))}) or a "
                        f"torch.device; got {device!r} ({type(device).__name__})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            reason = "torch.cuda.is_available() is False"
        elif dev.index is not None and dev.index >= torch.cuda.device_count():
            reason = f"torch.cuda.device_count() is {torch.cuda.device_count()}"
        else:
            reason = None
    elif dev.type == "mps":
        reason = None if torch.backends.mps.is_available() else "torch.backends.mps.is_available() is False"
    else:
        reason = None
    if reason is not None:
        allowed = ", ".join(repr(d) for d in _available_devices())
        raise ValueError(f"device={str(dev)!r} is not available on this machine ({reason}); allowed here: {allowed}")
    return dev
