"""Specification of the live take-profit: the target the backtest takes, resting on the exchange with the stop.

An in-process live engine on the real ccxt client against the loopback fake Binance, delivered the strategy's
real entry bar: the decision core's stop and take-profit (``take_profit_atr_multiple`` ATRs above the close)
rest as one OCO pair (a ``LIMIT_MAKER`` above, a ``STOP_LOSS`` below, the held quantity locked once). Where
the market has no OCO, or exchange targets are off, the stop rests alone and the engine applies the fill
model's target rule to each closed bar. What the engine holds, rests and sends is read from the fake's books.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from engine.core.decision import DecisionCore, EntryDecision, StopMoved
from engine.core.portfolio import Portfolio
from engine.data.live_feed import ClosedCandle
from engine.domain.models import Candles, ExitKind, OrderKind, OrderStatus, OrderType
from engine.execution.booking import floor_to_lot
from engine.execution.protection import ProtectionState
from engine.store import Store
from tests.engine.live_rig import (
    HISTORY_BARS,
    HOUR_MS,
    UNKNOWN_WINDOW_S,
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

SYMBOL, MARKET = "BTC/USDT", "BTCUSDT"
OCO = ("POST", "/api/v3/orderList/oco")
MAKER_FEE = "0.0005"
TICK = 0.01


@pytest.fixture
def entry() -> int:
    return first_entry_bar()


@pytest.fixture
def sample(entry: int) -> Candles:
    return shifted_sample(entry)


def _fake(sample: Candles, entry: int, *, oco_allowed: bool = True) -> FakeBinance:
    fake = FakeBinance(maker_fee_rate=MAKER_FEE)
    fake.add_market("BTC", "USDT", oco_allowed=oco_allowed)
    fake.set_balance("USDT", "10000")
    return fake


async def _serve(fake: FakeBinance, sample: Candles, entry: int) -> None:
    serve(fake, sample.slice(entry - HISTORY_BARS, entry))
    fake.set_price(SYMBOL, f"{sample.close[entry]:.2f}")


@pytest.fixture
async def fake(sample: Candles, entry: int) -> AsyncIterator[FakeBinance]:
    async with _fake(sample, entry) as server:
        await _serve(server, sample, entry)
        yield server


async def _start(tmp_path: Path, fake: FakeBinance) -> LiveRig:
    settings = live_settings(tmp_path, fake, [SYMBOL], request_timeout_s=0.3)
    return await start_live(settings, fake, health_interval_s=60.0, poll_interval_s=3600.0)


@pytest.fixture
async def rig(tmp_path: Path, fake: FakeBinance) -> AsyncIterator[LiveRig]:
    rig = await _start(tmp_path, fake)
    try:
        yield rig
    finally:
        await rig.stop()


async def _deliver(rig: LiveRig, candle: ClosedCandle, price: float | None = None) -> None:
    rig.fake.set_price(SYMBOL, f"{candle.close if price is None else price:.2f}")
    await rig.engine.process_candle(candle)


def _backtest_entry(rig: LiveRig, sample: Candles, entry: int) -> EntryDecision:
    """The decision the backtest's decision core takes on the entry bar (same settings, same market rules)."""
    settings, engine = rig.engine.settings, rig.engine
    core = DecisionCore(settings.risk, settings.breaker, Portfolio(cash=10_000.0),
                        {SYMBOL: engine.core.limits_for(SYMBOL)},
                        take_profit_atr_multiple=engine.strategy.params.take_profit_atr_multiple)
    prepared = engine.strategy.prepare(sample.slice(entry - HISTORY_BARS, entry + 1))
    outcome = core.on_bar(prepared, HISTORY_BARS, int(sample.open_time_ms[entry]) + HOUR_MS)
    [decision] = [d for d in outcome.decisions if isinstance(d, EntryDecision)]
    return decision


async def _enter(rig: LiveRig, sample: Candles, entry: int) -> None:
    await _deliver(rig, closed_candle(sample, entry))
    assert SYMBOL in rig.engine.portfolio.positions


def _target(rig: LiveRig) -> float:
    target = rig.engine.portfolio.positions[SYMBOL].take_profit_price
    assert target is not None
    return target


def _bar_after(sample: Candles, entry: int, *, high: float, low: float, close: float) -> ClosedCandle:
    """The bar after the entry with the given extremes (its open is the real one)."""
    return replace(closed_candle(sample, entry + 1), high=high, low=low, close=close)


async def test_an_entry_rests_one_oco_pair_with_the_backtests_stop_and_target_for_the_held_quantity(
    rig: LiveRig, sample: Candles, entry: int
) -> None:
    await _enter(rig, sample, entry)

    decision = _backtest_entry(rig, sample, entry)
    assert decision.take_profit_price is not None
    position = rig.engine.portfolio.positions[SYMBOL]
    # The same numbers (the live indicators are computed one bar at a time: the ATR may differ in its last bit).
    assert position.stop_price == pytest.approx(decision.stop_price, rel=1e-12)
    assert position.take_profit_price == pytest.approx(decision.take_profit_price, rel=1e-12)
    [pair] = rig.fake.open_order_lists(SYMBOL)
    stop, maker = pair.legs
    assert stop.type == "STOP_LOSS" and float(stop.stop_price) == pytest.approx(decision.stop_price, abs=TICK / 2)
    assert maker.type == "LIMIT_MAKER" and float(maker.price) == pytest.approx(decision.take_profit_price, abs=TICK / 2)
    sellable = floor_to_lot(float(rig.held()), rig.engine.core.limits_for(SYMBOL))
    assert stop.orig_qty == maker.orig_qty == Decimal(str(sellable)), "the held quantity, floored to the lot"
    assert rig.fake.exchange.locked("BTC") == stop.orig_qty, "the quantity is locked once for both legs"
    assert len(rig.fake.oco_posts()) == 1 and rig.open_stops() == [stop]
    stored = {o.client_order_id: o for o in await rig.engine.store.open_orders(SYMBOL)}
    assert set(stored) == {stop.client_order_id, maker.client_order_id}
    assert stored[maker.client_order_id].type is OrderType.LIMIT
    assert stored[maker.client_order_id].price == pytest.approx(decision.take_profit_price, abs=TICK / 2)
    assert rig.manager.protection_of(SYMBOL).state is ProtectionState.PROTECTED


async def test_the_price_reaching_the_target_fills_the_limit_leg_and_closes_as_take_profit_with_both_prices(
    rig: LiveRig, sample: Candles, entry: int
) -> None:
    await _enter(rig, sample, entry)
    target = _target(rig)
    [pair] = rig.fake.open_order_lists(SYMBOL)
    stop, maker = pair.legs

    await _deliver(rig, closed_candle(sample, entry + 1), price=target + 25)  # trades through the target

    assert maker.status == "FILLED" and stop.status == "EXPIRED"
    closed = await rig.wait_event("PositionClosed")
    assert closed.data["reason"] == "take_profit"
    assert closed.data["modelled_exit"] == target, "the backtest's price"
    assert closed.data["exit"] == pytest.approx(float(maker.price)), "the real one: the limit leg's own price"
    [trade] = rig.engine.portfolio.closed_trades
    assert trade.reason == "take_profit" and SYMBOL not in rig.engine.portfolio.positions
    assert trade.exit_kind is ExitKind.TARGET, "the backtest's kind for the same exit"
    row = await rig.engine.store.get_order(maker.client_order_id)
    assert row is not None and row.status is OrderStatus.FILLED and row.kind is OrderKind.TAKE_PROFIT
    assert row.price == pytest.approx(target, abs=TICK / 2) and row.average_price == pytest.approx(float(maker.price))
    [fill] = await rig.engine.store.fills(maker.client_order_id)
    assert fill.fee == pytest.approx(float(maker.orig_qty * maker.price) * float(MAKER_FEE))
    stop_row = await rig.engine.store.get_order(stop.client_order_id)
    assert stop_row is not None and stop_row.status is OrderStatus.CANCELED
    assert await rig.engine.store.open_orders(SYMBOL) == []
    assert rig.fake.open_order_lists() == [] and rig.held() < Decimal("0.00001")


async def test_the_price_hitting_the_stop_fills_the_stop_leg_and_the_target_expires(
    rig: LiveRig, sample: Candles, entry: int
) -> None:
    await _enter(rig, sample, entry)
    position = rig.engine.portfolio.positions[SYMBOL]
    [pair] = rig.fake.open_order_lists(SYMBOL)
    stop, maker = pair.legs

    await _deliver(rig, closed_candle(sample, entry + 1), price=position.stop_price - 40)

    assert stop.status == "FILLED" and maker.status == "EXPIRED"
    closed = await rig.wait_event("PositionClosed")
    assert closed.data["reason"] == "stop" and "modelled_exit" not in closed.data
    assert rig.engine.portfolio.closed_trades[-1].reason == "stop"
    assert rig.engine.portfolio.closed_trades[-1].exit_kind is ExitKind.STOP
    target_row = await rig.engine.store.get_order(maker.client_order_id)
    assert target_row is not None and target_row.status is OrderStatus.CANCELED
    assert await rig.engine.store.open_orders(SYMBOL) == []


async def test_a_trailing_move_replaces_the_pair_at_the_new_stop_with_the_same_target(
    rig: LiveRig, sample: Candles, entry: int
) -> None:
    await _enter(rig, sample, entry)
    target = _target(rig)
    [first] = rig.fake.open_order_lists(SYMBOL)
    new_stop = round(rig.engine.portfolio.positions[SYMBOL].stop_price + 150, 2)

    await rig.manager.execute((StopMoved(SYMBOL, new_stop, int(sample.open_time_ms[entry]) + 2 * HOUR_MS),))

    [pair] = rig.fake.open_order_lists(SYMBOL)
    stop, maker = pair.legs
    assert float(stop.stop_price) == pytest.approx(new_stop) and float(maker.price) == pytest.approx(target, abs=TICK)
    assert [leg.status for leg in first.legs] == ["CANCELED", "CANCELED"]
    assert stop.orig_qty == first.legs[0].orig_qty and rig.fake.exchange.locked("BTC") == stop.orig_qty
    assert (rig.manager.stops[SYMBOL].client_order_id, rig.manager.targets[SYMBOL].client_order_id) == (
        stop.client_order_id, maker.client_order_id)
    stored = {o.client_order_id for o in await rig.engine.store.open_orders(SYMBOL)}
    assert stored == {stop.client_order_id, maker.client_order_id}
    assert rig.fake.duplicate_client_ids() == []


async def test_a_pair_whose_outcome_is_unknown_is_looked_up_on_the_next_candle_never_sent_again(
    rig: LiveRig, sample: Candles, entry: int
) -> None:
    fake = rig.fake
    # -1007, and the list shows up only after the lookup window; the account's trades are unreadable meanwhile,
    # so absence cannot be proven: the pair stays unknown.
    fake.inject(*OCO, Fault(FaultKind.LATE_VISIBILITY, visible_after_s=UNKNOWN_WINDOW_S * 3))
    fake.inject("GET", "/api/v3/myTrades", FaultKind.SERVER_ERROR, times=1000)

    await _enter(rig, sample, entry)

    assert rig.manager.busy and rig.manager.protection_of(SYMBOL).state is ProtectionState.PLACING_STOP
    assert {o.status for o in await rig.engine.store.open_orders(SYMBOL)} == {OrderStatus.SUBMITTED}, "both legs"
    async with asyncio.timeout(WAIT_S):
        while fake.pending_bookings:
            await asyncio.sleep(0.01)
    fake.clear_faults()

    await _deliver(rig, closed_candle(sample, entry + 1))

    assert not rig.manager.busy and len(fake.oco_posts()) == 1, "settled by looking it up, never sent again"
    [pair] = fake.open_order_lists(SYMBOL)
    assert rig.manager.stops[SYMBOL].client_order_id == pair.legs[0].client_order_id
    assert rig.manager.targets[SYMBOL].client_order_id == pair.legs[1].client_order_id
    assert rig.manager.protection_of(SYMBOL).state is ProtectionState.PROTECTED
    assert {o.status for o in await rig.engine.store.open_orders(SYMBOL)} == {OrderStatus.OPEN}


async def test_a_pair_the_venue_refuses_becomes_a_lone_stop_with_the_target_watched_by_the_engine(
    rig: LiveRig, sample: Candles, entry: int
) -> None:
    rig.fake.inject(*OCO, FaultKind.REJECT_FILTER)

    await _enter(rig, sample, entry)

    [stop] = rig.open_stops()
    assert rig.fake.open_order_lists() == [] and SYMBOL not in rig.manager.targets
    refused = await rig.wait_event("TargetNotPlaced")
    assert refused.data["target"] == _target(rig)
    assert rig.manager.protection_of(SYMBOL).state is ProtectionState.PROTECTED


@pytest.mark.parametrize("how", ["market-without-oco", "exchange-targets-off"])
async def test_without_a_resting_target_the_engine_exits_at_market_on_the_bar_that_reaches_it(
    tmp_path: Path, sample: Candles, entry: int, how: str
) -> None:
    async with _fake(sample, entry, oco_allowed=how != "market-without-oco") as fake:
        await _serve(fake, sample, entry)
        rig = await _start(tmp_path, fake)
        try:
            rig.manager.exchange_targets = how != "exchange-targets-off"
            await _enter(rig, sample, entry)
            target, position = _target(rig), rig.engine.portfolio.positions[SYMBOL]
            [stop] = rig.open_stops()
            assert fake.oco_posts() == [] and fake.open_order_lists() == [], "a stop alone"

            opened = float(sample.close[entry])
            quiet = _bar_after(sample, entry, high=opened + 2, low=position.stop_price + 5, close=opened)
            await _deliver(rig, quiet)
            assert SYMBOL in rig.engine.portfolio.positions, "a bar below the target changes nothing"
            stop_now = rig.engine.portfolio.positions[SYMBOL].stop_price
            above = replace(_bar_after(sample, entry, high=target + 30, low=stop_now + 5, close=target - 100),
                            open_time_ms=quiet.open_time_ms + HOUR_MS)
            await _deliver(rig, above)  # the market is back down by the close: the real fill is worse

            closed = await rig.wait_event("PositionClosed")
            assert closed.data["reason"] == "take_profit"
            assert closed.data["modelled_exit"] == target, "the fill model's price (the bar opened below it)"
            real = float(fake.exchange.prices[MARKET])
            assert closed.data["exit"] == pytest.approx(real) and real < target
            [sell] = rig.orders(side="SELL", kind="MARKET")
            row = await rig.engine.store.get_order(sell.client_order_id)
            assert row is not None and row.reason == "exit: take_profit"
            assert (row.kind, row.exit_kind) == (OrderKind.EXIT, ExitKind.TARGET)
            assert (row.price, row.average_price) == (target, pytest.approx(real)), "modelled and real price"
            assert stop.status == "CANCELED" and rig.engine.portfolio.closed_trades[-1].reason == "take_profit"
        finally:
            await rig.stop()


async def test_restart_keeps_a_resting_pair_without_placing_another(
    tmp_path: Path, fake: FakeBinance, sample: Candles, entry: int
) -> None:
    first = await _start(tmp_path, fake)
    await _enter(first, sample, entry)
    [pair] = fake.open_order_lists(SYMBOL)
    await first.stop()

    second = await _start(tmp_path, fake)
    try:
        assert fake.open_order_lists(SYMBOL) == [pair] and len(fake.oco_posts()) == 1, "kept, not duplicated"
        stop, maker = pair.legs
        assert second.manager.stops[SYMBOL].client_order_id == stop.client_order_id
        assert second.manager.targets[SYMBOL].client_order_id == maker.client_order_id
        assert second.manager.protection_of(SYMBOL).state is ProtectionState.PROTECTED
        assert not any("no exchange stop" in repair for repair in second.engine.repairs)
        assert second.engine.portfolio.positions[SYMBOL].take_profit_price == pytest.approx(float(maker.price),
                                                                                            abs=TICK / 2)
    finally:
        await second.stop()


@pytest.mark.parametrize("leg", ["target", "stop"])
async def test_restart_after_a_leg_filled_while_down_books_the_close(
    tmp_path: Path, fake: FakeBinance, sample: Candles, entry: int, leg: str
) -> None:
    first = await _start(tmp_path, fake)
    await _enter(first, sample, entry)
    position = first.engine.portfolio.positions[SYMBOL]
    target = _target(first)
    await first.stop()
    fake.set_price(SYMBOL, f"{target + 10:.2f}" if leg == "target" else f"{position.stop_price - 30:.2f}")

    second = await _start(tmp_path, fake)
    try:
        assert SYMBOL not in second.engine.portfolio.positions
        [trade] = second.engine.portfolio.closed_trades
        assert trade.reason == ("take_profit" if leg == "target" else "stop")
        closed = await second.wait_event("PositionClosed")
        assert ("modelled_exit" in closed.data) is (leg == "target")
        assert fake.open_order_lists() == [] and len(fake.oco_posts()) == 1
        assert await second.engine.store.open_orders(SYMBOL) == []
    finally:
        await second.stop()
    async with await Store.open(tmp_path / "tradebot.sqlite3") as store:
        assert [(t.reason, t.exit_kind) for t in await store.trades()] == [(trade.reason, trade.exit_kind)]
        assert trade.exit_kind is (ExitKind.TARGET if leg == "target" else ExitKind.STOP)
        assert await store.open_positions() == []
