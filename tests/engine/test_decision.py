"""Specification of DecisionCore: entries through risk sizing, stops that only tighten, limits and halts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import RiskConfig, Settings
from engine.core.decision import EntryDecision, ExitDecision
from engine.domain.models import TradingState
from engine.domain.precision import is_step_multiple
from tests.engine.decision_fixtures import LIMITS, account, candles, flat_candles, prepared, run

BIG_RISK = {"max_notional_percent": 50.0, "max_position_size_percent": 50.0, "risk_per_trade_percent": 50.0}


def test_entry_is_sized_by_the_risk_manager_and_rounded_to_the_lot_step() -> None:
    item = prepared(flat_candles(3), entries={0: 1})
    sim = account()
    outcome = sim.core.on_bar(item, 0, 1)
    (entry,) = outcome.decisions
    assert isinstance(entry, EntryDecision)
    assert is_step_multiple(entry.quantity, LIMITS.lot_step)
    assert entry.quantity * 100.0 <= 10_000 * Settings().risk.max_notional_percent / 100 + 1e-9
    at_risk = entry.quantity * (100.0 - entry.stop_price)
    assert at_risk <= 10_000 * Settings().risk.max_position_size_percent / 100 + 1e-9
    assert entry.stop_price == pytest.approx(98.0)
    assert entry.take_profit_price == pytest.approx(104.0)


def test_a_symbol_with_a_pending_order_gets_no_new_decision() -> None:
    item = prepared(flat_candles(3), entries={0: 1, 1: 1})
    sim = account()
    sim.core.on_bar(item, 0, 1)
    assert sim.core.on_bar(item, 1, 2).decisions == ()


def test_a_manual_halt_blocks_entries_until_resume() -> None:
    item = prepared(flat_candles(3), entries={0: 1, 1: 1})
    sim = account()
    sim.core.halt(0, "operator")
    assert sim.core.on_bar(item, 0, 1).decisions == ()
    sim.core.resume(2)
    assert len(sim.core.on_bar(item, 1, 3).decisions) == 1


def test_exit_signal_decides_a_market_exit_of_an_open_position() -> None:
    bars = flat_candles(4)
    sim = run(account(), prepared(bars, entries={0: 1}), upto=2)
    outcome = sim.core.on_bar(prepared(bars, exits=[2]), 2, 3)
    assert any(isinstance(d, ExitDecision) and d.reason.startswith("signal") for d in outcome.decisions)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=-3.0, max_value=3.0), min_size=5, max_size=40))
def test_trailing_stop_never_loosens(steps: list[float]) -> None:
    closes = 100.0 + np.cumsum([0.0, 0.0, *steps])
    closes = np.maximum(closes, 60.0)
    bars = candles(closes, closes + 0.3, closes - 0.3, closes)
    sim = account(risk=RiskConfig(trailing_stop_activation_percent=0.5, trailing_stop_distance_percent=0.5))
    item = prepared(bars, entries={0: 1}, atr=20.0)  # a far stop: the position survives the walk
    stops = []
    for index in range(len(bars)):
        sim.process_bar(item, index)
        position = sim.core.portfolio.positions.get("TEST/USDT")
        if position is None and stops:
            break
        if position is not None:
            stops.append(position.stop_price)
    assert stops == sorted(stops)


def _gap_loss_bars(next_signal_bar: int) -> tuple:
    n = next_signal_bar + 3
    opens = [100.0, 100.0] + [85.0] * (n - 2)
    bars = candles(opens, [o + 0.5 for o in opens], [o - 0.5 for o in opens], opens)
    # Two signals: the first sees the loss breaker normal again and starts its cool-down (900 s).
    return prepared(bars, entries={0: 1, next_signal_bar: 1, next_signal_bar + 1: 1})


def test_a_daily_loss_breach_closes_and_halts_then_lifts_on_the_next_day() -> None:
    risk = RiskConfig(**BIG_RISK, max_daily_loss_percent=5.0, max_drawdown_percent=50.0)
    item = _gap_loss_bars(next_signal_bar=30)  # bar 30 opens on the next UTC day
    sim = run(account(risk=risk), item, upto=3)
    assert sim.core.trading_state is TradingState.HALTED
    assert sim.core.on_bar(item, 10, int(item.candles.open_time_ms[10]) + 3_600_000).decisions == ()
    for index in range(3, 31):
        sim.process_bar(item, index)
    assert sim.core.trading_state is TradingState.ACTIVE
    sim.process_bar(item, 31)
    assert sim.core.pending == {"TEST/USDT"}


def test_a_drawdown_breach_stays_halted_across_days() -> None:
    risk = RiskConfig(**BIG_RISK, max_daily_loss_percent=50.0, max_drawdown_percent=5.0)
    item = _gap_loss_bars(next_signal_bar=30)
    sim = run(account(risk=risk), item)
    assert sim.core.trading_state is TradingState.HALTED
    assert len(sim.log.trades) == 1


def test_core_is_idle_only_when_flat_with_nothing_pending() -> None:
    item = prepared(flat_candles(4), entries={0: 1})
    sim = account()
    assert sim.idle
    sim.process_bar(item, 0)
    assert not sim.idle
    sim.process_bar(item, 1)
    assert not sim.idle and sim.core.portfolio.positions


def test_state_round_trip_keeps_a_limit_halt_liftable() -> None:
    risk = RiskConfig(**BIG_RISK, max_daily_loss_percent=5.0, max_drawdown_percent=50.0)
    sim = run(account(risk=risk), _gap_loss_bars(30), upto=3)
    state = sim.core.to_state()
    fresh = account(risk=risk)
    fresh.core.restore(state)
    assert fresh.core.to_state() == state


def test_the_shown_volatility_value_follows_every_calm_bar_without_changing_decisions() -> None:
    item = prepared(flat_candles(4))
    item = replace(item, atr=np.array([1.0, 1.5, 2.0, 1.2]), normal_volatility=np.full(4, 1.0))
    sim = account()
    sim.process_bar(item, 0)
    state = sim.core.to_state()
    sim.process_bar(item, 1)  # calm: no alarm, breaker closed, so its trip logic is not fed
    assert sim.core.breaker.status("volatility").value == pytest.approx(1.5)
    sim.process_bar(item, 2)
    assert sim.core.breaker.status("volatility").value == pytest.approx(2.0)
    assert sim.core.to_state() == state and sim.core.idle  # a display value only: no state, nothing watched


def test_a_lifted_daily_halt_shows_active_on_the_first_bar_of_the_next_day_without_a_signal() -> None:
    risk = RiskConfig(**BIG_RISK, max_daily_loss_percent=5.0, max_drawdown_percent=50.0)
    opens = [100.0, 100.0] + [85.0] * 28
    item = prepared(candles(opens, [o + 0.5 for o in opens], [o - 0.5 for o in opens], opens), entries={0: 1})
    sim = run(account(risk=risk), item, upto=23)  # bar 22 closes at 23:00 on the first day
    assert sim.core.trading_state is TradingState.HALTED and not sim.core.portfolio.positions
    seen = len(sim.log.events)
    for index in (23, 24):  # bar 24 opens on the next day (bar 23 closes at its midnight)
        sim.process_bar(item, index)
    assert sim.core.trading_state is TradingState.ACTIVE
    lifted = [e for e in sim.log.events[seen:] if e.kind == "TradingStateChanged"]
    assert [e.data["reason"] for e in lifted] == ["loss limit halt lifted"]
