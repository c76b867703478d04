"""Provides where passphrases come from: an environment variable, else a hidden terminal prompt."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping

from engine.domain.errors import SecurityException

SECRETS_PASSPHRASE_ENV = "TRADEBOT_SECRETS_PASSPHRASE"
BACKUP_PASSPHRASE_ENV = "TRADEBOT_BACKUP_PASSPHRASE"


def passphrase_from_env_or_prompt(
    env_vars: tuple[str, ...],
    prompt: str,
    *,
    confirm: bool = False,
    environ: Mapping[str, str] | None = None,
    interactive: bool | None = None,
) -> str | None:
    """The first non-empty variable of ``env_vars``, else a passphrase typed at a hidden prompt.

    Args:
        env_vars: environment variable names, tried in order.
        prompt: the prompt shown on the terminal.
        confirm: ask twice and require both entries to match (for a new passphrase).
        environ: the environment to read (default ``os.environ``).
        interactive: whether a prompt may be shown (default: stdin is a terminal).

    Returns:
        The passphrase, or None when no variable is set and no terminal is available.

    Raises:
        SecurityException: the two entries differ, or an empty passphrase was typed.
    """
    env = os.environ if environ is None else environ
    for name in env_vars:
        value = env.get(name)
        if value:
            return value
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        return None
    first = getpass.getpass(prompt)
    if not first:
        raise SecurityException("an empty passphrase is not allowed")
    if confirm and getpass.getpass("Repeat: ") != first:
        raise SecurityException("the two passphrases differ")
    return first


def require_passphrase(passphrase: str | None, env_vars: tuple[str, ...]) -> str:
    """``passphrase`` itself, or a clear error naming the variables that could have provided it."""
    if passphrase is None:
        names = " or ".join(env_vars)
        raise SecurityException(f"no passphrase: set {names}, or run in a terminal to be asked for it")
    return passphrase
