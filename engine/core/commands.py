"""Provides the compiled core's commands: halt, resume, manual close, breaker resets and the emergency latch.

The twins of ``DecisionCore.halt`` / ``resume`` / ``clear_limit_halt`` / ``close_position``,
``AccountLimits.manual_resume``, ``CircuitBreaker.manual_resume`` and ``EmergencyExit.complete`` / ``clear``.
The runtime authorises a command before calling it (a resume needs the same grant as a breaker reset).
"""

from __future__ import annotations

from typing import Any

from engine.core.breakers import _set
from engine.core.jit import njit
from engine.core.limits import DAY_MS, is_halted
from engine.core.machine import equity, set_trading_state
from engine.core.records import (
    DECISION_EXIT,
    EV_BREAKER_RESET,
    EV_EMERGENCY_EXIT_CLEARED,
    EV_EMERGENCY_EXIT_COMPLETED,
    EV_RISK_HALT_CLEARED,
    add_event,
    next_decision,
)
from engine.core.state import (
    ACTIVE,
    CLOSED,
    DAILY_LOSS_BIT,
    DRAWDOWN_BIT,
    EMERGENCY_ARMED,
    EMERGENCY_DONE,
    EMERGENCY_IN_PROGRESS,
    EXIT_MANUAL,
    HALTED,
    LOSS,
    NO_TIME,
    ORDER_EXIT,
    SYSTEM,
)


@njit(cache=True)
def halt(account: Any, events: Any, counts: Any, now_ms: int) -> None:
    """A person halts entries (``DecisionCore.halt``); not a loss-limit halt, so it never lifts by itself."""
    account[0]["halted_by_limit"] = False
    set_trading_state(account, events, counts, HALTED, now_ms)


@njit()
def _resume_limits(config: Any, account: Any, events: Any, counts: Any, equity_now: float, now_ms: int) -> None:
    """``AccountLimits.manual_resume``: lift every latched limit, re-basing peak and day start to the equity."""
    acc = account[0]
    if not is_halted(account):
        return
    cleared = 0
    if acc["latched_daily_ms"] != NO_TIME:
        cleared |= DAILY_LOSS_BIT
    if acc["latched_drawdown_ms"] != NO_TIME:
        cleared |= DRAWDOWN_BIT
    acc["latched_daily_ms"] = NO_TIME
    acc["latched_drawdown_ms"] = NO_TIME
    acc["peak_equity"] = equity_now
    acc["has_peak"] = True
    acc["day_start_equity"] = equity_now
    acc["has_day_start"] = True
    acc["mark_equity"] = equity_now
    acc["has_mark"] = True
    day_key = (now_ms - config[0]["reset_offset_ms"]) // DAY_MS  # a person's command: an instant
    acc["day_key"] = day_key if not acc["has_day"] else max(day_key, acc["day_key"])
    acc["has_day"] = True
    acc["warned_daily"] = False
    acc["warned_drawdown"] = False
    add_event(events, counts, EV_RISK_HALT_CLEARED, now_ms, -1, cleared, 1, equity_now, 0.0)


@njit(cache=True)
def clear_limit_halt(config: Any, account: Any, positions: Any, events: Any, counts: Any, now_ms: int) -> None:
    """A person lifts a latched loss-limit halt; a HALTED state caused only by it ends with it."""
    _resume_limits(config, account, events, counts, equity(account, positions), now_ms)
    if account[0]["halted_by_limit"]:
        account[0]["halted_by_limit"] = False
        set_trading_state(account, events, counts, ACTIVE, now_ms)


@njit(cache=True)
def resume(config: Any, account: Any, positions: Any, events: Any, counts: Any, now_ms: int) -> None:
    """Allow entries again; also lifts a latched loss-limit halt (``DecisionCore.resume``)."""
    clear_limit_halt(config, account, positions, events, counts, now_ms)
    set_trading_state(account, events, counts, ACTIVE, now_ms)


@njit(cache=True)
def close_position(positions: Any, decisions: Any, counts: Any, symbol: int, now_ms: int) -> bool:
    """A person closes one position at market (exit kind manual); False when flat or an order is pending."""
    position = positions[symbol]
    if not position["open"] or position["pending"]:
        return False
    position["pending"] = True
    position["order_kind"] = ORDER_EXIT
    position["order_reason"] = EXIT_MANUAL
    position["order_bar"] = -1
    row = next_decision(decisions, counts, DECISION_EXIT, symbol, now_ms, -1)
    decisions[row]["reason"] = EXIT_MANUAL
    return True


@njit(cache=True)
def resume_breaker(account: Any, breakers: Any, events: Any, counts: Any, name: int, now_ms: int) -> None:
    """A person resets one breaker to CLOSED; the loss breaker's streak and the system's errors go with it."""
    if name == LOSS:
        account[0]["consecutive_losses"] = 0
    if name == SYSTEM:
        account[0]["api_error_count"] = 0
    if breakers[name]["state"] == CLOSED:
        return
    _set(breakers, events, counts, name, CLOSED, EV_BREAKER_RESET, now_ms)


@njit(cache=True)
def complete_emergency_exit(account: Any, events: Any, counts: Any, now_ms: int) -> None:
    """The runtime executed the emergency exit's actions; trading stays halted until a person clears it."""
    if account[0]["emergency_phase"] != EMERGENCY_IN_PROGRESS:
        return
    account[0]["emergency_phase"] = EMERGENCY_DONE
    add_event(events, counts, EV_EMERGENCY_EXIT_COMPLETED, now_ms, -1, 0, 0, 0.0, 0.0)


@njit(cache=True)
def clear_emergency_exit(account: Any, events: Any, counts: Any, now_ms: int) -> bool:
    """A person clears a completed emergency exit; False (nothing changes) while it is still in progress."""
    phase = account[0]["emergency_phase"]
    if phase == EMERGENCY_ARMED:
        return True
    if phase != EMERGENCY_DONE:
        return False
    account[0]["emergency_phase"] = EMERGENCY_ARMED
    account[0]["emergency_since_ms"] = NO_TIME
    add_event(events, counts, EV_EMERGENCY_EXIT_CLEARED, now_ms, -1, 0, 0, 0.0, 0.0)
    return True
