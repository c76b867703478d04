"""Specification of the quiet-bar fast path: skipping provably idle work on an open position changes nothing.

``DecisionCore`` skips the trailing update inside the policy's quiet bounds (``engine.core.trailing.quiet_trail``)
and ``SimulatedAccount`` skips the stop/target triggers inside ``FillModel.untouched_band``. Each run below
is done twice, with both private switches on and off, and must give the same result JSON, trades and
event log byte for byte.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.strategy import StrategyParams
from engine.backtest import BacktestEngine
from engine.backtest.params import ParameterSet
from engine.backtest.sma_cross import prepare_sma_cross, sma_cross_breaker, sma_cross_risk
from engine.config import BacktestConfig, BreakerConfig, RiskConfig
from engine.core.trailing import (
    ChandelierTrailing,
    PercentTrailing,
    SwingTrailing,
    quiet_candidate_bound,
    update_trailing_stop,
)
from engine.data.sample import load_sample
from engine.domain.models import Candles, MarketLimits, PositionSide
from engine.simulation.account import SimulatedAccount
from engine.simulation.fills import FillModel

BARS = 2500

CONFIGS: dict[str, dict[str, Any]] = {
    "percent": {"risk": {"trailing_policy": "percent", "trailing_stop_activation_percent": 0.5}},
    "percent_no_target_shorts": {
        "risk": {"trailing_policy": "percent", "trailing_stop_activation_percent": 0.3,
                 "trailing_stop_distance_percent": 0.8},
        "strategy": {"take_profit_atr_multiple": 0.0, "allow_short": True},
    },
    "atr": {"risk": {"trailing_policy": "atr", "chandelier_atr_multiple": 1.5}, "strategy": {"allow_short": True}},
    "atr_no_target": {"risk": {"trailing_policy": "atr"}, "strategy": {"take_profit_atr_multiple": 0.0}},
    "swing": {"risk": {"trailing_policy": "swing", "swing_lookback": 3}, "strategy": {"allow_short": True}},
    "tight_limits": {
        "risk": {"trailing_policy": "percent", "max_daily_loss_percent": 0.5, "max_drawdown_percent": 1.5,
                 "risk_per_trade_percent": 2.0, "max_position_size_percent": 100.0},
        "strategy": {"allow_short": True},
    },
}


@pytest.fixture(scope="module")
def data() -> dict[str, Candles]:
    return {s: load_sample(s, "1h").slice(0, BARS) for s in ("BTC/USDT", "ETH/USDT")}


def _run(engine: BacktestEngine, prepared: list[Any], parameters: ParameterSet, quiet: bool) -> tuple[str, ...]:
    """Result JSON, trades, event log, fills and a state trace of one run; how often the full trailing
    update ran; bars skipped as quiet runs."""
    accounts: list[SimulatedAccount] = []
    calls = [0]
    skipped_bars = [0]
    trace: list[str] = []

    def switch(sim: SimulatedAccount) -> None:
        sim.keep_events = True
        sim._quiet_bars = quiet
        sim.core._quiet_bars_enabled = quiet
        full_update = sim.core.risk.update_trailing_stop

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            return full_update(*args, **kwargs)

        sim.core.risk.update_trailing_stop = counted  # type: ignore[method-assign]
        skip = sim.skip_quiet_bars

        def counted_skip(*args: Any) -> Any:
            skipped = skip(*args)
            skipped_bars[0] += 0 if skipped is None else len(skipped)
            return skipped

        sim.skip_quiet_bars = counted_skip  # type: ignore[method-assign,assignment]
        # Full limit checks run at the same bars with the same equity in both modes (skipped ones are
        # deferred), and every position closes in the same state (best price, bars held, last price, stop).
        limits, portfolio = sim.core.limits, sim.core.portfolio
        check, close = limits.check, portfolio.close

        def traced_check(equity: float, now_ms: int, *, instant: bool = False) -> Any:
            trace.append(repr(("check", equity, now_ms, instant)))
            return check(equity, now_ms, instant=instant)

        def traced_close(symbol: str, *args: Any) -> Any:
            trace.append(repr(portfolio.positions[symbol]))
            return close(symbol, *args)

        limits.check = traced_check  # type: ignore[method-assign]
        portfolio.close = traced_close  # type: ignore[method-assign,assignment]
        accounts.append(sim)

    result = engine.simulate(prepared, None, parameters, on_account=switch)
    log = accounts[0].log
    state = repr(accounts[0].core.to_state()) + "\n".join(trace)
    return (result.to_json(), repr(log.trades), repr(log.events), repr(log.fills), state,
            str(calls[0]), str(skipped_bars[0]))


def _both(engine: BacktestEngine, prepared: list[Any], parameters: ParameterSet) -> tuple[tuple[str, ...], ...]:
    return _run(engine, prepared, parameters, True), _run(engine, prepared, parameters, False)


@pytest.mark.parametrize("symbols", [("BTC/USDT", "ETH/USDT"), ("ETH/USDT",)], ids=["two_symbols", "one_symbol"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_quiet_bar_fast_path_gives_identical_results(
    data: dict[str, Candles], name: str, symbols: tuple[str, ...]
) -> None:
    """One symbol also exercises the backtest loop's skipping of whole quiet runs (SimulatedAccount.skip_quiet_bars)."""
    config = CONFIGS[name]
    risk = RiskConfig(**config.get("risk", {}))
    strategy = StrategyParams(**config.get("strategy", {}))
    engine = BacktestEngine({s: data[s] for s in symbols}, strategy, risk=risk, breaker=BreakerConfig())
    parameters = ParameterSet(strategy, risk, engine.parameters.breaker)
    prepared = [engine.prepare(symbol, None, parameters) for symbol in symbols]
    fast, full = _both(engine, prepared, parameters)
    assert fast[:5] == full[:5]
    assert '"trades": []' not in fast[0]  # trades happened, so the comparison can fail
    assert int(fast[5]) < int(full[5])  # the fast path did skip full trailing updates
    if len(symbols) == 1 and risk.trailing_policy == "percent":
        assert int(fast[6]) > 0  # and whole quiet runs
    assert int(full[6]) == 0


def test_quiet_bar_configs_exercise_trailing_exits_targets_shorts_and_limit_halts(data: dict[str, Candles]) -> None:
    kinds: set[str] = set()
    sides: set[str] = set()
    events: set[str] = set()
    for config in CONFIGS.values():
        risk = RiskConfig(**config.get("risk", {}))
        strategy = StrategyParams(**config.get("strategy", {}))
        result = BacktestEngine(data, strategy, risk=risk, breaker=BreakerConfig()).run_backtest()
        kinds |= {t.exit_kind for t in result.trades}
        sides |= {t.trade.side.value for t in result.trades}
        events |= set(result.event_counts)
    assert {"trailing_stop", "target", "stop", "signal"} <= kinds
    assert sides == {"long", "short"}
    assert {"RiskLimitWarning", "RiskLimitBreached", "RiskHaltCleared", "TradingStateChanged"} <= events


def test_quiet_bar_fast_path_is_identical_on_the_sma_cross_workload(data: dict[str, Candles]) -> None:
    candles = data["BTC/USDT"]
    risk = sma_cross_risk()
    breaker = sma_cross_breaker()
    params = StrategyParams(take_profit_atr_multiple=0.0)
    engine = BacktestEngine(candles, params, risk=risk, breaker=breaker, backtest=BacktestConfig())
    fast, full = _both(engine, [prepare_sma_cross(candles)], ParameterSet(params, risk, breaker))
    assert fast[:5] == full[:5]
    assert int(fast[5]) < int(full[5]) // 10
    assert int(fast[6]) > 0


# ------------------------------------------------------------------------------------------ bounds
_prices = st.floats(1e-3, 1e6, allow_nan=False)
_ticks = st.sampled_from([1e-8, 1e-4, 0.01, 0.1, 0.5, 1.0])
_sides = st.sampled_from([PositionSide.LONG, PositionSide.SHORT])


@settings(max_examples=200, deadline=None)
@given(side=_sides, stop=_prices, tick=_ticks, offset=st.floats(0.0, 1e3), ratio=st.floats(0.0, 1.0))
def test_candidates_on_the_quiet_side_of_the_bound_never_move_the_stop(
    side: PositionSide, stop: float, tick: float, offset: float, ratio: float
) -> None:
    bound = quiet_candidate_bound(side, stop, tick)
    sign = 1.0 if side is PositionSide.LONG else -1.0
    assert sign * (bound - stop) >= -2 * tick  # tight: within two ticks of the stop, not a useless bound
    for raw in (bound, bound - sign * offset * tick, bound - sign * ratio * abs(bound)):
        # The swing policy's candidate is the swing level itself: a direct probe of the rounding rule.
        update = update_trailing_stop(SwingTrailing(), side, stop, stop, stop, MarketLimits("X", tick_size=tick),
                                      swing_price=raw)
        assert not update.moved


@settings(max_examples=200, deadline=None)
@given(side=_sides, entry=_prices, stop_ratio=st.floats(0.5, 1.5), tick=_ticks,
       activation=st.floats(0.0, 20.0), distance=st.floats(0.05, 20.0), below=st.floats(0.0, 1.0))
def test_extremes_inside_the_percent_policy_bound_never_move_the_stop(
    side: PositionSide, entry: float, stop_ratio: float, tick: float, activation: float, distance: float,
    below: float,
) -> None:
    policy = PercentTrailing(activation, distance)
    stop = entry * stop_ratio
    limits = MarketLimits("X", tick_size=tick)
    bound = policy.quiet_extreme_bound(side, entry, quiet_candidate_bound(side, stop, tick))
    assert math.isfinite(bound)
    sign = 1.0 if side is PositionSide.LONG else -1.0
    for extreme in (bound, bound - sign * below * abs(bound) * 0.1):
        assert not update_trailing_stop(policy, side, entry, stop, extreme, limits).moved


def test_percent_bound_is_tight_enough_that_the_next_tick_of_extreme_can_move() -> None:
    policy = PercentTrailing(1.0, 0.5)
    limits = MarketLimits("X", tick_size=0.01)
    bound = policy.quiet_extreme_bound(PositionSide.LONG, 100.0, quiet_candidate_bound(PositionSide.LONG, 98.0, 0.01))
    assert not update_trailing_stop(policy, PositionSide.LONG, 100.0, 98.0, bound, limits).moved
    assert update_trailing_stop(policy, PositionSide.LONG, 100.0, 98.0, bound * 1.0001, limits).moved


def test_chandelier_and_swing_have_no_extreme_bound_because_atr_and_swings_move() -> None:
    assert not hasattr(ChandelierTrailing(), "quiet_extreme_bound")
    assert not hasattr(SwingTrailing(), "quiet_extreme_bound")


@settings(max_examples=200, deadline=None)
@given(side=_sides, stop=_prices, target=st.none() | _prices, bar=st.lists(_prices, min_size=3, max_size=3))
def test_a_bar_inside_the_untouched_band_triggers_neither_stop_nor_target(
    side: PositionSide, stop: float, target: float | None, bar: list[float]
) -> None:
    model = FillModel()
    low, high = model.untouched_band(side, stop, target)
    bar_low, bar_open, bar_high = sorted(bar)
    inside = low < bar_low and bar_high < high
    stop_at = model.stop_trigger_price(side, stop, bar_open, bar_high, bar_low)
    target_at = None if target is None else model.target_trigger_price(side, target, bar_open, bar_high, bar_low)
    assert inside == (stop_at is None and target_at is None)
