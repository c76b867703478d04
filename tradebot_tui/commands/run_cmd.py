"""Provides ``tradebot run --headless [--live]``: the engine service (trades, and serves the local API).

It holds the database's lock, trades, and serves the control API on the socket beside the database
(:mod:`engine.runtime.service`); consoles attach to it (``tradebot``, ``tradebot attach``). Logs go to the log
file and stdout; SIGINT/SIGTERM (or a ``StopEngine`` command) stop the engine cleanly (open positions keep
their exchange-side stops; state is flushed to the store). SIGHUP is ignored: the service outlives the
terminal that started it. Textual is never imported.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from engine.config import Settings
from engine.domain.models import EngineState

log = logging.getLogger("tradebot.run")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the engine service (headless: consoles attach to it)")
    parser.add_argument("--headless", action="store_true", help="run without a console (required)")
    parser.add_argument("--live", action="store_true",
                        help="trade real money (also needs exchange.mode = \"live\" and API keys)")
    parser.add_argument("--until-replay-ends", action="store_true",
                        help="replay feed only: stop when every symbol's candles are played")
    parser.set_defaults(handler=handle, settings_mode="secure")


def handle(args: argparse.Namespace, settings: Settings) -> int:
    if not args.headless:
        print("error: `tradebot run` needs --headless (run `tradebot` without a command for the console)",
              file=sys.stderr)
        return 2
    from engine.runtime.engine import build_engine
    from engine.runtime.instance_lock import probe
    from engine.runtime.logs import configure_logging

    engine = build_engine(settings, live=args.live, stop_when_replay_done=args.until_replay_ends,
                          risk_passphrase_hash=getattr(args, "risk_passphrase_hash", None))
    probe(engine.database_path)  # another engine on this database: refuse before logging or connecting
    log_path = configure_logging(settings.storage.log_dir, to_stdout=True)
    log.info("starting %s engine (%s feed) on %s; log file %s", engine.mode, settings.exchange.feed,
             ", ".join(engine.symbols), log_path)
    return asyncio.run(_run(engine))


async def _run(engine: Any) -> int:
    from engine.runtime.service import serve

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stopper(engine, signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    await serve(engine)
    return 0 if engine.engine_state is EngineState.STOPPED else 1


def _stopper(engine: Any, signum: int) -> Any:
    def stop() -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        engine.stop()

    return stop
