"""Specification of CcxtCandleFeed: closed candles only, each once, in order, gaps backfilled."""

from __future__ import annotations

import csv
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from engine.data.live_feed import CcxtCandleFeed, ClosedCandle
from engine.domain.errors import ExchangeCallException
from engine.domain.timeframes import HOUR_MS, MINUTE_MS
from engine.execution.ccxt_client import create_binance_client
from engine.execution.retry import RetryPolicy
from tests.fakes.fake_binance import FakeBinance, FaultKind
from tests.shared_data import shared_data_path

T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # an hour boundary, UTC ms
POLICY = RetryPolicy(max_attempts=3, attempt_timeout_s=1.5, base_delay_s=0.001, max_delay_s=0.002)
KLINES = ("GET", "/api/v3/klines")


@dataclass
class ManualClock:
    now: int

    def now_ms(self) -> int:
        return self.now


def synthetic_rows(count: int, start_ms: int = T0, step_ms: int = HOUR_MS) -> list[tuple[int, float, ...]]:
    return [(start_ms + i * step_ms, 100 + i, 101 + i, 99 + i, 100.5 + i, 10.0 + i) for i in range(count)]


@dataclass
class Rig:
    fake: FakeBinance
    clock: ManualClock
    client: object
    errors: list[ExchangeCallException] = field(default_factory=list)

    def feed(self, symbols: list[str] | None = None, **kwargs: object) -> CcxtCandleFeed:
        async def no_wait(delay: float) -> None:
            return None

        options: dict[str, object] = {"policy": POLICY, "on_error": self.errors.append, "sleep": no_wait}
        options.update(kwargs)
        return CcxtCandleFeed(self.client, symbols or ["BTC/USDT"], "1h", self.clock, **options)  # type: ignore[arg-type]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock(T0 + 10 * HOUR_MS + 30 * MINUTE_MS)  # candle 10 is forming
    async with FakeBinance(clock=clock.now_ms) as fake:
        fake.add_market("BTC", "USDT")
        fake.add_market("ETH", "USDT")
        fake.exchange.load_candles("BTCUSDT", "1h", synthetic_rows(40))
        fake.exchange.load_candles("ETHUSDT", "1h", synthetic_rows(40))
        client = create_binance_client(timeout_s=0.3, base_url=fake.base_url, enable_rate_limit=False)
        client.timeout_on_exit = 0  # ccxt lingers 250 ms on close for TLS; loopback is plain HTTP
        try:
            yield Rig(fake, clock, client)
        finally:
            await client.close()


def open_times(candles: list[ClosedCandle]) -> list[int]:
    return [(c.open_time_ms - T0) // HOUR_MS for c in candles]


async def test_emits_closed_candles_and_never_the_forming_one(rig: Rig) -> None:
    candles = await rig.feed(start_ms=T0).poll_once()

    assert open_times(candles) == list(range(10))
    assert candles[3] == ClosedCandle("BTC/USDT", "1h", T0 + 3 * HOUR_MS, 103, 104, 102, 103.5, 13.0, HOUR_MS)


async def test_a_candle_counts_as_closed_exactly_at_its_close_time(rig: Rig) -> None:
    rig.clock.now = T0 + 10 * HOUR_MS

    assert open_times(await rig.feed(start_ms=T0).poll_once()) == list(range(10))
    rig.clock.now = T0 + 10 * HOUR_MS - 1
    assert open_times(await rig.feed(start_ms=T0).poll_once()) == list(range(9))


async def test_each_closed_candle_is_emitted_once(rig: Rig) -> None:
    feed = rig.feed(start_ms=T0)
    await feed.poll_once()

    assert await feed.poll_once() == []
    rig.clock.now += HOUR_MS
    assert open_times(await feed.poll_once()) == [10]
    assert await feed.poll_once() == []


async def test_no_request_is_made_before_the_next_candle_closes(rig: Rig) -> None:
    feed = rig.feed(start_ms=T0)
    await feed.poll_once()
    requests = len(rig.fake.requests(*KLINES))

    await feed.poll_once()

    assert len(rig.fake.requests(*KLINES)) == requests


async def test_default_start_is_the_most_recently_closed_candle(rig: Rig) -> None:
    assert open_times(await rig.feed().poll_once()) == [9]


async def test_an_outage_is_backfilled_in_order_once_it_ends(rig: Rig) -> None:
    feed = rig.feed(start_ms=T0)
    await feed.poll_once()
    rig.fake.inject(*KLINES, FaultKind.SERVER_ERROR, times=POLICY.max_attempts)
    rig.clock.now += 2 * HOUR_MS

    assert await feed.poll_once() == []  # every attempt failed: nothing, and nothing skipped
    assert len(rig.errors) == POLICY.max_attempts
    assert feed.seconds_until_next_poll() == 5.0  # behind: poll again soon

    rig.clock.now += 3 * HOUR_MS
    assert open_times(await feed.poll_once()) == [10, 11, 12, 13, 14]
    assert feed.next_open_ms("BTC/USDT") == T0 + 15 * HOUR_MS


async def test_a_long_gap_is_fetched_page_by_page(rig: Rig) -> None:
    feed = rig.feed(start_ms=T0, fetch_limit=4)

    candles = await feed.poll_once()

    assert open_times(candles) == list(range(10))
    assert len(rig.fake.requests(*KLINES)) == 3  # 4 + 4 + 2 (the forming candle stops the paging)


async def test_one_failing_symbol_does_not_hold_back_another(rig: Rig) -> None:
    feed = rig.feed(["BTC/USDT", "ETH/USDT"], start_ms=T0 + 8 * HOUR_MS)
    rig.fake.inject(*KLINES, FaultKind.SERVER_ERROR, times=POLICY.max_attempts, symbol="ETH/USDT")

    candles = await feed.poll_once()

    assert [(c.symbol, c.open_time_ms) for c in candles] == [
        ("BTC/USDT", T0 + 8 * HOUR_MS),
        ("BTC/USDT", T0 + 9 * HOUR_MS),
    ]
    assert feed.next_open_ms("ETH/USDT") == T0 + 8 * HOUR_MS
    assert [c.symbol for c in await feed.poll_once()] == ["ETH/USDT", "ETH/USDT"]


async def test_resume_per_symbol_from_where_each_left_off(rig: Rig) -> None:
    feed = rig.feed(["BTC/USDT", "ETH/USDT"], start_ms={"BTC/USDT": T0 + 9 * HOUR_MS, "ETH/USDT": T0 + 7 * HOUR_MS})

    candles = await feed.poll_once()

    assert [(c.symbol, (c.open_time_ms - T0) // HOUR_MS) for c in candles] == [
        ("BTC/USDT", 9),
        ("ETH/USDT", 7),
        ("ETH/USDT", 8),
        ("ETH/USDT", 9),
    ]


async def test_stream_sleeps_until_the_next_close_then_yields_it(rig: Rig) -> None:
    sleeps: list[float] = []

    async def advance_clock(delay: float) -> None:
        sleeps.append(delay)
        rig.clock.now += int(delay * 1000)

    feed = rig.feed(start_ms=T0 + 8 * HOUR_MS, sleep=advance_clock, close_grace_ms=2000)
    received: list[ClosedCandle] = []
    async for candle in feed.candles():
        received.append(candle)
        if len(received) == 4:
            break

    assert open_times(received) == [8, 9, 10, 11]
    assert sleeps[0] == pytest.approx(30 * 60 + 2)  # half an hour to candle 10's close, plus the grace


async def test_real_binance_candles_arrive_unchanged(rig: Rig) -> None:
    path = shared_data_path("BTC_USDT-1h.csv.gz")
    with gzip.open(path, "rt") as handle:
        reader = csv.reader(handle)
        next(reader)  # header: timestamp_ms,open,high,low,close,volume
        data = [(int(row[0]), *(float(v) for v in row[1:])) for _, row in zip(range(24), reader, strict=False)]
    rig.fake.exchange.load_candles("BTCUSDT", "1h", data)
    rig.clock.now = data[-1][0] + HOUR_MS

    candles = await rig.feed(start_ms=data[0][0]).poll_once()

    assert [(c.open_time_ms, c.open, c.high, c.low, c.close, c.volume) for c in candles] == data
