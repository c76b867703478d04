"""Specification of trailing stops: percent, ATR chandelier and swing policies that never loosen."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.swing import swing_levels
from engine.config import RiskConfig
from engine.core.risk import DynamicRiskManager
from engine.core.trailing import (
    ChandelierTrailing,
    PercentTrailing,
    SwingTrailing,
    trailing_policy_from_config,
    update_trailing_stop,
)
from engine.domain.models import MarketLimits, PositionSide

MARKET = MarketLimits("BTC/USDT", lot_step=0.001, tick_size=0.01)
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT
PERCENT = PercentTrailing(activation_pct=1.0, distance_pct=0.5)


# ------------------------------------------------------------------------------------------- percent
@pytest.mark.parametrize(
    ("extreme", "active"), [(100.99, False), (101.0, True), (101.01, True)], ids=["just-under", "at", "just-over"]
)
def test_percent_trailing_activates_at_exactly_the_activation_gain(extreme: float, active: bool) -> None:
    update = update_trailing_stop(PERCENT, LONG, 100.0, 98.0, extreme, MARKET)
    assert update.active is active
    assert update.moved is active


def test_percent_trailing_follows_the_high_at_the_trail_distance_rounded_down() -> None:
    update = update_trailing_stop(PERCENT, LONG, 100.0, 98.0, 102.0, MARKET)
    assert update.stop_price == 101.49  # 102 x 0.995 = 101.49
    update = update_trailing_stop(PERCENT, LONG, 100.0, 98.0, 102.33, MARKET)
    assert update.stop_price == 101.81  # 101.81835 rounded down, away from the market


def test_percent_trailing_for_a_short_follows_the_low_and_rounds_up() -> None:
    assert not update_trailing_stop(PERCENT, SHORT, 100.0, 102.0, 99.01, MARKET).active
    update = update_trailing_stop(PERCENT, SHORT, 100.0, 102.0, 99.0, MARKET)
    assert update.active and update.stop_price == 99.5  # 99 x 1.005 = 99.495 -> 99.50


# ---------------------------------------------------------------------------------------- chandelier
def test_chandelier_trails_atr_multiple_behind_the_extreme() -> None:
    policy = ChandelierTrailing(atr_multiple=3.0)
    assert update_trailing_stop(policy, LONG, 100.0, 95.0, 110.0, MARKET, atr=2.0).stop_price == 104.0
    assert update_trailing_stop(policy, SHORT, 100.0, 105.0, 90.0, MARKET, atr=2.0).stop_price == 96.0


def test_chandelier_below_the_initial_stop_keeps_the_initial_stop() -> None:
    update = update_trailing_stop(ChandelierTrailing(3.0), LONG, 100.0, 98.0, 101.0, MARKET, atr=2.0)
    assert update.stop_price == 98.0 and not update.moved and update.active


@pytest.mark.parametrize("atr", [math.nan, 0.0, -1.0])
def test_chandelier_without_a_usable_atr_leaves_the_stop(atr: float) -> None:
    update = update_trailing_stop(ChandelierTrailing(3.0), LONG, 100.0, 98.0, 120.0, MARKET, atr=atr)
    assert update.stop_price == 98.0 and not update.active


# --------------------------------------------------------------------------------------------- swing
def test_swing_policy_moves_the_stop_to_the_last_swing_low() -> None:
    update = update_trailing_stop(SwingTrailing(5), LONG, 100.0, 98.0, 106.0, MARKET, price=105.0, swing_price=101.5)
    assert update.stop_price == 101.5 and update.moved


def test_swing_policy_moves_a_short_stop_to_the_last_swing_high() -> None:
    update = update_trailing_stop(SwingTrailing(5), SHORT, 100.0, 102.0, 95.0, MARKET, price=96.0, swing_price=98.25)
    assert update.stop_price == 98.25


@pytest.mark.parametrize("swing", [105.0, 106.0])
def test_swing_level_at_or_above_the_price_is_ignored_for_a_long(swing: float) -> None:
    update = update_trailing_stop(SwingTrailing(5), LONG, 100.0, 98.0, 107.0, MARKET, price=105.0, swing_price=swing)
    assert update.stop_price == 98.0 and not update.active


def test_no_swing_level_yet_leaves_the_stop() -> None:
    update = update_trailing_stop(SwingTrailing(5), LONG, 100.0, 98.0, 107.0, MARKET, price=105.0)
    assert update.stop_price == 98.0 and not update.moved


def test_swing_levels_mark_a_low_once_lookback_bars_after_it_have_closed() -> None:
    low = np.array([10.0, 9.0, 8.0, 9.0, 10.0, 11.0, 10.5])
    high = low + 1.0
    swing_low, _ = swing_levels(high, low, lookback=2)
    # bar 2 (8.0) is the lowest of bars 0..4: known at bar 4, not before
    assert np.isnan(swing_low[:4]).all()
    assert swing_low[4:].tolist() == [8.0, 8.0, 8.0]


def test_swing_levels_mark_a_high_symmetrically() -> None:
    high = np.array([10.0, 11.0, 12.0, 11.0, 10.0, 9.0])
    _, swing_high = swing_levels(high, high - 1.0, lookback=2)
    assert np.isnan(swing_high[:4]).all() and swing_high[4:].tolist() == [12.0, 12.0]


def test_swing_levels_of_short_history_are_all_nan() -> None:
    swing_low, swing_high = swing_levels(np.ones(4), np.ones(4), lookback=2)
    assert np.isnan(swing_low).all() and np.isnan(swing_high).all()


@settings(max_examples=25, deadline=None)
@given(
    closes=st.lists(st.floats(min_value=1.0, max_value=2.0), min_size=12, max_size=60),
    lookback=st.integers(min_value=1, max_value=4),
)
def test_swing_levels_use_no_future_bars(closes: list[float], lookback: int) -> None:
    low = np.array(closes)
    high = low * 1.01
    full_low, full_high = swing_levels(high, low, lookback)
    for t in range(len(low)):
        part_low, part_high = swing_levels(high[: t + 1], low[: t + 1], lookback)
        np.testing.assert_array_equal(part_low[-1], full_low[t])
        np.testing.assert_array_equal(part_high[-1], full_high[t])


# -------------------------------------------------------------------------------------- monotonicity
POLICIES = st.sampled_from([PERCENT, ChandelierTrailing(3.0), SwingTrailing(5), PercentTrailing(0.0, 2.0)])


@settings(max_examples=120, deadline=None)
@given(
    policy=POLICIES,
    side=st.sampled_from(list(PositionSide)),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=50.0, max_value=200.0),  # extreme
            st.floats(min_value=50.0, max_value=200.0),  # price
            st.floats(min_value=0.0, max_value=20.0) | st.just(math.nan),  # atr
            st.floats(min_value=50.0, max_value=200.0) | st.just(math.nan),  # swing
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_trailing_stop_never_loosens(
    policy: PercentTrailing, side: PositionSide, steps: list[tuple[float, float, float, float]]
) -> None:
    stop = 95.0 if side is LONG else 105.0
    for extreme, price, atr, swing in steps:
        update = update_trailing_stop(policy, side, 100.0, stop, extreme, MARKET, price=price, atr=atr,
                                      swing_price=swing)
        if side is LONG:
            assert update.stop_price >= stop
        else:
            assert update.stop_price <= stop
        assert update.moved is (update.stop_price != stop)
        stop = update.stop_price


def test_policy_follows_the_configuration() -> None:
    assert trailing_policy_from_config(RiskConfig(trailing_policy="percent")) == PercentTrailing(1.0, 0.5)
    assert trailing_policy_from_config(RiskConfig(trailing_policy="atr")) == ChandelierTrailing(3.0)
    assert trailing_policy_from_config(RiskConfig(trailing_policy="swing", swing_lookback=7)) == SwingTrailing(7)


def test_risk_manager_trails_with_its_configured_policy() -> None:
    manager = DynamicRiskManager(RiskConfig(trailing_policy="atr", chandelier_atr_multiple=2.0))
    assert manager.update_trailing_stop(LONG, 100.0, 95.0, 110.0, MARKET, atr=1.0).stop_price == 108.0
