"""The lake's catalog: what its tables are called, over its storage (storage.py).

A lake is a local folder or an `s3://bucket[/prefix]`. Its catalog is its
layout, so there is nothing to register:

    <lake>/dataset/<name>.parquet          single-file datasets
    <lake>/<name>/key=value/.../*.parquet  Hive-partitioned datasets
    <lake>/<name>/metadata/*.metadata.json Iceberg tables (formats.py)
    <lake>/<name>/_delta_log/              Delta tables (formats.py)
    <lake>/dashboard/<name>.parquet        materialized views

Every name resolves through one resolver (`_objects`), without regard to
case, as DuckDB compares identifiers: to a dataset file before a table
folder (partitioned, Iceberg or Delta) before a materialized view, so
nothing written under dashboard/ can change what a dataset's name means.
Two tables of that first rank whose names differ only in case (two
datasets, two table folders of any kind, two views) make the name ambiguous: a query naming it is
refused with both named, nothing is picked, and the catalog lists both. A
materialized view may not take a name the lake has in any case
(run.materialize), so no caller can make a name mean something else.
"""

from __future__ import annotations

import re
import threading
from typing import NamedTuple

from . import formats
from .errors import AmbiguousName
from .protocol import DASHBOARD_FOLDER, TABLE_KINDS, TableFormat, TableInfo, TableKind
from .sql import quote_identifier, quote_literal
from .storage import S3_REQUEST_TIMEOUT_MAX_S, open_storage

DATASET_FOLDER = "dataset"
# A name the catalog may resolve: one path segment, no hidden or internal folders.
_CATALOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_RESERVED_FOLDERS = {DATASET_FOLDER, DASHBOARD_FOLDER}
SINGLE_FILE, PARTITIONED, MATERIALIZED_VIEW, ICEBERG, DELTA = TABLE_KINDS
# The resolver's order: a kind of a lower rank shadows the others; two tables of one rank are ambiguous.
_RANK = {SINGLE_FILE: 0, PARTITIONED: 1, ICEBERG: 1, DELTA: 1, MATERIALIZED_VIEW: 2}
# The characters that make a path a pattern for DuckDB's glob.
GLOB_CHARACTERS = frozenset("*?[]{}")


class LakeObject(NamedTuple):
    """A table the lake's layout holds: its name as stored, and where."""

    name: str
    kind: TableKind
    location: str  # the file, or the table's folder
    source: str  # what DuckDB reads: the file, the folder's pattern, or the table format's current metadata

    def described(self) -> str:
        return f"{self.name} ({self.kind}, {self.location})"


class Lake:
    """A lake's catalog over its storage (storage.open_storage: `s3` is the boto3 client of an S3 lake)."""

    def __init__(self, root: str, s3=None, request_timeout_s: int = S3_REQUEST_TIMEOUT_MAX_S):
        self.storage = open_storage(root, s3, request_timeout_s)
        self.root = self.storage.root
        # The catalog views register_tables made, by name: the source each reads.
        self._views: dict[str, str] = {}
        self._views_lock = threading.Lock()

    def path(self, *parts: str) -> str:
        return self.storage.path(*parts)

    def find_tables(self, con, names: set[str]) -> dict[str, str | None]:
        """What each of `names` reads in the lake, by lower-case name: a file, a partitioned folder's
        pattern, or None (not in the lake). From the catalog's listings alone (kept CATALOG_TTL_SECONDS
        on S3): nothing is bound. An ambiguous name is refused (AmbiguousName).

        Only names the query mentions are looked up, so a lake with many
        datasets costs nothing for the datasets a query does not touch.
        """
        wanted = {name.lower() for name in names if _CATALOG_NAME.fullmatch(name)}
        if not wanted:
            return {}
        found = self._objects(con, wanted)
        return {name: _only(name, found[name]).source if name in found else None for name in sorted(wanted)}

    def register_tables(self, con, tables: dict[str, str | None], refresh: bool = False) -> bool:
        """Make sure the database has a view for each of `tables` (find_tables' answer) that the lake
        holds; say whether any was reused.

        The views live in the database's main schema for the container's life
        and are made again only when their source changes (or `refresh`):
        making one binds its files, which on S3 costs a request. A caller's own
        views and CTEs are temporary and shadow them; callers cannot change them.
        """
        reused = False
        with self._views_lock:
            for name, source in sorted(tables.items()):
                if source is None:  # not in the lake (any more): the query reports the unknown name
                    if self._views.pop(name, None) is not None:
                        con.execute(f"DROP VIEW IF EXISTS main.{quote_identifier(name)}")
                    continue
                # A table format's snapshot is checked again whenever its file changed, even in place under
                # the same name, which leaves its view as it was (formats.check keeps it by the file's version).
                checked = formats.checked_reader(con, self, source)
                if self._views.get(name) == source and not refresh:
                    reused = True
                else:
                    reader = checked or (
                        f"read_parquet({quote_literal(source)}{', hive_partitioning = true' if is_pattern(source) else ''})")
                    con.execute(f"CREATE OR REPLACE VIEW main.{quote_identifier(name)} AS SELECT * FROM {reader}")
                    self._views[name] = source
        return reused

    def tables(self, con) -> tuple[TableInfo, ...]:
        """Every table the lake holds, as its name resolves: a shadowed materialized view is not
        listed, and the tables of an ambiguous name all are, under their own names.

        Files and bytes come from the listing, rows from the files' Parquet
        footers (parquet_file_metadata): nothing is scanned. On S3 the whole
        catalog is reused for CATALOG_TTL_SECONDS, as listings are.
        """
        return self.storage.listed(("tables",), lambda: self._described(con, [
            found for objects in self._objects(con).values() for found in objects]))

    def table_names(self, con) -> list[str]:
        """The names of the lake's tables, from its listing alone (no file is opened)."""
        return [found.name for objects in self._objects(con).values() for found in objects]

    def names_taken(self, con, name: str, relative_path: str) -> list[LakeObject]:
        """The lake's tables that `name` (in any case) resolves to, but the file at `relative_path` itself.

        Listed afresh: this decides whether a write may take the name.
        """
        if not _CATALOG_NAME.fullmatch(name):
            return []
        self.forget_listings()
        return [found for found in self._objects(con, {name.lower()}).get(name.lower(), [])
                if found.location != self.path(relative_path)]

    def partition_files(self, con, name: str) -> list[tuple[str, int]] | None:
        """The Parquet files of the Hive-partitioned table `name` as (path relative to the lake, bytes),
        sorted; None where the name means a single-file table or nothing, or is not spelled as the
        folder is (a task names its files by the folder, whose case S3 keys keep: tasks.py; the
        query then runs whole). Kept CATALOG_TTL_SECONDS on S3."""
        if not _CATALOG_NAME.fullmatch(name):
            return None
        objects = self._objects(con, {name.lower()}).get(name.lower())
        if not objects or _only(name.lower(), objects).kind != PARTITIONED or objects[0].name != name:
            return None
        folder = objects[0].name
        return self.storage.listed(("partition sizes", folder), lambda: sorted(
            (relative, size) for relative, size in self.storage.files_under(folder) if is_partition_file(relative)))

    def table_format(self, con, name: str) -> TableFormat | None:
        """ICEBERG or DELTA where `name` means a table of that format, else None (from the listing)."""
        if not _CATALOG_NAME.fullmatch(name):
            return None
        objects = self._objects(con, {name.lower()}).get(name.lower(), [])
        kind = objects[0].kind if objects else None
        return kind if kind == "iceberg" or kind == "delta" else None

    def forget_listings(self) -> None:
        self.storage.forget_listings()
        with self._views_lock:
            self._views.clear()  # made again on next use, over what the lake now holds

    def _objects(self, con, wanted: set[str] | None = None) -> dict[str, list[LakeObject]]:
        """The one resolver: what each lower-case name (of `wanted` only, if given) resolves to, the
        tables of the first kind that has it (datasets, partitioned folders, materialized views), in
        order of name; more than one is an ambiguous name."""
        found: dict[str, list[LakeObject]] = {}

        def add(name: str, kind: TableKind, location: str, source: str) -> None:
            if _CATALOG_NAME.fullmatch(name) and (wanted is None or name.lower() in wanted):
                named = found.setdefault(name.lower(), [])
                if not named or _RANK[named[0].kind] == _RANK[kind]:  # a kind further up the order shadows this one
                    named.append(LakeObject(name, kind, location, source))

        for stem in self._stems(con, DATASET_FOLDER):
            path = self.path(DATASET_FOLDER, f"{stem}.parquet")
            add(stem, SINGLE_FILE, path, path)
        if wanted is not None and wanted <= found.keys():
            # Every name is a dataset, which shadows a folder or view of its name: the lake's folders need no
            # listing (on S3 the one LIST made with boto3, whose import and client are 200 ms of a cold start).
            return {name: found[name] for name in sorted(found)}
        for folder in sorted(self.storage.folders()):
            shadowed = any(named.kind == SINGLE_FILE for named in found.get(folder.lower(), ()))
            if (wanted is None or folder.lower() in wanted) and not shadowed and self._is_table_folder(folder):
                kind = self.storage.listed(("format", folder), lambda: formats.format_of(self.storage, folder))
                if kind is not None:
                    add(folder, kind, self.path(folder), self.storage.listed(
                        ("current", folder), lambda: formats.current_source(self.storage, folder, kind)))
                elif self._is_partitioned(con, folder):
                    add(folder, PARTITIONED, self.path(folder), self._partition_pattern(folder))
        for stem in self._stems(con, DASHBOARD_FOLDER):
            path = self.path(DASHBOARD_FOLDER, f"{stem}.parquet")
            add(stem, MATERIALIZED_VIEW, path, path)
        return {name: found[name] for name in sorted(found)}

    def _described(self, con, objects: list[LakeObject]) -> tuple[TableInfo, ...]:
        """The tables with their keys, rows and bytes, every file's footer read in one statement."""
        snapshots = {found: formats.snapshot(con, self.storage, found.name, found.kind)
                     for found in objects if found.kind in (ICEBERG, DELTA)}
        files = {found: self._files_of(con, found) for found in objects if found not in snapshots}
        listed = sorted({file for table in files.values() for file in table})
        footers = {}
        if listed:
            footers = {name: (rows, size) for name, rows, size in con.execute(
                "SELECT file_name, num_rows, file_size_bytes FROM parquet_file_metadata(["
                + ", ".join(quote_literal(file) for file in listed) + "])").fetchall()}
        return tuple(TableInfo(found.name, found.kind, snapshots[found].location, snapshots[found].partition_keys,
                               snapshots[found].files, snapshots[found].bytes, snapshots[found].rows,
                               snapshots[found].version) if found in snapshots else
                     TableInfo(found.name, found.kind, found.location, self._keys(found, files[found]),
                               len(files[found]), sum(footers[file][1] for file in files[found]),
                               sum(footers[file][0] for file in files[found]))
                     for found in objects)

    def _files_of(self, con, found: LakeObject) -> list[str]:
        if found.kind != PARTITIONED:
            return [found.source]
        pattern = quote_literal(found.source)
        return self.storage.listed(("partition files", found.name), lambda: sorted(
            row[0] for row in con.execute(f"SELECT file FROM glob({pattern})").fetchall()))

    def _keys(self, found: LakeObject, files: list[str]) -> tuple[str, ...]:
        if found.kind != PARTITIONED or not files:
            return ()
        folders = files[0][len(found.location) + 1:].split("/")[:-1]
        return tuple(part.partition("=")[0] for part in folders if "=" in part)

    def _partition_pattern(self, folder: str) -> str:
        return self.path(folder, "*=*", "**", "*.parquet")

    def _is_table_folder(self, folder: str) -> bool:
        return folder.lower() not in _RESERVED_FOLDERS and bool(_CATALOG_NAME.fullmatch(folder))

    def _is_partitioned(self, con, folder: str) -> bool:
        pattern = quote_literal(self._partition_pattern(folder))
        return self.storage.listed(("partitioned", folder), lambda: con.execute(
            f"SELECT 1 FROM glob({pattern}) LIMIT 1").fetchone() is not None)

    def _stems(self, con, folder: str) -> list[str]:
        """The names of the Parquet files directly in a lake folder, without `.parquet`, sorted."""
        return sorted(name[: -len(".parquet")] for name in self.storage.parquet_files(con, folder))


def _only(name: str, objects: list[LakeObject]) -> LakeObject:
    """The one object a name means; two whose names differ only in case are refused, both named."""
    if len(objects) > 1:
        raise AmbiguousName(f"the name {name} is ambiguous: the lake has "
                            f"{' and '.join(found.described() for found in objects)}, whose names differ only in "
                            "case, and names compare without case (as DuckDB's do); rename or remove all but one")
    return objects[0]


def is_pattern(path: str) -> bool:
    return any(char in GLOB_CHARACTERS for char in path)


def is_partition_file(relative: str) -> bool:
    """`<table>/key=value/.../<file>.parquet`: every folder below the table a key=value, no hidden file."""
    *folders, file = relative.split("/")
    return (len(folders) >= 2 and file.endswith(".parquet") and not file.startswith((".", "_"))
            and all(folder.partition("=")[0] and "=" in folder for folder in folders[1:]))
