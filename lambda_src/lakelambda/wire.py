"""The protocol's codec: a message's wire form, both ways, derived from its dataclass fields.

protocol.py declares each message once, as a frozen dataclass whose field
types say what may travel: str, int, float, bool, Literal choices, None in a
union, nested dataclasses, tuples of them (JSON lists), tuples of
(str, value) pairs (JSON objects), tuples of a fixed length whose items
each have their own type (JSON lists) and dicts. Beside each type, in
`Annotated[...]`, stand its bounds (Text, Range, Items), any conversion
(Via), where it is not the field's name its place on the wire (At), and
whether it may be left out (OMITTED). `encode_fields` and `decode_fields`
read those declarations and nothing else (a string, number or collection
declared without bounds is a TypeError), so no field travels unchecked:
every string must be valid UTF-8 text within its length (and pattern),
every number within its range, every list within its count, no unknown
field is accepted, and a message's `check_arrival` then checks what spans
its fields.

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
from .markers import OMITTED, At, Items, Range, Text, Via




class _Field:
    __slots__ = ("name", "type", "place", "path", "omitted", "default")

    def __init__(self, name: str, kind, place: tuple[str, ...], omitted: bool, default):
        self.name, self.type, self.place, self.omitted, self.default = name, kind, place, omitted, default
        self.path = ".".join(place)  # in a refusal


@functools.lru_cache(maxsize=None)
def _fields(cls) -> tuple[_Field, ...]:
    """A message's fields as the codec reads them. The annotations are evaluated here, on a class's
    first use, not when protocol.py is imported: the handler's cold start pays only for what it uses."""
    found = []
    kinds = typing.get_type_hints(cls, include_extras=True)
    for spec in dataclasses.fields(cls):
        kind = kinds[spec.name]
        markers = _unpack(kind)[1]
        place = next((marker.keys for marker in markers if isinstance(marker, At)), (spec.name,))
        default = spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory()
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
    if origin is tuple and _is_fixed(args):
        needed = None  # as many items as it declares
    if needed is not None and _marker(markers, needed) is None and _marker(markers, Via) is None:
        raise TypeError(f"{where} declares no {needed.__name__} bounds")
    if origin is tuple and _is_pairs(args):
        args = typing.get_args(_unpack(args[0])[0])
    for arg in args if origin in (tuple, dict, typing.Union, types.UnionType) else ():
        if arg is not Ellipsis and arg is not type(None):
            _require_bounds(arg, where)


def _is_pairs(args: tuple) -> bool:
    """tuple[tuple[str, X], ...]: (key, value) pairs in order, which travel as a JSON object."""
    item = _unpack(args[0])[0] if args else None
    return typing.get_origin(item) is tuple and len(typing.get_args(item)) == 2 \
        and typing.get_args(item)[1] is not Ellipsis


def _is_fixed(args: tuple) -> bool:
    """tuple[A, B, C]: so many items, each of its own type, which travel as a JSON list."""
    return bool(args) and args[-1] is not Ellipsis


def _optional(args: tuple):
    return next(arg for arg in args if arg is not type(None))


# --- encoding: one function per type, made once ---------------------------------


def encode_fields(message) -> dict:
    """A dataclass's fields as a JSON-ready object, each at its place."""
    kind: type = type(message)  # annotated: mypy does not take type[Any] as Hashable, which an lru_cache key must be
    return _encoder(kind)(message)


@functools.lru_cache(maxsize=None)
def _encoder(kind) -> Callable[[Any], Any]:
    base, markers = _unpack(kind)
    via = _marker(markers, Via)
    if via is not None and via.encode is not None:
        return via.encode
    origin, args = typing.get_origin(base), typing.get_args(base)
    if dataclasses.is_dataclass(base):
        return _object_encoder(base)
    if origin in (typing.Union, types.UnionType):
        inner = _encoder(_optional(args))
        return lambda value: None if value is None else inner(value)
    if origin is tuple and _is_pairs(args):
        item = _encoder(typing.get_args(_unpack(args[0])[0])[1])
        return lambda value: {key: item(entry) for key, entry in value}
    if origin is tuple and _is_fixed(args):
        items = [_encoder(arg) for arg in args]
        return lambda value: [encode(entry) for encode, entry in zip(items, value)]
    if origin is tuple:
        item = _encoder(args[0])
        return lambda value: [item(entry) for entry in value]
    if origin is dict:
        item = _encoder(args[1])
        return lambda value: {key: item(entry) for key, entry in value.items()}
    return _same


def _same(value):
    return value


def _object_encoder(cls) -> Callable[[Any], dict]:
    fields = [(field, _encoder(field.type)) for field in _fields(cls)]

    def encode(message) -> dict:
        wire: dict[str, Any] = {}
        for field, encode_value in fields:
            value = getattr(message, field.name)
            if field.omitted and value == field.default:
                continue
            if not field.place:
                wire.update(encode_value(value))
                continue
            target = wire
            for key in field.place[:-1]:
                target = target.setdefault(key, {})
            target[field.place[-1]] = encode_value(value)
        return wire
    return encode


# --- decoding: one function per type, made once; each takes (value, where, "null or " or "") ----------


def decode_fields(cls, wire: Any, where: str = ""):
    """An instance of the dataclass `cls` from its wire object, every field checked; ProtocolError
    names the first field that does not fit. `where` is the object's own place, "" for a message."""
    return _decoder(cls)(wire, where, "")


@functools.lru_cache(maxsize=None)
def _decoder(kind) -> Callable[[Any, str, str], Any]:
    base, markers = _unpack(kind)
    origin, args = typing.get_origin(base), typing.get_args(base)
    via = _marker(markers, Via)
    if origin in (typing.Union, types.UnionType):
        inner, nullable = _decoder(_optional(args)), type(None) in args
        return lambda value, where, either: None if value is None and nullable else inner(value, where, "null or ")
    if via is not None and base is Any:
        return lambda value, where, either: via.decode(value)
    if dataclasses.is_dataclass(base):
        plain = _object_decoder(base)
    elif origin is tuple and _is_pairs(args):
        plain = _pairs_decoder(typing.get_args(_unpack(args[0])[0]), _marker(markers, Items))
    elif origin is tuple and _is_fixed(args):
        plain = _fixed_decoder(args)
    elif origin is tuple:
        plain = _items_decoder(args[0], _marker(markers, Items))
    elif origin is dict:
        plain = _mapping_decoder(args, _marker(markers, Items))
    elif origin is typing.Literal:
        plain = functools.partial(_choice, args)
    elif base is bool:
        plain = _bool
    elif base in (int, float):
        plain = functools.partial(_number, base, _marker(markers, Range))
    elif base is str:
        plain = functools.partial(_text, _marker(markers, Text))
    else:
        raise TypeError(f"the protocol has no wire form for {base!r}")
    if via is None:
        return plain

    def converted(value, where: str, either: str):
        decoded = plain(value, where, either)
        try:
            return via.decode(decoded)
        except ValueError as exc:
            raise ProtocolError(f"'{where}': {_shown(decoded)} is not {via.says} ({exc})") from None
    return converted


def _object_decoder(cls) -> Callable[[Any, str, str], Any]:
    build = _builder(cls)
    shape = _shape(cls)
    keys = frozenset(shape)

    def decode(wire, where: str, either: str):
        if not isinstance(wire, dict) or (where and not keys.issuperset(wire)):
            raise ProtocolError(f"'{where}' must be {either}an object with exactly {_names(shape)}" if where
                                else "the message must be a JSON object")
        if not where:
            unknown = sorted(_unknown_keys(wire, shape))
            if unknown:
                raise ProtocolError(f"unknown field(s) {', '.join(unknown)}")
        return build(wire, where)
    return decode


@functools.lru_cache(maxsize=None)
def _builder(cls) -> Callable[[dict, str], Any]:
    """Builds `cls` from the object its fields are in: its own, or its parent's for a field at()."""
    fields = [(field, _decoder(field.type) if field.place else _builder(_unpack(field.type)[0]))
              for field in _fields(cls)]
    shape = _shape(cls)
    check = getattr(cls, "check_arrival", None)
    return functools.partial(_build, cls, fields, shape, check)


def _build(cls, fields: list[tuple[_Field, Callable[..., Any]]], shape: dict, check, wire: dict, where: str):
    values = {}
    for field, decode in fields:
        if not field.place:
            values[field.name] = decode(wire, where)
            continue
        container = wire
        for depth, key in enumerate(field.place[:-1]):
            inner = container.get(key)
            if not isinstance(inner, dict):
                raise ProtocolError(f"'{'.'.join(filter(None, (where, *field.place[:depth + 1])))}' must be an object")
            container = inner
        if field.place[-1] not in container:
            if field.omitted:
                continue
            raise ProtocolError(f"'{where}' must be an object with exactly {_names(shape)}" if where
                                else f"'{'.'.join(field.place)}' is missing")
        path = f"{where}.{field.path}" if where else field.path
        values[field.name] = decode(container[field.place[-1]], path, "")
    message = cls(**values)
    return check(message) if check is not None else message


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
            yield prefix + (key if isinstance(key, str) else _shown(key, 40))
        elif shape[key] is not None and isinstance(value, dict):
            yield from _unknown_keys(value, shape[key], f"{prefix}{key}.")


def _names(shape: dict) -> str:
    names = [f"'{key}'" for key in shape]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _choice(choices: tuple, value, where: str, either: str):
    if not any(value == choice and type(value) is type(choice) for choice in choices):
        raise ProtocolError(f"'{where}' must be {either}one of {', '.join(map(repr, choices))}, not {_shown(value)}")
    return value


def _bool(value, where: str, either: str) -> bool:
    if type(value) is not bool:
        raise ProtocolError(f"'{where}' must be {either}true or false")
    return value


def _number(kind: type, bounds: Range, value, where: str, either: str):
    accepted = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise ProtocolError(f"'{where}' must be {either}{'an integer' if kind is int else 'a number'}")
    if not bounds.low <= value <= bounds.high:  # NaN fails this too
        raise ProtocolError(f"'{where}' must be between {bounds.low} and {bounds.high}, got {_shown(value)}")
    return kind(value)


def _text(bounds: Text, value, where: str, either: str) -> str:
    if bounds.pattern is not None:
        if (not isinstance(value, str) or not bounds.least <= len(value) <= bounds.chars
                or not re.fullmatch(bounds.pattern, value)):
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


def _count_error(bounds: Items, what: str, where: str, either: str) -> ProtocolError:
    count = f"{bounds.least} to {bounds.most}" if bounds.least else f"at most {bounds.most}"
    return ProtocolError(f"'{where}' must be {either}{what} of {count} {bounds.noun}")


def _items_decoder(item_kind, bounds: Items):
    item = _decoder(item_kind)

    def decode(value, where: str, either: str) -> tuple:
        if not isinstance(value, list) or not bounds.least <= len(value) <= bounds.most:
            raise _count_error(bounds, "a list", where, either)
        items = tuple(item(entry, f"{where}[{index}]", "") for index, entry in enumerate(value))
        _check_together(bounds, items, where)
        return items
    return decode


def _fixed_decoder(args: tuple):
    items = [_decoder(arg) for arg in args]

    def decode(value, where: str, either: str) -> tuple:
        if not isinstance(value, list) or len(value) != len(items):
            raise ProtocolError(f"'{where}' must be {either}a list of {len(items)} items")
        return tuple(item(entry, f"{where}[{index}]", "") for index, (item, entry) in enumerate(zip(items, value)))
    return decode


def _pairs_decoder(pair_args: tuple, bounds: Items):
    key_kind, item = pair_args[0], _decoder(pair_args[1])

    def decode(value, where: str, either: str) -> tuple:
        if not isinstance(value, dict) or not bounds.least <= len(value) <= bounds.most:
            raise _count_error(bounds, "an object", where, either)
        pairs = tuple((_key(key_kind, key, where), item(entry, f"{where}[{_shown(key)}]", ""))
                      for key, entry in value.items())
        _check_together(bounds, [key for key, _ in pairs], where)
        return pairs
    return decode


def _mapping_decoder(args: tuple, bounds: Items):
    key_kind, item = args[0], _decoder(args[1])

    def decode(value, where: str, either: str) -> dict:
        if not isinstance(value, dict) or not bounds.least <= len(value) <= bounds.most:
            raise _count_error(bounds, "an object", where, either)
        return {_key(key_kind, key, where): item(entry, f"{where}[{_shown(key)}]", "") for key, entry in value.items()}
    return decode


def _key(kind, key: str, where: str) -> str:
    try:
        return _decoder(kind)(key, f"{where} key", "")
    except ProtocolError:
        raise ProtocolError(f"'{where}' has a key {_shown(key)} that is not "
                            f"{_marker(_unpack(kind)[1], Text).describe()}") from None


def _check_together(bounds: Items, items, where: str) -> None:
    if bounds.unique and len(set(items)) != len(items):
        seen: set = set()
        for item in items:
            if item in seen:
                raise ProtocolError(f"'{where}' names {_shown(item)} twice")
            seen.add(item)
    if bounds.chars is not None and sum(map(len, items)) > bounds.chars:
        raise ProtocolError(f"'{where}' together are longer than {bounds.chars} characters")


def _shown(value, chars: int = 60) -> str:
    """A value for a refusal: its repr (ASCII-safe for surrogates), cut short."""
    text = repr(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."
