"""`LocalLambda`: the Lambda Invoke API over HTTP, in front of each function's worker pool.

The replies are what Lambda returns (payload limits, rest-json error
documents, the Tail log with its REPORT line), so a plain boto3 client sees
the same responses, errors included, as from AWS. `command` is `lakemagic serve`.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import math
import re
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .connections import ConnectionLimits, DeadlineReader, refuse
from .events import EventPolicy, EventQueue
from .pool import LATEST, FunctionPool, FunctionSpec, Throttled, function_arn, service_failure
from .runtime import Result

# Lambda quotas, in the exact numbers Lambda's own error messages use.
SYNC_REQUEST_LIMIT_BYTES = 6_291_456
EVENT_REQUEST_LIMIT_BYTES = 1_048_576
SYNC_RESPONSE_LIMIT_BYTES = 6_291_556
LOG_TAIL_BYTES = 4096  # X-Amz-Log-Result carries the last 4 KB of the log

DEFAULT_REGION = "us-east-1"
RECYCLE_PATH = "/_local/recycle"
INVOKE_PATH = re.compile(r"/2015-03-31/functions/(?P<function>[^/]+)/invocations")
CONTENT_LENGTH = re.compile(r"[0-9]+")  # HTTP's 1*DIGIT: no sign, so never a read of a negative size


@dataclass(frozen=True)
class _Reply:
    """An HTTP response, plus how to describe it in the invocation log (None: don't log)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    outcome: str | None = None


def _aws_error(status: int, error_type: str, document: dict[str, str]) -> _Reply:
    """A rest-json service error: botocore reads the code from x-amzn-ErrorType."""
    headers = {"x-amzn-ErrorType": error_type, "Content-Type": "application/json"}
    return _Reply(status, json.dumps(document).encode(), headers, f"{status} {error_type}")


def _too_many_requests(reason: str, retry_after_s: int | None = None) -> _Reply:
    """Lambda's throttling answer; botocore reads retryAfterSeconds from Retry-After."""
    reply = _aws_error(429, "TooManyRequestsException", {"Reason": reason, "Type": "User", "message": "Rate Exceeded."})
    if retry_after_s is None:
        return reply
    return replace(reply, headers={**reply.headers, "Retry-After": str(retry_after_s)})


def _request_too_large() -> _Reply:
    message = f"Request must be smaller than {SYNC_REQUEST_LIMIT_BYTES} bytes for the InvokeFunction operation"
    return _aws_error(413, "RequestEntityTooLargeException", {"Type": "User", "message": message})


def _request_timeout(what: str, timeout_s: float) -> _Reply:
    """Lambda documents no answer for a request that never arrives; AWS front ends (S3's RequestTimeout) close with this."""
    message = f"Your socket connection to the server was not read from within the timeout period ({what}: {timeout_s:g} s)"
    reply = _aws_error(408, "RequestTimeoutException", {"Type": "User", "message": message})
    return replace(reply, headers={**reply.headers, "Connection": "close"})


def _bad_content_length(message: str) -> _Reply:
    """Where such a body ends is unknown, so the connection closes after this reply."""
    reply = _aws_error(400, "InvalidRequestContentException", {"Type": "User", "message": message})
    return replace(reply, headers={**reply.headers, "Connection": "close"})


def _within_response_limit(result: Result) -> Result:
    if result.error_type is None and len(result.payload) > SYNC_RESPONSE_LIMIT_BYTES:
        message = (
            f"Response payload size ({len(result.payload)} bytes) exceeded maximum allowed "
            f"payload size ({SYNC_RESPONSE_LIMIT_BYTES} bytes)."
        )
        return service_failure("Function.ResponseSizeTooLarge", message)
    return result


def _function_name(identifier: str) -> str:
    """Accept what Lambda accepts: a name, `name:qualifier`, or a full or partial ARN."""
    identifier = urllib.parse.unquote(identifier)
    if ":function:" in identifier:
        identifier = identifier.split(":function:", 1)[1]
    return identifier.split(":", 1)[0]


def _outcome(result: Result) -> str:
    return "ok" if result.error_type is None else f"Unhandled {result.error_type}"


def _log_tail(request_id: str, result: Result, duration_ms: float, memory_mb: int) -> str:
    """Base64 of the last 4 KB of the invocation's log, framed like Lambda's."""
    log = (
        f"START RequestId: {request_id} Version: {LATEST}\n{result.output}"
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB"
        + (f"\tMax Memory Used: {result.max_memory_mb} MB" if result.max_memory_mb is not None else "")
        + (f"\tInit Duration: {result.init_ms:.2f} ms" if result.init_ms is not None else "")
        + "\n"
    )
    return base64.b64encode(log.encode()[-LOG_TAIL_BYTES:]).decode()


def _log_invocation(function_name: str, request_id: str, started: float, outcome: str) -> None:
    duration_ms = (time.monotonic() - started) * 1000
    sys.stderr.write(
        f"local-lambda function={function_name} request_id={request_id} "
        f"duration_ms={duration_ms:.1f} outcome={outcome}\n"
    )


class LocalLambda:
    """Serves the Lambda Invoke API for `functions` on http://host:port.

    `port=0` picks a free port; `start()` returns the endpoint URL, also kept
    in `endpoint_url`. Use as a context manager, or call `stop()`, which also
    kills every worker process.
    """

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = DEFAULT_REGION,
        events: EventPolicy = EventPolicy(),
        limits: ConnectionLimits = ConnectionLimits(),
    ) -> None:
        self.region = region
        self.endpoint_url: str | None = None
        self._address = (host, port)
        self._pools = {name: FunctionPool(name, spec, region) for name, spec in functions.items()}
        self._events_policy = events
        self._events: EventQueue | None = None
        self.limits = limits
        self._server: _LambdaHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        self._events = EventQueue(self._events_policy)
        self._server = _LambdaHTTPServer(self._address, self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-lambda", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
        if self._events is not None:
            self._events.stop()
        for pool in self._pools.values():
            pool.close()  # ends the event the dispatcher may be running
        if self._events is not None:
            self._events.join()
            self._events = None

    @property
    def queued_events(self) -> int:
        """Event invocations queued or running now."""
        return len(self._events) if self._events is not None else 0

    def recycle(self) -> int:
        """Retire all warm workers, so the next invocation of every function is a cold start."""
        return sum(pool.recycle() for pool in self._pools.values())

    def __enter__(self) -> LocalLambda:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def invoke(self, function_id: str, body: bytes, invocation_type: str, log_type: str, request_id: str) -> _Reply:
        """Handle one Invoke API call whose body is within the synchronous limit."""
        name = _function_name(function_id)
        pool = self._pools.get(name)
        if pool is None:
            message = f"Function not found: {function_arn(self.region, name)}"
            return _aws_error(404, "ResourceNotFoundException", {"Type": "User", "Message": message})
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as error:
            message = f"Could not parse request body into json: {error}"
            return _aws_error(400, "InvalidRequestContentException", {"Type": "User", "message": message})
        if invocation_type == "DryRun":
            return _Reply(204, outcome="204 DryRun")
        if invocation_type == "Event":
            return self._invoke_event(pool, body, request_id)
        if invocation_type != "RequestResponse":
            message = f"Unsupported InvocationType: {invocation_type}"
            return _aws_error(400, "InvalidParameterValueException", {"Type": "User", "message": message})
        return self._invoke_sync(pool, event, log_type, request_id)

    def _invoke_sync(self, pool: FunctionPool, event: Any, log_type: str, request_id: str) -> _Reply:
        started = time.monotonic()
        try:
            result = _within_response_limit(pool.invoke(event, request_id))
        except Throttled:
            return _too_many_requests("ReservedFunctionConcurrentInvocationLimitExceeded")
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": LATEST}
        if result.error_type is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if log_type == "Tail":  # Lambda's Duration leaves out a cold start's Init Duration
            duration_ms = (time.monotonic() - started) * 1000 - (result.init_ms or 0.0)
            headers["X-Amz-Log-Result"] = _log_tail(request_id, result, duration_ms, pool.spec.memory_mb)
        return _Reply(200, result.payload, headers, _outcome(result))

    def _invoke_event(self, pool: FunctionPool, body: bytes, request_id: str) -> _Reply:
        if len(body) > EVENT_REQUEST_LIMIT_BYTES:
            message = f"{len(body)} byte payload is too large for the Event invocation type (limit {EVENT_REQUEST_LIMIT_BYTES} bytes)"
            return _aws_error(413, "RequestEntityTooLargeException", {"Type": "User", "message": message})
        if not self._events.put(pool, body, request_id):  # full: the caller may try again later
            return _too_many_requests("FunctionInvocationRateLimitExceeded", retry_after_s=1)
        return _Reply(202, outcome="202 Event queued")


class _RequestHandler(BaseHTTPRequestHandler):
    """Translates HTTP to LocalLambda calls; HTTP/1.1 keeps botocore's connections alive."""

    protocol_version = "HTTP/1.1"
    # An answer's headers and body are buffered and go out in one write (_send flushes): one send, and one
    # wake-up of the client, instead of one for each.
    wbufsize = 1 << 16
    # A body larger than the buffer still follows its headers in a second write; with Nagle's algorithm it
    # would wait for the client's delayed ACK of the headers (40 ms on Linux), which real Lambda's endpoint does not add.
    disable_nagle_algorithm = True
    server: _LambdaHTTPServer

    def setup(self) -> None:
        super().setup()
        self._reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        """A request line within the idle timeout; BaseHTTPRequestHandler closes the connection when it passes."""
        self._reader.expire_in(self.server.service.limits.idle_timeout_s)
        super().handle_one_request()

    def parse_request(self) -> bool:
        self._reader.expire_in(self.server.service.limits.header_timeout_s)
        return super().parse_request()

    def do_POST(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            self._handle_post(request_id)
        except TimeoutError:  # the body did not arrive in time: answer, and end the connection
            self._send(_request_timeout("the body", self.server.service.limits.body_timeout_s), request_id)
        except Exception as error:  # a 500 tells botocore what happened; a dropped connection doesn't
            self.log_error("local-lambda failed on %s: %r", self.path, error)
            self._send(_aws_error(500, "ServiceException", {"Message": f"Local Lambda error: {error!r}"}), request_id)

    def _handle_post(self, request_id: str) -> None:
        started = time.monotonic()
        self._reader.expire_in(self.server.service.limits.body_timeout_s)
        path = urllib.parse.urlsplit(self.path).path
        match = INVOKE_PATH.fullmatch(path)
        lengths = self.headers.get_all("Content-Length", ["0"])
        content_length = lengths[0].strip()
        body_size = int(content_length) if CONTENT_LENGTH.fullmatch(content_length) else None
        if "Transfer-Encoding" in self.headers or len(lengths) != 1:
            # Read by Content-Length, such a body's rest would be taken for the next request on the connection.
            reply = _bad_content_length("the body must be framed by exactly one Content-Length, "
                                        "without Transfer-Encoding")
        elif body_size is None:
            reply = _bad_content_length(f"Content-Length must be a non-negative integer, got {content_length!r}")
        elif body_size > SYNC_REQUEST_LIMIT_BYTES:
            self._discard_body(body_size)  # read it all, or the client sees a reset connection
            reply = _request_too_large()
        elif not self._addressed_to_this_server():
            self.rfile.read(body_size)
            reply = _aws_error(400, "InvalidRequestContentException", {"Type": "User", "message": (
                "the Host header must name the address this endpoint listens on (a web page that renamed "
                "127.0.0.1 to its own domain, DNS rebinding, names that domain)")})
        elif path == RECYCLE_PATH and "Origin" in self.headers:
            self.rfile.read(body_size)
            reply = _aws_error(403, "AccessDeniedException", {"Type": "User", "message": (
                "the workers are retired only on a request that comes from no web page")})
        elif path == RECYCLE_PATH:
            self.rfile.read(body_size)
            self.server.service.recycle()
            reply = _Reply(204)
        elif match is not None and not self._from_an_aws_client():
            self.rfile.read(body_size)
            reply = _aws_error(403, "AccessDeniedException", {"Type": "User", "message": (
                "invocations must be signed as an AWS SDK signs them (SigV4) and come from no web page")})
        elif match is None:
            self.rfile.read(body_size)
            reply = _aws_error(404, "UnknownOperationException", {"message": f"Unknown operation: POST {path}"})
        else:
            reply = self.server.service.invoke(
                match["function"],
                self.rfile.read(body_size),
                self.headers.get("X-Amz-Invocation-Type", "RequestResponse"),
                self.headers.get("X-Amz-Log-Type", "None"),
                request_id,
            )
        self._send(reply, request_id)
        if match is not None and reply.outcome is not None:
            _log_invocation(_function_name(match["function"]), request_id, started, reply.outcome)

    def _addressed_to_this_server(self) -> bool:
        """Exactly one Host, naming this server's port and the address it listens on (any address, if it
        listens on all of them), or `localhost` for a loopback one, never another name: a browser sends
        the page's own host, so a page whose domain was made to resolve to 127.0.0.1 after it loaded
        (DNS rebinding) is refused, whatever else it can send."""
        hosts = self.headers.get_all("Host", [])
        if len(hosts) != 1:
            return False
        name, colon, port = hosts[0].strip().lower().rpartition(":")
        listening = ipaddress.ip_address(self.server.server_address[0])
        if not colon or port != str(self.server.server_address[1]):
            return False
        if name == "localhost":
            return listening.is_loopback or listening.is_unspecified
        try:
            address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
        except ValueError:  # a domain name
            return False
        return address == listening or listening.is_unspecified

    def _from_an_aws_client(self) -> bool:
        """A browser cannot send a SigV4 Authorization header to another origin without a preflight
        this server never answers, and marks its requests with Origin: so a web page open in the user's
        browser cannot invoke functions on this machine's endpoint (no signature is checked: any key will do)."""
        signed = self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 ")
        return signed and "Origin" not in self.headers

    def _discard_body(self, size: int) -> None:
        while size > 0:
            chunk = self.rfile.read(min(size, 1 << 16))
            if not chunk:
                return
            size -= len(chunk)

    def _send(self, reply: _Reply, request_id: str) -> None:
        self.connection.settimeout(self.server.service.limits.body_timeout_s)  # a client that never reads
        self.send_response(reply.status)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)  # "Connection: close" also ends this connection
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: LocalLambda logs one line per invocation instead."""


class _LambdaHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `limits.max_connections` of them."""

    # Don't wait for keep-alive connections (e.g. a boto3 client still alive) on close.
    block_on_close = False

    def __init__(self, address: tuple[str, int], service: LocalLambda) -> None:
        super().__init__(address, _RequestHandler)
        self.service = service
        self._slots = threading.BoundedSemaphore(service.limits.max_connections)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            refuse(request, _busy_response())
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _busy_response() -> bytes:
    """The whole HTTP answer to a connection beyond the cap: Lambda's 429, then the connection closes."""
    reply = _too_many_requests("CallerRateLimitExceeded", retry_after_s=1)
    head = [f"HTTP/1.1 {reply.status} Too Many Requests", f"x-amzn-RequestId: {uuid.uuid4()}",
            f"Content-Length: {len(reply.body)}", "Connection: close",
            *(f"{name}: {value}" for name, value in reply.headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + reply.body
