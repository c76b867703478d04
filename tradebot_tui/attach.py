"""Provides locate_engine: the engine service a console attaches to, started (detached) when none runs.

``tradebot`` attaches to the engine that holds the database's lock, or starts ``tradebot run --headless`` in
its own session (so closing the console, or losing SSH, never stops trading) and attaches once its API
answers. ``tradebot attach`` only attaches. Both wait for the socket to answer, bounded by
:data:`ATTACH_WAIT_S`; a service that fails to start is reported with its own one-line error.

The secrets-file passphrase, when the service needs one and the trader typed it here, reaches the service
through its environment (readable by the same account only), never its command line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.domain.errors import EngineAlreadyRunningException, TradingBotException
from engine.runtime.api.client import EngineClient, EngineUnreachable
from engine.runtime.instance_lock import probe, read_holder
from engine.runtime.service import api_socket_path
from engine.security.passphrase import SECRETS_PASSPHRASE_ENV, passphrase_from_env_or_prompt
from engine.security.secrets_file import default_secrets_path

ATTACH_WAIT_S = 90.0  # a first start compiles the decision core (~40 s on a cold cache)
POLL_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 2.0


class NoEngineRunning(TradingBotException):
    """``tradebot attach`` found no engine on the database."""


class ServiceDidNotStart(TradingBotException):
    """The engine service exited, or never answered, after the console started it."""


@dataclass(frozen=True)
class LocatedEngine:
    socket_path: Path
    info: dict[str, Any]
    started_here: bool  # this console started the service


def engine_holds(database_path: Path) -> bool:
    """Whether an engine holds ``database_path``'s lock now."""
    try:
        probe(database_path)
    except EngineAlreadyRunningException:
        return True
    return False


def locate_engine(database_path: Path, *, config: str | None, live: bool, start: bool,
                  log_dir: Path) -> LocatedEngine:
    """The engine on ``database_path``: the running one, else (``start``) a service started for it.

    Raises:
        NoEngineRunning: none runs and ``start`` is False.
        ServiceDidNotStart: the started service exited (its error line) or did not answer in time.
    """
    socket_path = api_socket_path(database_path)
    if engine_holds(database_path):
        return LocatedEngine(socket_path, wait_until_answering(socket_path, database_path), started_here=False)
    if not start:
        raise NoEngineRunning(f"no engine runs on {database_path.absolute()}; start one with `tradebot` or "
                              "`tradebot run --headless`")
    child, errors = start_service(config=config, live=live, log_dir=log_dir)
    try:
        info = wait_until_answering(socket_path, database_path, child=child, errors=errors)
    finally:
        errors.close()
    return LocatedEngine(socket_path, info, started_here=True)


def start_service(*, config: str | None, live: bool, log_dir: Path) -> tuple[subprocess.Popen[bytes], Any]:
    """``tradebot run --headless`` in a new session, its stderr kept (0600) to report a failed start."""
    command = [sys.executable, "-m", "tradebot_tui.cli"]
    if config:
        command += ["--config", config]
    command += ["run", "--headless", *(["--live"] if live else [])]
    environment = dict(os.environ)
    if default_secrets_path(config).exists() and not environment.get(SECRETS_PASSPHRASE_ENV):
        typed = passphrase_from_env_or_prompt((SECRETS_PASSPHRASE_ENV,), "Secrets file passphrase: ")
        if typed:
            environment[SECRETS_PASSPHRASE_ENV] = typed
    log_dir.mkdir(parents=True, exist_ok=True)
    errors = tempfile.TemporaryFile(dir=log_dir, prefix="service-start-")  # created 0600, gone when closed
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                             env=environment, start_new_session=True, close_fds=True)
    return child, errors


def wait_until_answering(socket_path: Path, database_path: Path, *, child: subprocess.Popen[bytes] | None = None,
                         errors: Any = None, wait_s: float = ATTACH_WAIT_S) -> dict[str, Any]:
    """The engine's ``/v1/engine`` answer, once its socket answers (the engine may still be starting)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return asyncio.run(_engine_info(socket_path))
        except EngineUnreachable:
            pass
        if child is not None and child.poll() is not None:
            if engine_holds(database_path):  # another console started one first: ours was refused; use that one
                child = None
                continue
            raise ServiceDidNotStart(f"the engine service exited ({child.returncode}): {_last_line(errors)}")
        if child is None and not engine_holds(database_path):
            raise NoEngineRunning(f"the engine on {database_path.absolute()} stopped before it answered")
        if time.monotonic() > deadline:
            holder = read_holder(database_path)
            who = f" (pid {holder.pid})" if holder is not None else ""
            raise ServiceDidNotStart(f"the engine{who} holds {database_path.absolute()} but its API at "
                                     f"{socket_path} did not answer within {wait_s:.0f} s")
        time.sleep(POLL_INTERVAL_S)


async def _engine_info(socket_path: Path) -> dict[str, Any]:
    async with EngineClient(socket_path, timeout_s=PROBE_TIMEOUT_S) as client:
        return await client.engine_info()


def _last_line(errors: Any) -> str:
    if errors is None:
        return "no error output"
    errors.seek(0)
    lines = [line.strip() for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"
