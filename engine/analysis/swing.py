"""Provides swing_levels: the last confirmed swing low and high at every bar (swing trailing's input)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.domain.models import FloatArray


def swing_levels(high: FloatArray, low: FloatArray, lookback: int) -> tuple[FloatArray, FloatArray]:
    """Last confirmed swing low and swing high at every bar, without look-ahead.

    Bar ``j`` is a swing low when ``low[j]`` is the minimum of ``low[j - lookback : j + lookback + 1]``
    (a swing high likewise with ``high`` and maximum). It is only *known* once the ``lookback`` bars
    after it have closed, so it becomes visible at bar ``j + lookback``: the value at bar ``t`` uses bars
    ``0..t`` only.

    Args:
        high: bar highs, oldest first.
        low: bar lows, oldest first.
        lookback: bars on each side that define a swing (>= 1).

    Returns:
        ``(swing_low, swing_high)`` float64 arrays of ``len(low)``, NaN before the first confirmed swing.
    """
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    high = np.asarray(high, dtype=np.float64)
    low = np.asarray(low, dtype=np.float64)
    return _last_pivot(low, lookback, is_low=True), _last_pivot(high, lookback, is_low=False)


def _last_pivot(values: FloatArray, lookback: int, *, is_low: bool) -> FloatArray:
    count = len(values)
    width = 2 * lookback + 1
    result = np.full(count, np.nan)
    if count < width:
        return result
    windows = sliding_window_view(values, width)
    extreme = windows.min(axis=1) if is_low else windows.max(axis=1)
    centres = np.arange(lookback, count - lookback)
    # Exact equality is intended: the extreme is one of the window's own values, not a computed price.
    pivots = centres[values[centres] == extreme]
    latest_pivot = np.full(count, -1, dtype=np.int64)
    latest_pivot[pivots + lookback] = pivots
    latest_pivot = np.maximum.accumulate(latest_pivot)
    known = latest_pivot >= 0
    result[known] = values[latest_pivot[known]]
    return result
