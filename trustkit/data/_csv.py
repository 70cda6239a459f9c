"""Reading a person's CSV file safely (:func:`from_csv`): decoding, refusing what is not a clean
comma-separated table, then :func:`~trustkit.data.from_frame`."""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import os
import zipfile
from pathlib import Path
from typing import Sequence

import pandas as pd

from ._frame import from_frame
from ._task import Task

__all__ = ["from_csv"]


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
