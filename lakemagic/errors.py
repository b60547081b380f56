"""Errors the notebook shows as one short message instead of a traceback.

IPython renders an exception that has `_render_traceback_` with the lines
that method returns; the cell still fails, so a papermill run stops there.
Each class names itself once, as the first word of what is shown. Mistakes
in a magic's own options are IPython's `UsageError`.
"""

from __future__ import annotations

import functools


class LakeMagicError(Exception):
    def shown(self) -> str:
        """What the notebook shows: the error's kind, then its message."""
        return f"{type(self).__name__}: {self}"

    def _render_traceback_(self) -> list[str]:
        return self.shown().splitlines()


class EngineError(LakeMagicError):
    """The engine could not deliver an answer (as opposed to an SQL error in the answer)."""


class RetryableEngineError(EngineError):
    """A call the engine failed in a way that running it again may cure: throttled, crashed, timed out."""


class ParameterError(LakeMagicError):
    """A `$name` in the SQL that no notebook variable can fill."""


class ViewError(LakeMagicError):
    """A view that cannot be saved or composed: bad name, cycle, parameters, unknown view."""


class LakeQueryError(LakeMagicError):
    """An error answer: its type (DuckDB's error class or the handler's own) and message, pointing into the SQL."""

    def __init__(self, error_type: str, message: str, sql: str | None = None, position: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.sql = sql
        self.position = position
        # The line the SQL starts on as the user sees it: 2 in a `%%lakesql` cell, below the magic's own line.
        self.first_line = 1

    def __str__(self) -> str:
        text = f"{self.error_type}: {self.message}"
        pointer = self.pointer()
        return f"{text}\n{pointer}" if pointer else text

    def shown(self) -> str:
        return str(self)  # the error type already leads

    def pointer(self) -> str:
        """The SQL line the error is on, with a caret under its position."""
        if self.sql is None or self.position is None:
            return ""
        start = self.sql.rfind("\n", 0, self.position) + 1
        end = self.sql.find("\n", self.position)
        line = self.sql[start : end if end >= 0 else len(self.sql)]
        line_number = self.first_line + self.sql.count("\n", 0, self.position)
        label = f"LINE {line_number}: "
        return f"{label}{line}\n{' ' * (len(label) + self.position - start)}^"


class QueryInterrupted(LakeMagicError):
    """The kernel was interrupted (■, Ctrl-C) while it waited for the engine; the cell fails, the kernel goes on."""


def lines_as_in_the_cell(magic):
    """A line-cell magic whose SQL errors number their LINE as the cell shows it, the magic's line included."""
    @functools.wraps(magic)
    def run(self, line: str, cell: str | None = None):
        try:
            return magic(self, line, cell)
        except LakeQueryError as error:
            if cell is not None and error.sql == cell:  # not a fan-out task's or a view's own SQL
                error.first_line = 2
            raise
    return run
