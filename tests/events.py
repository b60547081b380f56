"""Protocol events as the wire carries them, for tests that act as the notebook's end of the wire.

The notebook itself builds request dataclasses and its engine encodes them; a test that sends an
event straight to a handler, or alters one on its way, builds it here, through the same encoder.
"""

from __future__ import annotations

from typing import Any

from lakelambda.protocol import (MAX_PART_BYTES, DeriveRequest, DownloadRequest, EstimateRequest, MaterializeRequest,
                                 PageRequest, PartitionsRequest, PartRequest, ProfileRequest, QueryRequest,
                                 SortKey, SummarizeRequest, TablesRequest, TaskRequest, View, encode)


def query_request(sql: str, params: dict[str, Any], page_size: int, views: tuple[View, ...] = (),
                  reuse: bool = True, fanout_tables: tuple[str, ...] = (), reuse_scope: str | None = None) -> dict:
    """The event that asks the handler to run `sql` and return its first page.

    `views` are the notebook's views the query uses, in dependency order.
    `reuse=False` makes the query run even if its result over the same inputs is stored;
    with `reuse`, only results of requests with the same `reuse_scope` answer it (none without one).
    `fanout_tables`: answer instead with the listing of those of them that are Hive-partitioned, if any.
    """
    return encode(QueryRequest(sql, dict(params), page_size, tuple(views), reuse=reuse, reuse_scope=reuse_scope,
                               fanout_tables=tuple(fanout_tables)))


def materialize_request(sql: str, path: str, views: tuple[View, ...] = ()) -> dict:
    """The event that asks the handler to write the result of `sql` to `path` in the lake, atomically."""
    return encode(MaterializeRequest(sql, path, tuple(views)))


def page_request(result_id: str, offset: int, limit: int) -> dict:
    """The event that asks for rows [offset, offset + limit) of a stored result."""
    return encode(PageRequest(result_id, offset, limit))


def part_request(result_id: str, start: int, length: int = MAX_PART_BYTES) -> dict:
    """The event that asks for bytes [start, start + length) of a stored result's Parquet file."""
    return encode(PartRequest(result_id, start, length))


def download_request(result_id: str) -> dict:
    """The event that asks where the whole stored result can be fetched from, as one file."""
    return encode(DownloadRequest(result_id))


def tables_request() -> dict:
    """The event that asks for the lake's catalog."""
    return encode(TablesRequest())


def derive_request(result_id: str, sort: tuple[SortKey, ...], filter: str | None, page_size: int) -> dict:
    """The event that asks for a stored result sorted by `sort` and cut to the rows where `filter` holds."""
    return encode(DeriveRequest(result_id, tuple(sort), filter, page_size))


def profile_request(result_id: str, column: str) -> dict:
    """The event that asks what one column of a stored result holds."""
    return encode(ProfileRequest(result_id, column))


def summarize_request(result_id: str) -> dict:
    """The event that asks for every column of a stored result at a glance."""
    return encode(SummarizeRequest(result_id))


def partitions_request(tables: list[str]) -> dict:
    """The event that asks which of `tables` are Hive-partitioned, with their files and key types."""
    return encode(PartitionsRequest(tuple(tables)))


def task_request(sql: str, params: dict[str, Any], page_size: int, table: str, files: list[str],
                 key_types: dict[str, str], views: tuple[View, ...] = ()) -> dict:
    """The event that runs one fan-out task: `sql`, reading `table` as just `files`."""
    return encode(TaskRequest(sql, dict(params), page_size, table, tuple(files), tuple(key_types.items()),
                              tuple(views)))


def estimate_request(sql: str, params: dict[str, Any], views: tuple[View, ...] = ()) -> dict:
    """The event that asks what `sql` would read, from the lake's listings and footers, running nothing of it."""
    return encode(EstimateRequest(sql, dict(params), tuple(views)))
