"""Provides an in-process live-mode TradingEngine on the real ccxt client against the loopback fake Binance.

The fake serves real BTC 1h candles moved in time so the last one closed at the start of the current
hour: the engine loads them as history and its feed then waits for the next close, i.e. the market is
quiet and only what a test does (decisions, candles, faults) reaches the exchange.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.analysis.strategy import Strategy, StrategyParams
from engine.config import Settings
from engine.data.live_feed import ClosedCandle
from engine.data.sample import load_sample
from engine.domain.bus import Subscription
from engine.domain.events import Event
from engine.domain.models import Candles
from engine.runtime.engine import TradingEngine, build_engine
from tests.engine.runtime_helpers import WAIT_S, finish, make_settings, start
from tests.fakes.binance_shapes import FakeOrder
from tests.fakes.fake_binance import FakeBinance

HOUR_MS = 3_600_000
HISTORY_BARS = 500
UNKNOWN_WINDOW_S = 0.3  # lookups of an unknown order before it may be called absent (real default: 10 s)


def shifted_sample(latest_closed: int, symbol: str = "BTC/USDT") -> Candles:
    """All sample BTC 1h bars, shifted so bar ``latest_closed`` opened one hour before the current hour."""
    candles = load_sample("BTC/USDT", "1h")
    this_hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    offset = this_hour - HOUR_MS - int(candles.open_time_ms[latest_closed])
    return Candles(symbol, "1h", candles.open_time_ms + offset, candles.open, candles.high, candles.low,
                   candles.close, candles.volume)


def closed_candle(candles: Candles, index: int) -> ClosedCandle:
    """Bar ``index`` as the live feed delivers it."""
    return ClosedCandle(candles.symbol, candles.timeframe, int(candles.open_time_ms[index]), float(candles.open[index]),
                        float(candles.high[index]), float(candles.low[index]), float(candles.close[index]),
                        float(candles.volume[index]), HOUR_MS)


def first_entry_bar(start: int = HISTORY_BARS) -> int:
    """Sample index of the first bar on which the strategy, holding the 500 bars before it, buys."""
    candles = load_sample("BTC/USDT", "1h")
    settings = Settings()
    strategy = Strategy(StrategyParams.from_settings(settings), settings.risk, settings.breaker)
    for index in range(start, len(candles)):
        if strategy.prepare(candles.slice(index - HISTORY_BARS, index + 1)).entry_direction[-1] == 1:
            return index
    raise AssertionError("no entry in the sample")


def fake_rows(candles: Candles) -> list[tuple[int, str, str, str, str, str]]:
    return [(int(candles.open_time_ms[i]), str(candles.open[i]), str(candles.high[i]), str(candles.low[i]),
             str(candles.close[i]), str(candles.volume[i])) for i in range(len(candles))]


def serve(fake: FakeBinance, candles: Candles) -> None:
    """The fake serves ``candles`` as klines and trades at the last close."""
    fake.exchange.load_candles(candles.symbol.replace("/", ""), "1h", fake_rows(candles))
    fake.set_price(candles.symbol, f"{candles.close[-1]:.2f}")


def live_settings(tmp_path: Path, fake: FakeBinance, symbols: list[str], *, breaker: dict[str, Any] | None = None,
                  **exchange: Any) -> Settings:
    return make_settings(
        tmp_path, symbols,
        exchange={"mode": "live", "feed": "live", "base_url": fake.base_url, "api_key": fake.api_key,
                  "api_secret": fake.api_secret, "request_timeout_s": 1.0, "max_retries": 2,
                  "retry_base_delay_s": 0.01, "retry_max_delay_s": 0.02, "unknown_order_window_s": UNKNOWN_WINDOW_S,
                  **exchange},
        breaker=breaker or {},
    )


@dataclass
class LiveRig:
    """One running live engine and the fake it trades on."""

    fake: FakeBinance
    engine: TradingEngine
    task: asyncio.Task[None]
    events: Subscription

    @property
    def manager(self) -> Any:
        return self.engine.execution

    def orders(self, symbol: str = "BTCUSDT", side: str | None = None, kind: str | None = None,
               open_only: bool = False) -> list[FakeOrder]:
        return [o for o in self.fake.exchange.orders
                if o.symbol == symbol and (side is None or o.side == side) and (kind is None or o.type == kind)
                and (o.is_open or not open_only)]

    def open_stops(self, symbol: str = "BTCUSDT") -> list[FakeOrder]:
        return self.orders(symbol, "SELL", "STOP_LOSS", open_only=True)

    def held(self, asset: str = "BTC") -> Decimal:
        return self.fake.exchange.free(asset) + self.fake.exchange.locked(asset)

    async def wait_event(self, kind: str, where: Callable[[Event], bool] = lambda e: True) -> Event:
        async def scan() -> Event:
            while True:
                event = await self.events.next_event()
                if event.kind == kind and where(event):
                    return event
                if self.task.done():
                    raise AssertionError(f"engine stopped while waiting for {kind}")

        return await asyncio.wait_for(scan(), WAIT_S)

    async def stop(self) -> None:
        await finish(self.engine, self.task)


async def start_live(settings: Settings, fake: FakeBinance, **options: Any) -> LiveRig:
    engine = build_engine(settings, live=True, **{"snapshot_rate_hz": 50.0, "poll_interval_s": 0.05, **options})
    events = engine.bus.subscribe("test")
    task = start(engine)
    started = asyncio.create_task(engine.started.wait())
    done, _ = await asyncio.wait([started, task], timeout=WAIT_S, return_when="FIRST_COMPLETED")
    if started not in done:
        started.cancel()
        if task.done():
            task.result()  # the start-up error
        raise AssertionError("live engine did not start")
    return LiveRig(fake, engine, task, events)
