"""Provides the compiled breakers: ``engine.core.breaker.CircuitBreaker``'s transitions over the breaker rows.

Rows :data:`~engine.core.state.VOLATILITY`, :data:`~engine.core.state.LOSS` and
:data:`~engine.core.state.SYSTEM`; the loss streak, the breakers' daily loss, the API error window and
the emergency latch live in the account record. The rules are those of ``engine.core.breaker``'s docstring.
"""

from __future__ import annotations

import math
from typing import Any

from engine.core.jit import njit
from engine.core.records import (
    EV_BREAKER_COOLING_DOWN,
    EV_BREAKER_HALF_OPENED,
    EV_BREAKER_RESET,
    EV_BREAKER_TRIPPED,
    add_event,
)
from engine.core.rounding import reaches
from engine.core.state import (
    API_ERROR_CAPACITY,
    CLOSED,
    EMERGENCY_ARMED,
    HALF_OPEN,
    LOSS,
    NO_TIME,
    OPEN,
    SYSTEM,
    VOLATILITY,
)

HALF_OPEN_CONFIRMATIONS = 3  # engine.core.breaker.HALF_OPEN_CONFIRMATIONS
PNL_EPS = 1e-9  # engine.core.breaker.PNL_EPS


@njit()
def is_latching(config: Any, name: int) -> bool:
    cfg = config[0]
    if name == VOLATILITY:
        return bool(cfg["latching_volatility"])
    if name == LOSS:
        return bool(cfg["latching_loss"])
    return bool(cfg["latching_system"])


@njit()
def _set(breakers: Any, events: Any, counts: Any, name: int, state: int, kind: int, now_ms: int) -> None:
    """A trip (to OPEN) or a close (to CLOSED): the wait for normal readings and confirmations start over."""
    row = breakers[name]
    previous = row["state"]
    row["state"] = state
    row["since_ms"] = now_ms
    row["normal_since_ms"] = NO_TIME
    row["resume_after_ms"] = NO_TIME
    row["confirmations"] = 0
    add_event(events, counts, kind, now_ms, -1, name, previous, row["value"], row["threshold"])


@njit()
def _advance(config: Any, breakers: Any, events: Any, counts: Any, name: int, now_ms: int) -> None:
    """OPEN -> HALF_OPEN once the cool-down after normalisation has elapsed (never for latching)."""
    row = breakers[name]
    if (row["state"] == OPEN and row["resume_after_ms"] != NO_TIME and now_ms >= row["resume_after_ms"]
            and not is_latching(config, name)):
        row["state"] = HALF_OPEN
        row["since_ms"] = now_ms
        row["confirmations"] = 0
        add_event(events, counts, EV_BREAKER_HALF_OPENED, now_ms, -1, name, OPEN, row["value"], row["threshold"])


@njit()
def _observe(config: Any, breakers: Any, events: Any, counts: Any, name: int, tripped: bool, now_ms: int,
             confirms: bool) -> None:
    """One reading of a breaker's condition (``CircuitBreaker._observe``)."""
    row = breakers[name]
    state = row["state"]
    if state == CLOSED:
        if tripped:
            _set(breakers, events, counts, name, OPEN, EV_BREAKER_TRIPPED, now_ms)
    elif state == OPEN:
        if tripped:
            row["normal_since_ms"] = NO_TIME
            row["resume_after_ms"] = NO_TIME
        elif row["normal_since_ms"] == NO_TIME and not is_latching(config, name):
            row["normal_since_ms"] = now_ms
            row["resume_after_ms"] = now_ms + config[0]["cooldown_ms"]
            add_event(events, counts, EV_BREAKER_COOLING_DOWN, now_ms, -1, name, OPEN, row["value"],
                      row["threshold"])
        _advance(config, breakers, events, counts, name, now_ms)
    elif tripped:
        _set(breakers, events, counts, name, OPEN, EV_BREAKER_TRIPPED, now_ms)
    elif confirms:
        row["confirmations"] += 1
        if row["confirmations"] >= HALF_OPEN_CONFIRMATIONS:
            _set(breakers, events, counts, name, CLOSED, EV_BREAKER_RESET, now_ms)


@njit()
def check_volatility(config: Any, breakers: Any, events: Any, counts: Any, current: float, normal: float,
                     now_ms: int) -> None:
    """Trip when ``current / normal`` reaches ``volatility_multiplier``; an unusable reading only ages."""
    row = breakers[VOLATILITY]
    row["threshold"] = config[0]["volatility_multiplier"]
    if not (math.isfinite(current) and math.isfinite(normal) and current >= 0.0 and normal > 0.0):
        _advance(config, breakers, events, counts, VOLATILITY, now_ms)
        return
    ratio = current / normal
    row["value"] = ratio
    _observe(config, breakers, events, counts, VOLATILITY, reaches(ratio, row["threshold"]), now_ms, True)


@njit()
def check_loss(config: Any, account: Any, breakers: Any, events: Any, counts: Any, consecutive_losses: int,
               daily_loss_pct: float, now_ms: int) -> None:
    """Trip on ``max_consecutive_losses`` in a row or the breakers' daily loss; the trip consumes the streak."""
    cfg = config[0]
    acc = account[0]
    if math.isfinite(daily_loss_pct):
        acc["breaker_daily_loss_pct"] = daily_loss_pct
    daily = acc["breaker_daily_loss_pct"]
    streak_tripped = consecutive_losses >= cfg["max_consecutive_losses"]
    daily_tripped = reaches(daily, cfg["breaker_daily_loss_pct"])
    row = breakers[LOSS]
    if consecutive_losses / cfg["max_consecutive_losses"] >= daily / cfg["breaker_daily_loss_pct"]:
        row["value"] = float(consecutive_losses)
        row["threshold"] = float(cfg["max_consecutive_losses"])
    else:
        row["value"] = daily
        row["threshold"] = cfg["breaker_daily_loss_pct"]
    _observe(config, breakers, events, counts, LOSS, streak_tripped or daily_tripped, now_ms, False)
    if streak_tripped and row["state"] == OPEN:
        acc["consecutive_losses"] = 0


@njit()
def record_trade_result(config: Any, account: Any, breakers: Any, events: Any, counts: Any, pnl: float,
                        now_ms: int, daily_loss_pct: float) -> None:
    """Count a closed trade's net P&L into the streak; in half-open a win closes, a loss re-opens."""
    acc = account[0]
    if math.isfinite(daily_loss_pct):
        acc["breaker_daily_loss_pct"] = daily_loss_pct
    is_loss = pnl < -PNL_EPS
    is_win = pnl > PNL_EPS
    if is_loss:
        acc["consecutive_losses"] += 1
    elif is_win:
        acc["consecutive_losses"] = 0
    if breakers[LOSS]["state"] == HALF_OPEN and (is_loss or is_win):
        if is_win:
            _set(breakers, events, counts, LOSS, CLOSED, EV_BREAKER_RESET, now_ms)
        else:
            _set(breakers, events, counts, LOSS, OPEN, EV_BREAKER_TRIPPED, now_ms)
        return
    check_loss(config, account, breakers, events, counts, acc["consecutive_losses"], acc["breaker_daily_loss_pct"],
               now_ms)


@njit()
def _prune_api_errors(config: Any, account: Any, api_errors: Any, now_ms: int) -> int:
    """Drop API errors at or before ``now - window``; the count left."""
    acc = account[0]
    horizon = now_ms - config[0]["api_error_window_ms"]
    while acc["api_error_count"] > 0 and api_errors[acc["api_error_head"]] <= horizon:
        acc["api_error_head"] = (acc["api_error_head"] + 1) % API_ERROR_CAPACITY
        acc["api_error_count"] -= 1
    return int(acc["api_error_count"])


@njit()
def check_system_health(config: Any, account: Any, breakers: Any, api_errors: Any, events: Any, counts: Any,
                        now_ms: int) -> None:
    """Trip when ``api_error_threshold`` or more API errors fall in ``(now - window, now]``."""
    row = breakers[SYSTEM]
    row["threshold"] = float(config[0]["api_error_threshold"])
    count = _prune_api_errors(config, account, api_errors, now_ms)
    row["value"] = float(count)
    _observe(config, breakers, events, counts, SYSTEM, reaches(float(count), row["threshold"]), now_ms, False)


@njit(cache=True)
def record_api_error(config: Any, account: Any, breakers: Any, api_errors: Any, events: Any, counts: Any,
                     now_ms: int) -> None:
    """Count one failed external call; any error re-opens a half-open system breaker."""
    acc = account[0]
    if acc["api_error_count"] == API_ERROR_CAPACITY:  # the oldest goes: the window holds the newest errors
        acc["api_error_head"] = (acc["api_error_head"] + 1) % API_ERROR_CAPACITY
        acc["api_error_count"] -= 1
    api_errors[(acc["api_error_head"] + acc["api_error_count"]) % API_ERROR_CAPACITY] = now_ms
    acc["api_error_count"] += 1
    if breakers[SYSTEM]["state"] == HALF_OPEN:
        breakers[SYSTEM]["value"] = float(_prune_api_errors(config, account, api_errors, now_ms))
        _set(breakers, events, counts, SYSTEM, OPEN, EV_BREAKER_TRIPPED, now_ms)
        return
    check_system_health(config, account, breakers, api_errors, events, counts, now_ms)


@njit(cache=True)
def record_api_success(config: Any, account: Any, breakers: Any, api_errors: Any, events: Any, counts: Any,
                       now_ms: int) -> None:
    """Count one successful call; ``HALF_OPEN_CONFIRMATIONS`` of them close a half-open system breaker."""
    if breakers[SYSTEM]["state"] == HALF_OPEN:
        breakers[SYSTEM]["value"] = float(_prune_api_errors(config, account, api_errors, now_ms))
        _observe(config, breakers, events, counts, SYSTEM, False, now_ms, True)
        return
    check_system_health(config, account, breakers, api_errors, events, counts, now_ms)


@njit()
def advance(config: Any, account: Any, breakers: Any, api_errors: Any, events: Any, counts: Any,
            now_ms: int) -> None:
    """The passage of time: age out API errors, half-open breakers whose cool-down ended."""
    check_system_health(config, account, breakers, api_errors, events, counts, now_ms)
    _advance(config, breakers, events, counts, VOLATILITY, now_ms)
    _advance(config, breakers, events, counts, LOSS, now_ms)


@njit()
def allows_entry(config: Any, account: Any, breakers: Any) -> tuple[bool, float]:
    """``(allowed, size multiplier)`` of ``CircuitBreaker.allows_entry``."""
    if account[0]["emergency_phase"] != EMERGENCY_ARMED:
        return False, 0.0
    reduced = False
    for name in range(3):
        state = breakers[name]["state"]
        if state == OPEN:
            return False, 0.0
        if state == HALF_OPEN:
            reduced = True
    if reduced:
        return True, float(config[0]["half_open_size_ratio"])
    return True, 1.0
