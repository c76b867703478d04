"""Provides resampling to a higher timeframe as one numba loop, over a whole history or one bar at a time.

``resample(candles, timeframe)`` runs :func:`bucket_kernel` over every bar from a fresh :func:`bucket_state`;
the live trends (:mod:`engine.analysis.mtf_live`) run the same kernel over each new base bar from the state
they carry (the bucket being built), so a live higher-timeframe candle is the vectorised one bit for bit.

Rules (open = first open, high = max, low = min, close = last close, volume = sum, per UTC bucket, see
:func:`engine.domain.timeframes.floor_time`):

- Gaps: a bucket with some bars missing is still produced from the bars that exist (the exchange builds its
  own higher-timeframe candle the same way from the trades it has); a bucket with no bars is not produced.
- A bucket is produced once it has closed: on its last bar (``open + base >= bucket + length``) or, after a
  gap, when a bar of a later bucket arrives.
- Partial buckets: the first bucket is *partial* when the data starts after its open (the bars before our
  history are unknown, so its open/high/low would be wrong), and the last one when the data ends before it
  closes. Both are dropped unless ``include_partial``. Because a bucket is produced exactly when its final
  bar is present, resampling ``candles[:t+1]`` gives a prefix of resampling all candles (no look-ahead).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.analysis.kernels import State
from engine.domain.errors import DataException
from engine.domain.models import Candles
from engine.domain.timeframes import floor_time, parse_timeframe
from engine.jit import njit

BUCKET_DTYPE = np.dtype([
    ("open_ms", np.int64),  # open of the bucket being built (UTC ms)
    ("open", np.float64), ("high", np.float64), ("low", np.float64), ("close", np.float64),  # quote currency
    ("volume", np.float64),  # base currency
    ("building", np.bool_),  # a bucket has bars and has not been produced yet
    ("partial_start", np.bool_),  # it is the history's first bucket and began before the first bar
    ("bars_seen", np.int64),
], align=True)


def bucket_state() -> State:
    """The state of a resampling before its first bar."""
    return np.zeros(1, dtype=BUCKET_DTYPE)


@njit()
def _produce(row: Any, out_open_ms: Any, out: Any, count: int, include_partial: bool) -> int:
    """Write the built bucket as candle ``count`` (unless it is a dropped partial first one); the new count."""
    row["building"] = False
    if row["partial_start"] and not include_partial:
        return count
    out_open_ms[count] = row["open_ms"]
    out[0, count], out[1, count], out[2, count] = row["open"], row["high"], row["low"]
    out[3, count], out[4, count] = row["close"], row["volume"]
    return count + 1


@njit(cache=True)
def bucket_kernel(open_ms: Any, prices: Any, base_ms: int, length_ms: int, origin_ms: int, state: Any,
                  out_open_ms: Any, out: Any, include_partial: bool) -> int:
    """Feed bars (``prices``: the open, high, low, close and volume columns) into ``state`` (:data:`BUCKET_DTYPE`);
    the closed buckets go to ``out_open_ms`` / ``out`` (same rows, room for ``len(open_ms) + 1``). Returns how
    many were produced; the bucket still open stays in the state."""
    row = state[0]
    count = 0
    for t in range(len(open_ms)):
        bucket = open_ms[t] - (open_ms[t] - origin_ms) % length_ms
        if row["building"] and row["open_ms"] != bucket:  # a bar of a later bucket: this one has ended (a gap)
            count = _produce(row, out_open_ms, out, count, include_partial)
        if not row["building"]:
            row["open_ms"], row["building"] = bucket, True
            row["partial_start"] = row["bars_seen"] == 0 and open_ms[t] != bucket
            row["open"], row["high"], row["low"] = prices[0][t], prices[1][t], prices[2][t]
            row["volume"] = prices[4][t]
        else:
            row["high"] = max(row["high"], prices[1][t])
            row["low"] = min(row["low"], prices[2][t])
            row["volume"] += prices[4][t]
        row["close"] = prices[3][t]
        row["bars_seen"] += 1
        if open_ms[t] + base_ms >= bucket + length_ms:  # the bucket's last bar: it has closed
            count = _produce(row, out_open_ms, out, count, include_partial)
    return count


def resample(candles: Candles, timeframe: str, *, include_partial: bool = False,
             state: State | None = None) -> Candles:
    """Aggregate candles into a higher timeframe aligned to UTC buckets (the module docstring's rules).

    Args:
        candles: strictly increasing open times of ``candles.timeframe``.
        timeframe: target timeframe, a whole multiple of ``candles.timeframe`` (equal is allowed).
        include_partial: keep a partial first/last bucket.
        state: a :func:`bucket_state` to continue from and leave at the bucket still open after the last bar
            (fresh when None); the candles produced are those that closed within ``candles``.

    Returns:
        Candles of ``timeframe`` for the same symbol.

    Raises:
        ValueError: ``timeframe`` is invalid, lower than the source or not a multiple of it.
        DataException: open times are not strictly increasing.
    """
    base_ms, length_ms = parse_timeframe(candles.timeframe), parse_timeframe(timeframe)
    if length_ms < base_ms or length_ms % base_ms != 0:
        raise ValueError(
            f"cannot resample {candles.timeframe!r} to {timeframe!r}: the target must be a whole multiple of the source"
        )
    open_ms = np.ascontiguousarray(candles.open_time_ms, dtype=np.int64)
    if len(open_ms) > 1 and not bool(np.all(np.diff(open_ms) > 0)):
        raise DataException(f"resample {candles.symbol} {candles.timeframe}: open times must be strictly "
                            "increasing (sorted, no duplicates)")
    prices = (candles.open, candles.high, candles.low, candles.close, candles.volume)  # read-only, as always
    state = bucket_state() if state is None else state
    out_open_ms, out = np.empty(len(open_ms) + 1, dtype=np.int64), np.empty((5, len(open_ms) + 1))
    count = bucket_kernel(open_ms, prices, base_ms, length_ms, int(floor_time(0, length_ms)), state, out_open_ms,
                          out, include_partial)
    row = state[0]
    if include_partial and row["building"]:  # the last bucket, not closed yet
        out_open_ms[count] = row["open_ms"]
        out[:, count] = [row["open"], row["high"], row["low"], row["close"], row["volume"]]
        count += 1
    produced, columns = out_open_ms[:count], out[:, :count]
    produced.flags.writeable = columns.flags.writeable = False  # fresh buffers: Candles needs no copy of them
    return Candles(candles.symbol, timeframe, produced, *columns)


class IncrementalResampler:
    """:func:`resample` continued one base bar at a time: the bucket being built is the kernel's state.

    Args:
        base_timeframe: the base bars' timeframe, e.g. ``"1h"``.
        timeframe: the target timeframe, a whole multiple of it, e.g. ``"4h"``.
    """

    def __init__(self, base_timeframe: str, timeframe: str) -> None:
        self.base_timeframe, self.timeframe = base_timeframe, timeframe
        self.state = bucket_state()

    def prime(self, base: Candles) -> Candles:
        """The candles closed within ``base`` (oldest first), leaving the state at the bucket still open."""
        self.state = bucket_state()
        return resample(base, self.timeframe, state=self.state)

    def update(self, open_ms: int, open_: float, high: float, low: float, close: float, volume: float) -> Candles:
        """Take the next base bar (prices in quote currency); the candles it closed (none, one, or two after a
        gap: the bucket the gap ended and the bar's own when it is its last)."""
        bar = Candles("", self.base_timeframe, np.array([open_ms], dtype=np.int64), *(
            np.array([value], dtype=np.float64) for value in (open_, high, low, close, volume)))
        return resample(bar, self.timeframe, state=self.state)
