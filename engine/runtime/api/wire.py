"""Provides the engine API's JSON wire format: snapshots, typed events and commands, both ways.

One rule for every value, read from the dataclass's own type hints, so a field added to an event or the
snapshot is on the wire (and in the published schema, :mod:`engine.runtime.api.openapi`) without a second
definition: dataclasses become objects with their fields; events and commands also carry ``"kind"`` (the class
name, as the store and the event counts record it); enums travel as their values; tuples as arrays; a float
that is not finite as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (strict JSON has no such
numbers). Decoding checks every field against its type and raises :class:`WireError` naming the field.

A command's ``grant`` (the one-time authorisation of a risk change) is on the wire, because a client that
obtained one must be able to redeem it; it is never logged (``repr=False`` on the dataclass).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from engine.domain import commands as command_module
from engine.domain import events as event_module
from engine.domain.commands import Command
from engine.domain.events import Event
from engine.domain.snapshot import EngineSnapshot

WIRE_VERSION = 1
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

T = TypeVar("T")


class WireError(ValueError):
    """A JSON document that is not a valid snapshot, event or command; the message names the field."""


def _concrete_subclasses(module: types.ModuleType, base: type[T]) -> dict[str, type[T]]:
    found: dict[str, type[T]] = {}
    for name in dir(module):
        item = getattr(module, name)
        if isinstance(item, type) and issubclass(item, base) and item is not base and dataclasses.is_dataclass(item):
            found[item.__name__] = typing.cast(type[T], item)
    return found


EVENT_TYPES: Mapping[str, type[Event]] = types.MappingProxyType(_concrete_subclasses(event_module, Event))
COMMAND_TYPES: Mapping[str, type[Command]] = types.MappingProxyType(_concrete_subclasses(command_module, Command))


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hint of every init field of dataclass ``cls``."""
    return _field_types(cls)


@cache
def _field_types(cls: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


# ------------------------------------------------------------------------------------------------ encode
def encode(value: Any) -> Any:
    """``value`` as JSON-ready data (see the module docstring)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = {name: encode(getattr(value, name)) for name in field_types(type(value))}
        if isinstance(value, Event | Command):
            return {"kind": type(value).__name__, **body}
        return body
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): encode(item) for key, item in value.items()}
    raise WireError(f"cannot put a {type(value).__name__} on the wire")


# ------------------------------------------------------------------------------------------------ decode
def decode_event(data: Any) -> Event:
    """An event from its wire form (``kind`` chooses the class)."""
    return _decode_kind(data, EVENT_TYPES, "event")


def decode_command(data: Any) -> Command:
    """A command from its wire form, e.g. ``{"kind": "Halt", "source": "cli", "reason": "news"}``."""
    return _decode_kind(data, COMMAND_TYPES, "command")


def decode_snapshot(data: Any) -> EngineSnapshot:
    return _decode_dataclass(EngineSnapshot, data, "snapshot")


def decode_record(cls: type[T], data: Any, what: str) -> T:
    """Any other dataclass from its wire form (``what`` names it in errors)."""
    return _decode_dataclass(cls, data, what)


def _decode_kind(data: Any, registry: Mapping[str, type[T]], what: str) -> T:
    if not isinstance(data, Mapping):
        raise WireError(f"{what}: expected an object, got {_json_type(data)}")
    kind = data.get("kind")
    cls = registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"{what}.kind: unknown {what} {kind!r}; known: {', '.join(sorted(registry))}")
    return _decode_dataclass(cls, {k: v for k, v in data.items() if k != "kind"}, what)


def _decode_dataclass(cls: type[T], data: Any, path: str) -> T:
    if not isinstance(data, Mapping):
        raise WireError(f"{path}: expected an object, got {_json_type(data)}")
    hints = field_types(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise WireError(f"{path}.{unknown[0]}: no such field")
    values = {name: _decode(hints[name], data[name], f"{path}.{name}") for name in hints if name in data}
    try:
        return cls(**values)
    except TypeError as error:  # a required field is missing
        missing = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                   if f.init and f.name not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        raise WireError(f"{path}.{missing[0] if missing else '?'}: missing") from error


def _decode(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [a for a in arguments if a is not type(None)]
        if len(options) == 1:
            return _decode(options[0], value, path)
        for option in options:
            try:
                return _decode(option, value, path)
            except WireError:
                continue
        raise WireError(f"{path}: {value!r} fits none of {hint}")
    if origin is tuple:
        if not isinstance(value, list):
            raise WireError(f"{path}: expected an array, got {_json_type(value)}")
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_decode(arguments[0], item, f"{path}[{i}]") for i, item in enumerate(value))
        if len(value) != len(arguments):
            raise WireError(f"{path}: expected {len(arguments)} items, got {len(value)}")
        return tuple(_decode(a, item, f"{path}[{i}]") for i, (a, item) in enumerate(zip(arguments, value, strict=True)))
    if origin in (Mapping, dict, typing.Mapping) or hint is Any:
        if hint is Any:
            return value
        if not isinstance(value, Mapping):
            raise WireError(f"{path}: expected an object, got {_json_type(value)}")
        return dict(value)
    if isinstance(hint, type) and issubclass(hint, Event):
        return decode_event(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode_dataclass(hint, value, path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in hint)
            raise WireError(f"{path}: {value!r} is not one of {allowed}") from None
    if hint is float:
        if isinstance(value, str) and value in _NON_FINITE:
            return _NON_FINITE[value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise WireError(f"{path}: expected a number, got {_json_type(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise WireError(f"{path}: expected an integer, got {_json_type(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise WireError(f"{path}: expected true or false, got {_json_type(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise WireError(f"{path}: expected a string, got {_json_type(value)}")
    raise WireError(f"{path}: the wire format has no rule for {hint}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    return "an object"
