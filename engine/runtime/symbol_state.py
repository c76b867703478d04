"""Provides SymbolHistory (a symbol's rolling closed-candle history) and the console's SymbolView of it.

The runtime appends each newly closed candle and asks the history for its decision inputs
(:meth:`SymbolHistory.prepared`): the first time they come from one vectorised ``Strategy.prepare``
over the held candles, afterwards an :class:`engine.analysis.strategy_live.IncrementalPreparer` appends the new
bars' values in O(1) each. Every value equals what ``Strategy.prepare`` (and so a backtest) computes over
all bars since that first call. The history is capped at ``max_bars``: beyond it the oldest bars are
dropped, which bounds memory; warm-up is not affected (recursive indicators carry on from their state).
"""

from __future__ import annotations

import numpy as np

from engine.analysis.strategy import PreparedSymbol, Strategy
from engine.analysis.strategy_live import IncrementalPreparer
from engine.data.live_feed import ClosedCandle
from engine.domain.models import Candles
from engine.domain.snapshot import SymbolView

DEFAULT_HISTORY_BARS = 1500
"""Bars kept per symbol (1500 1h bars: 62 days, enough for a 50-bar daily EMA at the first prepare)."""

_COLUMNS = ("open", "high", "low", "close", "volume")


class SymbolHistory:
    """Closed candles of one symbol and timeframe, oldest first, at most ``max_bars`` of them.

    Storage is preallocated at twice the cap so an append is O(1) amortised.
    """

    def __init__(self, symbol: str, timeframe: str, max_bars: int = DEFAULT_HISTORY_BARS) -> None:
        if max_bars < 2:
            raise ValueError(f"max_bars must be >= 2, got {max_bars}")
        self.symbol = symbol
        self.timeframe = timeframe
        self.max_bars = max_bars
        capacity = 2 * max_bars
        self._time = np.zeros(capacity, dtype=np.int64)
        self._values = {name: np.zeros(capacity, dtype=np.float64) for name in _COLUMNS}
        self._start = 0
        self._stop = 0
        self._preparer: IncrementalPreparer | None = None

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def last_open_ms(self) -> int | None:
        return int(self._time[self._stop - 1]) if self._stop > self._start else None

    def extend(self, candles: Candles) -> int:
        """Append the candles newer than the last one held; returns how many were added."""
        added = 0
        for i in range(len(candles)):
            added += self._append(
                int(candles.open_time_ms[i]),
                (float(candles.open[i]), float(candles.high[i]), float(candles.low[i]),
                 float(candles.close[i]), float(candles.volume[i])),
            )
        return added

    def append(self, candle: ClosedCandle) -> bool:
        """Append one closed candle; False (nothing changes) when it is not newer than the last one."""
        return self._append(candle.open_time_ms, (candle.open, candle.high, candle.low, candle.close, candle.volume))

    def _append(self, open_ms: int, values: tuple[float, float, float, float, float]) -> bool:
        last = self.last_open_ms
        if last is not None and open_ms <= last:
            return False
        if self._stop == len(self._time):
            keep = self.max_bars - 1
            lo = self._stop - keep
            self._time[:keep] = self._time[lo : self._stop]
            for array in self._values.values():
                array[:keep] = array[lo : self._stop]
            self._start, self._stop = 0, keep
        self._time[self._stop] = open_ms
        for name, value in zip(_COLUMNS, values, strict=True):
            self._values[name][self._stop] = value
        self._stop += 1
        if self._stop - self._start > self.max_bars:
            self._start += 1
        return True

    def candles(self) -> Candles:
        """The held candles as an immutable Candles (copies; later appends do not change it)."""
        window = slice(self._start, self._stop)
        return Candles(
            self.symbol,
            self.timeframe,
            self._time[window].copy(),
            *(self._values[name][window].copy() for name in _COLUMNS),
        )


    def prepared(self, strategy: Strategy) -> PreparedSymbol:
        """Decision inputs for the held candles, newest bar last (see the module docstring).

        The first call (or one with another strategy, or after more than ``max_bars`` bars arrived since
        the previous call) prepares the held candles in one vectorised pass; later calls feed only the bars
        appended since, one at a time. Holds at least ``IncrementalPreparer.bars_needed`` bars.
        """
        preparer = self._preparer
        last = preparer.last_open_ms if preparer is not None else None
        held_from = self._time[self._start] if self._stop > self._start else None
        if preparer is None or preparer.strategy is not strategy or last is None or held_from is None \
                or last < held_from:
            held = max(self.max_bars, IncrementalPreparer.bars_needed(strategy))  # may hold more than the cap
            self._preparer = preparer = IncrementalPreparer(strategy, held)
            return preparer.prime(self.candles())
        first_new = self._start + int(np.searchsorted(self._time[self._start : self._stop], last, side="right"))
        for i in range(first_new, self._stop):
            preparer.update(int(self._time[i]), *(float(self._values[name][i]) for name in _COLUMNS))
        prepared = preparer.prepared
        assert prepared is not None
        return prepared


def symbol_view(prepared: PreparedSymbol, index: int) -> SymbolView:
    """What the signals pane shows for bar ``index`` of ``prepared``."""
    signal = prepared.signals.signal_at(index)
    volume = prepared.volume
    if bool(volume.spike[index]):
        volume_flag = "spike"
    elif float(volume.confirmation_strength[index]) >= 0.5:
        volume_flag = "confirmed"
    else:
        volume_flag = ""
    if bool(prepared.signals.squeeze_on[index]):
        squeeze = "on"
    elif bool(prepared.signals.squeeze_off[index]):
        squeeze = "off"
    else:
        squeeze = "none"
    direction = int(prepared.entry_direction[index])
    if direction > 0:
        multiplier = float(prepared.mtf.long_multiplier[index])
    elif direction < 0:
        multiplier = float(prepared.mtf.short_multiplier[index])
    else:
        multiplier = float(prepared.entry_multiplier[index])
    return SymbolView(
        symbol=prepared.symbol,
        last_price=float(prepared.candles.close[index]),
        last_bar_ms=int(prepared.candles.open_time_ms[index]),
        signal=str(signal.type.value),
        signal_strength=float(signal.strength),
        trends=tuple(prepared.mtf.trends_at(index).items()),
        squeeze=squeeze,
        volume_flag=volume_flag,
        confluence_multiplier=multiplier,
    )
