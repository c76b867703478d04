"""Specification: the risk settings decide the sizes of a real backtest, and the result says when a cap bound."""

from __future__ import annotations

import pytest

from engine.backtest import BacktestEngine, BacktestResult
from engine.backtest.markets import BINANCE_SPOT_LIMITS
from engine.backtest.report import compare_table
from engine.config import Settings
from engine.core.risk import SizeBound
from engine.data.sample import load_sample

BARS = 3000


def _run(**risk: float) -> BacktestResult:
    base = Settings()
    settings = base.model_copy(update={"risk": base.risk.model_copy(update=risk)})
    candles = {"BTC/USDT": load_sample("BTC/USDT", "1h").slice(0, BARS)}
    return BacktestEngine(candles, settings=settings).run_backtest()


@pytest.fixture(scope="module")
def quarter() -> BacktestResult:
    return _run(risk_per_trade_percent=0.25)


@pytest.fixture(scope="module")
def half() -> BacktestResult:
    return _run(risk_per_trade_percent=0.5)


def test_twice_the_risk_setting_buys_twice_the_first_position(quarter: BacktestResult, half: BacktestResult) -> None:
    small, large = quarter.trades[0].trade, half.trades[0].trade
    assert (small.symbol, small.entry_ms) == (large.symbol, large.entry_ms)  # same decision, same equity
    lot = BINANCE_SPOT_LIMITS["BTC/USDT"].lot_step
    assert large.quantity / small.quantity == pytest.approx(2.0, rel=2 * lot / small.quantity)


def test_different_risk_settings_give_different_sizes_on_every_trade(
    quarter: BacktestResult, half: BacktestResult
) -> None:
    assert len(quarter.trades) >= 10
    by_entry = {(t.trade.symbol, t.trade.entry_ms): t.trade.quantity for t in half.trades}
    shared = [(t.trade.quantity, by_entry[key]) for t in quarter.trades
              if (key := (t.trade.symbol, t.trade.entry_ms)) in by_entry]
    assert len(shared) >= 10
    assert all(large > 1.5 * small for small, large in shared)  # ~2x, less only where equity drifted apart


def test_with_the_defaults_no_cap_decides_the_size(quarter: BacktestResult) -> None:
    metrics = quarter.metrics_dict()
    assert metrics["capped_entries"] == 0
    assert metrics["entries_sized_by_risk"] == metrics["total_trades"]


def test_a_risk_setting_above_the_risk_cap_is_counted_as_capped() -> None:
    result = _run(risk_per_trade_percent=3.0, max_position_size_percent=2.0)
    metrics = result.metrics_dict()
    assert metrics["entries_sized_by_max_risk"] >= 1
    assert sum(metrics[f"entries_sized_by_{bound.value}"] for bound in SizeBound) == metrics["total_trades"]
    assert metrics["capped_entries"] == metrics["total_trades"] - metrics["entries_sized_by_risk"]
    for record in result.trades:
        if record.size_bound is SizeBound.MAX_RISK:
            assert "risk capped at 2.0% of equity" in record.entry_reason


def test_a_tight_notional_cap_binds_and_the_report_says_how_often() -> None:
    result = _run(max_notional_percent=10.0)
    metrics = result.metrics_dict()
    capped = metrics["entries_sized_by_max_notional"]
    assert capped >= 0.9 * metrics["total_trades"] > 0  # 10% of equity is below what 1% risk asks on most bars
    (line,) = [line for line in compare_table([("run", metrics)]).splitlines() if "max notional" in line]
    assert line.split()[-1] == str(capped)
