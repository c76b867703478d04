"""Provides IncrementalTrends: each timeframe's trend as of the newest base bar, updated one closed bar at a time.

It follows :meth:`engine.analysis.mtf.MultiTimeframeAnalyzer.prepare` over base candles without supplied higher
timeframes: higher candles are resampled from the base bars (``engine.domain.timeframes.resample`` rules: UTC
buckets, a partial first bucket dropped, a bucket produced from the bars it has and visible once it has
closed), and each timeframe's trend goes through the analyser's own rule (``combine_trend``). Only the
bookkeeping differs from the vectorised pass:

- a bucket is aggregated as its bars arrive (high = max, low = min, close = last: exact);
- the Magic Trend and the two emas are carried by :mod:`engine.analysis.indicators_live`: the vectorised
  functions' own kernels run one candle at a time (the Magic Trend's cci and atr recomputed on the last
  ``max(cci_period, atr_period + 1)`` candles), so every value equals the full history's bit for bit.

``prime(history)`` starts from one vectorised pass over the history; afterwards a base bar costs O(1)
(a short Magic Trend window when a candle of a timeframe closes).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.analysis.indicators_live import IncrementalEma, IncrementalMagicTrend
from engine.analysis.mtf import MultiTimeframeAnalyzer
from engine.domain.models import Candles
from engine.domain.timeframes import floor_time, parse_timeframe, resample


@dataclass(slots=True)
class _Bucket:
    """The higher-timeframe candle being built from base bars (prices in quote currency)."""

    open_ms: int
    high: float
    low: float
    close: float
    dropped: bool  # the history's partial first bucket: resample never produces it


class _TimeframeTrend:
    """One timeframe's candles and trend, fed base bars in order."""

    def __init__(self, analyzer: MultiTimeframeAnalyzer, timeframe: str, base_ms: int) -> None:
        self.analyzer = analyzer
        self.timeframe = timeframe
        self.length_ms = parse_timeframe(timeframe)
        self.base_ms = base_ms
        self.same_as_base = self.length_ms == base_ms
        self.uses_magic = analyzer.trend_method != "ema"
        self.uses_ema = analyzer.trend_method != "magic_trend"
        self._magic = IncrementalMagicTrend(analyzer.cci_period, analyzer.atr_period, analyzer.atr_coeff)
        window = self._magic.window
        self._high: deque[float] = deque(maxlen=window)
        self._low: deque[float] = deque(maxlen=window)
        self._close: deque[float] = deque(maxlen=window)
        self._fast = IncrementalEma(analyzer.ema_fast)
        self._slow = IncrementalEma(analyzer.ema_slow)
        self._candles = 0
        self._bars = 0
        self._bucket: _Bucket | None = None
        self.visible = 0  # trend of the last candle closed at the newest base bar's close; 0 = none yet

    def prime(self, base: Candles) -> None:
        candles = base if self.same_as_base else resample(base, self.timeframe)
        self._bars = len(base)
        self._candles = len(candles)
        self._high.extend(candles.high[-self._high.maxlen :].tolist())  # type: ignore[operator]
        self._low.extend(candles.low[-self._low.maxlen :].tolist())  # type: ignore[operator]
        self._close.extend(candles.close[-self._close.maxlen :].tolist())  # type: ignore[operator]
        magic = fast = slow = None
        if self.uses_magic:
            magic = self._magic.prime(candles.high, candles.low, candles.close).direction
        if self.uses_ema:
            fast, slow = self._fast.prime(candles.close), self._slow.prime(candles.close)
        if len(candles):
            # The analyser's trend rule on the primed values; resample keeps the last bucket only once it is
            # complete, so every candle here has closed.
            self.visible = int(self.analyzer.combine_trend(magic, fast, slow)[-1])
        if self.same_as_base or len(base) == 0:
            return
        last_open = int(base.open_time_ms[-1])
        bucket = int(floor_time(last_open, self.length_ms))
        if last_open + self.base_ms >= bucket + self.length_ms:
            return  # complete: already a candle above
        first = int(np.searchsorted(base.open_time_ms, bucket, side="left"))
        self._bucket = _Bucket(
            bucket,
            float(base.high[first:].max()),
            float(base.low[first:].min()),
            float(base.close[-1]),
            dropped=first == 0 and int(base.open_time_ms[0]) != bucket,
        )

    def update(self, open_ms: int, high: float, low: float, close: float) -> int:
        """Take the next closed base bar; returns the timeframe's trend visible at its close."""
        first_bar = self._bars == 0
        self._bars += 1
        if self.same_as_base:
            self._close_candle(high, low, close)
            return self.visible
        bucket_ms = int(floor_time(open_ms, self.length_ms))
        current = self._bucket
        if current is not None and current.open_ms != bucket_ms:
            self._finish(current)  # the bar opened a later bucket: the earlier one has ended (a gap)
            current = None
        if current is None:
            current = self._bucket = _Bucket(bucket_ms, high, low, close, dropped=first_bar and open_ms != bucket_ms)
        else:
            current.high = max(current.high, high)
            current.low = min(current.low, low)
            current.close = close
        if open_ms + self.base_ms >= bucket_ms + self.length_ms:
            self._finish(current)
        return self.visible

    def _finish(self, bucket: _Bucket) -> None:
        self._bucket = None
        if not bucket.dropped:
            self._close_candle(bucket.high, bucket.low, bucket.close)

    def _close_candle(self, high: float, low: float, close: float) -> None:
        self._candles += 1
        self._high.append(high)
        self._low.append(low)
        self._close.append(close)
        analyzer = self.analyzer
        magic = fast = slow = None
        if self.uses_magic:
            direction, _ = self._magic.update(np.array(self._high), np.array(self._low), np.array(self._close))
            magic = np.array([direction], dtype=np.int8)
        if self.uses_ema:
            fast = np.array([self._fast.update(close)])
            slow = np.array([self._slow.update(close)])
        self.visible = int(analyzer.combine_trend(magic, fast, slow)[0])


class IncrementalTrends:
    """Each configured timeframe's trend at the newest base bar, plus the LONG/SHORT confluence.

    Args:
        analyzer: the strategy's analyser (its timeframes are not lower than the base timeframe).
        base_timeframe: the base candles' timeframe, e.g. ``"1h"``.
    """

    def __init__(self, analyzer: MultiTimeframeAnalyzer, base_timeframe: str) -> None:
        self.analyzer = analyzer
        base_ms = parse_timeframe(base_timeframe)
        self._trends = [_TimeframeTrend(analyzer, tf, base_ms) for tf in analyzer.timeframes]

    def prime(self, history: Candles) -> None:
        """Start from ``history`` (the same candles the vectorised frame was prepared from)."""
        for trend in self._trends:
            trend.prime(history)

    def update(self, open_ms: int, high: float, low: float, close: float) -> dict[str, int]:
        """Take the next closed base bar; each timeframe's trend visible at its close (+1/-1/0)."""
        return {trend.timeframe: trend.update(open_ms, high, low, close) for trend in self._trends}
