"""Provides EngineClient (the API over the engine's Unix socket) and RemoteEngine (an attached engine handle).

``RemoteEngine`` is what a console attaches with: it satisfies :class:`engine.domain.bus.EngineHandle` like the
in-process engine does (a bus to subscribe to, ``submit``, ``snapshot``), fed by the API's websocket stream.
When the connection drops it retries with backoff and jitter and, on reconnecting, asks for the events after
the last id it saw, so a subscriber misses none that the engine still keeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from engine.domain.bus import Bus
from engine.domain.commands import Command
from engine.domain.ports import RiskChangeRefused
from engine.domain.snapshot import EngineSnapshot
from engine.runtime.api.feed import NumberedEvent
from engine.runtime.api.remote_gate import RemoteRiskGate
from engine.runtime.api.wire import WIRE_VERSION, WireError, decode_command, decode_event, decode_snapshot, encode
from engine.security.auth import AuthenticationFailed

DEFAULT_TIMEOUT_S = 5.0
RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 5.0
log = logging.getLogger(__name__)

BASE_URL = "http://engine"  # the host is ignored on a Unix socket


class EngineUnreachable(ConnectionError):
    """No engine answers on the socket (not running, or it went away)."""


class ApiRefused(ValueError):
    """The engine refused a request; the message is the engine's one line."""


class EngineClient:
    """One connection pool to one engine's API socket; use as an async context manager."""

    def __init__(self, socket_path: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EngineClient:
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.socket_path)),
                                              timeout=self._timeout)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("EngineClient used outside `async with`")
        return self._session

    async def _get(self, path: str, **params: Any) -> Any:
        return await self._request("GET", path, params=params or None)

    async def _request(self, method: str, path: str, **options: Any) -> Any:
        try:
            async with self.session.request(method, BASE_URL + path, **options) as response:
                body = await response.json(content_type=None)
                if response.status >= 400:
                    raise ApiRefused(body.get("error", f"HTTP {response.status}") if isinstance(body, dict)
                                     else f"HTTP {response.status}")
                return body
        except (aiohttp.ClientConnectionError, FileNotFoundError, TimeoutError) as error:
            raise EngineUnreachable(f"no engine answers on {self.socket_path} ({type(error).__name__})") from None
        except (json.JSONDecodeError, aiohttp.ContentTypeError):
            raise EngineUnreachable(f"{self.socket_path}: the answer was not the engine API's JSON") from None

    async def engine_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self._get("/v1/engine")
        if info.get("version") != WIRE_VERSION:
            raise ApiRefused(f"the engine speaks API version {info.get('version')}, this client {WIRE_VERSION}")
        return info

    async def snapshot(self) -> EngineSnapshot:
        return decode_snapshot((await self._get("/v1/snapshot"))["snapshot"])

    async def events(self, since: int = 0) -> list[NumberedEvent]:
        body = await self._get("/v1/events", since=str(since))
        return [NumberedEvent(item["id"], decode_event(item["event"])) for item in body["events"]]

    async def submit(self, command: Command) -> None:
        await self._request("POST", "/v1/commands", json=encode(command))

    async def risk_view(self) -> dict[str, Any]:
        """The engine's risk-change gate as ``GET /v1/risk`` describes it."""
        view: dict[str, Any] = await self._get("/v1/risk")
        return view

    async def authorize(self, command: Command, passphrase: str) -> Command:
        """``command`` with the engine's one-time grant (``POST /v1/risk/authorize``).

        Raises:
            RiskChangeRefused: the request is invalid; AuthenticationFailed: wrong passphrase or locked out.
        """
        try:
            async with self.session.post(BASE_URL + "/v1/risk/authorize",
                                         json={"command": encode(command), "passphrase": passphrase}) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientConnectionError, FileNotFoundError, TimeoutError) as error:
            raise EngineUnreachable(f"no engine answers on {self.socket_path} ({type(error).__name__})") from None
        reason = body.get("error", f"HTTP {response.status}") if isinstance(body, dict) else f"HTTP {response.status}"
        if response.status == 403:
            raise AuthenticationFailed(reason)
        if response.status >= 400:
            raise RiskChangeRefused(reason)
        return decode_command(body["command"])

    async def stream(self, since: int | None = None) -> AsyncIterator[NumberedEvent | EngineSnapshot]:
        """Events (after ``since``, if given) and snapshots as the engine publishes them, until it goes away."""
        params = {"since": str(since)} if since is not None else None
        try:
            async with self.session.ws_connect(BASE_URL + "/v1/stream", params=params, heartbeat=15.0,
                                               timeout=aiohttp.ClientWSTimeout(ws_close=2.0)) as ws:
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    yield _stream_item(json.loads(message.data))
        except (aiohttp.ClientConnectionError, aiohttp.WSServerHandshakeError, FileNotFoundError) as error:
            raise EngineUnreachable(f"no engine answers on {self.socket_path} ({type(error).__name__})") from None


def _stream_item(data: Any) -> NumberedEvent | EngineSnapshot:
    if not isinstance(data, dict):
        raise WireError("stream: expected an object")
    if data.get("type") == "snapshot":
        return decode_snapshot(data.get("snapshot"))
    if data.get("type") == "event":
        return NumberedEvent(int(data["id"]), decode_event(data.get("event")))
    raise WireError(f"stream.type: unknown message type {data.get('type')!r}")


class RemoteEngine:
    """A running engine seen through its API: an :class:`~engine.domain.bus.EngineHandle` for the console.

    Args:
        socket_path: the engine's API socket.
        on_connection: called with True when (re)attached and False when the connection is lost.
        jitter: the random source for the reconnect backoff (tests pass a seeded one).
    """

    def __init__(self, socket_path: Path, *, on_connection: Callable[[bool], None] | None = None,
                 jitter: random.Random | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self.bus = Bus()
        self.connected = False
        self.info: dict[str, Any] = {}
        self.last_event_id: int | None = None
        self._client = EngineClient(socket_path, timeout_s=timeout_s)
        self.on_connection = on_connection
        self._random = jitter or random.Random()
        self._attached = asyncio.Event()
        self.risk_gate = RemoteRiskGate(self._client)

    async def __aenter__(self) -> RemoteEngine:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.close()

    async def submit(self, command: Command) -> None:
        await self._client.submit(command)

    def snapshot(self) -> EngineSnapshot | None:
        return self.bus.latest_snapshot

    async def wait_attached(self) -> None:
        await self._attached.wait()

    async def run(self) -> None:
        """Follow the engine's stream for ever, re-attaching after a lost connection (cancel to stop).

        Opens the connection pool itself when not used as a context manager, and closes it when it ends.
        """
        if self._client._session is None:
            async with self._client:
                await self._follow()
        else:
            await self._follow()

    async def _follow(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                self.info = await self._client.engine_info()
                await self.risk_gate.refresh()
                self._set_connected(True)
                delay = RECONNECT_FIRST_S
                # The first attach replays what the engine keeps, so a console shows the recent events too.
                since = 0 if self.last_event_id is None else self.last_event_id
                async for item in self._client.stream(since=since):
                    if isinstance(item, EngineSnapshot):
                        self.bus.publish_snapshot(item)
                    else:
                        self.last_event_id = item.id
                        self.bus.publish_event(item.event)
            except (EngineUnreachable, ApiRefused, WireError):
                pass
            if self.connected:
                self._set_connected(False)
            await asyncio.sleep(delay * (0.5 + self._random.random()))
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        if connected:
            self._attached.set()
        else:
            self._attached.clear()
        if self.on_connection is not None:
            try:
                self.on_connection(connected)
            except Exception:  # a front-end's bug must not end the attachment
                log.exception("on_connection callback failed")
