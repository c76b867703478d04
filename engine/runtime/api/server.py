"""Provides ApiServer: the engine's local control API on a Unix domain socket (aiohttp).

Routes (versioned JSON, schema at ``GET /v1/openapi.json``, wire format :mod:`engine.runtime.api.wire`):

* ``GET /v1/engine`` - which engine this is: pid, mode, start time, database, API version;
* ``GET /v1/snapshot`` - the newest snapshot (503 before the first);
* ``GET /v1/events?since=ID`` - the kept events after id ``ID`` (0: all kept), with the newest id;
* ``GET /v1/stream?since=ID`` - a websocket: the events after ``ID`` (if given), then every new event and the
  newest snapshot as they come (events never dropped, snapshots newest-only);
* ``POST /v1/commands`` - one command (``{"kind": "Halt", "source": "cli"}``), queued exactly as
  ``engine.submit`` queues it; its outcome arrives as ``CommandAccepted`` / ``CommandRejected`` events;
* ``GET /v1/risk``, ``POST /v1/risk/authorize`` - the risk-change gate for attached consoles
  (:mod:`engine.runtime.api.risk_routes`): a grant needs the passphrase, and the engine redeems it once.

The socket is created in a directory only the owner may enter (0700, checked) with mode 0600, so only the
account that runs the engine can attach. An optional loopback TCP listener (off by default) needs
``Authorization: Bearer <token>`` on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from engine.domain.bus import EngineHandle, Subscription
from engine.domain.snapshot import EngineSnapshot
from engine.runtime.api import openapi
from engine.runtime.api.feed import EventJournal, NumberedEvent
from engine.runtime.api.risk_routes import add_risk_routes
from engine.runtime.api.wire import WIRE_VERSION, WireError, decode_command, encode

log = logging.getLogger(__name__)

SOCKET_NAME = "engine.sock"
PRIVATE_DIR_MODE = 0o700
PRIVATE_SOCKET_MODE = 0o600
MAX_COMMAND_BYTES = 16_384  # a command is a few fields; anything larger is not one
SUBSCRIPTION_NAME = "api"


@dataclass(frozen=True)
class EngineInfo:
    """What ``GET /v1/engine`` says about the running engine."""

    pid: int
    mode: str
    started_ms: int
    database: str
    version: str


class ApiServer:
    """Serves one engine's API until :meth:`stop`.

    Args:
        engine: the running engine (its bus, ``submit`` and ``snapshot``).
        socket_path: where the Unix socket is created; its directory must be private (0700) or not exist yet.
        info: what ``/v1/engine`` reports.
        tcp_port: also listen on 127.0.0.1:``tcp_port`` (None: not); needs ``token``.
        token: the bearer token TCP clients must send.
    """

    def __init__(self, engine: EngineHandle, socket_path: Path, info: EngineInfo, *, tcp_port: int | None = None,
                 token: str | None = None, journal: EventJournal | None = None) -> None:
        if tcp_port is not None and not token:
            raise ValueError("api.tcp_port needs a token (api_token in the secrets file)")
        self.engine = engine
        self.socket_path = socket_path
        self.info = info
        self.tcp_port = tcp_port
        self._token = token
        self.journal = journal or EventJournal()
        self._runner: web.AppRunner | None = None
        self._subscription: Subscription | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._socket_inode: int | None = None  # ours, so stopping never removes a successor's socket

    # ---------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        prepare_socket_path(self.socket_path)
        self._subscription = self.engine.bus.subscribe(SUBSCRIPTION_NAME)
        self._pumps = [asyncio.create_task(self._pump_events(self._subscription), name="api events"),
                       asyncio.create_task(self._pump_snapshots(self._subscription), name="api snapshots")]
        app = web.Application(middlewares=[self._authenticate], client_max_size=MAX_COMMAND_BYTES)
        app.add_routes([
            web.get("/v1/engine", self._engine_info), web.get("/v1/snapshot", self._snapshot),
            web.get("/v1/events", self._events), web.get("/v1/stream", self._stream),
            web.post("/v1/commands", self._command), web.get("/v1/openapi.json", self._openapi),
        ])
        add_risk_routes(app, lambda: getattr(self.engine, "risk_gate", None),
                        lambda: self.journal.latest_snapshot or self.engine.snapshot())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(self.socket_path)).start()
        os.chmod(self.socket_path, PRIVATE_SOCKET_MODE)
        self._socket_inode = self.socket_path.lstat().st_ino
        if self.tcp_port is not None:
            await web.TCPSite(self._runner, "127.0.0.1", self.tcp_port).start()

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"engine stopping")
        for task in self._pumps:
            task.cancel()
        for task in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._subscription is not None:
            self._subscription.close()
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            if self.socket_path.lstat().st_ino == self._socket_inode:
                self.socket_path.unlink()

    async def _pump_events(self, subscription: Subscription) -> None:
        while True:
            self.journal.record(await subscription.next_event())

    async def _pump_snapshots(self, subscription: Subscription) -> None:
        while True:
            self.journal.publish_snapshot(await subscription.next_snapshot())

    # ---------------------------------------------------------------------------------------- routes
    @web.middleware
    async def _authenticate(self, request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        peer = request.transport.get_extra_info("socket") if request.transport is not None else None
        if peer is not None and peer.family != socket.AF_UNIX:
            sent = request.headers.get("Authorization", "")
            expected = f"Bearer {self._token}"
            if not hmac.compare_digest(sent.encode(), expected.encode()):
                return _error(401, "missing or wrong bearer token")
        return await handler(request)

    async def _engine_info(self, _: web.Request) -> web.Response:
        info = self.info
        return _json({"version": WIRE_VERSION, "pid": info.pid, "mode": info.mode, "started_ms": info.started_ms,
                      "database": info.database, "engine_version": info.version,
                      "clients": self.journal.client_count})

    async def _snapshot(self, _: web.Request) -> web.Response:
        snapshot = self.journal.latest_snapshot or self.engine.snapshot()
        if snapshot is None:
            return _error(503, "the engine has not published a snapshot yet")
        return _json({"version": WIRE_VERSION, "snapshot": encode(snapshot)})

    async def _events(self, request: web.Request) -> web.Response:
        after = _since(request)
        if isinstance(after, web.Response):
            return after
        items = self.journal.since(after or 0)
        return _json({"version": WIRE_VERSION, "latest": self.journal.latest_id,
                      "oldest_kept": self.journal.oldest_kept_id, "events": [_numbered(i) for i in items]})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        after = _since(request)
        if isinstance(after, web.Response):
            return after
        ws = web.WebSocketResponse(heartbeat=15.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        feed = self.journal.attach(after)
        reader = asyncio.create_task(self._drain_incoming(ws), name="api stream reader")
        try:
            while not ws.closed and not reader.done():
                item = await _first(feed.next(), reader)
                if item is None:
                    break
                if isinstance(item, EngineSnapshot):
                    await ws.send_str(json.dumps({"type": "snapshot", "snapshot": encode(item)}, allow_nan=False))
                else:
                    await ws.send_str(json.dumps({"type": "event", **_numbered(item)}, allow_nan=False))
        except (ConnectionResetError, RuntimeError):  # the client went away mid-send
            pass
        finally:
            self.journal.detach(feed)
            self._sockets.discard(ws)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()
        return ws

    async def _drain_incoming(self, ws: web.WebSocketResponse) -> None:
        """Ends when the client closes; the stream is one-way (commands go to ``POST /v1/commands``)."""
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    async def _command(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the body is not JSON; send one command object, e.g. {\"kind\": \"Halt\"}")
        try:
            command = decode_command(body)
        except WireError as error:
            return _error(400, str(error))
        await self.engine.submit(command)
        return _json({"version": WIRE_VERSION, "queued": type(command).__name__}, status=202)

    async def _openapi(self, _: web.Request) -> web.Response:
        return _json(openapi.document(self.info.version))


def prepare_socket_path(path: Path) -> None:
    """Make ``path``'s directory private (create it 0700; refuse one others may enter) and clear a stale socket.

    Only the engine holding the database lock calls this, so a socket file found here is left by an engine
    that died; it is removed. Anything else at that path is refused.
    """
    directory = path.parent
    directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if directory.stat().st_uid != os.getuid():  # e.g. a shared /tmp where someone else made the folder first
        raise PermissionError(f"{directory}: belongs to another user; the engine's socket cannot live there")
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        os.chmod(directory, mode & ~0o077)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"{path}: exists and is not a socket; move it away")
        path.unlink()


async def _first(next_item: Awaitable[Any], reader: asyncio.Task[None]) -> Any:
    waiter = asyncio.ensure_future(next_item)
    done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        return waiter.result()
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    return None


def _since(request: web.Request) -> int | None | web.Response:
    raw = request.query.get("since")
    if raw is None:
        return None
    if not raw.isdigit():
        return _error(400, f"since: expected an event id (0 or more), got {raw!r}")
    return int(raw)


def _numbered(item: NumberedEvent) -> dict[str, Any]:
    return {"id": item.id, "event": encode(item.event)}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, allow_nan=False), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"version": WIRE_VERSION, "error": message}, status=status)
