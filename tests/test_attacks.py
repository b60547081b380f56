"""A hostile caller against the newer operations (derive, result reuse, the local endpoint).

Each test sends what an attacker could send, to the real handler over a lake
folder or to `lakemagic serve` on 127.0.0.1, and checks what a user would:
the attacker gets a clear refusal in the protocol's shape (never a crash of
the handler), and learns nothing it could not compute.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import shutil
import time
import urllib.error
import urllib.request

import pytest

from lakelambda.errors import PermissionDenied
from lakelambda.handler import LakeHandler
from lakelambda.sandbox import check_query
from lakemagic.locallambda import FunctionSpec, LocalLambda
import events

FIXTURES = f"{__package__}.lambda_fixture_handlers" if __package__ else "lambda_fixture_handlers"
TABLE = "taxi_2019_04"
SCOPE = secrets.token_hex(32)  # the scope the reuse probes run within


@pytest.fixture
def handler(local_taxi_lake, tmp_path, stored_results):
    """The embedded handler over a copy of the taxi lake, every result stored."""
    folder = tmp_path / "lake"
    shutil.copytree(local_taxi_lake, folder, ignore=shutil.ignore_patterns("_lakemagic"))
    handler = LakeHandler(str(folder))
    yield handler
    handler.close()


def stored_result(handler) -> str:
    answer = handler(events.query_request(f"SELECT * FROM {TABLE} LIMIT 100", {}, 10))
    assert answer["result_id"], answer
    return answer["result_id"]


def test_a_long_filter_is_checked_without_running_out_of_stack(handler):
    """A condition nested a few hundred deep is still one condition: it runs (it crashed the handler)."""
    where = " + ".join(["fare_amount"] * 300) + " > 0"
    result_id = stored_result(handler)
    answer = handler(events.derive_request(result_id, (), where, 10))
    assert "error" not in answer, answer
    plain = handler(events.derive_request(result_id, (), "fare_amount > 0", 10))
    assert 0 < answer["total_rows"] == plain["total_rows"]


def test_a_deeply_nested_escape_from_the_filter_is_refused(handler):
    """Text that closes the filter's parentheses and nests deeply outside them is refused, not a crash."""
    where = "TRUE) GROUP BY ALL HAVING (" + " + ".join(["count(*)"] * 300) + " > 0"
    answer = handler(events.derive_request(stored_result(handler), (), where, 10))
    assert answer["error"]["type"] == "PermissionException", answer["error"]
    assert "reaches outside" in answer["error"]["message"]


def test_the_local_clock_is_never_reused(handler):
    """ICU's current_localtime() is CONSISTENT to DuckDB, yet reads the clock: a reused answer would be stale."""
    sql = f"SELECT current_localtime() AS at, count(*) AS n FROM {TABLE}"
    first = handler(events.query_request(sql, {}, 10, reuse_scope=SCOPE))
    time.sleep(0.01)
    second = handler(events.query_request(sql, {}, 10, reuse_scope=SCOPE))
    assert "error" not in first and "reused_from" not in second
    assert second["result_id"] != first["result_id"]


def test_a_web_page_cannot_recycle_the_local_endpoint():
    """A page in the user's browser can POST cross-origin without a preflight; it must not retire the workers."""
    with LocalLambda({"behave": FunctionSpec(f"{FIXTURES}.behave")}) as local:
        assert local.invoke("behave", b"{}", "RequestResponse", "None", "warm-up").status == 200
        request = urllib.request.Request(f"{local.endpoint_url}/_local/recycle", data=b"", method="POST",
                                         headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
        assert "web page" in json.loads(refused.value.read())["message"]
        assert local.recycle() == 1  # the warm worker was still there


@pytest.mark.parametrize("framing", [b"Transfer-Encoding: chunked\r\n", b"Content-Length: 0\r\nContent-Length: 2\r\n"])
def test_a_body_the_endpoint_cannot_frame_is_refused_and_not_run_as_a_request(framing):
    """A body hiding a signed invocation, sent with framing other than one Content-Length, runs nothing:
    read by Content-Length alone it would be taken for the connection's next request (request smuggling)."""
    smuggled = (b"POST /2015-03-31/functions/behave/invocations HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: AWS4-HMAC-SHA256 Credential=x\r\nContent-Length: 2\r\n\r\n{}")
    with LocalLambda({"behave": FunctionSpec(f"{FIXTURES}.behave")}) as local:
        port = int(local.endpoint_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"POST /2015-03-31/functions/behave/invocations HTTP/1.1\r\nHost: x\r\n"
                               b"Origin: http://evil.example\r\n" + framing + b"\r\n" + smuggled)
            replies = b""
            while chunk := connection.recv(65536):
                replies += chunk
        assert replies.startswith(b"HTTP/1.1 400 ") and replies.count(b"HTTP/1.1 ") == 1, replies
        assert b"exactly one Content-Length" in replies
        assert local.recycle() == 0  # no worker was started: nothing ran


def test_a_file_rewritten_in_place_with_its_old_size_and_time_is_read_again(handler):
    """`cp -p`, or a tool that restores the modification time, leaves size, mtime and inode as they
    were; the change time cannot be set back, so the next query reads the new content."""
    path = os.path.join(handler.lake.root, "files", "prices.csv")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as file:
        file.write("price\n1\n")
    sql = f"SELECT sum(price) AS total FROM read_csv('{path}')"
    first = handler(events.query_request(sql, {}, 10, reuse_scope=SCOPE))
    before = os.stat(path)
    time.sleep(0.01)  # a change time the clock can tell apart
    with open(path, "r+") as file:  # in place: the same inode
        file.write("price\n2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns, os.stat(path).st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino)
    second = handler(events.query_request(sql, {}, 10, reuse_scope=SCOPE))
    assert "error" not in first and "reused_from" not in second, second
    assert second["result_id"] != first["result_id"]


# A lake-relative path written every other way a string can be: refused, or run as its full path inside the lake.
RELATIVE_FORMS = {
    "SELECT * FROM read_parquet(E'dataset/a.parquet')": None,
    "SELECT * FROM read_parquet('dataset/'\n'a.parquet')": None,  # adjacent literals: one constant, two texts
    "SELECT * FROM read_parquet(U&'dataset/a.parquet')": None,
    "SELECT * FROM read_parquet($$dataset/a.parquet$$)": None,
    "SELECT * FROM read_parquet($x$dataset/a.parquet$x$)": None,
    "SELECT * FROM read_parquet('dataset/a.parquet' COLLATE nocase)": None,
    "SELECT * FROM read_parquet('dataset/a.parquet'::VARCHAR)": None,
    "SELECT * FROM read_parquet(('dataset/a.parquet'))": "{root}/dataset/a.parquet",
    "SELECT * FROM parquet_scan('file:dataset/a.parquet')": "{root}/file:dataset/a.parquet",
    "SELECT * FROM parquet_scan('s3:dataset/a.parquet')": "{root}/s3:dataset/a.parquet",
    "SELECT * FROM parquet_scan('c:/dataset/a.parquet')": "{root}/c:/dataset/a.parquet",
    "SELECT * FROM \"dataset/a.parquet\" AS \"dataset/b.parquet\"": "{root}/dataset/a.parquet",
    "WITH \"dataset/a.parquet\" AS (SELECT 1 AS x) SELECT * FROM \"dataset/a.parquet\"": "{root}/dataset/a.parquet",
}


@pytest.mark.parametrize("sql", RELATIVE_FORMS)
def test_a_relative_path_in_any_written_form_is_refused_or_read_inside_the_lake(sql, tmp_path):
    """The text that runs is spliced at the parser's places, then checked again as it runs: whatever the
    form, what runs names only full paths inside the lake, or the query is refused."""
    root = str(tmp_path / "lake")
    expected = RELATIVE_FORMS[sql]
    if expected is None:
        with pytest.raises(PermissionDenied):
            check_query(sql, root)
        return
    checked = check_query(sql, root)
    assert expected.format(root=root) in checked.text and "'dataset/" not in checked.text.replace(root, "")
    assert check_query(checked.text, root).text == checked.text  # nothing relative is left in what runs
