"""Provides the ``tradebot`` command: the console by default, headless subcommands otherwise.

Textual is imported only when the console starts, so headless commands (status, data,
backtest, run --headless) never load it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

from engine.config import Settings, load_settings
from engine.errors import ConfigException, TradingBotException
from tradebot_tui.commands import COMMAND_MODULES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad arguments or bad configuration

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradebot",
        description="Terminal trading console for crypto. Without a subcommand, starts the console "
        "in the mode config.toml sets (paper trading on bundled candles by default).",
    )
    parser.add_argument("--config", metavar="FILE", help="settings file (default: $TRADEBOT_CONFIG or ./config.toml)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigException as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_USAGE
    handler: Handler | None = getattr(args, "handler", None)
    try:
        if handler is None:
            return run_console(settings)
        return handler(args, settings)
    except ConfigException as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except TradingBotException as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def run_console(settings: Settings) -> int:
    from tradebot_tui.app import create_app

    app = create_app(settings)
    app.run()
    return int(app.return_code or 0)


def run_async(coroutine: Any) -> Any:
    """Run one coroutine to completion for a headless subcommand."""
    return asyncio.run(coroutine)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
