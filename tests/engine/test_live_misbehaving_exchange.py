"""Specification of live trading on an exchange that answers badly: books follow the account, orders stay bounded.

An in-process live engine on the real ccxt client against the loopback fake Binance, which behaves like
the real one: a buy's commission is charged in the base asset, a client order id is unique only among
*open* orders, and replies can be lost, late, truncated or empty. The strategy's real entry bar is
delivered; what the engine holds, rests and sends is read from the fake exchange's own books.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from engine.domain.commands import EmergencyExit
from engine.domain.errors import StopWouldTriggerException
from engine.domain.models import Candles, CircuitState, ExitKind, Side, TradingState
from engine.execution.booking import floor_to_lot
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
from tests.engine.runtime_helpers import WAIT_S
from tests.fakes.fake_binance import FakeBinance, Fault, FaultKind

SYMBOL = "BTC/USDT"
ORDER = ("POST", "/api/v3/order")
OCO = ("POST", "/api/v3/orderList/oco")
FEE_RATE = "0.00075"  # the BNB-less taker fee: the net quantity is off the lot grid, so dust is real
WINDOW_S = 1.0  # lookups of an unknown order before it may be called absent
ORDERS_PER_SYMBOL_PER_MINUTE = 6


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[LiveRig]:
    entry = first_entry_bar()
    async with FakeBinance(fee_rate=FEE_RATE) as fake:
        fake.add_market("BTC", "USDT")
        fake.set_balance("USDT", "10000")
        sample = shifted_sample(entry)
        serve(fake, sample.slice(entry - HISTORY_BARS, entry))
        fake.set_price(SYMBOL, f"{sample.close[entry]:.2f}")
        settings = live_settings(tmp_path, fake, [SYMBOL], request_timeout_s=0.3, unknown_order_window_s=WINDOW_S,
                                 max_orders_per_symbol_per_minute=ORDERS_PER_SYMBOL_PER_MINUTE,
                                 breaker={"api_error_threshold": 3, "api_error_window_s": 60.0, "latching": []})
        rig = await start_live(settings, fake, health_interval_s=60.0, poll_interval_s=3600.0)
        rig.sample, rig.entry_index = sample, entry  # type: ignore[attr-defined]
        try:
            yield rig
        finally:
            await rig.stop()


def _sample(rig: LiveRig) -> tuple[Candles, int]:
    return rig.sample, rig.entry_index  # type: ignore[attr-defined]


async def _deliver(rig: LiveRig, index: int, price: float | None = None) -> None:
    sample, _ = _sample(rig)
    rig.fake.set_price(SYMBOL, f"{sample.close[index] if price is None else price:.2f}")
    await rig.engine.process_candle(closed_candle(sample, index))


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)


def _kinds(rig: LiveRig) -> list[str]:
    return [event.kind for event in rig.engine.recent_events]


def _assert_books_match_the_account(rig: LiveRig) -> None:
    held = rig.held("BTC")
    position = rig.engine.portfolio.positions[SYMBOL]
    assert position.quantity == pytest.approx(float(held), abs=1e-12), "booked = what the account holds"
    [stop] = rig.open_stops()
    limits = rig.engine.core.limits_for(SYMBOL)
    assert stop.orig_qty == Decimal(str(floor_to_lot(float(held), limits))), "one stop for the free balance"
    assert rig.fake.duplicate_client_ids() == [], "no client id accepted twice"
    # The strategy's entries carry the backtest's take-profit: the stop rests as an OCO pair (two legs, one send).
    assert len(rig.fake.accepted_orders(SYMBOL)) == 3, "one entry, one stop-and-target pair: nothing sent twice"
    assert len(rig.fake.open_order_lists(SYMBOL)) == 1


async def test_a_normal_entry_is_booked_net_of_the_base_asset_fee_and_its_stop_sells_what_is_held(rig: LiveRig) -> None:
    _, entry = _sample(rig)

    await _deliver(rig, entry)

    [buy] = rig.orders(side="BUY")
    assert rig.held("BTC") < buy.executed_qty, "Binance kept its fee in BTC"
    _assert_books_match_the_account(rig)


UNKNOWN_OUTCOMES = [
    pytest.param(Fault(FaultKind.UNKNOWN_AFTER_BOOKING), id="503-1007-after-booking"),
    pytest.param(Fault(FaultKind.MALFORMED_JSON), id="truncated-json"),
    pytest.param(Fault(FaultKind.TIMEOUT_AFTER_PROCESSING, hang_s=1.0), id="reply-after-timeout"),
    pytest.param(Fault(FaultKind.EMPTY_OBJECT_REPLY), id="empty-object"),
    pytest.param(Fault(FaultKind.EMPTY_BODY_REPLY), id="empty-body"),
    pytest.param(Fault(FaultKind.LATE_VISIBILITY, visible_after_s=WINDOW_S / 2), id="visible-later-after-1007"),
]


@pytest.mark.parametrize("fault", UNKNOWN_OUTCOMES)
async def test_an_entry_whose_reply_is_lost_is_booked_as_held_protected_once_and_never_bought_twice(
    rig: LiveRig, fault: Fault
) -> None:
    _, entry = _sample(rig)
    rig.fake.inject(*ORDER, fault)

    await _deliver(rig, entry)
    for index in range(entry + 1, entry + 4):  # N more bars change nothing
        await _deliver(rig, index)

    assert len(rig.orders(side="BUY")) == 1
    _assert_books_match_the_account(rig)
    assert not rig.task.done()


async def test_an_outcome_still_unknown_after_the_window_is_looked_up_next_bar_not_resent(rig: LiveRig) -> None:
    _, entry = _sample(rig)
    rig.fake.inject(*ORDER, Fault(FaultKind.LATE_VISIBILITY, visible_after_s=WINDOW_S * 2))
    rig.fake.inject("GET", "/api/v3/myTrades", FaultKind.SERVER_ERROR, times=1000)  # absence cannot be proven

    await _deliver(rig, entry)

    assert "OrderUncertain" in _kinds(rig) and rig.orders(side="BUY") == []
    await _until(lambda: rig.fake.pending_bookings == 0)
    rig.fake.clear_faults()
    await _deliver(rig, entry + 1)

    assert len(rig.fake.order_posts(SYMBOL)) == 2, "the entry once, then its stop"
    _assert_books_match_the_account(rig)


async def test_a_gap_through_the_stop_becomes_one_market_exit_not_an_order_storm(rig: LiveRig) -> None:
    _, entry = _sample(rig)
    await _deliver(rig, entry)
    [stop] = rig.open_stops()
    rig.fake.exchange.cancel("BTCUSDT", None, stop.client_order_id)  # lost on the exchange...
    gap = float(stop.stop_price) * 0.9  # ...while the price gaps through its level

    await _deliver(rig, entry + 1, price=gap)

    assert SYMBOL not in rig.engine.portfolio.positions, "closed at market"
    posts = rig.fake.order_posts(SYMBOL)
    assert len(posts) == 4, "entry, stop, the refused stop, one market exit"
    assert "StopRefused" in _kinds(rig) and "PositionClosed" in _kinds(rig)
    [trade] = rig.engine.portfolio.closed_trades
    assert trade.exit_kind is ExitKind.STOP, "a stop exit, though sold at market (the backtest's kind)"
    assert rig.held("BTC") < Decimal("0.00001"), "what is left is dust under one lot"
    assert rig.engine.portfolio.dust.get(SYMBOL, 0.0) == pytest.approx(float(rig.held("BTC")), abs=1e-12)


async def test_refused_stops_and_exits_stay_under_the_governor_and_end_closed_once_the_exchange_relents(
    rig: LiveRig,
) -> None:
    _, entry = _sample(rig)
    await _deliver(rig, entry)
    [stop] = rig.open_stops()
    rig.fake.exchange.cancel("BTCUSDT", None, stop.client_order_id)
    for endpoint in (ORDER, OCO):  # every order refused with -2010 (the stop goes out as an OCO pair)
        rig.fake.inject(*endpoint, FaultKind.REJECT_INSUFFICIENT, times=10_000)
    gap = float(stop.stop_price) * 0.9

    posts_before = len(rig.fake.order_posts(SYMBOL))
    for index in range(entry + 1, entry + 12):
        await _deliver(rig, index, price=gap)

    sent = len(rig.fake.order_posts(SYMBOL)) - posts_before
    assert sent <= ORDERS_PER_SYMBOL_PER_MINUTE, "never more orders than the governor allows"
    assert {"PositionUnprotected", "OrderRateLimited"} <= set(_kinds(rig))
    assert rig.engine.core.trading_state is TradingState.HALTED
    assert not rig.task.done(), "the engine stays alive"
    assert SYMBOL in rig.engine.portfolio.positions

    rig.fake.clear_faults()
    rig.manager.governor._sent.clear()  # a minute has passed (the governor's window is wall-clock)
    await _deliver(rig, entry + 12, price=gap)
    assert SYMBOL not in rig.engine.portfolio.positions, "closed once the exchange takes orders again"


async def test_a_close_all_refused_with_insufficient_balance_halts_alerts_and_retries_each_bar(rig: LiveRig) -> None:
    _, entry = _sample(rig)
    await _deliver(rig, entry)
    rig.fake.inject(*ORDER, FaultKind.REJECT_INSUFFICIENT, times=10_000)
    events = rig.engine.bus.subscribe("close-all")

    await rig.engine.submit(EmergencyExit(source="console", reason="test close-all"))
    await rig.engine.wait_idle()
    refused = [e for e in events.drain_events() if e.kind == "ExitRefused"]
    assert refused and refused[0].severity == "critical"
    assert rig.engine.core.trading_state is TradingState.HALTED
    posts = len(rig.fake.order_posts(SYMBOL))
    for index in range(entry + 1, entry + 4):
        await _deliver(rig, index)
    assert len(rig.fake.order_posts(SYMBOL)) - posts <= 3, "one retry per bar, no storm"

    rig.fake.clear_faults()
    rig.manager.governor._sent.clear()  # a minute has passed (the governor's window is wall-clock)
    await _deliver(rig, entry + 4)
    assert SYMBOL not in rig.engine.portfolio.positions
    assert rig.open_stops() == []
    assert not rig.task.done()


async def test_business_refusals_never_trip_the_system_breaker(rig: LiveRig) -> None:
    _, entry = _sample(rig)
    await _deliver(rig, entry)
    broker = rig.manager.broker
    price = float(rig.fake.exchange.prices["BTCUSDT"])

    for attempt in range(5):  # more than the threshold of 3: stops the market has already crossed
        with pytest.raises(StopWouldTriggerException):
            await broker.place_stop_loss(f"crossed-{attempt}", SYMBOL, Side.SELL, 0.0001, price * 1.05)

    assert rig.engine.core.breaker.status("system").state is CircuitState.CLOSED
