"""Specification of the live OrderManager: what reaches the exchange (the loopback fake, real ccxt) for each decision.

A live engine runs in-process in a quiet market; the tests hand its order manager the decisions the
decision path would make (entries, stop moves, exits) or deliver the next candle, and read the fake
exchange's own book to see what happened there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from engine.core.decision import EntryDecision, ExitDecision, StopMoved
from engine.domain.models import ExitKind, OrderKind, OrderStatus, PositionSide
from engine.store import Store
from tests.engine.live_rig import (
    HISTORY_BARS,
    UNKNOWN_WINDOW_S,
    LiveRig,
    closed_candle,
    live_settings,
    serve,
    shifted_sample,
    start_live,
)
from tests.engine.runtime_helpers import WAIT_S, renamed
from tests.fakes.fake_binance import FakeBinance, Fault, FaultKind

SYMBOL = "BTC/USDT"
ORDER = ("POST", "/api/v3/order")
LATEST = 668  # sample index of the bar delivered as "the next candle": no exit signal, no trailing move
QUANTITY = 0.01


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as fake:
        fake.add_market("BTC", "USDT")
        fake.add_market("ETH", "USDT")
        fake.set_balance("USDT", "10000")
        sample = shifted_sample(LATEST)
        for symbol in (SYMBOL, "ETH/USDT"):
            serve(fake, renamed(sample.slice(LATEST - HISTORY_BARS, LATEST), symbol))
        fake.set_price(SYMBOL, f"{sample.close[LATEST]:.2f}")  # the next candle's close
        yield fake


async def _start(tmp_path: Path, fake: FakeBinance, symbols: list[str] | None = None) -> LiveRig:
    settings = live_settings(tmp_path, fake, symbols or [SYMBOL], request_timeout_s=0.3)
    return await start_live(settings, fake, health_interval_s=60.0, poll_interval_s=3600.0)


@pytest.fixture
async def rig(tmp_path: Path, fake: FakeBinance) -> AsyncIterator[LiveRig]:
    rig = await _start(tmp_path, fake)
    try:
        yield rig
    finally:
        await rig.stop()


async def _until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait for a condition of the fake (its clock is the wall clock), with a deadline."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def _price(rig: LiveRig, symbol: str = SYMBOL) -> float:
    return float(rig.fake.exchange.prices[symbol.replace("/", "")])


def _entry(rig: LiveRig, symbol: str = SYMBOL, quantity: float = QUANTITY, decided_ms: int = 1_000) -> EntryDecision:
    rig.engine.core.pending.add(symbol)  # as the decision core does when it decides an entry
    stop = round(_price(rig, symbol) * 0.98, 2)
    return EntryDecision(symbol, PositionSide.LONG, quantity, stop, None, 1.0, 1.0, decided_ms, "test entry")


async def _enter(rig: LiveRig, symbol: str = SYMBOL, quantity: float = QUANTITY) -> EntryDecision:
    decision = _entry(rig, symbol, quantity)
    await rig.manager.execute((decision,))
    return decision


async def test_entry_books_the_fill_and_rests_one_exchange_stop_for_the_quantity_held(rig: LiveRig) -> None:
    decision = await _enter(rig)

    position = rig.engine.portfolio.positions[SYMBOL]
    assert position.quantity == pytest.approx(QUANTITY * (1 - 0.001)), "the fee is taken in BTC"
    [stop] = rig.open_stops()
    assert stop.orig_qty == Decimal("0.00999") and float(stop.stop_price) == pytest.approx(decision.stop_price)
    assert rig.held() == Decimal("0.00999")
    assert SYMBOL not in rig.engine.core.pending
    stored = await rig.engine.store.open_orders(SYMBOL)
    assert [(o.client_order_id, o.status) for o in stored] == [(stop.client_order_id, OrderStatus.OPEN)]


async def test_stop_moved_replaces_the_exchange_stop_leaving_exactly_one_at_the_new_price(rig: LiveRig) -> None:
    entry = await _enter(rig)
    [first] = rig.open_stops()

    for step, ratio in enumerate((0.985, 0.99), start=1):
        new_stop = round(_price(rig) * ratio, 2)
        await rig.manager.execute((StopMoved(SYMBOL, new_stop, entry.decided_ms + step * 3_600_000),))
        [stop] = rig.open_stops()
        assert float(stop.stop_price) == pytest.approx(new_stop)
        assert stop.orig_qty == first.orig_qty
        assert rig.manager.stops[SYMBOL].client_order_id == stop.client_order_id

    assert first.status == "CANCELED"
    assert len(rig.orders(side="SELL", kind="STOP_LOSS")) == 3, "cancel then place: one new stop per move"
    stored = await rig.engine.store.open_orders(SYMBOL)
    assert [o.client_order_id for o in stored] == [rig.open_stops()[0].client_order_id]


async def test_exit_cancels_the_stop_sells_the_position_and_records_the_trade(rig: LiveRig) -> None:
    await _enter(rig)
    rig.engine.core.pending.add(SYMBOL)

    await rig.manager.execute((ExitDecision(SYMBOL, 2_000, "signal: test exit", ExitKind.SIGNAL),))

    assert rig.open_stops() == []
    [sell] = rig.orders(side="SELL", kind="MARKET")
    assert sell.status == "FILLED" and sell.executed_qty == Decimal("0.00999")
    assert rig.held() == 0, "flat on the exchange"
    assert SYMBOL not in rig.engine.portfolio.positions and SYMBOL not in rig.engine.core.pending
    [trade] = rig.engine.portfolio.closed_trades
    assert trade.reason == "signal: test exit" and trade.quantity == pytest.approx(0.00999)
    assert trade.exit_kind is ExitKind.SIGNAL
    assert await rig.engine.store.trades() == [trade]
    assert await rig.engine.store.open_positions() == []
    assert await rig.engine.store.open_orders() == []


async def test_partially_filled_exit_books_what_sold_and_protects_what_is_still_held(rig: LiveRig) -> None:
    await _enter(rig)
    rig.engine.core.pending.add(SYMBOL)
    rig.fake.inject(*ORDER, Fault(FaultKind.PARTIAL_FILL, fill_ratio="0.5"))

    await rig.manager.execute((ExitDecision(SYMBOL, 2_000, "signal: test exit", ExitKind.SIGNAL),))

    [sell] = rig.orders(side="SELL", kind="MARKET")
    assert sell.executed_qty == Decimal("0.00499")
    [trade] = rig.engine.portfolio.closed_trades
    assert trade.quantity == pytest.approx(0.00499)
    remaining = rig.engine.portfolio.positions[SYMBOL]
    assert remaining.quantity == pytest.approx(0.005) and rig.held() == Decimal("0.005")
    [stop] = rig.open_stops()
    assert stop.orig_qty == Decimal("0.005"), "what is still held is protected again"
    assert [p.quantity for p in await rig.engine.store.open_positions()] == [pytest.approx(0.005)]
    assert SYMBOL not in rig.engine.core.pending, "the next exit decision can sell the rest"


async def test_a_stop_gone_from_the_exchange_is_replaced_on_the_next_candle(rig: LiveRig) -> None:
    await _enter(rig)
    [stop] = rig.open_stops()
    rig.fake.exchange.cancel("BTCUSDT", None, stop.client_order_id)  # e.g. cancelled by hand in the web UI

    await rig.engine.process_candle(closed_candle(shifted_sample(LATEST), LATEST))

    [new_stop] = rig.open_stops()
    assert new_stop.client_order_id != stop.client_order_id and new_stop.stop_price == stop.stop_price
    assert rig.manager.stops[SYMBOL].client_order_id == new_stop.client_order_id


async def test_partially_filled_entry_sizes_position_and_stop_to_what_filled(rig: LiveRig) -> None:
    rig.fake.inject(*ORDER, Fault(FaultKind.PARTIAL_FILL, fill_ratio="0.5"))

    await _enter(rig)

    [buy] = rig.orders(side="BUY")
    assert buy.executed_qty == Decimal("0.005") and buy.status == "EXPIRED"
    position = rig.engine.portfolio.positions[SYMBOL]
    assert position.quantity == pytest.approx(0.005 * (1 - 0.001))
    [stop] = rig.open_stops()
    assert stop.orig_qty == Decimal("0.00499"), "the held quantity truncated to the lot step"


async def test_uncertain_entry_is_settled_on_the_next_candle_without_a_second_order(rig: LiveRig) -> None:
    fake = rig.fake
    # -1007 and the order shows up only after the lookup window; meanwhile the account's trades are unreadable,
    # so absence cannot be proven: the entry stays unknown.
    fake.inject(*ORDER, Fault(FaultKind.LATE_VISIBILITY, visible_after_s=UNKNOWN_WINDOW_S * 3))
    fake.inject("GET", "/api/v3/myTrades", FaultKind.SERVER_ERROR, times=1000)

    await _enter(rig)

    assert SYMBOL not in rig.engine.portfolio.positions and rig.manager.busy
    [intent] = [o for o in await rig.engine.store.open_orders() if o.kind is OrderKind.ENTRY]
    assert intent.status is OrderStatus.SUBMITTED
    await _until(lambda: fake.pending_bookings == 0)
    assert len(rig.orders(side="BUY")) == 1, "the exchange has the order now"
    fake.clear_faults()

    sample = shifted_sample(LATEST)
    await rig.engine.process_candle(closed_candle(sample, LATEST))

    assert not rig.manager.busy
    assert len(rig.orders(side="BUY")) == 1, "settled by looking it up, never sent again"
    assert rig.engine.portfolio.positions[SYMBOL].quantity == pytest.approx(0.00999)
    assert len(rig.open_stops()) == 1
    stored = await rig.engine.store.get_order(rig.orders(side="BUY")[0].client_order_id)
    assert stored is not None and stored.status is OrderStatus.FILLED


@pytest.mark.parametrize(("fault", "error"), [
    (FaultKind.REJECT_INSUFFICIENT, "InsufficientFundsException"),
    (FaultKind.REJECT_FILTER, "OrderRejectedException"),
])
async def test_refused_entry_is_not_retried_and_surfaces_as_order_rejected(
    rig: LiveRig, fault: FaultKind, error: str
) -> None:
    rig.fake.inject(*ORDER, fault)

    decision = await _enter(rig)

    assert len(rig.fake.requests(*ORDER)) == 1, "a refusal is final: asking again cannot change it"
    rejected = await rig.wait_event("OrderRejected")
    assert rejected.data["symbol"] == SYMBOL and rejected.data["error"] == error
    assert SYMBOL not in rig.engine.portfolio.positions and SYMBOL not in rig.engine.core.pending
    stored = await rig.engine.store.get_order(rejected.data["client_order_id"])
    assert stored is not None and stored.status is OrderStatus.REJECTED and stored.quantity == decision.quantity
    assert not rig.task.done()


async def test_restart_puts_a_stop_on_every_open_position_that_lost_its_own(tmp_path: Path, fake: FakeBinance) -> None:
    symbols = [SYMBOL, "ETH/USDT"]
    first = await _start(tmp_path, fake, symbols)
    for symbol in symbols:
        await _enter(first, symbol)
    [btc_stop] = first.open_stops("BTCUSDT")
    [eth_stop] = first.open_stops("ETHUSDT")
    positions = dict(first.engine.portfolio.positions)
    await first.stop()
    fake.exchange.cancel("BTCUSDT", None, btc_stop.client_order_id)  # gone while the engine was down

    second = await _start(tmp_path, fake, symbols)
    try:
        [new_btc_stop] = second.open_stops("BTCUSDT")
        assert new_btc_stop.client_order_id != btc_stop.client_order_id
        assert float(new_btc_stop.stop_price) == pytest.approx(positions[SYMBOL].stop_price)
        assert new_btc_stop.orig_qty == Decimal("0.00999")
        assert second.open_stops("ETHUSDT") == [eth_stop], "a stop still resting is kept, not duplicated"
        assert set(second.manager.stops) == set(symbols)
        assert any("BTC/USDT" in r and "no exchange stop" in r for r in second.engine.repairs)
    finally:
        await second.stop()
    async with await Store.open(tmp_path / "tradebot.sqlite3") as store:
        stops = {o.symbol: o.client_order_id for o in await store.open_orders()}
    assert stops == {SYMBOL: new_btc_stop.client_order_id, "ETH/USDT": eth_stop.client_order_id}


async def test_restart_adopts_a_difference_under_one_lot_and_sizes_the_stop_from_what_is_held(
    tmp_path: Path, fake: FakeBinance
) -> None:
    first = await _start(tmp_path, fake)
    await _enter(first)
    [stop] = first.open_stops()
    await first.stop()
    fake.exchange.cancel("BTCUSDT", None, stop.client_order_id)
    fake.exchange.balances["BTC"][0] -= Decimal("0.000004")  # less than the 0.00001 lot went missing

    second = await _start(tmp_path, fake)
    try:
        held = fake.exchange.free("BTC") + fake.exchange.locked("BTC")
        assert second.engine.portfolio.positions[SYMBOL].quantity == pytest.approx(float(held), abs=1e-12)
        [new_stop] = second.open_stops()
        assert new_stop.orig_qty == Decimal("0.00998"), "the free balance floored to the lot"
        assert any("quantity" in r and "as held on the exchange" in r for r in second.engine.repairs)
    finally:
        await second.stop()
