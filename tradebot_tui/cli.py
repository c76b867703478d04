"""Provides the ``tradebot`` command: the console by default, headless subcommands otherwise.

Textual is imported only when the console starts, so headless commands (status, data,
backtest, run --headless) never load it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from engine.config import Settings, load_settings
from engine.domain.errors import ConfigException, EngineAlreadyRunningException, TradingBotException
from tradebot_tui.commands import COMMAND_MODULES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad arguments or bad configuration
EXIT_ALREADY_RUNNING = 2  # another engine holds the database (nothing was started)

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradebot",
        description="Terminal trading console for crypto. Without a subcommand, starts the console "
        "in the mode config.toml sets (paper trading on bundled candles by default).",
    )
    parser.add_argument("--config", metavar="FILE", help="settings file (default: $TRADEBOT_CONFIG or ./config.toml)")
    parser.add_argument(
        "--live", action="store_true", help="allow live trading (also needs exchange.mode = \"live\" and API keys)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    try:
        settings = load_command_settings(args)
        if handler is None:
            return run_console(settings, live=bool(args.live),
                               risk_passphrase_hash=getattr(args, "risk_passphrase_hash", None))
        return handler(args, settings)
    except ConfigException as exc:
        for line in exc.problems:
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except EngineAlreadyRunningException as exc:  # one line naming the holder, no traceback
        print(exc, file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except TradingBotException as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def load_command_settings(args: argparse.Namespace) -> Settings:
    """Settings as the chosen command needs them (``settings_mode`` set by its parser).

    ``secure`` (the console, ``run``): secrets from env, the encrypted file or the keyring, file permission
    checks and log redaction, and live mode only with ``--live``; the risk-change passphrase hash from the
    secrets file is left in ``args.risk_passphrase_hash`` for the engine (the file passphrase is asked once).
    ``plain``: the settings alone, falling back to the secrets file when live mode's keys live only there.
    ``none``: the command reads no settings.
    """
    from engine.runtime.remote_control import CachedPassphrase, load_risk_passphrase_hash
    from engine.security.resolution import load_settings_with_secrets, secure_startup

    mode = getattr(args, "settings_mode", None) or ("secure" if getattr(args, "handler", None) is None else "plain")
    if mode == "none":
        return None  # type: ignore[return-value]
    if mode == "secure":
        live_flag = bool(getattr(args, "live", False))
        passphrase = CachedPassphrase()
        settings = secure_startup(args.config, live=live_flag or None, passphrase_provider=passphrase).settings
        if settings.exchange.mode == "live" and not live_flag:
            raise ConfigException(
                ["exchange.mode is 'live' but --live was not given: live trading needs both (nothing was started)"]
            )
        args.risk_passphrase_hash = load_risk_passphrase_hash(args.config, passphrase)
        return settings
    try:
        return load_settings(args.config)
    except ConfigException:
        return load_settings_with_secrets(args.config).settings


def run_console(settings: Settings, *, live: bool = False, risk_passphrase_hash: Any = None) -> int:
    """Run the console over its own engine.

    Raises:
        EngineAlreadyRunningException: another engine holds the database: probed before Textual takes the
            terminal, or (a race) refused by the engine's own lock at start-up, after which the app exits.
    """
    from engine.runtime.instance_lock import probe

    probe(settings.storage.database_path)  # before the UI takes the terminal
    from tradebot_tui.app import create_app

    app = create_app(settings, live=live, risk_passphrase_hash=risk_passphrase_hash)
    app.run()
    refusal = getattr(app, "engine_refusal", None)
    if refusal is not None:
        raise refusal
    return int(app.return_code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
