"""Specification of the shared fill model."""

from __future__ import annotations

import pytest

from engine.config import BacktestConfig
from engine.domain.models import PositionSide, Side
from engine.simulation.fills import FillModel

MODEL = FillModel(commission_rate=0.001, slippage_rate=0.0005)


def test_from_config_converts_percent_to_ratio() -> None:
    assert FillModel.from_config(BacktestConfig()) == MODEL


def test_buy_fills_above_and_sell_below_the_reference_price() -> None:
    assert MODEL.market_price(Side.BUY, 100.0) == pytest.approx(100.05)
    assert MODEL.market_price(Side.SELL, 100.0) == pytest.approx(99.95)


def test_commission_is_charged_on_filled_notional() -> None:
    assert MODEL.commission(2.0, 100.0) == pytest.approx(0.2)


def test_long_stop_untouched_when_low_stays_above() -> None:
    assert MODEL.stop_trigger_price(PositionSide.LONG, 95.0, 100.0, 101.0, 95.01) is None


def test_long_stop_fills_at_stop_when_low_touches_it() -> None:
    assert MODEL.stop_trigger_price(PositionSide.LONG, 95.0, 100.0, 101.0, 95.0) == 95.0


def test_long_stop_fills_at_open_when_bar_gaps_through() -> None:
    assert MODEL.stop_trigger_price(PositionSide.LONG, 95.0, 90.0, 92.0, 89.0) == 90.0


def test_short_stop_fills_at_stop_or_at_gapped_open() -> None:
    assert MODEL.stop_trigger_price(PositionSide.SHORT, 105.0, 100.0, 105.5, 99.0) == 105.0
    assert MODEL.stop_trigger_price(PositionSide.SHORT, 105.0, 108.0, 110.0, 107.0) == 108.0
    assert MODEL.stop_trigger_price(PositionSide.SHORT, 105.0, 100.0, 104.9, 99.0) is None


def test_target_fills_at_target_or_at_the_better_gapped_open() -> None:
    assert MODEL.target_trigger_price(PositionSide.LONG, 110.0, 100.0, 110.0, 99.0) == 110.0
    assert MODEL.target_trigger_price(PositionSide.LONG, 110.0, 112.0, 113.0, 111.0) == 112.0
    assert MODEL.target_trigger_price(PositionSide.SHORT, 90.0, 100.0, 101.0, 90.5) is None
