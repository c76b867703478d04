"""Provides RiskChangeGate: runtime risk changes and breaker overrides only with a one-time authentication grant.

``SetRiskLimit`` and ``ResumeBreaker`` move the engine's safety limits, and so does a ``Resume`` that would
lift a latched loss-limit halt or the emergency-exit latch (:mod:`engine.runtime.latches`; :func:`needs_grant` says
whether it would), so the engine refuses them unless they carry a grant issued here after an authentication
step (issues 9, 14)::

    command = SetRiskLimit(source="console", key="risk.max_daily_loss_percent", value=3.0)
    granted = await engine.runtime.risk_gate.authorize_with_passphrase(command, passphrase)       # console dialog
    granted = await engine.runtime.risk_gate.authorize_from_chat(command, chat_id, allowed, confirmed=True)  # Telegram
    await engine.submit(granted)  # CommandHandler redeems the grant once; without one: CommandRejected

A grant is a random token the gate remembers together with the exact command it was issued for (type,
source, key and value, or breaker name), valid once and for :data:`GRANT_TTL_S` seconds. A widget that
builds a ``SetRiskLimit`` itself carries no grant (or a made-up one) and is refused by the engine, so no
code path can skip the authentication by accident. Every attempt - refused request, wrong passphrase,
unconfirmed chat, authorised change - is written to the audit log with the old and new value
(:class:`engine.security.auth.RiskChangeAuthorizer`).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.config import BreakerConfig, RiskConfig
from engine.domain.commands import Command, Resume, ResumeBreaker, SetRiskLimit
from engine.domain.ports import GuardedCommand, RiskChange, RiskChangeRefused
from engine.runtime.latches import EMERGENCY, breaker_rows, latched_overrides
from engine.security.audit import AuditAction, AuditLog
from engine.security.auth import PassphraseHash, RiskChangeAuthorizer

log = logging.getLogger(__name__)

GRANT_TTL_S = 120.0
GRANT_TOKEN_BYTES = 24
GUARDED_COMMANDS: tuple[type[Command], ...] = (SetRiskLimit, ResumeBreaker, Resume)
RESUME_PARAMETER = "trading.resume"
SET_PASSPHRASE_HINT = (
    "no risk-change passphrase is configured: run `tradebot secrets set-risk-passphrase` "
    "(it is kept in the encrypted secrets file) and restart the engine"
)
EMERGENCY_BREAKER = EMERGENCY


def settable_keys() -> list[str]:
    """Every numeric ``risk.<name>`` / ``breaker.<name>`` setting a ``SetRiskLimit`` may change."""
    keys: list[str] = []
    for section, model in (("risk", RiskConfig), ("breaker", BreakerConfig)):
        keys.extend(f"{section}.{name}" for name, info in model.model_fields.items() if info.annotation in (float, int))
    return keys


def risk_setting_change(core: Any, key: str, value: float) -> tuple[Any, RiskConfig | BreakerConfig]:
    """Validates ``key = value`` against the core's settings.

    Args:
        core: the DecisionCore (``core.risk.config``, ``core.breaker.config``).
        key: ``risk.<field>`` or ``breaker.<field>``.
        value: the new value.

    Returns:
        (the value in force now, the whole settings section with the new value).

    Raises:
        RiskChangeRefused: unknown key, or a value the settings model rejects.
    """
    section, _, field = key.partition(".")
    configs: dict[str, BaseModel] = {"risk": core.risk.config, "breaker": core.breaker.config}
    if section not in configs or not field or field not in type(configs[section]).model_fields:
        raise RiskChangeRefused(f"unknown setting {key!r}; use risk.<name> or breaker.<name>")
    current = configs[section]
    old_value = getattr(current, field)
    try:
        updated = type(current).model_validate({**current.model_dump(), field: value})
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]) for e in exc.errors(include_url=False))
        raise RiskChangeRefused(f"{key} = {value!r} refused: {reason}") from None
    assert isinstance(updated, RiskConfig | BreakerConfig)
    return old_value, updated


def describe_change(core: Any, command: GuardedCommand) -> RiskChange:
    """The change ``command`` asks for, with the value in force now.

    Raises:
        RiskChangeRefused: the setting or breaker does not exist, or the value is invalid.
    """
    if isinstance(command, SetRiskLimit):
        old_value, _ = risk_setting_change(core, command.key, command.value)
        return RiskChange(command.key, old_value, command.value)
    if isinstance(command, Resume):
        latched = latched_overrides(core)
        if not latched:
            raise RiskChangeRefused("nothing is latched: a plain resume needs no authentication")
        return RiskChange(RESUME_PARAMETER, "latched: " + "; ".join(latched), "active")
    if command.breaker == EMERGENCY_BREAKER:
        return RiskChange("breaker.emergency", core.breaker.emergency_phase or "none", "none")
    rows = {status.name: status for status in breaker_rows(core)}
    if command.breaker not in rows:
        raise RiskChangeRefused(f"unknown breaker {command.breaker!r}; expected one of {', '.join(rows)}")
    return RiskChange(f"breaker.{command.breaker}", str(rows[command.breaker].state), "closed")


def needs_grant(core: Any, command: Command) -> bool:
    """Whether the engine would refuse ``command`` without a grant now (a plain resume of a manual halt: no)."""
    if isinstance(command, Resume):
        return bool(latched_overrides(core))
    return isinstance(command, GUARDED_COMMANDS)


def change_detail(core: Any, command: Command) -> dict[str, Any]:
    """``{"parameter", "old", "new"}`` for an audit row of a guarded command; never raises."""
    if not isinstance(command, SetRiskLimit | ResumeBreaker | Resume) or not needs_grant(core, command):
        return {}
    try:
        change = describe_change(core, command)
    except RiskChangeRefused:
        parameter, old, new = _unknown_change(command)
        return {"parameter": parameter, "old": old, "new": new}
    return {"parameter": change.parameter, "old": change.old_value, "new": change.new_value}


@dataclass(frozen=True)
class _Grant:
    fingerprint: tuple[Any, ...]
    expires_at_s: float  # monotonic seconds


def _fingerprint(command: Command) -> tuple[Any, ...]:
    fields = {k: v for k, v in dataclasses.asdict(command).items() if k != "grant"}
    return (type(command).__name__, *sorted(fields.items()))


class RiskChangeGate:
    """Authenticates runtime risk changes and issues the one-time grants the engine checks.

    Args:
        core: the engine's DecisionCore (read to learn old values and validate new ones).
        audit: the engine store's audit log.
        passphrase_hash: the stored risk-change passphrase hash; None refuses passphrase logins.
        now_ms: the engine clock (UTC ms) for audit rows.
        grant_ttl_s: how long a grant stays valid (wall seconds).
        monotonic: seconds clock for grant expiry (injected in tests).
    """

    def __init__(
        self,
        core: Any,
        audit: AuditLog,
        passphrase_hash: PassphraseHash | None,
        now_ms: Callable[[], int],
        *,
        grant_ttl_s: float = GRANT_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = core
        self._audit = audit
        self._authorizer = RiskChangeAuthorizer(audit, passphrase_hash)
        self._passphrase_configured = passphrase_hash is not None
        self._now_ms = now_ms
        self._grant_ttl_s = grant_ttl_s
        self._monotonic = monotonic
        self._grants: dict[str, _Grant] = {}

    def current_value(self, key: str) -> Any:
        """The value of setting ``key`` in force now.

        Raises:
            RiskChangeRefused: unknown key.
        """
        section, _, field = key.partition(".")
        configs: dict[str, BaseModel] = {"risk": self._core.risk.config, "breaker": self._core.breaker.config}
        if section not in configs or field not in type(configs[section]).model_fields:
            raise RiskChangeRefused(f"unknown setting {key!r}")
        return getattr(configs[section], field)

    async def refresh(self) -> None:
        """Nothing to do: this gate reads the core directly."""

    @property
    def passphrase_configured(self) -> bool:
        """Whether a console (passphrase) risk change can succeed at all."""
        return self._passphrase_configured

    def needs_grant(self, command: Command) -> bool:
        """Whether ``command`` needs authentication now (see :func:`needs_grant`)."""
        return needs_grant(self._core, command)

    def describe(self, command: GuardedCommand) -> RiskChange:
        """The change ``command`` asks for (see :func:`describe_change`)."""
        return describe_change(self._core, command)

    async def authorize_with_passphrase(self, command: GuardedCommand, passphrase: str) -> GuardedCommand:
        """``command`` with a grant, when the risk-change passphrase is right.

        Raises:
            RiskChangeRefused: the request itself is invalid (audited as denied).
            engine.security.auth.AuthenticationFailed: no passphrase configured, locked out, or wrong
                passphrase (audited by the authorizer).
        """
        change = await self.check(command)
        await self._authorizer.authorize_with_passphrase(
            change, actor=command.source, passphrase=passphrase, now_ms=self._now_ms()
        )
        return self._grant(command)

    async def authorize_from_chat(
        self, command: GuardedCommand, chat_id: int, allowed_chat_ids: Collection[int], *, confirmed: bool
    ) -> GuardedCommand:
        """``command`` with a grant, when it comes from an allowed Telegram chat that confirmed it.

        Raises:
            RiskChangeRefused: the request is invalid, or its source is not that chat (audited as denied).
            engine.security.auth.AuthenticationFailed: unauthorised chat or not confirmed (audited).
        """
        change = await self.check(command)
        if command.source != f"telegram:{chat_id}":
            raise await self._denied(command, change, "command source does not match the chat")
        await self._authorizer.authorize_from_chat(
            change, chat_id=chat_id, allowed_chat_ids=allowed_chat_ids, confirmed=confirmed, now_ms=self._now_ms()
        )
        return self._grant(command)

    def redeem(self, command: Command) -> None:
        """Consumes the grant ``command`` carries; the engine calls this before applying it.

        Raises:
            RiskChangeRefused: no grant, an unknown, used or expired one, or one issued for another command.
        """
        token = getattr(command, "grant", "")
        grant = self._grants.pop(token, None) if token else None
        self._expire()
        if grant is None:
            raise RiskChangeRefused("not authenticated: risk changes need the passphrase (console) or a "
                                    "confirmed authorised chat (Telegram)")
        if self._monotonic() > grant.expires_at_s:
            raise RiskChangeRefused("the authentication expired; authenticate again")
        if grant.fingerprint != _fingerprint(command):
            raise RiskChangeRefused("the authentication was given for a different change")

    async def check(self, command: GuardedCommand) -> RiskChange:
        """The change ``command`` asks for; an invalid request is audited as denied and refused.

        Raises:
            RiskChangeRefused: unknown setting or breaker, or an invalid value.
        """
        if not isinstance(command, GUARDED_COMMANDS):
            raise RiskChangeRefused(f"{type(command).__name__} needs no risk-change authentication")
        try:
            return self.describe(command)
        except RiskChangeRefused as refused:
            reason = str(refused)
        raise await self._denied(command, RiskChange(*_unknown_change(command)), reason)

    async def _denied(self, command: GuardedCommand, change: RiskChange, reason: str) -> RiskChangeRefused:
        """Audits a refused request; returns the exception to raise."""
        detail = {"parameter": change.parameter, "old": change.old_value, "new": change.new_value,
                  "method": "request", "reason": reason}
        try:
            await self._audit.append(command.source, AuditAction.PARAMETER_CHANGE_DENIED, detail, self._now_ms())
        except Exception:
            log.exception("audit append failed for a refused risk change")
        return RiskChangeRefused(reason)

    def _grant(self, command: GuardedCommand) -> GuardedCommand:
        self._expire()
        token = secrets.token_urlsafe(GRANT_TOKEN_BYTES)
        self._grants[token] = _Grant(_fingerprint(command), self._monotonic() + self._grant_ttl_s)
        return dataclasses.replace(command, grant=token)

    def _expire(self) -> None:
        now = self._monotonic()
        for token in [t for t, g in self._grants.items() if g.expires_at_s < now]:
            del self._grants[token]


def _unknown_change(command: GuardedCommand) -> tuple[str, Any, Any]:
    if isinstance(command, SetRiskLimit):
        return command.key, None, command.value
    if isinstance(command, Resume):
        return RESUME_PARAMETER, None, "active"
    return f"breaker.{command.breaker}", None, "closed"
