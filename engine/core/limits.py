"""Provides the compiled loss-limit check: ``engine.core.account_limits.AccountLimits.check`` over the account record.

Every check is a full check (the Python core's quiet band only skips checks that change nothing but the
marked equity, which a full check marks the same way). The result is left in the account's ``check_*``
fields, which is also what ``DecisionCore.last_limit_check`` reports.
"""

from __future__ import annotations

import math
from typing import Any

from engine.core.jit import njit
from engine.core.records import EV_RISK_HALT_CLEARED, EV_RISK_LIMIT_BREACHED, EV_RISK_LIMIT_WARNING, add_event
from engine.core.rounding import reaches
from engine.core.state import (
    ACTION_CLOSE_ALL,
    ACTION_HALT_ENTRIES,
    ACTION_NONE,
    DAILY_LOSS_BIT,
    DRAWDOWN_BIT,
    NO_TIME,
)

DAY_MS = 86_400_000  # engine.domain.trading_day.DAY_MS


@njit()
def loss_pct(reference: float, equity: float) -> float:
    """``engine.core.limit_levels.loss_pct``: loss of ``equity`` below ``reference`` in pct, floored at 0."""
    loss = (reference - equity) / reference * 100.0
    return loss if loss > 0.0 else 0.0


@njit()
def is_halted(account: Any) -> bool:
    """A loss limit is latched (``AccountLimits.halted``)."""
    row = account[0]
    return bool(row["latched_daily_ms"] != NO_TIME or row["latched_drawdown_ms"] != NO_TIME)


@njit()
def _limit(events: Any, counts: Any, bit: int, value: float, limit: float, warning_ratio: float, latched: bool,
           warned: bool, now_ms: int) -> tuple[bool, bool, bool]:
    """One limit of the check, as ``AccountLimits.check``: ``(breached, newly latched, warned after)``."""
    breached = reaches(value, limit)
    newly_latched = breached and not latched
    if newly_latched:
        add_event(events, counts, EV_RISK_LIMIT_BREACHED, now_ms, -1, bit, 0, value, limit)
    if reaches(value, limit * warning_ratio):
        if not warned:
            warned = True
            if not breached:
                add_event(events, counts, EV_RISK_LIMIT_WARNING, now_ms, -1, bit, 0, value, limit)
    else:
        warned = False
    return breached, newly_latched, warned


@njit()
def check_limits(config: Any, account: Any, events: Any, counts: Any, equity: float, now_ms: int,
                 instant: bool) -> int:
    """Track peak and day-start equity and test both limits; returns the action (``ACTION_*``).

    ``now_ms`` is a bar close, or with ``instant`` the time of an instant such as a live fill (see
    ``engine.domain.trading_day`` for the day each belongs to).
    """
    row = account[0]
    cfg = config[0]
    row["has_check"] = True
    if not math.isfinite(equity):
        row["check_action"] = ACTION_HALT_ENTRIES
        row["check_breached"] = 0
        row["check_daily_loss_pct"] = math.nan
        row["check_drawdown_pct"] = math.nan
        row["check_equity"] = equity
        return ACTION_HALT_ENTRIES
    offset = cfg["reset_offset_ms"]
    day_key = ((now_ms if instant else now_ms - 1) - offset) // DAY_MS
    if not row["has_day"] or day_key > row["day_key"]:
        row["day_key"] = day_key
        row["has_day"] = True
        row["day_start_equity"] = row["mark_equity"] if row["has_mark"] else equity
        row["has_day_start"] = True
        row["warned_daily"] = False
        if row["latched_daily_ms"] != NO_TIME:
            row["latched_daily_ms"] = NO_TIME
            add_event(events, counts, EV_RISK_HALT_CLEARED, now_ms, -1, DAILY_LOSS_BIT, 0, equity, 0.0)
    row["mark_equity"] = equity
    row["has_mark"] = True
    if not row["has_peak"] or equity > row["peak_equity"]:
        row["peak_equity"] = equity
        row["has_peak"] = True
    peak = row["peak_equity"]
    day_start = row["day_start_equity"]
    daily_loss = loss_pct(day_start, equity) if day_start > 0 else 100.0
    drawdown = loss_pct(peak, equity) if peak > 0 else 100.0
    ratio = cfg["warning_threshold_ratio"]
    breached = 0
    hit, latch, row["warned_daily"] = _limit(events, counts, DAILY_LOSS_BIT, daily_loss, cfg["max_daily_loss_pct"],
                                             ratio, row["latched_daily_ms"] != NO_TIME, row["warned_daily"], now_ms)
    if hit:
        breached |= DAILY_LOSS_BIT
    if latch:
        row["latched_daily_ms"] = now_ms
    hit, latch, row["warned_drawdown"] = _limit(events, counts, DRAWDOWN_BIT, drawdown, cfg["max_drawdown_pct"],
                                                ratio, row["latched_drawdown_ms"] != NO_TIME, row["warned_drawdown"],
                                                now_ms)
    if hit:
        breached |= DRAWDOWN_BIT
    if latch:
        row["latched_drawdown_ms"] = now_ms
    if breached:
        action = ACTION_CLOSE_ALL
    elif is_halted(account):
        action = ACTION_HALT_ENTRIES
    else:
        action = ACTION_NONE
    row["check_action"] = action
    row["check_breached"] = breached
    row["check_daily_loss_pct"] = daily_loss
    row["check_drawdown_pct"] = drawdown
    row["check_equity"] = equity
    return action
