"""What runs inside a worker process: the AWS Python runtime, as far as a handler can tell.

The worker imports the handler once, with the function's environment already
set, then serves invocations until the server goes away. The messages it
exchanges with the server (`Request`, `Result`) are defined here, next to
the loop that reads and writes them.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple


class Request(NamedTuple):
    """One invocation, as sent from the server to a worker."""

    event: Any
    request_id: str
    invoked_function_arn: str
    deadline_ms: int  # epoch milliseconds, as the Lambda runtime API provides it


class Result(NamedTuple):
    """What an invocation produced: a payload, and the errorType if it failed."""

    payload: bytes
    error_type: str | None
    output: str  # what the invocation printed, for the log tail
    init_ms: float | None = None  # set on a cold start: the worker's start and handler import
    max_memory_mb: int | None = None  # the worker's peak resident memory so far (Linux), set by the server


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

    def __init__(self, request: Request) -> None:
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


def _error_result(error: Exception, request_id: str, output: _CapturedOutput) -> Result:
    """The runtime's error document; like AWS it is also printed to the log."""
    if isinstance(error, _RuntimeFault):
        error_type, stack_trace = error.error_type, []
    else:  # the handler's frames only: drop this module's
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__]
        error_type, stack_trace = type(error).__name__, traceback.format_list(frames)
    document = {
        "errorMessage": str(error),
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack_trace,
    }
    print(f"[ERROR] {error_type}: {error}\n" + "".join(stack_trace), end="")
    return Result(json.dumps(document).encode(), error_type, output.take())


def _run_handler(handler: Callable[[Any, Any], Any], request: Request, output: _CapturedOutput) -> Result:
    try:
        payload = _marshal(handler(request.event, _LambdaContext(request)))
    except Exception as error:
        return _error_result(error, request.request_id, output)
    return Result(payload, None, output.take())


def serve(fd: int, handler_setting: str) -> None:
    """A worker process: one execution environment that serves invocations on `fd` until the server goes.

    Its environment (the function's variables) is set before the handler is
    imported, as Lambda does. The first message says whether the handler
    imported (a result without an error type) or not (the init error). Then
    each request gets one result. Messages are plain tuples, which this
    module, loaded from its file, and the server both read.
    """
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    output = _CapturedOutput()
    try:
        handler = _load_handler(handler_setting)
    except Exception as error:
        conn.send(tuple(_error_result(error, "", output)))
        return
    conn.send(tuple(Result(b"", None, output.take())))
    while True:
        try:
            request = Request(*conn.recv())
        except EOFError:  # the server is gone, and so is this environment
            return
        conn.send(tuple(_run_handler(handler, request, output)))
