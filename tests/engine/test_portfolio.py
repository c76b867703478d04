"""Specification of the account ledger."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.portfolio import Portfolio
from engine.domain.models import ExitKind, PositionSide

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
quantities = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)


def test_long_round_trip_books_gross_pnl_minus_both_fees() -> None:
    portfolio = Portfolio(cash=1_000.0)
    portfolio.open("BTC/USDT", PositionSide.LONG, 2.0, 100.0, fee=0.2, time_ms=0, stop_price=95.0)
    trade = portfolio.close("BTC/USDT", 110.0, fee=0.22, time_ms=1, reason="signal", exit_kind=ExitKind.SIGNAL)
    assert trade.pnl == pytest.approx(20.0 - 0.42)
    assert portfolio.cash == pytest.approx(1_000.0 + 20.0 - 0.42)
    assert portfolio.realized_pnl == pytest.approx(trade.pnl)


def test_short_round_trip_profits_when_price_falls() -> None:
    portfolio = Portfolio(cash=1_000.0)
    portfolio.open("ETH/USDT", PositionSide.SHORT, 1.0, 100.0, fee=0.0, time_ms=0, stop_price=105.0)
    trade = portfolio.close("ETH/USDT", 90.0, fee=0.0, time_ms=1, reason="signal", exit_kind=ExitKind.SIGNAL)
    assert trade.pnl == pytest.approx(10.0)


def test_equity_marks_open_positions_to_last_price() -> None:
    portfolio = Portfolio(cash=1_000.0)
    portfolio.open("BTC/USDT", PositionSide.LONG, 1.0, 100.0, fee=0.0, time_ms=0, stop_price=95.0)
    portfolio.mark("BTC/USDT", 120.0)
    assert portfolio.equity() == pytest.approx(1_020.0)
    assert portfolio.unrealized_pnl() == pytest.approx(20.0)


def test_second_entry_on_the_same_symbol_is_refused() -> None:
    portfolio = Portfolio(cash=1_000.0)
    portfolio.open("BTC/USDT", PositionSide.LONG, 1.0, 100.0, fee=0.0, time_ms=0, stop_price=95.0)
    with pytest.raises(ValueError, match="already has an open position"):
        portfolio.open("BTC/USDT", PositionSide.LONG, 1.0, 100.0, fee=0.0, time_ms=0, stop_price=95.0)


@given(entry=prices, exit_=prices, quantity=quantities, side=st.sampled_from(list(PositionSide)))
def test_cash_change_of_a_round_trip_equals_the_trade_pnl(entry, exit_, quantity, side) -> None:
    portfolio = Portfolio(cash=10_000.0)
    portfolio.open("X/USDT", side, quantity, entry, fee=entry * quantity * 0.001, time_ms=0, stop_price=entry)
    trade = portfolio.close("X/USDT", exit_, fee=exit_ * quantity * 0.001, time_ms=1, reason="t",
                            exit_kind=ExitKind.SIGNAL)
    assert portfolio.cash - 10_000.0 == pytest.approx(trade.pnl, rel=1e-9, abs=1e-6)
