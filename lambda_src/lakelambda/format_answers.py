"""The answer's part that lists an Iceberg or Delta table for a fan-out over its data files
(docs/table-format-fanout.md), and the checks both ends make of the paths it names.

Standard library only, as answers.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from .errors import ProtocolError
from .fields import (Column, Count, FilePath, KeyName, MAX_COLUMNS, MAX_FILE_PATH_CHARS, MAX_LISTED_FILES,
                     MAX_PARTITION_KEYS, TableName)
from .markers import OMITTED, Items, Text

TableFormat = Literal["iceberg", "delta"]
# An Iceberg partition transform (bucket[N], truncate[W] with their parameter); a Delta partition column's is identity.
TRANSFORM_PATTERN = re.compile(r"identity|year|month|day|hour|void|(?:bucket|truncate)\[[0-9]{1,9}\]")
PartitionTransform = Annotated[str, Text(32, pattern=TRANSFORM_PATTERN, says="a partition transform")]
# A file's statistic of a column: an integer, a decimal, a date or a timestamp (naive, UTC), as text.
BOUND_PATTERN = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,40})?"
                           r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?: [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?)?")
MAX_BOUND_CHARS = 64
MAX_BOUND_COLUMN_CHARS = 1024
Bounds = Annotated[dict[Annotated[str, Text(MAX_BOUND_COLUMN_CHARS, least=1, says="a column name")],
                        Annotated[str, Text(MAX_BOUND_CHARS, pattern=BOUND_PATTERN,
                                            says="a bound (an integer, decimal, date or timestamp)")]],
                   Items(MAX_COLUMNS, noun="bounds"), OMITTED]


@dataclass(frozen=True)
class FormatFile:
    """One live data file of an Iceberg or Delta table's pinned snapshot: its path relative to the lake, its
    size, and its partition values as the table's metadata gives them, (source column, transform, value as
    text or None for NULL) for each partition field (an Iceberg month as months since 1970, as Iceberg keeps it);
    and its statistics, the least and greatest value of a column by its name (`lower`, `upper`), where the
    metadata gives them exactly for a type pruning uses (format_bounds.py). Left out when there are none."""

    path: FilePath
    bytes: Count
    partition: Annotated[tuple[tuple[KeyName, PartitionTransform, Annotated[str, Text(MAX_FILE_PATH_CHARS)] | None], ...],
                         Items(MAX_PARTITION_KEYS, noun="partition values")]
    lower: Bounds = field(default_factory=dict)
    upper: Bounds = field(default_factory=dict)


@dataclass(frozen=True)
class FormatTable:
    """An Iceberg or Delta table a fan-out may split over its data files: the snapshot it read (`pin`, the file
    that pins it, relative to the lake: an Iceberg metadata file or a Delta commit), the table's columns as that
    snapshot reads them, and its live data files. The handler decides it is exact (docs/table-format-fanout.md)."""

    name: TableName
    kind: TableFormat
    pin: FilePath
    columns: Annotated[tuple[Column, ...], Items(MAX_COLUMNS, least=1, noun="columns")]
    files: Annotated[tuple[FormatFile, ...], Items(MAX_LISTED_FILES, noun="files")]

    def check_arrival(self) -> "FormatTable":
        if format_pin_problem(self.name, self.kind, self.pin) is not None:
            raise ProtocolError(f"the listing of {self.name} pins {self.pin[:200]!r}, which "
                                f"{format_pin_problem(self.name, self.kind, self.pin)}")
        columns = {column.name.lower() for column in self.columns}
        for file in self.files:
            problem = format_file_problem(self.name, file.path)
            if problem is None and any(column.lower() not in columns for column, _, _ in file.partition):
                problem = "is partitioned by a column the table does not have"
            if problem is None and any(column.lower() not in columns for column in (*file.lower, *file.upper)):
                problem = "has statistics of a column the table does not have"
            if problem is None and self.kind == "delta" and any(how != "identity" for _, how, _ in file.partition):
                problem = "has a Delta partition value that is not the column's own"
            if problem:
                raise ProtocolError(f"the listing of {self.name} names {file.path[:200]!r}, which {problem}")
        return self


# The characters that make a path a pattern for DuckDB's glob, or an S3 URL's query string or fragment.
_NOT_IN_A_FILE_NAME = frozenset("*?[]{}#\\")
ICEBERG_PIN = re.compile(r"metadata/(?:v[0-9]+|[0-9]+-[0-9A-Za-z\-]+)\.metadata\.json")
DELTA_PIN = re.compile(r"_delta_log/[0-9]{20}\.json")


def format_file_problem(table: str, path: str) -> str | None:
    """Why `path` cannot name a data file of the table-format table `table` (a file inside its folder, named
    whole, ending .parquet), or None. Both ends check it: the notebook on a listing's arrival, the handler on a task's."""
    segments = path.split("/")
    if len(segments) < 2 or segments[0] != table:
        return f"is not inside {table}/"
    if any(segment in ("", ".", "..") for segment in segments):
        return "has an empty, . or .. segment"
    if _NOT_IN_A_FILE_NAME & set(path) or not path.isprintable():
        return "is a pattern, has a query string, or holds characters no data file's name has"
    if not path.endswith(".parquet"):
        return "is not a .parquet file"
    return None


def format_pin_problem(table: str, kind: str, pin: str) -> str | None:
    """Why `pin` is not a file that pins a snapshot of the `kind` table `table`, or None."""
    folder, _, rest = pin.partition("/")
    if folder != table or not (ICEBERG_PIN if kind == "iceberg" else DELTA_PIN).fullmatch(rest):
        return (f"is not {table}/metadata/<version>.metadata.json" if kind == "iceberg"
                else f"is not {table}/_delta_log/<20 digits>.json")
    return None
