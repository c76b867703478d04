"""Provides the engine service: one engine on its database, serving the local control API while it trades.

``tradebot run --headless`` runs :func:`serve`; consoles and scripts attach to the socket
:func:`api_socket_path` names for the database (``tradebot``, ``tradebot attach``, ``tradebot service status``).
The API starts only once the engine holds the database's lock and has published its first snapshot, so a
socket that answers always belongs to the engine that owns the database, and it is closed before the engine
lets the lock go.

The socket lives beside the database, in a private ``run/`` folder (``data/run/tradebot.sqlite3.sock``), so
one rule finds it from the settings alone. A Unix socket path holds at most 107 bytes; a deeper database
gets its socket under ``$XDG_RUNTIME_DIR`` (else the temporary folder) in ``tradebot-<uid>/``, named by a
hash of the database path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from engine.domain.errors import ConfigException
from engine.runtime.api.feed import EventJournal
from engine.runtime.api.server import SOCKET_NAME, ApiServer, EngineInfo

log = logging.getLogger(__name__)

SOCKET_DIR_NAME = "run"
MAX_SOCKET_PATH_BYTES = 107  # sockaddr_un.sun_path is 108 bytes on Linux, the terminating NUL included
FALLBACK_DIR_PREFIX = "tradebot-"


def engine_version() -> str:
    try:
        return metadata.version("tradebot")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def api_socket_path(database_path: str | os.PathLike[str]) -> Path:
    """Where the engine on ``database_path`` serves its API (the same answer for the engine and its clients)."""
    database = Path(database_path).expanduser().absolute()
    beside = database.parent / SOCKET_DIR_NAME / f"{database.name}.sock"
    if len(os.fsencode(beside)) <= MAX_SOCKET_PATH_BYTES:
        return beside
    digest = hashlib.sha256(os.fsencode(database)).hexdigest()[:16]
    for base in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp"):
        if base:
            short = Path(base) / f"{FALLBACK_DIR_PREFIX}{os.getuid()}" / f"{digest}.{SOCKET_NAME}"
            if len(os.fsencode(short)) <= MAX_SOCKET_PATH_BYTES:
                return short
    raise ConfigException([f"storage.database_path: no socket path of at most {MAX_SOCKET_PATH_BYTES} bytes "
                           "could be made for it (set XDG_RUNTIME_DIR to a short folder)"])


async def serve(engine: Any, *, on_listening: Callable[[Path], None] | None = None) -> None:
    """Run ``engine`` (a :class:`engine.runtime.engine.TradingEngine`) and its API until the engine stops.

    Args:
        engine: the engine; its settings' ``api`` section chooses the optional TCP listener.
        on_listening: called with the socket path once the API answers (e.g. to log it).

    Raises:
        whatever ``engine.run()`` raises (e.g. EngineAlreadyRunningException before the API ever starts).
    """
    started_ms = int(time.time() * 1000)
    running = asyncio.create_task(engine.run(), name="engine")
    ready = asyncio.create_task(engine.started.wait(), name="engine started")
    await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        ready.cancel()
        await running  # raises the start-up failure; a clean early stop just returns
        return
    api = engine.settings.api
    if api.tcp_port is not None and (api.token is None or not api.token.get_secret_value().strip()):
        engine.stop()
        await running
        raise ConfigException(["api.tcp_port is set but api.token is not: `tradebot secrets set api.token`"])
    journal = EventJournal()
    for event in list(engine.recent_events):  # what start-up said before the API listened
        journal.record(event)
    server = ApiServer(
        engine,
        api_socket_path(engine.database_path),
        EngineInfo(pid=os.getpid(), mode=engine.mode, started_ms=started_ms,
                   database=str(Path(engine.database_path).absolute()), version=engine_version()),
        tcp_port=api.tcp_port,
        token=api.token.get_secret_value() if api.token is not None else None,
        journal=journal,
    )
    try:
        await server.start()
    except BaseException:
        engine.stop()
        with contextlib.suppress(Exception):
            await running
        raise
    log.info("engine API listening on %s", server.socket_path)
    if on_listening is not None:
        on_listening(server.socket_path)
    try:
        await running
    finally:
        await server.stop()
