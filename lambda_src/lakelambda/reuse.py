"""Answering a repeated query from the result it already has, as warehouses do (BigQuery's cached
results, Snowflake's result cache, Athena's query result reuse).

A result is found by its reuse key (reuse_key.py), which changes whenever an
input file does, and differs between reuse scopes: only callers who send the
same scope (a secret) are answered from each other's results (`scoped`). Two places hold results by key: this container's memory
(small inline results too, bounded), and, for stored results, an index in the
lake's results area that every container lists: an empty object named
`<key>.<result id>` under `_lakemagic/results/reuse/`, which expires with the
results (the lifecycle rule) and is never readable by queries (the sandbox
keeps them out of `_lakemagic/`). A result is handed out only while it has at
least half its stored life ahead, and only after it is opened again, so an
expired or deleted result is never named in an answer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from .errors import ResultNotFound
from .lake import Lake
from .protocol import RESULT_ID_PATTERN, View
from .results import RESULT_MAX_AGE_SECONDS, RESULTS_PREFIX, ResultStore, StoredResult
from .reuse_key import reuse_key

REUSE_PREFIX = f"{RESULTS_PREFIX}/reuse"
# A result is reused only while it has this long still to live, for paging and downloads.
REUSE_MAX_AGE_SECONDS = RESULT_MAX_AGE_SECONDS // 2
# What one container keeps in memory: the most recent results, their inline data bounded in bytes.
MEMORY_ENTRIES = 256
MEMORY_INLINE_BYTES = 64 * 1024 * 1024


class _Kept(NamedTuple):
    computed_at: float  # Unix time
    inline: StoredResult | None = None  # a small result, whole
    result_id: str | None = None  # a stored result, opened again when it is reused

    @property
    def inline_bytes(self) -> int:
        """What the entry holds in memory: a small result's whole file."""
        if self.inline is None or self.inline.inline_data is None:
            return 0
        return len(self.inline.inline_data)


class ResultReuse:
    def __init__(self, lake: Lake, results: ResultStore):
        self.lake = lake
        self.results = results
        self._memory: OrderedDict[str, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    def scoped(self, scope: str) -> "ScopedReuse":
        return ScopedReuse(self, scope)

    def prepare(self) -> None:
        """Drop index entries older than the results they name (on S3 the lifecycle rule does it)."""
        self.lake.storage.expire(REUSE_PREFIX, RESULT_MAX_AGE_SECONDS)

    def find(self, con, key: str) -> StoredResult | None:
        """The result kept under `key`, if it is still young enough and still there, with `reused_from` set."""
        with self._lock:
            kept = self._memory.get(key)
            if kept is not None:
                self._memory.move_to_end(key)
        if kept is None:
            kept = self._from_index(key)
        if kept is None or time.time() - kept.computed_at > REUSE_MAX_AGE_SECONDS:
            return None
        if kept.inline is not None:
            return kept.inline._replace(reused_from=kept.computed_at)
        assert kept.result_id is not None  # an entry holds a small result or a stored one's id
        try:
            if not self.lake.storage.version_of(self.results.lake_path(kept.result_id)):
                raise ResultNotFound(kept.result_id)  # this container's copy would serve pages, but no other's
            result = self.results.open(con, kept.result_id)
        except ResultNotFound:  # deleted early, or expired: the query runs again
            with self._lock:
                self._memory.pop(key, None)
            return None
        if result.info.result_bytes <= self.results.inline_bytes:
            return None  # stored by a handler with a lower inline limit: this one answers it whole
        return result._replace(reused_from=kept.computed_at)

    def remember(self, key: str, result: StoredResult) -> None:
        """Keep `result` under `key` here and, if it is stored, in the lake's index for every container."""
        if result.info.inline:
            kept = _Kept(time.time(), inline=result)
        else:
            self.lake.storage.put_empty(f"{REUSE_PREFIX}/{key}.{result.info.result_id}")
            kept = _Kept(time.time(), result_id=result.info.result_id)
        with self._lock:
            self._memory[key] = kept
            inline_bytes = sum(k.inline_bytes for k in self._memory.values())
            while len(self._memory) > MEMORY_ENTRIES or inline_bytes > MEMORY_INLINE_BYTES:
                _, dropped = self._memory.popitem(last=False)
                inline_bytes -= dropped.inline_bytes

    def _from_index(self, key: str) -> _Kept | None:
        """The newest index entry for `key`, as the lake's listing of the index shows it."""
        found = None
        for name, modified in self.lake.storage.list_files(REUSE_PREFIX).items():
            entry_key, _, result_id = name.partition(".")
            if entry_key == key and RESULT_ID_PATTERN.fullmatch(result_id) and (found is None or modified > found.computed_at):
                found = _Kept(modified, result_id=result_id)
        return found


class ScopedReuse(NamedTuple):
    """Reuse among the callers who share one scope: the results they kept, under keys keyed with it."""

    reuse: ResultReuse
    scope: str

    def key(self, lake: Lake, texts: tuple[str, ...], params: dict, views: tuple[View, ...],
            tables: dict[str, str | None]) -> str | None:
        return reuse_key(lake, texts, params, views, tables, self.scope)

    def find(self, con, key: str) -> StoredResult | None:
        return self.reuse.find(con, key)

    def remember(self, key: str, result: StoredResult) -> None:
        self.reuse.remember(key, result)
