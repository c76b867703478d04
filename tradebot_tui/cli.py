"""Provides the ``tradebot`` command: the console by default, headless subcommands otherwise.

Textual is imported only when the console starts, so headless commands (status, data,
backtest, run --headless) never load it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

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
            return run_console(settings, config=args.config, live=bool(args.live), start=True)
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

    ``secure`` (``run``, the engine service): secrets from env, the encrypted file or the keyring, file permission
    checks and log redaction, and live mode only with ``--live``; the risk-change passphrase hash from the
    secrets file is left in ``args.risk_passphrase_hash`` for the engine (the file passphrase is asked once).
    ``plain`` (the console and most commands): the settings alone, falling back to the secrets file when live
    mode's keys live only there.
    ``none``: the command reads no settings.
    """
    from engine.runtime.remote_control import CachedPassphrase, load_risk_passphrase_hash
    from engine.security.resolution import load_settings_with_secrets, secure_startup

    mode = getattr(args, "settings_mode", None) or "plain"  # the console is a client: the service reads secrets
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


def run_console(settings: Settings, *, config: str | None, live: bool, start: bool) -> int:
    """Attach the console to the engine service on the configured database, starting it first if ``start``.

    The service is started detached (:mod:`tradebot_tui.attach`), so leaving the console never stops trading.

    Raises:
        TradingBotException: no engine runs and ``start`` is False, the started service failed (its own
            one-line error), or ``--live`` was given while a paper engine runs on the database.
    """
    from tradebot_tui.attach import locate_engine

    if start and settings.exchange.mode == "live" and not live:
        raise ConfigException(
            ["exchange.mode is 'live' but --live was not given: live trading needs both (nothing was started)"]
        )
    database = settings.storage.database_path
    located = locate_engine(database, config=config, live=live, start=start, log_dir=settings.storage.log_dir)
    if live and located.info.get("mode") != "live":
        raise TradingBotException(f"a {located.info.get('mode')} engine (pid {located.info.get('pid')}) runs on "
                                  f"{database.absolute()}; stop it (`tradebot service stop`) to trade live")
    from engine.runtime.api.client import RemoteEngine
    from tradebot_tui.app import create_app

    app = create_app(settings, RemoteEngine(located.socket_path))
    app.run()
    return int(app.return_code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
