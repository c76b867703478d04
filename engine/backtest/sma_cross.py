"""Provides the SMA(fast/slow)-cross workload with an ATR stop, run through the shared bar loop.

A benchmark adapter, not a trading strategy: it replaces the strategy's entry and exit arrays with a
moving-average cross (long when the fast SMA crosses above the slow one, exit when it crosses below,
initial stop ``stop_atr_multiple`` x ATR) and runs them through the same ``SimulatedAccount`` /
``FillModel`` / ``DecisionCore`` as every backtest, so the fill rules are the ones the peers are compared
with. Risk settings make sizing a fixed share of equity and switch trailing, limits and breakers off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from engine.analysis import indicators as ind
from engine.analysis.mtf import MtfFrame
from engine.analysis.signals import SignalFrame
from engine.analysis.strategy import PreparedSymbol, StrategyParams
from engine.analysis.volume import VolumeFrame
from engine.backtest.engine import BacktestEngine
from engine.backtest.params import ParameterSet
from engine.backtest.result import BacktestResult
from engine.config import BacktestConfig, BreakerConfig, RiskConfig
from engine.domain.models import Candles


@dataclass(frozen=True)
class _Reasons:
    reasons: tuple[str, ...]


class _CrossSignals:
    """Stands in for the SignalFrame: only the reasons the decision path writes into its logs."""

    def signal_at(self, index: int) -> _Reasons:
        return _Reasons(("sma cross",))


class _NoTrends:
    def trends_at(self, index: int) -> dict[str, int]:
        return {}


def sma_cross_risk(position_percent: float = 95.0, stop_atr_multiple: float = 2.0, atr_period: int = 14) -> RiskConfig:
    """Sizing as a fixed share of equity; no trailing, no loss limits."""
    return RiskConfig(
        max_position_size_percent=100.0,
        risk_per_trade_percent=100.0,
        max_notional_percent=position_percent,
        max_daily_loss_percent=100.0,
        max_drawdown_percent=100.0,
        atr_lookback=atr_period,
        stop_atr_multiple=stop_atr_multiple,
        trailing_stop_activation_percent=100.0,
    )


def sma_cross_breaker() -> BreakerConfig:
    return BreakerConfig(volatility_multiplier=1e9, max_consecutive_losses=10**9, daily_loss_percent=100.0, latching=[])


def prepare_sma_cross(candles: Candles, fast: int = 20, slow: int = 50, atr_period: int = 14) -> PreparedSymbol:
    """Per-bar inputs of the SMA cross (values at bar t from bars 0..t)."""
    fast_ma = ind.sma(candles.close, fast)
    slow_ma = ind.sma(candles.close, slow)
    above = fast_ma > slow_ma
    below = fast_ma < slow_ma
    was_above = np.concatenate(([False], above[:-1]))
    was_below = np.concatenate(([False], below[:-1]))
    cross_up = above & ~was_above & np.concatenate(([False], np.isfinite(slow_ma[:-1])))
    cross_down = below & ~was_below
    n = len(candles)
    nan = np.full(n, np.nan)
    return PreparedSymbol(
        symbol=candles.symbol,
        candles=candles,
        signals=cast(SignalFrame, _CrossSignals()),
        mtf=cast(MtfFrame, _NoTrends()),
        volume=cast(VolumeFrame, None),
        entry_direction=cross_up.astype(np.int8),
        entry_strength=cross_up.astype(np.float64),
        entry_multiplier=cross_up.astype(np.float64),
        exit_long=cross_down,
        exit_short=np.zeros(n, dtype=bool),
        atr=ind.atr(candles.high, candles.low, candles.close, atr_period),
        volatility_ratio=np.ones(n),
        normal_volatility=nan,
        volatility_alarm=np.zeros(n, dtype=bool),
        swing_low=nan,
        swing_high=nan,
    )


def run_sma_cross(
    candles: Candles, backtest: BacktestConfig, fast: int = 20, slow: int = 50, **risk: Any
) -> BacktestResult:
    """Backtest the SMA cross on one symbol through the shared loop and return the usual result."""
    risk_config = sma_cross_risk(**risk)
    breaker = sma_cross_breaker()
    params = StrategyParams(take_profit_atr_multiple=0.0)
    engine = BacktestEngine(candles, params, risk=risk_config, breaker=breaker, backtest=backtest)
    prepared = prepare_sma_cross(candles, fast, slow, risk_config.atr_lookback)
    return engine.simulate([prepared], None, ParameterSet(params, risk_config, breaker))
