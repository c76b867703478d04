"""Specification of the compiled core's arithmetic: each kernel returns the Python helper's value bit for bit."""

from __future__ import annotations

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import BacktestConfig, BreakerConfig, RiskConfig
from engine.core.risk import DynamicRiskManager, SizeBound
from engine.core.rounding import ceil_to_step, floor_to_step, reaches
from engine.core.sizing import position_size, tightened_stop, trailing_candidate
from engine.core.state import (
    BOUND_BALANCE,
    BOUND_MAX_NOTIONAL,
    BOUND_MAX_RISK,
    BOUND_RISK,
    LONG,
    SHORT,
    config_record,
    market_records,
)
from engine.core.trailing import trailing_policy_from_config, update_trailing_stop
from engine.domain.models import MarketLimits, PositionSide
from engine.domain.precision import ceil_to_step as py_ceil
from engine.domain.precision import floor_to_step as py_floor
from engine.domain.precision import reaches as py_reaches
from engine.domain.precision import step_decimals

BOUNDS = {SizeBound.RISK: BOUND_RISK, SizeBound.MAX_RISK: BOUND_MAX_RISK, SizeBound.MAX_NOTIONAL: BOUND_MAX_NOTIONAL,
          SizeBound.BALANCE: BOUND_BALANCE}
steps = st.sampled_from([1e-8, 1e-5, 1e-4, 0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 0.25, 2.5e-7])
values = st.floats(0.0, 1e7, allow_nan=False) | st.integers(0, 10**6).map(lambda k: k * 0.1)


def bits(value: float) -> str:
    return struct.pack("<d", value).hex()


@settings(max_examples=500, deadline=None)
@given(value=values, step=steps)
def test_floor_and_ceil_to_step_equal_the_python_helpers(value: float, step: float) -> None:
    decimals = step_decimals(step)
    assert bits(floor_to_step(value, step, decimals)) == bits(py_floor(value, step))
    assert bits(ceil_to_step(value, step, decimals)) == bits(py_ceil(value, step))


@settings(max_examples=300, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True), limit=st.floats(-1e3, 1e3))
def test_reaches_equals_the_python_rule(value: float, limit: float) -> None:
    assert reaches(value, limit) == py_reaches(value, limit)


_prices = st.floats(1e-4, 1e5, allow_nan=False)
_ratios = st.floats(0.0, 1.5, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(equity=st.floats(1.0, 1e7), balance=st.floats(-10.0, 1e7), price=_prices, atr_ratio=st.floats(0.0, 0.2),
       strength=_ratios, multiplier=_ratios, volatility=st.floats(0.1, 5.0), size=st.sampled_from([0.5, 1.0]),
       long=st.booleans(), step=steps, tick=steps, risk_pct=st.floats(0.1, 10.0), notional_pct=st.floats(1.0, 100.0))
def test_position_size_equals_the_risk_managers(
    equity: float, balance: float, price: float, atr_ratio: float, strength: float, multiplier: float,
    volatility: float, size: float, long: bool, step: float, tick: float, risk_pct: float, notional_pct: float,
) -> None:
    risk = RiskConfig(risk_per_trade_percent=risk_pct, max_notional_percent=notional_pct)
    limits = MarketLimits("X/Y", lot_step=step, tick_size=tick, min_qty=step, min_notional=5.0)
    atr = price * atr_ratio
    expected = DynamicRiskManager(risk).calculate_position_size(
        equity, balance, price, atr, strength, multiplier, limits, volatility, size,
        PositionSide.LONG if long else PositionSide.SHORT,
    )
    config = config_record(risk, BreakerConfig(), BacktestConfig())
    quantity, stop, bound = position_size(config, market_records([limits]), 0, equity, balance, price, atr, strength,
                                          multiplier, volatility, size, LONG if long else SHORT)
    assert bits(quantity) == bits(expected.quantity)
    if expected.approved:
        assert expected.stop_price is not None
        assert bits(stop) == bits(expected.stop_price)
        assert bound == BOUNDS[expected.bound]


@settings(max_examples=400, deadline=None)
@given(policy=st.sampled_from(["percent", "atr", "swing"]), long=st.booleans(), entry=_prices,
       stop_ratio=st.floats(0.8, 1.2), extreme_ratio=st.floats(0.8, 1.25), atr_ratio=st.floats(0.0, 0.05),
       swing_ratio=st.floats(0.8, 1.2), tick=steps)
def test_trailing_update_equals_the_python_policy(
    policy: str, long: bool, entry: float, stop_ratio: float, extreme_ratio: float, atr_ratio: float,
    swing_ratio: float, tick: float,
) -> None:
    risk = RiskConfig(trailing_policy=policy, trailing_stop_activation_percent=0.5)  # type: ignore[arg-type]
    limits = MarketLimits("X/Y", tick_size=tick)
    side = PositionSide.LONG if long else PositionSide.SHORT
    stop, extreme, atr, swing = entry * stop_ratio, entry * extreme_ratio, entry * atr_ratio, entry * swing_ratio
    price = (entry + extreme) / 2
    expected = update_trailing_stop(trailing_policy_from_config(risk), side, entry, stop, extreme, limits,
                                    price=price, atr=atr, swing_price=swing)
    config = config_record(risk, BreakerConfig(), BacktestConfig())
    code = LONG if long else SHORT
    raw = trailing_candidate(config, code, entry, extreme, price, atr, swing)
    tightened = tightened_stop(market_records([limits]), 0, code, raw, stop)
    assert expected.moved == (not math.isnan(tightened))
    if expected.moved:
        assert bits(tightened) == bits(expected.stop_price)
