"""Whole stored results reach the notebook as one file: a presigned GET on S3, the file itself on a local lake."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request

import pandas as pd
import pytest

from lakelambda import protocol
from lakemagic import client
from lakemagic.engines import Engine
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import EngineError
from lakemagic.locallambda.s3proxy import S3Proxy

from servers import BUCKET, FUNCTION, OTHER_BUCKET, start_function
from test_sandbox import Listener

SQL = "SELECT * FROM taxi_2019_04 ORDER BY pickup_at, dropoff_at, total_amount, pickup_location_id"
STORE_ALL = {"LAKEMAGIC_INLINE_RESULT_BYTES": "0"}


class Recording(Engine):
    """An engine that keeps the ops it was asked for (each call through the wire)."""

    def __init__(self, inner):
        self.inner, self.ops = inner, []
        self.name, self.concurrency, self.shares_files = inner.name, inner.concurrency, inner.shares_files

    def call(self, request: dict):
        self.ops.append(request.op)
        return self.inner.call(request)

    def may_download(self, url: str, result_id: str) -> bool:
        return self.inner.may_download(url, result_id)


@pytest.fixture(scope="module")
def expected(local_taxi_lake) -> pd.DataFrame:
    return client.run_query(EmbeddedEngine(str(local_taxi_lake)), SQL).to_dataframe()


def test_the_embedded_engine_reads_the_stored_file_itself(local_taxi_lake, expected, stored_results):
    engine = Recording(EmbeddedEngine(str(local_taxi_lake)))
    result = client.run_query(engine, SQL, page_size=50)
    pd.testing.assert_frame_equal(result.to_dataframe(), expected)
    assert engine.ops == ["query", "download"]  # no parts through the JSON round trip


def test_lambda_answers_a_url_the_notebook_gets_with_a_plain_get(s3_lake, aws_environment, expected, monkeypatch):
    local = start_function(s3_lake, aws_environment, env=STORE_ALL)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
        engine = Recording(LambdaEngine(FUNCTION, lake=s3_lake))
        result = client.run_query(engine, SQL, page_size=50)
        answer = protocol.parse_answer(engine.call(protocol.DownloadRequest(result.result_id)).answer)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.url).query)
        assert "X-Amz-Signature" in query and int(query["X-Amz-Expires"][0]) == answer.expires_s
        with urllib.request.urlopen(answer.url, timeout=30) as got:  # no credentials of the notebook's
            assert len(got.read()) == result.info.result_bytes

        engine.ops.clear()
        pd.testing.assert_frame_equal(result.to_dataframe(), expected)
        assert engine.ops == ["download"]
    finally:
        local.stop()


def test_an_unreachable_url_falls_back_to_parts_through_the_function(s3_lake, aws_environment, moto_endpoint,
                                                                     expected, monkeypatch):
    proxy = S3Proxy(moto_endpoint).start()
    local = start_function(s3_lake, aws_environment, env=dict(STORE_ALL, AWS_ENDPOINT_URL_S3=proxy.endpoint_url))
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint_url)  # the lake's endpoint, as both ends know it
        engine = Recording(LambdaEngine(FUNCTION, lake=s3_lake))
        result = client.run_query(engine, SQL, page_size=50, reuse=False)  # computed here, so its copy is in /tmp
        proxy.stop()  # the URL the function signs now leads nowhere; its warm copy in /tmp still serves parts
        engine.ops.clear()
        pd.testing.assert_frame_equal(result.to_dataframe(), expected)
        assert engine.ops[0] == "download" and set(engine.ops[1:]) == {"part"}
    finally:
        local.stop()


class PathAnswering(Engine):
    """A remote engine whose function answers a download with a path on this machine."""

    name, concurrency, shares_files = "lambda", 1, False

    def __init__(self, inner):
        self.inner = inner

    def call(self, request: dict):
        reply = self.inner.call(request)
        if request.op == "download":
            reply.answer["download"]["url"] = "/etc/passwd"
        return reply


def test_a_remote_engine_cannot_make_the_notebook_read_its_own_files(local_taxi_lake, stored_results):
    """A download answer names the result's own file, or it is refused on arrival: never /etc/passwd."""
    engine = PathAnswering(EmbeddedEngine(str(local_taxi_lake)))
    result = client.run_query(engine, SQL, page_size=50)
    with pytest.raises(EngineError, match="'download.url' does not name the result's own file"):
        result.to_dataframe()


class TypeInjecting(Recording):
    """A remote engine whose answer declares a column 'type' that is SQL of its own."""

    shares_files = False

    def call(self, request: dict):
        reply = self.inner.call(request)
        for column in reply.answer.get("columns", []):
            column["type"] = "VARCHAR) AS a, (SELECT content FROM read_text('/etc/hostname')) AS leaked, CAST(NULL AS VARCHAR"
        return reply


def test_an_answers_column_types_are_never_sql_run_in_the_notebook(local_taxi_lake):
    engine = TypeInjecting(EmbeddedEngine(str(local_taxi_lake)))
    with pytest.raises(EngineError) as refused:
        client.run_query(engine, "SELECT 1 AS x")  # refused as the answer arrives: no result is made of it
    assert "'columns[0].type'" in str(refused.value) and "is not a DuckDB type" in str(refused.value)


class FtpAnswering(PathAnswering):
    def call(self, request: dict):
        reply = self.inner.call(request)
        if request.op == "download":
            reply.answer["download"]["url"] = "ftp://127.0.0.1/result.parquet"
        return reply


def test_a_download_that_is_not_https_is_refused_on_arrival(local_taxi_lake, stored_results):
    engine = FtpAnswering(EmbeddedEngine(str(local_taxi_lake)))
    result = client.run_query(engine, SQL, page_size=50)
    with pytest.raises(EngineError, match="'download.url' is neither https"):  # no ftp client is ever opened
        result.to_dataframe()


class Redirecting(Recording):
    """A function whose download answers lead elsewhere: `forge` turns the true URL into another."""

    def __init__(self, inner, forge):
        super().__init__(inner)
        self.forge = forge

    def call(self, request):
        reply = super().call(request)
        if request.op == "download":
            reply.answer["download"]["url"] = self.forge(reply.answer["download"]["url"])
        return reply


def _elsewhere(url: str, port: int) -> str:
    """The URL with its scheme, host and port made 127.0.0.1:`port` (a listener of the test's)."""
    target = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(target._replace(netloc=f"127.0.0.1:{port}"))


FORGERIES = {
    "another port on this machine": lambda url, port: _elsewhere(url, port),
    "https to another port": lambda url, port: _elsewhere(url, port).replace("http://", "https://"),
    "localhost, another port": lambda url, port: _elsewhere(url, port).replace("127.0.0.1", "localhost"),
    "another host named like the bucket": lambda url, port: _elsewhere(url, port).replace(
        "127.0.0.1", f"{BUCKET}.127.0.0.1.nip.io"),
    "another bucket": lambda url, port: url.replace(f"/{BUCKET}/", f"/{OTHER_BUCKET}/"),
    "another prefix": lambda url, port: url.replace(f"/{BUCKET}/", f"/{BUCKET}/other/"),
    "a query S3 would read": lambda url, port: url + "&response-content-type=text%2Fhtml",
    "a second signature": lambda url, port: url + "&X-Amz-Signature=0",
    "no signature": lambda url, port: url.split("?")[0] + "?X-Amz-Expires=900",
    "a fragment": lambda url, port: url + "#x",
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_download_url_leads_only_to_the_results_object_in_the_lake(forgery, s3_lake, storing_function,
                                                                     monkeypatch):
    """Whatever else the answer says, a URL that is not the result's own object in the configured lake,
    presigned, is refused before anything reads it: the listener it names gets nothing, and no part
    is fetched in its place."""
    listener = Listener()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", storing_function.endpoint_url)
        engine = Redirecting(LambdaEngine(FUNCTION, lake=s3_lake), lambda url: FORGERIES[forgery](url, listener.port))
        result = client.run_query(engine, SQL, page_size=50)
        engine.ops.clear()
        with pytest.raises(EngineError, match="download"):
            result.to_dataframe()
        assert engine.ops == ["download"]
        time.sleep(0.2)
        assert listener.connections == 0
    finally:
        listener.close()


def test_without_a_lake_to_check_against_a_result_comes_in_parts(storing_function, expected, monkeypatch):
    listener = Listener()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", storing_function.endpoint_url)
        engine = Redirecting(LambdaEngine(FUNCTION), lambda url: _elsewhere(url, listener.port))
        result = client.run_query(engine, SQL, page_size=50)
        engine.ops.clear()
        pd.testing.assert_frame_equal(result.to_dataframe(), expected)
        assert engine.ops[0] == "download" and set(engine.ops[1:]) == {"part"}
        assert listener.connections == 0
    finally:
        listener.close()


@pytest.mark.parametrize("path", ["{lake}/_lakemagic/results/{other}.parquet", "/tmp/_lakemagic/results/{id}.parquet",
                                  "{lake}/x/_lakemagic/results/{id}.parquet"])
def test_an_engine_on_this_machine_reads_only_its_own_results_file(path, local_taxi_lake, stored_results):
    inner = EmbeddedEngine(str(local_taxi_lake))
    engine = Redirecting(inner, lambda url: path.format(lake=inner.lake, id=url.rsplit("/", 1)[1][:-8], other="O" * 32))
    result = client.run_query(engine, SQL, page_size=50)
    with pytest.raises(EngineError, match="download"):
        result.to_dataframe()


def test_the_magics_lake_setting_is_where_the_lambda_engines_downloads_may_lead(ipython, tmp_path):
    magic = ipython.magics_manager.registry["LakeMagic"]
    ipython.run_line_magic("config", "LakeMagic.engine = 'lambda'")
    ipython.run_line_magic("config", f"LakeMagic.lake = 's3://{BUCKET}/team'")
    assert magic.current_engine().lake == f"s3://{BUCKET}/team"
    ipython.run_line_magic("config", f"LakeMagic.lake = '{tmp_path}'")  # a folder: no lake to check against
    assert magic.current_engine().lake is None
