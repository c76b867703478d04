"""Provides the headless subcommands of ``tradebot``, one module per command group.

Each module exposes ``register(subparsers)`` which adds its parser and sets ``handler``.
"""

from __future__ import annotations

from types import ModuleType

from tradebot_tui.commands import (
    audit_cmd,
    backtest_cmd,
    backup_cmd,
    data_cmd,
    run_cmd,
    secrets_cmd,
    service_cmd,
    status_cmd,
)

COMMAND_MODULES: tuple[ModuleType, ...] = (
    status_cmd,
    data_cmd,
    secrets_cmd,
    audit_cmd,
    backup_cmd,
    backtest_cmd,
    run_cmd,
    service_cmd,
)
