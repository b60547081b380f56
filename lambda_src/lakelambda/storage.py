"""Where the lake's files are: a local folder or an S3 bucket, behind one interface.

The catalog (lake.py), the result store and result reuse speak of files by
their paths in the lake and ask a `LakeStorage` to move bytes, list folders and
tell versions; `LocalFolder` and `S3Bucket` each do it their storage's way.
Shared logic (paths, the listings' cache) is the base class's; a backend
implements a few storage methods, and the S3 client is passed in (the shape
of Powertools' idempotency persistence layers). Nothing outside this module
asks which storage a lake is on.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from typing import Callable, ClassVar, Iterator

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from . import database
from .errors import LakeUnavailable
from .sql import quote_literal

S3_SCHEME = "s3://"
# The lake's own bookkeeping (stored results, deploy packages); never a table.
INTERNAL_FOLDER = "_lakemagic"
# Where a local lake's files are finished before a rename puts them in place:
# inside the lake (a rename stays on one file system) but outside every table.
STAGING_FOLDER = f"{INTERNAL_FOLDER}/staging"
# A staged file older than this was left by a process that died mid-write.
STALE_STAGING_SECONDS = 3600
# How long a warm container trusts what it listed of an S3 lake: a new
# dataset written by anyone else becomes visible to it within this time.
CATALOG_TTL_SECONDS = 30.0
# The most pages of 1,000 keys a bookkeeping folder's listing reads.
LISTED_FILES_MAX_PAGES = 5
# One S3 request (DuckDB's or boto3's) is tried this many times at most.
S3_ATTEMPTS = 3
# The longest one S3 request may take: the default where the function's timeout is unknown.
S3_REQUEST_TIMEOUT_MAX_S = 30


def open_storage(root: str, s3=None, request_timeout_s: int = S3_REQUEST_TIMEOUT_MAX_S) -> "LakeStorage":
    """The storage of the lake at `root`: an `s3://bucket[/prefix]` (read with the boto3 client `s3`,
    by default one made as boto3 finds its settings) or a local folder."""
    root = root.rstrip("/")
    if not root:
        raise ValueError("the lake location is empty")
    if root.startswith(S3_SCHEME):
        return S3Bucket(root, s3, request_timeout_s)
    return LocalFolder(os.path.abspath(os.path.expanduser(root)))


class LakeStorage:
    """A lake's files. Paths are full (`root/...`); `relative` ones are below the root."""

    # How long a listing is trusted; 0: listed afresh every time.
    listing_ttl_s: ClassVar[float] = 0.0
    # Whether binding a file in DuckDB costs a request: a query's result is then held in the engine
    # and written from there (one bind), rather than streamed from the query into its file.
    binds_cost_requests: ClassVar[bool] = False
    # The DuckDB extensions a database needs to read it (database.load_database).
    extensions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str):
        self.root = root
        # What listings found, by what was listed: (when, what).
        self._listings: dict[tuple, tuple[float, object]] = {}
        self._listings_lock = threading.Lock()

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def prepare(self) -> None:
        """Clear what a process that died mid-write left behind."""

    def listed(self, what: tuple, list_now: Callable[[], object]):
        """`list_now()`, reused for listing_ttl_s: a warm query pays no LIST requests for the catalog."""
        if not self.listing_ttl_s:
            return list_now()
        now = time.monotonic()
        with self._listings_lock:
            cached = self._listings.get(what)
        if cached is not None and now - cached[0] < self.listing_ttl_s:
            return cached[1]
        found = list_now()
        with self._listings_lock:
            self._listings[what] = (now, found)
        return found

    def forget_listings(self) -> None:
        with self._listings_lock:
            self._listings.clear()

    # What each backend does its storage's way (paths are full, `relative` ones below the root):
    def parquet_files(self, con, folder: str) -> list[str]:
        """The names of the Parquet files directly in a lake folder."""
        raise NotImplementedError

    def folders(self, folder: str = "") -> list[str]:
        """The names of the folders directly in the lake (or in one of its folders)."""
        raise NotImplementedError

    def list_files(self, folder: str) -> dict[str, float]:
        """The files directly in a lake folder, by name, with their modification times (Unix time)."""
        raise NotImplementedError

    def files_under(self, folder: str) -> Iterator[tuple[str, int]]:
        """(path relative to the lake, bytes) of every file below a lake folder, at any depth."""
        raise NotImplementedError

    def put(self, local_path: str, relative: str) -> str:
        """Place a finished local file in the lake, atomically: readers see the old file or the new one."""
        raise NotImplementedError

    def put_empty(self, relative: str) -> None:
        """An empty file: a marker whose name says all (the reuse index's entries)."""
        raise NotImplementedError

    def writing(self, relative: str, scratch: str) -> contextlib.AbstractContextManager[str]:
        """Where DuckDB writes a file that must appear at `relative` whole or not at all: in place
        once the block ends without error, nothing of it left otherwise."""
        raise NotImplementedError

    def working_folder(self, folder: str, scratch: str) -> str:
        """Where files bound for a lake folder are written: that folder, or one in `scratch` to `put` from."""
        raise NotImplementedError

    def expire(self, folder: str, max_age_s: float) -> None:
        """Remove the files of a lake folder older than `max_age_s`."""
        raise NotImplementedError

    def read_range(self, path: str, start: int, length: int) -> bytes:
        """Bytes [start, start + length) of a file in the lake, or of a local file."""
        raise NotImplementedError

    def read_whole(self, path: str, limit: int) -> bytes | None:
        """A file of the lake, up to `limit` bytes and one more (so a larger one shows); None if it is not there."""
        return self.read_range(path, 0, limit + 1) if self.version_of(path) else None

    def version_of(self, path: str) -> tuple:
        """What identifies the file's current version; () if it is not there."""
        raise NotImplementedError

    def versions_under(self, path: str) -> tuple:
        """The versions of every file below the folder at `path`, sorted."""
        raise NotImplementedError

    def download_url(self, path: str, seconds: int) -> str:
        """Where whoever holds it can read the whole file for `seconds`."""
        raise NotImplementedError

    def attach(self, con: duckdb.DuckDBPyConnection, environment: dict, function_timeout_s: float | None) -> None:
        """Let a database being set up reach this storage (before its configuration is locked)."""


def _read_local(path: str, start: int, length: int) -> bytes:
    with open(path, "rb") as stored:
        stored.seek(start)
        return stored.read(length)


class LocalFolder(LakeStorage):
    """A lake in a folder: listed afresh every time, files put in place by a rename."""

    def prepare(self) -> None:
        """Remove what a process that died mid-write left in the staging folder."""
        self.expire(STAGING_FOLDER, STALE_STAGING_SECONDS)

    def parquet_files(self, con, folder: str) -> list[str]:
        directory = self.path(folder)
        return [name for name in os.listdir(directory) if name.endswith(".parquet")] if os.path.isdir(directory) else []

    def folders(self, folder: str = "") -> list[str]:
        directory = self.path(folder) if folder else self.root
        return [entry.name for entry in os.scandir(directory) if entry.is_dir()] if os.path.isdir(directory) else []

    def list_files(self, folder: str) -> dict[str, float]:
        directory = self.path(folder)
        if not os.path.isdir(directory):
            return {}
        return {entry.name: entry.stat().st_mtime for entry in os.scandir(directory) if entry.is_file()}

    def files_under(self, folder: str) -> Iterator[tuple[str, int]]:
        for directory, _, files in os.walk(self.path(folder)):
            for file in files:
                found = os.path.join(directory, file)
                yield os.path.relpath(found, self.root).replace(os.sep, "/"), os.path.getsize(found)

    def put(self, local_path: str, relative: str) -> str:
        """The file is copied into the staging folder first and renamed over the target, so no
        reader ever sees a partial file, even after a crash."""
        target = self.path(relative)
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

    def put_empty(self, relative: str) -> None:
        target = self.path(relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb"):
            pass

    @contextlib.contextmanager
    def writing(self, relative: str, scratch: str) -> Iterator[str]:
        """Finished in the scratch folder, then put in place."""
        written = os.path.join(scratch, f"materialize-{secrets.token_hex(8)}.parquet")
        try:
            yield written
            self.put(written, relative)
        finally:
            if os.path.exists(written):
                os.remove(written)

    def working_folder(self, folder: str, scratch: str) -> str:
        return self.path(folder)

    def expire(self, folder: str, max_age_s: float) -> None:
        directory = self.path(folder)
        os.makedirs(directory, exist_ok=True)
        cutoff = time.time() - max_age_s
        for entry in os.scandir(directory):
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                os.remove(entry.path)

    def read_range(self, path: str, start: int, length: int) -> bytes:
        return _read_local(path, start, length)

    def version_of(self, path: str) -> tuple:
        """Size, modification and change times (no tool sets the change time back, as `cp -p` does
        the modification time) and inode."""
        try:
            found = os.stat(path)
        except FileNotFoundError:
            return ()
        return (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino)

    def versions_under(self, path: str) -> tuple:
        files = (os.path.join(directory, file) for directory, _, names in os.walk(path) for file in names)
        return tuple(sorted((file, *self.version_of(file)) for file in files))

    def download_url(self, path: str, seconds: int) -> str:
        """The file itself: the notebook shares the machine."""
        return path


class S3Bucket(LakeStorage):
    """A lake in an S3 bucket (under a prefix): listings kept CATALOG_TTL_SECONDS, a file put
    whole by one PUT (atomic on S3), old results expired by the bucket's lifecycle rule.

    `s3` is the boto3 client for the raw byte moves DuckDB has no statement for; by default
    one is made as boto3 finds its settings, each request given up after `request_timeout_s`
    (see s3_request_timeout_s), when first needed: importing boto3 and making a client take
    about 200 ms of CPU, which a query over datasets, answered inline, never needs (nor is it
    made in the background: a Lambda of 2 GB has about one vCPU, which the query needs).
    """

    listing_ttl_s = CATALOG_TTL_SECONDS
    binds_cost_requests = True
    extensions = ("httpfs",)

    def __init__(self, root: str, s3=None, request_timeout_s: int = S3_REQUEST_TIMEOUT_MAX_S):
        super().__init__(root)
        self._s3 = s3
        self._s3_lock = threading.Lock()
        self._request_timeout_s = request_timeout_s

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

    def parquet_files(self, con, folder: str) -> list[str]:
        """Listed by DuckDB's glob, kept CATALOG_TTL_SECONDS."""
        pattern = quote_literal(self.path(folder, "*.parquet"))
        files = self.listed(("files", folder), lambda: [
            row[0] for row in con.execute(f"SELECT file FROM glob({pattern})").fetchall()])
        return [file.rpartition("/")[2] for file in files]

    def folders(self, folder: str = "") -> list[str]:
        return self.listed(("folders", folder), lambda: [
            common["Prefix"].rstrip("/").rpartition("/")[2]
            for page in self._pages(self.path(folder) if folder else self.root, Delimiter="/")
            for common in page.get("CommonPrefixes", [])])

    def list_files(self, folder: str) -> dict[str, float]:
        """At most LISTED_FILES_MAX_PAGES pages of 1,000 keys, kept CATALOG_TTL_SECONDS: what is
        written by others meanwhile, or beyond, is not seen (a bookkeeping folder only: a table's
        files are never looked up this way)."""
        limit = {"MaxItems": 1000 * LISTED_FILES_MAX_PAGES}
        return self.listed(("files with times", folder), lambda: {
            item["Key"].rpartition("/")[2]: item["LastModified"].timestamp()
            for page in self._pages(self.path(folder), Delimiter="/", PaginationConfig=limit)
            for item in page.get("Contents", [])})

    def files_under(self, folder: str) -> Iterator[tuple[str, int]]:
        _, root = split_s3_path(self.root)
        for page in self._pages(self.path(folder)):
            for entry in page.get("Contents", []):
                yield (entry["Key"][len(root) + 1:] if root else entry["Key"]), entry["Size"]

    def _pages(self, path: str, **options) -> Iterator[dict]:
        """The pages of a LIST of the keys below the folder at `path` (or the bucket's root)."""
        bucket, key = split_s3_path(path)
        with s3_errors(f"listing {path}"):
            yield from self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{key}/" if key else "", **options)

    def put(self, local_path: str, relative: str) -> str:
        target = self.path(relative)
        bucket, key = split_s3_path(target)
        with open(local_path, "rb") as body, s3_errors(f"writing {target}"):
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return target

    def put_empty(self, relative: str) -> None:
        target = self.path(relative)
        bucket, key = split_s3_path(target)
        with s3_errors(f"writing {target}"):
            self.s3.put_object(Bucket=bucket, Key=key, Body=b"")

    @contextlib.contextmanager
    def writing(self, relative: str, scratch: str) -> Iterator[str]:
        """In place: DuckDB writes it as one multipart upload, of which no part is visible before
        the last, and nothing passes the function's /tmp."""
        yield self.path(relative)

    def working_folder(self, folder: str, scratch: str) -> str:
        return scratch

    def expire(self, folder: str, max_age_s: float) -> None:
        """Nothing: the lifecycle rule on the results prefix expires them."""

    def read_range(self, path: str, start: int, length: int) -> bytes:
        if not path.startswith(self.root + "/"):  # a local copy of a lake file
            return _read_local(path, start, length)
        bucket, key = split_s3_path(path)
        with s3_errors(f"reading {path}"):
            answer = self.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
            return answer["Body"].read()

    def version_of(self, path: str) -> tuple:
        """ETag and size, from one HEAD."""
        bucket, key = split_s3_path(path)
        s3 = self.s3
        from botocore.exceptions import ClientError  # loaded with boto3, which made the client

        with s3_errors(f"checking {path}"):
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return ()  # the query reports the missing file
                raise
        return (head["ETag"], head["ContentLength"])

    def versions_under(self, path: str) -> tuple:
        """ETag and size of each key, one LIST per 1,000 keys."""
        return tuple(sorted((item["Key"], item["ETag"], item["Size"])
                            for page in self._pages(path) for item in page.get("Contents", [])))

    def download_url(self, path: str, seconds: int) -> str:
        """A GET URL presigned with the function's own role, so the notebook needs no S3 permission
        of its own and the transfer runs at S3's speed."""
        bucket, key = split_s3_path(path)
        with s3_errors(f"signing a download of {path}"):
            return self.s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds)

    def attach(self, con: duckdb.DuckDBPyConnection, environment: dict, function_timeout_s: float | None) -> None:
        """The execution role's credentials for httpfs, each DuckDB request bounded as boto3's are."""
        database.connect_to_s3(con, environment)
        database.close_s3_side_doors(con, s3_request_timeout_s(function_timeout_s), S3_ATTEMPTS - 1)


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
