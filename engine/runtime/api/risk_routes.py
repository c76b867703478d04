"""Provides the API's risk-change routes: what an attached console's risk dialog needs from the engine's gate.

* ``GET /v1/risk`` - the gate's view: whether a passphrase is configured, every settable value in force, and
  the change a ``Resume`` (lifting a latch) or a ``ResumeBreaker`` of each breaker would make (None when
  that needs no grant or is not possible now);
* ``POST /v1/risk/authorize`` - ``{"command": {...}, "passphrase": "..."}``: the command back with a one-time
  grant (200), or 400 (invalid request) / 403 (authentication failed) with the reason. The grant is redeemed
  by the engine when the console then posts the command to ``/v1/commands``; every attempt is audited by the
  gate exactly as in the in-process console.

Chat authorisation is not offered here: only the engine's own Telegram bot authorises chats.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from engine.domain.commands import Resume, ResumeBreaker, SetRiskLimit
from engine.domain.ports import GuardedCommand, RiskChange, RiskChangeRefused, RiskGate
from engine.domain.snapshot import EngineSnapshot
from engine.runtime.api.wire import WIRE_VERSION, WireError, decode_command, decode_record, encode
from engine.runtime.risk_gate import settable_keys
from engine.security.auth import AuthenticationFailed

MAX_PASSPHRASE_CHARS = 1_024


def gate_view(gate: RiskGate, snapshot: EngineSnapshot | None) -> dict[str, Any]:
    """What ``GET /v1/risk`` answers (JSON-safe)."""
    resume = Resume(source="api")
    breakers: dict[str, Any] = {}
    for status in snapshot.breakers if snapshot is not None else ():
        breakers[status.name] = _change(gate, ResumeBreaker(source="api", breaker=status.name))
    return {
        "version": WIRE_VERSION,
        "passphrase_configured": gate.passphrase_configured,
        "values": {key: encode(gate.current_value(key)) for key in settable_keys()},
        "resume": _change(gate, resume) if gate.needs_grant(resume) else None,
        "breakers": breakers,
    }


def _change(gate: RiskGate, command: GuardedCommand) -> dict[str, Any] | None:
    try:
        change: dict[str, Any] = encode(gate.describe(command))
        return change
    except RiskChangeRefused:
        return None


def add_risk_routes(app: web.Application, gate_of: Callable[[], RiskGate | None],
                    snapshot_of: Callable[[], EngineSnapshot | None]) -> None:
    """Adds the routes to ``app``; ``gate_of`` gives the engine's gate (None before start-up finished)."""

    async def view(_: web.Request) -> web.Response:
        gate = gate_of()
        if gate is None:
            return _error(503, "the engine's risk gate is not ready yet")
        return _json(gate_view(gate, snapshot_of()))

    async def authorize(request: web.Request) -> web.Response:
        gate = gate_of()
        if gate is None:
            return _error(503, "the engine's risk gate is not ready yet")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the body is not JSON; send {\"command\": {...}, \"passphrase\": \"...\"}")
        if not isinstance(body, dict):
            return _error(400, "expected an object with command and passphrase")
        passphrase = body.get("passphrase")
        if not isinstance(passphrase, str) or not passphrase or len(passphrase) > MAX_PASSPHRASE_CHARS:
            return _error(400, "passphrase: expected a non-empty string")
        try:
            command = decode_command(body.get("command"))
        except WireError as error:
            return _error(400, str(error))
        if not isinstance(command, SetRiskLimit | ResumeBreaker | Resume):
            return _error(400, f"command.kind: {type(command).__name__} needs no risk-change authentication")
        try:
            granted = await gate.authorize_with_passphrase(command, passphrase)
        except RiskChangeRefused as refused:
            return _error(400, str(refused))
        except AuthenticationFailed as failed:
            return _error(403, str(failed))
        return _json({"version": WIRE_VERSION, "command": encode(granted)})

    app.add_routes([web.get("/v1/risk", view), web.post("/v1/risk/authorize", authorize)])


def risk_change(data: Any) -> RiskChange | None:
    """A :class:`RiskChange` from the view's JSON (None stays None)."""
    if data is None:
        return None
    return decode_record(RiskChange, data, "risk change")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, allow_nan=False), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"version": WIRE_VERSION, "error": message}, status=status)
