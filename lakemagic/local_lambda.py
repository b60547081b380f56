"""A local AWS Lambda: the real Invoke REST API in front of warm Python workers.

An unmodified boto3 Lambda client pointed at this server (``endpoint_url=`` or
``AWS_ENDPOINT_URL_LAMBDA``) invokes handlers the way AWS Lambda runs them, so
notebooks, tests and CI exercise the same client code path as production:

    with LocalLambda({"lakemagic": FunctionSpec("lakelambda.handler.handler")}) as local:
        boto3.client("lambda", endpoint_url=local.endpoint_url, ...).invoke(...)

Each function has a pool of worker processes (the "spawn" start method, so a
worker is as fresh as a new Lambda container). A worker imports the handler
once and stays warm between invocations, runs one invocation at a time, and is
killed when an invocation times out. Throttling, payload limits and error
payloads follow what Lambda returns, so callers' error handling can be tested.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import io
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
import types
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

__all__ = ["FunctionSpec", "LocalLambda", "main"]

# Lambda quotas, in the exact numbers Lambda's own error messages use.
SYNC_REQUEST_LIMIT_BYTES = 6_291_456
EVENT_REQUEST_LIMIT_BYTES = 1_048_576
SYNC_RESPONSE_LIMIT_BYTES = 6_291_556
LOG_TAIL_BYTES = 4096  # X-Amz-Log-Result carries the last 4 KB of the log
INIT_TIMEOUT_S = 10.0  # Lambda's limit for the Init phase (importing the handler)

LATEST = "$LATEST"
LOCAL_ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"
RECYCLE_PATH = "/_local/recycle"
INVOKE_PATH = re.compile(r"/2015-03-31/functions/(?P<function>[^/]+)/invocations")

EVENT_RETRY_INTERVAL_S = 0.1  # how often a throttled Event invocation retries
EXIT_STATUS_WAIT_S = 1.0  # how long to wait for a dying worker's exit status

_SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class FunctionSpec:
    """A function's configuration, as you would set it on the Lambda function."""

    handler: str  # "package.module.function" (Lambda's setting) or "package.module:function"
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0
    memory_mb: int = 2048  # reported to the handler; not enforced
    max_workers: int = 4  # like reserved concurrency: more at once are throttled

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.max_workers < 1:
            raise ValueError("timeout_s must be > 0 and max_workers >= 1")


class _Request(NamedTuple):
    """One invocation, as sent from the server to a worker."""

    event: Any
    request_id: str
    invoked_function_arn: str
    deadline_ms: int  # epoch milliseconds, as the Lambda runtime API provides it


class _Result(NamedTuple):
    """What an invocation produced: a payload, and the errorType if it failed."""

    payload: bytes
    error_type: str | None
    output: str  # what the invocation printed, for the log tail
    init_ms: float | None = None  # set on a cold start: the worker's start and handler import


# --- Worker side: code that runs inside the worker process ---------------------------


class _RuntimeFault(Exception):
    """An error the Lambda runtime itself reports (bad handler, unserializable result)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class _Tee:
    """Passes writes through to the real stream and keeps a copy for the log tail."""

    def __init__(self, stream: Any, copy: io.StringIO) -> None:
        self._stream = stream
        self._copy = copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        self._stream.write(text)
        self._stream.flush()  # unbuffered, like the Lambda runtime's stdout
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _CapturedOutput:
    """stdout and stderr of the worker, collected per invocation.

    Installed before the handler module is imported, so loggers that keep a
    reference to sys.stderr are captured too. Output written straight to file
    descriptors (C extensions) reaches the terminal but not the log tail.
    """

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        sys.stdout = _Tee(sys.stdout, self._buffer)
        sys.stderr = _Tee(sys.stderr, self._buffer)

    def take(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


class _LambdaContext:
    """The handler's `context`, with the attributes the AWS Python runtime sets."""

    def __init__(self, request: _Request) -> None:
        self.aws_request_id = request.request_id
        self.invoked_function_arn = request.invoked_function_arn
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]  # str, as in AWS
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = request.deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _load_handler(setting: str) -> Callable[[Any, Any], Any]:
    """Import the handler the way the AWS Python runtime does, with its error types."""
    module_name, _, function_name = setting.replace(":", ".").rpartition(".")
    if not module_name:
        raise _RuntimeFault("Runtime.MalformedHandlerName", f"Bad handler '{setting}'")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        message = f"Unable to import module '{module_name}': {error}"
        raise _RuntimeFault("Runtime.ImportModuleError", message) from error
    except SyntaxError as error:
        message = f"Syntax error in module '{module_name}': {error}"
        raise _RuntimeFault("Runtime.UserCodeSyntaxError", message) from error
    try:
        return getattr(module, function_name)
    except AttributeError:
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise _RuntimeFault("Runtime.HandlerNotFound", message) from None


def _decimal_as_float(value: Any) -> Any:
    """Lambda's encoder writes Decimals (as DuckDB returns them) as JSON numbers."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _marshal(result: Any) -> bytes:
    if isinstance(result, bytes):  # the runtime passes bytes through untouched
        return result
    try:
        return json.dumps(result, default=_decimal_as_float).encode()
    except (TypeError, ValueError) as error:
        raise _RuntimeFault("Runtime.MarshalError", f"Unable to marshal response: {error}") from error


def _error_result(error: Exception, request_id: str, output: _CapturedOutput) -> _Result:
    """The runtime's error document; like AWS it is also printed to the log."""
    if isinstance(error, _RuntimeFault):
        error_type, stack_trace = error.error_type, []
    else:
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__]
        error_type, stack_trace = type(error).__name__, traceback.format_list(frames)
    document = {
        "errorMessage": str(error),
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack_trace,
    }
    print(f"[ERROR] {error_type}: {error}\n" + "".join(stack_trace), end="")
    return _Result(json.dumps(document).encode(), error_type, output.take())


def _run_handler(handler: Callable[[Any, Any], Any], request: _Request, output: _CapturedOutput) -> _Result:
    try:
        payload = _marshal(handler(request.event, _LambdaContext(request)))
    except Exception as error:
        return _error_result(error, request.request_id, output)
    return _Result(payload, None, output.take())


def _worker_main(conn: Any, handler_setting: str, environment: dict[str, str]) -> None:
    """A worker process: one execution environment that serves invocations until told to stop.

    The first message says whether the handler imported (a result without an
    error type) or not (the init error). Then each request gets one result.
    """
    os.environ.update(environment)  # before the import, as Lambda does
    output = _CapturedOutput()
    try:
        handler = _load_handler(handler_setting)
    except Exception as error:
        conn.send(_error_result(error, "", output))
        return
    conn.send(_Result(b"", None, output.take()))
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the server is gone, and so is this environment
            return
        conn.send(_run_handler(handler, request, output))


# --- Server side -----------------------------------------------------------------------


def _failure(error_type: str, message: str) -> _Result:
    """An error that Lambda (not the runtime) reports, e.g. a timeout or a crash."""
    document = {"errorMessage": message, "errorType": error_type}
    return _Result(json.dumps(document).encode(), error_type, message + "\n")


def _timed_out(request_id: str, timeout_s: float) -> _Result:
    return _failure("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds")


def _exited(request_id: str, exitcode: int | None) -> _Result:
    """Worded like Lambda, which reports the exit the way Go's os/exec does."""
    if not exitcode:
        reason = "Runtime exited without providing a reason"
    elif exitcode < 0:
        signal_name = signal.strsignal(-exitcode) or str(-exitcode)
        reason = f"Runtime exited with error: signal: {signal_name.lower()}"
    else:
        reason = f"Runtime exited with error: exit status {exitcode}"
    return _failure("Runtime.ExitError", f"RequestId: {request_id} Error: {reason}")


def _within_response_limit(result: _Result) -> _Result:
    if result.error_type is None and len(result.payload) > SYNC_RESPONSE_LIMIT_BYTES:
        message = (
            f"Response payload size ({len(result.payload)} bytes) exceeded maximum allowed "
            f"payload size ({SYNC_RESPONSE_LIMIT_BYTES} bytes)."
        )
        return _failure("Function.ResponseSizeTooLarge", message)
    return result


def _function_arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{name}"


def _function_name(identifier: str) -> str:
    """Accept what Lambda accepts: a name, `name:qualifier`, or a full or partial ARN."""
    identifier = urllib.parse.unquote(identifier)
    if ":function:" in identifier:
        identifier = identifier.split(":function:", 1)[1]
    return identifier.split(":", 1)[0]


def _log_stream_name() -> str:
    """Each execution environment writes its own stream, named like Lambda's."""
    return f"{datetime.now(timezone.utc):%Y/%m/%d}/[{LATEST}]{uuid.uuid4().hex}"


def _worker_environment(name: str, spec: FunctionSpec, region: str) -> dict[str, str]:
    """The function's variables plus Lambda's reserved ones, which cannot be overridden."""
    reserved = {
        "_HANDLER": spec.handler,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": LATEST,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": f"{spec.timeout_s:g}",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
    }
    return {**spec.env, **reserved}


@contextlib.contextmanager
def _without_parent_main():
    """Start a worker without importing the caller's __main__ module into it.

    multiprocessing's spawn re-imports the parent's main script in the child;
    a Lambda container imports only the handler, and a cold start measured
    here must not include (or profit from) whatever the caller imported.
    """
    main = sys.modules["__main__"]
    if __name__ == "__main__":  # run as `python -m lakemagic.local_lambda`: the worker code lives here
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _Worker:
    """The server's handle on one worker process."""

    def __init__(self, handler: str, environment: dict[str, str], generation: int) -> None:
        self.generation = generation
        self._ready = False
        self._stop_lock = threading.Lock()
        self._conn, child_conn = _SPAWN.Pipe()
        environment = {**environment, "AWS_LAMBDA_LOG_STREAM_NAME": _log_stream_name()}
        # daemon: a worker never outlives the server, even if stop() is never called
        self._process = _SPAWN.Process(target=_worker_main, args=(child_conn, handler, environment), daemon=True)
        self._started = time.monotonic()
        with _without_parent_main():
            self._process.start()
        child_conn.close()

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def invoke(self, event: Any, request_id: str, function_arn: str, timeout_s: float) -> _Result:
        """Run one invocation; a timeout kills the worker, as Lambda discards the environment."""
        init_output, init_ms = "", None
        if not self._ready:
            init = self._receive(request_id, max(INIT_TIMEOUT_S, timeout_s))
            if init.error_type is not None:
                self.stop()
                return init
            self._ready, init_output = True, init.output
            init_ms = (time.monotonic() - self._started) * 1000
        deadline_ms = int((time.time() + timeout_s) * 1000)
        try:
            self._conn.send(_Request(event, request_id, function_arn, deadline_ms))
        except OSError:
            return self._exit_result(request_id)
        result = self._receive(request_id, timeout_s)
        return result._replace(output=init_output + result.output, init_ms=init_ms)

    def _receive(self, request_id: str, timeout_s: float) -> _Result:
        try:
            if self._conn.poll(timeout_s):
                return self._conn.recv()
        except (EOFError, OSError):
            return self._exit_result(request_id)
        self.stop()
        return _timed_out(request_id, timeout_s)

    def _exit_result(self, request_id: str) -> _Result:
        self._process.join(EXIT_STATUS_WAIT_S)
        exitcode = self._process.exitcode
        self.stop()
        return _exited(request_id, exitcode)

    def stop(self) -> None:
        # The server's shutdown and the thread serving a call may both stop a
        # worker; closing its pipe twice could close a reused descriptor.
        with self._stop_lock:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            if not self._conn.closed:
                self._conn.close()


class _Throttled(Exception):
    """All of a function's workers are busy and it may not start another."""


class _FunctionPool:
    """One function's warm workers, capped at max_workers concurrent invocations."""

    def __init__(self, name: str, spec: FunctionSpec, region: str) -> None:
        self.name = name
        self.spec = spec
        self.arn = _function_arn(region, name)
        self._environment = _worker_environment(name, spec, region)
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._generation = 0  # bumped by recycle(); workers of older generations are retired
        self._closed = False

    def invoke(self, event: Any, request_id: str) -> _Result:
        worker = self._acquire()
        try:
            return worker.invoke(event, request_id, self.arn, self.spec.timeout_s)
        finally:
            self._release(worker)

    def _acquire(self) -> _Worker:
        """The most recently used idle worker (like Lambda), else a new one."""
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.is_alive():
                    return worker
                self._workers.discard(worker)
                worker.stop()
            if self._closed or len(self._workers) >= self.spec.max_workers:
                raise _Throttled
            worker = _Worker(self.spec.handler, self._environment, self._generation)
            self._workers.add(worker)
            return worker

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if worker.is_alive() and worker.generation == self._generation and not self._closed:
                self._idle.append(worker)
                return
            self._workers.discard(worker)
        worker.stop()

    def recycle(self) -> int:
        """Stop idle workers now and busy ones when they finish; return how many stopped now."""
        with self._lock:
            self._generation += 1
            retired, self._idle = self._idle, []
            self._workers.difference_update(retired)
        for worker in retired:
            worker.stop()
        return len(retired)

    def close(self) -> None:
        """Kill every worker, busy or not; their invocations fail with Runtime.ExitError."""
        with self._lock:
            self._closed = True
            workers, self._workers, self._idle = list(self._workers), set(), []
        for worker in workers:
            worker.stop()


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


def _request_too_large() -> _Reply:
    message = f"Request must be smaller than {SYNC_REQUEST_LIMIT_BYTES} bytes for the InvokeFunction operation"
    return _aws_error(413, "RequestEntityTooLargeException", {"Type": "User", "message": message})


def _outcome(result: _Result) -> str:
    return "ok" if result.error_type is None else f"Unhandled {result.error_type}"


def _log_tail(request_id: str, result: _Result, duration_ms: float, memory_mb: int) -> str:
    """Base64 of the last 4 KB of the invocation's log, framed like Lambda's."""
    log = (
        f"START RequestId: {request_id} Version: {LATEST}\n{result.output}"
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB"
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
    ) -> None:
        self.region = region
        self.endpoint_url: str | None = None
        self._address = (host, port)
        self._pools = {name: _FunctionPool(name, spec, region) for name, spec in functions.items()}
        self._server: _LambdaHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> str:
        self._server = _LambdaHTTPServer(self._address, self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-lambda", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
        for pool in self._pools.values():
            pool.close()

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
            message = f"Function not found: {_function_arn(self.region, name)}"
            return _aws_error(404, "ResourceNotFoundException", {"Type": "User", "Message": message})
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as error:
            message = f"Could not parse request body into json: {error}"
            return _aws_error(400, "InvalidRequestContentException", {"Type": "User", "message": message})
        if invocation_type == "DryRun":
            return _Reply(204, outcome="204 DryRun")
        if invocation_type == "Event":
            return self._invoke_event(pool, event, len(body), request_id)
        if invocation_type != "RequestResponse":
            message = f"Unsupported InvocationType: {invocation_type}"
            return _aws_error(400, "InvalidParameterValueException", {"Type": "User", "message": message})
        return self._invoke_sync(pool, event, log_type, request_id)

    def _invoke_sync(self, pool: _FunctionPool, event: Any, log_type: str, request_id: str) -> _Reply:
        started = time.monotonic()
        try:
            result = _within_response_limit(pool.invoke(event, request_id))
        except _Throttled:
            document = {
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                "Type": "User",
                "message": "Rate Exceeded.",
            }
            return _aws_error(429, "TooManyRequestsException", document)
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": LATEST}
        if result.error_type is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if log_type == "Tail":
            duration_ms = (time.monotonic() - started) * 1000
            headers["X-Amz-Log-Result"] = _log_tail(request_id, result, duration_ms, pool.spec.memory_mb)
        return _Reply(200, result.payload, headers, _outcome(result))

    def _invoke_event(self, pool: _FunctionPool, event: Any, size: int, request_id: str) -> _Reply:
        if size > EVENT_REQUEST_LIMIT_BYTES:
            message = f"{size} byte payload is too large for the Event invocation type (limit {EVENT_REQUEST_LIMIT_BYTES} bytes)"
            return _aws_error(413, "RequestEntityTooLargeException", {"Type": "User", "message": message})
        thread = threading.Thread(target=self._run_event, args=(pool, event, request_id), daemon=True)
        thread.start()
        return _Reply(202)

    def _run_event(self, pool: _FunctionPool, event: Any, request_id: str) -> None:
        """Lambda queues Event invocations and retries throttled ones; so do we, until stopped."""
        started = time.monotonic()
        while True:
            try:
                result = pool.invoke(event, request_id)
                break
            except _Throttled:
                if self._stopping.wait(EVENT_RETRY_INTERVAL_S):
                    return
        _log_invocation(pool.name, request_id, started, f"Event {_outcome(result)}")


class _RequestHandler(BaseHTTPRequestHandler):
    """Translates HTTP to LocalLambda calls; HTTP/1.1 keeps botocore's connections alive."""

    protocol_version = "HTTP/1.1"
    server: _LambdaHTTPServer

    def do_POST(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            self._handle_post(request_id)
        except Exception as error:  # a 500 tells botocore what happened; a dropped connection doesn't
            self.log_error("local-lambda failed on %s: %r", self.path, error)
            self._send(_aws_error(500, "ServiceException", {"Message": f"Local Lambda error: {error!r}"}), request_id)

    def _handle_post(self, request_id: str) -> None:
        started = time.monotonic()
        path = urllib.parse.urlsplit(self.path).path
        match = INVOKE_PATH.fullmatch(path)
        body_size = int(self.headers.get("Content-Length") or 0)
        if body_size > SYNC_REQUEST_LIMIT_BYTES:
            self._discard_body(body_size)  # read it all, or the client sees a reset connection
            reply = _request_too_large()
        elif path == RECYCLE_PATH:
            self.rfile.read(body_size)
            self.server.service.recycle()
            reply = _Reply(204)
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

    def _discard_body(self, size: int) -> None:
        while size > 0:
            chunk = self.rfile.read(min(size, 1 << 16))
            if not chunk:
                return
            size -= len(chunk)

    def _send(self, reply: _Reply, request_id: str) -> None:
        self.send_response(reply.status)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: LocalLambda logs one line per invocation instead."""


class _LambdaHTTPServer(ThreadingHTTPServer):
    # Don't wait for keep-alive connections (e.g. a boto3 client still alive) on close.
    block_on_close = False

    def __init__(self, address: tuple[str, int], service: LocalLambda) -> None:
        super().__init__(address, _RequestHandler)
        self.service = service


# --- Command line: `lakemagic serve` ----------------------------------------------------


def _env_assignment(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name, value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lakemagic serve",
        description="Serve a Python Lambda handler locally behind the AWS Lambda Invoke API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--function-name", default="lakemagic")
    parser.add_argument("--handler", default="lakelambda.handler.handler")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default: 60)")
    parser.add_argument("--memory", type=int, default=2048, help="MB reported to the handler (default: 2048)")
    parser.add_argument("--max-workers", type=int, default=4, help="concurrent invocations (default: 4)")
    parser.add_argument(
        "--env", type=_env_assignment, action="append", default=[], metavar="KEY=VALUE",
        help="environment variable for the function (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve one function until Ctrl-C (or SIGTERM)."""
    args = _parse_args(argv)
    spec = FunctionSpec(
        handler=args.handler,
        env=dict(args.env),
        timeout_s=args.timeout,
        memory_mb=args.memory,
        max_workers=args.max_workers,
    )
    service = LocalLambda({args.function_name: spec}, host=args.host, port=args.port)
    endpoint_url = service.start()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly, like Ctrl-C
    print(
        f"Local Lambda '{args.function_name}' ({args.handler}) at {endpoint_url}; "
        f"set AWS_ENDPOINT_URL_LAMBDA={endpoint_url}",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
