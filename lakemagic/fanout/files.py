"""The partition files of a plan: their keys' types and their grouping into tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from lakelambda.sql import parser

from .tree import Refusal

# DuckDB's hive_types_autocast tries these in order on each value; a key whose values
# disagree, or fit none, is VARCHAR.
AUTOCAST_TYPES = ("DATE", "TIMESTAMP", "BIGINT")


@dataclass(frozen=True)
class PartitionFile:
    """One Parquet file of a Hive-partitioned table."""

    path: str  # as the task reads it: a local path or s3://bucket/key
    size_bytes: int
    # key -> value as DuckDB reads it from the path (URL-decoded): {"date": "2019-04-01"}
    partition: Mapping[str, str] = field(default_factory=dict)

    def partition_label(self) -> str:
        return "/".join(f"{key}={value}" for key, value in self.partition.items())


def autocast_key_types(files: Sequence[PartitionFile]) -> dict[str, str]:
    """The type DuckDB's hive_types_autocast gives each partition key when it reads all of `files`.

    DuckDB casts strictly (no trailing text, no rounding), where SQL's TRY_CAST
    is lenient; a value is taken to be of the first type it prints back as
    unchanged ('2019-04-01' DATE, '2019-04-01 10:00:00' TIMESTAMP, '12' BIGINT).
    A value that some type accepts but none prints back ('2019-04-01T10:00',
    '007', '1.5') leaves the type in doubt: Refusal, and the caller passes the
    types (DESCRIBE of the table) instead.
    """
    keys = list(files[0].partition) if files else []
    if any(set(file.partition) != set(keys) for file in files):
        raise Refusal("the partition files do not all have the same partition keys")
    return {key: _autocast_type(key, sorted({file.partition[key] for file in files})) for key in keys}


def _autocast_type(key: str, values: list[str]) -> str:
    casts = ", ".join(f"TRY_CAST(v AS {kind}) IS NOT NULL, CAST(TRY_CAST(v AS {kind}) AS VARCHAR) = v"
                      for kind in AUTOCAST_TYPES)
    with parser() as con:
        rows = con.execute(f"SELECT v, {casts} FROM (SELECT unnest(?::VARCHAR[]) AS v)", [values]).fetchall()
    detected = set()
    for value, *checks in rows:
        prints_back = [kind for kind, same in zip(AUTOCAST_TYPES, checks[1::2]) if same]
        if prints_back:  # an earlier type that casts leniently fails strictly on this canonical text
            detected.add(prints_back[0])
        elif any(checks[::2]):
            raise Refusal(f"the type of partition key {key} is in doubt for the value {value!r}; pass key_types")
        else:
            detected.add("VARCHAR")
    return detected.pop() if len(detected) == 1 else "VARCHAR"


def group_files(files: Sequence[PartitionFile], max_tasks: int) -> list[list[PartitionFile]]:
    """At most `max_tasks` groups of similar total size: largest file first, each to the lightest group."""
    count = max(1, min(max_tasks, len(files)))
    groups: list[list[PartitionFile]] = [[] for _ in range(count)]
    loads = [0] * count
    for file in sorted(files, key=lambda file: (-file.size_bytes, file.path)):
        lightest = min(range(count), key=lambda index: (loads[index], index))
        groups[lightest].append(file)
        loads[lightest] += file.size_bytes
    return sorted((sorted(group, key=lambda file: file.path) for group in groups if group),
                  key=lambda group: group[0].path)
