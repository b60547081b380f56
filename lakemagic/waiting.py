"""Waiting for the engine: a line that counts up the seconds, and Ctrl-C that stops the wait.

The call runs in a worker thread while the main thread, where IPython turns
the kernel's interrupt (SIGINT) into KeyboardInterrupt, shows how long it has
been running and stays ready to stop. The line is one IPython display, shown
only once a call has taken a moment and then replaced in place by the result
(or emptied), so a notebook run headless (papermill, nbconvert) keeps the
final table and nothing of the wait.

The line also shows what is known of the call's progress: the embedded
engine's DuckDB progress (an engine's `progress()`), and what code that
knows more, such as a fan-out's tasks done of total, reports through
`current().tasks(done, total)`.
"""

from __future__ import annotations

import contextvars
import html
import threading
import time
from typing import Callable, TypeVar

from IPython.display import display

from .errors import QueryInterrupted

T = TypeVar("T")

SHOW_AFTER_S = 1.0
"""A call quicker than this shows no waiting line at all."""
TICK_S = 0.25
"""How often the line is refreshed (it changes only when its text does)."""
STOP_WITHIN_S = 5.0
"""How long an interrupted engine that can stop is given to do so before the wait is abandoned."""
IDLE_CONTAINER_S = 600
"""After this long without an answer a Lambda container has likely been reclaimed (AWS keeps idle ones minutes)."""


class Status:
    """What a running call has reported of its progress beyond the seconds; safe to set from any thread."""

    def __init__(self) -> None:
        self.done: int | None = None
        self.total: int | None = None

    def tasks(self, done: int, total: int) -> None:
        """`done` of `total` tasks of the call have finished."""
        self.done, self.total = done, total


_current: contextvars.ContextVar[Status | None] = contextvars.ContextVar("lakemagic_wait_status", default=None)


def current() -> Status:
    """The status of the call being waited for (a throwaway one outside a wait); threads a call starts should
    take it here, in the call's own thread, and report to it."""
    return _current.get() or Status()


class Wait:
    """One cell's wait on `engine`: `run` calls, `show` puts the result where the waiting line was.

    Used as a context manager, it empties the line when the cell ends without
    having shown anything there (an assignment, an error).
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        self._handle = None
        self._text_shown = ""

    def __enter__(self) -> "Wait":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": ""}, raw=True)
            self._handle = None

    def show(self, obj) -> None:
        """Display `obj` in place of the waiting line, or as a new output if none was shown."""
        if self._handle is None:
            display(obj)
        else:
            self._handle.update(obj)
            self._handle = None

    def run(self, call: Callable[[], T]) -> T:
        """`call()`'s value or exception; QueryInterrupted at once when the kernel is interrupted meanwhile."""
        status = Status()
        outcome: dict = {}
        finished = threading.Event()
        context = contextvars.copy_context()
        context.run(_current.set, status)

        def work() -> None:
            try:
                outcome["value"] = context.run(call)
            except BaseException as exc:  # handed to the waiting thread, or dropped with an abandoned call
                outcome["error"] = exc
            finally:
                finished.set()

        cold = self._likely_cold()
        # A daemon thread: a Lambda call left behind must not hold up the kernel's exit.
        threading.Thread(target=work, name="lakemagic-call", daemon=True).start()
        started = time.monotonic()
        try:
            while not finished.wait(TICK_S):
                elapsed = time.monotonic() - started
                if elapsed >= SHOW_AFTER_S:
                    self._line(self._text(elapsed, cold, status))
        except KeyboardInterrupt:
            raise self._stop(finished, time.monotonic() - started) from None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _likely_cold(self) -> bool:
        if not self.engine.can_fan_out:  # an engine without containers of its own never starts one
            return False
        idle = self.engine.seconds_since_answer()
        return idle is None or idle > IDLE_CONTAINER_S

    def _text(self, elapsed: float, cold: bool, status: Status) -> str:
        parts = [f"running on {self.engine.name}"]
        if cold:
            parts.append("likely starting a container")
        if status.total:
            parts.append(f"{status.done} of {status.total} tasks done")
        percent = self.engine.progress()
        if percent is not None:
            parts.append(f"{percent:.0f}% done")
        parts.append(f"{int(elapsed)} s")
        return " · ".join(parts)

    def _line(self, text: str) -> None:
        # Each form says the interrupt of the front ends that show it: a notebook's ■ or I,I (Ctrl-C there copies),
        # a terminal's Ctrl-C.
        bundle = {"text/plain": f"{text} (Ctrl-C interrupts)",
                  "text/html": f"<div class='lakemagic-waiting' style='color:var(--jp-ui-font-color2, #666)'>"
                               f"{html.escape(text)} <small>(■ or I,I interrupts)</small></div>"}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        elif text != self._text_shown:
            self._handle.update(bundle, raw=True)
        self._text_shown = text

    def _stop(self, finished: threading.Event, elapsed: float) -> QueryInterrupted:
        """Stop an engine that can stop (it interrupts DuckDB); leave a call to one that cannot, unread."""
        if self.engine.interruptible:
            deadline = time.monotonic() + STOP_WITHIN_S
            while not finished.is_set() and time.monotonic() < deadline:
                self.engine.interrupt()  # again and again: one landing between two statements is lost
                finished.wait(0.05)
            if finished.is_set():
                return QueryInterrupted(f"interrupted after {int(elapsed)} s; the {self.engine.name} engine stopped the query")
            return QueryInterrupted(f"stopped waiting after {int(elapsed)} s; the {self.engine.name} engine did not stop "
                                    f"the query within {STOP_WITHIN_S:g} s, so it runs on and its answer is dropped")
        return QueryInterrupted(
            f"stopped waiting after {int(elapsed)} s; the {self.engine.name} engine cannot cancel a call, so it runs "
            "on until its time budget ends and its answer is dropped"
        )
