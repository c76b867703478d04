"""Provides the one rule for the trading day a timestamp belongs to (loss limits, breakers and metrics).

Trading days start at a reset time of day in UTC (``RiskConfig.daily_reset_utc``, midnight by default).
Day ``d`` covers the instants ``[start(d), start(d) + 1 day)`` with ``start(d) = d * DAY_MS + offset``.

- An *instant* (a fill on the exchange, a clock reading) at ``t`` belongs to the day containing ``t``.
- A *bar closing* at ``t`` covers ``(t - bar, t]`` and belongs to the day containing ``t - 1 ms``: a bar that
  closes exactly at the reset belongs to the day that ends there, and the equity marked at that close is
  the equity at the reset instant, i.e. the next day's start equity. Everything a simulated bar does (its
  fills included) belongs to the bar's day.

All times are UTC milliseconds; day numbers are plain integers (comparable, consecutive).
"""

from __future__ import annotations

from datetime import time

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000


def reset_offset_ms(reset: time) -> int:
    """The reset time of day as milliseconds after UTC midnight."""
    return ((reset.hour * 60 + reset.minute) * 60 + reset.second) * 1000 + reset.microsecond // 1000


def day_of_instant(time_ms: int, offset_ms: int = 0) -> int:
    """The trading day containing the instant ``time_ms``."""
    return (time_ms - offset_ms) // DAY_MS


def day_of_close(close_ms: int, offset_ms: int = 0) -> int:
    """The trading day of a bar closing at ``close_ms``: the day containing ``close_ms - 1``."""
    return (close_ms - 1 - offset_ms) // DAY_MS


def days_of_closes(close_ms: npt.ArrayLike, offset_ms: int = 0) -> npt.NDArray[np.int64]:
    """:func:`day_of_close` of every bar close in ``close_ms`` (an array of UTC ms)."""
    days: npt.NDArray[np.int64] = (np.asarray(close_ms, dtype=np.int64) - 1 - offset_ms) // DAY_MS
    return days


def day_start_ms(day: int, offset_ms: int = 0) -> int:
    """The reset instant that starts trading day ``day``."""
    return day * DAY_MS + offset_ms
