"""Lambda's asynchronous event queue, bounded: what `lakemagic serve` does with Event invocations.

Lambda keeps an Event invocation in a queue and runs it when the function
has a free execution environment: a throttled event goes back to the queue
and is tried again after a wait that grows from 1 s to 5 minutes; a function
error is retried `max_retries` times (by default 2, one and then two
minutes later); an event older than `max_age_s` (by default 6 hours) is
dropped. Here the queue is also bounded in events and in payload bytes, so a
flood of events costs a bounded memory: beyond it, the invocation is refused
with 429 as Lambda refuses what it cannot take. One dispatcher thread runs
the queued events one at a time, so they hold at most one of the function's
workers and synchronous callers keep the others.
"""

from __future__ import annotations

import heapq
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .pool import FunctionPool, Throttled
from .runtime import Result

# Lambda's defaults (docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_AGE_S = 6 * 3600.0
DEFAULT_RETRY_DELAY_S = 60.0  # before the first retry of a function error; the second waits twice as long
THROTTLE_FIRST_WAIT_S = 1.0
THROTTLE_MAX_WAIT_S = 300.0
# This endpoint's own bounds (Lambda's queue is the service's): what a flood of events may hold.
DEFAULT_MAX_EVENTS = 100
DEFAULT_MAX_QUEUED_BYTES = 16 * 2**20


@dataclass(frozen=True)
class EventPolicy:
    """How the queue holds and retries events; Lambda's MaximumRetryAttempts and MaximumEventAgeInSeconds."""

    max_events: int = DEFAULT_MAX_EVENTS
    max_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    max_age_s: float = DEFAULT_MAX_AGE_S
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_delay_s: float = DEFAULT_RETRY_DELAY_S
    throttle_first_wait_s: float = THROTTLE_FIRST_WAIT_S
    throttle_max_wait_s: float = THROTTLE_MAX_WAIT_S

    def __post_init__(self) -> None:
        if self.max_events < 1 or self.max_bytes < 1 or self.max_age_s <= 0 or not 0 <= self.max_retries <= 2:
            raise ValueError("an event queue needs max_events >= 1, max_bytes >= 1, max_age_s > 0 "
                             "and 0 <= max_retries <= 2 (Lambda's range)")


@dataclass(order=True)
class _Queued:
    due: float  # monotonic time it may run
    sequence: int
    pool: FunctionPool = field(compare=False)
    payload: bytes = field(compare=False)  # kept as sent: its size is what the queue's bound counts
    request_id: str = field(compare=False)
    received: float = field(compare=False)
    attempts: int = field(default=0, compare=False)  # runs that ended in a function error
    throttles: int = field(default=0, compare=False)


def _log(event: _Queued, outcome: str) -> None:
    age_ms = (time.monotonic() - event.received) * 1000
    sys.stderr.write(f"local-lambda function={event.pool.name} request_id={event.request_id} "
                     f"age_ms={age_ms:.1f} outcome=Event {outcome}\n")


class EventQueue:
    """Holds Event invocations within `policy`'s bounds and runs them from one dispatcher thread."""

    def __init__(self, policy: EventPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._heap: list[_Queued] = []
        self._held = 0  # events queued or running, and their payload bytes
        self._bytes = 0
        self._sequence = itertools.count()
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._dispatch, name="local-lambda-events", daemon=True)
        self._thread.start()

    def put(self, pool: FunctionPool, payload: bytes, request_id: str) -> bool:
        """Queue one event (its JSON payload, already checked); False if the queue is full (the caller answers 429)."""
        with self._changed:
            if (self._stopping or self._held >= self.policy.max_events
                    or self._bytes + len(payload) > self.policy.max_bytes):
                return False
            now = self._clock()
            heapq.heappush(self._heap, _Queued(now, next(self._sequence), pool, payload, request_id, now))
            self._held += 1
            self._bytes += len(payload)
            self._changed.notify()
            return True

    def __len__(self) -> int:
        """Events queued or running."""
        with self._changed:
            return self._held

    def stop(self) -> None:
        """Drop what is queued; the dispatcher ends once the event it runs, if any, ends (join() waits)."""
        with self._changed:
            self._stopping = True
            self._heap.clear()
            self._changed.notify()

    def join(self) -> None:
        self._thread.join()

    def _next(self) -> _Queued | None:
        """The next event that is due, waiting for one; None once stopped."""
        with self._changed:
            while not self._stopping:
                if self._heap and self._heap[0].due <= self._clock():
                    return heapq.heappop(self._heap)
                self._changed.wait(self._heap[0].due - self._clock() if self._heap else None)
            return None

    def _requeue(self, queued: _Queued, wait_s: float) -> None:
        with self._changed:
            queued.due, queued.sequence = self._clock() + wait_s, next(self._sequence)
            heapq.heappush(self._heap, queued)
            self._changed.notify()

    def _done(self, queued: _Queued) -> None:
        with self._changed:
            self._held -= 1
            self._bytes -= len(queued.payload)

    def _dispatch(self) -> None:
        while (queued := self._next()) is not None:
            if self._clock() - queued.received > self.policy.max_age_s:
                _log(queued, "dropped: older than the maximum event age")
                self._done(queued)
                continue
            try:
                event = json.loads(queued.payload) if queued.payload.strip() else {}
                result = queued.pool.invoke(event, queued.request_id)
            except Throttled:
                wait = self.policy.throttle_first_wait_s * 2 ** queued.throttles
                queued.throttles += 1
                self._requeue(queued, min(wait, self.policy.throttle_max_wait_s))
                continue
            except Exception as error:  # the one dispatcher must go on: this event alone is lost
                _log(queued, f"dropped: the endpoint failed to run it: {error!r}")
                self._done(queued)
                continue
            self._settle(queued, result)

    def _settle(self, queued: _Queued, result: Result) -> None:
        if result.error_type is None:
            _log(queued, "ok")
        elif queued.attempts < self.policy.max_retries:
            queued.attempts += 1
            _log(queued, f"Unhandled {result.error_type}: retry {queued.attempts} of {self.policy.max_retries}")
            self._requeue(queued, self.policy.retry_delay_s * queued.attempts)
            return
        else:
            _log(queued, f"Unhandled {result.error_type}: dropped after {queued.attempts} retries")
        self._done(queued)
