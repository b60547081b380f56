"""Engines: where the lake handler runs. The notebook side needs only `call`.

An engine takes a protocol request (a dict) and returns the handler's
answer (a dict). Everything else, paging and decoding included, is built
on that one method, so a new engine is configuration, not code.
"""

from __future__ import annotations

import json
import os
from typing import Protocol

from .errors import EngineError

DEFAULT_LAKE = os.path.join("~", ".lakemagic", "lake")
# The function `lakemagic deploy` creates, and the Lambda engine's default.
DEFAULT_FUNCTION_NAME = "lakemagic"


class Engine(Protocol):
    name: str
    concurrency: int  # how many calls may run at once, e.g. to fetch a result's parts

    def call(self, request: dict) -> dict: ...


class EmbeddedEngine:
    """The lake handler in this process, over a local lake folder.

    Requests and answers pass through JSON exactly as they would to and
    from Lambda, so anything that would not survive the wire fails here too.
    """

    name = "local"
    concurrency = 1  # one handler, one database: calls take turns

    def __init__(self, lake: str = DEFAULT_LAKE):
        from lakelambda.handler import LakeHandler

        self.lake = os.path.abspath(os.path.expanduser(lake))
        if not os.path.isdir(self.lake):
            raise EngineError(
                f"EngineError: the lake folder {self.lake} does not exist; build it with "
                f"`lakemagic load --lake {self.lake}` or point at another with %config LakeMagic.lake = '...'"
            )
        self._handler = LakeHandler(self.lake)

    def call(self, request: dict) -> dict:
        event = json.loads(json.dumps(request))
        return json.loads(json.dumps(self._handler(event, None)))
