"""Provides the recursive indicators one bar at a time: the kernels of :mod:`engine.analysis.kernels` continued
from a carried state.

Each class holds one recursion's state record. ``prime`` runs the vectorised function of
:mod:`engine.analysis.indicators` over a history with that state (so it returns exactly the vectorised
values and leaves the state after the last bar); ``update`` runs the same kernel over the one new bar. A value
continued bar by bar is therefore the vectorised value over the same bars, bit for bit. The Magic Trend's
windows (its cci and sma atr) are computed on the last ``window`` bars, which reads exactly the bars the full
history's windows read. Used by the live engines (:mod:`engine.analysis.signals_live`,
:mod:`engine.analysis.mtf_live`, :mod:`engine.analysis.strategy_live`).
"""

from __future__ import annotations

import numpy as np

from engine.analysis import indicators as ind
from engine.analysis import kernels
from engine.analysis.indicators import FloatArray, MagicTrend


def _one(value: float) -> FloatArray:
    return np.array([value], dtype=np.float64)


class IncrementalEma:
    """An ema (:func:`engine.analysis.indicators.ema`) continued one value at a time."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.state = kernels.recursion_state()

    def prime(self, source: FloatArray) -> FloatArray:
        """The ema over ``source`` (oldest first), leaving the state after its last value."""
        self.state = kernels.recursion_state()
        return ind.ema(source, self.period, self.state)

    def update(self, value: float) -> float:
        """The ema after ``value``."""
        return float(ind.ema(_one(value), self.period, self.state)[0])


class IncrementalAtr:
    """An atr (:func:`engine.analysis.indicators.atr`, Wilder's average of tr(true)) continued bar by bar."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.state = kernels.atr_state()

    def prime(self, high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
        """The atr over the given bars (oldest first, quote currency), leaving the state after the last."""
        self.state = kernels.atr_state()
        return ind.atr(high, low, close, self.period, self.state)

    def update(self, high: float, low: float, close: float) -> float:
        """The atr after the next bar (its previous close is carried in the state)."""
        return float(ind.atr(_one(high), _one(low), _one(close), self.period, self.state)[0])


class IncrementalMagicTrend:
    """:func:`engine.analysis.indicators.magic_trend` one bar at a time (line in quote currency, direction +1/-1/0).

    Its cci and sma atr are windowed, so they are computed on the last ``window`` bars; the ratchet (the
    kernel's state record) is carried.
    """

    def __init__(self, cci_period: int = 20, atr_period: int = 5, coeff: float = 1.0) -> None:
        self.cci_period, self.atr_period, self.coeff = cci_period, atr_period, coeff
        self.window = max(cci_period, atr_period + 1)  # bars the newest cci and atr read
        self.state = kernels.magic_trend_state()

    def prime(self, high: FloatArray, low: FloatArray, close: FloatArray) -> MagicTrend:
        """The Magic Trend over the given bars (oldest first), leaving the state after the last."""
        self.state = kernels.magic_trend_state()
        return ind.magic_trend(high, low, close, self.cci_period, self.atr_period, self.coeff, self.state)

    def update(self, highs: FloatArray, lows: FloatArray, closes: FloatArray) -> tuple[int, float]:
        """The new bar's (direction, line); the arrays end at the new bar and hold at least its ``window``
        last bars (all bars seen, when fewer)."""
        highs, lows, closes = (np.ascontiguousarray(a[-self.window :], dtype=np.float64) for a in (highs, lows, closes))
        cci, atr = ind.magic_trend_inputs(highs, lows, closes, self.cci_period, self.atr_period)
        line, direction = np.empty(1), np.empty(1, dtype=np.int8)
        kernels.magic_trend_kernel(highs[-1:], lows[-1:], cci[-1:], atr[-1:], float(self.coeff), line, direction,
                                   self.state)
        return int(direction[0]), float(line[0])
