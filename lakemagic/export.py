"""A whole result into a local file, atomically: Parquet or CSV, as DuckDB writes them.

The result is fetched as its stored file (client.QueryResult.local_files,
with progress), rewritten with its declared types into a temporary file
beside the target, and renamed over it only once it is complete: a failure
leaves no file, or the previous one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from .client import QueryResult
from .decode import FRAME_KINDS, copy_files

FORMATS = {".parquet": "parquet", ".csv": "csv"}


def file_format(path: str) -> str:
    """`path`'s format by its suffix; ValueError for one this cannot write."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"export to a .parquet or .csv file, not {os.path.basename(path) or path!r}")
    return FORMATS[suffix]


def write(result: QueryResult, path: str, progress: Callable[[int, int], None] | None = None) -> int:
    """Write every row of `result` to `path`; return how many."""
    kind = file_format(path)
    target = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"there is no folder {folder}")
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".partial", dir=folder)
    os.close(handle)
    try:
        with result.local_files(progress) as paths:
            copy_files(paths, result.columns, result.total_rows, temporary, kind)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return result.total_rows


def check_frame_kind(kind: str) -> None:
    """ImportError naming the package a frame kind needs, before any query runs for it."""
    package = FRAME_KINDS[kind]
    try:
        __import__(package)
    except ImportError:
        raise ImportError(f"--as {kind} needs the {package} package, which is not installed here: "
                          f"pip install {package}") from None
