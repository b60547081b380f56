"""`lakemagic serve`: one function behind the local Lambda endpoint, configured as on Lambda."""

from __future__ import annotations

import argparse
import signal
import threading

from .connections import DEFAULT_BODY_TIMEOUT_S, DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, ConnectionLimits
from .events import DEFAULT_MAX_AGE_S, DEFAULT_MAX_EVENTS, DEFAULT_MAX_RETRIES, DEFAULT_RETRY_DELAY_S, EventPolicy
from .layout import LAKE_PACKAGES
from .pool import FunctionSpec
from .server import LocalLambda


def _env_assignment(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `lakemagic serve`: one function, configured as on Lambda."""
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=9001, help="the port to listen on (default: %(default)s)")
    parser.add_argument("--function-name", default="lakemagic",
                        help="the function's name, which invocations must give (default: %(default)s)")
    parser.add_argument("--handler", default="lakelambda.handler.handler",
                        help="the handler as Lambda names it, module.function (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default: 60)")
    parser.add_argument("--memory", type=int, default=2048, help="MB the function has: reported to the handler, and enforced as on Lambda (a worker past it is killed: Runtime.OutOfMemory) (default: 2048)")
    parser.add_argument("--max-workers", type=int, default=4, help="concurrent invocations (default: 4)")
    parser.add_argument(
        "--env", type=_env_assignment, action="append", default=[], metavar="KEY=VALUE",
        help="environment variable for the function (repeatable)",
    )
    imports = parser.add_mutually_exclusive_group()
    imports.add_argument("--package", action="append", metavar="MODULE",
                         help="a top-level module of the function's package, which is all the workers import beside "
                              "the standard library and boto3, as on Lambda (repeatable; default: the lake handler's "
                              f"{', '.join(LAKE_PACKAGES)})")
    imports.add_argument("--server-path", action="store_true",
                         help="workers import whatever this Python environment can (pandas included), not as on Lambda")
    queue = parser.add_argument_group("Event (asynchronous) invocations, queued as Lambda queues them")
    queue.add_argument("--event-queue", type=int, default=DEFAULT_MAX_EVENTS,
                       help=f"events queued at most; beyond them 429 (default: {DEFAULT_MAX_EVENTS})")
    queue.add_argument("--event-max-age", type=float, default=DEFAULT_MAX_AGE_S,
                       help=f"seconds an event may wait before it is dropped (default: {DEFAULT_MAX_AGE_S:g}, Lambda's)")
    queue.add_argument("--event-retries", type=int, choices=range(3), default=DEFAULT_MAX_RETRIES,
                       help=f"retries of an event whose function failed (default: {DEFAULT_MAX_RETRIES}, Lambda's)")
    queue.add_argument("--event-retry-delay", type=float, default=DEFAULT_RETRY_DELAY_S,
                       help=f"seconds before the first retry, twice that before the second "
                            f"(default: {DEFAULT_RETRY_DELAY_S:g}, Lambda's)")
    http = parser.add_argument_group("HTTP connections")
    http.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                      help=f"served at once; beyond them 429 (default: {DEFAULT_MAX_CONNECTIONS})")
    http.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT_S,
                      help=f"seconds for a request's headers (default: {DEFAULT_HEADER_TIMEOUT_S:g})")
    http.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S,
                      help=f"seconds for a request's body, 408 after (default: {DEFAULT_BODY_TIMEOUT_S:g})")


def run(options: argparse.Namespace) -> int:
    """Serve one function until Ctrl-C (or SIGTERM)."""
    spec = FunctionSpec(
        handler=options.handler,
        env=dict(options.env),
        timeout_s=options.timeout,
        memory_mb=options.memory,
        max_workers=options.max_workers,
        packages=None if options.server_path else tuple(options.package or LAKE_PACKAGES),
    )
    events = EventPolicy(max_events=options.event_queue, max_age_s=options.event_max_age,
                         max_retries=options.event_retries, retry_delay_s=options.event_retry_delay)
    limits = ConnectionLimits(max_connections=options.max_connections, header_timeout_s=options.header_timeout,
                              body_timeout_s=options.body_timeout)
    service = LocalLambda({options.function_name: spec}, host=options.host, port=options.port,
                          events=events, limits=limits)
    endpoint_url = service.start()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly, like Ctrl-C
    print(
        f"Local Lambda '{options.function_name}' ({options.handler}) at {endpoint_url}; "
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
