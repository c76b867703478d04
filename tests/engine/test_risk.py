"""Specification of the DynamicRiskManager: position sizing and the initial ATR stop."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.config import RiskConfig
from engine.core.risk import DynamicRiskManager, RiskAction, SizeBound
from engine.domain.errors import RiskManagementException
from engine.domain.models import MarketLimits, PositionSide
from engine.domain.precision import LIMIT_REL_EPS, STEP_EPS, is_step_multiple

DAY_MS = 86_400_000
MARKET = MarketLimits("BTC/USDT", lot_step=0.001, tick_size=0.01)
UNCAPPED = RiskConfig(max_position_size_percent=100.0, max_notional_percent=100.0)


def size(manager: DynamicRiskManager, **overrides: float | MarketLimits | PositionSide):  # type: ignore[no-untyped-def]
    """Size with a textbook case unless overridden: equity 10k, entry 100, ATR 1 -> stop 98."""
    arguments: dict[str, object] = {
        "equity": 10_000.0, "available_balance": 10_000.0, "entry_price": 100.0, "atr": 1.0,
        "signal_strength": 1.0, "confluence_multiplier": 1.0, "limits": MARKET,
    }
    arguments.update(overrides)
    return manager.calculate_position_size(**arguments)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- sizing
def test_size_risks_the_configured_fraction_of_equity_at_the_atr_stop() -> None:
    decision = size(DynamicRiskManager(UNCAPPED))
    # budget 1% of 10k = 100; stop 2 x ATR = 98; 100 / 2 = 50 units
    assert decision.stop_price == 98.0
    assert decision.quantity == 50.0
    assert decision.notional == 5_000.0
    assert decision.risk_amount == pytest.approx(100.0)
    assert decision.reason == "sized by risk"
    assert decision.approved


def test_size_scales_with_signal_strength_and_confluence() -> None:
    decision = size(DynamicRiskManager(UNCAPPED), signal_strength=0.5, confluence_multiplier=1.5)
    assert decision.quantity == 37.5


def test_size_shrinks_in_proportion_to_volatility_above_its_median() -> None:
    manager = DynamicRiskManager(UNCAPPED)
    assert size(manager, volatility_ratio=2.0).quantity == 25.0


def test_size_is_not_enlarged_by_volatility_below_its_median() -> None:
    manager = DynamicRiskManager(UNCAPPED)
    assert size(manager, volatility_ratio=0.5).quantity == 50.0


def test_size_multiplier_from_a_half_open_breaker_halves_the_size() -> None:
    assert size(DynamicRiskManager(UNCAPPED), size_multiplier=0.5).quantity == 25.0


def test_the_seed_defaults_are_sized_by_risk_not_by_a_cap() -> None:
    decision = size(DynamicRiskManager(RiskConfig()))
    # 1% of 10k at risk over a 2-unit stop distance: 50 units, 50% of equity in notional, no cap binds
    assert decision.quantity == 50.0
    assert decision.bound is SizeBound.RISK


def test_max_position_percent_caps_the_share_of_equity_at_risk() -> None:
    decision = size(DynamicRiskManager(RiskConfig(risk_per_trade_percent=5.0, max_position_size_percent=2.0)))
    # 5% would be asked; 2% of 10k = 200 at risk over 2 per unit = 100 units
    assert decision.quantity == 100.0
    assert decision.risk_amount == pytest.approx(200.0)
    assert decision.bound is SizeBound.MAX_RISK
    assert decision.reason == "risk capped at 2.0% of equity"


def test_the_risk_cap_applies_after_confluence_and_strength_scaling() -> None:
    manager = DynamicRiskManager(RiskConfig(risk_per_trade_percent=3.0, max_position_size_percent=2.0))
    assert size(manager, signal_strength=0.5).bound is SizeBound.RISK  # 1.5% at risk: under the cap
    assert size(manager, signal_strength=0.5).quantity == 75.0


def test_max_notional_percent_caps_the_notional() -> None:
    decision = size(DynamicRiskManager(RiskConfig(max_notional_percent=20.0)))
    assert decision.quantity == 20.0  # 20% of 10k = 2,000 notional at 100
    assert decision.bound is SizeBound.MAX_NOTIONAL
    assert decision.reason == "notional capped at 20.0% of equity"


def test_size_is_capped_by_available_balance() -> None:
    decision = size(DynamicRiskManager(UNCAPPED), available_balance=150.0)
    assert decision.quantity == 1.5
    assert decision.bound is SizeBound.BALANCE
    assert decision.reason == "capped by available balance"


@settings(max_examples=200, deadline=None)
@given(
    base_risk=st.floats(min_value=0.05, max_value=1.0),
    factor=st.floats(min_value=1.1, max_value=4.0),
    entry=st.floats(min_value=0.01, max_value=1e5),
    atr_ratio=st.floats(min_value=0.005, max_value=0.2),
    strength=st.floats(min_value=0.2, max_value=1.0),
    confluence=st.sampled_from([0.5, 0.75, 1.0]),
)
def test_quantity_is_proportional_to_the_risk_setting_until_a_cap_binds(
    base_risk: float, factor: float, entry: float, atr_ratio: float, strength: float, confluence: float
) -> None:
    market = MarketLimits("X/USDT", lot_step=1e-8, tick_size=1e-8)

    def sized(risk_percent: float):  # type: ignore[no-untyped-def]
        manager = DynamicRiskManager(RiskConfig(risk_per_trade_percent=risk_percent, max_position_size_percent=100.0))
        return size(manager, entry_price=entry, atr=entry * atr_ratio, signal_strength=strength,
                    confluence_multiplier=confluence, limits=market, equity=1e6, available_balance=1e6)

    low, high = sized(base_risk), sized(base_risk * factor)
    assume(low.bound is SizeBound.RISK and high.bound is SizeBound.RISK and low.quantity > 1e-4)
    lot_rounding = 2 * market.lot_step / low.quantity  # each size floors to the lot: at most one step less
    assert high.quantity / low.quantity == pytest.approx(factor, rel=lot_rounding)


def test_quantity_is_rounded_down_to_the_lot_step() -> None:
    market = MarketLimits("X/USDT", lot_step=0.01, tick_size=0.01)
    # budget 100 / unit risk 3 (ATR 1.5) = 33.333.. -> 33.33
    assert size(DynamicRiskManager(UNCAPPED), atr=1.5, limits=market).quantity == 33.33


def test_short_size_uses_the_stop_above_entry() -> None:
    decision = size(DynamicRiskManager(UNCAPPED), side=PositionSide.SHORT)
    assert decision.stop_price == 102.0
    assert decision.quantity == 50.0


@pytest.mark.parametrize(
    ("overrides", "reason_part"),
    [
        ({"equity": 0.0}, "equity"),
        ({"equity": -500.0}, "equity"),
        ({"available_balance": 0.0}, "available balance"),
        ({"entry_price": 0.0}, "entry price"),
        ({"atr": 0.0}, "ATR"),
        ({"atr": math.nan}, "non-finite"),
        ({"equity": math.inf}, "non-finite"),
        ({"signal_strength": 0.0}, "risk scale is zero"),
        ({"confluence_multiplier": 0.0}, "risk scale is zero"),
        ({"size_multiplier": 0.0}, "risk scale is zero"),
        ({"volatility_ratio": math.nan}, "volatility"),
        ({"volatility_ratio": 0.0}, "volatility"),
    ],
)
def test_invalid_inputs_are_refused_with_a_reason(overrides: dict[str, float], reason_part: str) -> None:
    decision = size(DynamicRiskManager(UNCAPPED), **overrides)
    assert decision.quantity == 0.0 and not decision.approved
    assert decision.notional == 0.0 and decision.risk_amount == 0.0
    assert reason_part in decision.reason


def test_size_under_one_lot_step_is_refused() -> None:
    market = MarketLimits("X/USDT", lot_step=1.0, tick_size=0.01)
    decision = size(DynamicRiskManager(RiskConfig(max_notional_percent=0.5)), limits=market)
    assert decision.quantity == 0.0  # 0.5% of 10k = 50 notional = 0.5 units < 1 lot
    assert "lot step" in decision.reason


@pytest.mark.parametrize(
    ("min_notional", "approved"), [(4_999.99, True), (5_000.0, True), (5_000.01, False)],
    ids=["just-under", "at", "just-over"],
)
def test_min_notional_boundary_at_the_minimum_is_allowed(min_notional: float, approved: bool) -> None:
    market = MarketLimits("X/USDT", lot_step=0.001, tick_size=0.01, min_notional=min_notional)
    decision = size(DynamicRiskManager(UNCAPPED), limits=market)  # sizes to 5,000 notional
    assert decision.approved is approved
    if not approved:
        assert "below market minimum" in decision.reason
        assert decision.stop_price == 98.0  # still tells the caller where the stop would be


@pytest.mark.parametrize(("min_qty", "approved"), [(49.999, True), (50.0, True), (50.001, False)])
def test_min_qty_boundary_at_the_minimum_is_allowed(min_qty: float, approved: bool) -> None:
    market = MarketLimits("X/USDT", lot_step=0.001, tick_size=0.01, min_qty=min_qty)
    assert size(DynamicRiskManager(UNCAPPED), limits=market).approved is approved


def test_sizing_is_refused_while_a_loss_limit_halts_trading() -> None:
    manager = DynamicRiskManager(UNCAPPED)
    manager.check_drawdown_limits(10_000.0, 0)
    assert manager.check_drawdown_limits(8_900.0, 1).action is RiskAction.CLOSE_ALL_AND_HALT
    decision = size(manager, equity=8_900.0)
    assert decision.quantity == 0.0
    assert "halted" in decision.reason
    assert manager.should_halt_trading()


@settings(max_examples=150, deadline=None)
@given(
    equity=st.floats(min_value=1.0, max_value=1e8),
    balance=st.floats(min_value=0.01, max_value=1e8),
    entry=st.floats(min_value=0.0001, max_value=1e5),
    atr_ratio=st.floats(min_value=1e-5, max_value=0.3),
    strength=st.floats(min_value=0.0, max_value=1.0),
    confluence=st.floats(min_value=0.0, max_value=2.0),
    max_position=st.floats(min_value=0.1, max_value=100.0),
    max_risk=st.floats(min_value=0.1, max_value=5.0),
    lot_step=st.sampled_from([1e-8, 1e-5, 0.001, 0.1, 1.0]),
    side=st.sampled_from(list(PositionSide)),
)
def test_size_never_exceeds_either_cap_nor_the_risk_budget(
    equity: float, balance: float, entry: float, atr_ratio: float, strength: float, confluence: float,
    max_position: float, max_risk: float, lot_step: float, side: PositionSide,
) -> None:
    manager = DynamicRiskManager(RiskConfig(max_notional_percent=max_position, max_position_size_percent=max_risk))
    market = MarketLimits("X/USDT", lot_step=lot_step, tick_size=1e-8)
    decision = size(manager, equity=equity, available_balance=balance, entry_price=entry, atr=entry * atr_ratio,
                    signal_strength=strength, confluence_multiplier=confluence, limits=market, side=side)
    tolerance = 1.0 + LIMIT_REL_EPS
    assert decision.quantity >= 0.0
    assert decision.quantity * entry <= equity * max_position / 100.0 * tolerance
    assert decision.quantity * entry <= balance * tolerance
    assert decision.risk_amount <= equity * 0.01 * strength * confluence * tolerance
    assert decision.risk_amount <= equity * max_risk / 100.0 * tolerance
    assert is_step_multiple(decision.quantity, lot_step)


@settings(max_examples=100, deadline=None)
@given(
    equity=st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
    balance=st.floats(min_value=0.0, max_value=1e9),
    entry=st.floats(min_value=0.01, max_value=1e5),
)
def test_zero_or_negative_equity_never_produces_an_order(equity: float, balance: float, entry: float) -> None:
    decision = size(DynamicRiskManager(UNCAPPED), equity=equity, available_balance=balance, entry_price=entry,
                    atr=entry * 0.01)
    assert decision.quantity == 0.0 and decision.notional == 0.0


# ---------------------------------------------------------------------------------------------- stops
def test_long_stop_is_atr_multiple_below_entry_rounded_away_from_entry() -> None:
    manager = DynamicRiskManager(RiskConfig(stop_atr_multiple=2.0))
    # 100 - 0.666 = 99.334 -> down to 99.33 (further from entry)
    assert manager.calculate_dynamic_stop_loss(PositionSide.LONG, 100.0, 0.333, MARKET) == 99.33


def test_short_stop_is_atr_multiple_above_entry_rounded_away_from_entry() -> None:
    manager = DynamicRiskManager(RiskConfig(stop_atr_multiple=2.0))
    assert manager.calculate_dynamic_stop_loss(PositionSide.SHORT, 100.0, 0.333, MARKET) == 100.67


@pytest.mark.parametrize("atr", [0.0, 0.001, 1e-12])
def test_a_sub_tick_atr_distance_puts_the_stop_one_tick_beyond_entry(atr: float) -> None:
    manager = DynamicRiskManager(RiskConfig())
    assert manager.calculate_dynamic_stop_loss(PositionSide.LONG, 100.0, atr, MARKET) == 99.99
    assert manager.calculate_dynamic_stop_loss(PositionSide.SHORT, 100.0, atr, MARKET) == 100.01


def test_a_long_stop_that_would_be_negative_is_raised_to_one_tick() -> None:
    manager = DynamicRiskManager(RiskConfig())
    assert manager.calculate_dynamic_stop_loss(PositionSide.LONG, 100.0, 80.0, MARKET) == 0.01


@pytest.mark.parametrize(("entry", "atr"), [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (100.0, -1.0),
                                             (100.0, math.nan), (0.01, 1.0)])
def test_stop_on_invalid_input_raises(entry: float, atr: float) -> None:
    with pytest.raises(RiskManagementException):
        DynamicRiskManager(RiskConfig()).calculate_dynamic_stop_loss(PositionSide.LONG, entry, atr, MARKET)


@settings(max_examples=200, deadline=None)
@given(
    entry=st.floats(min_value=0.001, max_value=1e6),
    atr_ratio=st.floats(min_value=0.0, max_value=2.0),
    tick=st.sampled_from([1e-8, 1e-4, 0.01, 0.5]),
    multiple=st.floats(min_value=0.1, max_value=10.0),
    side=st.sampled_from(list(PositionSide)),
)
def test_stop_is_always_on_the_loss_side_and_on_the_tick_grid(
    entry: float, atr_ratio: float, tick: float, multiple: float, side: PositionSide
) -> None:
    assume(entry > 2 * tick)
    manager = DynamicRiskManager(RiskConfig(stop_atr_multiple=multiple))
    stop = manager.calculate_dynamic_stop_loss(side, entry, entry * atr_ratio, MarketLimits("X", tick_size=tick))
    if side is PositionSide.LONG:
        assert 0.0 < stop < entry
    else:
        assert stop > entry
    assert is_step_multiple(stop, tick)
    # Never closer to entry than the ATR distance asks for (rounding goes away from entry), up to the
    # float noise of prices this large (a tick of 1e-8 on a 1e6 price is at the edge of float precision):
    # the stop is k * tick with k ~ 1e14, so its own ulp (a short's stop can be far above entry) counts too.
    slack = 16 * (math.ulp(entry) + math.ulp(stop)) + tick * STEP_EPS
    assert abs(entry - stop) >= min(multiple * entry * atr_ratio, entry - tick) - slack


def test_reconfigure_applies_new_limits_and_keeps_the_account_state() -> None:
    manager = DynamicRiskManager(RiskConfig())
    manager.check_drawdown_limits(10_000.0, 0)
    manager.reconfigure(RiskConfig(max_drawdown_percent=3.0))
    assert manager.check_drawdown_limits(9_700.0, 1).action is RiskAction.CLOSE_ALL_AND_HALT


def test_risk_manager_state_round_trips_through_json() -> None:
    manager = DynamicRiskManager(RiskConfig())
    manager.check_drawdown_limits(10_000.0, 0)
    manager.check_drawdown_limits(8_900.0, 1)
    restored = DynamicRiskManager.from_state(RiskConfig(), json.loads(json.dumps(manager.to_state())))
    assert restored.to_state() == manager.to_state()
    assert restored.should_halt_trading()
