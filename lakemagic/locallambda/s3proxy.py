"""A counting proxy in front of a local S3 API server, optionally slowed to S3's own pace.

What a query costs on S3 is mostly requests (tens of ms each on real S3,
about 1 ms on a local server) and, for big reads, bandwidth (bounded per
connection on real S3, unbounded on a local server), so the tests and
benchmarks count requests here, by method, and the bytes of their answers,
and can add a fixed delay per request, or model real S3 (`S3Model`): a wait
before each answer's first byte, then its body at a bounded rate per
connection. That model is why
splitting a scan over several Lambdas pays on S3. It listens on 127.0.0.1
and forwards only to the one upstream it is given.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Headers that describe one hop, not the request: never forwarded.
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class S3Model:
    """Real S3 as a Lambda in its region sees it; the defaults' sources are in the README ("Performance").

    first_byte_s: from the request to the first byte of its answer, for every request (HEAD and LIST
    too); AWS: the median of a small request is "often in the range of tens of milliseconds", and S3
    Express One Zone's "single-digit millisecond" first byte is "up to 10x faster than S3 Standard".
    bytes_per_s: a body's rate on one connection (AWS: one connection per 85-90 MB/s of throughput
    wanted). Not modelled: connection set-up (TLS), request-rate limits per prefix, slow outliers.
    """

    first_byte_s: float = 0.030
    bytes_per_s: float = 85e6

    def __post_init__(self) -> None:
        if self.first_byte_s < 0 or self.bytes_per_s <= 0:
            raise ValueError("an S3 model needs first_byte_s >= 0 and bytes_per_s > 0")


REAL_S3 = S3Model()


class S3Proxy:
    """Forwards every request to `upstream` (http://127.0.0.1:PORT), counting them and waiting `delay_s` first,
    or, given a `model`, answering at the model's pace: moto's own time counts towards the model's first byte."""

    def __init__(self, upstream: str, delay_s: float = 0.0, model: S3Model | None = None):
        target = urllib.parse.urlsplit(upstream)
        if target.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the proxy forwards to a server on this machine only, not {upstream}")
        self.upstream = (target.hostname, target.port)
        self.delay_s = delay_s if model is None else 0.0
        self.model = model
        self.requests: Counter[str] = Counter()  # by method
        self.objects: Counter[tuple[str, str]] = Counter()  # by method and path (bucket/key, no query string)
        self.bytes: Counter[tuple[str, str]] = Counter()  # of the answers' bodies, by method and path as `objects`
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-proxy", daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "S3Proxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.objects.clear()
            self.bytes.clear()

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests[method] += 1
            self.objects[method, urllib.parse.unquote(path.partition("?")[0])] += 1

    def _sent(self, method: str, path: str, size: int) -> None:
        with self._lock:
            self.bytes[method, urllib.parse.unquote(path.partition("?")[0])] += size

    def __enter__(self) -> "S3Proxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _handler_for(proxy: S3Proxy):
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else a body written after its headers waits for a delayed ACK (40 ms)

        def _forward(self) -> None:
            proxy._record(self.command, self.path)
            asked = time.monotonic()
            if proxy.delay_s:
                time.sleep(proxy.delay_s)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else None
            headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_HEADERS}
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
            finally:
                upstream.close()
            if proxy.model is not None:
                time.sleep(max(0.0, proxy.model.first_byte_s - (time.monotonic() - asked)))
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in _HOP_HEADERS | {"content-length"}:
                    self.send_header(name, value)
            # A HEAD answer's length is the object's, which is what its asker wants to know.
            self.send_header("Content-Length", answer.getheader("Content-Length", "0") if self.command == "HEAD"
                             else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self._write_body(data)
                proxy._sent(self.command, self.path, len(data))

        def _write_body(self, data: bytes) -> None:
            """All at once, or at the model's rate on this connection (each connection is its own thread)."""
            if proxy.model is None:
                self.wfile.write(data)
                return
            started = time.monotonic()
            for offset in range(0, len(data), _CHUNK_BYTES):
                chunk = data[offset:offset + _CHUNK_BYTES]
                self.wfile.write(chunk)
                ahead = (offset + len(chunk)) / proxy.model.bytes_per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        def log_message(self, *args) -> None:
            """Silenced: the counts are the record."""

    return Forward
