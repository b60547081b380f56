"""How long and how many: the bounds `lakemagic serve` puts on its HTTP connections.

Each connection has a thread of its own, so a client that connects and
then sends nothing, or headers announcing a body that never comes, would
hold a thread for as long as it liked. Every read here has a deadline for
the whole of what it reads (a request line, the headers, the body), not
per packet, so sending a byte at a time does not stretch it; and at most
`max_connections` are served at once: beyond them a connection gets
Lambda's 429 and is closed, without a thread.
"""

from __future__ import annotations

import io
import math
import socket
import time
from dataclasses import dataclass

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_IDLE_TIMEOUT_S = 60.0  # a kept-alive connection waiting for its next request (botocore reconnects)
DEFAULT_HEADER_TIMEOUT_S = 10.0  # from the request line to the end of the headers
DEFAULT_BODY_TIMEOUT_S = 30.0  # the body (6 MB at most), and writing the answer
_DRAIN_BYTES = 1 << 16


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.max_connections < 1 or min(self.idle_timeout_s, self.header_timeout_s, self.body_timeout_s) <= 0:
            raise ValueError("connection limits need max_connections >= 1 and timeouts > 0")


class DeadlineReader(io.RawIOBase):
    """A socket's reading side that fails with TimeoutError once `deadline` (monotonic) has passed."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self.deadline = math.inf

    def expire_in(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client took longer than the server waits")
        self._connection.settimeout(remaining)
        return self._connection.recv_into(buffer)


def refuse(connection: socket.socket, response: bytes) -> None:
    """Answer `response` on a connection no thread will serve, and close it.

    What the client already sent is read first (without waiting), so the close
    is not a reset that could discard the answer before the client reads it.
    """
    try:
        connection.setblocking(False)
        connection.send(response)  # a few hundred bytes: an empty send buffer takes them at once
        for _ in range(16):
            if not connection.recv(_DRAIN_BYTES):
                break
    except OSError:  # BlockingIOError: nothing more to read; or the client has gone
        pass
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()
