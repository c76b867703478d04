"""Specification of the live history in the store: live candles are stored, a restart warms up from the store
and asks the exchange only for the gap (real ccxt against the loopback fake Binance, a real SQLite file)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.data.live_history import FIRST_AVAILABLE_STATE_KEY, HistoryLoad, load_live_history, warmup_start_ms
from engine.data.live_validation import CandleValidator
from engine.domain.models import Candles
from engine.domain.timeframes import DAY_MS
from engine.execution.ccxt_client import create_binance_client
from engine.execution.retry import RetryPolicy
from engine.store import Store
from tests.engine.manual_clock_rig import (
    HOUR_MS,
    KLINES,
    ManualClock,
    klines_requests,
    rows,
    sample,
    serve,
    start_engine,
    until,
)
from tests.fakes.fake_binance import FakeBinance

POLICY = RetryPolicy(max_attempts=2, attempt_timeout_s=2.0, base_delay_s=0.001, max_delay_s=0.002)
WARMUP_BARS = 9528  # engine.analysis.warmup.derive_warmup for the default strategy on 1h (tests/engine/test_warmup.py)


def same_bars(got: Candles, want: Candles) -> bool:
    return all(np.array_equal(getattr(got, k), getattr(want, k))
               for k in ("open_time_ms", "open", "high", "low", "close", "volume"))


def start_times(fake: FakeBinance, first: int = 0) -> list[int]:
    return [int(r.params["startTime"]) for r in fake.requests(*KLINES)[first:]]


async def test_live_candles_are_stored_and_a_restart_fetches_only_the_gap(tmp_path: Path) -> None:
    candles, held = sample(), 1500
    opened = candles.open_time_ms.tolist()
    clock = ManualClock(opened[held] + HOUR_MS // 2)
    async with FakeBinance(clock=clock.now_ms) as fake:
        fake.add_market("BTC", "USDT")
        fake.set_balance("USDT", "10000")
        serve(fake, rows(candles, 0, held + 1), float(candles.close[held - 1]))

        # First start, empty store: the whole warm-up the exchange has (less than the 9528 bars wanted).
        rig = await start_engine(tmp_path, fake, clock)
        engine = rig.engine
        assert len(engine.histories["BTC/USDT"]) == held
        assert start_times(fake)[:2] == [warmup_start_ms(clock.now, HOUR_MS, WARMUP_BARS, DAY_MS), opened[1000]]
        serve(fake, rows(candles, 0, held + 3), float(candles.close[held + 1]))
        clock.now = opened[held + 2]  # bars held and held + 1 have closed
        await until(lambda: engine.candles_processed == 2, "two live candles processed")
        await engine.wait_idle()
        await rig.stop()
    async with Store.open(tmp_path / "tradebot.sqlite3") as store:
        assert same_bars(await store.read_candles("BTC/USDT", "1h"), candles.slice(0, held + 2))

    clock.now = opened[held + 7] + HOUR_MS // 2  # down for five bars
    async with FakeBinance(clock=clock.now_ms) as fake:
        fake.add_market("BTC", "USDT")
        fake.set_balance("USDT", "10000")
        serve(fake, rows(candles, 0, held + 8), float(candles.close[held + 6]))

        rig = await start_engine(tmp_path, fake, clock)
        try:
            assert start_times(fake) == [opened[held + 2]], "one request, for the gap only"
            history = rig.engine.histories["BTC/USDT"]
            assert same_bars(history.candles(), candles.slice(0, held + 7))
        finally:
            await rig.stop()
    async with Store.open(tmp_path / "tradebot.sqlite3") as store:
        assert same_bars(await store.read_candles("BTC/USDT", "1h"), candles.slice(0, held + 7))


@pytest.fixture
async def exchange(tmp_path: Path) -> AsyncIterator[tuple[FakeBinance, Store, Any, ManualClock]]:
    candles = sample()
    clock = ManualClock(int(candles.open_time_ms[1600]) + HOUR_MS // 2)
    async with FakeBinance(clock=clock.now_ms) as fake, Store.open(tmp_path / "db.sqlite3") as store:
        fake.add_market("BTC", "USDT")
        client = create_binance_client(timeout_s=2.0, base_url=fake.base_url, enable_rate_limit=False)
        client.timeout_on_exit = 0
        try:
            yield fake, store, client, clock
        finally:
            await client.close()


async def load(store: Store, client: Any, clock: ManualClock) -> HistoryLoad:
    return await load_live_history(store, client, "BTC/USDT", "1h", bars=WARMUP_BARS, align_ms=DAY_MS,
                                   now_ms=clock.now, policy=POLICY, validator=CandleValidator(HOUR_MS))


async def test_the_warmup_fetches_only_what_the_store_lacks_at_either_end(
    exchange: tuple[FakeBinance, Store, Any, ManualClock]
) -> None:
    fake, store, client, clock = exchange
    candles = sample()
    fake.exchange.load_candles("BTCUSDT", "1h", rows(candles, 0, 1601))
    await store.upsert_candles(candles.slice(500, 1500))

    first = await load(store, client, clock)

    assert start_times(fake) == [warmup_start_ms(clock.now, HOUR_MS, WARMUP_BARS, DAY_MS),
                                 int(candles.open_time_ms[1500])]
    assert (first.from_store, first.fetched, first.requests) == (1000, 600, 2)
    assert same_bars(first.candles, candles.slice(0, 1600))
    assert same_bars(await store.read_candles("BTC/USDT", "1h"), candles.slice(0, 1600))
    assert await store.get_state(FIRST_AVAILABLE_STATE_KEY) == {"BTC/USDT 1h": int(candles.open_time_ms[0])}

    again = await load(store, client, clock)
    assert again.requests == 0, "the store holds it all; the exchange has nothing older"
    assert klines_requests(fake) == 2


async def test_a_bad_candle_in_the_backfill_is_left_out_and_not_stored(
    exchange: tuple[FakeBinance, Store, Any, ManualClock]
) -> None:
    fake, store, client, clock = exchange
    candles = sample()
    bad = (int(candles.open_time_ms[1550]), float(candles.open[1550]), float(candles.high[1550]),
           float(candles.low[1550]), math.nan, float(candles.volume[1550]))
    fake.exchange.load_candles("BTCUSDT", "1h", rows(candles, 0, 1601, {1550: bad}))

    result = await load(store, client, clock)

    [refused] = result.quarantined
    assert (refused.open_time_ms, refused.rule) == (bad[0], "non_finite_value")
    held = result.candles
    assert len(held) == 1599 and bad[0] not in held.open_time_ms.tolist()
    assert len(await store.read_candles("BTC/USDT", "1h")) == 1599
