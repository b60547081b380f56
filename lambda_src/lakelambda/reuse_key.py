"""The key a query's result is reused by: everything its answer depends on, keyed with the caller's scope.

Two requests share a key only if they carry the same reuse scope (a secret:
the key is an HMAC with it, so no key of one scope says anything about
another's) and ask the same query (its text, its parameters, the views it
carries) of the same lake, with the same DuckDB and result format, over input
files at the same versions (ETag and size on S3; size, modification and change
times and inode in a folder), read afresh for every key. A query whose answer
changes by itself (random(), now(), a sample: sql.nondeterministic_parts) has no key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import duckdb

from .lake import GLOB_CHARACTERS, Lake, is_pattern, s3_errors, split_s3_path
from .protocol import View
from .sql import literal_paths, nondeterministic_parts
from .values import encode_value

# Bumped whenever what a stored result holds changes, so no older result is handed out for a newer format.
RESULT_FORMAT = 1


def reuse_key(lake: Lake, texts: tuple[str, ...], params: dict, views: tuple[View, ...],
              tables: dict[str, str | None], scope: str) -> str | None:
    """The key, within the reuse `scope`, of a query whose checked statement and views' statements are
    `texts`, over the lake `tables` (Lake.find_tables), or None if its answer may differ from run to run.
    Costs the input files' version checks (see `versions`)."""
    if any(nondeterministic_parts(text) for text in texts):
        return None
    inside = lake.root + "/"
    paths = {source for source in tables.values() if source}.union(*(
        {path for path in literal_paths(text) if path.startswith(inside)} for text in texts))
    described = {
        "format": RESULT_FORMAT,
        "duckdb": duckdb.__version__,
        "lake": lake.root,
        "query": texts[0],
        "params": {name: encode_value(value) for name, value in params.items()},
        "views": [[view.name, view.sql] for view in views],
        "tables": sorted(tables.items(), key=str),
        "versions": sorted(versions(lake, paths).items()),
    }
    return hmac.new(scope.encode(), json.dumps(described, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def versions(lake: Lake, paths: set[str]) -> dict[str, tuple]:
    """What identifies the current version of each file (or of each file a pattern matches):
    S3's ETag and size, or a local file's size, modification and change times (no tool sets the
    change time back, as `cp -p` does the modification time) and inode. A pattern is
    answered for everything under the folder before its first wildcard (more than it matches:
    a change there costs a reuse, never a stale answer). Asked afresh each time: one HEAD
    per file, one LIST per 1,000 keys of a pattern's folder; () for a file that is not there."""
    return {path: (_listing_versions(lake, path) if is_pattern(path) else _file_version(lake, path))
            for path in sorted(paths)}


def _file_version(lake: Lake, path: str) -> tuple:
    if not lake.is_s3:
        try:
            found = os.stat(path)
        except FileNotFoundError:
            return ()
        return (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino)
    bucket, key = split_s3_path(path)
    s3 = lake.s3
    from botocore.exceptions import ClientError  # loaded with boto3, which made the client

    with s3_errors(f"checking {path}"):
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return ()  # the query reports the missing file
            raise
    return (head["ETag"], head["ContentLength"])


def _listing_versions(lake: Lake, pattern: str) -> tuple:
    folder = pattern[: min(pattern.index(char) for char in GLOB_CHARACTERS if char in pattern)].rpartition("/")[0]
    if not lake.is_s3:
        files = (os.path.join(directory, file) for directory, _, names in os.walk(folder) for file in names)
        return tuple(sorted((file, *_file_version(lake, file)) for file in files))
    bucket, prefix = split_s3_path(folder)
    found = []
    with s3_errors(f"listing {folder}"):
        for page in lake.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            found.extend((item["Key"], item["ETag"], item["Size"]) for item in page.get("Contents", []))
    return tuple(sorted(found))
