"""Real servers on 127.0.0.1 for the Lambda path: an S3 API (moto) and the local Lambda endpoint.

tests/conftest.py loads these fixtures for every test module; nothing here
mocks boto3, DuckDB or S3.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lakemagic.locallambda import FunctionSpec, LocalLambda
from lakemagic.locallambda.layout import LAKE_PACKAGES
from lakemagic.taxi import build_lake, load_lake

BUCKET = "lake"
OTHER_BUCKET = "not-the-lake"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
FAKE_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # the same, as boto3 names them
FUNCTION = "lakemagic"


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's AWS APIs (S3, IAM, Lambda's control plane) on 127.0.0.1, one server for the session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def aws_environment(moto_endpoint):
    """Fake credentials and the S3 endpoint for this process, as a user's shell would have them."""
    saved = dict(os.environ)
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL_S3=moto_endpoint)
    yield dict(CREDENTIALS, AWS_ENDPOINT_URL_S3=moto_endpoint)
    os.environ.clear()
    os.environ.update(saved)


TAXI_ROWS = 20_000


@pytest.fixture(scope="session")
def local_taxi_lake(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("local-lake")
    build_lake(str(folder), rows=TAXI_ROWS)
    return folder


@pytest.fixture(scope="session")
def s3_lake(aws_environment) -> str:
    """The same taxi lake as `local_taxi_lake` (the same rows), loaded into the S3 server as `lakemagic load`
    does it, its Iceberg table's files named in the bucket; plus a bucket that is off limits."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=OTHER_BUCKET)
    load_lake(f"s3://{BUCKET}", rows=TAXI_ROWS, s3=s3)
    s3.put_object(Bucket=OTHER_BUCKET, Key="secret.csv", Body=b"password\nhunter2\n")
    return f"s3://{BUCKET}"


def start_function(s3_lake: str, aws_environment: dict, env: dict | None = None, **spec) -> LocalLambda:
    env = dict(aws_environment, LAKEMAGIC_LAKE=s3_lake, **(env or {}))
    options = {"timeout_s": 60.0, "memory_mb": 2048, "max_workers": 2, **spec}
    options.setdefault("packages", LAKE_PACKAGES)  # imports as on Lambda: no pandas, no site-packages
    local = LocalLambda({FUNCTION: FunctionSpec("lakelambda.handler.handler", env=env, **options)})
    local.start()
    return local


@pytest.fixture(scope="session")
def lambda_endpoint(s3_lake, aws_environment):
    """The lake handler behind the Lambda Invoke API, with AWS_ENDPOINT_URL_LAMBDA pointing at it."""
    local = start_function(s3_lake, aws_environment)
    saved = os.environ.get("AWS_ENDPOINT_URL_LAMBDA")
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = local.endpoint_url
    yield local
    local.stop()
    if saved is None:
        os.environ.pop("AWS_ENDPOINT_URL_LAMBDA", None)
    else:
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = saved


@pytest.fixture(scope="module")
def storing_function(s3_lake, aws_environment):
    """The function with every result stored, so an operation on a result runs on its stored file."""
    local = start_function(s3_lake, aws_environment, env={"LAKEMAGIC_INLINE_RESULT_BYTES": "0"})
    yield local
    local.stop()


@pytest.fixture(params=["local", "lambda"])
def shell_on_both_engines(request, ipython, local_taxi_lake):
    """The IPython shell on the embedded engine over the taxi lake, then on the Lambda path over the same lake."""
    if request.param == "lambda":
        request.getfixturevalue("lambda_endpoint")
        ipython.run_line_magic("config", "LakeMagic.engine = 'lambda'")
        ipython.run_line_magic("config", f"LakeMagic.function_name = {FUNCTION!r}")
    else:
        ipython.run_line_magic("config", f"LakeMagic.lake = {str(local_taxi_lake)!r}")
    return ipython


def worker_pids() -> set[int]:
    """This process's LocalLambda workers, known by the first line of the code they run."""
    pids = set()
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in children.read_text().split())
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"# lakemagic-worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
    return found
