"""`lakemagic serve` under abuse: event floods, half-sent requests, idle and slow connections.

Each test bounds the abuse in count and time, checks the endpoint answers
what Lambda would, and ends by proving it healthy: the next ordinary invoke
answers correctly. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from lakemagic.locallambda import FunctionSpec, LocalLambda
from lakemagic.locallambda.connections import ConnectionLimits
from lakemagic.locallambda.events import EventPolicy

from test_local_lambda import FIXTURES, invoke, make_client

FUNCTIONS = {
    "echo": FunctionSpec(f"{FIXTURES}.echo"),
    "record": FunctionSpec(f"{FIXTURES}.record", max_workers=2),
}
EVENTS = EventPolicy(max_events=4, max_bytes=1 << 20, max_age_s=30, max_retries=2, retry_delay_s=0.2,
                     throttle_first_wait_s=0.05, throttle_max_wait_s=0.2)
LIMITS = ConnectionLimits(max_connections=8, idle_timeout_s=2, header_timeout_s=1, body_timeout_s=1)
SLACK_S = 2.0  # a loaded 2-core machine's margin on every timing below


@pytest.fixture
def endpoint():
    with LocalLambda(FUNCTIONS, events=EVENTS, limits=LIMITS) as local:
        yield local


@pytest.fixture
def client(endpoint):
    return make_client(endpoint.endpoint_url)


def assert_healthy(client):
    """The ordinary call every test ends with."""
    _, payload = invoke(client, "echo", {"ordinary": [1, "two"]})
    assert payload == {"ordinary": [1, "two"]}


def runs(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def send_event(client, event: dict):
    return client.invoke(FunctionName="record", InvocationType="Event", Payload=json.dumps(event))


# --- Event invocations: a bounded queue, one dispatcher --------------------------------------------


def test_an_event_flood_is_bounded_and_synchronous_calls_are_served_meanwhile(endpoint, client, tmp_path):
    log = tmp_path / "runs"
    threads_before = threading.active_count()
    padding = "x" * 100_000
    accepted, refused = [], []
    for number in range(20):
        event = {"path": str(log), "name": f"e{number}", "sleep": 0.3, "padding": padding}
        try:
            assert send_event(client, event)["StatusCode"] == 202
            accepted.append(f"e{number}")
        except ClientError as error:
            refused.append(error.response)
    assert len(accepted) == EVENTS.max_events and len(refused) == 20 - EVENTS.max_events
    assert {response["ResponseMetadata"]["HTTPStatusCode"] for response in refused} == {429}
    assert {response["Error"]["Code"] for response in refused} == {"TooManyRequestsException"}
    assert threading.active_count() <= threads_before + 2  # no thread per event

    # While events are queued, one worker runs them; a synchronous call gets the other at once.
    started = time.monotonic()
    _, name = invoke(client, "record", {"path": str(tmp_path / "sync-runs"), "name": "sync"})
    assert name == "sync" and time.monotonic() - started < 1 + SLACK_S
    assert endpoint.queued_events > 0

    assert wait_until(lambda: endpoint.queued_events == 0, 4 * 0.3 + 5 + SLACK_S)
    assert sorted(runs(log)) == sorted(accepted)  # each accepted event ran once, the refused ones never
    assert_healthy(client)


def test_a_failing_event_is_retried_twice_then_dropped(endpoint, client, tmp_path):
    log = tmp_path / "runs"
    send_event(client, {"path": str(log), "name": "failing", "fail": True})
    assert wait_until(lambda: len(runs(log)) == 3, 0.2 + 0.4 + 5 + SLACK_S)
    assert wait_until(lambda: endpoint.queued_events == 0, SLACK_S)
    time.sleep(1.0)  # longer than the next retry would wait
    assert runs(log) == ["failing"] * 3
    assert_healthy(client)


def test_an_event_older_than_the_maximum_age_is_dropped(client, tmp_path):
    young = EventPolicy(max_events=4, max_age_s=0.5, retry_delay_s=0.2)
    with LocalLambda(FUNCTIONS, events=young, limits=LIMITS) as local:
        client = make_client(local.endpoint_url)
        log = tmp_path / "runs"
        send_event(client, {"path": str(log), "name": "long", "sleep": 1.5})
        send_event(client, {"path": str(log), "name": "late"})  # waits behind the long one, past its age
        assert wait_until(lambda: local.queued_events == 0, 1.5 + 5 + SLACK_S)
        assert runs(log) == ["long"]
        assert_healthy(client)


# --- HTTP connections: read deadlines and a cap -----------------------------------------------------


def _address(endpoint) -> tuple[str, int]:
    host, port = urllib.parse.urlsplit(endpoint.endpoint_url).netloc.split(":")
    return host, int(port)


def _read_until_closed(connection: socket.socket, timeout_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it (monotonic)."""
    connection.settimeout(timeout_s)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received, time.monotonic()


def _half_sent(endpoint) -> socket.socket:
    """A connection whose headers announce a 1,000-byte body that never comes."""
    host, port = _address(endpoint)
    connection = socket.create_connection((host, port), timeout=10)
    connection.sendall(
        f"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: {host}\r\n"
        "Authorization: AWS4-HMAC-SHA256 Credential=x\r\nContent-Length: 1000\r\n\r\n".encode()
    )
    return connection


def test_half_sent_requests_do_not_hold_the_server(endpoint, client):
    sent = time.monotonic()
    connections = [_half_sent(endpoint) for _ in range(LIMITS.max_connections - 2)]
    try:
        assert_healthy(client)  # answered while every half-sent request is still held
        for connection in connections:
            answer, closed = _read_until_closed(connection, LIMITS.body_timeout_s + 2 * SLACK_S)
            assert closed - sent < LIMITS.body_timeout_s + 2 * SLACK_S
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 ")
            assert b"x-amzn-ErrorType: RequestTimeoutException" in head.split(b"\r\n")
            assert "not read from within the timeout" in json.loads(body)["message"]
    finally:
        for connection in connections:
            connection.close()
    assert_healthy(client)


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_deadline(endpoint, client):
    host, port = _address(endpoint)
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\n")
        started = time.monotonic()
        with pytest.raises(OSError):  # the server closes it: a send fails, or a read ends
            for _ in range(int((LIMITS.header_timeout_s + 2 * SLACK_S) / 0.1)):
                connection.sendall(b"X")
                time.sleep(0.1)
                connection.setblocking(False)
                try:
                    if connection.recv(1) == b"":
                        raise ConnectionResetError("closed by the server")
                except BlockingIOError:
                    pass
                connection.setblocking(True)
        assert time.monotonic() - started < LIMITS.header_timeout_s + 2 * SLACK_S
    assert_healthy(client)


def test_connections_beyond_the_cap_are_refused_with_429_and_idle_ones_closed(endpoint, client):
    host, port = _address(endpoint)
    opened = time.monotonic()
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.2)  # every one of them accepted and holding a slot
        with socket.create_connection((host, port), timeout=10) as extra:
            extra.sendall(f"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: {host}\r\n"
                          "Content-Length: 2\r\n\r\n{}".encode())
            answer, _ = _read_until_closed(extra, SLACK_S)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429 ")
        assert b"x-amzn-ErrorType: TooManyRequestsException" in head.split(b"\r\n")
        assert json.loads(body)["Reason"] == "CallerRateLimitExceeded"
        for connection in idle:  # closed, without an answer, once the idle timeout passes
            answer, closed = _read_until_closed(connection, LIMITS.idle_timeout_s + 2 * SLACK_S)
            assert answer == b"" and closed - opened < LIMITS.idle_timeout_s + 2 * SLACK_S
    finally:
        for connection in idle:
            connection.close()
    assert_healthy(client)


# --- DNS rebinding: a request must name this server -----------------------------------------------

def raw_invoke(endpoint, host_lines: bytes, body: bytes = b'{"ordinary": 1}') -> bytes:
    """One signed-looking invocation of echo with these Host header lines, as a page whose own domain was
    made to resolve to 127.0.0.1 could send it (same origin, so it may set any header); the whole reply."""
    port = int(endpoint.endpoint_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\n" + host_lines +
                           b"Authorization: AWS4-HMAC-SHA256 Credential=x\r\nConnection: close\r\n"
                           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize("hosts", [
    "evil.example:{port}", "evil.example", "127.0.0.1.nip.io:{port}", "localhost.evil.example:{port}",
    "127.0.0.1", "127.0.0.1:1", "127.0.0.1:{port}0", "127.0.0.2:{port}", "[::1]:{port}", ":{port}", "",
    "127.0.0.1:{port}\r\nHost: evil.example:{port}", "evil.example:{port}\r\nHost: 127.0.0.1:{port}", None,
])
def test_a_request_whose_host_is_not_this_server_is_refused_and_runs_nothing(endpoint, client, hosts):
    port = endpoint.endpoint_url.rsplit(":", 1)[1]
    lines = b"" if hosts is None else f"Host: {hosts.format(port=port)}\r\n".encode()
    reply = raw_invoke(endpoint, lines)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"x-amzn-ErrorType: InvalidRequestContentException" in reply, reply
    assert b"must name the address this endpoint listens on" in reply
    assert endpoint.recycle() == 0  # no worker was started: nothing ran
    assert_healthy(client)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_a_request_naming_this_server_is_served(endpoint, host):
    port = endpoint.endpoint_url.rsplit(":", 1)[1]
    reply = raw_invoke(endpoint, f"Host: {host.format(port=port)}\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"ordinary": 1}'), reply
