"""Specification of the live engine under exchange faults: it keeps running, trips the system breaker, recovers.

An in-process engine in live mode on the real ccxt client against the loopback fake Binance, in a quiet
market (no candle due): only the health monitor's probe and what the test does reach the exchange.
Short timeouts, tiny backoff and a one-second error window keep each test to a second or two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.domain.commands import Halt, Resume
from engine.domain.events import Event
from engine.domain.models import CircuitState
from tests.engine.live_rig import (
    HISTORY_BARS,
    LiveRig,
    closed_candle,
    first_entry_bar,
    live_settings,
    serve,
    shifted_sample,
    start_live,
)
from tests.fakes.fake_binance import FakeBinance, Fault, FaultKind

TIME = ("GET", "/api/v3/time")
ORDER = ("POST", "/api/v3/order")
ERROR_THRESHOLD = 3
FAULTY_BREAKER = {"api_error_threshold": ERROR_THRESHOLD, "api_error_window_s": 1.0, "cooldown_s": 0.1,
                  "latching": []}
REQUEST_TIMEOUT_S = 0.15
MAX_RETRIES = 2


def _system(event: Event) -> bool:
    return event.data.get("breaker") == "system"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[LiveRig]:
    entry = first_entry_bar()
    async with FakeBinance() as fake:
        fake.add_market("BTC", "USDT")
        fake.set_balance("USDT", "10000")
        # The entry bar closed at the start of this hour; the test delivers it (and later bars) itself.
        sample = shifted_sample(entry)
        serve(fake, sample.slice(entry - HISTORY_BARS, entry))
        fake.set_price("BTC/USDT", f"{sample.close[entry]:.2f}")
        settings = live_settings(tmp_path, fake, ["BTC/USDT"], breaker=FAULTY_BREAKER,
                                 request_timeout_s=REQUEST_TIMEOUT_S, max_retries=MAX_RETRIES)
        rig = await start_live(settings, fake, health_interval_s=0.05, poll_interval_s=3600.0)
        rig.sample, rig.entry_index = sample, entry  # type: ignore[attr-defined]
        try:
            yield rig
        finally:
            await rig.stop()


FAULTS = [
    pytest.param(Fault(FaultKind.SERVER_ERROR, status=503), id="http-503"),
    pytest.param(Fault(FaultKind.TIMEOUT, hang_s=1.0), id="timeout"),
    pytest.param(Fault(FaultKind.RATE_LIMITED, retry_after_s=1), id="http-429"),
]


@pytest.mark.parametrize("fault", FAULTS)
async def test_system_breaker_trips_under_a_fault_and_closes_once_it_stops(rig: LiveRig, fault: Fault) -> None:
    rig.fake.inject(*TIME, fault, times=ERROR_THRESHOLD)

    tripped = await rig.wait_event("BreakerTripped", _system)
    assert not rig.task.done(), "the engine keeps running"
    assert not rig.engine.core.breaker.allows_entry(tripped.time_ms).allowed

    # The faults were used up: the errors age out of the window, then probes confirm the exchange is back.
    await rig.wait_event("BreakerCoolingDown", _system)
    await rig.wait_event("BreakerHalfOpened", _system)
    await rig.wait_event("BreakerReset", _system)
    breaker = rig.engine.core.breaker
    assert breaker.status("system").state is CircuitState.CLOSED
    assert breaker.allows_entry(rig.engine.clock.now_ms()) == (True, 1.0, ())


async def test_engine_blocks_entries_while_tripped_obeys_commands_and_trades_again_after(rig: LiveRig) -> None:
    engine, fake = rig.engine, rig.fake
    fake.inject(*TIME, FaultKind.SERVER_ERROR)
    fake.inject(*TIME, Fault(FaultKind.TIMEOUT, hang_s=1.0))
    fake.inject(*TIME, FaultKind.RATE_LIMITED, times=10_000)  # the outage lasts until the test ends it
    await rig.wait_event("BreakerTripped", _system)

    await engine.submit(Halt(source="console", reason="outage"))
    assert (await rig.wait_event("TradingStateChanged")).data["state"] == "HALTED"
    await engine.submit(Resume(source="console"))
    assert (await rig.wait_event("TradingStateChanged")).data["state"] == "ACTIVE"

    sample, entry = rig.sample, rig.entry_index  # type: ignore[attr-defined]
    assert await engine.process_candle(closed_candle(sample, entry))
    prepared = engine.strategy.prepare(engine.histories["BTC/USDT"].candles())
    assert prepared.entry_direction[-1] == 1, "the bar carries a buy signal"
    assert fake.requests(*ORDER) == [], "no entry while the system breaker is open"
    assert engine.core.breaker.status("system").state is CircuitState.OPEN

    fake.clear_faults()
    await rig.wait_event("BreakerHalfOpened", _system)
    await rig.wait_event("BreakerReset", _system)
    for index in range(entry + 1, entry + 400):
        fake.set_price("BTC/USDT", f"{sample.close[index]:.2f}")
        await engine.process_candle(closed_candle(sample, index))
        if rig.orders(side="BUY"):
            break
    buys = rig.orders(side="BUY", kind="MARKET")
    assert len(buys) == 1 and buys[0].status == "FILLED", "entries are allowed again"
    assert len(rig.open_stops()) == 1
    assert not rig.task.done()


async def test_an_entry_under_transient_faults_is_retried_within_the_policy_and_placed_once(rig: LiveRig) -> None:
    engine, fake = rig.engine, rig.fake
    fake.inject(*ORDER, FaultKind.SERVER_ERROR, times=MAX_RETRIES)
    sample, entry = rig.sample, rig.entry_index  # type: ignore[attr-defined]

    await engine.process_candle(closed_candle(sample, entry))

    # fake.order_posts counts single orders and OCO pairs: the stop goes out with its take-profit as one pair.
    assert len(fake.order_posts()) == MAX_RETRIES + 1 + 1, "entry: 2 failures and 1 success; then the stop"
    assert len(rig.orders(side="BUY")) == 1
    assert len(rig.open_stops()) == 1
    assert "BTC/USDT" in engine.portfolio.positions
    assert not rig.task.done()


async def test_an_outage_longer_than_the_retries_proves_the_entry_absent_and_drops_it(rig: LiveRig) -> None:
    engine, fake = rig.engine, rig.fake
    fake.inject(*ORDER, FaultKind.SERVER_ERROR, times=MAX_RETRIES + 1)
    sample, entry = rig.sample, rig.entry_index  # type: ignore[attr-defined]

    await engine.process_candle(closed_candle(sample, entry))

    # Each send is re-sent only once the lookups (and the unchanged account) prove it was never placed.
    assert len(fake.requests(*ORDER)) == MAX_RETRIES + 1, "attempts stop at the policy's limit"
    assert rig.orders(side="BUY") == []
    assert not rig.manager.busy, "proven absent: nothing is left unknown"
    assert "BTC/USDT" not in engine.core.pending
