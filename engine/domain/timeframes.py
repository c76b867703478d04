"""Provides timeframe parsing, UTC bucket alignment and closed-candle selection.

Resampling to a higher timeframe is :mod:`engine.analysis.buckets` (a kernel shared by the backtest and live).

A timeframe is written as ``<count><unit>`` with unit ``s`` (seconds), ``m`` (minutes), ``h`` (hours),
``d`` (days) or ``w`` (weeks), e.g. ``"1m"``, ``"15m"``, ``"4h"``, ``"1d"``. Calendar months (ccxt's ``"1M"``)
have no fixed length and are rejected.

Buckets are aligned to the Unix epoch in UTC (``open_time_ms % timeframe_ms == 0``), which is how Binance
aligns every fixed-length kline from 1s to 3d; weekly buckets open on Monday 00:00 UTC, as Binance's ``1w``
klines do.

A candle opened at ``t`` with timeframe length ``L`` covers ``[t, t + L)`` and is *closed* at time ``t + L``:
anything decided at time ``T`` may only use candles with ``t + L <= T``.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from engine.domain.models import Candles, IntArray

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

# 1970-01-01 was a Thursday; the Monday before it is 3 days earlier. Weekly buckets are offset by this.
WEEK_ORIGIN_MS = -3 * DAY_MS

_UNIT_MS: dict[str, int] = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}
_TIMEFRAME_PATTERN = re.compile(r"([1-9][0-9]*)([smhdw])")


@lru_cache(maxsize=256)
def parse_timeframe(timeframe: str) -> int:
    """Length of a timeframe in milliseconds.

    Args:
        timeframe: ``<count><unit>``, unit one of ``s m h d w`` (lower case; ``"1H"``/``"1D"``/``"1W"`` are
            accepted as the upper-case spelling of hours, days and weeks; ``"1M"`` means a calendar month
            and is rejected), e.g. ``"5m"``, ``"4h"``, ``"1d"``.

    Returns:
        The timeframe length in milliseconds, e.g. ``parse_timeframe("1h") == 3_600_000``.

    Raises:
        ValueError: the value is not a timeframe; the message names it.
    """
    if not isinstance(timeframe, str):
        raise ValueError(f"timeframe must be a string like '1h', got {timeframe!r}")
    text = timeframe.strip()
    if text.endswith("M"):
        raise ValueError(
            f"timeframe {timeframe!r}: calendar months have no fixed length and are not supported"
        )
    if text[-1:] in ("H", "D", "W"):
        text = text[:-1] + text[-1].lower()
    match = _TIMEFRAME_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid timeframe {timeframe!r}: expected <count><unit>, unit s, m, h, d or w, e.g. '15m', '4h'"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def timeframe_ms(timeframe: str | int) -> int:
    """Length of a timeframe in milliseconds; an int is taken as already in ms and must be positive.

    Raises:
        ValueError: the value is not a timeframe (or a non-positive length).
    """
    if isinstance(timeframe, bool) or not isinstance(timeframe, str | int | np.integer):
        raise ValueError(f"timeframe must be a string like '1h' or a length in ms, got {timeframe!r}")
    if isinstance(timeframe, str):
        return parse_timeframe(timeframe)
    if timeframe <= 0:
        raise ValueError(f"timeframe length must be positive, got {timeframe!r} ms")
    return int(timeframe)


def _origin_ms(length_ms: int) -> int:
    """Offset of the bucket grid from the epoch: weekly multiples open on Monday, the rest on the epoch."""
    return WEEK_ORIGIN_MS if length_ms % WEEK_MS == 0 else 0


def floor_time(time_ms: int | npt.ArrayLike, timeframe: str | int) -> int | IntArray:
    """Open time of the bucket of ``timeframe`` containing ``time_ms`` (UTC ms).

    Works on a single int (returns an int) or on an array (returns an int64 array).
    """
    length = timeframe_ms(timeframe)
    origin = _origin_ms(length)
    if isinstance(time_ms, int | np.integer):
        value = int(time_ms)
        return value - (value - origin) % length
    times = np.asarray(time_ms, dtype=np.int64)
    return times - (times - origin) % length


def is_aligned(time_ms: int | npt.ArrayLike, timeframe: str | int) -> bool | npt.NDArray[np.bool_]:
    """Whether ``time_ms`` is the open time of a ``timeframe`` bucket (elementwise for arrays)."""
    floored = floor_time(time_ms, timeframe)
    if isinstance(floored, int):
        return floored == int(time_ms)  # type: ignore[arg-type]
    return np.asarray(floored == np.asarray(time_ms, dtype=np.int64))


def closed_count(open_time_ms: IntArray, length_ms: int, at_ms: int) -> int:
    """Number of leading candles (sorted open times) closed at ``at_ms``: open + length <= at_ms."""
    return int(np.searchsorted(open_time_ms, at_ms - length_ms, side="right"))


def closed_as_of(candles: Candles, at_ms: int) -> Candles:
    """The candles closed at time ``at_ms`` (UTC ms): ``open_time_ms + timeframe <= at_ms``.

    A candle closing exactly at ``at_ms`` is included; the one in progress is not.
    """
    length = parse_timeframe(candles.timeframe)
    return candles.slice(0, closed_count(candles.open_time_ms, length, at_ms))


def closed_index(htf_open_time_ms: npt.ArrayLike, htf_ms: int, at_ms: npt.ArrayLike) -> IntArray:
    """For each time in ``at_ms``, the index of the last higher-timeframe candle closed at that time.

    Used to align higher-timeframe values to base bars: pass the base bars' *close* times
    (``open_time_ms + base_ms``) so a base bar sees only higher candles that had closed when it closed.

    Args:
        htf_open_time_ms: strictly increasing open times of the higher-timeframe candles (UTC ms).
        htf_ms: higher-timeframe length in ms.
        at_ms: query times (UTC ms), any order.

    Returns:
        int64 array shaped like ``at_ms``; -1 where no candle had closed yet.
    """
    opens = np.asarray(htf_open_time_ms, dtype=np.int64)
    times = np.asarray(at_ms, dtype=np.int64)
    return np.searchsorted(opens, times - int(htf_ms), side="right").astype(np.int64) - 1
