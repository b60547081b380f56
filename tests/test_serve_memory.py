"""Memory bombs on `lakemagic serve`: the function's memory is enforced as Lambda enforces it.

DuckDB's string and list building can run past its memory_limit. Each bomb
here must end as a clean answer (DuckDB's out-of-memory error, or
ResultTooLarge) or as Lambda's Runtime.OutOfMemory FunctionError, with the
worker killed and the next call answered by a fresh one; never the
endpoint, never this process (the notebook's kernel). The function has
512 MB, so a bomb costs this shared machine half a GB for a moment.
"""

from __future__ import annotations

import base64
import json
import resource
import time

import boto3

import pytest

from lakelambda.database import remove_stale_scratch_folders
from lakemagic.client import run_query
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.errors import EngineError, LakeQueryError

from servers import FUNCTION, start_function
from test_faults import lake_trips, rows, worker_pids

MEMORY_MB = 512
TIMEOUT_S = 30.0
LAKE_SQL = "SELECT count(*) AS trips FROM taxi_2019_04"
BOMBS = {
    "repeat": "SELECT repeat('x', 1000000000) AS s",
    "repeat_length": "SELECT length(repeat('x', 2000000000)) AS n",
    "string_agg": "SELECT string_agg(repeat('x', 1000), ',') AS s FROM range(2000000)",
    "list": "SELECT list(i) AS l FROM range(200000000) AS t(i)",
    "unnest": "SELECT max(u) AS m FROM (SELECT unnest(list(i)) AS u FROM range(200000000) AS t(i))",
    "cross_lists": "SELECT list(repeat('y', 100)) AS l FROM range(10000) a, range(1000) b",
}


@pytest.fixture(scope="module")
def small_function(s3_lake, aws_environment):
    local = start_function(s3_lake, aws_environment, memory_mb=MEMORY_MB, timeout_s=TIMEOUT_S, max_workers=1)
    yield local
    local.stop()
    remove_stale_scratch_folders()


@pytest.fixture
def engine(small_function, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", small_function.endpoint_url)
    return LambdaEngine(FUNCTION, timeout_s=TIMEOUT_S)


def _own_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_memory_bomb_ends_as_a_clean_error_and_the_next_query_answers(bomb, engine, local_taxi_lake):
    trips = lake_trips(local_taxi_lake)
    assert rows(run_query(engine, LAKE_SQL)) == [(trips,)]
    workers_before = worker_pids()
    kernel_peak = _own_peak_rss_mb()
    started = time.monotonic()
    with pytest.raises((LakeQueryError, EngineError)) as failed:
        run_query(engine, BOMBS[bomb], reuse=False)
    assert time.monotonic() - started < TIMEOUT_S  # ended by memory, not by the function's timeout
    error = failed.value
    if isinstance(error, LakeQueryError):  # the handler caught it: DuckDB's own limit, or the result cap
        assert error.error_type in ("OutOfMemoryException", "ResultTooLarge"), str(error)
        assert "memory" in error.message.lower() or "too large" in error.message.lower(), error.message
    else:  # Lambda's answer for a process past its memory: the worker is gone
        assert "ran out of memory" in str(error), str(error)
        assert workers_before - worker_pids(), "the worker past its memory must be killed"
    assert _own_peak_rss_mb() < kernel_peak + 256, "the bomb's data reached the notebook's process"
    assert rows(run_query(engine, LAKE_SQL)) == [(trips,)]


def test_a_worker_past_its_memory_is_killed_with_lambdas_error(small_function):
    """On the Invoke API itself: Runtime.OutOfMemory as a FunctionError, then a fresh (cold) worker."""
    client = boto3.client("lambda", endpoint_url=small_function.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    request = {"version": 1, "op": "query", "sql": BOMBS["repeat"], "params": {}, "page_size": 10, "reuse": False}
    response = client.invoke(FunctionName=FUNCTION, Payload=json.dumps(request), LogType="Tail")
    document = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert document == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {response['ResponseMetadata']['RequestId']} "
                        "Error: Runtime exited with error: signal: killed",
    }
    request = {"version": 1, "op": "query", "sql": LAKE_SQL, "params": {}, "page_size": 10}
    response = client.invoke(FunctionName=FUNCTION, Payload=json.dumps(request), LogType="Tail")
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read())["total_rows"] == 1
    assert "Init Duration" in base64.b64decode(response["LogResult"]).decode()  # a fresh worker
