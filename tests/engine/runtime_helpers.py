"""Provides helpers shared by the runtime tests: settings, candle windows, running engines, waiting on events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.data.sample import load_sample
from engine.domain.bus import Subscription
from engine.domain.events import Event
from engine.domain.models import Candles
from engine.runtime.engine import TradingEngine, build_engine

WAIT_S = 30.0


def make_settings(tmp_path: Path, symbols: list[str], **sections: Any) -> Settings:
    exchange = {"symbols": symbols, **sections.pop("exchange", {})}
    breaker = {"latching": [], **sections.pop("breaker", {})}
    return Settings(
        exchange=exchange,
        breaker=breaker,
        storage={"database_path": tmp_path / "tradebot.sqlite3", "log_dir": tmp_path / "logs"},
        **sections,
    )


def btc_window(start: int = 700, length: int = 1400, symbol: str = "BTC/USDT") -> Candles:
    """Real BTC/USDT 1h candles (a window with stops, trailing stops, targets and signal exits)."""
    candles = load_sample("BTC/USDT", "1h").slice(start, start + length)
    return Candles(symbol, "1h", candles.open_time_ms, candles.open, candles.high, candles.low, candles.close,
                   candles.volume)


def renamed(candles: Candles, symbol: str) -> Candles:
    return Candles(symbol, candles.timeframe, candles.open_time_ms, candles.open, candles.high, candles.low,
                   candles.close, candles.volume)


def start(engine: TradingEngine) -> asyncio.Task[None]:
    return asyncio.create_task(engine.run(), name="engine under test")


async def finish(engine: TradingEngine, task: asyncio.Task[None]) -> None:
    engine.stop()
    await asyncio.wait_for(task, WAIT_S)


async def wait_for_event(
    subscription: Subscription, kind: str, where: Callable[[Event], bool] = lambda e: True
) -> Event:
    async def scan() -> Event:
        while True:
            event = await subscription.next_event()
            if event.kind == kind and where(event):
                return event

    return await asyncio.wait_for(scan(), WAIT_S)


def paper_engine(tmp_path: Path, series: dict[str, Candles], **options: Any) -> TradingEngine:
    settings = make_settings(tmp_path, list(series))
    defaults: dict[str, Any] = {"series": series, "replay_speed": float("inf"), "warmup_bars": 500,
                                "snapshot_rate_hz": 50.0}
    return build_engine(settings, **{**defaults, **options})
