"""The S3 proxy's model of real S3: a wait before each answer's first byte, then a bounded rate per connection.

Against moto on 127.0.0.1, with a model slow enough to measure on a loaded
machine: a GET of 8 MB at 8 MB/s takes a second more than its first
byte; two at once on two connections take about as long as one (the rate
is per connection, as on S3), and the bytes are the object's.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from lakemagic.locallambda.s3proxy import S3Model, S3Proxy

from servers import FAKE_KEYS

BUCKET = "s3-model"  # this module's own
SIZE = 8 * 2**20
MODEL = S3Model(first_byte_s=0.1, bytes_per_s=8e6)
BODY_S = SIZE / MODEL.bytes_per_s  # 1.05 s


@pytest.fixture(scope="module")
def modelled(moto_endpoint):
    data = os.urandom(SIZE)
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", **FAKE_KEYS).create_bucket(Bucket=BUCKET)
    with S3Proxy(moto_endpoint, model=MODEL) as proxy:
        s3 = boto3.client("s3", endpoint_url=proxy.endpoint_url, region_name="us-east-1", **FAKE_KEYS)
        s3.put_object(Bucket=BUCKET, Key="object", Body=data)
        yield proxy, s3, data


def _get(s3) -> tuple[bytes, float]:
    started = time.monotonic()
    body = s3.get_object(Bucket=BUCKET, Key="object")["Body"].read()
    return body, time.monotonic() - started


def test_a_get_waits_for_its_first_byte_then_streams_at_the_connections_rate(modelled):
    _, s3, data = modelled
    body, took = _get(s3)
    assert body == data
    assert MODEL.first_byte_s + BODY_S * 0.95 <= took < MODEL.first_byte_s + BODY_S + 1.5
    started = time.monotonic()
    s3.head_object(Bucket=BUCKET, Key="object")
    assert MODEL.first_byte_s <= time.monotonic() - started < MODEL.first_byte_s + 1.0


def test_the_rate_is_per_connection(modelled):
    proxy, s3, data = modelled
    proxy.reset()
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        results = list(pool.map(lambda _: _get(s3), range(2)))
        took = time.monotonic() - started
    assert all(body == data for body, _ in results)
    assert took < MODEL.first_byte_s + 1.6 * BODY_S  # not the 2 x BODY_S a rate shared by both would take
    assert proxy.requests["GET"] == 2
