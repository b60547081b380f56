"""Iceberg and Delta tables in the lake: which snapshot a table's name reads, what its metadata says of it,
and proof that every file that metadata references lies inside the lake before DuckDB reads one.

A table's metadata is data someone else wrote. DuckDB's iceberg and delta
extensions follow whatever paths it holds (another bucket, `s3://lake/../x`,
a query string that sets httpfs options, a local file), and DuckDB's
allowed_directories compares strings before normalizing them. So the files
a read will open are listed first, in steps that each open only files
already proven inside the lake: Iceberg's metadata file names its manifest
lists (checked), those name the manifests (read with read_avro, checked),
and iceberg_metadata() over the checked manifests names the data and delete
files (checked); a Delta table's log is read here, in Python, and the file
and deletion vector of every add it replays are checked. Only then does
iceberg_scan/delta_scan run, pinned to the snapshot that was checked
(format_calls.py pins the calls a query makes itself). DuckDB's allowed_directories
stays the outer layer. Reading Avro and Iceberg needs the extensions, which
only the database reopened for that format has (database.TABLE_FORMAT_EXTENSIONS).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import NamedTuple
from urllib.parse import unquote

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from .errors import PermissionDenied, TableMetadataError, UnsupportedTableFeature
from .sandbox import FORMAT_FUNCTIONS, lake_path_problem
from .sql import duckdb_error, quote_literal

ICEBERG, DELTA = "iceberg", "delta"
ICEBERG_METADATA_FOLDER = "metadata"
DELTA_LOG_FOLDER = "_delta_log"
VERSION_HINT = "version-hint.text"
# A metadata file or log entry is read whole into memory: anything larger is refused, not read.
MAX_METADATA_BYTES = 64 * 2**20
SNAPSHOT_OPTIONS = {ICEBERG: "snapshot_from_id", DELTA: "version"}
# Iceberg's metadata files: `NNNNN-<uuid>.metadata.json` (catalogs) or `v<N>.metadata.json` (a version hint's).
_ICEBERG_METADATA = re.compile(r"(?:v(\d+)|(\d+)-[0-9A-Za-z\-]+)\.metadata\.json")
_DELTA_COMMIT = re.compile(r"(\d{20})\.json")
_DELTA_CHECKPOINT = re.compile(r"(\d{20})\.checkpoint\.parquet")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


class Snapshot(NamedTuple):
    """What a table's name reads: its metadata file (Iceberg) or its log's commit (Delta), and what
    its metadata says of it (nothing scanned)."""

    kind: str
    folder: str  # the table's folder, full path
    source: str  # the current metadata file, or the current version's commit file: changes with every commit
    version: str | None  # the snapshot id (None: the table has none yet), or the Delta version
    partition_keys: tuple[str, ...]
    files: int
    bytes: int
    rows: int

    @property
    def location(self) -> str:
        """Where the catalog says the table is: the metadata file an Iceberg read starts from, a Delta table's folder."""
        return self.source if self.kind == ICEBERG else self.folder


def format_of(storage, folder: str) -> str | None:
    """ICEBERG, DELTA, or None, for a lake folder: one listing of its folders (a Hive-partitioned table's
    first query pays no more), then, where it has a `metadata` folder, the first page or so of that (a
    metadata file's name starts with digits, so it comes early)."""
    folders = storage.folders(folder)
    if DELTA_LOG_FOLDER in folders:
        return DELTA
    if ICEBERG_METADATA_FOLDER in folders and any(
            _ICEBERG_METADATA.fullmatch(name) for name in storage.list_files(f"{folder}/{ICEBERG_METADATA_FOLDER}")):
        return ICEBERG
    return None


def snapshot(con, storage, folder: str, kind: str) -> Snapshot:
    """The current snapshot of the table in the lake folder `folder`."""
    return _iceberg_snapshot(storage, folder) if kind == ICEBERG else delta_replay(con, storage, folder).snapshot


def listed(storage, folder: str) -> set[str]:
    """The names of the files directly in a lake folder, however many (storage.list_files stops at a
    few thousand, and an Iceberg table's metadata folder or a Delta log can hold more)."""
    return {relative.rpartition("/")[2] for relative, _ in storage.files_under(folder)
            if relative.rpartition("/")[0] == folder}


def current_iceberg_metadata(storage, folder: str) -> str:
    """The table's current metadata file (full path): the one `version-hint.text` names where there is
    one, else the highest committed version (see the README's "Iceberg and Delta tables")."""
    metadata = f"{folder}/{ICEBERG_METADATA_FOLDER}"
    names = listed(storage, metadata)
    if VERSION_HINT in names:
        hint_path = storage.path(metadata, VERSION_HINT)
        hint = _read(storage, hint_path).decode(errors="replace").strip()
        for candidate in (f"v{hint}.metadata.json", f"{hint}.metadata.json"):
            if hint.isdigit() and candidate in names:
                return storage.path(metadata, candidate)
        raise TableMetadataError(f"{hint_path} names version {hint[:40]!r}, but {storage.path(metadata)} has no "
                                 f"v{hint[:40]}.metadata.json")
    versions: dict[int, list[str]] = {}
    for name in names:
        found = _ICEBERG_METADATA.fullmatch(name)
        if found:
            versions.setdefault(int(found.group(1) or found.group(2)), []).append(name)
    if not versions:
        raise TableMetadataError(f"{storage.path(metadata)} holds no *.metadata.json file")
    newest = max(versions)
    if len(versions[newest]) > 1:
        raise TableMetadataError(f"{storage.path(metadata)} has {len(versions[newest])} metadata files of version "
                                 f"{newest} ({', '.join(sorted(versions[newest]))}): which one was committed only the "
                                 "table's catalog knows; remove the one a failed commit left")
    return storage.path(metadata, versions[newest][0])


def _iceberg_snapshot(storage, folder: str) -> Snapshot:
    path = current_iceberg_metadata(storage, folder)
    metadata = read_json(storage, path)
    try:
        current = metadata.get("current-snapshot-id")
        found = [item for item in metadata.get("snapshots", []) if item["snapshot-id"] == current]
        summary = found[0].get("summary", {}) if found else {}
        total = lambda key: int(summary.get(key, 0))  # noqa: E731
        # Format version 1 may give one schema and one spec instead of lists of them.
        schema = next(item for item in metadata.get("schemas") or [metadata["schema"]]
                      if item.get("schema-id", 0) == metadata.get("current-schema-id", 0))
        names = {column["id"]: column["name"] for column in schema["fields"]}
        specs = metadata.get("partition-specs") or [{"spec-id": 0, "fields": metadata.get("partition-spec", [])}]
        spec = next(item for item in specs if item["spec-id"] == metadata.get("default-spec-id", 0))
        keys = tuple(_partition_key(field["transform"], names.get(field["source-id"], field["name"]))
                     for field in spec["fields"])
    except (KeyError, TypeError, ValueError, StopIteration, AttributeError):
        raise TableMetadataError(f"{path} is not Iceberg table metadata this reader understands") from None
    return Snapshot(ICEBERG, storage.path(folder), path, str(current) if found else None, keys,
                    total("total-data-files") + total("total-delete-files"), total("total-files-size"),
                    total("total-records") - total("total-position-deletes"))


def _partition_key(transform: str, column: str) -> str:
    return column if transform == "identity" else f"{transform}({column})"


def check_iceberg(con, lake, path: str, snapshot_id: int | None = None) -> tuple[tuple[str, tuple], ...]:
    """Refuse unless every file the metadata file `path` has a read of its snapshot (the current one,
    or `snapshot_id`) open lies inside the lake: manifest lists, manifests, data and delete files. The
    manifest list and manifests it read, each with its version taken before the read: the proof holds
    while they are the same."""
    metadata = read_json(lake.storage, path)
    snapshots = metadata.get("snapshots") or []
    wanted = metadata.get("current-snapshot-id") if snapshot_id is None else snapshot_id
    if not isinstance(snapshots, list) or not all(isinstance(item, dict) for item in snapshots):
        raise TableMetadataError(f"{path} has snapshots that are not a list of objects")
    ids = [item.get("snapshot-id") for item in snapshots]
    if len(set(map(repr, ids))) < len(ids):  # which one a reader takes would be its choice: the check's is no proof
        raise TableMetadataError(f"{path} lists a snapshot id twice")
    for item in snapshots:
        _inside(lake, item.get("manifest-list"), path)
    lists = [item.get("manifest-list") for item in snapshots if item.get("snapshot-id") == wanted]
    if not lists:
        if snapshot_id is not None:
            raise TableMetadataError(f"{path} has no snapshot {snapshot_id}")
        return ()  # a table with no snapshot: nothing to read
    read = [(readable(lake, lists[0]), lake.storage.version_of(readable(lake, lists[0])))]
    manifests = [row[0] for row in _rows(con, f"SELECT manifest_path FROM read_avro("
                                           f"{quote_literal(readable(lake, lists[0]))})", lists[0])]
    for manifest in manifests:
        _inside(lake, manifest, lists[0])
        read.append((readable(lake, manifest), lake.storage.version_of(readable(lake, manifest))))
    option = "" if snapshot_id is None else f", snapshot_from_id => {int(snapshot_id)}"
    for manifest, data_file in _rows(con, f"SELECT DISTINCT manifest_path, file_path FROM iceberg_metadata("
                                          f"{quote_literal(path)}{option})", f"the manifests of {path}"):
        _inside(lake, data_file, manifest)
    return tuple(read)


class DeltaReplay(NamedTuple):
    snapshot: Snapshot
    named: list[dict]  # every add the replay met
    live: dict[tuple[str, str], dict]  # the adds no later remove took out, by _file_key
    metadata: dict  # the last metaData action
    protocol: dict  # the last protocol action


def delta_replay(con, storage, folder: str, version: int | None = None) -> DeltaReplay:
    """The table's state at `version` (the latest: None), and every add action the replay met, replayed
    from its log: the newest checkpoint at or below it, then the commits after it. A remove takes out the
    add of its path and deletion vector (the protocol's key for a file: a commit that gives a file a vector
    adds it with the vector and removes it without, in either order). Every add, removed later or not, is
    returned: the check proves them all, whatever a reader makes of a log this replay misreads."""
    log = f"{folder}/{DELTA_LOG_FOLDER}"
    names = listed(storage, log)
    commits = sorted(int(found.group(1)) for found in map(_DELTA_COMMIT.fullmatch, names) if found)
    if not commits:
        raise TableMetadataError(f"{storage.path(log)} holds no commit")
    version = commits[-1] if version is None else version
    if version not in commits:
        raise TableMetadataError(f"{storage.path(log)} has no version {version} (it has {commits[0]} to {commits[-1]})")
    checkpoints = [int(found.group(1)) for found in map(_DELTA_CHECKPOINT.fullmatch, names)
                   if found and int(found.group(1)) <= version]
    if any((".checkpoint." in name and not _DELTA_CHECKPOINT.fullmatch(name) and name.endswith((".json", ".parquet")))
           or name.endswith(".compacted.json") for name in names):
        raise UnsupportedTableFeature(f"{storage.path(log)} has multi-part or v2 checkpoints or compacted commits, "
                                      "which lakemagic does not read yet")
    files: dict[tuple[str, str], dict] = {}  # by _file_key
    named: list[dict] = []
    metadata: dict = {}
    protocol: dict = {}
    start = 0
    if checkpoints:
        start = max(checkpoints) + 1
        checkpoint = storage.path(log, f"{max(checkpoints):020d}.checkpoint.parquet")
        if _rows(con, f"SELECT 1 FROM parquet_schema({quote_literal(checkpoint)}) WHERE name = 'sidecar'", checkpoint):
            raise UnsupportedTableFeature(f"{checkpoint} names sidecar files (a v2 checkpoint), which lakemagic "
                                          "does not read yet")
        for added, meta, chosen in _rows(con, f"SELECT to_json(add), to_json(metaData), to_json(protocol) FROM "
                                              f"read_parquet({quote_literal(checkpoint)}) WHERE add IS NOT NULL OR "
                                              "metaData IS NOT NULL OR protocol IS NOT NULL", checkpoint):
            if added:
                entry = json.loads(added)
                files[_file_key(entry)] = entry
                named.append(entry)
            if meta:
                metadata = json.loads(meta)
            if chosen:
                protocol = json.loads(chosen)
    for number in (commit for commit in commits if start <= commit <= version):
        commit = storage.path(log, f"{number:020d}.json")
        for line in _read(storage, commit).decode(errors="replace").splitlines():
            action = _json_line(line, commit)
            try:
                if "add" in action:
                    files[_file_key(action["add"])] = dict(action["add"])
                    named.append(dict(action["add"]))
                elif "remove" in action:
                    files.pop(_file_key(action["remove"]), None)
                elif "metaData" in action:
                    metadata = dict(action["metaData"])
                elif "protocol" in action:
                    protocol = dict(action["protocol"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise TableMetadataError(f"{commit} holds an action this reader does not understand: "
                                         f"{line[:200]}") from None
    try:
        rows = sum(json.loads(entry.get("stats") or "{}").get("numRecords", 0)
                   - ((entry.get("deletionVector") or {}).get("cardinality") or 0) for entry in files.values())
        return DeltaReplay(Snapshot(DELTA, storage.path(folder), storage.path(log, f"{version:020d}.json"), str(version),
                                    tuple(metadata.get("partitionColumns") or ()), len(files),
                                    sum(int(entry.get("size", 0)) for entry in files.values()), rows),
                           named, files, metadata, protocol)
    except (TypeError, ValueError, AttributeError, RecursionError):
        raise TableMetadataError(f"{storage.path(log)} holds a commit this reader does not understand") from None


def _file_key(action: dict) -> tuple[str, str]:
    """A Delta file's key: its path and its deletion vector's unique id (storage type, path or inline
    vector, and offset; none: ''), as the protocol matches a remove to its add."""
    vector = action.get("deletionVector") or {}
    if not isinstance(vector, dict):
        return str(action["path"]), repr(vector)
    offset = vector.get("offset")
    return str(action["path"]), (f"{vector.get('storageType') or ''}{vector.get('pathOrInlineDv') or ''}"
                                 f"{'' if offset is None else f'@{offset}'}")


def check_delta(con, lake, folder: str, version: int | None = None) -> None:
    """Refuse unless every data file and deletion vector the log of the Delta table at `folder` names (at
    `version`, from its checkpoint on) lies inside the lake."""
    relative = folder[len(lake.root) + 1:]
    named = delta_replay(con, lake.storage, relative, version).named
    log = f"{folder}/{DELTA_LOG_FOLDER}"
    for entry in named:
        _inside(lake, delta_path(folder, entry.get("path")), log)
        vector = entry.get("deletionVector") or {}
        kind, where = (vector.get("storageType"), vector.get("pathOrInlineDv")) if isinstance(vector, dict) else ("?", "")
        if kind == "p":
            _inside(lake, delta_path(folder, where), log)
        elif kind == "u" and not (isinstance(where, str) and (where[:-20].isascii() and where[:-20].isalnum()
                                                              or not where[:-20])):
            raise PermissionDenied(f"{log} names a deletion vector under {str(where)[:-20]!r}, which is no plain "
                                   "folder of the table")
        elif kind not in (None, "i", "u"):
            raise TableMetadataError(f"{log} names a deletion vector this reader does not understand: {vector!r:.200}")


def delta_path(folder: str, path):
    """An added file's path as the log gives it (a URI, relative to the table or absolute), as a path.
    Whatever parses as a URL, encoded or not (`file:/x` too), is absolute, as Delta's reader parses it."""
    if not isinstance(path, str):
        return path  # _inside names it
    decoded = unquote(path)
    absolute = decoded.startswith("/") or any(_URL_SCHEME.match(text) for text in (path, decoded))
    return decoded if absolute else f"{folder}/{decoded}"


def _inside(lake, path, named_in: str) -> None:
    """Refuse `path` (as a table's metadata gives it) unless it lies inside the lake."""
    if not isinstance(path, str):
        raise TableMetadataError(f"{named_in} names a file that is not a path: {str(path)[:200]!r}")
    problem = lake_path_problem(readable(lake, path), lake.root)
    if problem is not None:
        raise PermissionDenied(f"the table's metadata {named_in} references {path[:300]!r}, which lakemagic "
                               f"will not read: {problem}")


def readable(lake, path: str) -> str:
    """A path as a table's writer gave it, as the lake names files: `file:///x` is `/x` on a local lake."""
    if path.startswith("file://") and not lake.root.startswith("s3://"):
        return path[len("file://"):]
    return path


def _rows(con, sql: str, what: str) -> list[tuple]:
    """A statement of the check's own over a table's metadata files: DuckDB's failure names `what` it read."""
    try:
        return con.execute(sql).fetchall()
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:
        raise TableMetadataError(f"{what} could not be read: {duckdb_error(exc).message}") from None


def _read(storage, path: str) -> bytes:
    data = storage.read_whole(path, MAX_METADATA_BYTES)
    if data is None:
        raise TableMetadataError(f"{path} is missing")
    if len(data) > MAX_METADATA_BYTES:
        raise TableMetadataError(f"{path} is larger than {MAX_METADATA_BYTES // 2**20} MiB, the most read here")
    return data


def read_json(storage, path: str) -> dict:
    try:
        found = json.loads(_read(storage, path))
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python's stack
        raise TableMetadataError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(found, dict):
        raise TableMetadataError(f"{path} is not a JSON object")
    return found


def _json_line(line: str, commit: str) -> dict:
    if not line.strip():
        return {}
    try:
        found = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise TableMetadataError(f"{commit} is not valid Delta log JSON ({exc})") from None
    return found if isinstance(found, dict) else {}


def current_source(storage, folder: str, kind: str) -> str:
    """What the table's name reads now, from the listing (and a version hint): the current metadata
    file, or the latest version's commit file. It changes with every commit, so views and reused
    results made over an older snapshot are made again."""
    if kind == ICEBERG:
        return current_iceberg_metadata(storage, folder)
    log = f"{folder}/{DELTA_LOG_FOLDER}"
    commits = sorted(name for name in listed(storage, log) if _DELTA_COMMIT.fullmatch(name))
    if not commits:
        raise TableMetadataError(f"{storage.path(log)} holds no commit")
    return storage.path(log, commits[-1])


# The snapshots whose files were proven inside the lake, by (source, its storage version, snapshot option): the
# files beyond the source the proof read (an Iceberg manifest list and manifests), each with its version.
_checked: dict[tuple, tuple[tuple[str, tuple], ...]] = {}
_checked_lock = threading.Lock()
MAX_CHECKED = 1024


def checked_reader(con, lake, source: str) -> str | None:
    """The SQL that reads the table-format snapshot `source` (current_source's answer), once its files are
    proven inside the lake; None if `source` is no table format's (a Parquet file or pattern)."""
    folder, _, name = source.rpartition("/")
    table, _, parent = folder.rpartition("/")
    if parent == ICEBERG_METADATA_FOLDER and _ICEBERG_METADATA.fullmatch(name):
        check(con, lake, "iceberg_scan", source, None)
        return f"iceberg_scan({quote_literal(source)})"
    if parent == DELTA_LOG_FOLDER and _DELTA_COMMIT.fullmatch(name):
        version = int(name[: -len(".json")])
        check(con, lake, "delta_scan", table, version)
        return f"delta_scan({quote_literal(table)}, version => {version})"
    return None


def check(con, lake, function: str, path: str, snapshot: int | None) -> str:
    """Refuse unless the table-format read `function(path[, snapshot])` opens only files inside the lake;
    on a database without the extensions, database.NeedsTableFormats (the handler reopens it with them).
    What pins the read: the Iceberg metadata file, or the Delta version's commit file."""
    from .database import require_table_format  # the lake's storage imports database: imported at use

    require_table_format(con, FORMAT_FUNCTIONS[function])
    relative = path[len(lake.root) + 1:].rstrip("/")
    if FORMAT_FUNCTIONS[function] == ICEBERG:
        pinned = path if _ICEBERG_METADATA.fullmatch(path.rpartition("/")[2]) else \
            current_iceberg_metadata(lake.storage, relative)
    else:
        pinned = current_source(lake.storage, relative, DELTA) if snapshot is None else \
            lake.storage.path(relative, DELTA_LOG_FOLDER, f"{snapshot:020d}.json")
    if function == "iceberg_snapshots":
        return pinned  # reads the metadata file alone, which is in the lake
    # A Delta version is every commit (and checkpoint) up to it: an earlier one rewritten in place changes it,
    # so the proof is kept by the versions of the whole log (one listing), not of the version's own commit.
    versions = lake.storage.version_of(pinned) if FORMAT_FUNCTIONS[function] == ICEBERG else \
        hashlib.sha256(repr(lake.storage.versions_under(pinned.rpartition("/")[0])).encode()).hexdigest()
    key = (function, pinned, versions, snapshot)
    with _checked_lock:
        read = _checked.get(key)
    # Rewritten in place, a manifest list or manifest is another snapshot's: checked again.
    if read is not None and all(lake.storage.version_of(file) == version for file, version in read):
        return pinned
    if FORMAT_FUNCTIONS[function] == ICEBERG:
        read = check_iceberg(con, lake, pinned, snapshot)
    else:
        read = ()
        check_delta(con, lake, path.rstrip("/"), int(pinned.rpartition("/")[2][: -len(".json")]))
    with _checked_lock:
        if len(_checked) >= MAX_CHECKED:
            _checked.clear()
        _checked[key] = read
    return pinned
