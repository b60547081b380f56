"""Big results on the Lambda path (moto S3 + lakemagic serve) with the scratch space made small.

A result the engine holds in more than the local copies' share of the scratch
space is written by DuckDB straight into the lake's results area (a multipart
upload), never into /tmp; one over the cap is refused before any file is written.
"""

from __future__ import annotations

import os

import boto3
import pandas as pd
import pytest

from lakelambda import protocol
from lakelambda.database import Settings
from lakelambda.handler import LakeHandler
from lakemagic import client
from lakemagic.engines.aws_lambda import LambdaEngine
from lakemagic.engines.embedded import EmbeddedEngine
from lakemagic.errors import LakeQueryError

from servers import BUCKET, FUNCTION
from test_faults import function, local_copies, worker_pids
import events

SCRATCH_BYTES = 2 * 1024 * 1024
# Ten copies of the taxi sample: several MB as Parquet, far more than the scratch space.
BIG = ("SELECT t.*, copy FROM taxi_2019_04 AS t, range(10) AS c(copy) "
       "ORDER BY copy, pickup_at, dropoff_at, total_amount, pickup_location_id")
# Some 700 MB in DuckDB's memory, more than a 512 MB function has (and far more than a 128 MB one).
MORE_THAN_512_MB_HOLD = "SELECT range AS id, repeat('x', 200) || range AS label FROM range(3000000)"


def results_in_the_lake() -> dict[str, int]:
    listing = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="_lakemagic/results/")
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


@pytest.fixture
def small_scratch(s3_lake, aws_environment, monkeypatch):
    """The function with a scratch space of SCRATCH_BYTES; yields the worker pids there were before it."""
    before = worker_pids()
    with function(s3_lake, aws_environment, monkeypatch, env={"LAKEMAGIC_SCRATCH_BYTES": str(SCRATCH_BYTES)},
                  max_workers=1):
        yield before


@pytest.fixture(scope="module")
def expected(local_taxi_lake) -> pd.DataFrame:
    return client.run_query(EmbeddedEngine(str(local_taxi_lake)), BIG, reuse=False).to_dataframe()


def test_a_result_larger_than_the_scratch_space_is_stored_paged_and_fetched_whole(small_scratch, expected):
    result = client.run_query(LambdaEngine(FUNCTION), BIG, page_size=100, reuse=False)
    stored = results_in_the_lake()[f"_lakemagic/results/{result.result_id}.parquet"]
    assert stored == result.info.result_bytes > SCRATCH_BYTES
    (pid,) = worker_pids() - small_scratch
    assert local_copies(pid) == []  # it never passed the function's /tmp
    assert result.total_rows == len(expected) == 200_000
    pd.testing.assert_frame_equal(result.page(150_000, 100).frame(), expected.iloc[150_000:150_100].reset_index(drop=True))
    pd.testing.assert_frame_equal(result.to_dataframe(), expected)


def test_a_result_over_the_cap_is_refused_before_anything_is_written(s3_lake, aws_environment, monkeypatch):
    env = {"LAKEMAGIC_MAX_RESULT_BYTES": str(SCRATCH_BYTES)}
    with function(s3_lake, aws_environment, monkeypatch, env=env, max_workers=1):
        before = results_in_the_lake()
        with pytest.raises(LakeQueryError) as refused:
            client.run_query(LambdaEngine(FUNCTION), BIG, reuse=False)
        assert refused.value.error_type == "ResultTooLarge"
        assert "LIMIT" in refused.value.message and "--materialize" in refused.value.message
        assert len(refused.value.message) < 300, refused.value.message
        assert results_in_the_lake() == before
        small = client.run_query(LambdaEngine(FUNCTION), "SELECT count(*) AS n FROM taxi_2019_04", reuse=False)
        assert small.to_dataframe()["n"].tolist() == [20_000]  # the cap is per result


def test_a_result_the_function_cannot_hold_is_refused_in_its_own_words(s3_lake, aws_environment, monkeypatch):
    """Past the function's memory and spill space the answer is the cap's error, not DuckDB's out-of-memory advice."""
    with function(s3_lake, aws_environment, monkeypatch, memory_mb=512, max_workers=1,
                  env={"LAKEMAGIC_SCRATCH_BYTES": str(40 * 1024 * 1024)}):
        before = results_in_the_lake()
        with pytest.raises(LakeQueryError) as refused:
            client.run_query(LambdaEngine(FUNCTION), MORE_THAN_512_MB_HOLD, reuse=False)
        assert refused.value.error_type == "ResultTooLarge", refused.value.message
        assert "LIMIT" in refused.value.message and "--materialize" in refused.value.message
        assert "PRAGMA" not in refused.value.message
        assert results_in_the_lake() == before


def test_a_local_lake_streams_a_result_the_engine_could_not_hold(local_taxi_lake):
    """On a local lake the result goes from the query into its file as it runs: no copy of it is held."""
    handler = LakeHandler(str(local_taxi_lake), Settings(memory_mb=128, scratch_bytes=40 * 1024 * 1024))
    try:
        answer = protocol.parse_answer(handler(events.query_request(MORE_THAN_512_MB_HOLD, {}, 10, reuse=False)))
    finally:
        handler.close()
    try:
        assert isinstance(answer, protocol.PageAnswer), answer
        assert answer.result.total_rows == 3_000_000
    finally:  # the lake is the session's: its other tests need no 3M-row result beside them
        if isinstance(answer, protocol.PageAnswer) and answer.result.result_id:
            os.remove(local_taxi_lake / "_lakemagic" / "results" / f"{answer.result.result_id}.parquet")
