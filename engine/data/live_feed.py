"""Provides CcxtCandleFeed: closed candles from the exchange's public klines, each once, gaps backfilled.

The feed keeps one cursor per symbol: the open time of the last candle it emitted. Every poll asks
for candles from the one after the cursor, so an outage of any length (ours or the exchange's)
is backfilled by the next successful poll, in order, and nothing is emitted twice. A candle is
closed when ``now >= open_time + timeframe`` by the injected clock; the forming candle the exchange
also returns is never emitted. Symbols are fetched concurrently, so a slow or failing symbol delays
no other; a symbol whose fetch fails after its retries simply catches up on the next poll.

Every closed candle is checked first (:mod:`engine.data.live_validation`: the import rules plus an outlier
rule). A failing one is quarantined: never emitted, never fetched again (the cursor moves past it, so the
good candles after it still flow), and recorded in :attr:`CcxtCandleFeed.health` (the symbol turns
DEGRADED until its next good candle) for the runner to alert on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.data.live_validation import DEFAULT_OUTLIER_ATR_MULTIPLE, CandleValidator, FeedHealth, Quarantine
from engine.domain.clock import Clock
from engine.domain.errors import ExchangeCallException
from engine.domain.timeframes import floor_time, parse_timeframe
from engine.execution.retry import RandomSource, RetryPolicy, call_with_retry

log = logging.getLogger(__name__)

DEFAULT_CLOSE_GRACE_MS = 2_000
"""Wait this long after a candle's close before asking for it: the exchange finalises it a moment late."""

DEFAULT_FETCH_LIMIT = 1000
"""Binance's maximum klines per request; longer gaps are fetched page by page."""


@dataclass(frozen=True)
class ClosedCandle:
    """One closed OHLCV candle; prices in quote currency, volume in base, times in UTC ms."""

    symbol: str
    timeframe: str
    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    timeframe_ms: int

    @property
    def close_time_ms(self) -> int:
        return self.open_time_ms + self.timeframe_ms


class CcxtCandleFeed:
    """Polls ``fetch_ohlcv`` (public data, no keys) and yields each closed candle once, per symbol in order.

    Args:
        client: a ccxt async exchange (``create_binance_client()`` without keys).
        symbols: unified symbols, e.g. ``["BTC/USDT", "ETH/USDT"]``.
        timeframe: e.g. ``"1h"``.
        clock: time source; closed-ness is judged by it, never by the exchange.
        policy: timeouts and retries of each fetch.
        start_ms: open time (UTC ms) of the first candle to emit, for all symbols or per symbol
            (a restart passes the candle after the last one stored). Missing: start with the most
            recently closed candle.
        on_error / on_success: forwarded to every :func:`call_with_retry` (system-health breaker).
        close_grace_ms: delay after a candle's close before polling for it.
        retry_poll_s: poll interval while some symbol is behind (its last fetch failed), seconds.
        fetch_limit: candles per request.
        validators: per symbol, the checks primed with its history (missing ones start empty, with
            ``outlier_atr_multiple``).
        health: the per-symbol feed status to report to (default: a new one, STALE after 1.5 bars).
        sleep, rng: injectable for tests.
    """

    def __init__(
        self,
        client: Any,
        symbols: Sequence[str],
        timeframe: str,
        clock: Clock,
        *,
        policy: RetryPolicy,
        start_ms: int | Mapping[str, int] | None = None,
        on_error: Callable[[ExchangeCallException], None] | None = None,
        on_success: Callable[[], None] | None = None,
        close_grace_ms: int = DEFAULT_CLOSE_GRACE_MS,
        retry_poll_s: float = 5.0,
        fetch_limit: int = DEFAULT_FETCH_LIMIT,
        validators: Mapping[str, CandleValidator] | None = None,
        health: FeedHealth | None = None,
        outlier_atr_multiple: float = DEFAULT_OUTLIER_ATR_MULTIPLE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: RandomSource = random,
    ) -> None:
        if not symbols:
            raise ValueError("CcxtCandleFeed needs at least one symbol")
        self._client = client
        self._symbols = list(dict.fromkeys(symbols))
        self._timeframe = timeframe
        self._tf_ms = parse_timeframe(timeframe)
        self._clock = clock
        self._policy = policy
        self._on_error = on_error
        self._on_success = on_success
        self._close_grace_ms = close_grace_ms
        self._retry_poll_s = retry_poll_s
        self._fetch_limit = fetch_limit
        self._sleep = sleep
        self._rng = rng
        # Open time of the next candle each symbol still owes us.
        self._next_open_ms: dict[str, int] = {}
        for symbol in self._symbols:
            start = start_ms.get(symbol) if isinstance(start_ms, Mapping) else start_ms
            self._next_open_ms[symbol] = (
                self._latest_closed_open_ms() if start is None else int(floor_time(start, self._tf_ms))
            )
        self._behind: set[str] = set()
        given = validators or {}
        self._validators = {s: given.get(s) or CandleValidator(self._tf_ms, outlier_atr_multiple)
                            for s in self._symbols}
        self.health = health or FeedHealth(self._symbols, timeframe, self._tf_ms)
        for symbol in self._symbols:
            self.health.expect(symbol, self._next_open_ms[symbol])

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    @property
    def behind(self) -> frozenset[str]:
        """Symbols whose last fetch failed after its retries (they catch up on a later poll)."""
        return frozenset(self._behind)

    def next_open_ms(self, symbol: str) -> int:
        """Open time (UTC ms) of the next candle the feed will emit for ``symbol``."""
        return self._next_open_ms[symbol]

    def _latest_closed_open_ms(self) -> int:
        return int(floor_time(self._clock.now_ms(), self._tf_ms)) - self._tf_ms

    async def poll_once(self) -> list[ClosedCandle]:
        """Fetches every symbol once (concurrently) and returns the newly closed candles.

        Candles are grouped by symbol in the order symbols were given, oldest first within a symbol.
        A symbol that fails after its retries contributes nothing now and is fetched from the same
        cursor next time.
        """
        results = await asyncio.gather(*(self._poll_symbol(s) for s in self._symbols), return_exceptions=True)
        emitted: list[ClosedCandle] = []
        for symbol, result in zip(self._symbols, results, strict=True):
            if isinstance(result, ExchangeCallException):
                self._behind.add(symbol)
                log.warning("live feed %s %s is behind: %s", symbol, self._timeframe, result)
                continue
            if isinstance(result, BaseException):
                raise result
            self._behind.discard(symbol)
            emitted.extend(result)
        return emitted

    async def _poll_symbol(self, symbol: str) -> list[ClosedCandle]:
        closed: list[ClosedCandle] = []
        while True:
            now = self._clock.now_ms()
            since = self._next_open_ms[symbol]
            if since + self._tf_ms > now:
                return closed  # the next candle has not closed yet
            try:
                rows = await self._fetch(symbol, since)
            except ExchangeCallException as exc:
                if not closed:
                    raise
                # A later page failed: hand over the pages already checked (the cursor is past them).
                log.warning("live feed %s %s: backfill stopped at %d: %s", symbol, self._timeframe, since, exc)
                return closed
            fresh: list[list[Any]] = []
            cursor = since
            for row in rows:
                open_ms = int(row[0])
                if open_ms < cursor:
                    continue  # already emitted (or a repeated row)
                if open_ms + self._tf_ms > now:
                    break  # the forming candle (and anything after it) is not ours yet
                if open_ms > cursor:
                    log.warning("live feed %s %s: exchange has no candles in [%d, %d)", symbol, self._timeframe,
                                cursor, open_ms)
                fresh.append(row)
                # Past a quarantined candle too: it is never fetched again (see the module docstring).
                cursor = int(floor_time(open_ms, self._tf_ms)) + self._tf_ms
            closed.extend(self._checked(symbol, fresh, now))
            self._next_open_ms[symbol] = cursor
            if len(rows) < self._fetch_limit or not fresh:
                return closed

    async def _fetch(self, symbol: str, since_ms: int) -> list[list[Any]]:
        async def attempt() -> list[list[Any]]:
            rows: list[list[Any]] = await self._client.fetch_ohlcv(symbol, self._timeframe, since_ms, self._fetch_limit)
            return rows

        result: list[list[Any]] = await call_with_retry(
            f"fetch_ohlcv {symbol} {self._timeframe}",
            attempt,
            policy=self._policy,
            on_error=self._on_error,
            on_success=self._on_success,
            sleep=self._sleep,
            rng=self._rng,
        )
        return sorted(result, key=lambda row: int(row[0]))

    def _checked(self, symbol: str, rows: list[list[Any]], now_ms: int) -> list[ClosedCandle]:
        """The candles of ``rows`` that pass the checks; the others are quarantined and reported."""
        good: list[ClosedCandle] = []
        for checked in self._validators[symbol].validate(rows):
            open_ms = checked.open_time_ms
            if checked.rule is not None:
                quarantine = Quarantine(symbol, self._timeframe, open_ms, checked.rule, checked.detail)
                log.error("live feed: %s", quarantine.message)
                self.health.quarantined(quarantine, now_ms)
                continue
            self.health.accepted(symbol, open_ms + self._tf_ms, now_ms)
            good.append(ClosedCandle(symbol, self._timeframe, open_ms, *checked.values, timeframe_ms=self._tf_ms))
        return good

    def seconds_until_next_poll(self) -> float:
        """Until the earliest owed candle has closed plus the grace; short while a symbol is behind."""
        if self._behind:
            return self._retry_poll_s
        due_ms = min(self._next_open_ms.values()) + self._tf_ms + self._close_grace_ms
        return max(0.0, (due_ms - self._clock.now_ms()) / 1000)

    async def candles(self) -> AsyncIterator[ClosedCandle]:
        """Endless stream of closed candles: poll, yield, sleep until the next close."""
        while True:
            for candle in await self.poll_once():
                yield candle
            await self._sleep(self.seconds_until_next_poll())

    async def run(self, on_candle: Callable[[ClosedCandle], Awaitable[None]]) -> None:
        """Callback form of :meth:`candles`; runs until cancelled."""
        async for candle in self.candles():
            await on_candle(candle)
