"""The wire protocol declared once: every message round-trips, the JSON is what older ends send and read,
every field of every answer is checked on arrival, and no event makes the handler fail outside its answer."""

from __future__ import annotations

import copy
import json
import logging

import base64

import boto3
import duckdb
import pytest

from lakelambda import protocol
from lakelambda.errors import ProtocolError
from lakelambda.handler import LakeHandler
from lakemagic import client
from lakemagic.engines import Reply
from lakemagic.errors import EngineError
from lakemagic.fanout import runner
import events
from forged import Forged

RESULT_ID = "R" * 32
PAGE_DATA = "UEFSMQ=="  # any base64: the codec checks its alphabet, the decoder its content
STATS = protocol.HandlerStats(1.5, True, 3, 8, "1.5.5", "x86_64")
RESULT = protocol.ResultInfo(RESULT_ID, (protocol.Column("n", "BIGINT"), protocol.Column("s", "VARCHAR")), 3, 900)
LISTING = protocol.PartitionedTable("events", (protocol.Column("day", "DATE"),), (
    protocol.PartitionFile("events/day=2019-04-01/data_0.parquet", 100, (("day", "2019-04-01"),)),
    protocol.PartitionFile("events/day=2019-04-02/data_0.parquet", 120, (("day", "2019-04-02"),))))

ANSWERS = {
    "page": protocol.PageAnswer(RESULT, protocol.Page(0, 3, PAGE_DATA), STATS, reused_from=1_765_000_000.5,
                                table_formats=(("rides", "delta", "its log has deletion vectors"),)),
    "part": protocol.PartAnswer(RESULT, protocol.Part(0, 5, "UEFSMQA="), STATS),
    "download": protocol.DownloadAnswer(
        RESULT, f"https://lake.s3.amazonaws.com/_lakemagic/results/{RESULT_ID}.parquet?X-Amz-Expires=900", 900, STATS),
    "profile": protocol.ProfileAnswer(RESULT, protocol.Profile(
        "n", "BIGINT", 3, 0, 3, "1", "3", "2.0", "histogram", (protocol.Bar("1 – 2", 2), protocol.Bar("2 – 3", 1))),
        STATS),
    "summaries": protocol.SummariesAnswer(RESULT, 3, False, (
        protocol.Summary("n", 0, "histogram", (protocol.Bar("1 – 2", 2), protocol.Bar("2 – 3", 1))),
        protocol.Summary("s", 1, "top", (protocol.Bar("a", 2),))), STATS),
    "materialized": protocol.MaterializeAnswer("s3://lake/dashboard/by_day.parquet", 30, 4096, STATS),
    "tables": protocol.TablesAnswer((protocol.TableInfo(
        "events", "iceberg", "s3://lake/events/metadata/00001-a.metadata.json", ("day",), 2, 220, 3, "42"),), STATS),
    "partitioned_tables": protocol.PartitionsAnswer((LISTING,), STATS),
    "partitioned_tables+formats": protocol.PartitionsAnswer((), STATS, (("rides", "delta", "it maps column names"),), (
        protocol.FormatTable("trips", "iceberg", "trips/metadata/00002-a1b2.metadata.json", (
            protocol.Column("day", "DATE"), protocol.Column("n", "BIGINT")), (
            protocol.FormatFile("trips/data/day_month=2019-04/00000-0-a.parquet", 100, (("day", "month", "591"),),
                                {"day": "2019-04-02", "n": "-3"}, {"day": "2019-04-29", "n": "17.25"}),
            protocol.FormatFile("trips/data/day_month=null/00000-0-b.parquet", 80, (("day", "month", None),)))),)),
    "estimate": protocol.EstimateAnswer((protocol.SourceEstimate(
        "events", True, 2, 1, 220, 90, 2, 1, 3, 2),), 2048, STATS),
    "error": protocol.ErrorAnswer("BinderException", "Referenced column \"x\" not found", 7, STATS),
}

REQUESTS = [
    protocol.QueryRequest("SELECT $a AS a", {"a": 1}, 10, (protocol.View("v", "SELECT 1"),), False, ("events",)),
    protocol.MaterializeRequest("SELECT 1", "dashboard/one.parquet"),
    protocol.PageRequest(RESULT_ID, 50, 50),
    protocol.PartRequest(RESULT_ID, 0, 1024),
    protocol.DownloadRequest(RESULT_ID),
    protocol.TablesRequest(),
    protocol.PartitionsRequest(("events",)),
    protocol.TaskRequest("SELECT count(*) FROM events", {}, 100, "events", ("events/day=2019-04-01/data_0.parquet",),
                         (("day", "DATE"),)),
    protocol.TaskRequest("SELECT count(*) FROM trips", {}, 100, "trips", ("trips/data/00000-0-a.parquet",), (),
                         pin="trips/metadata/00002-a1b2.metadata.json"),
    protocol.DeriveRequest(RESULT_ID, (protocol.SortKey("n", True),), "n > 1", 50),
    protocol.ProfileRequest(RESULT_ID, "n"),
    protocol.SummarizeRequest(RESULT_ID),
    protocol.EstimateRequest("SELECT count(*) FROM events WHERE day = $d", {"d": "2019-04-01"},
                             (protocol.View("v", "SELECT 1"),)),
]


def crossed(message):
    """A message's JSON after a real round trip through JSON text, as Lambda carries it."""
    return json.loads(json.dumps(protocol.encode(message)))


# --- declared once -------------------------------------------------------------------


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda request: request.op)
def test_every_request_round_trips(request_):
    assert protocol.parse_request(crossed(request_)) == request_


@pytest.mark.parametrize("kind", ANSWERS)
def test_every_answer_round_trips(kind):
    assert protocol.parse_answer(crossed(ANSWERS[kind])) == ANSWERS[kind]


def test_the_json_is_what_older_ends_send_and_read():
    """The wire format did not change: these are the objects the hand-written codec made and read."""
    assert crossed(protocol.TaskRequest("SELECT 1", {"d": 1}, 5, "events", ("events/day=1/a.parquet",),
                                        (("day", "BIGINT"),))) == {
        "version": 1, "op": "task", "sql": "SELECT 1", "params": {"d": 1}, "page_size": 5, "table": "events",
        "files": ["events/day=1/a.parquet"], "key_types": {"day": "BIGINT"}}
    assert crossed(ANSWERS["download"]) == {
        "version": 1, "result_id": RESULT_ID, "columns": [{"name": "n", "type": "BIGINT"}, {"name": "s", "type": "VARCHAR"}],
        "total_rows": 3, "result_bytes": 900, "download": {"url": ANSWERS["download"].url, "expires_s": 900},
        "stats": {"engine_ms": 1.5, "cold": True, "rows": 3, "encoded_bytes": 8, "duckdb_version": "1.5.5",
                  "architecture": "x86_64"}}
    assert crossed(ANSWERS["error"])["error"] == {"type": "BinderException", "message": "Referenced column \"x\" not found",
                                                  "position": 7}
    assert crossed(ANSWERS["partitioned_tables"])["partitioned_tables"][0]["files"][0] == {
        "path": "events/day=2019-04-01/data_0.parquet", "bytes": 100, "partition": {"day": "2019-04-01"}}
    assert "reused_from" not in crossed(protocol.PageAnswer(RESULT, protocol.Page(0, 3, PAGE_DATA)))
    older = {"version": 1, "op": "query", "sql": "SELECT 1", "params": {}, "page_size": 1}  # no reuse, no views
    assert protocol.parse_request(older) == protocol.QueryRequest("SELECT 1", {}, 1)


# --- every field of every answer is hostile --------------------------------------------

# The answer fields that are data: any text, which consumers quote or show, never splice.
DATA_TEXT = {"columns[0].name", "columns[1].name", "profile.column", "profile.min", "profile.max", "profile.mean",
             "profile.bars[0].label", "profile.bars[1].label", "summaries.columns[0].bars[0].label",
             "summaries.columns[0].bars[1].label", "summaries.columns[1].bars[0].label", "tables[0].name",
             "tables[0].location",
             "tables[0].partition_keys[0]", "estimate.sources[0].name", "error.message", "table_formats[0][2]",
             "format_tables[0].columns[0].name", "format_tables[0].columns[1].name",
             "format_tables[0].files[0].partition[0][2]", "format_tables[0].files[1].partition[0][2]"}
SQL_FRAGMENTS = [
    "BIGINT) IS NOT NULL OR (SELECT count(*) FROM duckdb_settings()) > 0 OR CAST(NULL AS BIGINT",
    "VARCHAR) AS a, (SELECT content FROM read_text('/etc/hostname')) AS leaked, CAST(NULL AS VARCHAR",
    "INTEGER DEFAULT (SELECT 42)", "INTEGER, b INTEGER", "x'; DROP TABLE t; --", "../../etc/passwd",
    "http://169.254.169.254/latest/meta-data", "file:///etc/passwd",
]


def leaves(value, path=""):
    """(path, value) of every leaf of a wire object, lists by index."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def changed(wire: dict, path: str, value) -> dict:
    """A copy of `wire` with the leaf at `path` set to `value` (or removed, for REMOVED)."""
    wire = copy.deepcopy(wire)
    *parents, last = path.replace("[", ".[").split(".")
    target = wire
    for part in parents:
        target = target[int(part[1:-1])] if part.startswith("[") else target[part]
    key = int(last[1:-1]) if last.startswith("[") else last
    if value is REMOVED:
        del target[key]
    else:
        target[key] = value
    return wire


REMOVED = object()


def hostile_values(path: str, value) -> list:
    """Values a forged answer might put at `path` instead of `value`; each must be refused."""
    if isinstance(value, bool):
        return [1, "true", None, [True]]
    if isinstance(value, int):
        return [-1, 2**70, 1.5, "1", True, None, [1], {"n": 1}]
    if isinstance(value, float):
        return [-1.0, 1e300, float("nan"), float("inf"), "1.0", True, None, [1.0]]
    return [7, True, None, ["x"], {"x": "y"}, "ok\ud800", "\udfff", *([] if path in DATA_TEXT else SQL_FRAGMENTS)]


OMITTABLE = {"reused_from", "tables[0].snapshot",  # may be left out of the wire
             *(f"format_tables[0].files[0].{side}.{column}" for side in ("lower", "upper") for column in ("day", "n"))}
NULLABLE = {"result_id", "error.position", "estimate.memory_mb", "reused_from",
            "profile.min", "profile.max", "profile.mean", "tables[0].snapshot",
            "format_tables[0].files[0].partition[0][2]", "format_tables[0].files[1].partition[0][2]"}
FUZZ = [(kind, path, bad) for kind, answer in ANSWERS.items() for path, value in leaves(crossed(answer))
        if path != "version" for bad in [REMOVED, *hostile_values(path, value)]
        if not (bad is None and path in NULLABLE) and not (bad is REMOVED and (path in OMITTABLE or path[-1] == "]"))]


@pytest.mark.parametrize("kind, path, bad", FUZZ, ids=[f"{kind}:{path}:{bad!r:.30}" for kind, path, bad in FUZZ])
def test_every_field_of_every_answer_refuses_what_it_cannot_hold(kind, path, bad):
    with pytest.raises(ProtocolError):
        protocol.parse_answer(changed(crossed(ANSWERS[kind]), path, bad))


@pytest.mark.parametrize("kind", ANSWERS)
def test_an_unknown_field_anywhere_in_an_answer_is_refused(kind):
    wire = crossed(ANSWERS[kind])
    objects = [""] + [path.rpartition(".")[0] for path, _ in leaves(wire) if "." in path]
    for place in dict.fromkeys(objects):
        forged = copy.deepcopy(wire)
        target = forged
        for part in filter(None, place.replace("[", ".[").split(".")):
            target = target[int(part[1:-1])] if part.startswith("[") else target[part]
        target["injected"] = "SELECT 1"
        with pytest.raises(ProtocolError):
            protocol.parse_answer(forged)


def test_an_answer_of_two_kinds_or_none_is_refused():
    with pytest.raises(ProtocolError, match="exactly one of"):
        protocol.parse_answer(dict(crossed(ANSWERS["page"]), error={"type": "X", "message": "", "position": None}))
    with pytest.raises(ProtocolError, match="exactly one of"):
        protocol.parse_answer({"version": 1, "stats": crossed(STATS)})


@pytest.mark.parametrize("url", [
    "http://lake.s3.amazonaws.com/_lakemagic/results/{id}.parquet",  # plain http, not this machine
    "https://lake.s3.amazonaws.com/_lakemagic/results/{other}.parquet",  # another result's file
    "https://lake.s3.amazonaws.com/_lakemagic/results/../results/{id}.parquet",
    "https://user:secret@lake.s3.amazonaws.com/_lakemagic/results/{id}.parquet",
    "ftp://127.0.0.1/_lakemagic/results/{id}.parquet", "file:///_lakemagic/results/{id}.parquet",
    "/etc/passwd", "relative/_lakemagic/results/{id}.parquet", "/lake/../etc/_lakemagic/results/{id}.parquet",
])
def test_a_download_names_the_results_own_file_over_https_or_on_this_machine(url):
    forged = crossed(ANSWERS["download"])
    forged["download"]["url"] = url.format(id=RESULT_ID, other="O" * 32)
    with pytest.raises(ProtocolError, match="'download.url'"):
        protocol.parse_answer(forged)
    for good in (f"http://127.0.0.1:9000/lake/_lakemagic/results/{RESULT_ID}.parquet?X-Amz-Signature=1",
                 f"/home/me/lake/_lakemagic/results/{RESULT_ID}.parquet"):
        forged["download"]["url"] = good
        assert protocol.parse_answer(forged).url == good


@pytest.mark.parametrize("path", ["other/data/x.parquet", "trips/../dataset/x.parquet", "trips/data/./x.parquet",
                                  "trips//x.parquet", "/trips/data/x.parquet", "s3://other/trips/x.parquet",
                                  "trips/data/x.parquet?s3_endpoint=127.0.0.1:9", "trips/data/*.parquet",
                                  "trips/data/x.parquet#x", "trips/data/x.csv", "trips/metadata/snap.avro",
                                  "trips/data/x\nparquet.parquet"])
def test_a_format_listing_names_only_parquet_files_inside_its_tables_folder(path):
    forged = crossed(ANSWERS["partitioned_tables+formats"])
    forged["format_tables"][0]["files"][0]["path"] = path
    with pytest.raises(ProtocolError, match="the listing of trips names"):
        protocol.parse_answer(forged)


@pytest.mark.parametrize("pin", ["trips/metadata/../../x/metadata/v1.metadata.json", "other/metadata/v1.metadata.json",
                                 "trips/_delta_log/00000000000000000001.json", "trips/metadata/v1.metadata.json?x=1",
                                 "/trips/metadata/v1.metadata.json", "trips/data/x.parquet"])
def test_a_format_listing_pins_a_metadata_file_of_its_own_table(pin):
    forged = crossed(ANSWERS["partitioned_tables+formats"])
    forged["format_tables"][0]["pin"] = pin
    with pytest.raises(ProtocolError, match="the listing of trips pins"):
        protocol.parse_answer(forged)


@pytest.mark.parametrize("change, says", [
    (lambda table: table["files"][0]["partition"][0].__setitem__(0, "other"), "a column the table does not have"),
    (lambda table: table.update(kind="delta", pin="trips/_delta_log/00000000000000000003.json"),
     "not the column's own"),
])
def test_a_format_listings_partition_values_are_of_its_own_columns(change, says):
    forged = crossed(ANSWERS["partitioned_tables+formats"])
    change(forged["format_tables"][0])
    with pytest.raises(ProtocolError, match=says):
        protocol.parse_answer(forged)


@pytest.mark.parametrize("side", ["lower", "upper"])
@pytest.mark.parametrize("bounds, says", [
    ({"other": "1"}, "statistics of a column the table does not have"),
    ({"n": "1" * 65}, "a bound"),  # longer than any number, date or timestamp
    ({"n": "1e3"}, "a bound"),
    ({"n": "1 OR TRUE"}, "a bound"),
    ({"n": "1'); SELECT 1; --"}, "a bound"),
    ({"day": "2019-04-02T00:00:00+05:00"}, "a bound"),  # timestamps travel naive, in UTC
    ({"n": 1}, "a bound"),
    ({"n": None}, "a bound"),
    ({"n": ["1"]}, "a bound"),
    (["n", "1"], "an object"),
    ("n=1", "an object"),
    ({"": "1"}, "a column name"),
    ({"n" * 1025: "1"}, "a column name"),
])
def test_a_format_listings_statistics_are_bounded_values_of_its_own_columns(side, bounds, says):
    forged = crossed(ANSWERS["partitioned_tables+formats"])
    forged["format_tables"][0]["files"][1][side] = bounds
    with pytest.raises(ProtocolError, match=says):
        protocol.parse_answer(forged)


def test_a_format_listings_statistics_travel_as_objects_left_out_when_there_are_none():
    files = crossed(ANSWERS["partitioned_tables+formats"])["format_tables"][0]["files"]
    assert files[0]["lower"] == {"day": "2019-04-02", "n": "-3"} and files[0]["upper"]["n"] == "17.25"
    assert "lower" not in files[1] and "upper" not in files[1]


def test_a_forged_format_listing_plans_no_task():
    """A listing that names a file outside the table's folder never becomes a task: refused on arrival."""
    wire = crossed(ANSWERS["partitioned_tables+formats"])
    wire["format_tables"][0]["files"][0]["path"] = "trips/../dataset/secret.parquet"
    forged = Forged(wire)
    with pytest.raises(EngineError, match="did not answer in lakemagic's protocol"):
        runner.decide(forged, "SELECT count(*) FROM trips", (), 8)
    honest = runner.decide(Forged(crossed(ANSWERS["partitioned_tables+formats"])), "SELECT count(*) FROM trips", (), 8)
    assert honest.pin == "trips/metadata/00002-a1b2.metadata.json" and len(honest.plan.tasks) == 2
    assert [request.pin for request in runner.task_requests(honest, {}, ())] == [honest.pin] * 2


@pytest.mark.parametrize("path", ["other/day=2019-04-01/data_0.parquet", "events/../dataset/x.parquet",
                                  "events/day=2019-04-01/../../_lakemagic/results/x.parquet",
                                  "events/day=2019-04-09/data_0.parquet", "events/data_0.parquet",
                                  "/events/day=2019-04-01/data_0.parquet", "events/day=2019-04-01/.hidden.parquet"])
def test_a_listing_names_only_its_tables_files_spelling_their_partitions(path):
    forged = crossed(ANSWERS["partitioned_tables"])
    forged["partitioned_tables"][0]["files"][0]["path"] = path
    with pytest.raises(ProtocolError, match="the listing of events"):
        protocol.parse_answer(forged)


@pytest.mark.parametrize("forge, says", [
    (lambda w: w["summaries"]["columns"].reverse(), "not the result's columns"),  # another column's bars
    (lambda w: w["summaries"]["columns"].pop(), "not the result's columns"),
    (lambda w: w["summaries"]["columns"][0]["bars"][0].update(count=3), "counts more than"),
    (lambda w: w["summaries"]["columns"][1].update(nulls=2), "counts more than"),
    (lambda w: w["summaries"].update(sampled=True), "summaries.rows"),  # all the rows are no sample
    (lambda w: w["summaries"].update(rows=2), "summaries.rows"),  # fewer rows, said not sampled
    (lambda w: w["summaries"].update(rows=4), "summaries.rows"),
])
def test_summaries_are_of_the_results_columns_and_count_no_more_than_its_rows(forge, says):
    forged = crossed(ANSWERS["summaries"])
    forge(forged)
    with pytest.raises(ProtocolError, match=says):
        protocol.parse_answer(forged)


def test_a_part_or_page_says_no_more_than_it_holds():
    forged = crossed(ANSWERS["part"])
    forged["part"]["length"] = 400
    with pytest.raises(ProtocolError, match="part.length"):
        protocol.parse_answer(forged)
    forged = crossed(ANSWERS["page"])
    forged["page"]["row_count"] = 4
    with pytest.raises(ProtocolError, match="past the result"):
        protocol.parse_answer(forged)


def test_types_arrive_as_duckdbs_own_printing_of_one_type():
    wire = crossed(ANSWERS["page"])
    for kind in ("STRUCT(\"a) AS x, (SELECT 1\" INTEGER, t ENUM('x''y'))", "TIMESTAMP WITH TIME ZONE", "DECIMAL(18,3)"):
        wire["columns"][0]["type"] = kind
        assert protocol.parse_answer(wire).result.columns[0].type == kind  # names and strings quoted by DuckDB
    for kind in ("int", "BIGINT ", "VARCHAR(10)", "INTEGER\x00) AS x", "no_such_type"):
        wire["columns"][0]["type"] = kind
        with pytest.raises(ProtocolError, match=r"'columns\[0\].type'"):
            protocol.parse_answer(wire)


class _Listing:
    """A forged engine: every call is answered with one listing whose key type is SQL; it records the calls."""

    name, concurrency, shares_files = "forged", 1, False

    def __init__(self, key_type: str):
        wire = crossed(ANSWERS["partitioned_tables"])
        wire["partitioned_tables"][0]["key_types"][0]["type"] = key_type
        self.answer, self.requests = wire, []

    def call(self, request: dict) -> Reply:
        self.requests.append(request.op)
        return Reply(copy.deepcopy(self.answer))


def test_a_forged_key_type_never_reaches_the_fanouts_sql():
    """The live finding: a listing's key type reached CAST(... AS <type>) in pruning and changed which files
    the fan-out read. Now the listing is refused on arrival: no pruning, no task."""
    sql = "SELECT day, count(*) FROM events WHERE day = DATE '2019-04-01' GROUP BY day"
    honest = runner.decide(_Listing("DATE"), sql, (), 8)
    assert honest.plan is None and "the file of events it reads (one of 2" in honest.reason  # pruned to one file: nothing to split
    forged = _Listing("DATE) IS NOT NULL OR (SELECT count(*) FROM duckdb_settings()) > 0 OR CAST(NULL AS DATE")
    with pytest.raises(EngineError, match="did not answer in lakemagic's protocol"):
        runner.decide(forged, sql, (), 8)
    assert forged.requests == ["partitions"]


# --- requests: not Unicode text is refused at the edge, and nothing escapes the handler -----------------

SURROGATE = "\ud800"
GOOD = {
    "query": events.query_request("SELECT $a AS a", {"a": "x"}, 10, (protocol.View("v", "SELECT 1"),)),
    "derive": events.derive_request(RESULT_ID, (protocol.SortKey("a"),), "a > 1", 10),
    "profile": events.profile_request(RESULT_ID, "a"),
    "summarize": events.summarize_request(RESULT_ID),
    "task": events.task_request("SELECT count(*) FROM events", {"a": "x"}, 10, "events",
                                  ["events/day=1/a.parquet"], {"day": "BIGINT"}, (protocol.View("v", "SELECT 1"),)),
    "materialize": events.materialize_request("SELECT 1", "dashboard/x.parquet", (protocol.View("v", "SELECT 1"),)),
    "estimate": events.estimate_request("SELECT $a AS a", {"a": "x"}, (protocol.View("v", "SELECT 1"),)),
}
STRING_FIELDS = [(op, path) for op, event in GOOD.items() for path, value in leaves(event)
                 if isinstance(value, str) and path != "op"]


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    handler = LakeHandler(str(lake))
    yield handler
    handler.close()


def wire(handler, event) -> dict:
    """Through the handler as Lambda calls it: JSON text in (where "\\ud800" is valid), JSON text out."""
    return json.loads(json.dumps(handler(json.loads(json.dumps(event)), None)))


@pytest.mark.parametrize("op, path", STRING_FIELDS, ids=[f"{op}:{path}" for op, path in STRING_FIELDS])
def test_a_lone_surrogate_in_any_string_field_is_a_protocol_error(handler, op, path):
    event = changed(GOOD[op], path, leaves_value(GOOD[op], path) + SURROGATE)
    answer = wire(handler, event)
    assert answer["error"]["type"] == "ProtocolError", answer
    assert "surrogate" in answer["error"]["message"] or "is not" in answer["error"]["message"]


def leaves_value(event: dict, path: str):
    return dict(leaves(event))[path]


def test_a_lone_surrogate_in_a_key_or_a_nested_parameter_is_a_protocol_error(handler):
    for event in (dict(GOOD["query"], params={"a": ["x", ["y" + SURROGATE]]}),
                  dict(GOOD["task"], key_types={"day" + SURROGATE: "BIGINT"}),
                  dict(GOOD["query"], params={"a" + SURROGATE: 1})):
        assert wire(handler, event)["error"]["type"] == "ProtocolError"
    assert wire(handler, events.query_request("SELECT 'ok' AS a", {}, 1))["columns"][0]["name"] == "a"


class _Buggy(LakeHandler):
    """The handler with a bug in one operation, as one a future change might bring."""

    def tables(self, con, request):
        raise KeyError(f"{self.lake.root}/_lakemagic/secret")


def test_a_failure_nobody_foresaw_is_answered_without_its_details_and_logged_in_full(tmp_path, caplog):
    buggy = _Buggy(str(tmp_path))
    try:
        with caplog.at_level(logging.ERROR, logger="lakelambda.handler"):
            answer = wire(buggy, events.tables_request())
        error = answer["error"]
        assert error["type"] == "InternalError" and set(answer) == {"version", "error", "stats"}
        assert str(tmp_path) not in error["message"] and "Traceback" not in error["message"]
        incident = error["message"].rpartition("incident ")[2].rstrip(")")
        logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
        assert incident in logged and "_lakemagic/secret" in caplog.text  # the operator sees it all
        assert wire(buggy, events.query_request("SELECT 42 AS a", {}, 1))["total_rows"] == 1  # and it still answers
    finally:
        buggy.close()


def test_through_the_lambda_endpoint_a_surrogate_is_an_answer_not_a_function_error(lambda_endpoint):
    lambda_client = boto3.client("lambda", endpoint_url=lambda_endpoint.endpoint_url, region_name="us-east-1")
    payload = b'{"version": 1, "op": "query", "sql": "SELECT \'\\ud800\' AS s", "params": {}, "page_size": 1}'
    response = lambda_client.invoke(FunctionName="lakemagic", Payload=payload)
    answer = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, answer
    assert answer["error"]["type"] == "ProtocolError" and "'sql'" in answer["error"]["message"]
    assert "SELECT" not in answer["error"]["message"]  # the SQL is not echoed


def test_the_notebook_sees_an_internal_error_as_a_query_error(tmp_path):
    from lakemagic.errors import LakeQueryError

    class Engine:
        name, concurrency, shares_files = "buggy", 1, True

        def __init__(self):
            self.handler = _Buggy(str(tmp_path))

        def call(self, request):
            return Reply(self.handler(protocol.encode(request)))

    engine = Engine()
    try:
        with pytest.raises(LakeQueryError, match="failed unexpectedly"):
            client.tables(engine)
    finally:
        engine.handler.close()


def test_a_page_that_holds_more_rows_than_it_says_is_refused_before_they_are_read(tmp_path):
    """A repeated value compresses to almost nothing: this page of a few KB holds 50,000 rows of 1,000
    characters (50 MB as text, within what a page may decode to) and says it holds one. Neither the kernel
    nor the table reads them."""
    path = tmp_path / "bomb.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT repeat('x', 1000) AS s FROM range(50000)) TO '{path}' (FORMAT parquet, "
                    "COMPRESSION zstd)")
    size = path.stat().st_size
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    path.unlink()
    assert len(data) < 10_000
    info = protocol.ResultInfo(None, (protocol.Column("s", "VARCHAR"),), 1, size)
    forged = Forged(protocol.encode(protocol.PageAnswer(info, protocol.Page(0, 1, data))))
    with pytest.raises(EngineError, match="says its rows are 1, but its data holds 50,000"):
        client.run_query(forged, "SELECT 'x'", reuse=False)
    told = protocol.ResultInfo(None, info.columns, 50_000, size)
    result = client.run_query(Forged(protocol.encode(protocol.PageAnswer(told, protocol.Page(0, 50_000, data)))),
                              "SELECT 'x'", reuse=False)
    assert result.total_rows == 50_000 and result.engine.name == "kernel"  # the same page, told truly


def test_an_inline_result_with_a_column_it_does_not_declare_is_refused(tmp_path):
    """The kernel reads an adopted result's columns by position, then the row number: an extra column in the
    file was taken for the row number, and its page 10 to 14 showed rows 86 to 90."""
    path = tmp_path / "extra.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT range AS a, 100 - range AS row FROM range(100)) TO '{path}' (FORMAT parquet)")
    size = path.stat().st_size
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    path.unlink()
    declared = protocol.ResultInfo(None, (protocol.Column("a", "BIGINT"),), 100, size)
    with pytest.raises(EngineError, match="declares 1 columns, but its rows hold 2"):
        client.run_query(Forged(protocol.encode(protocol.PageAnswer(declared, protocol.Page(0, 100, data)))),
                         "SELECT 1", reuse=False)
    both = protocol.ResultInfo(None, (protocol.Column("a", "BIGINT"), protocol.Column("row", "BIGINT")), 100, size)
    result = client.run_query(Forged(protocol.encode(protocol.PageAnswer(both, protocol.Page(0, 100, data)))),
                              "SELECT 1", reuse=False)
    assert result.page(10, 5).frame().a.tolist() == [10, 11, 12, 13, 14]  # declared truly, read truly
