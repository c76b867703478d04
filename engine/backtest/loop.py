"""Provides the multi-symbol bar loop of the backtester: one timeline, one shared account.

The bars of every symbol are merged on one timeline ordered by open time, then symbol; each bar goes
through :meth:`engine.simulation.SimulatedAccount.process_bar` (the decision path shared with paper and
live trading). Equity is sampled at every bar close. While the account is idle (flat, nothing pending, no
volatility watch) bars without an entry signal or volatility alarm are no-ops for the decision path, so
the loop jumps over them; ``skip_idle_bars=False`` visits every bar and gives the same result (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import BacktestException
from engine.models import FloatArray, IntArray
from engine.simulation import SimulatedAccount
from engine.strategy import PreparedSymbol
from engine.timeframes import parse_timeframe

ProgressCallback = Callable[[float], None]
CancelCheck = Callable[[], bool]

PROGRESS_EVERY_BARS = 8192


class BacktestCancelled(BacktestException):
    """The caller's cancellation check returned True; no result was produced."""


@dataclass(frozen=True)
class Timeline:
    """The merged bars: item k is bar ``bar[k]`` of symbol ``symbol[k]`` (index into the prepared list)."""

    symbol: IntArray
    bar: IntArray
    open_time_ms: IntArray

    def __len__(self) -> int:
        return len(self.bar)


@dataclass(frozen=True)
class LoopOutput:
    time_ms: IntArray  # bar close of each sample
    equity: FloatArray
    in_market: np.ndarray
    last_bar: dict[int, int]  # symbol index -> last processed bar


def merge_timeline(prepared: Sequence[PreparedSymbol], start_ms: int | None) -> Timeline:
    """Bars at or after ``start_ms`` of every symbol, ordered by open time, then symbol index."""
    symbols, bars, times = [], [], []
    for k, item in enumerate(prepared):
        open_times = item.candles.open_time_ms
        first = 0 if start_ms is None else int(np.searchsorted(open_times, start_ms, "left"))
        count = len(open_times) - first
        symbols.append(np.full(count, k, dtype=np.int64))
        bars.append(np.arange(first, len(open_times), dtype=np.int64))
        times.append(np.asarray(open_times[first:], dtype=np.int64))
    symbol = np.concatenate(symbols) if symbols else np.empty(0, np.int64)
    bar = np.concatenate(bars) if bars else np.empty(0, np.int64)
    time = np.concatenate(times) if times else np.empty(0, np.int64)
    order = np.lexsort((symbol, time))
    return Timeline(symbol[order], bar[order], time[order])


def _interesting(prepared: Sequence[PreparedSymbol], timeline: Timeline) -> IntArray:
    """For each item, the index of the next item (itself included) that can act while the account is idle."""
    mask = np.zeros(len(timeline), dtype=bool)
    for k, item in enumerate(prepared):
        rows = timeline.symbol == k
        bars = timeline.bar[rows]
        mask[rows] = (item.entry_direction[bars] != 0) | item.volatility_alarm[bars]
    positions = np.flatnonzero(mask)
    positions = np.append(positions, len(timeline))
    return positions[np.searchsorted(positions, np.arange(len(timeline)), "left")]


def run_loop(
    prepared: Sequence[PreparedSymbol],
    sim: SimulatedAccount,
    start_ms: int | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    skip_idle_bars: bool = True,
) -> LoopOutput:
    """Drive ``sim`` over the merged bars of ``prepared`` from ``start_ms``; return the equity samples.

    Raises:
        BacktestException: the symbols have different timeframes.
        BacktestCancelled: ``cancel()`` returned True (checked every few thousand bars).
    """
    timeframes = {item.candles.timeframe for item in prepared}
    if len(timeframes) > 1:
        raise BacktestException(f"all symbols must share one timeframe, got {', '.join(sorted(timeframes))}")
    timeline = merge_timeline(prepared, start_ms)
    total = len(timeline)
    bar_ms = parse_timeframe(next(iter(timeframes))) if timeframes else 0
    equity = np.empty(total, dtype=np.float64)
    in_market = np.zeros(total, dtype=bool)
    portfolio = sim.core.portfolio
    positions = portfolio.positions
    next_active = _interesting(prepared, timeline) if skip_idle_bars else None
    process = sim.process_bar
    symbols = timeline.symbol
    bars = timeline.bar
    n = 0
    next_report = 0
    while n < total:
        if n >= next_report:
            if cancel is not None and cancel():
                raise BacktestCancelled("backtest cancelled")
            if progress is not None:
                progress(n / total)
            next_report = n + PROGRESS_EVERY_BARS
        if next_active is not None and sim.idle:
            jump = int(next_active[n])
            if jump > n:
                equity[n:jump] = portfolio.cash
                n = jump
                continue
        stop = min(total, next_report)
        symbol_chunk = symbols[n:stop].tolist()
        bar_chunk = bars[n:stop].tolist()
        for offset, (k, i) in enumerate(zip(symbol_chunk, bar_chunk, strict=True)):
            process(prepared[k], i)
            if positions:
                equity[n + offset] = portfolio.equity()
                in_market[n + offset] = True
            else:
                equity[n + offset] = portfolio.cash
                if next_active is not None and sim.idle:
                    stop = n + offset + 1
                    break
        n = stop
    if progress is not None:
        progress(1.0)
    last_bar: dict[int, int] = {}
    if total:
        for k in range(len(prepared)):
            rows = np.flatnonzero(symbols == k)
            if len(rows):
                last_bar[k] = int(bars[rows[-1]])
    # Sample at the last item of each open time (every symbol of that time processed).
    if total:
        group_end = np.flatnonzero(np.append(timeline.open_time_ms[1:] != timeline.open_time_ms[:-1], True))
    else:
        group_end = np.empty(0, dtype=np.int64)
    return LoopOutput(
        time_ms=timeline.open_time_ms[group_end] + bar_ms,
        equity=equity[group_end],
        in_market=in_market[group_end],
        last_bar=last_bar,
    )
