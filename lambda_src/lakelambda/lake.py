"""Where the lake is, what its tables are called, and where results are kept.

A lake is a local folder or an `s3://bucket[/prefix]`. Its catalog is its
layout, so there is nothing to register:

    <lake>/dashboard/<name>.parquet      materialized views (win over the others)
    <lake>/dataset/<name>.parquet        single-file datasets
    <lake>/<name>/key=value/.../*.parquet  Hive-partitioned datasets
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading

from .protocol import DASHBOARD_FOLDER
from .sql import quote_identifier, quote_literal

DATASET_FOLDER = "dataset"
# The lake's own bookkeeping (stored results, deploy packages); never a table.
INTERNAL_FOLDER = "_lakemagic"
# A name the catalog may resolve: one path segment, no hidden or internal folders.
_CATALOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_RESERVED_FOLDERS = {DATASET_FOLDER, DASHBOARD_FOLDER}


class Lake:
    def __init__(self, root: str):
        root = root.rstrip("/")
        if not root:
            raise ValueError("the lake location is empty")
        self.is_s3 = root.startswith(S3_SCHEME)
        self.root = root if self.is_s3 else os.path.abspath(os.path.expanduser(root))

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def put(self, local_path: str, relative_path: str) -> str:
        """Place a finished local file in the lake, atomically: readers see the old file or the new one.

        S3 makes a single PUT atomic; a folder gets a hidden temporary file
        beside the target, renamed over it.
        """
        target = self.path(relative_path)
        if self.is_s3:
            bucket, key = split_s3_path(target)
            with open(local_path, "rb") as body:
                s3_client().put_object(Bucket=bucket, Key=key, Body=body)
            return target
        folder, name = os.path.split(target)
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            shutil.copyfile(local_path, temporary)
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return target

    def register_tables(self, con, names: set[str]) -> list[str]:
        """Create a temporary view for each of `names` that the lake holds; return those found.

        Only names the query mentions are looked up, so a lake with many
        datasets costs nothing for the datasets a query does not touch.
        """
        wanted = sorted(name for name in names if _CATALOG_NAME.match(name))
        if not wanted:
            return []
        single_files = {folder: self._parquet_stems(con, folder) for folder in (DASHBOARD_FOLDER, DATASET_FOLDER)}
        found = []
        for name in wanted:
            source = self._source_of(con, name, single_files)
            if source is not None:
                con.execute(f"CREATE TEMP VIEW {quote_identifier(name)} AS SELECT * FROM {source}")
                found.append(name)
        return found

    def _source_of(self, con, name: str, single_files: dict[str, set[str]]) -> str | None:
        for folder in (DASHBOARD_FOLDER, DATASET_FOLDER):
            if name in single_files[folder]:
                return f"read_parquet({quote_literal(self.path(folder, name + '.parquet'))})"
        if name not in _RESERVED_FOLDERS:
            pattern = self.path(name, "*=*", "**", "*.parquet")
            if con.execute(f"SELECT 1 FROM glob({quote_literal(pattern)}) LIMIT 1").fetchone() is not None:
                return f"read_parquet({quote_literal(pattern)}, hive_partitioning = true)"
        return None

    def _parquet_stems(self, con, folder: str) -> set[str]:
        """Names of the Parquet files directly in a lake folder: one listing per query."""
        if self.is_s3:
            pattern = quote_literal(self.path(folder, "*.parquet"))
            files = [row[0] for row in con.execute(f"SELECT file FROM glob({pattern})").fetchall()]
        else:
            directory = self.path(folder)
            files = os.listdir(directory) if os.path.isdir(directory) else []
        return {os.path.basename(file)[: -len(".parquet")] for file in files if file.endswith(".parquet")}


S3_SCHEME = "s3://"


def split_s3_path(path: str) -> tuple[str, str]:
    """`s3://bucket/key/...` as (bucket, key); the key has no leading or trailing slash."""
    bucket, _, key = path[len(S3_SCHEME) :].partition("/")
    return bucket, key.strip("/")


_s3_client = None
_s3_client_lock = threading.Lock()


def s3_client():
    """boto3 (which the Lambda runtime provides) for the raw byte moves DuckDB has no statement for."""
    global _s3_client
    with _s3_client_lock:
        if _s3_client is None:
            import boto3

            _s3_client = boto3.client("s3")
        return _s3_client


def warm_up_s3_client() -> None:
    """Import boto3 and make the client in the background: on a cold start that overlaps
    DuckDB's own setup and first query instead of adding a few hundred ms after them."""
    threading.Thread(target=s3_client, name="s3-client-warm-up", daemon=True).start()
