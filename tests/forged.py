"""An engine that stands for a hostile or broken function: every call is answered with the same wire answer,
which the notebook must check on arrival like any other."""

from __future__ import annotations

import copy

from lakemagic.engines import Engine, Reply


class Forged(Engine):
    """An engine whose every answer is `wire`."""

    name, concurrency, shares_files = "forged", 1, False

    def __init__(self, wire: dict):
        self.wire = wire

    def call(self, request) -> Reply:
        return Reply(copy.deepcopy(self.wire))
