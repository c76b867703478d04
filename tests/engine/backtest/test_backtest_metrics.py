"""Specification of PerformanceMetrics, cross-checked against empyrical-reloaded and quantstats."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backtest.metrics import DAYS_PER_YEAR, MS_PER_DAY, compute_metrics, daily_returns, drawdown_series
from engine.domain.models import ClosedTrade, PositionSide

HOUR_MS = 3_600_000
START_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC


def _curve(seed: int = 7, bars: int = 24 * 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    equity = 10_000 * np.cumprod(1 + rng.normal(0.00005, 0.003, bars))
    times = START_MS + (np.arange(bars) + 1) * HOUR_MS  # bar closes
    return times, equity


def _trade(pnl: float, exit_ms: int = START_MS) -> ClosedTrade:
    return ClosedTrade("BTC/USDT", PositionSide.LONG, 1.0, 100.0, 100.0 + pnl, START_MS, exit_ms, pnl, 0.1)


def _daily_series(times: np.ndarray, equity: np.ndarray) -> pd.Series:
    returns = daily_returns(times, equity, 10_000.0)
    index = pd.date_range("2025-01-01", periods=len(returns), freq="D", tz="UTC")
    return pd.Series(returns, index=index)


def test_sharpe_and_sortino_match_empyrical_with_365_periods() -> None:
    empyrical = pytest.importorskip("empyrical")
    times, equity = _curve()
    metrics = compute_metrics(times, equity, 10_000.0, [], HOUR_MS)
    daily = _daily_series(times, equity)
    assert metrics.sharpe_ratio == pytest.approx(empyrical.sharpe_ratio(daily, period="daily", annualization=365))
    assert metrics.sortino_ratio == pytest.approx(empyrical.sortino_ratio(daily, annualization=365))


def test_sharpe_sortino_and_volatility_match_quantstats() -> None:
    quantstats = pytest.importorskip("quantstats")
    times, equity = _curve(seed=11)
    metrics = compute_metrics(times, equity, 10_000.0, [], HOUR_MS)
    daily = _daily_series(times, equity)
    assert metrics.sharpe_ratio == pytest.approx(quantstats.stats.sharpe(daily, periods=365))
    assert metrics.sortino_ratio == pytest.approx(quantstats.stats.sortino(daily, periods=365))
    assert metrics.volatility_annual == pytest.approx(quantstats.stats.volatility(daily, periods=365))


def test_max_drawdown_matches_empyrical_on_the_per_bar_curve() -> None:
    empyrical = pytest.importorskip("empyrical")
    times, equity = _curve(seed=3)
    metrics = compute_metrics(times, equity, 10_000.0, [], HOUR_MS)
    bar_returns = pd.Series(np.diff(np.concatenate(([10_000.0], equity))) / np.concatenate(([10_000.0], equity[:-1])))
    assert metrics.max_drawdown == pytest.approx(-empyrical.max_drawdown(bar_returns))


def test_annual_return_is_cagr_over_calendar_time() -> None:
    times = START_MS + (np.arange(24 * 365) + 1) * HOUR_MS
    equity = np.linspace(10_000, 12_000, len(times))
    metrics = compute_metrics(times, equity, 10_000.0, [], HOUR_MS)
    assert metrics.days == pytest.approx(365.0)
    assert metrics.annual_return == pytest.approx(0.2)
    assert metrics.total_return == pytest.approx(0.2)


def test_drawdown_is_a_fraction_of_the_running_peak_and_lasts_until_recovery() -> None:
    equity = np.array([10_000, 11_000, 9_900, 10_500, 11_000, 11_500], dtype=float)
    times = START_MS + (np.arange(6) + 1) * HOUR_MS
    metrics = compute_metrics(times, equity, 10_000.0, [], HOUR_MS)
    assert metrics.max_drawdown == pytest.approx(0.1)
    assert metrics.max_drawdown_amount == pytest.approx(1_100)
    assert metrics.max_drawdown_duration_bars == 2
    assert metrics.max_drawdown_duration_days == pytest.approx(2 / 24)
    assert metrics.calmar_ratio == pytest.approx(metrics.annual_return / 0.1)
    assert metrics.recovery_factor == pytest.approx(1_500 / 1_100)


def test_trade_statistics_follow_the_per_trade_definitions() -> None:
    pnls = [10.0, -5.0, -5.0, -2.0, 20.0, -1.0]
    trades = [_trade(p, START_MS + i) for i, p in enumerate(pnls)]
    times, equity = _curve(bars=48)
    metrics = compute_metrics(times, equity, 10_000.0, trades, HOUR_MS)
    assert (metrics.total_trades, metrics.winning_trades, metrics.losing_trades) == (6, 2, 4)
    assert metrics.win_rate == pytest.approx(2 / 6)  # backtesting.py: share of trades with pnl > 0
    assert metrics.profit_factor == pytest.approx(30 / 13)
    assert metrics.expectancy == pytest.approx(sum(pnls) / 6)
    assert metrics.max_consecutive_losses == 3


def test_exposure_is_the_share_of_bars_in_the_market() -> None:
    times, equity = _curve(bars=10)
    in_market = np.array([0, 1, 1, 1, 0, 0, 0, 0, 1, 0], dtype=bool)
    assert compute_metrics(times, equity, 10_000.0, [], HOUR_MS, in_market).exposure == pytest.approx(0.4)


def test_no_trades_and_a_flat_curve_give_undefined_ratios_not_errors() -> None:
    times = START_MS + (np.arange(72) + 1) * HOUR_MS
    metrics = compute_metrics(times, np.full(72, 10_000.0), 10_000.0, [], HOUR_MS)
    assert metrics.total_trades == 0 and math.isnan(metrics.win_rate) and math.isnan(metrics.sharpe_ratio)
    assert metrics.max_drawdown == 0.0


def test_a_bar_closing_at_midnight_counts_for_the_day_it_covered() -> None:
    times = np.array([START_MS + 23 * HOUR_MS, START_MS + MS_PER_DAY, START_MS + MS_PER_DAY + HOUR_MS])
    returns = daily_returns(times, np.array([100.0, 110.0, 121.0]), 100.0)
    np.testing.assert_allclose(returns, [0.1, 0.1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=1e6), min_size=1, max_size=60))
def test_drawdown_ratio_stays_in_0_1(values: list[float]) -> None:
    ratio, amount = drawdown_series(np.array(values), values[0])
    assert ((ratio >= 0) & (ratio <= 1)).all() and (amount >= 0).all()


def test_days_per_year_is_365() -> None:
    assert DAYS_PER_YEAR == 365


SEED_METRIC_NAMES = (
    "total_trades", "winning_trades", "losing_trades", "win_rate", "profit_factor", "sharpe_ratio", "sortino_ratio",
    "max_drawdown", "max_drawdown_duration", "recovery_factor", "total_return", "annual_return", "calmar_ratio",
    "expectancy", "exposure", "max_consecutive_losses",
)


def test_the_result_carries_every_seed_metric_under_the_seeds_own_name() -> None:
    equity = np.array([10_000, 11_000, 9_900, 10_500, 11_000, 11_500], dtype=float)
    times = START_MS + (np.arange(6) + 1) * HOUR_MS
    values = compute_metrics(times, equity, 10_000.0, [_trade(5.0)], HOUR_MS).to_dict()
    assert set(SEED_METRIC_NAMES) <= set(values)
    assert values["max_drawdown_duration"] == values["max_drawdown_duration_bars"] == 2, "in bars"
