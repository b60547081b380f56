"""The engine interface: where the lake handler runs. The notebook side needs only `call`.

An engine takes a protocol request (a JSON-ready dict) and returns the
handler's answer as it came over the wire, plus what the platform itself
reported of the call. Paging, decoding and everything else is built on
that one method, so a new engine is configuration, not code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

DEFAULT_LAKE = os.path.join("~", ".lakemagic", "lake")


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
    answer: object  # the handler's answer, as decoded from the wire: parse it with protocol.parse_answer
    lambda_figures: LambdaFigures | None = None


class Engine(Protocol):
    name: str  # what messages call it
    concurrency: int  # how many calls may run at once, e.g. to fetch a result's parts
    shares_files: bool  # runs on this machine, so a stored result's local path may be read directly

    def call(self, request: dict) -> Reply: ...
