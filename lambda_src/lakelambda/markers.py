"""The markers a message's field carries beside its type, in `Annotated[...]`: its bounds (Text,
Range, Items), a conversion (Via), its place on the wire (At) and whether it may be left out
(OMITTED). The declarations (fields.py, protocol.py, answers.py) write them; the codec (wire.py)
reads them.

Only the standard library: the handler's cold-start path.
"""

from __future__ import annotations

import re
from typing import Any, Callable

# The markers are plain classes, not dataclasses: making a dataclass costs the cold start a millisecond.


class Text:
    """A string of `least` to `chars` characters (not only blanks unless `blank`), matching `pattern`
    whole if one is given; `says` what it must be, in a refusal."""

    __slots__ = ("chars", "least", "pattern", "says", "blank")

    def __init__(self, chars: int, least: int = 0, pattern: re.Pattern | None = None, says: str = "a string",
                 blank: bool = True):
        self.chars, self.least, self.pattern, self.says, self.blank = chars, least, pattern, says, blank

    def describe(self) -> str:
        if self.pattern is not None:
            return self.says
        return f"{self.says} of {f'{self.least} to' if self.least > 1 else 'at most'} {self.chars} characters"


class Range:
    """A number in [low, high] (an int field refuses floats; a float field takes both, finite)."""

    __slots__ = ("low", "high")

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high


class Items:
    """A list or object of `least` to `most` items (`noun` in a refusal), optionally `unique`, and
    optionally of at most `chars` characters together (its strings become SQL on the other side)."""

    __slots__ = ("most", "least", "noun", "unique", "chars")

    def __init__(self, most: int, least: int = 0, noun: str = "items", unique: bool = False,
                 chars: int | None = None):
        self.most, self.least, self.noun, self.unique, self.chars = most, least, noun, unique, chars


class Via:
    """A conversion on arrival (and, with `encode`, before sending): `decode` returns the value to keep
    and raises ValueError (a ProtocolError says it all) when the value cannot be one."""

    __slots__ = ("decode", "says", "encode")

    def __init__(self, decode: Callable[[Any], Any], says: str = "", encode: Callable[[Any], Any] | None = None):
        self.decode, self.says, self.encode = decode, says, encode


class At:
    """A field's place on the wire, as keys from its message's object: at("download", "url") inside
    a "download" object; at() spreads a nested message's fields into its parent's object."""

    __slots__ = ("keys",)

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys


def at(*keys: str) -> At:
    return At(keys)


# A field marked OMITTED may be left out of the wire (then it has its default), and is left out
# when it has its default: the optional fields a newer end added without breaking an older one.
OMITTED = "omitted"
