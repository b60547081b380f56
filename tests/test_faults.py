"""Faults on real local servers: every failure is an answer a user can act on, in time, and the next call works.

S3 is moto on 127.0.0.1, reached (where a test needs to break it) through a
TCP relay of our own that can refuse connections or hold every byte; Lambda
is LocalLambda with spawned workers; DuckDB and boto3 are the real ones.
Nothing here is mocked, and nothing is sent anywhere but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import boto3
import duckdb
import pytest

from lakelambda.database import SCRATCH_PREFIX, remove_stale_scratch_folders
from lakemagic.client import run_query
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import EngineError, LakeQueryError

from servers import BUCKET, FUNCTION, start_function, worker_pids

# A result too big to travel inline in its first answer, so it is stored in the lake's results prefix.
BIG_ROWS = 60_000
BIG_SQL = f"SELECT i, md5(i::VARCHAR) || md5((i + 1)::VARCHAR) AS h FROM range({BIG_ROWS}) AS t(i) ORDER BY i"
LAKE_SQL = "SELECT count(*) AS trips FROM taxi_2019_04"
SLOW_SQL = "SELECT count(*) FROM range(100000000000) AS t(a) WHERE a % 7 = 3"
RESULTS_PREFIX = "_lakemagic/results/"
# Names no other test module uses: the files and the bucket are this module's, and go at its end.
BROKEN_TABLES = ("faults_garbage", "faults_truncated")
GONE_BUCKET = "lakemagic-faults-gone"
# Short, so a stalled S3 must be given up well inside it.
STALL_FUNCTION_TIMEOUT_S = 10.0


# --- a TCP relay in front of S3 that can go away or stall ------------------------------------------


class TcpRelay:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>.

    `stop()` closes the port and every open connection (S3 is gone: connections
    are refused); `start()` opens the same port again. `pause()` keeps accepting
    connections but holds every byte in both directions until `resume()` (S3 is
    stalled: nothing errors, nothing arrives).
    """

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            connections, self._open = list(self._open), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while not self._flowing.wait(0.1):  # paused: hold what was read
                    if source.fileno() < 0:
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


# --- helpers -----------------------------------------------------------------------------------------


def rows(result) -> list[tuple]:
    return list(result.first_page.frame().itertuples(index=False, name=None))


def one_line(error: Exception) -> str:
    """An error's message, checked to be one sentence with nothing chained behind it."""
    message = str(error)
    assert message and "\n" not in message, message
    assert error.__cause__ is None and (error.__suppress_context__ or error.__context__ is None), repr(error)
    return message


def lake_trips(local_taxi_lake: Path) -> int:
    return duckdb.sql(f"SELECT count(*) FROM '{local_taxi_lake}/dataset/taxi_2019_04.parquet'").fetchone()[0]


def scratch_folders(pid: int) -> list[Path]:
    """A LocalLambda worker's scratch folders, in its own /tmp (lakemagic-worker-*) in the temp directory."""
    return sorted(Path(tempfile.gettempdir()).glob(f"lakemagic-worker-*/{SCRATCH_PREFIX}{pid}-*"))


def local_copies(pid: int) -> list[Path]:
    """The stored results a LocalLambda worker keeps in its scratch folder."""
    return sorted(copy for folder in scratch_folders(pid) for copy in folder.glob("results/*.parquet"))


def empty_prefix(s3, bucket: str, prefix: str = "") -> int:
    """Delete every object under `prefix`; return how many there were."""
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])]
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]]})
    return len(keys)


@contextlib.contextmanager
def function(lake: str, environment: dict, monkeypatch, **spec):
    """A LocalLambda of the test's own, which the test's LambdaEngine calls; its workers' scratch goes with it."""
    local = start_function(lake, environment, **spec)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.endpoint_url)
    try:
        yield local
    finally:
        local.stop()  # kills the workers, so their scratch folders are a dead process's: clear them
        remove_stale_scratch_folders()


@pytest.fixture(scope="module")
def relay(moto_endpoint):
    relay = TcpRelay(int(moto_endpoint.rsplit(":", 1)[1]))
    yield relay
    relay.stop()


@pytest.fixture
def relayed_function(relay, s3_lake, aws_environment, monkeypatch):
    """The lake handler in LocalLambda, reaching S3 through the relay only, with a short timeout."""
    environment = dict(aws_environment, AWS_ENDPOINT_URL_S3=relay.url)
    with function(s3_lake, environment, monkeypatch, timeout_s=STALL_FUNCTION_TIMEOUT_S, max_workers=1) as local:
        yield local
    relay.resume()
    if not relay.listening:
        relay.start()


# --- 1. S3 stopped ------------------------------------------------------------------------------------


def test_s3_gone_is_an_answer_saying_so_and_the_next_query_works(relay, relayed_function, local_taxi_lake):
    engine = LambdaEngine(FUNCTION, timeout_s=STALL_FUNCTION_TIMEOUT_S)
    trips = lake_trips(local_taxi_lake)
    assert rows(run_query(engine, LAKE_SQL)) == [(trips,)]

    relay.stop()
    started = time.monotonic()
    with pytest.raises(LakeQueryError) as read_failed:  # an answer, not a FunctionError (that is an EngineError)
        run_query(engine, LAKE_SQL)
    assert read_failed.value.error_type in ("IOException", "HTTPException", "LakeUnavailable"), str(read_failed.value)
    assert "could not connect" in read_failed.value.message.lower(), read_failed.value.message
    with pytest.raises(LakeQueryError) as write_failed:  # DuckDB reads nothing here; the result's upload fails
        run_query(engine, BIG_SQL)
    assert write_failed.value.error_type == "LakeUnavailable", str(write_failed.value)
    assert f"writing s3://{BUCKET}/{RESULTS_PREFIX}" in write_failed.value.message
    assert "could not connect" in write_failed.value.message.lower()
    assert time.monotonic() - started < STALL_FUNCTION_TIMEOUT_S

    relay.start()
    assert rows(run_query(engine, LAKE_SQL)) == [(trips,)]
    assert run_query(engine, BIG_SQL).total_rows == BIG_ROWS


# --- 2. S3 stalled ------------------------------------------------------------------------------------


def test_s3_stalled_ends_in_an_answer_within_the_function_timeout(relay, relayed_function, local_taxi_lake):
    """DuckDB cannot interrupt a blocked S3 request, so its timeouts must fit the function's budget."""
    engine = LambdaEngine(FUNCTION, timeout_s=STALL_FUNCTION_TIMEOUT_S, read_margin_s=10)
    trips = lake_trips(local_taxi_lake)
    assert rows(run_query(engine, LAKE_SQL)) == [(trips,)]  # warm: the cold start is not part of the wait

    relay.pause()
    for sql, reading in ((LAKE_SQL, "DuckDB's read"), (BIG_SQL, "the result's upload")):
        started = time.monotonic()
        with pytest.raises(LakeQueryError) as stalled:
            run_query(engine, sql)
        waited = time.monotonic() - started
        message = stalled.value.message.lower()
        assert stalled.value.error_type in ("IOException", "HTTPException", "LakeUnavailable", "QueryTimeout"), (
            reading, str(stalled.value))
        assert "timeout" in message or "timed out" in message or "time budget" in message, (reading, message)
        assert waited < STALL_FUNCTION_TIMEOUT_S, (reading, waited)
        if sql == LAKE_SQL:  # the read's attempts take at most half the timeout, and are not made twice over
            assert waited < STALL_FUNCTION_TIMEOUT_S / 2 + 1, waited

    relay.resume()
    assert rows(run_query(engine, LAKE_SQL)) == [(trips,)]
    assert run_query(engine, BIG_SQL).total_rows == BIG_ROWS


# --- 3. corrupt and truncated Parquet files ---------------------------------------------------------------


@pytest.fixture
def broken_files(tmp_path) -> dict[str, bytes]:
    """Garbage bytes, and a real Parquet file cut in half."""
    real = tmp_path / "real.parquet"
    duckdb.sql(f"COPY (SELECT range AS id, md5(range::VARCHAR) AS h FROM range(20000)) TO '{real}' (ROW_GROUP_SIZE 4096)")
    data = real.read_bytes()
    real.unlink()
    return {"faults_garbage": random.Random(7).randbytes(8192), "faults_truncated": data[: len(data) // 2]}


def assert_names_the_file(engine, name: str) -> None:
    for sql in (f"SELECT count(*) FROM {name}", f"SELECT * FROM {name}"):
        with pytest.raises(LakeQueryError) as broken:
            run_query(engine, sql)
        assert f"dataset/{name}.parquet" in broken.value.message, str(broken.value)


def test_a_broken_parquet_file_is_named_on_the_embedded_engine(tmp_path, broken_files):
    lake = tmp_path / "lake"
    (lake / "dataset").mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT range AS id FROM range(10)) TO '{lake}/dataset/faults_good.parquet'")
    for name, data in broken_files.items():
        (lake / "dataset" / f"{name}.parquet").write_bytes(data)
    engine = EmbeddedEngine(str(lake))
    try:
        for name in BROKEN_TABLES:
            assert_names_the_file(engine, name)
            assert rows(run_query(engine, "SELECT count(*) AS n FROM faults_good")) == [(10,)]
    finally:
        engine._handler.close()


def test_a_broken_parquet_file_is_named_on_the_lambda_path(lambda_endpoint, s3_lake, broken_files, local_taxi_lake):
    s3 = boto3.client("s3")
    for name, data in broken_files.items():
        s3.put_object(Bucket=BUCKET, Key=f"dataset/{name}.parquet", Body=data)
    lambda_endpoint.recycle()  # warm workers may have listed the catalog before these files were there
    try:
        engine = LambdaEngine(FUNCTION)
        for name in BROKEN_TABLES:
            assert_names_the_file(engine, name)  # an answer: a FunctionError would be an EngineError
            assert rows(run_query(engine, LAKE_SQL)) == [(lake_trips(local_taxi_lake),)]
    finally:
        for name in BROKEN_TABLES:
            s3.delete_object(Bucket=BUCKET, Key=f"dataset/{name}.parquet")
        lambda_endpoint.recycle()


# --- 4. a worker killed mid-query ----------------------------------------------------------------------


def invocation_lines(capsys, wait_s: float = 5.0) -> list[str]:
    """The endpoint's log lines of invocations so far: it logs a call just after answering it, so the
    caller can hold the answer before the line is written."""
    deadline = time.monotonic() + wait_s
    lines = []
    while True:
        lines += [line for line in capsys.readouterr().err.splitlines() if line.startswith("local-lambda ")]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_a_worker_killed_mid_query_is_one_sentence_and_is_not_run_again(s3_lake, aws_environment, monkeypatch, capsys):
    before = worker_pids()
    with function(s3_lake, aws_environment, monkeypatch, max_workers=1):
        engine = LambdaEngine(FUNCTION)
        assert rows(run_query(engine, "SELECT 42 AS answer")) == [(42,)]  # a warm worker, ready for the slow query
        (pid,) = worker_pids() - before
        capsys.readouterr()

        outcome = {}

        def slow_query():
            try:
                run_query(engine, SLOW_SQL)
            except Exception as error:  # noqa: BLE001 - what the caller got is the point
                outcome["error"] = error

        caller = threading.Thread(target=slow_query)
        caller.start()
        time.sleep(1.0)
        assert caller.is_alive(), outcome  # still running when the worker dies
        os.kill(pid, signal.SIGKILL)
        caller.join(20)
        assert not caller.is_alive()

        error = outcome["error"]
        assert isinstance(error, EngineError), repr(error)
        message = one_line(error)
        assert "crashed" in message and "killed" in message, message
        invocations = invocation_lines(capsys)
        assert len(invocations) == 1 and "Runtime.ExitError" in invocations[0], invocations  # sent once

        after = run_query(engine, "SELECT 43 AS answer")
        assert rows(after) == [(43,)]
        assert after.stats.engine.cold is True  # a fresh worker
        assert pid not in worker_pids()
        # The killed worker's /tmp went with it, as an execution environment's does.
        assert not scratch_folders(pid)


# --- 6. the stored results removed -------------------------------------------------------------------------


def test_a_removed_results_prefix_is_result_not_found(lambda_endpoint, s3_lake):
    engine = LambdaEngine(FUNCTION)
    result = run_query(engine, BIG_SQL, page_size=50)
    assert result.result_id and result.total_rows == BIG_ROWS  # stored, not inline
    assert result.page(1000, 50).frame()["i"].tolist() == list(range(1000, 1050))

    s3 = boto3.client("s3")
    assert empty_prefix(s3, BUCKET, RESULTS_PREFIX) >= 1
    lambda_endpoint.recycle()  # and the warm workers' local copies with them

    with pytest.raises(LakeQueryError) as page_gone:
        result.page(2000, 50)
    with pytest.raises(LakeQueryError) as parts_gone:
        result.to_dataframe()
    for gone in (page_gone, parts_gone):
        assert gone.value.error_type == "ResultNotFound", str(gone.value)
        assert "run the query again" in gone.value.message

    again = run_query(engine, BIG_SQL, page_size=50)
    assert again.page(2000, 50).frame()["i"].tolist() == list(range(2000, 2050))


# --- 7. load --------------------------------------------------------------------------------------------


def test_fifty_concurrent_calls_are_each_right_or_cleanly_throttled(s3_lake, aws_environment, local_taxi_lake,
                                                                     monkeypatch):
    by_location = dict(duckdb.sql(
        f"SELECT pickup_location_id, count(*) FROM '{local_taxi_lake}/dataset/taxi_2019_04.parquet' GROUP BY 1"
    ).fetchall())
    locations = sorted(by_location)
    calls = []
    for i in range(50):
        if i % 2:
            location = locations[i % len(locations)]
            calls.append((f"SELECT count(*) AS trips FROM taxi_2019_04 WHERE pickup_location_id = {location}",
                          [(by_location[location],)]))
        else:
            calls.append((f"SELECT {i} AS i, {i} * {i} AS square", [(i, i * i)]))

    before = worker_pids()
    with function(s3_lake, aws_environment, monkeypatch, max_workers=3):
        engine = LambdaEngine(FUNCTION)
        with ThreadPoolExecutor(3) as pool:  # three warm workers: a burst at cold ones is all throttled
            assert list(pool.map(lambda sql: rows(run_query(engine, sql)), [calls[0][0]] * 3)) == [calls[0][1]] * 3

        def call(sql: str):
            try:
                return "answer", rows(run_query(engine, sql))
            except EngineError as error:
                return "engine error", str(error)

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(call, sql) for sql, _ in calls]
            done, not_done = wait(futures, timeout=90)
        assert not not_done, f"{len(not_done)} calls never came back"
        assert time.monotonic() - started < 90

        outcomes = [future.result() for future in futures]  # a LakeQueryError or anything else fails here
        right = [i for i, (kind, value) in enumerate(outcomes) if kind == "answer" and value == calls[i][1]]
        wrong = [(calls[i][0], value) for i, (kind, value) in enumerate(outcomes) if kind == "answer" and i not in right]
        throttled = [value for kind, value in outcomes if kind == "engine error" and "is throttled" in value]
        other = [value for kind, value in outcomes if kind == "engine error" and "is throttled" not in value]
        assert not wrong and not other, (wrong, other)
        assert len(right) + len(throttled) == len(calls)
        assert len(right) >= 10, f"only {len(right)} of {len(calls)} were served"

        # A worker the pool replaced may take a moment to exit after its successor started.
        deadline = time.monotonic() + 5
        while len(worker_pids() - before) > 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(worker_pids() - before) <= 3
        for sql, expected in calls[:4]:  # still serving, one at a time
            assert rows(run_query(engine, sql)) == expected


# --- 8. the result cannot be written -----------------------------------------------------------------------


def test_a_result_that_cannot_be_written_is_lake_unavailable(aws_environment, monkeypatch):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=GONE_BUCKET)
    before = worker_pids()
    try:
        with function(f"s3://{GONE_BUCKET}", aws_environment, monkeypatch, max_workers=1):
            engine = LambdaEngine(FUNCTION)
            assert run_query(engine, BIG_SQL).result_id  # written
            (pid,) = worker_pids() - before
            kept = local_copies(pid)
            assert len(kept) == 1  # the worker keeps its local copy for later pages

            empty_prefix(s3, GONE_BUCKET)
            s3.delete_bucket(Bucket=GONE_BUCKET)
            with pytest.raises(LakeQueryError) as unwritable:
                run_query(engine, BIG_SQL)
            assert unwritable.value.error_type == "LakeUnavailable", str(unwritable.value)
            message = unwritable.value.message
            assert f"writing s3://{GONE_BUCKET}/{RESULTS_PREFIX}" in message and "bucket does not exist" in message
            assert len(message) < 400, message
            assert local_copies(pid) == kept  # no page will ask for the result never answered: no copy of it

            s3.create_bucket(Bucket=GONE_BUCKET)
            assert run_query(engine, BIG_SQL).total_rows == BIG_ROWS
    finally:
        with contextlib.suppress(s3.exceptions.NoSuchBucket):
            empty_prefix(s3, GONE_BUCKET)
            s3.delete_bucket(Bucket=GONE_BUCKET)
