"""Provides load_live_history: a live symbol's warm-up from the store, then only the missing bars from the exchange.

The warm-up window is ``[start, now)``: ``bars`` base bars back from the last closed candle, moved back to
the longest timeframe's grid (:class:`engine.analysis.warmup.WarmupPlan`). The store's candles in the window are read
first; the exchange is asked (paged ``fetch_ohlcv``) only for what is missing at either end: the front,
when the store starts later than the window, and the tail, from the last stored candle up to now. Every
fetched candle passes the live checks (:class:`engine.data.live_validation.CandleValidator`) in order; the
good ones are stored, so the next start fetches only the new gap. When the exchange has nothing before some
time (a young market, a test's fake), that first available open time is kept in the store's state, so the
front is not asked for again on every start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.data.live_feed import DEFAULT_FETCH_LIMIT
from engine.data.live_validation import CandleValidator, Quarantine
from engine.domain.models import Candles
from engine.domain.timeframes import floor_time, parse_timeframe
from engine.execution.retry import RetryPolicy, call_with_retry

log = logging.getLogger(__name__)

FIRST_AVAILABLE_STATE_KEY = "candles.first_available"
"""Store state: ``{"<symbol> <timeframe>": open time (UTC ms) of the exchange's oldest candle}``."""


class CandleStore(Protocol):
    async def read_candles(self, symbol: str, timeframe: str, start_ms: int | None = None,
                           end_ms: int | None = None) -> Candles: ...

    async def upsert_candles(self, candles: Candles) -> int: ...

    async def get_state(self, key: str) -> Any: ...

    async def set_state(self, key: str, value: Any, *, time_ms: int | None = None) -> None: ...


@dataclass
class HistoryLoad:
    """What :func:`load_live_history` did.

    Attributes:
        candles: the warm-up history, oldest first (stored, then fetched, in time order).
        from_store: candles read from the store.
        fetched: good candles fetched from the exchange (now stored too).
        requests: klines requests made.
        quarantined: fetched candles the checks refused (left out).
    """

    candles: Candles
    from_store: int = 0
    fetched: int = 0
    requests: int = 0
    quarantined: list[Quarantine] = field(default_factory=list)


def warmup_start_ms(now_ms: int, timeframe_ms: int, bars: int, align_ms: int) -> int:
    """Open time of the first warm-up bar: ``bars`` before the last closed one, on the ``align_ms`` grid."""
    end = int(floor_time(now_ms, timeframe_ms))  # the forming candle's open: every closed one is before it
    return int(floor_time(end - bars * timeframe_ms, align_ms))


def _candles(symbol: str, timeframe: str, rows: Sequence[tuple[int, tuple[float, ...]]]) -> Candles:
    if not rows:
        return Candles.empty(symbol, timeframe)
    times = np.array([t for t, _ in rows], dtype=np.int64)
    table = np.array([v for _, v in rows], dtype=np.float64).reshape(-1, 5)
    return Candles(symbol, timeframe, times, *(table[:, k] for k in range(5)))


def _concat(symbol: str, timeframe: str, parts: Sequence[Candles]) -> Candles:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Candles.empty(symbol, timeframe)
    return Candles(symbol, timeframe, *(np.concatenate([getattr(p, name) for p in parts])
                                        for name in ("open_time_ms", "open", "high", "low", "close", "volume")))


class _Fetcher:
    def __init__(self, client: Any, symbol: str, timeframe: str, policy: RetryPolicy, limit: int) -> None:
        self.client, self.symbol, self.timeframe, self.policy, self.limit = client, symbol, timeframe, policy, limit
        self.timeframe_ms = parse_timeframe(timeframe)
        self.requests = 0

    async def range(self, start_ms: int, end_ms: int) -> tuple[list[Sequence[Any]], int | None]:
        """Rows with open time in ``[start_ms, end_ms)``, paged; and the first open time the exchange returned."""
        rows: list[Sequence[Any]] = []
        first: int | None = None
        since = start_ms
        while since < end_ms:
            page = await self._page(since)
            if first is None and page:
                first = int(page[0][0])
            new = [r for r in page if since <= int(r[0]) < end_ms]
            rows.extend(new)
            if not new or len(page) < self.limit:
                break
            since = int(new[-1][0]) + self.timeframe_ms
        return rows, first

    async def _page(self, since_ms: int) -> list[Sequence[Any]]:
        self.requests += 1
        page: list[Sequence[Any]] = await call_with_retry(
            f"fetch_ohlcv {self.symbol} {self.timeframe} (history)",
            lambda: self.client.fetch_ohlcv(self.symbol, self.timeframe, since_ms, self.limit),
            policy=self.policy,
        )
        return sorted(page, key=lambda row: int(row[0]))


def _checked(rows: Sequence[Sequence[Any]], validator: CandleValidator, symbol: str, timeframe: str,
             load: HistoryLoad) -> Candles:
    """The rows that pass the live checks, in order; the others go to ``load.quarantined``."""
    good: list[tuple[int, tuple[float, ...]]] = []
    for checked in validator.validate(rows):
        if checked.rule is None:
            good.append((checked.open_time_ms, checked.values))
        else:
            load.quarantined.append(Quarantine(symbol, timeframe, checked.open_time_ms, checked.rule, checked.detail))
    return _candles(symbol, timeframe, good)


async def load_live_history(
    store: CandleStore,
    client: Any,
    symbol: str,
    timeframe: str,
    *,
    bars: int,
    align_ms: int,
    now_ms: int,
    policy: RetryPolicy,
    validator: CandleValidator,
    fetch_limit: int = DEFAULT_FETCH_LIMIT,
) -> HistoryLoad:
    """The warm-up history of one symbol (see the module docstring); ``validator`` ends primed with it.

    Raises:
        ExchangeCallException: a needed klines request failed after its retries.
        StoreException: the store could not be read.
    """
    tf_ms = parse_timeframe(timeframe)
    start = warmup_start_ms(now_ms, tf_ms, bars, align_ms)
    end = int(floor_time(now_ms, tf_ms))
    stored = await store.read_candles(symbol, timeframe, start, end)
    floors: dict[str, int] = dict(await store.get_state(FIRST_AVAILABLE_STATE_KEY) or {})
    series_key = f"{symbol} {timeframe}"
    known_first = max(start, int(floors.get(series_key, start)))
    fetcher = _Fetcher(client, symbol, timeframe, policy, fetch_limit)
    load = HistoryLoad(stored, from_store=len(stored))

    validator.prime(Candles.empty(symbol, timeframe))
    front = Candles.empty(symbol, timeframe)
    front_end = int(stored.open_time_ms[0]) if len(stored) else end
    if front_end > (known_first if len(stored) else start):
        rows, first = await fetcher.range(start, front_end)
        if first is not None and first > start and floors.get(series_key) != first:
            floors[series_key] = first  # the exchange has nothing older: do not ask for it again
            await store.set_state(FIRST_AVAILABLE_STATE_KEY, floors, time_ms=now_ms)
        front = _checked(rows, validator, symbol, timeframe, load)
    held = _concat(symbol, timeframe, [front, stored])
    validator.prime(held)
    tail = Candles.empty(symbol, timeframe)
    tail_start = int(held.open_time_ms[-1]) + tf_ms if len(held) else end
    if len(stored) and tail_start < end:
        rows, _ = await fetcher.range(tail_start, end)
        tail = _checked(rows, validator, symbol, timeframe, load)
    fetched = _concat(symbol, timeframe, [front, tail])
    if len(fetched):
        await store.upsert_candles(fetched)
    load.candles = _concat(symbol, timeframe, [held, tail])
    load.fetched, load.requests = len(fetched), fetcher.requests
    validator.prime(load.candles)
    log.info("warm-up %s %s: %d bars (%d from the store, %d fetched in %d requests, %d quarantined)",
             symbol, timeframe, len(load.candles), load.from_store, load.fetched, load.requests,
             len(load.quarantined))
    return load
