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

import _duckdb as duckdb  # DuckDB's engine itself, without its package's Python (__init__.py)

from .format_calls import calls_table_formats
from .lake import GLOB_CHARACTERS, Lake, is_pattern
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
    if any(nondeterministic_parts(text) for text in texts) or any(calls_table_formats(text) for text in texts):
        return None  # a table format's folder has no one version to key on: such a call is run every time
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
    """What identifies the current version of each file (or of each file a pattern matches), as the
    lake's storage tells it (storage.LakeStorage.version_of). A pattern is answered for everything
    under the folder before its first wildcard (more than it matches: a change there costs a reuse,
    never a stale answer). Asked afresh each time: one HEAD per file, one LIST per 1,000 keys of a
    pattern's folder on S3; () for a file that is not there."""
    return {path: (lake.storage.versions_under(_folder_of(path)) if is_pattern(path) else lake.storage.version_of(path))
            for path in sorted(paths)}


def _folder_of(pattern: str) -> str:
    return pattern[: min(pattern.index(char) for char in GLOB_CHARACTERS if char in pattern)].rpartition("/")[0]
