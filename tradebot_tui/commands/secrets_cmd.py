"""Provides ``tradebot secrets set|list|remove|set-risk-passphrase``: the encrypted secrets file.

Values are read with a hidden prompt (or from stdin when it is not a terminal) and never printed.
The file passphrase comes from ``$TRADEBOT_SECRETS_PASSPHRASE`` or a hidden prompt.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.domain.errors import SecurityException
from engine.security.auth import hash_passphrase
from engine.security.passphrase import SECRETS_PASSPHRASE_ENV, passphrase_from_env_or_prompt, require_passphrase
from engine.security.secrets_file import (
    RISK_PASSPHRASE_HASH_NAME,
    SETTABLE_SECRET_NAMES,
    SecretsFile,
    default_secrets_path,
)

RISK_PASSPHRASE_ENV = "TRADEBOT_RISK_PASSPHRASE"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("secrets", help="manage the encrypted secrets file (API keys, Telegram token)")
    actions = parser.add_subparsers(dest="secrets_command", metavar="ACTION", required=True)

    setter = actions.add_parser(
        "set", help="store one secret; the value is read hidden from the terminal, or from stdin"
    )
    setter.add_argument("name", choices=sorted(SETTABLE_SECRET_NAMES), metavar="NAME")
    _add_file_option(setter)
    setter.set_defaults(handler=handle_set, settings_mode="none")

    lister = actions.add_parser("list", help="list the names of stored secrets (never their values)")
    _add_file_option(lister)
    lister.set_defaults(handler=handle_list, settings_mode="none")

    remover = actions.add_parser("remove", help="delete one stored secret")
    remover.add_argument("name", metavar="NAME")
    _add_file_option(remover)
    remover.set_defaults(handler=handle_remove, settings_mode="none")

    risk = actions.add_parser(
        "set-risk-passphrase",
        help=f"set the passphrase that authorises runtime risk changes (or ${RISK_PASSPHRASE_ENV})",
    )
    _add_file_option(risk)
    risk.set_defaults(handler=handle_set_risk_passphrase, settings_mode="none")


def _add_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file", type=Path, help="secrets file (default: $TRADEBOT_SECRETS_FILE or secrets.enc beside the config)"
    )


def _secrets_file(args: argparse.Namespace) -> SecretsFile:
    return SecretsFile(args.file if args.file is not None else default_secrets_path(args.config))


def _file_passphrase(file: SecretsFile) -> str:
    passphrase = passphrase_from_env_or_prompt(
        (SECRETS_PASSPHRASE_ENV,),
        f"Passphrase for {file.path}: " if file.exists() else f"New passphrase for {file.path}: ",
        confirm=not file.exists(),
    )
    return require_passphrase(passphrase, (SECRETS_PASSPHRASE_ENV,))


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"Value for {name} (hidden): ")
    else:
        value = sys.stdin.read().rstrip("\r\n")
    if not value.strip():
        raise SecurityException(f"no value given for {name}")
    return value


def handle_set(args: argparse.Namespace, settings: Settings) -> int:
    file = _secrets_file(args)
    passphrase = _file_passphrase(file)
    file.set(args.name, _read_value(args.name), passphrase)
    print(f"stored {args.name} in {file.path}")
    return 0


def handle_list(args: argparse.Namespace, settings: Settings) -> int:
    file = _secrets_file(args)
    if not file.exists():
        print(f"no secrets file at {file.path}")
        return 0
    for name in file.names(_file_passphrase(file)):
        print(name)
    return 0


def handle_remove(args: argparse.Namespace, settings: Settings) -> int:
    file = _secrets_file(args)
    if not file.exists():
        print(f"no secrets file at {file.path}", file=sys.stderr)
        return 1
    if not file.remove(args.name, _file_passphrase(file)):
        print(f"{args.name} is not stored in {file.path}", file=sys.stderr)
        return 1
    print(f"removed {args.name} from {file.path}")
    return 0


def handle_set_risk_passphrase(args: argparse.Namespace, settings: Settings) -> int:
    file = _secrets_file(args)
    file_passphrase = _file_passphrase(file)
    risk_passphrase = passphrase_from_env_or_prompt(
        (RISK_PASSPHRASE_ENV,), "New risk-change passphrase: ", confirm=True
    )
    risk_passphrase = require_passphrase(risk_passphrase, (RISK_PASSPHRASE_ENV,))
    if risk_passphrase == file_passphrase:
        raise SecurityException("the risk-change passphrase must differ from the secrets file passphrase")
    file.set(RISK_PASSPHRASE_HASH_NAME, hash_passphrase(risk_passphrase).encode(), file_passphrase)
    print(f"stored the risk-change passphrase hash in {file.path}")
    return 0
