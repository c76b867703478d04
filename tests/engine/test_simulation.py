"""Specification of the simulated account: next-open fills, intrabar stops and targets, gaps, end of data."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.domain.models import ExitKind, OrderKind, PositionSide
from engine.simulation.fills import FillModel
from tests.engine.decision_fixtures import HOUR_MS, START_MS, account, candles, prepared, run

SLIP = 0.0005
FEE = 0.001


def _entry_then(bar2: tuple[float, float, float, float]) -> tuple:
    """Bar 0 signals long at close 100 (ATR 1: stop 98, target 104); bar 1 fills; bar 2 is the test bar."""
    o, h, lo, c = bar2
    bars = candles([100, 101, o, 100], [100.5, 101.5, h, 100.5], [99.5, 100.5, lo, 99.5], [100, 101, c, 100])
    return prepared(bars, entries={0: 1}), account()


def test_entry_decided_on_a_close_fills_at_the_next_open_plus_slippage_and_fee() -> None:
    item, sim = _entry_then((101, 101.5, 100.5, 101))
    run(sim, item, upto=2)
    position = sim.core.portfolio.positions["TEST/USDT"]
    assert position.entry_price == pytest.approx(101 * (1 + SLIP))
    assert position.entry_ms == START_MS + HOUR_MS
    assert position.entry_fee == pytest.approx(position.quantity * position.entry_price * FEE)
    assert position.stop_price == pytest.approx(98.0)


def test_no_fill_happens_on_the_decision_bar_itself() -> None:
    item, sim = _entry_then((101, 101.5, 100.5, 101))
    run(sim, item, upto=1)
    assert sim.core.portfolio.positions == {}
    assert sim.core.pending == {"TEST/USDT"}


def test_stop_inside_a_bar_fills_at_the_stop_minus_slippage() -> None:
    item, sim = _entry_then((99, 99.5, 97.5, 98.5))
    run(sim, item, upto=3)
    (record,) = sim.log.trades
    assert record.exit_kind is record.trade.exit_kind is ExitKind.STOP
    assert record.trade.exit_price == pytest.approx(98.0 * (1 - SLIP))
    assert not record.stop_and_target_in_one_bar


def test_a_bar_that_gaps_through_the_stop_fills_at_its_open() -> None:
    item, sim = _entry_then((95, 96, 94, 95.5))
    run(sim, item, upto=3)
    (record,) = sim.log.trades
    assert record.trade.exit_price == pytest.approx(95 * (1 - SLIP))


def test_stop_and_target_in_one_bar_assume_the_stop_and_flag_the_trade() -> None:
    item, sim = _entry_then((100, 105, 97, 101))
    run(sim, item, upto=3)
    (record,) = sim.log.trades
    assert record.exit_kind == "stop"
    assert record.stop_and_target_in_one_bar
    assert record.trade.exit_price == pytest.approx(98.0 * (1 - SLIP))


def test_target_inside_a_bar_fills_at_the_target_without_slippage() -> None:
    item, sim = _entry_then((102, 104.5, 101, 103))
    run(sim, item, upto=3)
    (record,) = sim.log.trades
    assert record.exit_kind is record.trade.exit_kind is ExitKind.TARGET
    assert record.trade.exit_price == pytest.approx(104.0)


def test_trade_pnl_is_net_of_both_commissions() -> None:
    item, sim = _entry_then((102, 104.5, 101, 103))
    run(sim, item, upto=3)
    trade = sim.log.trades[0].trade
    gross = (trade.exit_price - trade.entry_price) * trade.quantity
    assert trade.fees == pytest.approx(FEE * trade.quantity * (trade.entry_price + trade.exit_price))
    assert trade.pnl == pytest.approx(gross - trade.fees)
    assert sim.core.portfolio.cash == pytest.approx(10_000 + trade.pnl)


def test_exit_signal_fills_at_the_next_open_minus_slippage() -> None:
    bars = candles(
        [100, 101, 101.2, 101.4], [100.5, 101.5, 101.6, 101.8], [99.5, 100.5, 100.9, 101], [100, 101, 101.3, 101.5]
    )
    item = prepared(bars, entries={0: 1}, exits=[2])
    sim = run(account(), item)
    (record,) = sim.log.trades
    assert record.exit_kind is record.trade.exit_kind is ExitKind.SIGNAL
    assert record.trade.exit_price == pytest.approx(101.4 * (1 - SLIP))
    assert record.trade.exit_ms == START_MS + 3 * HOUR_MS


def test_close_all_at_end_of_data_marks_the_exit_kind() -> None:
    item, sim = _entry_then((101, 101.5, 100.5, 101))
    run(sim, item, upto=3)
    sim.close_all_at({"TEST/USDT": 101.0}, START_MS + 3 * HOUR_MS)
    (record,) = sim.log.trades
    assert record.exit_kind is record.trade.exit_kind is ExitKind.END_OF_DATA
    assert record.trade.exit_price == pytest.approx(101 * (1 - SLIP))
    assert sim.idle


def test_an_entry_that_cash_cannot_pay_at_the_open_is_rejected() -> None:
    bars = candles([100, 100_000, 100], [100.5, 100_001, 100.5], [99.5, 99_999, 99.5], [100, 100_000, 100])
    item = prepared(bars, entries={0: 1})
    sim = run(account(capital=1_000.0), item)
    assert sim.log.rejected_orders == 1
    assert sim.core.portfolio.positions == {}
    assert any(e.kind == "OrderRejected" for e in sim.log.events)


def test_short_stop_gap_fills_at_the_open_plus_slippage() -> None:
    model = FillModel(0.001, SLIP)
    assert model.stop_trigger_price(PositionSide.SHORT, 102.0, 103.0, 104.0, 102.5) == 103.0
    assert model.market_price(PositionSide.SHORT.exit_side, 103.0) == pytest.approx(103 * (1 + SLIP))


def test_event_counts_are_the_same_whether_or_not_the_events_are_kept() -> None:
    kept_item, kept = _entry_then((99, 99.5, 97.5, 98.5))
    counted_item, counted = _entry_then((99, 99.5, 97.5, 98.5))
    counted.keep_events = False
    run(kept, kept_item, upto=3)
    run(counted, counted_item, upto=3)
    assert Counter(event.kind for event in kept.log.events) == kept.log.event_counts
    assert counted.log.event_counts == kept.log.event_counts
    assert {"PositionOpened", "PositionClosed"} <= set(counted.log.event_counts)
    assert counted.log.events == []


def test_each_simulated_fill_has_its_filled_order_with_the_kind_it_was_placed_as() -> None:
    item, sim = _entry_then((102, 104.5, 101, 103))
    run(sim, item, upto=3)
    assert [(o.client_order_id, o.kind, o.exit_kind) for o in sim.log.orders] == [
        (fill.client_order_id, kind, exit_kind)
        for fill, kind, exit_kind in zip(sim.log.fills, (OrderKind.ENTRY, OrderKind.EXIT), (None, ExitKind.TARGET),
                                         strict=True)
    ]
