"""Provides the recursive indicators one bar at a time: bit for bit the values of :mod:`engine.analysis.indicators`.

Each class carries one recursion's state and advances it with the very scalar step the vectorised loop
folds (:func:`~engine.analysis.indicators.wilder_step`, :func:`~engine.analysis.indicators.ema_step`, the Magic Trend
ratchet's
max/min), in the same order, so a value continued from ``prime`` equals the vectorised value over the same
bars exactly, not to ~1e-16. Windowed inputs (the Magic Trend's cci and sma atr) are recomputed with the
vectorised functions on the last bars, which gives the full history's values exactly. Used by the live
engines (:mod:`engine.analysis.signals_live`, :mod:`engine.analysis.mtf_live`, :mod:`engine.analysis.strategy_live`).
"""

from __future__ import annotations

import math

import numpy as np

from engine.analysis import indicators as ind
from engine.analysis.indicators import FloatArray, MagicTrend, RecursionStep


class SeededRecursion:
    """An ema or rma continued one value at a time, with :func:`engine.analysis.indicators.seeded_recursion`'s rules.

    NaN until ``period`` valid values in a row, then seeded with their ``window_mean``, then ``step`` per
    value; NaN for ever from a NaN that follows the seed.

    Args:
        step: ``ind.wilder_step`` (rma, atr) or ``ind.ema_step``.
        period: the recursion's period (bars).
    """

    def __init__(self, step: RecursionStep, period: int) -> None:
        self.step = step
        self.period = period
        self.value = math.nan  # the newest value
        self._seeded = False
        self._run: list[float] = []  # the valid values since the last NaN, until the seed

    def prime(self, source: FloatArray, values: FloatArray | None = None) -> float:
        """The state after ``source`` (oldest first); ``values`` is the vectorised output over it, if known."""
        if values is None:
            values = ind.seeded_recursion(source, self.period, self.step)
        self._seeded = ind.seed_index(source, self.period) < len(source)
        self.value = float(values[-1]) if len(values) else math.nan
        self._run = []
        if not self._seeded:
            invalid = np.flatnonzero(np.isnan(source))
            self._run = source[int(invalid[-1]) + 1 if len(invalid) else 0 :].tolist()
        return self.value

    def update(self, value: float) -> float:
        """The recursion's value after ``value``."""
        if self._seeded:
            if not math.isnan(self.value):
                self.value = self.step(self.value, value, self.period)
            return self.value
        if math.isnan(value):
            self._run = []
            return self.value
        self._run.append(value)
        if len(self._run) == self.period:
            self.value, self._seeded, self._run = ind.window_mean(self._run), True, []
        return self.value


class IncrementalMagicTrend:
    """:func:`engine.analysis.indicators.magic_trend` one bar at a time (line in quote currency, direction +1/-1/0).

    Its cci and sma atr are windowed, so they are recomputed on the last ``window`` bars; the ratchet (a
    max or min with the previous value) and the warm-up rule are carried. Prices are assumed finite.
    """

    def __init__(self, cci_period: int = 20, atr_period: int = 5, coeff: float = 1.0) -> None:
        self.cci_period, self.atr_period, self.coeff = cci_period, atr_period, coeff
        self.window = max(cci_period, atr_period + 1)  # bars the newest cci and atr read
        self._value = 0.0  # Pine's nz(prev): the ratchet starts from 0
        self._started = False  # both the cci and the atr have existed (the vectorised ``start``)
        self._cci_seen = False

    def prime(
        self, high: FloatArray, low: FloatArray, close: FloatArray, trend: MagicTrend | None = None
    ) -> MagicTrend:
        """The state after the given bars (oldest first); ``trend`` is ``magic_trend`` over them, if known."""
        if trend is None:
            trend = ind.magic_trend(high, low, close, self.cci_period, self.atr_period, self.coeff)
        self._started = bool((trend.direction != 0).any())
        self._cci_seen = bool((~np.isnan(ind.cci(close, self.cci_period))).any())
        if self._started:
            self._value = float(trend.line[-1])
        else:  # only the atr exists (or nothing yet): Pine keeps taking min(prev, down) from 0
            down = high + ind.sma(ind.true_range(high, low, close), self.atr_period) * self.coeff
            self._value = 0.0 if np.isnan(down).all() else min(0.0, float(np.nanmin(down)))
        return trend

    def update(self, highs: FloatArray, lows: FloatArray, closes: FloatArray) -> tuple[int, float]:
        """The new bar's (direction, line); the arrays end at the new bar and hold at least its ``window``
        last bars (all bars seen, when fewer)."""
        highs, lows, closes = highs[-self.window :], lows[-self.window :], closes[-self.window :]
        atr = float(ind.sma(ind.true_range(highs, lows, closes), self.atr_period)[-1])
        cci = float(ind.cci(closes, self.cci_period)[-1])
        self._cci_seen = self._cci_seen or not math.isnan(cci)
        if math.isnan(atr):
            return 0, math.nan
        # The same operations as the vectorised up/down: atr * coeff, then low - / high + it.
        up, down = float(lows[-1] - atr * self.coeff), float(highs[-1] + atr * self.coeff)
        self._started = self._started or self._cci_seen
        previous = self._value
        if not self._started:
            self._value = previous if down > previous else down
            return 0, math.nan
        rising = cci >= 0.0  # NaN (a flat window) is a down bar, as in Pine
        if rising:
            self._value = previous if up < previous else up
        else:
            self._value = previous if down > previous else down
        return (1 if rising else -1), self._value
