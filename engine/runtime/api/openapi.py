"""Provides the OpenAPI 3.1 document of the engine API, built from the same type hints the wire format uses.

Every event kind, command kind and the snapshot get a JSON Schema in ``components.schemas`` derived from their
dataclass fields, so the published schema cannot drift from what :mod:`engine.runtime.api.wire` sends.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

from engine.domain.events import Event
from engine.domain.snapshot import EngineSnapshot
from engine.runtime.api.wire import COMMAND_TYPES, EVENT_TYPES, WIRE_VERSION, field_types

NON_FINITE = {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}


def _schema(hint: Any, named: dict[str, Any]) -> dict[str, Any]:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema(a, named) for a in arguments]}
    if hint is type(None):
        return {"type": "null"}
    if origin is tuple:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return {"type": "array", "items": _schema(arguments[0], named)}
        return {"type": "array", "prefixItems": [_schema(a, named) for a in arguments],
                "minItems": len(arguments), "maxItems": len(arguments)}
    if origin is Mapping or hint is Any:
        return {"type": "object"} if origin is Mapping else {}
    if isinstance(hint, type) and issubclass(hint, Event):
        return {"$ref": "#/components/schemas/Event"}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        _component(hint, named)
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [m.value for m in hint]}
    if hint is float:
        return {"anyOf": [{"type": "number"}, NON_FINITE]}
    return {int: {"type": "integer"}, bool: {"type": "boolean"}, str: {"type": "string"}}[hint]


def _component(cls: type, named: dict[str, Any], kind: bool = False) -> None:
    if cls.__name__ in named:
        return
    named[cls.__name__] = {}  # reserve the name first: a record may refer to itself
    required = [f.name for f in dataclasses.fields(cls)
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    properties = {name: _schema(hint, named) for name, hint in field_types(cls).items()}
    if kind:
        properties = {"kind": {"const": cls.__name__}, **properties}
        required = ["kind", *required]
    named[cls.__name__] = {"type": "object", "description": (cls.__doc__ or "").strip().split("\n")[0],
                           "properties": properties, "required": required, "additionalProperties": False}


@cache
def _schemas() -> dict[str, Any]:
    named: dict[str, Any] = {}
    for cls in (*EVENT_TYPES.values(), *COMMAND_TYPES.values()):
        _component(cls, named, kind=True)
    _component(EngineSnapshot, named)
    named["Event"] = {"oneOf": [{"$ref": f"#/components/schemas/{k}"} for k in sorted(EVENT_TYPES)],
                      "discriminator": {"propertyName": "kind"}}
    named["Command"] = {"oneOf": [{"$ref": f"#/components/schemas/{k}"} for k in sorted(COMMAND_TYPES)],
                        "discriminator": {"propertyName": "kind"}}
    named["NumberedEvent"] = {"type": "object", "required": ["id", "event"],
                              "properties": {"id": {"type": "integer"}, "event": _ref("Event")}}
    named["RiskChange"] = {"type": "object", "required": ["parameter", "old_value", "new_value"],
                           "properties": {"parameter": {"type": "string"}, "old_value": {}, "new_value": {}}}
    named["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"},
                                                                            "version": {"type": "integer"}}}
    return named


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def document(engine_version: str) -> dict[str, Any]:
    """The whole OpenAPI document."""
    error = _ok(_ref("Error"), "refused: the message names the field or parameter")
    since = {"name": "since", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0},
             "description": "only events with a larger id"}
    versioned = {"version": {"const": WIRE_VERSION}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tradebot engine API", "version": f"{WIRE_VERSION}", "x-engine-version": engine_version},
        "paths": {
            "/v1/engine": {"get": {"summary": "which engine this is", "responses": {"200": _ok(
                {"type": "object", "properties": {**versioned, "pid": {"type": "integer"}, "mode": {"type": "string"},
                 "started_ms": {"type": "integer"}, "database": {"type": "string"},
                 "engine_version": {"type": "string"}, "clients": {"type": "integer"}}}, "the engine")}}},
            "/v1/snapshot": {"get": {"summary": "the newest snapshot", "responses": {
                "200": _ok({"type": "object", "properties": {**versioned, "snapshot": _ref("EngineSnapshot")}},
                           "the snapshot"), "503": error}}},
            "/v1/events": {"get": {"summary": "recent events after an id", "parameters": [since], "responses": {
                "200": _ok({"type": "object", "properties": {
                    **versioned, "latest": {"type": "integer"}, "oldest_kept": {"type": "integer"},
                    "events": {"type": "array", "items": _ref("NumberedEvent")}}}, "the events, oldest first"),
                "400": error}}},
            "/v1/stream": {"get": {"summary": "websocket of events and snapshots", "parameters": [since],
                                   "description": "messages: {type: event, id, event} and {type: snapshot, snapshot}",
                                   "responses": {"101": {"description": "switching to the websocket"}}}},
            "/v1/commands": {"post": {
                "summary": "queue one command", "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("Command")}}},
                "responses": {"202": _ok({"type": "object", "properties": {**versioned, "queued": {"type": "string"}}},
                                         "queued; the outcome arrives as CommandAccepted / CommandRejected"),
                              "400": error}}},
            "/v1/risk": {"get": {"summary": "the risk-change gate's view", "responses": {
                "200": _ok({"type": "object", "required": ["passphrase_configured", "values", "resume", "breakers"],
                            "properties": {
                                **versioned, "passphrase_configured": {"type": "boolean"},
                                "values": {"type": "object", "additionalProperties": {
                                    "type": ["number", "integer", "string", "boolean", "null"]}},
                                "resume": {"oneOf": [{"type": "null"}, _ref("RiskChange")]},
                                "breakers": {"type": "object", "additionalProperties": {
                                    "oneOf": [{"type": "null"}, _ref("RiskChange")]}}}},
                           "settable values in force; what a latch-lifting resume or a breaker reset would change"),
                "503": error}}},
            "/v1/risk/authorize": {"post": {
                "summary": "a one-time grant for a risk change, given the passphrase",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["command", "passphrase"],
                    "properties": {"command": _ref("Command"), "passphrase": {"type": "string", "minLength": 1}}}}}},
                "responses": {"200": _ok({"type": "object", "properties": {**versioned, "command": _ref("Command")}},
                                         "the command with its grant; post it to /v1/commands"),
                              "400": error, "403": error, "503": error}}},
            "/v1/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "it"}}}},
        },
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "TCP listener only; the Unix socket is 0600"}}},
    }
