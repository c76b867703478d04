"""Provides the ports the front-ends (console, Telegram) use of the runtime's risk-change gate.

They live here, below every room, so ``engine.notify`` and the console can depend on what a gate does
without importing the runtime that implements it (:class:`engine.runtime.risk_gate.RiskChangeGate`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from engine.domain.commands import Command, Resume, ResumeBreaker, SetRiskLimit

GuardedCommand = SetRiskLimit | ResumeBreaker | Resume


@dataclass(frozen=True)
class RiskChange:
    """A requested change of one runtime risk or breaker parameter.

    Attributes:
        parameter: dotted setting path, e.g. ``risk.max_daily_loss_percent`` or ``breaker.loss``.
        old_value: the value in force now.
        new_value: the value asked for.
    """

    parameter: str
    old_value: Any
    new_value: Any



class RiskChangeRefused(Exception):
    """A risk change that cannot be made: unknown setting or breaker, invalid value, or no valid grant."""


class RiskGate(Protocol):
    """What the console dialog and the Telegram commands use of :class:`RiskChangeGate` (tests pass doubles)."""

    @property
    def passphrase_configured(self) -> bool: ...

    async def refresh(self) -> None:
        """Bring the answers below up to date (a remote gate reads the engine's view again; local: nothing)."""
        ...

    def current_value(self, key: str) -> Any: ...

    def needs_grant(self, command: Command) -> bool: ...

    def describe(self, command: GuardedCommand) -> RiskChange: ...

    async def check(self, command: GuardedCommand) -> RiskChange: ...

    async def authorize_with_passphrase(self, command: GuardedCommand, passphrase: str) -> GuardedCommand: ...

    async def authorize_from_chat(
        self, command: GuardedCommand, chat_id: int, allowed_chat_ids: Collection[int], *, confirmed: bool
    ) -> GuardedCommand: ...
