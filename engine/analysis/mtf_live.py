"""Provides IncrementalTrends: each timeframe's trend as of the newest base bar, updated one closed bar at a time.

It follows :meth:`engine.analysis.mtf.MultiTimeframeAnalyzer.prepare` over base candles without supplied higher
timeframes: higher candles are resampled from the base bars (:mod:`engine.analysis.buckets`: UTC buckets, a
partial first bucket dropped, a bucket produced from the bars it has and visible once it has closed), and each
timeframe's trend goes through the analyser's own rule (``combine_trend``). Only the bookkeeping differs from
the vectorised pass:

- the resampling kernel runs one base bar at a time from the bucket it carries
  (:class:`engine.analysis.buckets.IncrementalResampler`);
- the Magic Trend and the two emas are carried by :mod:`engine.analysis.indicators_live`: the vectorised
  functions' own kernels run one candle at a time (the Magic Trend's cci and atr recomputed on the last
  ``max(cci_period, atr_period + 1)`` candles), so every value equals the full history's bit for bit.

``prime(history)`` starts from one vectorised pass over the history; afterwards a base bar costs O(1)
(a short Magic Trend window when a candle of a timeframe closes).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from engine.analysis.buckets import IncrementalResampler
from engine.analysis.indicators_live import IncrementalEma, IncrementalMagicTrend
from engine.analysis.mtf import MultiTimeframeAnalyzer
from engine.domain.models import Candles
from engine.domain.timeframes import parse_timeframe


class _TimeframeTrend:
    """One timeframe's candles and trend, fed base bars in order."""

    def __init__(self, analyzer: MultiTimeframeAnalyzer, timeframe: str, base_timeframe: str) -> None:
        self.analyzer = analyzer
        self.timeframe = timeframe
        self.same_as_base = parse_timeframe(timeframe) == parse_timeframe(base_timeframe)
        self.uses_magic = analyzer.trend_method != "ema"
        self.uses_ema = analyzer.trend_method != "magic_trend"
        self._resampler = IncrementalResampler(base_timeframe, timeframe)
        self._magic = IncrementalMagicTrend(analyzer.cci_period, analyzer.atr_period, analyzer.atr_coeff)
        window = self._magic.window
        self._high: deque[float] = deque(maxlen=window)
        self._low: deque[float] = deque(maxlen=window)
        self._close: deque[float] = deque(maxlen=window)
        self._fast = IncrementalEma(analyzer.ema_fast)
        self._slow = IncrementalEma(analyzer.ema_slow)
        self.visible = 0  # trend of the last candle closed at the newest base bar's close; 0 = none yet

    def prime(self, base: Candles) -> None:
        candles = base if self.same_as_base else self._resampler.prime(base)
        self._high.extend(candles.high[-self._high.maxlen :].tolist())  # type: ignore[operator]
        self._low.extend(candles.low[-self._low.maxlen :].tolist())  # type: ignore[operator]
        self._close.extend(candles.close[-self._close.maxlen :].tolist())  # type: ignore[operator]
        magic = fast = slow = None
        if self.uses_magic:
            magic = self._magic.prime(candles.high, candles.low, candles.close).direction
        if self.uses_ema:
            fast, slow = self._fast.prime(candles.close), self._slow.prime(candles.close)
        if len(candles):
            # The analyser's trend rule on the primed values; every resampled candle has closed.
            self.visible = int(self.analyzer.combine_trend(magic, fast, slow)[-1])

    def update(self, open_ms: int, open_: float, high: float, low: float, close: float, volume: float) -> int:
        """Take the next closed base bar; returns the timeframe's trend visible at its close."""
        if self.same_as_base:
            self._close_candle(high, low, close)
            return self.visible
        closed = self._resampler.update(open_ms, open_, high, low, close, volume)
        for k in range(len(closed)):
            self._close_candle(float(closed.high[k]), float(closed.low[k]), float(closed.close[k]))
        return self.visible

    def _close_candle(self, high: float, low: float, close: float) -> None:
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
        self._trends = [_TimeframeTrend(analyzer, tf, base_timeframe) for tf in analyzer.timeframes]

    def prime(self, history: Candles) -> None:
        """Start from ``history`` (the same candles the vectorised frame was prepared from)."""
        for trend in self._trends:
            trend.prime(history)

    def update(self, open_ms: int, open_: float, high: float, low: float, close: float,
               volume: float) -> dict[str, int]:
        """Take the next closed base bar (prices in quote currency); each timeframe's trend visible at its close
        (+1/-1/0)."""
        return {trend.timeframe: trend.update(open_ms, open_, high, low, close, volume) for trend in self._trends}
