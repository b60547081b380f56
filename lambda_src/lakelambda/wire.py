"""The protocol's codec: a message's wire form, both ways, derived from its dataclass fields.

protocol.py declares each message once, as a frozen dataclass whose field
types say what may travel: str, int, float, bool, Literal choices, None in a
union, nested dataclasses, tuples of them (JSON lists), tuples of
(str, value) pairs (JSON objects) and dicts. Beside each type, in
`Annotated[...]`, stand its bounds (Text, Range, Items), any conversion
(Via) and, where it is not the field's name, its place on the wire (At).
`encode` and `decode` read those declarations and nothing else, so a field
cannot be sent without being checked on arrival: every string must be
valid UTF-8 text within its length (and pattern), every number within its
range, every list within its count, and no unknown field is accepted.

Only the standard library: the handler's cold-start path.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from typing import Any, Callable

from .errors import ProtocolError


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


class _Field:
    __slots__ = ("name", "type", "place", "omitted", "default")

    def __init__(self, name: str, kind, place: tuple[str, ...], omitted: bool, default):
        self.name, self.type, self.place, self.omitted, self.default = name, kind, place, omitted, default


@functools.lru_cache(maxsize=None)
def _fields(cls) -> tuple[_Field, ...]:
    """A message's fields as the codec reads them. The annotations are evaluated here, on a class's
    first use, not when protocol.py is imported: the handler's cold start pays only for what it uses."""
    found = []
    kinds = typing.get_type_hints(cls, include_extras=True)
    for spec in dataclasses.fields(cls):
        kind = kinds[spec.name]
        base, markers = _unpack(kind)
        place = next((marker.keys for marker in markers if isinstance(marker, At)), (spec.name,))
        default = spec.default if spec.default is not dataclasses.MISSING else dataclasses.MISSING
        if spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        found.append(_Field(spec.name, kind, place, OMITTED in markers, default))
        _require_bounds(kind, f"{cls.__name__}.{spec.name}")
    return tuple(found)


@functools.lru_cache(maxsize=None)
def _unpack(kind) -> tuple[Any, tuple]:
    """A type without its Annotated markers, and the markers."""
    if typing.get_origin(kind) is typing.Annotated:
        base, *markers = typing.get_args(kind)
        return base, tuple(markers)
    return kind, ()


def _marker(markers: tuple, kind: type):
    return next((marker for marker in markers if isinstance(marker, kind)), None)


def _require_bounds(kind, where: str) -> None:
    """Every string, number and collection a message declares has its bounds (a programming error if not)."""
    base, markers = _unpack(kind)
    origin, args = typing.get_origin(base), typing.get_args(base)
    needed = {str: Text, int: Range, float: Range, tuple: Items, dict: Items}.get(origin or base)
    if needed is not None and _marker(markers, needed) is None and _marker(markers, Via) is None:
        raise TypeError(f"{where} declares no {needed.__name__} bounds")
    if origin is tuple and _is_pairs(args):
        args = typing.get_args(_unpack(args[0])[0])
    for arg in args if origin in (tuple, dict, typing.Union, types.UnionType) else ():
        if arg is not Ellipsis and arg is not type(None):
            _require_bounds(arg, where)


# --- encoding ----------------------------------------------------------------


def encode_fields(message) -> dict:
    """A dataclass's fields as a JSON-ready object, each at its place."""
    wire: dict[str, Any] = {}
    for field in _fields(type(message)):
        value = getattr(message, field.name)
        if field.omitted and value == field.default:
            continue
        encoded = _encode(field.type, value)
        if not field.place:
            wire.update(encoded)
            continue
        target = wire
        for key in field.place[:-1]:
            target = target.setdefault(key, {})
        target[field.place[-1]] = encoded
    return wire


def _encode(kind, value):
    base, markers = _unpack(kind)
    via = _marker(markers, Via)
    if via is not None and via.encode is not None:
        return via.encode(value)
    if value is None:
        return None
    if dataclasses.is_dataclass(value):
        return encode_fields(value)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin in (typing.Union, types.UnionType):
        return _encode(next(arg for arg in args if arg is not type(None)), value)
    if origin is tuple and _is_pairs(args):
        item_kind = typing.get_args(_unpack(args[0])[0])[1]
        return {key: _encode(item_kind, item) for key, item in value}
    if origin is tuple:
        return [_encode(args[0], item) for item in value]
    if origin is dict:
        return {key: _encode(args[1], item) for key, item in value.items()}
    return value


def _is_pairs(args: tuple) -> bool:
    """tuple[tuple[str, X], ...]: (key, value) pairs in order, which travel as a JSON object."""
    item = _unpack(args[0])[0] if args else None
    return typing.get_origin(item) is tuple and len(typing.get_args(item)) == 2 \
        and typing.get_args(item)[1] is not Ellipsis


# --- decoding ----------------------------------------------------------------


def decode_fields(cls, wire: Any, where: str = ""):
    """An instance of the dataclass `cls` from its wire object, every field checked; ProtocolError
    names the first field that does not fit. `where` is the object's own place, "" for a message."""
    if not isinstance(wire, dict):
        raise ProtocolError(f"'{where}' must be an object with exactly {_names(cls)}" if where
                            else "the message must be a JSON object")
    unknown = sorted(_unknown_keys(wire, _shape(cls)))
    if unknown:
        if where:
            raise ProtocolError(f"'{where}' must be an object with exactly {_names(cls)}")
        raise ProtocolError(f"unknown field(s) {', '.join(unknown)}")
    return _build(cls, wire, where)


def _build(cls, wire: dict, where: str):
    values = {}
    for field in _fields(cls):
        if not field.place:
            values[field.name] = _build(_unpack(field.type)[0], wire, where)
            continue
        path = ".".join(filter(None, (where, *field.place)))
        found, value = _lookup(wire, field.place, where)
        if not found:
            if field.omitted:
                continue
            if where:
                raise ProtocolError(f"'{where}' must be an object with exactly {_names(cls)}")
            raise ProtocolError(f"'{path}' is missing")
        values[field.name] = _decode(field.type, value, path)
    message = cls(**values)
    check = getattr(message, "check_arrival", None)
    return check() if check is not None else message


def _lookup(wire: dict, keys: tuple[str, ...], where: str) -> tuple[bool, Any]:
    for depth, key in enumerate(keys[:-1]):
        wire = wire.get(key)
        if not isinstance(wire, dict):
            raise ProtocolError(f"'{'.'.join(filter(None, (where, *keys[:depth + 1])))}' must be an object")
    return (keys[-1] in wire), wire.get(keys[-1])


@functools.lru_cache(maxsize=None)
def _shape(cls) -> dict:
    """The keys a class's wire object has: {key: None} for a value, {key: {...}} for a group of fields."""
    shape: dict = {}
    for field in _fields(cls):
        if not field.place:
            shape.update(_shape(_unpack(field.type)[0]))
            continue
        target = shape
        for key in field.place[:-1]:
            target = target.setdefault(key, {})
        target[field.place[-1]] = None
    return shape


def _unknown_keys(wire: dict, shape: dict, prefix: str = ""):
    for key, value in wire.items():
        if key not in shape:
            yield prefix + _shown(key, 40) if not isinstance(key, str) else prefix + key
        elif shape[key] is not None and isinstance(value, dict):
            yield from _unknown_keys(value, shape[key], f"{prefix}{key}.")


def _names(cls) -> str:
    names = [f"'{key}'" for key in _shape(cls)]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _decode(kind, value, where: str, nullable: bool = False):
    base, markers = _unpack(kind)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _decode(next(arg for arg in args if arg is not type(None)), value, where, nullable=True)
    either = "null or " if nullable else ""
    via = _marker(markers, Via)
    if via is not None and base is Any:
        return via.decode(value)
    if dataclasses.is_dataclass(base):
        if not isinstance(value, dict):
            raise ProtocolError(f"'{where}' must be {either}an object with exactly {_names(base)}")
        decoded = decode_fields(base, value, where)
    elif origin is tuple:
        decoded = _decode_items(args, _marker(markers, Items), value, where, either)
    elif origin is dict:
        decoded = _decode_mapping(args, _marker(markers, Items), value, where, either)
    elif origin is typing.Literal:
        if not any(value == choice and type(value) is type(choice) for choice in args):
            raise ProtocolError(f"'{where}' must be {either}one of {', '.join(map(repr, args))}, not {_shown(value)}")
        decoded = value
    elif base is bool:
        if type(value) is not bool:
            raise ProtocolError(f"'{where}' must be {either}true or false")
        decoded = value
    elif base in (int, float):
        decoded = _number(base, _marker(markers, Range), value, where, either)
    elif base is str:
        decoded = _text(_marker(markers, Text), value, where, either)
    else:
        raise TypeError(f"the protocol has no wire form for {base!r} ('{where}')")
    if via is not None:
        try:
            return via.decode(decoded)
        except ValueError as exc:
            raise ProtocolError(f"'{where}': {_shown(decoded)} is not {via.says} ({exc})") from None
    return decoded


def _number(kind: type, bounds: Range, value, where: str, either: str):
    accepted = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise ProtocolError(f"'{where}' must be {either}{'an integer' if kind is int else 'a number'}")
    if not bounds.low <= value <= bounds.high:  # NaN fails this too
        raise ProtocolError(f"'{where}' must be between {bounds.low} and {bounds.high}, got {_shown(value)}")
    return kind(value)


def _text(bounds: Text, value, where: str, either: str) -> str:
    if bounds.pattern is not None:
        if not isinstance(value, str) or len(value) > bounds.chars or not re.fullmatch(bounds.pattern, value):
            raise ProtocolError(f"'{where}': {_shown(value)} is not {either}{bounds.describe()}")
    elif not isinstance(value, str) or len(value) < bounds.least or not (bounds.blank or value.strip()):
        raise ProtocolError(f"'{where}' must be {either}{bounds.describe()}")
    elif len(value) > bounds.chars:
        over = len(value) - bounds.chars
        raise ProtocolError(f"'{where}' must be {either}{bounds.describe()}; it is "
                            f"{over} character{'s' * (over != 1)} longer than that")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ProtocolError(f"'{where}' is not Unicode text: it holds a lone surrogate "
                                f"({_shown(value[exc.start:exc.end])}) at character {exc.start}") from None
    return value


def _decode_items(args: tuple, bounds: Items, value, where: str, either: str) -> tuple:
    pairs = _is_pairs(args)
    if not isinstance(value, dict if pairs else list) or not bounds.least <= len(value) <= bounds.most:
        count = f"{bounds.least} to {bounds.most}" if bounds.least else f"at most {bounds.most}"
        raise ProtocolError(f"'{where}' must be {either}{'an object' if pairs else 'a list'} of {count} {bounds.noun}")
    if pairs:
        key_kind, item_kind = typing.get_args(_unpack(args[0])[0])
        items = tuple((_key(key_kind, key, where), _decode(item_kind, item, f"{where}[{_shown(key)}]"))
                      for key, item in value.items())
    else:
        items = tuple(_decode(args[0], item, f"{where}[{index}]") for index, item in enumerate(value))
    _check_together(bounds, items if not pairs else [key for key, _ in items], where)
    return items


def _decode_mapping(args: tuple, bounds: Items, value, where: str, either: str) -> dict:
    if not isinstance(value, dict) or not bounds.least <= len(value) <= bounds.most:
        raise ProtocolError(f"'{where}' must be {either}an object of at most {bounds.most} {bounds.noun}")
    return {_key(args[0], key, where): _decode(args[1], item, f"{where}[{_shown(key)}]") for key, item in value.items()}


def _key(kind, key: str, where: str) -> str:
    try:
        return _decode(kind, key, f"{where} key")
    except ProtocolError:
        raise ProtocolError(f"'{where}' has a key {_shown(key)} that is not "
                            f"{_marker(_unpack(kind)[1], Text).describe()}") from None


def _check_together(bounds: Items, items, where: str) -> None:
    if bounds.unique and len(set(items)) != len(items):
        seen: set = set()
        twice = next(item for item in items if item in seen or seen.add(item))
        raise ProtocolError(f"'{where}' names {_shown(twice)} twice")
    if bounds.chars is not None and sum(map(len, items)) > bounds.chars:
        raise ProtocolError(f"'{where}' together are longer than {bounds.chars} characters")


def _shown(value, chars: int = 60) -> str:
    """A value for a refusal: its repr (ASCII-safe for surrogates), cut short."""
    text = repr(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."
