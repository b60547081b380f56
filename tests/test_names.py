"""Lake names resolve without case, through one resolver, on a local lake and on the S3 server.

A name means a dataset file before a partitioned folder before a materialized
view, whatever the case of each; two tables of one kind whose names differ
only in case are refused, both named; a materialized view may not take a name
the lake has in any case; the catalog shows what each name resolves to.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import boto3
import duckdb
import pytest

from lakelambda import protocol
from lakelambda.handler import LakeHandler
from lakemagic import client
import events

# Each table answers `who` with its own kind, so a query shows which table a name reached.
KINDS = ("file", "partitioned", "materialized view")
# Every spelling of one name a query may use: DuckDB's identifiers compare without case, quoted or not.
SPELLINGS = ("partitioned", "Partitioned", "PARTITIONED", '"partitioned"', '"Partitioned"', '"PARTITIONED"')


def plant(lake: Path, kind: str, name: str) -> None:
    """A table of `kind` called `name` (in that case), written straight into the lake's folder."""
    folder = {"file": lake / "dataset", "partitioned": lake / name, "materialized view": lake / "dashboard"}[kind]
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    if kind == "partitioned":
        con.execute(f"COPY (SELECT '{kind}' AS who, range AS day FROM range(2)) TO '{folder}' "
                    "(FORMAT parquet, PARTITION_BY (day), OVERWRITE_OR_IGNORE)")
    else:
        con.execute(f"COPY (SELECT '{kind}' AS who) TO '{folder / name}.parquet' (FORMAT parquet)")
    con.close()


@pytest.fixture(params=["local", "s3"])
def make_lake(request, tmp_path):
    """make_lake([(kind, name), ...]): a handler over a lake holding those tables, in a folder or a fresh bucket."""
    handlers = []

    def make(tables: list[tuple[str, str]]) -> LakeHandler:
        folder = tmp_path / f"lake{len(handlers)}"
        folder.mkdir()
        for kind, name in tables:
            plant(folder, kind, name)
        root = str(folder)
        if request.param == "s3":
            request.getfixturevalue("aws_environment")
            bucket = f"names-{secrets.token_hex(6)}"
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=bucket)
            for path in folder.rglob("*.parquet"):
                s3.upload_file(str(path), bucket, path.relative_to(folder).as_posix())
            root = f"s3://{bucket}"
        handlers.append(LakeHandler(root))
        return handlers[-1]

    yield make
    for handler in handlers:
        handler.close()


def call(handler, request: dict):
    return protocol.parse_answer(json.loads(json.dumps(handler(json.loads(json.dumps(request)), None))))


def rows_of(handler, sql: str) -> list[tuple]:
    answer = call(handler, events.query_request(sql, {}, 50))
    assert isinstance(answer, protocol.PageAnswer), answer
    frame = client.Page(answer.page.offset, answer.page.row_count, answer.page.data, answer.result.columns).frame()
    return [tuple(row) for row in frame.itertuples(index=False)]


def catalog(handler) -> list[tuple[str, str, str]]:
    """(name, kind, location) of every table, from the tables operation, after checking SHOW TABLES says the same."""
    answer = call(handler, events.tables_request())
    assert isinstance(answer, protocol.TablesAnswer), answer
    listed = sorted((table.name, table.kind, table.location) for table in answer.tables)
    shown = sorted((name, kind, location) for name, kind, _, _, _, _, _, location in rows_of(handler, "SHOW TABLES"))
    assert shown == listed
    return listed


def error_of(handler, request: dict) -> protocol.ErrorAnswer:
    answer = call(handler, request)
    assert isinstance(answer, protocol.ErrorAnswer), answer
    return answer


# Of two kinds, the first is the one a name means; each pair in both case arrangements.
SHADOWING = [(first, second, cased) for first, second in (("file", "partitioned"), ("file", "materialized view"),
                                                          ("partitioned", "materialized view"))
             for cased in ("first lower", "second lower")]


@pytest.mark.parametrize("first, second, cased", SHADOWING)
def test_a_name_means_the_same_table_in_every_case_and_quoting(make_lake, first, second, cased):
    names = ("partitioned", "Partitioned") if cased == "first lower" else ("Partitioned", "partitioned")
    handler = make_lake([(first, names[0]), (second, names[1])])
    for spelling in SPELLINGS:
        assert rows_of(handler, f"SELECT DISTINCT who FROM {spelling}") == [(first,)], spelling
    listed = catalog(handler)
    assert [(name, kind) for name, kind, _ in listed] == [(names[0], first)]  # what the name reaches, nothing else
    assert listed[0][2].rstrip("/").endswith({"file": f"dataset/{names[0]}.parquet", "partitioned": names[0]}[first])


@pytest.mark.parametrize("kind", KINDS)
def test_two_tables_of_a_kind_whose_names_differ_in_case_are_refused_and_both_listed(make_lake, kind):
    handler = make_lake([(kind, "Partitioned"), (kind, "partitioned")])
    for spelling in SPELLINGS:
        error = error_of(handler, events.query_request(f"SELECT * FROM {spelling}", {}, 50))
        assert error.type == "AmbiguousName", error
        assert "Partitioned (" in error.message and "partitioned (" in error.message, error.message
    assert [(name, found) for name, found, _ in catalog(handler)] == [("Partitioned", kind), ("partitioned", kind)]


# Each kind of table called `partitioned`, and a view's name in each case but the one file a view may replace.
TAKEN = [(kind, taken) for kind in KINDS for taken in ("partitioned", "Partitioned", "PARTITIONED")
         if (kind, taken) != ("materialized view", "partitioned")]


@pytest.mark.parametrize("kind, taken", TAKEN)
def test_a_view_may_not_take_a_name_the_lake_has_in_any_case(make_lake, kind, taken):
    handler = make_lake([(kind, "partitioned")])
    error = error_of(handler, events.materialize_request("SELECT 'squatter' AS who", f"dashboard/{taken}.parquet"))
    assert error.type == "NameTaken" and f"partitioned ({kind}, " in error.message, error
    for spelling in SPELLINGS:
        assert rows_of(handler, f"SELECT DISTINCT who FROM {spelling}") == [(kind,)], spelling
    assert [(name, found) for name, found, _ in catalog(handler)] == [("partitioned", kind)]


def test_a_fan_out_reads_the_folder_its_name_resolves_to(make_lake):
    """The fan-out's listing resolves as a query does, so a view planted under the name in another case
    changes nothing; under the folder's own spelling only, since a task names the folder's files (in
    another spelling the query runs whole, and answers the folder's rows)."""
    handler = make_lake([("partitioned", "partitioned"), ("materialized view", "Partitioned")])
    for spelling in ("Partitioned", "PARTITIONED"):
        assert call(handler, events.partitions_request([spelling])).tables == (), spelling
    answer = call(handler, events.partitions_request(["partitioned"]))
    assert isinstance(answer, protocol.PartitionsAnswer), answer
    (table,) = answer.tables
    assert sorted(file.path.split("/")[1] for file in table.files) == ["day=0", "day=1"]
    task = events.task_request("SELECT DISTINCT who FROM PARTITIONED", {}, 50, "partitioned",
                                 [file.path for file in table.files], {c.name: c.type for c in table.key_types})
    answered = call(handler, task)
    assert isinstance(answered, protocol.PageAnswer), answered
    frame = client.Page(answered.page.offset, answered.page.row_count, answered.page.data, answered.result.columns).frame()
    assert frame["who"].tolist() == ["partitioned"]


@pytest.mark.parametrize("sql, expected", [
    ("WITH trips AS (SELECT who || '!' AS who FROM trips) SELECT who FROM trips", [("file!",)]),
    ("SELECT t.who, s.n FROM trips AS t, (WITH trips AS (SELECT 1 AS n) SELECT n FROM trips) AS s", [("file", 1)]),
    ("WITH later AS (SELECT who FROM trips), trips AS (SELECT 'cte' AS who) SELECT who FROM later", [("file",)]),
])
def test_a_with_query_named_after_a_lake_table_leaves_the_tables_other_reads_to_the_lake(make_lake, sql, expected):
    """Inside its own body, outside its scope, or before it is defined, a CTE's name means the lake's table:
    a fresh container looks it up (it answered 'no table trips in the lake'; a warm one read the view it kept,
    left out of the reuse key, so a reused answer outlived a rewritten dataset)."""
    assert rows_of(make_lake([("file", "trips")]), sql) == expected
