"""The embedded engine: the lake handler in this process, over a local lake folder."""

from __future__ import annotations

import json
import os

from lakelambda import protocol

from ..errors import EngineError
from .base import DEFAULT_LAKE, Engine, Reply, check_result_path


class EmbeddedEngine(Engine):
    """Through `call`, requests and answers pass through JSON exactly as they would to and from Lambda,
    so anything that would not survive the wire fails here too. A query the notebook runs takes
    `query_here` instead: the same handler and the same checks, its rows handed over in this process.
    """

    name = "local"
    concurrency = 1  # one handler, one database: calls take turns
    shares_files = True
    interruptible = True
    in_process = True

    def __init__(self, lake: str = DEFAULT_LAKE):
        from lakelambda.handler import LakeHandler

        self.lake = os.path.abspath(os.path.expanduser(lake))
        if not os.path.isdir(self.lake):
            raise EngineError(
                f"the lake folder {self.lake} does not exist; build it with "
                f"`lakemagic load --lake {self.lake}` or point at another with %config LakeMagic.lake = '...'"
            )
        self._handler = LakeHandler(self.lake, track_progress=True)

    def call(self, request) -> Reply:
        event = json.loads(json.dumps(protocol.encode(request)))
        return Reply(json.loads(json.dumps(self._handler(event, None))))

    def may_download(self, url: str, result_id: str) -> bool:
        return check_result_path(url, self.lake, result_id)

    def query_here(self, request, take=None):
        return self._handler.query_here(request, take)

    def interrupt(self) -> None:
        """Interrupt DuckDB in the calls now running (from another thread than theirs)."""
        self._handler.interrupt()

    def progress(self) -> float | None:
        """DuckDB's own progress of the running statement, in percent, where it reports one."""
        return self._handler.progress()
