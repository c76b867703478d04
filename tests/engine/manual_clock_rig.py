"""Provides a live engine on the real ccxt client against the loopback fake Binance, both on one manual clock.

The fake serves the bundled BTC 1h candles at their own (2024) times; the test moves the clock, so a candle
closes exactly when the test says and the feed's STALE timer is exact. The engine's feed runner wakes every
``POLL_S`` of real time and asks the exchange only for candles that have closed by the manual clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.data.sample import load_sample
from engine.domain.models import Candles
from tests.engine.live_rig import LiveRig, live_settings, start_live
from tests.fakes.fake_binance import FakeBinance

HOUR_MS = 3_600_000
POLL_S = 0.02
WAIT_S = 20.0
KLINES = ("GET", "/api/v3/klines")
Row = tuple[int, float, float, float, float, float]


@dataclass
class ManualClock:
    now: int

    def now_ms(self) -> int:
        return self.now


def sample() -> Candles:
    return load_sample("BTC/USDT", "1h")


def rows(candles: Candles, start: int, stop: int, replace: dict[int, Row] | None = None) -> list[Row]:
    """Bars ``start:stop`` of ``candles`` as fake kline rows; ``replace`` swaps some (index -> row)."""
    out: list[Row] = []
    for i in range(start, stop):
        row: Row = (int(candles.open_time_ms[i]), float(candles.open[i]), float(candles.high[i]),
                    float(candles.low[i]), float(candles.close[i]), float(candles.volume[i]))
        out.append((replace or {}).get(i, row))
    return out


def serve(fake: FakeBinance, served: Sequence[Row], price: float) -> None:
    fake.exchange.load_candles("BTCUSDT", "1h", served)
    fake.set_price("BTC/USDT", f"{price:.2f}")


async def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait (polling) until ``condition()`` holds; fail after ``timeout_s`` of real time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def start_engine(tmp_path: Path, fake: FakeBinance, clock: ManualClock, **options: Any) -> LiveRig:
    settings = live_settings(tmp_path, fake, ["BTC/USDT"])
    return await start_live(settings, fake, clock=clock, poll_interval_s=POLL_S, health_interval_s=60.0, **options)


def klines_requests(fake: FakeBinance) -> int:
    return len(fake.requests(*KLINES))


async def polls(fake: FakeBinance, count: int = 2) -> None:
    """Until the feed has asked the exchange ``count`` more times (it asks only while a candle is owed)."""
    target = klines_requests(fake) + count
    await until(lambda: klines_requests(fake) >= target, f"{count} more klines requests")
