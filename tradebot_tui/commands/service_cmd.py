"""Provides ``tradebot attach`` and ``tradebot service status|stop``: the engine service seen from a shell.

``attach`` opens the console on the engine that runs on the configured database, and never starts one.
``service status`` asks the running engine through its API (pid, mode, uptime, trading state, positions) and
exits 3 when none runs (the LSB status code systemd uses); ``service stop`` sends it ``StopEngine``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from engine.config import Settings

EXIT_NOT_RUNNING = 3  # LSB: program is not running


def register(subparsers: Any) -> None:
    attach = subparsers.add_parser("attach", help="open the console on the running engine (never starts one)")
    attach.set_defaults(handler=handle_attach)
    service = subparsers.add_parser("service", help="the engine service: status, stop")
    actions = service.add_subparsers(dest="service_action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="is the engine running, and what is it doing (exit 3: not running)")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=handle_status)
    stop = actions.add_parser("stop", help="ask the running engine to stop (positions keep exchange-side stops)")
    stop.set_defaults(handler=handle_stop)


def handle_attach(args: argparse.Namespace, settings: Settings) -> int:
    from tradebot_tui.cli import run_console

    return run_console(settings, config=args.config, live=False, start=False)


def handle_status(args: argparse.Namespace, settings: Settings) -> int:
    from engine.runtime.api.client import EngineUnreachable

    try:
        status = asyncio.run(_status(settings))
    except EngineUnreachable:
        status = None
    if status is None:
        message = f"no engine is running on {settings.storage.database_path.absolute()}"
        print(json.dumps({"running": False, "message": message}) if args.json else message)
        return EXIT_NOT_RUNNING
    if args.json:
        print(json.dumps(status, sort_keys=True))
        return 0
    for label, key in (("engine", "engine"), ("mode", "mode"), ("up", "up"), ("trading", "trading_state"),
                       ("equity", "equity"), ("positions", "positions"), ("consoles", "clients"),
                       ("database", "database"), ("socket", "socket")):
        print(f"{label + ':':<11}{status[key]}")
    return 0


def handle_stop(args: argparse.Namespace, settings: Settings) -> int:
    from engine.domain.commands import StopEngine
    from engine.runtime.api.client import EngineClient, EngineUnreachable
    from engine.runtime.service import api_socket_path

    async def stop() -> None:
        async with EngineClient(api_socket_path(settings.storage.database_path)) as client:
            await client.submit(StopEngine(source="cli", reason="tradebot service stop"))

    try:
        asyncio.run(stop())
    except EngineUnreachable:
        print(f"no engine is running on {settings.storage.database_path.absolute()}")
        return EXIT_NOT_RUNNING
    print("stop sent; the engine finishes its current step, saves its state and exits")
    return 0


async def _status(settings: Settings) -> dict[str, Any] | None:
    from engine.runtime.api.client import ApiRefused, EngineClient
    from engine.runtime.service import api_socket_path
    from tradebot_tui.attach import engine_holds
    from tradebot_tui.formatting import duration

    if not engine_holds(settings.storage.database_path):
        return None
    socket_path = api_socket_path(settings.storage.database_path)
    async with EngineClient(socket_path) as client:
        info = await client.engine_info()
        try:
            snapshot = await client.snapshot()
        except ApiRefused:  # still starting: no snapshot yet
            snapshot = None
    return {
        "running": True,
        "engine": f"pid {info['pid']} (tradebot {info['engine_version']})",
        "pid": info["pid"],
        "mode": info["mode"],
        "up": duration(int(time.time() * 1000) - int(info["started_ms"])),
        "started_ms": info["started_ms"],
        "trading_state": snapshot.trading_state.value if snapshot else "starting",
        "equity": round(snapshot.equity, 2) if snapshot else None,
        "positions": len(snapshot.positions) if snapshot else 0,
        "clients": info["clients"],
        "database": info["database"],
        "socket": str(socket_path),
    }
