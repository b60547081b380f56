"""Where the lake is, what its tables are called, and how files are put into it.

A lake is a local folder or an `s3://bucket[/prefix]`. Its catalog is its
layout, so there is nothing to register; a name means the first of these
that exists (names compare without case):

    <lake>/dataset/<name>.parquet        single-file datasets
    <lake>/<name>/key=value/.../*.parquet  Hive-partitioned datasets
    <lake>/dashboard/<name>.parquet      materialized views
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
import time
from typing import NamedTuple

from .errors import LakeUnavailable
from .protocol import DASHBOARD_FOLDER, TABLE_KINDS, TableInfo
from .sql import quote_identifier, quote_literal

S3_SCHEME = "s3://"
DATASET_FOLDER = "dataset"
# The lake's own bookkeeping (stored results, deploy packages); never a table.
INTERNAL_FOLDER = "_lakemagic"
# Where a local lake's files are finished before a rename puts them in place:
# inside the lake (a rename stays on one file system) but outside every table.
STAGING_FOLDER = f"{INTERNAL_FOLDER}/staging"
# A staged file older than this was left by a process that died mid-write.
STALE_STAGING_SECONDS = 3600
# How long a warm container trusts what it listed of an S3 lake's catalog: a new
# dataset written by anyone else becomes visible to it within this time.
CATALOG_TTL_SECONDS = 30.0
# The most pages of 1,000 keys a bookkeeping folder's listing reads.
LISTED_FILES_MAX_PAGES = 5
# One S3 request (DuckDB's or boto3's) is tried this many times at most.
S3_ATTEMPTS = 3
# The longest one S3 request may take: the default where the function's timeout is unknown.
S3_REQUEST_TIMEOUT_MAX_S = 30
# A name the catalog may resolve: one path segment, no hidden or internal folders.
_CATALOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_RESERVED_FOLDERS = {DATASET_FOLDER, DASHBOARD_FOLDER}
SINGLE_FILE, PARTITIONED, MATERIALIZED_VIEW = TABLE_KINDS
# The characters that make a path a pattern for DuckDB's glob.
GLOB_CHARACTERS = frozenset("*?[]{}")


class Lake:
    """A lake's location and catalog. `s3` is the boto3 S3 client for an S3 lake's raw byte
    moves, which DuckDB has no statement for; by default one is made as boto3 finds its settings,
    each request given up after `request_timeout_s` (see s3_request_timeout_s)."""

    def __init__(self, root: str, s3=None, request_timeout_s: int = S3_REQUEST_TIMEOUT_MAX_S):
        root = root.rstrip("/")
        if not root:
            raise ValueError("the lake location is empty")
        self.is_s3 = root.startswith(S3_SCHEME)
        self.root = root if self.is_s3 else os.path.abspath(os.path.expanduser(root))
        self._s3 = s3
        self._s3_lock = threading.Lock()
        self._request_timeout_s = request_timeout_s
        # What S3 listings found, by what was listed: (when, what); local folders are listed every time.
        self._listings: dict[tuple, tuple[float, object]] = {}
        self._listings_lock = threading.Lock()
        # The catalog views register_tables made, by name: the source each reads.
        self._views: dict[str, str] = {}
        self._views_lock = threading.Lock()

    @property
    def s3(self):
        with self._s3_lock:
            if self._s3 is None:
                import boto3  # the Lambda runtime provides it
                from botocore.config import Config

                timeout = self._request_timeout_s
                # s3v4: download URLs are presigned with Signature Version 4, which every region takes.
                config = Config(connect_timeout=timeout, read_timeout=timeout, signature_version="s3v4",
                                retries={"mode": "standard", "total_max_attempts": S3_ATTEMPTS})
                self._s3 = boto3.client("s3", config=config)
            return self._s3

    def warm_up_s3(self) -> None:
        """Import boto3 and make the client in the background: on a cold start that overlaps
        DuckDB's own setup and first query instead of adding a few hundred ms after them."""
        threading.Thread(target=lambda: self.s3, name="s3-client-warm-up", daemon=True).start()

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def prepare(self) -> None:
        """On a local lake, remove what a process that died mid-write left in the staging folder."""
        if self.is_s3:
            return
        staging = self.path(STAGING_FOLDER)
        os.makedirs(staging, exist_ok=True)
        cutoff = time.time() - STALE_STAGING_SECONDS
        for entry in os.scandir(staging):
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                os.remove(entry.path)

    def put(self, local_path: str, relative_path: str) -> str:
        """Place a finished local file in the lake, atomically: readers see the old file or the new one.

        S3 makes a single PUT atomic; a folder gets the file copied into the
        staging folder first and renamed over the target, so no reader ever
        sees a partial file, even after a crash.
        """
        target = self.path(relative_path)
        if self.is_s3:
            bucket, key = split_s3_path(target)
            with open(local_path, "rb") as body, s3_errors(f"writing {target}"):
                self.s3.put_object(Bucket=bucket, Key=key, Body=body)
            if not relative_path.startswith(INTERNAL_FOLDER + "/"):
                self.forget_listings()  # this container changed the catalog: it sees the change at once
            return target
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.makedirs(self.path(STAGING_FOLDER), exist_ok=True)
        staged = self.path(STAGING_FOLDER, f"{secrets.token_hex(8)}.parquet")
        try:
            shutil.copyfile(local_path, staged)
            os.replace(staged, target)
        finally:
            if os.path.exists(staged):
                os.remove(staged)
        return target

    def put_empty(self, relative_path: str) -> None:
        """An empty file at `relative_path`: a marker whose name says all (the reuse index's entries)."""
        target = self.path(relative_path)
        if self.is_s3:
            bucket, key = split_s3_path(target)
            with s3_errors(f"writing {target}"):
                self.s3.put_object(Bucket=bucket, Key=key, Body=b"")
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb"):
            pass

    def listed_files(self, folder: str) -> dict[str, float]:
        """The files directly in a lake folder, by name, with their modification times (Unix time).

        On S3 listed at most every CATALOG_TTL_SECONDS and at most
        LISTED_FILES_MAX_PAGES pages of 1,000 keys: what is written by others
        meanwhile, or beyond, is not seen (a bookkeeping folder only: a table's
        files are never looked up this way).
        """
        if not self.is_s3:
            directory = self.path(folder)
            if not os.path.isdir(directory):
                return {}
            return {entry.name: entry.stat().st_mtime for entry in os.scandir(directory) if entry.is_file()}

        def list_now() -> dict[str, float]:
            bucket, prefix = split_s3_path(self.path(folder))
            found = {}
            with s3_errors(f"listing {self.path(folder)}"):
                pages = self.s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix + "/", Delimiter="/", PaginationConfig={"MaxItems": 1000 * LISTED_FILES_MAX_PAGES})
                for page in pages:
                    for item in page.get("Contents", []):
                        found[item["Key"][len(prefix) + 1:]] = item["LastModified"].timestamp()
            return found

        return self._listed(("files with times", folder), list_now)

    def find_tables(self, con, names: set[str]) -> dict[str, str | None]:
        """What each of `names` reads in the lake, by lower-case name: a file, a partitioned folder's
        pattern, or None (not in the lake). From the catalog's listings alone (kept CATALOG_TTL_SECONDS
        on S3): nothing is bound.

        Only names the query mentions are looked up, so a lake with many
        datasets costs nothing for the datasets a query does not touch.
        Names compare as DuckDB compares them, without regard to case.
        """
        wanted = {name.lower(): name for name in sorted(names) if _CATALOG_NAME.match(name)}
        if not wanted:
            return {}
        single_files = {folder: self._parquet_stems(con, folder) for folder in (DATASET_FOLDER, DASHBOARD_FOLDER)}
        return {name: self._source_of(con, name, spelled, single_files) for name, spelled in sorted(wanted.items())}

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
                elif self._views.get(name) == source and not refresh:
                    reused = True
                else:
                    reader = f"read_parquet({quote_literal(source)}{', hive_partitioning = true' if is_pattern(source) else ''})"
                    con.execute(f"CREATE OR REPLACE VIEW main.{quote_identifier(name)} AS SELECT * FROM {reader}")
                    self._views[name] = source
        return reused

    def tables(self, con) -> tuple[TableInfo, ...]:
        """Every table the lake holds, by name, as a query's name resolves (see _source_of).

        Files and bytes come from the listing, rows from the files' Parquet
        footers (parquet_file_metadata): nothing is scanned. On S3 the whole
        catalog is reused for CATALOG_TTL_SECONDS, as listings are.
        """
        return self._listed(("tables",), lambda: self._described(con, self._layout(con)))

    def table_names(self, con) -> list[str]:
        """The names of the lake's tables, from its listing alone (no file is opened)."""
        return [table.name for table in self._layout(con)]

    def _layout(self, con) -> list["_Listed"]:
        """Each table's name, kind and files, by lower-case name; a name means what _source_of resolves it to."""
        found: dict[str, _Listed] = {}
        for stem in self._parquet_stems(con, DATASET_FOLDER).values():
            path = self.path(DATASET_FOLDER, f"{stem}.parquet")
            found[stem.lower()] = _Listed(stem, SINGLE_FILE, path, (), [path])
        for folder in self._folders():
            if folder.lower() in found or folder.lower() in _RESERVED_FOLDERS:
                continue
            pattern = quote_literal(self._partition_pattern(folder))
            files = self._listed(("partition files", folder), lambda: sorted(
                row[0] for row in con.execute(f"SELECT file FROM glob({pattern})").fetchall()))
            if files:
                folders = files[0][len(self.path(folder)) + 1:].split("/")[:-1]
                keys = tuple(part.partition("=")[0] for part in folders if "=" in part)
                found[folder.lower()] = _Listed(folder, PARTITIONED, self.path(folder), keys, files)
        for stem in self._parquet_stems(con, DASHBOARD_FOLDER).values():
            path = self.path(DASHBOARD_FOLDER, f"{stem}.parquet")
            found.setdefault(stem.lower(), _Listed(stem, MATERIALIZED_VIEW, path, (), [path]))
        return [found[name] for name in sorted(found)]

    def _folders(self) -> list[str]:
        """The folders directly in the lake whose names a table may have."""
        if self.is_s3:
            bucket, key = split_s3_path(self.root)
            prefix = f"{key}/" if key else ""

            def list_now():
                with s3_errors(f"listing {self.root}"):
                    pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
                    return [common["Prefix"][len(prefix):].rstrip("/")
                            for page in pages for common in page.get("CommonPrefixes", [])]
            names = self._listed(("folders",), list_now)
        else:
            names = [entry.name for entry in os.scandir(self.root) if entry.is_dir()]
        return sorted(name for name in names if _CATALOG_NAME.match(name))

    @staticmethod
    def _described(con, layout: list["_Listed"]) -> tuple[TableInfo, ...]:
        """The tables with their rows and bytes, read from every file's footer in one statement."""
        files = [file for table in layout for file in table.files]
        footers = {}
        if files:
            listed = ", ".join(quote_literal(file) for file in files)
            footers = {name: (rows, size) for name, rows, size in con.execute(
                f"SELECT file_name, num_rows, file_size_bytes FROM parquet_file_metadata([{listed}])").fetchall()}
        return tuple(TableInfo(table.name, table.kind, table.location, table.keys, len(table.files),
                               sum(footers[file][1] for file in table.files), sum(footers[file][0] for file in table.files))
                     for table in layout)

    def dataset_named(self, con, name: str) -> str | None:
        """Where the lake keeps a dataset (a single file or a partitioned folder) called `name`, in any case.

        Listed afresh: this decides whether a write may take the name.
        """
        if not _CATALOG_NAME.match(name):
            return None
        self.forget_listings()
        files = self._parquet_stems(con, DATASET_FOLDER)
        if name.lower() in files:
            return self.path(DATASET_FOLDER, f"{files[name.lower()]}.parquet")
        return self.path(name) if self._is_partitioned(con, name) else None

    def partition_files(self, con, name: str) -> list[tuple[str, int]] | None:
        """The Parquet files of the Hive-partitioned table `name` as (path relative to the lake, bytes),
        sorted; None where the name means a single-file dataset, or no partitioned folder.

        Kept CATALOG_TTL_SECONDS on S3 like the catalog's listings.
        """
        if not _CATALOG_NAME.match(name) or name.lower() in self._parquet_stems(con, DATASET_FOLDER):
            return None
        if not self._is_partitioned(con, name):
            return None
        return self._listed(("partition sizes", name), lambda: sorted(self._files_under(name)))

    def _files_under(self, name: str):
        """(relative path, bytes) of each file `<name>/key=value/.../*.parquet` in the lake."""
        if self.is_s3:
            bucket, prefix = split_s3_path(self.path(name))
            _, root = split_s3_path(self.root)
            with s3_errors(f"listing {self.path(name)}"):
                for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
                    for entry in page.get("Contents", []):
                        relative = entry["Key"][len(root) + 1:] if root else entry["Key"]
                        if is_partition_file(relative):
                            yield relative, entry["Size"]
            return
        for folder, _, files in os.walk(self.path(name)):
            for file in files:
                relative = os.path.relpath(os.path.join(folder, file), self.root).replace(os.sep, "/")
                if is_partition_file(relative):
                    yield relative, os.path.getsize(os.path.join(folder, file))

    def _source_of(self, con, name: str, spelled: str, single_files: dict[str, dict[str, str]]) -> str | None:
        """What table `name` (lower case; `spelled` as the query spells it) reads, as a path or a
        partitioned folder's pattern: a dataset before a partitioned folder (named as spelled: S3 keys
        have a case) before a materialized view, so that nothing written under dashboard/ can change
        what a dataset's name means."""
        if name in single_files[DATASET_FOLDER]:
            return self.path(DATASET_FOLDER, single_files[DATASET_FOLDER][name] + ".parquet")
        if self._is_partitioned(con, spelled):
            return self._partition_pattern(spelled)
        if name in single_files[DASHBOARD_FOLDER]:
            return self.path(DASHBOARD_FOLDER, single_files[DASHBOARD_FOLDER][name] + ".parquet")
        return None

    def _partition_pattern(self, name: str) -> str:
        return self.path(name, "*=*", "**", "*.parquet")

    def _is_partitioned(self, con, name: str) -> bool:
        if name.lower() in _RESERVED_FOLDERS:
            return False
        pattern = quote_literal(self._partition_pattern(name))
        return self._listed(("partitioned", name), lambda: con.execute(
            f"SELECT 1 FROM glob({pattern}) LIMIT 1").fetchone() is not None)

    def _parquet_stems(self, con, folder: str) -> dict[str, str]:
        """The Parquet files directly in a lake folder, by lower-case name: {name: the file's own stem}."""
        if self.is_s3:
            pattern = quote_literal(self.path(folder, "*.parquet"))
            files = self._listed(("files", folder), lambda: [
                row[0] for row in con.execute(f"SELECT file FROM glob({pattern})").fetchall()])
        else:
            directory = self.path(folder)
            files = os.listdir(directory) if os.path.isdir(directory) else []
        stems = sorted(os.path.basename(file)[: -len(".parquet")] for file in files if file.endswith(".parquet"))
        return {stem.lower(): stem for stem in reversed(stems)}  # of names differing in case only, the first

    def _listed(self, what: tuple, list_now):
        """An S3 listing, reused for CATALOG_TTL_SECONDS: a warm query pays no LIST requests for the catalog."""
        if not self.is_s3:
            return list_now()
        now = time.monotonic()
        with self._listings_lock:
            cached = self._listings.get(what)
        if cached is not None and now - cached[0] < CATALOG_TTL_SECONDS:
            return cached[1]
        found = list_now()
        with self._listings_lock:
            self._listings[what] = (now, found)
        return found

    def forget_listings(self) -> None:
        with self._listings_lock:
            self._listings.clear()
        with self._views_lock:
            self._views.clear()  # made again on next use, over what the lake now holds


class _Listed(NamedTuple):
    """A table as the listing found it, before its files' footers are read."""

    name: str
    kind: str
    location: str
    keys: tuple[str, ...]
    files: list[str]


def is_pattern(path: str) -> bool:
    return any(char in GLOB_CHARACTERS for char in path)


def is_partition_file(relative: str) -> bool:
    """`<table>/key=value/.../<file>.parquet`: every folder below the table a key=value, no hidden file."""
    *folders, file = relative.split("/")
    return (len(folders) >= 2 and file.endswith(".parquet") and not file.startswith((".", "_"))
            and all(folder.partition("=")[0] and "=" in folder for folder in folders[1:]))


def s3_request_timeout_s(function_timeout_s: float | None) -> int:
    """Seconds one S3 request may take, so that a stalled S3 is given up within the function's time.

    Neither DuckDB nor boto3 can be interrupted in a blocked request (the
    handler's time budget does not stop one), so the attempts of one request
    together take at most half the function's timeout, where it is known.
    """
    if not function_timeout_s:
        return S3_REQUEST_TIMEOUT_MAX_S
    return int(max(1, min(S3_REQUEST_TIMEOUT_MAX_S, function_timeout_s / 2 / S3_ATTEMPTS)))


def split_s3_path(path: str) -> tuple[str, str]:
    """`s3://bucket/key/...` as (bucket, key); the key has no leading or trailing slash."""
    bucket, _, key = path[len(S3_SCHEME) :].partition("/")
    return bucket, key.strip("/")



@contextlib.contextmanager
def s3_errors(action: str):
    """boto3's failures as an answer that says what could not be done."""
    try:
        yield
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError  # loaded with boto3, which made the call

        if isinstance(exc, (BotoCoreError, ClientError)):
            raise LakeUnavailable(f"{action} failed: {exc}") from None
        raise
