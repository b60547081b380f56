"""The engine interface: where requests are answered. The notebook side needs only `call`.

An engine takes a protocol request (a dataclass of lakelambda.protocol)
and returns the answer as it came over the wire, plus what the platform
itself reported of the call. Paging, decoding and everything else is built on that one method,
so a new engine is configuration, not code. What an engine can do beyond
answering (stop a running call, report progress, fan out) it says on this
interface, with defaults that do nothing, so no caller asks which engine it has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lakelambda.protocol import RESULTS_FOLDER

from ..errors import EngineError

DEFAULT_LAKE = os.path.join("~", ".lakemagic", "lake")


def check_result_path(path: str, lake: str, result_id: str) -> bool:
    """True if `path` is stored result `result_id`'s file in the local lake `lake` (as the handler names
    it, storage.LocalFolder), else EngineError: a download answer of an engine on this machine."""
    if path != "/".join((lake, RESULTS_FOLDER, f"{result_id}.parquet")):
        raise EngineError(f"the engine's download answer names {path[:300]!r}, not result {result_id}'s file "
                          f"in its lake {lake}")
    return True


@dataclass(frozen=True)
class LambdaFigures:
    """What AWS Lambda reported of one invocation (its REPORT line), and what that costs."""

    billed_ms: int | None = None
    memory_mb: int | None = None
    max_memory_used_mb: int | None = None
    init_ms: float | None = None
    request_id: str | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class Reply:
    answer: object  # the answer, as decoded from the wire: parse it with protocol.parse_answer
    lambda_figures: LambdaFigures | None = None


class Engine:
    name = "engine"  # what messages call it
    concurrency = 1  # how many calls may run at once, e.g. to fetch a result's parts
    shares_files = False  # runs on this machine, so a stored result's local path may be read directly
    can_fan_out = False  # each call has a machine of its own, so a query split over many calls runs faster
    interruptible = False  # interrupt() stops a running call (else a call, once sent, runs to its end)
    in_process = False  # hosts the handler in this process: query_here() answers a query without the wire

    def call(self, request) -> Reply:
        """The answer to `request` (a protocol request dataclass), as the wire carries it."""
        raise NotImplementedError

    def query_here(self, request, take=None):
        """A query request answered in this process, as an object (lakelambda.handler.LakeHandler.query_here:
        a run.Here, or an ErrorAnswer); only where the engine hosts the handler (`in_process`)."""
        raise NotImplementedError(f"the {self.name} engine does not run queries in this process")

    def interrupt(self) -> None:
        """Stop the calls now running, from another thread than theirs, where the engine can."""

    def progress(self) -> float | None:
        """The running statement's progress in percent, where the engine reports one."""
        return None

    def seconds_since_answer(self) -> float | None:
        """How long since the engine last answered, where that says whether the next call starts cold."""
        return None

    def may_download(self, url: str, result_id: str) -> bool:
        """Whether a download answer's `url` may be read: True where it is where this engine keeps stored
        result `result_id`; False where the engine cannot tell (the result then comes in parts through
        the engine, and nothing the answer names is read). EngineError where it can tell and `url` is
        elsewhere: a forged or broken answer, refused before anything reads it."""
        return False
