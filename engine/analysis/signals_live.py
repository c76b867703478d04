"""Provides the incremental signal engine: the newest closed bar's signal from a small carried state.

It applies the same decision rules as :meth:`engine.analysis.signals.SignalEngine.compute` (``_evaluate``); only the
bookkeeping differs. Windowed indicators are recomputed on a tail of ``params.lookback_bars`` bars (exactly
the values the full history gives); the recursive parts are carried: the Wilder ATR and the Magic Trend
ratchet by :mod:`engine.analysis.indicators_live` (the vectorised functions' own kernels, one bar at a time),
run lengths and the release state as counters. ``prime(history)`` sets the state from one vectorised pass (and
runs the ATR and Magic Trend kernels over the history once more to leave their states), so a long history
costs about one ``compute``. Every column of every row equals the vectorised frame's bit for bit.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from engine.analysis import indicators as ind
from engine.analysis.indicators_live import IncrementalAtr, IncrementalMagicTrend
from engine.analysis.signals import (
    _EXIT_LONG,
    _EXIT_SHORT,
    _NO_RELEASE_AGE,
    SIGNAL_EXIT,
    SIGNAL_LONG,
    SIGNAL_NONE,
    SIGNAL_SHORT,
    SignalEngine,
    SignalFrame,
    SignalParams,
    _BarInputs,
    _evaluate,
    _run_length,
)
from engine.domain.models import Candles, TradingSignal


class IncrementalSignalEngine:
    """Feeds closed bars one at a time and returns each bar's :class:`TradingSignal`.

    The Magic Trend depends on the first bar seen, so prime with the same history the vectorised engine
    was given to get the same signals.
    """

    def __init__(self, params: SignalParams | None = None, symbol: str = "", timeframe: str = "") -> None:
        self.params = params or SignalParams()
        self.symbol, self.timeframe = symbol, timeframe
        size = self.params.lookback_bars
        self._times: deque[int] = deque(maxlen=size)
        self._high: deque[float] = deque(maxlen=size)
        self._low: deque[float] = deque(maxlen=size)
        self._close: deque[float] = deque(maxlen=size)
        self._bars = 0
        self._atr = IncrementalAtr(self.params.atr_period)
        self._trend = IncrementalMagicTrend(self.params.trend_cci_period, self.params.trend_atr_period,
                                            self.params.trend_coeff)
        self._momenta: deque[float] = deque(maxlen=self.params.fade_bars)
        self._falling_run = self._rising_run = 0
        self._squeeze_on_prev = False
        self._squeeze_run = 0
        self._release_age = _NO_RELEASE_AGE
        self._release_bars = 0
        self._entry_taken = False
        self._exit_long_prev = self._exit_short_prev = False

    @property
    def bars_seen(self) -> int:
        return self._bars

    def prime(self, history: Candles) -> SignalFrame:
        """Start from a history in one vectorised pass; returns its frame. Use on a fresh engine."""
        if self._bars:
            raise RuntimeError("prime() needs a fresh IncrementalSignalEngine")
        p = self.params
        frame = SignalEngine(p).compute(history)
        if len(history) == 0:
            return frame
        high, low, close = history.high, history.low, history.close
        self.symbol, self.timeframe = self.symbol or history.symbol, self.timeframe or history.timeframe
        self._times.extend(history.open_time_ms[-p.lookback_bars :].tolist())
        self._high.extend(high[-p.lookback_bars :].tolist())
        self._low.extend(low[-p.lookback_bars :].tolist())
        self._close.extend(close[-p.lookback_bars :].tolist())
        self._bars = len(history)
        self._atr.prime(high, low, close)
        self._trend.prime(high, low, close)
        self._momenta.extend(frame.momentum[-p.fade_bars :].tolist())
        self._falling_run = int(_run_length(frame.momentum_slope < 0)[-1])
        self._rising_run = int(_run_length(frame.momentum_slope > 0)[-1])
        squeeze_run = _run_length(frame.squeeze_on)
        self._squeeze_on_prev, self._squeeze_run = bool(frame.squeeze_on[-1]), int(squeeze_run[-1])
        releases = np.flatnonzero(frame.squeeze_on[:-1] & ~frame.squeeze_on[1:]) + 1
        if len(releases):
            last = int(releases[-1])
            self._release_age = len(history) - 1 - last
            self._release_bars = int(squeeze_run[last - 1])
            self._entry_taken = bool(np.isin(frame.signal[last:], (SIGNAL_LONG, SIGNAL_SHORT)).any())
        self._exit_long_prev, self._exit_short_prev = bool(frame.exit_long[-1]), bool(frame.exit_short[-1])
        return frame

    def update_candles(self, candles: Candles) -> list[TradingSignal]:
        """Feed every bar of ``candles`` in order; the signal of each."""
        columns = (candles.open_time_ms, candles.high, candles.low, candles.close)
        rows = zip(*(column.tolist() for column in columns), strict=True)
        return [self.update(time_ms, high, low, close) for time_ms, high, low, close in rows]

    def update(self, open_time_ms: int, high: float, low: float, close: float) -> TradingSignal:
        """Take the next closed bar (prices in quote currency) and return its signal."""
        return self.update_row(open_time_ms, high, low, close).signal_at(0)

    def update_row(self, open_time_ms: int, high: float, low: float, close: float) -> SignalFrame:
        """Take the next closed bar and return its one-row :class:`SignalFrame` (every column, not just the
        signal): the row equals the vectorised frame's row for this bar."""
        p = self.params
        high, low, close = float(high), float(low), float(close)
        self._times.append(int(open_time_ms))
        self._high.append(high)
        self._low.append(low)
        self._close.append(close)
        self._bars += 1
        highs, lows, closes = np.array(self._high), np.array(self._low), np.array(self._close)

        squeeze = ind.squeeze_momentum(
            highs, lows, closes, p.bb_length, p.bb_mult, p.kc_length, p.kc_mult, p.use_true_range, p.lazybear_compat
        )
        squeeze_on, squeeze_off = bool(squeeze.squeeze_on[-1]), bool(squeeze.squeeze_off[-1])
        momentum = float(squeeze.value[-1])
        direction, trend_line = self._trend.update(highs, lows, closes)
        atr = self._atr.update(high, low, close)

        slope = momentum - self._momenta[-1] if self._momenta else math.nan
        fade_origin = self._momenta[0] if len(self._momenta) == p.fade_bars else math.nan
        self._momenta.append(momentum)
        self._falling_run = self._falling_run + 1 if slope < 0 else 0
        self._rising_run = self._rising_run + 1 if slope > 0 else 0
        if self._squeeze_on_prev and not squeeze_on:
            self._release_age, self._release_bars, self._entry_taken = 0, self._squeeze_run, False
        elif self._release_age != _NO_RELEASE_AGE:
            self._release_age += 1
        self._squeeze_run = self._squeeze_run + 1 if squeeze_on else 0
        self._squeeze_on_prev = squeeze_on

        bar = _BarInputs(
            momentum=np.array([momentum]),
            slope=np.array([slope]),
            atr=np.array([atr]),
            direction=np.array([direction], dtype=np.int8),
            squeeze_on=np.array([squeeze_on]),
            release_age=np.array([self._release_age], dtype=np.int64),
            release_bars=np.array([self._release_bars if self._release_age != _NO_RELEASE_AGE else 0]),
            falling_run=np.array([self._falling_run]),
            rising_run=np.array([self._rising_run]),
            fade_origin=np.array([fade_origin]),
        )
        qualifies_long, qualifies_short, entry_strength, causes = _evaluate(p, bar)
        entry = bool(qualifies_long[0] or qualifies_short[0]) and not self._entry_taken
        self._entry_taken |= entry
        cause = int(causes[0])
        exit_long, exit_short = bool(cause & _EXIT_LONG), bool(cause & _EXIT_SHORT)
        exit_starts = (exit_long and not self._exit_long_prev) or (exit_short and not self._exit_short_prev)
        self._exit_long_prev, self._exit_short_prev = exit_long, exit_short
        if entry:
            code, strength = (SIGNAL_LONG if qualifies_long[0] else SIGNAL_SHORT), float(entry_strength[0])
        else:
            code, strength = (SIGNAL_EXIT, 1.0) if exit_starts else (SIGNAL_NONE, 0.0)
        in_window = self._release_age < p.release_window
        row = SignalFrame(
            self.symbol,
            self.timeframe,
            np.array([open_time_ms], dtype=np.int64),
            np.array([code], dtype=np.int8),
            np.array([strength]),
            bar.momentum,
            bar.slope,
            np.array([squeeze_on]),
            np.array([squeeze_off]),
            np.array([self._release_bars if in_window else 0], dtype=np.int64),
            bar.direction,
            np.array([trend_line]),
            bar.atr,
            np.array([cause], dtype=np.int8),
        )
        return row
