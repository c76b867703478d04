"""Provides ReplayFeed: stored or bundled candles played as closed candles at a chosen speed.

Each symbol's series is split into a warm-up history (handed to the engine at start so signals are
meaningful from the first replayed bar) and the bars to replay. Every symbol replays in its own task,
so a slow consumer of one symbol never holds back another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from engine.data.live_feed import ClosedCandle
from engine.domain.errors import DataException
from engine.domain.models import Candles
from engine.domain.timeframes import parse_timeframe

log = logging.getLogger(__name__)

DEFAULT_WARMUP_BARS = 500


class ReplayFeed:
    """Plays candles of several symbols concurrently.

    Args:
        series: full candle series by symbol (oldest first, one timeframe).
        speed: replayed bars per second per symbol; ``float("inf")`` plays as fast as the consumer takes them.
        warmup_bars: bars of each series given as history instead of being replayed.
        sleep: awaited between bars (injectable for tests).
    """

    def __init__(
        self,
        series: Mapping[str, Candles],
        *,
        speed: float,
        warmup_bars: int = DEFAULT_WARMUP_BARS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not series:
            raise ValueError("ReplayFeed needs at least one symbol")
        if speed <= 0:
            raise ValueError(f"replay speed must be > 0 bars/s, got {speed}")
        self._series = dict(series)
        self._speed = speed
        self._sleep = sleep
        self._warmup = {s: min(max(warmup_bars, 0), max(len(c) - 1, 0)) for s, c in self._series.items()}
        self.finished = asyncio.Event()

    @property
    def symbols(self) -> list[str]:
        return list(self._series)

    def history(self, symbol: str) -> Candles:
        """The warm-up candles of ``symbol`` (not replayed)."""
        return self._series[symbol].slice(0, self._warmup[symbol])

    def remaining(self, symbol: str) -> int:
        return len(self._series[symbol]) - self._warmup[symbol]

    async def _play(self, symbol: str, emit: Callable[[ClosedCandle], Awaitable[None]]) -> None:
        candles = self._series[symbol]
        tf_ms = parse_timeframe(candles.timeframe)
        delay = 0.0 if self._speed == float("inf") else 1.0 / self._speed
        for i in range(self._warmup[symbol], len(candles)):
            await emit(
                ClosedCandle(
                    symbol=symbol,
                    timeframe=candles.timeframe,
                    open_time_ms=int(candles.open_time_ms[i]),
                    open=float(candles.open[i]),
                    high=float(candles.high[i]),
                    low=float(candles.low[i]),
                    close=float(candles.close[i]),
                    volume=float(candles.volume[i]),
                    timeframe_ms=tf_ms,
                )
            )
            await self._sleep(delay)

    async def run(self, emit: Callable[[ClosedCandle], Awaitable[None]]) -> None:
        """Replays every symbol concurrently until all are done (or the task is cancelled)."""
        try:
            async with asyncio.TaskGroup() as group:
                for symbol in self._series:
                    group.create_task(self._play(symbol, emit), name=f"replay {symbol}")
        finally:
            self.finished.set()
        log.info("replay finished: %d symbols", len(self._series))


async def load_replay_series(
    symbols: Sequence[str], timeframe: str, store: object | None = None, *, min_bars: int = 2
) -> dict[str, Candles]:
    """Candles to replay per symbol: the store's series when it has one, else the bundled sample.

    Raises:
        DataException: a symbol has neither stored nor bundled candles (the message names it).
    """
    from engine.data.sample import load_sample

    series: dict[str, Candles] = {}
    for symbol in symbols:
        candles: Candles | None = None
        read = getattr(store, "read_candles", None)
        if read is not None:
            stored = await read(symbol, timeframe)
            if len(stored) >= min_bars:
                candles = stored
        if candles is None:
            candles = await asyncio.to_thread(load_sample, symbol, timeframe)
        if len(candles) < min_bars:
            raise DataException(f"{symbol} {timeframe}: only {len(candles)} candles to replay")
        series[symbol] = candles
    return series
