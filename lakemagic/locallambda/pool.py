"""Worker processes on the server side: one function's pool of warm execution environments.

Each worker is a new Python process, as fresh as a new Lambda container,
importing from the function's own folders (layout.py) when the function
names its packages. A pool reuses its most recently used idle worker, throttles
beyond `max_workers`, kills a worker whose invocation times out or whose
memory grows past the function's (as Lambda's cgroup does), and retires
its workers on `recycle()` so the next invocation is a cold start.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any

from . import runtime
from .layout import FunctionFolders
from .runtime import Request, Result

LATEST = "$LATEST"
LOCAL_ACCOUNT_ID = "000000000000"
INIT_TIMEOUT_S = 10.0  # Lambda's limit for the Init phase (importing the handler)
EXIT_STATUS_WAIT_S = 1.0  # how long to wait for a dying worker's exit status
# How often a busy worker's resident memory is read: DuckDB can grow by a few GB/s, so a check
# every 10 ms lets it pass the function's memory by tens of MB at most before it is killed.
MEMORY_CHECK_S = 0.01
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

# What a worker process runs: the runtime module loaded from its file, not imported as part of lakemagic
# (a Lambda container's bootstrap is outside the function's sys.path too). The first line names the process.
_BOOTSTRAP = """# lakemagic-worker
import importlib.util, json, sys
runtime_file, fd, handler, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
sys.path[:] = path["server"] or [path["task"], *sys.path, path["runtime"]]
spec = importlib.util.spec_from_file_location("lakemagic_worker_runtime", runtime_file)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.serve(fd, handler)
"""


@dataclass(frozen=True)
class FunctionSpec:
    """A function's configuration, as you would set it on the Lambda function."""

    handler: str  # "package.module.function" (Lambda's setting) or "package.module:function"
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0
    memory_mb: int = 2048  # reported to the handler, and enforced: a worker past it is killed
    max_workers: int = 4  # like reserved concurrency: more at once are throttled
    # The top-level modules of the function's package (layout.LAKE_PACKAGES for the lake's handler): the
    # worker imports those, the standard library and boto3, as on Lambda. None: whatever this process can.
    packages: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.max_workers < 1:
            raise ValueError("timeout_s must be > 0 and max_workers >= 1")


def function_arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{name}"


def service_failure(error_type: str, message: str) -> Result:
    """An error that Lambda (not the runtime) reports, e.g. a timeout or a crash."""
    document = {"errorMessage": message, "errorType": error_type}
    return Result(json.dumps(document).encode(), error_type, message + "\n")


def _timed_out(request_id: str, timeout_s: float) -> Result:
    message = f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
    return service_failure("Sandbox.Timedout", message)


def _out_of_memory(request_id: str) -> Result:
    """What Lambda answers when the function's cgroup kills the runtime for its memory."""
    message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
    return service_failure("Runtime.OutOfMemory", message)


def _resident_bytes(pid: int | None) -> int:
    """The process's resident memory (Linux's /proc; 0 elsewhere, where it is not enforced)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def _peak_resident_mb(pid: int) -> int | None:
    """The process's peak resident memory (VmHWM) in MB, Lambda's Max Memory Used; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            peak = next(line for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return round(int(peak.split()[1]) / 1024)


def _exited(request_id: str, exitcode: int | None) -> Result:
    """Worded like Lambda, which reports the exit the way Go's os/exec does."""
    if not exitcode:
        reason = "Runtime exited without providing a reason"
    elif exitcode < 0:
        signal_name = signal.strsignal(-exitcode) or str(-exitcode)
        reason = f"Runtime exited with error: signal: {signal_name.lower()}"
    else:
        reason = f"Runtime exited with error: exit status {exitcode}"
    return service_failure("Runtime.ExitError", f"RequestId: {request_id} Error: {reason}")


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


class Worker:
    """The server's handle on one worker process."""

    def __init__(self, handler: str, environment: dict[str, str], generation: int,
                 folders: FunctionFolders | None) -> None:
        self.generation = generation
        self._memory_bytes = int(environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) * 2**20
        self._ready = False
        self._stop_lock = threading.Lock()
        ours, theirs = socket.socketpair()
        self._conn = Connection(ours.detach())
        # A /tmp of its own that goes with it, as an execution environment's does, even when it is killed.
        self._tmp = None if "TMPDIR" in environment else tempfile.mkdtemp(prefix="lakemagic-worker-")
        environment = {**os.environ, **environment, "AWS_LAMBDA_LOG_STREAM_NAME": _log_stream_name(),
                       **({"TMPDIR": self._tmp} if self._tmp else {})}
        if folders is None:  # this process's own imports (site-packages, editable installs): -I only
            flags, path = ["-I"], {"server": sys.path}
        else:  # Lambda's: the package, the standard library, the runtime's boto3; no site-packages
            flags, path = ["-I", "-S"], {"server": None, "task": folders.task, "runtime": folders.runtime}
        self._started = time.monotonic()
        # A worker whose server goes away reads the end of its connection and exits.
        self._process = subprocess.Popen(
            [sys.executable, *flags, "-c", _BOOTSTRAP, runtime.__file__, str(theirs.fileno()), handler, json.dumps(path)],
            env=environment, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
        )
        theirs.close()

    def is_alive(self) -> bool:
        return self._process.poll() is None

    def invoke(self, event: Any, request_id: str, function_arn: str, timeout_s: float) -> Result:
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
            self._conn.send(tuple(Request(event, request_id, function_arn, deadline_ms)))
        except OSError:
            return self._exit_result(request_id)
        result = self._receive(request_id, timeout_s)
        return result._replace(output=init_output + result.output, init_ms=init_ms,
                               max_memory_mb=_peak_resident_mb(self._process.pid))

    def _receive(self, request_id: str, timeout_s: float) -> Result:
        """The worker's answer; killed at the timeout, or as soon as its memory is past the function's."""
        deadline = time.monotonic() + timeout_s
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                if self._conn.poll(min(remaining, MEMORY_CHECK_S)):
                    return Result(*self._conn.recv())
                if _resident_bytes(self._process.pid) > self._memory_bytes:
                    self.stop()
                    return _out_of_memory(request_id)
        except (EOFError, OSError):
            return self._exit_result(request_id)
        self.stop()
        return _timed_out(request_id, timeout_s)

    def _exit_result(self, request_id: str) -> Result:
        try:
            exitcode = self._process.wait(EXIT_STATUS_WAIT_S)
        except subprocess.TimeoutExpired:
            exitcode = None
        self.stop()
        return _exited(request_id, exitcode)

    def stop(self) -> None:
        # The server's shutdown and the thread serving a call may both stop a
        # worker; closing its pipe twice could close a reused descriptor.
        with self._stop_lock:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            if not self._conn.closed:
                self._conn.close()
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)


class Throttled(Exception):
    """All of a function's workers are busy and it may not start another."""


class FunctionPool:
    """One function's warm workers, capped at max_workers concurrent invocations."""

    def __init__(self, name: str, spec: FunctionSpec, region: str) -> None:
        self.name = name
        self.spec = spec
        self.arn = function_arn(region, name)
        self._environment = _worker_environment(name, spec, region)
        self._folders = FunctionFolders(spec.packages) if spec.packages is not None else None
        self._lock = threading.Lock()
        self._workers: set[Worker] = set()
        self._idle: list[Worker] = []
        self._generation = 0  # bumped by recycle(); workers of older generations are retired
        self._closed = False

    def invoke(self, event: Any, request_id: str) -> Result:
        worker = self._acquire()
        try:
            return worker.invoke(event, request_id, self.arn, self.spec.timeout_s)
        finally:
            self._release(worker)

    def _acquire(self) -> Worker:
        """The most recently used idle worker (like Lambda), else a new one."""
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.is_alive():
                    return worker
                self._workers.discard(worker)
                worker.stop()
            if self._closed or len(self._workers) >= self.spec.max_workers:
                raise Throttled
            worker = Worker(self.spec.handler, self._environment, self._generation, self._folders)
            self._workers.add(worker)
            return worker

    def _release(self, worker: Worker) -> None:
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
        if self._folders is not None:
            self._folders.close()
