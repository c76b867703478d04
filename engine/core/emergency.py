"""Provides the emergency-exit latch: cancel open orders, close every position at market, halt; once.

The latch only decides and remembers; the runtime executes the actions (through the OrderManager) and
reports completion. Its phases are ``None`` (armed), ``"in_progress"`` and ``"done"``; a second trigger
in either of the last two returns ``status="already"`` with no actions (pressing the key twice, or
Telegram and the console at once, does nothing new). After a restart in ``"in_progress"`` the runtime
must finish the exit. Only a person clears a completed exit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.domain.errors import CircuitBreakerException
from engine.domain.events import EmergencyExitCleared, EmergencyExitCompleted, EmergencyExitStarted, Event

EMERGENCY_ACTIONS: tuple[str, ...] = ("cancel_open_orders", "close_all_positions", "halt")


@dataclass(frozen=True, slots=True)
class EmergencyExitInstruction:
    """What the runtime must do for an emergency exit.

    Attributes:
        status: ``"started"`` for the call that started it (execute ``actions``), ``"already"`` when one
            is in progress or done (do nothing new).
        actions: ordered steps to execute: cancel open orders, close every position at market, halt.
        reason: why the exit was started (the first call's reason).
        started_ms: when the exit was started (UTC ms).
        events: ``EmergencyExitStarted`` for the starting call, else empty.
    """

    status: Literal["started", "already"]
    actions: tuple[str, ...]
    reason: str
    started_ms: int
    events: tuple[Event, ...] = ()


class EmergencyExit:
    """Idempotent emergency-exit state; JSON-able via :meth:`to_state` / :meth:`restore`."""

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None

    @property
    def phase(self) -> str | None:
        """``"in_progress"``, ``"done"`` or None."""
        return None if self._state is None else str(self._state["phase"])

    @property
    def reason(self) -> str:
        return "" if self._state is None else str(self._state["reason"])

    def trigger(self, reason: str, now_ms: int) -> EmergencyExitInstruction:
        """Start the exit, or report ``"already"`` if one is in progress or done."""
        if self._state is not None:
            return EmergencyExitInstruction("already", (), self.reason, int(self._state["since_ms"]))
        self._state = {"phase": "in_progress", "reason": reason, "since_ms": now_ms, "done_ms": None}
        event = EmergencyExitStarted(time_ms=now_ms, message=f"emergency exit: {reason}", reason=reason,
                                     actions=tuple(EMERGENCY_ACTIONS))
        return EmergencyExitInstruction("started", EMERGENCY_ACTIONS, reason, now_ms, (event,))

    def complete(self, now_ms: int) -> tuple[Event, ...]:
        """Mark the exit done (orders cancelled, positions closed); trading stays halted."""
        if self._state is None or self._state["phase"] == "done":
            return ()
        self._state["phase"] = "done"
        self._state["done_ms"] = now_ms
        return (EmergencyExitCompleted(time_ms=now_ms, message="emergency exit complete; trading halted",
                                       reason=self.reason),)

    def clear(self, now_ms: int) -> tuple[Event, ...]:
        """A person clears a completed exit so trading may resume.

        Raises:
            CircuitBreakerException: while the exit is still in progress.
        """
        if self._state is None:
            return ()
        if self._state["phase"] != "done":
            raise CircuitBreakerException("emergency exit still in progress; cannot resume yet")
        self._state = None
        return (EmergencyExitCleared(time_ms=now_ms, message="emergency halt cleared manually"),)

    def to_state(self) -> dict[str, Any] | None:
        return None if self._state is None else dict(self._state)

    def restore(self, state: Mapping[str, Any] | None) -> None:
        self._state = None if state is None else dict(state)
