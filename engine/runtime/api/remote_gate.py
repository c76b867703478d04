"""Provides RemoteRiskGate: the engine's risk-change gate as an attached console sees it, over the API.

It satisfies :class:`engine.domain.ports.RiskGate`, so the console's risk dialog works the same attached as
in process. The synchronous questions (``current_value``, ``needs_grant``, ``describe``) are answered from
the engine's view (``GET /v1/risk``), fetched again by :meth:`refresh` before each dialog opens; checking and
authorising are asked of the engine itself, which keeps the grants and writes the audit rows.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from engine.domain.commands import Command, Resume, ResumeBreaker, SetRiskLimit
from engine.domain.ports import GuardedCommand, RiskChange, RiskChangeRefused
from engine.runtime.api.risk_routes import risk_change

if TYPE_CHECKING:  # the client builds this gate; importing it at run time would be a cycle
    from engine.runtime.api.client import EngineClient


class RemoteRiskGate:
    """The gate of the engine behind ``client`` (see the module docstring)."""

    def __init__(self, client: EngineClient) -> None:
        self._client = client
        self._view: dict[str, Any] = {"passphrase_configured": False, "values": {}, "resume": None, "breakers": {}}

    async def refresh(self) -> None:
        """Read the engine's view again (values, latches and breakers move while a console is attached)."""
        self._view = await self._client.risk_view()

    @property
    def passphrase_configured(self) -> bool:
        return bool(self._view["passphrase_configured"])

    def current_value(self, key: str) -> Any:
        values = self._view["values"]
        if key not in values:
            raise RiskChangeRefused(f"unknown setting {key!r}")
        return values[key]

    def needs_grant(self, command: Command) -> bool:
        if isinstance(command, Resume):
            return self._view["resume"] is not None
        return isinstance(command, SetRiskLimit | ResumeBreaker)

    def describe(self, command: GuardedCommand) -> RiskChange:
        if isinstance(command, SetRiskLimit):
            return RiskChange(command.key, self.current_value(command.key), command.value)
        if isinstance(command, Resume):
            change = risk_change(self._view["resume"])
            if change is None:
                raise RiskChangeRefused("nothing is latched: a plain resume needs no authentication")
            return change
        breakers = self._view["breakers"]
        if command.breaker not in breakers:
            raise RiskChangeRefused(f"unknown breaker {command.breaker!r}; expected one of {', '.join(breakers)}")
        found = risk_change(breakers[command.breaker])
        if found is None:
            raise RiskChangeRefused(f"breaker {command.breaker!r} cannot be reset now")
        return found

    async def check(self, command: GuardedCommand) -> RiskChange:
        await self.refresh()
        return self.describe(command)

    async def authorize_with_passphrase(self, command: GuardedCommand, passphrase: str) -> GuardedCommand:
        granted = await self._client.authorize(command, passphrase)
        assert isinstance(granted, SetRiskLimit | ResumeBreaker | Resume)
        return granted

    async def authorize_from_chat(
        self, command: GuardedCommand, chat_id: int, allowed_chat_ids: Collection[int], *, confirmed: bool
    ) -> GuardedCommand:
        raise RiskChangeRefused("chats are authorised by the engine's own Telegram bot, not over the API")
