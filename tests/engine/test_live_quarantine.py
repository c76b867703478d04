"""Specification of the live engine's candle checks: a bad candle is quarantined, a silent feed is STALE.

A live engine on the real ccxt client against the loopback fake Binance, on a manual clock shared with the
fake (see tests/engine/manual_clock_rig.py). Real BTC 1h candles: the engine buys on the entry bar, then
the exchange serves one bad bar, which today's decision path would have answered by selling (asserted).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from engine.data.live_feed import CcxtCandleFeed
from engine.data.live_validation import CandleValidator
from engine.domain.events import Event
from engine.domain.models import Candles, CircuitState
from engine.domain.snapshot import FEED_DEGRADED, FEED_OK, FEED_STALE
from engine.execution.ccxt_client import create_binance_client
from engine.execution.retry import RetryPolicy
from tests.engine.live_rig import HISTORY_BARS, LiveRig, first_entry_bar
from tests.engine.manual_clock_rig import (
    HOUR_MS,
    KLINES,
    ManualClock,
    Row,
    polls,
    rows,
    sample,
    serve,
    start_engine,
    until,
)
from tests.fakes.fake_binance import FakeBinance

ORDER = ("POST", "/api/v3/order")
POLICY = RetryPolicy(max_attempts=2, attempt_timeout_s=2.0, base_delay_s=0.001, max_delay_s=0.002)


@dataclass
class Market:
    rig: LiveRig
    clock: ManualClock
    candles: Candles
    entry: int

    def open_ms(self, index: int) -> int:
        return int(self.candles.open_time_ms[index])

    def close_bar(self, index: int) -> None:
        """Move the clock to the close of bar ``index`` (the feed then asks for it)."""
        self.clock.now = self.open_ms(index) + HOUR_MS

    def serve_to(self, stop: int, replace: dict[int, Row] | None = None) -> None:
        served = rows(self.candles, self.entry - HISTORY_BARS, stop, replace)
        serve(self.rig.fake, served, float(self.candles.close[min(stop, len(self.candles)) - 1]))

    def events(self, kind: str) -> list[Event]:
        return [e for e in self.rig.engine.snapshot().recent_events if e.kind == kind]  # type: ignore[union-attr]


@pytest.fixture
async def market(tmp_path: Path) -> AsyncIterator[Market]:
    candles, entry = sample(), first_entry_bar()
    clock = ManualClock(int(candles.open_time_ms[entry]) + HOUR_MS // 2)  # the entry bar is forming
    async with FakeBinance(clock=clock.now_ms) as fake:
        fake.add_market("BTC", "USDT")
        fake.set_balance("USDT", "10000")
        serve(fake, rows(candles, entry - HISTORY_BARS, entry + 1), float(candles.close[entry - 1]))
        rig = await start_engine(tmp_path, fake, clock)
        try:
            yield Market(rig, clock, candles, entry)
        finally:
            await rig.stop()


async def open_the_position(market: Market) -> None:
    engine = market.rig.engine
    market.serve_to(market.entry + 1)
    market.close_bar(market.entry)
    await until(lambda: "BTC/USDT" in engine.portfolio.positions and len(market.rig.open_stops()) == 1,
                "the entry bought and protected")
    await until(lambda: engine.candles_processed == 1, "the entry bar processed")


def bad_bars(candles: Candles, entry: int) -> dict[str, Row]:
    t = int(candles.open_time_ms[entry + 1])
    o, h, lo, v = (float(candles.open[entry + 1]), float(candles.high[entry + 1]), float(candles.low[entry + 1]),
                   float(candles.volume[entry + 1]))
    last = float(candles.close[entry])
    return {
        "nan_close": (t, o, h, lo, math.nan, v),
        "high_below_low": (t, o, last * 0.90, last * 0.95, last * 0.92, v),
        "zero_price": (t, o, h, 0.0, 0.0, v),
        "print_1000x": (t, o, o, last / 1000, last / 1000, v),
    }


EXPECTED_RULE = {"nan_close": "non_finite_value", "high_below_low": "high_below_low",
                 "zero_price": "non_positive_price", "print_1000x": "outlier"}


def with_bar(history: Candles, bar: Row) -> Candles:
    return Candles(history.symbol, history.timeframe, np.append(history.open_time_ms, bar[0]),
                   *(np.append(getattr(history, name), bar[k + 1])
                     for k, name in enumerate(("open", "high", "low", "close", "volume"))))


@pytest.mark.parametrize("kind", list(EXPECTED_RULE))
async def test_a_bad_candle_is_quarantined_degrades_the_feed_alerts_and_does_not_close_the_position(
    market: Market, kind: str
) -> None:
    engine, fake = market.rig.engine, market.rig.fake
    await open_the_position(market)
    bad = bad_bars(market.candles, market.entry)[kind]
    # Today's decision path, handed this bar, would sell the position (a trend flip on the bad close).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN cast to int8 inside the volume analyser
        would_be = engine.strategy.prepare(with_bar(engine.histories["BTC/USDT"].candles(), bad))
    assert bool(would_be.exit_long[-1]), "the bad bar would have closed the position"
    orders_before = len(fake.requests(*ORDER))

    market.serve_to(market.entry + 2, {market.entry + 1: bad})
    market.close_bar(market.entry + 1)
    alert = await market.rig.wait_event("CandleQuarantined")

    assert alert.severity == "critical"
    assert alert.data["rule"] == EXPECTED_RULE[kind] and alert.data["open_time_ms"] == bad[0]
    [status] = engine.feed_status
    assert status.state == FEED_DEGRADED and EXPECTED_RULE[kind] in status.reason and "2024-" in status.reason
    assert not engine.feed_healthy
    await engine.wait_idle()
    assert engine.candles_processed == 1, "no decision on the bad bar"
    stored = (await engine.store.read_candles("BTC/USDT", "1h")).open_time_ms.tolist()
    assert market.open_ms(market.entry) in stored and bad[0] not in stored, "stored: the good bars only"
    assert engine.histories["BTC/USDT"].last_open_ms == market.open_ms(market.entry)
    assert len(fake.requests(*ORDER)) == orders_before, "nothing sold"
    assert "BTC/USDT" in engine.portfolio.positions and len(market.rig.open_stops()) == 1
    assert engine.core.breaker.status("volatility").state is CircuitState.CLOSED

    # The next good candle clears it, and it is decided on as usual.
    market.serve_to(market.entry + 3, {market.entry + 1: bad})
    market.close_bar(market.entry + 2)
    await market.rig.wait_event("FeedRecovered")
    await until(lambda: engine.candles_processed == 2, "the next good bar processed")
    assert engine.feed_status[0].state == FEED_OK and engine.feed_healthy
    assert engine.histories["BTC/USDT"].last_open_ms == market.open_ms(market.entry + 2)
    snapshot = engine.build_snapshot()
    assert [(s.symbol, s.state) for s in snapshot.feed_status] == [("BTC/USDT", FEED_OK)]


async def test_a_feed_without_new_candles_for_one_and_a_half_bars_is_stale_until_a_fresh_candle(
    market: Market
) -> None:
    engine, fake = market.rig.engine, market.rig.fake
    last_close = market.open_ms(market.entry)  # the history's last bar (entry - 1) closed here
    market.serve_to(market.entry)  # the exchange answers, but without the entry bar
    market.clock.now = last_close + HOUR_MS  # the entry bar is due
    await polls(fake)
    market.clock.now = last_close + 3 * HOUR_MS // 2 - 1
    await polls(fake)
    assert engine.feed_status[0].state == FEED_OK, "not stale before 1.5 bars"

    market.clock.now = last_close + 3 * HOUR_MS // 2
    stale = await market.rig.wait_event("FeedStale")
    assert stale.severity == "critical" and stale.data["symbol"] == "BTC/USDT"
    status = engine.feed_status[0]
    assert status.state == FEED_STALE and "90 min" in status.reason and not engine.feed_healthy
    market.clock.now += HOUR_MS // 4
    await polls(fake, 3)
    assert len(market.events("FeedStale")) == 1, "alerted once"
    assert fake.requests(*ORDER) == [], "no entry while stale"
    assert engine.candles_processed == 0

    # The entry bar finally arrives (still the latest closed one): OK again, and it is traded as usual.
    market.serve_to(market.entry + 1)
    await market.rig.wait_event("FeedRecovered")
    await until(lambda: "BTC/USDT" in engine.portfolio.positions, "the entry decided on the fresh candle")
    assert engine.feed_status[0].state == FEED_OK and engine.feed_healthy


async def test_the_feed_skips_a_quarantined_candle_once_and_emits_the_good_ones_after_it() -> None:
    candles = sample()
    clock = ManualClock(int(candles.open_time_ms[40]) + HOUR_MS // 2)  # bars 0..39 have closed
    t = int(candles.open_time_ms[30])
    broken: Row = (t, float(candles.open[30]), 1.0, 2.0, float(candles.close[30]), 1.0)  # high < low
    async with FakeBinance(clock=clock.now_ms) as fake:
        fake.add_market("BTC", "USDT")
        fake.exchange.load_candles("BTCUSDT", "1h", rows(candles, 0, 41, {30: broken}))
        client = create_binance_client(timeout_s=2.0, base_url=fake.base_url, enable_rate_limit=False)
        client.timeout_on_exit = 0
        try:
            validator = CandleValidator(HOUR_MS)
            validator.prime(candles.slice(0, 20))
            feed = CcxtCandleFeed(client, ["BTC/USDT"], "1h", clock, policy=POLICY,
                                  start_ms=int(candles.open_time_ms[20]), validators={"BTC/USDT": validator})

            emitted = await feed.poll_once()

            assert [c.open_time_ms for c in emitted] == [int(x) for x in candles.open_time_ms[20:40] if x != t]
            assert feed.next_open_ms("BTC/USDT") == int(candles.open_time_ms[40])
            assert feed.health.status("BTC/USDT").state == FEED_OK, "the good bars after it cleared it"
            [(before, after, quarantine)] = [c for c in feed.health.take_changes() if c[2] is not None]
            assert quarantine is not None and (quarantine.open_time_ms, quarantine.rule) == (t, "high_below_low")
            assert after.state == FEED_DEGRADED and before.state == FEED_OK
            requests = len(fake.requests(*KLINES))
            assert await feed.poll_once() == [] and len(fake.requests(*KLINES)) == requests, "never fetched again"
        finally:
            await client.close()
