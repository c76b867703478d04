"""Provides CommandHandler: turns console/Telegram commands into DecisionCore calls and executed decisions.

Commands are processed one at a time by the runtime. Every command yields a ``CommandAccepted`` or
``CommandRejected`` event (plus whatever the command itself caused: trading-state changes, breaker
resets, exits), and is appended to the audit log when one is configured. ``SetRiskLimit`` and
``ResumeBreaker`` are carried out only with a grant from :class:`engine.runtime.risk_gate.RiskChangeGate`
(an authentication step), and so is a ``Resume`` that lifts a latched loss-limit halt or the
emergency-exit latch (:mod:`engine.runtime.latches`); a plain resume of a manual halt needs none. Their audit
rows carry the old and new value. An accepted ``SetRiskLimit`` is saved in the store before it applies
(:mod:`engine.runtime.risk_overrides`), so it survives a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Protocol

from engine.core.breaker import EMERGENCY
from engine.core.decision import Decision, DecisionCore, Outcome
from engine.domain.commands import (
    ClosePosition,
    Command,
    EmergencyExit,
    Halt,
    Resume,
    ResumeBreaker,
    SetRiskLimit,
    StopEngine,
)
from engine.domain.errors import CircuitBreakerException
from engine.domain.events import CommandAccepted, CommandRejected, Event, RiskLimitChanged
from engine.domain.models import TradingState
from engine.domain.ports import RiskChangeRefused
from engine.runtime.latches import LOSS_LIMIT, latched_overrides
from engine.runtime.risk_gate import RiskChangeGate, change_detail, risk_setting_change
from engine.runtime.risk_overrides import StateStore, apply_setting, save_risk_override

log = logging.getLogger(__name__)


class Executor(Protocol):
    async def execute(self, decisions: tuple[Decision, ...]) -> None: ...

    async def cancel_open_orders(self) -> int: ...


class Auditor(Protocol):
    async def append(self, actor: str, action: str, detail: Any, now_ms: int) -> Any: ...


class CommandRefused(Exception):
    """A command that cannot be carried out now (the reason is shown to whoever sent it)."""


def _command_detail(command: Command) -> dict[str, Any]:
    return {k: v for k, v in asdict(command).items() if k not in ("source", "grant")}


class CommandHandler:
    """Executes commands against the core and the execution back-end.

    Args:
        core: the decision path.
        execution: where decisions go (paper account or live order manager).
        emit: publishes an event (bus, store, recent events).
        audit: optional audit log (``engine.security.audit.AuditLog``).
        risk_gate: checks the grant of risk changes and breaker overrides; None refuses them all.
        state_store: where accepted risk changes are saved (the engine's store); None: not saved.
        request_stop: asks the engine to stop (``StopEngine``); None refuses that command.
    """

    def __init__(
        self,
        core: DecisionCore,
        execution: Executor,
        emit: Callable[[Event], None],
        audit: Auditor | None = None,
        risk_gate: RiskChangeGate | None = None,
        state_store: StateStore | None = None,
        request_stop: Callable[[], None] | None = None,
    ) -> None:
        self.core = core
        self.execution = execution
        self.emit = emit
        self.audit = audit
        self.risk_gate = risk_gate
        self.state_store = state_store
        self.request_stop = request_stop
        self._handlers: dict[type[Command], Callable[[Any, int], Awaitable[str]]] = {
            Halt: self._halt,
            Resume: self._resume,
            EmergencyExit: self._emergency_exit,
            ClosePosition: self._close_position,
            ResumeBreaker: self._resume_breaker,
            SetRiskLimit: self._set_risk_limit,
            StopEngine: self._stop_engine,
        }

    async def handle(self, command: Command, now_ms: int) -> bool:
        """Carry out one command; returns whether it was accepted."""
        name = type(command).__name__
        detail = {**_command_detail(command), **change_detail(self.core, command)}
        handler = self._handlers.get(type(command))
        try:
            if handler is None:
                raise CommandRefused(f"unknown command {name}")
            outcome = await handler(command, now_ms)
        except CommandRefused as refused:
            accepted, message = False, str(refused)
        else:
            accepted, message = True, outcome
        handled = CommandAccepted if accepted else CommandRejected
        self.emit(handled(time_ms=now_ms, message=f"{name} from {command.source}: {message}", command=name,
                          source=command.source, detail=detail, outcome=message))
        if self.audit is not None:
            try:
                await self.audit.append(command.source, f"command.{name}",
                                        {**detail, "accepted": accepted, "outcome": message}, now_ms)
            except Exception:
                log.exception("audit append failed for %s", name)
        return accepted

    def _emit_outcome(self, outcome: Outcome) -> None:
        self._emit_all(outcome.events)

    def _emit_all(self, events: tuple[Event, ...]) -> None:
        for event in events:
            self.emit(event)

    async def _halt(self, command: Halt, now_ms: int) -> str:
        self._emit_outcome(self.core.halt(now_ms, command.reason))
        return "trading halted; open positions keep their stops"

    async def _resume(self, command: Resume, now_ms: int) -> str:
        latched = latched_overrides(self.core)
        if latched:  # a person lifts a loss-limit halt or the emergency latch: the same grant as a breaker reset
            if self.core.breaker.emergency_phase == "in_progress":
                raise CommandRefused("emergency exit still in progress; cannot resume yet")
            self._redeem_grant(command, f"a grant is needed to resume from the latched {' and '.join(latched)}")
            if self.core.breaker.emergency_phase is not None:
                self._emit_all(self.core.breaker.manual_resume(EMERGENCY, now_ms))
        self._emit_outcome(self.core.resume(now_ms))
        permission = self.core.breaker.allows_entry(now_ms)
        if not permission.allowed:
            return "trading state active, but entries stay blocked: " + "; ".join(permission.reasons)
        return "trading resumed"

    async def _emergency_exit(self, command: EmergencyExit, now_ms: int) -> str:
        outcome = self.core.emergency_exit(now_ms, command.reason)
        if not outcome.events and not outcome.decisions:
            return f"emergency exit already {self.core.breaker.emergency_phase}; nothing new to do"
        self._emit_outcome(outcome)
        cancelled = await self.execution.cancel_open_orders()
        await self.execution.execute(outcome.decisions)
        return f"cancelled {cancelled} open orders; closing {len(outcome.decisions)} positions; halted"

    async def _close_position(self, command: ClosePosition, now_ms: int) -> str:
        if command.symbol not in self.core.portfolio.positions:
            raise CommandRefused(f"no open position in {command.symbol or '(no symbol)'}")
        outcome = self.core.close_position(command.symbol, now_ms, f"manual close ({command.source})")
        if not outcome.decisions:
            raise CommandRefused(f"{command.symbol} already has an order in flight")
        await self.execution.execute(outcome.decisions)
        return f"closing {command.symbol} at market"

    def _redeem_grant(self, command: Command, why: str = "") -> None:
        """Consumes the command's grant; ``why`` (what needs it) prefixes the refusal."""
        prefix = f"{why}: " if why else ""
        if self.risk_gate is None:
            raise CommandRefused(f"{prefix}risk changes are disabled: this engine has no authentication gate")
        try:
            self.risk_gate.redeem(command)
        except RiskChangeRefused as refused:
            raise CommandRefused(f"{prefix}{refused}") from None

    async def _resume_breaker(self, command: ResumeBreaker, now_ms: int) -> str:
        self._redeem_grant(command)
        if command.breaker == LOSS_LIMIT:
            events = self.core.clear_limit_halt(now_ms).events
            self._emit_all(events)
            return "loss-limit halt lifted" if events else "no loss-limit halt was latched"
        try:
            events = self.core.breaker.manual_resume(command.breaker, now_ms)
        except CircuitBreakerException as exc:
            raise CommandRefused(str(exc)) from None
        self._emit_all(events)
        if command.breaker == EMERGENCY:
            if not events:
                return "no emergency exit was latched"
            halted = self.core.trading_state is TradingState.HALTED
            return "emergency latch cleared" + ("; trading stays halted until resumed" if halted else "")
        return f"{command.breaker} breaker reset" if events else f"{command.breaker} breaker was not tripped"

    async def _stop_engine(self, command: StopEngine, now_ms: int) -> str:
        if self.request_stop is None:
            raise CommandRefused("this engine cannot be stopped by a command (its owner stops it)")
        self.request_stop()
        return f"engine stopping ({command.reason}); open positions keep their exchange-side stops"

    async def _set_risk_limit(self, command: SetRiskLimit, now_ms: int) -> str:
        self._redeem_grant(command)
        try:
            old_value, updated = risk_setting_change(self.core, command.key, command.value)
        except RiskChangeRefused as refused:
            raise CommandRefused(str(refused)) from None
        if self.state_store is not None:  # write-ahead: a change that would revert on restart is not applied
            try:
                await save_risk_override(self.state_store, command.key, command.value, command.source, now_ms)
            except Exception as error:
                log.exception("saving the risk change %s failed", command.key)
                raise CommandRefused(f"{command.key} not changed: it could not be saved ({error})") from None
        apply_setting(self.core, updated)
        self.emit(RiskLimitChanged(time_ms=now_ms, message=f"{command.key}: {old_value} -> {command.value}",
                                   key=command.key, old=old_value, new=command.value, source=command.source,
                                   persisted=self.state_store is not None))
        kept = "; kept across restarts" if self.state_store is not None else "; NOT saved: reverts on restart"
        return f"{command.key} set to {command.value:g} (was {old_value}){kept}"
