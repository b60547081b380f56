"""The live data files of an Iceberg or Delta table's pinned snapshot, and whether reading each alone, by name,
with read_parquet, gives what the format's own reader gives (docs/table-format-fanout.md).

The listing (`partitions`) and every task read the snapshot here, from the
file that pins it (an Iceberg metadata file, a Delta commit), after formats.check
has proven every file it references inside the lake: the listing to say which
files a fan-out may split and why a table is not split, a task to know its
files are the snapshot's own and what each holds, never trusting the
request for either. What is read is kept per container by the pin and its
version. The Iceberg manifests are read with read_avro, as formats.check_iceberg
reads them (iceberg_metadata gives neither sizes nor partition values nor
bounds); a Delta log is replayed by formats.delta_replay. Each file's statistics
are decoded by format_bounds. The table's columns and types are what
the format's own reader binds (DESCRIBE of iceberg_scan / delta_scan).
"""

from __future__ import annotations

import json
import threading
from typing import NamedTuple

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from . import format_bounds, formats
from .errors import TableMetadataError
from .fields import Column
from .format_answers import DELTA_PIN, ICEBERG_PIN
from .sql import printed_type, quote_literal

# Delta reader features whose effect on a plain Parquet read is known (timestampNtz: read as TIMESTAMP;
# deletionVectors: only while no add has a vector, checked apart).
KNOWN_DELTA_FEATURES = {"timestampNtz", "deletionVectors"}
MAX_SPLITS = 64


class DataFile(NamedTuple):
    path: str  # relative to the lake
    bytes: int
    partition: tuple[tuple[str, str, str | None], ...]  # (source column, transform, value as text, None: NULL)
    lower: dict[str, str]  # column -> its least value in the file, as text (format_bounds)
    upper: dict[str, str]


class Split(NamedTuple):
    """What a fan-out may split a pinned snapshot into, or why not (`reason`)."""

    kind: str
    pin: str  # relative to the lake
    columns: tuple[Column, ...]  # as the format's reader binds them (where it splits)
    files: tuple[DataFile, ...]
    reason: str | None = None
    field_ids: tuple[tuple[str, int], ...] = ()  # an Iceberg table's current top-level columns, when its schema changed
    nested: frozenset[str] = frozenset()  # of those, the nested ones whose shape changed: never name-exact


_splits: dict[tuple, Split] = {}
_splits_lock = threading.Lock()


def pin_kind(table: str, pin: str) -> str | None:
    """ICEBERG or DELTA, as the pin names a metadata file or a commit of `table`'s folder; None if it names neither."""
    folder, _, rest = pin.partition("/")
    if folder != table:
        return None
    return formats.ICEBERG if ICEBERG_PIN.fullmatch(rest) else formats.DELTA if DELTA_PIN.fullmatch(rest) else None


def split(con, lake, table: str, pin: str) -> Split:
    """The snapshot of the lake table `table` (its folder) that `pin` (relative to the lake) pins."""
    kind = pin_kind(table, pin)
    if kind is None:
        raise TableMetadataError(f"{pin[:300]!r} pins no snapshot of {table}")
    full = lake.path(pin)
    key = (lake.root, pin, lake.storage.version_of(full))
    with _splits_lock:
        found = _splits.get(key)
    if found is not None:
        return found
    # Whether it splits is read from the metadata first: the format's reader binds it only if it does.
    version = int(pin.rpartition("/")[2][: -len(".json")]) if kind == formats.DELTA else None
    formats.check(con, lake, "iceberg_scan" if version is None else "delta_scan",
                  full if version is None else lake.path(table), version)
    try:
        found = _iceberg(con, lake, table, pin) if version is None else _delta(con, lake, table, pin, version)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):  # what a table's writer got wrong
        raise TableMetadataError(f"the metadata of {lake.path(table)} that {full} pins names a data file or partition "
                                 "this reader does not understand") from None
    reader = f"iceberg_scan({quote_literal(full)})" if version is None else \
        f"delta_scan({quote_literal(lake.path(table))}, version => {version})"
    if found.reason is None:
        columns = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
        try:  # types the table's metadata made, which the reader splices into SQL: DuckDB's own printing only
            found = found._replace(columns=tuple(Column(name, printed_type(type_)) for name, type_, *_ in columns))
        except ValueError as exc:
            found = found._replace(reason=f"a column's type does not print back as DuckDB reads it ({exc})"[:1000])
    with _splits_lock:
        if len(_splits) >= MAX_SPLITS:
            _splits.clear()
        _splits[key] = found
    return found


def _iceberg(con, lake, table: str, pin: str) -> Split:
    metadata = formats.read_json(lake.storage, lake.path(pin))
    refused = lambda reason: Split(formats.ICEBERG, pin, (), (), reason)  # noqa: E731
    try:
        schemas = metadata.get("schemas") or [metadata["schema"]]
        current = next(item for item in schemas if item.get("schema-id", 0) == metadata.get("current-schema-id", 0))
        names = {field["id"]: field["name"] for field in current["fields"]}
        typed = {field["id"]: (field["name"], field["type"]) for field in current["fields"]}
        specs = {spec["spec-id"]: spec["fields"] for spec in metadata.get("partition-specs")
                 or [{"spec-id": 0, "fields": metadata.get("partition-spec", [])}]}
        wanted = metadata.get("current-snapshot-id")
        lists = [item["manifest-list"] for item in metadata.get("snapshots") or [] if item["snapshot-id"] == wanted]
        mapping = (metadata.get("properties") or {}).get("schema.name-mapping.default")
    except (KeyError, TypeError, ValueError, StopIteration, AttributeError):
        raise TableMetadataError(f"{lake.path(pin)} is not Iceberg table metadata this reader understands") from None
    if mapping:
        return refused("it has a name mapping (files written without field ids), which a read by name may not follow")
    files = []
    for manifest in (_avro(con, lake, lists[0]) if lists else []):
        if manifest.get("content") or 0:
            return refused("its snapshot has delete files, which a read of each data file alone would not apply")
        fields = specs.get(manifest.get("partition_spec_id") or 0, [])
        for entry in _entries(con, lake, manifest["manifest_path"]):
            if entry["status"] == 2:  # DELETED: not in this snapshot
                continue
            data = json.loads(entry["data_file"])
            if data.get("content") or 0:
                return refused("its snapshot has delete files, which a read of each data file alone would not apply")
            if str(data.get("file_format", "")).upper() != "PARQUET":
                return refused(f"its data files are not all Parquet ({str(data.get('file_format'))[:20]})")
            relative = _relative(lake, table, formats.readable(lake, data["file_path"]))
            if relative is None:
                return refused(f"its data files are not all inside its folder {table}/ "
                               f"({str(data['file_path'])[:200]})")
            values = data.get("partition") or {}
            files.append(DataFile(relative, int(data["file_size_in_bytes"]), tuple(
                (names[field["source-id"]], field["transform"], _text(values.get(field["name"])))
                for field in fields if field["source-id"] in names),
                format_bounds.iceberg_bounds(typed, entry.get("lower_bounds")),
                format_bounds.iceberg_bounds(typed, entry.get("upper_bounds"))))
    if len(schemas) == 1:
        return Split(formats.ICEBERG, pin, (), tuple(files))
    # The schema changed: a file's columns are matched to the current ones by field id, in its footer.
    nested = frozenset(field["name"] for field in current["fields"] if not isinstance(field["type"], str) and any(
        other["id"] == field["id"] and other["type"] != field["type"] for item in schemas for other in item["fields"]))
    found = Split(formats.ICEBERG, pin, (), tuple(files), None,
                  tuple((field["name"], field["id"]) for field in current["fields"]), nested)
    problem = names_problem(found, top_level_columns(con, [lake.path(file.path) for file in files]))
    return found._replace(files=(), reason=problem) if problem else found


def _entries(con, lake, manifest: str) -> list[dict]:
    """A manifest's entries: status, data_file as JSON, and its bounds where its schema has them (optional)."""
    entry = "status, to_json(data_file) AS data_file"
    try:
        return _avro(con, lake, manifest, f"{entry}, data_file.lower_bounds AS lower_bounds, "
                                          "data_file.upper_bounds AS upper_bounds")
    except duckdb.BinderException:
        return _avro(con, lake, manifest, entry)


def _avro(con, lake, path, columns: str = "*") -> list[dict]:
    full = formats.readable(lake, path)
    cursor = con.execute(f"SELECT {columns} FROM read_avro({quote_literal(full)})")
    names = [item[0] for item in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _delta(con, lake, table: str, pin: str, version: int) -> Split:
    replay = formats.delta_replay(con, lake.storage, table, version)
    refused = lambda reason: Split(formats.DELTA, pin, (), (), reason)  # noqa: E731
    protocol, metadata = replay.protocol, replay.metadata
    try:
        reader = int(protocol.get("minReaderVersion", 1))
        features = set(protocol.get("readerFeatures") or ())
        mode = (metadata.get("configuration") or {}).get("delta.columnMapping.mode", "none")
        provider = (metadata.get("format") or {}).get("provider", "parquet")
        keys = list(metadata.get("partitionColumns") or ())
        typed = {field["name"]: field["type"] for field in json.loads(metadata.get("schemaString") or "{}")
                 .get("fields") or ()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise TableMetadataError(f"{lake.path(pin)} holds a protocol or metaData this reader does not understand") \
            from None
    if any(entry.get("deletionVector") for entry in replay.live.values()):
        return refused("its snapshot has deletion vectors, which a read of each data file alone would not apply")
    if mode != "none" or "columnMapping" in features or reader == 2:
        return refused("it maps column names (delta.columnMapping), so its files' column names are not the table's")
    if reader > 3 or features - KNOWN_DELTA_FEATURES:
        unknown = sorted(map(str, features - KNOWN_DELTA_FEATURES)) or [f"reader version {reader}"]
        return refused(f"its protocol needs reader features whose effect on a plain Parquet read is not known "
                       f"({', '.join(unknown)[:200]})")
    if provider != "parquet":
        return refused(f"its files are not Parquet ({str(provider)[:20]})")
    files = []
    for entry in replay.live.values():
        relative = _relative(lake, table, formats.readable(lake, formats.delta_path(lake.path(table), entry["path"])))
        if relative is None:
            return refused(f"its data files are not all inside its folder {table}/ ({str(entry['path'])[:200]})")
        values = entry.get("partitionValues") or {}
        # Delta's reader reads an empty partition value as NULL, whatever the column's type.
        files.append(DataFile(relative, int(entry.get("size", 0)), tuple(
            (key, "identity", _text(values.get(key)) or None) for key in keys),
            *format_bounds.delta_bounds(typed, entry.get("stats"))))
    return Split(formats.DELTA, pin, (), tuple(sorted(files, key=lambda file: file.path)))


def _relative(lake, table: str, path) -> str | None:
    """A data file's path relative to the lake, if it lies inside the table's folder (formats.check proved it
    inside the lake), else None."""
    folder = lake.path(table) + "/"
    return path[len(lake.root) + 1:] if isinstance(path, str) and path.startswith(folder) else None


def _text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def top_level_columns(con, paths: list[str]) -> dict[str, dict[str, int | None]]:
    """Each Parquet file's top-level columns and their field ids, from its footer (parquet_schema lists
    each file's schema tree depth first: a column, then its children)."""
    if not paths:
        return {}
    rows = con.execute("SELECT file_name, name, field_id, num_children FROM parquet_schema(["
                       + ", ".join(map(quote_literal, paths)) + "])").fetchall()
    found: dict[str, dict[str, int | None]] = {}
    index = 0
    while index < len(rows):
        file, _, _, children = rows[index]  # the file's root
        columns: dict[str, int | None] = found.setdefault(file, {})
        index += 1
        for _ in range(children or 0):
            _, name, field_id, below = rows[index]
            columns[name] = field_id
            index = _past(rows, index)
    return found


def _past(rows: list[tuple], index: int) -> int:
    """The index after the column at `index` and everything below it."""
    below = rows[index][3] or 0
    index += 1
    for _ in range(below):
        index = _past(rows, index)
    return index


def names_problem(found: Split, files: dict[str, dict[str, int | None]]) -> str | None:
    """Why reading the files (their top-level columns by name, as footers give them) by name would not be
    reading them by field id as Iceberg does, or None. Only where the schema changed: with one schema every
    file was written with the current names."""
    if not found.field_ids:
        return None
    for path, columns in files.items():
        by_id = {field_id: name for name, field_id in columns.items()}
        for name, field_id in found.field_ids:
            if None in by_id or (field_id in by_id and by_id[field_id] != name) or \
                    (name in columns and columns[name] != field_id) or (name in found.nested and name in columns):
                return (f"its schema changed and a data file's columns are not the current ones by name "
                        f"({path.rpartition('/')[2][:200]}: {name[:100]})")
    return None
