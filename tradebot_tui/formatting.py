"""Provides the console's pure text helpers: numbers, times, arrows and limit levels.

Nothing here computes trading values; it only turns what a snapshot already holds into
short strings. Times are formatted from the snapshot's own UTC ms values, never from the
wall clock, so identical snapshots always render identically.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

LimitLevel = Literal["ok", "warn", "limit"]

# Values within this distance of a limit count as at the limit (pct points, avoids float equality).
LIMIT_TOLERANCE_PCT = 1e-9
TREND_ARROWS = {1: "↑", -1: "↓", 0: "→"}
MISSING = "-"


def money(value: float | None, *, signed: bool = False) -> str:
    """Quote-currency amount with thousands separators and 2 decimals (``+`` shown when ``signed``)."""
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def price(value: float | None) -> str:
    """A price in quote currency with precision suited to its size (BTC 64,012.5 vs XRP 0.5123)."""
    if value is None or not math.isfinite(value):
        return MISSING
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.1f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    return f"{value:.4f}"


def quantity(value: float | None) -> str:
    """A base-currency quantity without trailing zeros (up to 8 decimals)."""
    if value is None or not math.isfinite(value):
        return MISSING
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def pct(value: float | None, *, signed: bool = False) -> str:
    """A pct in [0, 100] with one decimal and a ``%`` sign."""
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def clock(time_ms: int | None) -> str:
    """``HH:MM`` UTC of a UTC ms time."""
    if time_ms is None:
        return MISSING
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%H:%M")


def timestamp(time_ms: int | None) -> str:
    """``YYYY-MM-DD HH:MM UTC`` of a UTC ms time."""
    if time_ms is None:
        return MISSING
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(milliseconds: int | None) -> str:
    """A compact duration: ``45s``, ``12m``, ``3h05m``, ``2d04h``; negative durations read as ``0s``."""
    if milliseconds is None:
        return MISSING
    seconds = max(0, milliseconds // 1000)
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def trend_arrow(direction: int) -> str:
    """``↑`` up, ``↓`` down, ``→`` flat for a trend direction of +1, -1 or 0."""
    return TREND_ARROWS[1 if direction > 0 else -1 if direction < 0 else 0]


def limit_level(value_pct: float, limit_pct: float, warning_ratio: float) -> LimitLevel:
    """Where a loss or drawdown stands against its limit.

    Args:
        value_pct: current value, pct in [0, 100] (a loss or drawdown as a positive number).
        limit_pct: configured limit, pct in [0, 100].
        warning_ratio: ratio in [0, 1] of the limit from which the value is a warning (e.g. 0.8).

    Returns:
        ``"limit"`` at or beyond the limit, ``"warn"`` from ``warning_ratio * limit``, else ``"ok"``.
    """
    if limit_pct <= 0:
        return "ok"
    if value_pct >= limit_pct - LIMIT_TOLERANCE_PCT:
        return "limit"
    if value_pct >= warning_ratio * limit_pct - LIMIT_TOLERANCE_PCT:
        return "warn"
    return "ok"


def bar(fill_ratio: float, width: int) -> str:
    """A text bar ``width`` cells wide, ``fill_ratio`` in [0, 1] of it filled (clamped)."""
    width = max(0, width)
    ratio = 0.0 if not math.isfinite(fill_ratio) else min(1.0, max(0.0, fill_ratio))
    filled = round(ratio * width)
    return "█" * filled + "░" * (width - filled)
