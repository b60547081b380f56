"""The local Lambda, driven by the real boto3 client the way lakemagic drives AWS Lambda."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lakemagic.locallambda import (
    SYNC_REQUEST_LIMIT_BYTES,
    SYNC_RESPONSE_LIMIT_BYTES,
    FunctionSpec,
    LocalLambda,
)

from servers import worker_pids

# The fixture handlers sit next to this file. Name them the way pytest imported this
# module; workers of a function without packages get this process's sys.path, so they can import them too.
FIXTURES = f"{__package__}.lambda_fixture_handlers" if __package__ else "lambda_fixture_handlers"

FUNCTIONS = {
    "echo": FunctionSpec(f"{FIXTURES}.echo"),
    "behave": FunctionSpec(f"{FIXTURES}.behave", timeout_s=10),
    "slow": FunctionSpec(f"{FIXTURES}.behave", timeout_s=1),
    "single": FunctionSpec(f"{FIXTURES}.behave", max_workers=1),
    "big": FunctionSpec(f"{FIXTURES}.big_response"),
    "unserializable": FunctionSpec(f"{FIXTURES}:unserializable"),
    "write-file": FunctionSpec(f"{FIXTURES}.write_file"),
    "describe": FunctionSpec(
        f"{FIXTURES}.describe", env={"LAKEMAGIC_TEST_SETTING": "from-spec"}, timeout_s=7, memory_mb=256
    ),
    "missing-module": FunctionSpec("lakemagic_no_such_module.handler"),
}


def make_client(endpoint_url=None):
    """A plain boto3 Lambda client; no retries, so throttling reaches the test."""
    return boto3.client(
        "lambda",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


@pytest.fixture(scope="module")
def local_lambda():
    others = worker_pids()  # workers of servers other test modules keep running
    with LocalLambda(FUNCTIONS) as server:
        yield server
    assert worker_pids() - others == set(), "stop() must not leave worker processes behind"


@pytest.fixture(scope="module")
def client(local_lambda):
    return make_client(local_lambda.endpoint_url)


def invoke(client, function_name, event=None, **kwargs):
    response = client.invoke(FunctionName=function_name, Payload=json.dumps(event or {}), **kwargs)
    return response, json.loads(response["Payload"].read())


def request_id(response):
    return response["ResponseMetadata"]["RequestId"]


def test_echo_round_trip(client):
    event = {"sql": "select 1", "params": [1, "a", None]}
    response, payload = invoke(client, "echo", event)
    assert payload == event
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert uuid.UUID(request_id(response))


def test_function_can_be_named_by_arn(client):
    _, payload = invoke(client, "arn:aws:lambda:us-east-1:000000000000:function:echo:live", {"a": 1})
    assert payload == {"a": 1}


def test_warm_worker_is_reused(local_lambda, client):
    local_lambda.recycle()
    _, first = invoke(client, "behave")
    _, second = invoke(client, "behave")
    assert first["cold"] and not second["cold"]
    assert first["pid"] == second["pid"]


def test_recycle_makes_the_next_call_cold(local_lambda, client):
    _, warm = invoke(client, "behave")
    assert local_lambda.recycle() >= 1
    _, after = invoke(client, "behave")
    assert after["cold"] and after["pid"] != warm["pid"]


def test_recycle_over_http(local_lambda, client):
    _, warm = invoke(client, "behave")
    request = urllib.request.Request(local_lambda.endpoint_url + "/_local/recycle", method="POST")
    with urllib.request.urlopen(request) as response:
        assert response.status == 204
    _, after = invoke(client, "behave")
    assert after["cold"] and after["pid"] != warm["pid"]


def test_unhandled_error_is_reported_and_worker_stays_warm(client):
    _, warm = invoke(client, "behave")
    response, payload = invoke(client, "behave", {"raise": "no such table: trips"})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "no such table: trips"
    assert payload["requestId"] == request_id(response)
    assert any("lambda_fixture_handlers.py" in line for line in payload["stackTrace"])
    _, after = invoke(client, "behave")
    assert after == {"pid": warm["pid"], "cold": False}


def test_timeout_kills_the_worker(client):
    _, warm = invoke(client, "slow")
    started = time.monotonic()
    response, payload = invoke(client, "slow", {"sleep": 5})
    assert time.monotonic() - started < 3
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {request_id(response)} Error: Task timed out after 1.00 seconds",
    }
    _, after = invoke(client, "slow")
    assert after["cold"] and after["pid"] != warm["pid"]


def test_worker_that_exits_is_replaced(client):
    _, warm = invoke(client, "behave")
    response, payload = invoke(client, "behave", {"exit": 3})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert payload["errorMessage"] == (
        f"RequestId: {request_id(response)} Error: Runtime exited with error: exit status 3"
    )
    _, after = invoke(client, "behave")
    assert after["cold"] and after["pid"] != warm["pid"]


def test_context_matches_lambda(client):
    response, payload = invoke(client, "describe")
    assert payload["context"] == {
        "function_name": "describe",
        "function_version": "$LATEST",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:describe",
        "memory_limit_in_mb": "256",  # a string, as the AWS runtime gives it
        "aws_request_id": request_id(response),
        "log_group_name": "/aws/lambda/describe",
        "log_stream_name": payload["context"]["log_stream_name"],
    }
    assert "/[$LATEST]" in payload["context"]["log_stream_name"]
    first, second = payload["remaining_ms"]
    assert 6000 < first <= 7000
    assert second < first


def test_function_env_is_set_before_the_handler_is_imported(client):
    names = [
        "LAKEMAGIC_TEST_SETTING",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ]
    _, payload = invoke(client, "describe", {"env": names})
    assert payload["setting_at_import"] == "from-spec"
    assert payload["env"] == dict(zip(names, ["from-spec", "describe", "256", "7", "us-east-1", "us-east-1"]))


def test_busy_function_at_max_workers_is_throttled(client):
    invoke(client, "single")  # warm, so the slow call below starts at once
    slow_call = threading.Thread(target=invoke, args=(client, "single", {"sleep": 1.5}))
    slow_call.start()
    time.sleep(0.5)
    try:
        with pytest.raises(client.exceptions.TooManyRequestsException) as raised:
            invoke(client, "single")
    finally:
        slow_call.join()
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"] == {"Code": "TooManyRequestsException", "Message": "Rate Exceeded."}
    assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    _, after = invoke(client, "single")  # the slot is free again
    assert not after["cold"]


def test_unknown_function(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        invoke(client, "no-such-function")
    assert raised.value.response["Error"]["Message"] == (
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:no-such-function"
    )


def test_request_payload_limit(client):
    at_limit = json.dumps("x" * (SYNC_REQUEST_LIMIT_BYTES - 2))
    assert len(at_limit) == SYNC_REQUEST_LIMIT_BYTES
    response = client.invoke(FunctionName="echo", Payload=at_limit)
    assert len(response["Payload"].read()) == SYNC_REQUEST_LIMIT_BYTES

    with pytest.raises(ClientError) as raised:
        client.invoke(FunctionName="echo", Payload=at_limit + " ")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"] == {
        "Code": "RequestEntityTooLargeException",
        "Message": "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
    }


def test_response_payload_limit(client):
    response = client.invoke(FunctionName="big", Payload=json.dumps({"bytes": SYNC_RESPONSE_LIMIT_BYTES}))
    assert "FunctionError" not in response
    assert len(response["Payload"].read()) == SYNC_RESPONSE_LIMIT_BYTES

    response, payload = invoke(client, "big", {"bytes": SYNC_RESPONSE_LIMIT_BYTES + 1})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Function.ResponseSizeTooLarge"
    assert payload["errorMessage"].endswith("exceeded maximum allowed payload size (6291556 bytes).")


def test_result_that_is_not_json(client):
    response, payload = invoke(client, "unserializable")
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.MarshalError"
    assert payload["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


def test_handler_that_cannot_be_imported(client):
    response, payload = invoke(client, "missing-module")
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert payload["errorMessage"] == (
        "Unable to import module 'lakemagic_no_such_module': No module named 'lakemagic_no_such_module'"
    )


def test_log_tail_has_what_the_handler_printed(client):
    response, _ = invoke(client, "behave", {"print": "hello from the handler"}, LogType="Tail")
    log = base64.b64decode(response["LogResult"]).decode()
    assert f"START RequestId: {request_id(response)} Version: $LATEST" in log
    assert "hello from the handler\n" in log
    assert f"REPORT RequestId: {request_id(response)}" in log


@pytest.mark.parametrize("content_length", ["-1", "abc", "+5", ""])
def test_malformed_content_length_is_refused_at_once(local_lambda, content_length):
    """A 400 at once, not a server thread blocked reading; the body's end is unknown, so the connection closes."""
    host, port = urllib.parse.urlsplit(local_lambda.endpoint_url).netloc.split(":")
    request = (
        "POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\n"
        f"Host: {host}\r\nContent-Length: {content_length}\r\n\r\n"
    )
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(request.encode())
        response = connection.makefile("rb").read()  # to the end: the server closes the connection
    assert time.monotonic() - started < 2
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"x-amzn-ErrorType: InvalidRequestContentException" in head.split(b"\r\n")
    assert json.loads(body) == {
        "Type": "User",
        "message": f"Content-Length must be a non-negative integer, got {content_length!r}",
    }


def test_dry_run_and_event_invocations(client, tmp_path):
    assert client.invoke(FunctionName="echo", InvocationType="DryRun")["StatusCode"] == 204

    marker = tmp_path / "event-ran"
    event = {"path": str(marker), "text": "done"}
    response = client.invoke(FunctionName="write-file", InvocationType="Event", Payload=json.dumps(event))
    assert response["StatusCode"] == 202
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "done"


def test_serve_command(monkeypatch):
    """`lakemagic serve` serves until SIGTERM and takes its workers down with it."""
    command = [
        sys.executable, "-m", "lakemagic.cli", "serve",
        "--port", "0", "--function-name", "cli", "--handler", f"{FIXTURES}.behave", "--max-workers", "1",
        "--server-path",
    ]
    child_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env)
    try:
        banner = server.stdout.readline()
        endpoint_url = re.search(r"AWS_ENDPOINT_URL_LAMBDA=(\S+)", banner)[1]
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint_url)
        _, payload = invoke(make_client(), "cli")
        assert payload["cold"]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        server.kill()
        server.stdout.close()
    with pytest.raises(ProcessLookupError):
        os.kill(payload["pid"], 0)


def test_a_web_page_cannot_invoke_the_local_endpoint(local_lambda):
    """A browser's cross-origin POST carries an Origin and no SigV4 signature; both are refused."""
    import urllib.error
    import urllib.request

    for headers in ({"Content-Type": "text/plain"},
                    {"Content-Type": "text/plain", "Origin": "http://127.0.0.1:1",
                     "Authorization": "AWS4-HMAC-SHA256 Credential=x"}):
        request = urllib.request.Request(f"{local_lambda.endpoint_url}/2015-03-31/functions/echo/invocations",
                                         data=b"{}", headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
