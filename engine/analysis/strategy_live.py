"""Provides IncrementalPreparer: a symbol's PreparedSymbol kept current one closed bar at a time, O(1) per bar.

``prime(history)`` runs the vectorised :meth:`engine.analysis.strategy.Strategy.prepare` once and keeps its arrays;
``update(bar)`` appends the newest bar's values, computed from small carried states:

- signals: :class:`engine.analysis.signals_live.IncrementalSignalEngine` (the signal engine's own rules);
- timeframe trends: :class:`engine.analysis.mtf_live.IncrementalTrends`, then the analyser's confluence rule;
- volume: ``VolumeAnalyzer.analyze_latest`` on the last ``warmup_bars + 1`` bars (every window is finite);
- ATR: carried by :class:`engine.analysis.indicators_live.IncrementalAtr` (``indicators.atr``'s kernel, one bar
  at a time); its two previous-bars medians over the held ATRs;
- swing levels: ``swing_levels`` on the last ``2 * swing_lookback + 1`` bars (is the bar ``lookback`` ago a
  pivot?), else the previous level;
- entries, exits and the volatility alarm: :func:`engine.analysis.strategy.fold_entries_and_exits` and
  :func:`engine.analysis.strategy.volatility_inputs`, the very functions ``prepare`` calls.

So the value at every bar equals, bit for bit, what ``prepare`` gives over every bar since ``prime`` (the
recursions run the vectorised functions' own kernels, the windows are recomputed exactly), which is what the
backtester computes over the same bars. The returned PreparedSymbol holds the last ``max_bars`` bars (read-only
views that later bars never change); ``max_bars`` bounds memory only, not warm-up.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.analysis.indicators_live import IncrementalAtr
from engine.analysis.mtf import MtfFrame
from engine.analysis.mtf_live import IncrementalTrends
from engine.analysis.signals import SignalFrame
from engine.analysis.strategy import PreparedSymbol, Strategy, fold_entries_and_exits, volatility_inputs
from engine.analysis.swing import swing_levels
from engine.analysis.volume import VolumeFrame
from engine.domain.models import Candles, SignalType

_CANDLE_FIELDS = ("open_time_ms", "open", "high", "low", "close", "volume")
_SIGNAL_FIELDS = tuple(f.name for f in dataclasses.fields(SignalFrame))[3:]  # after symbol, timeframe, times
_VOLUME_FIELDS = tuple(f.name for f in dataclasses.fields(VolumeFrame))[1:]  # after open_time_ms
_MTF_FIELDS = ("long_multiplier", "short_multiplier", "long_conflicting", "short_conflicting")
_PREPARED_FIELDS = tuple(f.name for f in dataclasses.fields(PreparedSymbol))[5:]  # after the frames
_SPARE_ROWS = 256


class _Columns:
    """Named, typed columns of the last ``keep`` rows; O(1) amortised append.

    Views handed out are read-only and never change afterwards: rows are only written past them, and when
    the buffers fill up the kept rows move to new buffers (the old ones stay with the old views).
    """

    def __init__(self, dtypes: dict[str, np.dtype[Any]], keep: int) -> None:
        self.keep = keep
        self.capacity = keep + max(_SPARE_ROWS, keep // 4)
        self.arrays = {name: np.zeros(self.capacity, dtype=dtype) for name, dtype in dtypes.items()}
        self.start = self.stop = 0

    def __len__(self) -> int:
        return self.stop - self.start

    def load(self, columns: dict[str, npt.NDArray[Any]]) -> None:
        count = min(self.keep, len(next(iter(columns.values()))))
        for name, array in self.arrays.items():
            array[:count] = columns[name][len(columns[name]) - count :]
        self.start, self.stop = 0, count

    def push(self) -> int:
        """Open a new last row (zeros); returns its buffer index."""
        if self.stop == self.capacity:
            kept = self.keep - 1
            fresh = {name: np.zeros(self.capacity, dtype=a.dtype) for name, a in self.arrays.items()}
            for name, array in fresh.items():
                array[:kept] = self.arrays[name][self.stop - kept : self.stop]
            self.arrays, self.start, self.stop = fresh, 0, kept
        row = self.stop
        self.stop += 1
        if self.stop - self.start > self.keep:
            self.start += 1
        return row

    def tail(self, name: str, count: int) -> npt.NDArray[Any]:
        """The last ``count`` values of a column (fewer when fewer are held); a writable buffer slice."""
        return self.arrays[name][max(self.start, self.stop - count) : self.stop]

    def view(self, name: str, count: int | None = None) -> npt.NDArray[Any]:
        lo = self.start if count is None else max(self.start, self.stop - count)
        values = self.arrays[name][lo : self.stop]
        values.flags.writeable = False
        return values


class IncrementalPreparer:
    """One symbol's decision inputs, primed from a history then updated per closed bar.

    Args:
        strategy: the strategy whose ``prepare`` this follows (same parameters, same rules).
        max_bars: bars held (and returned); at least the longest lookback + 1.
    """

    def __init__(self, strategy: Strategy, max_bars: int) -> None:
        self.volume_bars = strategy.volume_analyzer.warmup_bars + 1
        self.swing_bars = 2 * strategy.risk_config.swing_lookback + 1
        needed = self.bars_needed(strategy)
        if max_bars < needed:
            raise ValueError(f"max_bars must be >= {needed} (the longest lookback + 1), got {max_bars}")
        self.strategy = strategy
        self.max_bars = max_bars
        self.bars_seen = 0  # bars since prime: what the values depend on
        self._columns: _Columns | None = None
        self._symbol = self._timeframe = ""
        self._timeframes: tuple[str, ...] = ()
        self._trends: IncrementalTrends | None = None
        self._signals: Any = None
        self._prepared: PreparedSymbol | None = None
        self._atr = IncrementalAtr(strategy.risk_config.atr_lookback)

    @staticmethod
    def bars_needed(strategy: Strategy) -> int:
        """The smallest ``max_bars``: the longest lookback of the newest bar's computation, plus one."""
        risk, breaker = strategy.risk_config, strategy.breaker_config
        return max(risk.volatility_median_lookback + 1, breaker.volatility_lookback + 1,
                   strategy.volume_analyzer.warmup_bars + 1, 2 * risk.swing_lookback + 1, risk.atr_lookback)

    @property
    def prepared(self) -> PreparedSymbol | None:
        """The held bars' decision inputs after the last prime/update (None before prime)."""
        return self._prepared

    @property
    def last_open_ms(self) -> int | None:
        columns = self._columns
        return int(columns.arrays["c.open_time_ms"][columns.stop - 1]) if columns is not None and len(columns) else None

    def prime(self, history: Candles) -> PreparedSymbol:
        """Start from ``history`` (oldest first) with one vectorised ``prepare``; returns its last ``max_bars``."""
        strategy = self.strategy
        prepared = strategy.prepare(history)
        self._atr.prime(history.high, history.low, history.close)
        self._symbol, self._timeframe = history.symbol, history.timeframe
        analyzer = strategy.mtf_analyzer(history.timeframe)
        self._timeframes = analyzer.timeframes
        self._trends = IncrementalTrends(analyzer, history.timeframe)
        self._trends.prime(history)
        self._signals = strategy.signal_engine.incremental(history.symbol, history.timeframe)
        self._signals.prime(history)
        columns = _flatten(prepared)
        self._columns = _Columns({name: values.dtype for name, values in columns.items()}, self.max_bars)
        self._columns.load(columns)
        self.bars_seen = len(history)
        self._prepared = self._view()
        return self._prepared

    def update_candles(self, candles: Candles) -> PreparedSymbol:
        """Feed every bar of ``candles`` (oldest first, all newer than the last one held)."""
        for i in range(len(candles)):
            self.update(int(candles.open_time_ms[i]), float(candles.open[i]), float(candles.high[i]),
                        float(candles.low[i]), float(candles.close[i]), float(candles.volume[i]))
        assert self._prepared is not None
        return self._prepared

    def update(self, open_time_ms: int, open_: float, high: float, low: float, close: float,
               volume: float) -> PreparedSymbol:
        """Append the next closed bar (prices in quote currency, open time in UTC ms); its PreparedSymbol.

        Raises:
            RuntimeError: not primed.
            ValueError: the bar is not newer than the last one held.
        """
        columns = self._columns
        if columns is None or self._trends is None:
            raise RuntimeError("prime() the IncrementalPreparer before update()")
        last = self.last_open_ms
        if last is not None and open_time_ms <= last:
            raise ValueError(f"{self._symbol}: bar {open_time_ms} is not newer than the last one held ({last})")
        strategy, risk, breaker = self.strategy, self.strategy.risk_config, self.strategy.breaker_config
        previous_swing = (float(columns.arrays["p.swing_low"][columns.stop - 1]) if len(columns) else math.nan,
                          float(columns.arrays["p.swing_high"][columns.stop - 1]) if len(columns) else math.nan)
        row = columns.push()
        arrays = columns.arrays
        for name, value in zip(_CANDLE_FIELDS, (open_time_ms, open_, high, low, close, volume), strict=True):
            arrays["c." + name][row] = value
        self.bars_seen += 1

        signals: SignalFrame = self._signals.update_row(open_time_ms, high, low, close)
        mtf = self._mtf_row(open_time_ms, self._trends.update(open_time_ms, open_, high, low, close, volume))
        latest = strategy.volume_analyzer.analyze_latest(self._tail_candles(self.volume_bars))
        volume_row = VolumeFrame(latest.open_time_ms[-1:], *(getattr(latest, f)[-1:] for f in _VOLUME_FIELDS))
        entries = fold_entries_and_exits(strategy.params, signals, mtf, volume_row)

        atr = self._atr.update(high, low, close)
        lookbacks = (risk.volatility_median_lookback, breaker.volatility_lookback)
        medians = {lookback: self._previous_median(lookback) for lookback in set(lookbacks)}  # often one
        volatility = volatility_inputs(
            np.array([atr]), np.array([medians[lookbacks[0]]]), np.array([medians[lookbacks[1]]]), breaker
        )
        swing_low, swing_high = swing_levels(columns.tail("c.high", self.swing_bars),
                                             columns.tail("c.low", self.swing_bars), risk.swing_lookback)

        for name in _SIGNAL_FIELDS:
            arrays["s." + name][row] = getattr(signals, name)[0]
        for name in _VOLUME_FIELDS:
            arrays["v." + name][row] = getattr(volume_row, name)[0]
        for name in _MTF_FIELDS:
            arrays["m." + name][row] = getattr(mtf, name)[0]
        for timeframe in self._timeframes:
            arrays["m.trend." + timeframe][row] = mtf.trends[timeframe][0]
        values = {
            "entry_direction": entries.direction[0], "entry_strength": entries.strength[0],
            "entry_multiplier": entries.multiplier[0], "exit_long": entries.exit_long[0],
            "exit_short": entries.exit_short[0], "volume_rule_effect": entries.volume_rule_effect[0],
            "atr": atr, "volatility_ratio": volatility.ratio[0],
            "normal_volatility": volatility.normal[0], "volatility_alarm": volatility.alarm[0],
            # The bar swing_lookback ago is a pivot (known only now), or the last known level stays.
            "swing_low": swing_low[-1] if math.isfinite(swing_low[-1]) else previous_swing[0],
            "swing_high": swing_high[-1] if math.isfinite(swing_high[-1]) else previous_swing[1],
        }
        for name, value in values.items():
            arrays["p." + name][row] = value
        self._prepared = self._view()
        return self._prepared

    # ------------------------------------------------------------------------------------------ pieces
    def _mtf_row(self, open_time_ms: int, trends: dict[str, int]) -> MtfFrame:
        assert self._trends is not None
        analyzer = self._trends.analyzer
        long = analyzer.analyze_confluence(trends, SignalType.LONG)
        short = analyzer.analyze_confluence(trends, SignalType.SHORT)
        return MtfFrame(
            np.array([open_time_ms], dtype=np.int64),
            self._timeframes,
            {tf: np.array([trends[tf]], dtype=np.int8) for tf in self._timeframes},
            np.array([long.multiplier]),
            np.array([short.multiplier]),
            np.array([long.conflicting]),
            np.array([short.conflicting]),
        )

    def _tail_candles(self, count: int) -> Candles:
        assert self._columns is not None
        return Candles(self._symbol, self._timeframe,
                       *(self._columns.view("c." + name, count) for name in _CANDLE_FIELDS))

    def _previous_median(self, lookback: int) -> float:
        """Median ATR of the ``lookback`` bars before the newest (NaN until that many valid values)."""
        assert self._columns is not None
        if self.bars_seen <= lookback:
            return math.nan
        window = self._columns.tail("p.atr", lookback + 1)[:-1]
        return math.nan if np.isnan(window).any() else float(np.median(window))

    def _view(self) -> PreparedSymbol:
        columns = self._columns
        assert columns is not None
        times = columns.view("c.open_time_ms")
        candles = Candles(self._symbol, self._timeframe, times,
                          *(columns.view("c." + name) for name in _CANDLE_FIELDS[1:]))
        signals = SignalFrame(self._symbol, self._timeframe, times,
                              *(columns.view("s." + name) for name in _SIGNAL_FIELDS))
        mtf = MtfFrame(times, self._timeframes, {tf: columns.view("m.trend." + tf) for tf in self._timeframes},
                       *(columns.view("m." + name) for name in _MTF_FIELDS))
        volume = VolumeFrame(times, *(columns.view("v." + name) for name in _VOLUME_FIELDS))
        return PreparedSymbol(self._symbol, candles, signals, mtf, volume,
                              *(columns.view("p." + name) for name in _PREPARED_FIELDS))


def _flatten(prepared: PreparedSymbol) -> dict[str, npt.NDArray[Any]]:
    """Every per-bar array of a PreparedSymbol under one flat name (the preparer's column names)."""
    columns: dict[str, npt.NDArray[Any]] = {}
    for name in _CANDLE_FIELDS:
        columns["c." + name] = np.asarray(getattr(prepared.candles, name))
    for name in _SIGNAL_FIELDS:
        columns["s." + name] = np.asarray(getattr(prepared.signals, name))
    for name in _VOLUME_FIELDS:
        columns["v." + name] = np.asarray(getattr(prepared.volume, name))
    for name in _MTF_FIELDS:
        columns["m." + name] = np.asarray(getattr(prepared.mtf, name))
    for timeframe in prepared.mtf.timeframes:
        columns["m.trend." + timeframe] = np.asarray(prepared.mtf.trends[timeframe])
    for name in _PREPARED_FIELDS:
        columns["p." + name] = np.asarray(getattr(prepared, name))
    return columns
