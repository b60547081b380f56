"""Waiting for the engine: a line that counts up the seconds, and Ctrl-C that stops the call.

Where the engine runs DuckDB in this process and can interrupt it (the
embedded engine), and the wait is on the main thread (a kernel's cell), the
call runs right here: no hand-off to a thread and back delays a quick query,
and no thread of ours wakes while DuckDB's use the cores. The kernel's
interrupt (SIGINT) still reaches DuckDB, whose Python binding runs Python's
signal handlers between its tasks: the handler the wait puts in place for the
call interrupts the engine's statements (from a thread of its own, again and
again until the call returns: one landing between two statements is lost),
and never raises inside the handler's code, which ends as on any failed
statement. Anywhere else (a Lambda call, which cannot be stopped, or a wait off
the main thread) the call runs on a thread of its own while this one waits,
and Ctrl-C stops the wait at once.

The line is drawn by one thread of this module's, which ticks while calls
come and sleeps when none has come for a while. It is one IPython display,
shown only once a call has taken a moment and then replaced in place by the
result (or emptied), so a notebook run headless (papermill, nbconvert) keeps
the final table and nothing of the wait.

The line also shows what is known of the call's progress: the embedded
engine's DuckDB progress (an engine's `progress()`), and what code that
knows more, such as a fan-out's tasks done of total, reports through
`current().tasks(done, total)`.
"""

from __future__ import annotations

import contextvars
import html
import signal
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
IDLE_S = 10.0
"""How long the line's thread keeps ticking after the last call began, before it sleeps until the next."""
STOP_WITHIN_S = 5.0
"""How long an interrupted engine that can stop is given to do so before a wait on another thread is abandoned,
or a second interrupt stops a call on this one where it is."""
INTERRUPT_EVERY_S = 0.05
"""How often an interrupted call's statements are interrupted again until it returns."""
SAME_PRESS_S = 2.0
"""An interrupt this soon after one stopped a call is the same press of ■ (a double click, a key held)."""
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
        """Display `obj`, which makes its whole bundle (`_repr_mimebundle_`), in place of the waiting line, or as a
        new output if none was shown. The bundle is published as it is made: IPython's formatters would each ask
        `obj` again for a form it has not (0.1 ms)."""
        bundle = obj._repr_mimebundle_()
        if self._handle is None:
            display(bundle, raw=True)
        else:
            self._handle.update(bundle, raw=True)
            self._handle = None

    def run(self, call: Callable[[], T]) -> T:
        """`call()`'s value or exception; QueryInterrupted when the kernel is interrupted meanwhile."""
        status = Status()
        context = contextvars.copy_context()
        context.run(_current.set, status)
        _SamePress.over()  # a new call: the last stop's press is over
        watched = _Watched(self, status, self._likely_cold())
        _WATCHER.watch(watched)
        try:
            if self.engine.in_process and self.engine.interruptible and _interrupt_reaches_here():
                return self._run_here(lambda: context.run(call), watched.started)
            return self._run_on_a_thread(lambda: context.run(call), watched.started)
        finally:
            _WATCHER.forget(watched)  # once it returns, the line is this thread's alone

    def _run_here(self, call: Callable[[], T], started: float) -> T:
        """`call()` on this thread, the kernel's interrupt stopping the engine's statements meanwhile."""
        interrupted = _Interrupter(self.engine)
        previous = signal.signal(signal.SIGINT, interrupted)
        try:
            value = call()
        except KeyboardInterrupt:  # the interrupt again, STOP_WITHIN_S after one the engine did not stop at
            raise QueryInterrupted(f"interrupted after {int(time.monotonic() - started)} s; the {self.engine.name} "
                                   f"engine did not stop within {STOP_WITHIN_S:g} s, so the second interrupt "
                                   "stopped the call where it was") from None
        except BaseException:  # an interrupted call fails as its statement was stopped: said below, as the interrupt
            if interrupted.at is None:
                raise
        finally:
            interrupted.end()
            signal.signal(signal.SIGINT, previous)
            if interrupted.at is not None:
                _SamePress.hold(previous)
        if interrupted.at is not None:  # stopped, or done before the interrupt reached a statement: its value dropped
            raise QueryInterrupted(f"interrupted after {int(interrupted.at - started)} s; the {self.engine.name} "
                                   "engine stopped the query")
        return value

    def _run_on_a_thread(self, call: Callable[[], T], started: float) -> T:
        """`call()` on a thread of its own; QueryInterrupted at once when the kernel is interrupted meanwhile."""
        outcome: dict = {}
        finished = threading.Event()

        def work() -> None:
            try:
                outcome["value"] = call()
            except BaseException as exc:  # handed to the waiting thread, or dropped with an abandoned call
                outcome["error"] = exc
            finally:
                finished.set()

        # A daemon thread: a Lambda call left behind must not hold up the kernel's exit.
        threading.Thread(target=work, name="lakemagic-call", daemon=True).start()
        try:
            finished.wait()
        except KeyboardInterrupt:
            _SamePress.hold(signal.getsignal(signal.SIGINT))
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
                finished.wait(INTERRUPT_EVERY_S)
            if finished.is_set():
                return QueryInterrupted(f"interrupted after {int(elapsed)} s; the {self.engine.name} engine stopped the query")
            return QueryInterrupted(f"stopped waiting after {int(elapsed)} s; the {self.engine.name} engine did not stop "
                                    f"the query within {STOP_WITHIN_S:g} s, so it runs on and its answer is dropped")
        return QueryInterrupted(
            f"stopped waiting after {int(elapsed)} s; the {self.engine.name} engine cannot cancel a call, so it runs "
            "on until its time budget ends and its answer is dropped"
        )


def _interrupt_reaches_here() -> bool:
    """Whether the kernel's interrupt can be taken on this thread: only the main thread runs signal handlers, and
    only one that Python put in place can be put back."""
    return threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not None


class _SamePress:
    """The SIGINT handler for SAME_PRESS_S after an interrupt stopped a call, on either path: a quick second ■ is the
    same interrupt, and would otherwise land in IPython's code (showing the stop) as a traceback. Later ones, or a
    new call, give the kernel's handler back."""

    def __init__(self, previous) -> None:
        self.previous = previous
        self.until = time.monotonic() + SAME_PRESS_S

    @staticmethod
    def hold(previous) -> None:
        """In place of `previous`, the handler Python put in place that an interrupt just went to."""
        if previous is not None:
            signal.signal(signal.SIGINT, _SamePress(previous))

    @staticmethod
    def over() -> None:
        if threading.current_thread() is threading.main_thread():
            handler = signal.getsignal(signal.SIGINT)
            if isinstance(handler, _SamePress):
                signal.signal(signal.SIGINT, handler.previous)

    def __call__(self, signum, frame) -> None:
        if time.monotonic() < self.until:
            return
        signal.signal(signal.SIGINT, self.previous)
        if callable(self.previous):
            self.previous(signum, frame)
        else:  # SIG_DFL or SIG_IGN: what it does with the signal
            signal.raise_signal(signum)


class _Interrupter:
    """The SIGINT handler while a call runs on the main thread: the first interrupt interrupts the engine's
    statements every INTERRUPT_EVERY_S, from a thread of its own, until the call returns (`end`); one more,
    STOP_WITHIN_S later, raises KeyboardInterrupt where the call is, as Python's own handler would."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.at: float | None = None  # when the interrupt came (time.monotonic)
        self._ended: threading.Event | None = None  # made at the interrupt: most calls have none

    def __call__(self, signum, frame) -> None:
        if self.at is not None:
            if time.monotonic() - self.at >= STOP_WITHIN_S:  # not stopped (Python that runs on): as Python stops
                raise KeyboardInterrupt
            return
        self.at = time.monotonic()
        self._ended = ended = threading.Event()
        self.engine.interrupt()  # most often DuckDB ran this handler from a statement: it stops at its next task
        threading.Thread(target=self._again, args=(ended,), name="lakemagic-interrupt", daemon=True).start()

    def _again(self, ended: threading.Event) -> None:
        while not ended.wait(INTERRUPT_EVERY_S):
            self.engine.interrupt()

    def end(self) -> None:
        if self._ended is not None:
            self._ended.set()


class _Watched:
    """A call being waited for, as the line's thread sees it: its wait, status, start, when its line is next due
    (SHOW_AFTER_S after the start, then every TICK_S), and a context of the cell's to draw in (the call's own
    is entered by the call)."""

    def __init__(self, wait: Wait, status: Status, cold: bool) -> None:
        self.wait, self.status, self.cold = wait, status, cold
        self.started = time.monotonic()
        self.due = self.started + SHOW_AFTER_S
        self.context = contextvars.copy_context()

    def tick(self, now: float) -> None:
        if now < self.due:
            return
        while self.due <= now:
            self.due += TICK_S
        self.context.run(self.wait._line, self.wait._text(now - self.started, self.cold, self.status))


class _Watcher:
    """The one thread that draws the waiting lines: it ticks while calls come, and sleeps from IDLE_S after the
    last one began until the next, so beginning a call wakes no thread while calls keep coming."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held to draw, and to change what is watched
        self._watched: list[_Watched] = []
        self._last = 0.0  # when the last call began
        self._busy = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, watched: _Watched) -> None:
        with self._lock:
            self._watched.append(watched)
            self._last = watched.started
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, name="lakemagic-waiting-line", daemon=True)
                self._thread.start()
            if not self._busy.is_set():
                self._busy.set()

    def forget(self, watched: _Watched) -> None:
        """Stop drawing `watched`'s line (waiting for a draw in progress to end)."""
        with self._lock:
            self._watched.remove(watched)

    def _tick(self) -> None:
        while True:
            self._busy.wait()
            with self._lock:
                now = time.monotonic()
                for watched in self._watched:
                    try:
                        watched.tick(now)
                    except Exception:  # a line that cannot be drawn leaves its call to run and the others to draw
                        pass
                if not self._watched and now - self._last > IDLE_S:
                    self._busy.clear()
                # A call that begins meanwhile is due SHOW_AFTER_S from now at the earliest: later than this.
                wake = min([now + TICK_S, *(watched.due for watched in self._watched)])
            time.sleep(max(0.0, wake - time.monotonic()))


_WATCHER = _Watcher()
