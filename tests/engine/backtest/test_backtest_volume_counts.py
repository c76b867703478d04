"""Specification: a backtest reports how many entries each volume rule vetoed or downsized."""

from __future__ import annotations

import pytest

from engine.analysis.strategy import StrategyParams
from engine.analysis.volume_rules import DOWNSIZED_DIVERGENCE, DOWNSIZED_INSTITUTIONAL
from engine.backtest import BacktestEngine, BacktestResult
from engine.backtest.report import compare_table
from engine.data.sample import load_sample

BARS = 4000
IGNORE_VOLUME = {"breakout_volume_rule": "ignore", "institutional_against_action": "ignore",
                 "divergence_against_action": "ignore"}


def _run(params: StrategyParams) -> BacktestResult:
    return BacktestEngine({"BTC/USDT": load_sample("BTC/USDT", "1h").slice(0, BARS)}, params).run_backtest()


@pytest.fixture(scope="module")
def defaults() -> BacktestResult:
    return _run(StrategyParams())


def test_the_default_volume_rules_veto_and_downsize_entry_signals(defaults: BacktestResult) -> None:
    metrics = defaults.metrics_dict()
    assert metrics["signals_candidates"] > metrics["total_trades"] > 0
    assert metrics["signals_vetoed_breakout_volume"] > 0
    assert metrics["signals_downsized_divergence"] > 0


def test_downsized_entries_are_counted_from_the_trades_taken(defaults: BacktestResult) -> None:
    metrics = defaults.metrics_dict()
    assert metrics["entries_downsized_divergence"] == sum(
        1 for t in defaults.trades if t.volume_effect & DOWNSIZED_DIVERGENCE)
    assert metrics["entries_downsized_institutional"] == sum(
        1 for t in defaults.trades if t.volume_effect & DOWNSIZED_INSTITUTIONAL)
    assert metrics["entries_downsized_divergence"] <= metrics["signals_downsized_divergence"]
    downsized = [t for t in defaults.trades if t.volume_effect & DOWNSIZED_DIVERGENCE]
    assert downsized and all("divergence against the signal, entry downsized" in t.entry_reason for t in downsized)


def test_with_every_volume_rule_ignored_nothing_is_vetoed_or_downsized() -> None:
    metrics = _run(StrategyParams().with_overrides(**IGNORE_VOLUME)).metrics_dict()
    vetoed = [k for k in metrics if k.startswith(("signals_vetoed", "signals_downsized", "entries_downsized"))]
    assert vetoed and all(metrics[k] == 0 for k in vetoed)


def test_the_report_table_lists_each_rule(defaults: BacktestResult) -> None:
    table = compare_table([("run", defaults.metrics_dict())])
    (line,) = [row for row in table.splitlines() if row.startswith("Vetoed: breakout without volume")]
    assert line.split()[-1] == str(defaults.metrics_dict()["signals_vetoed_breakout_volume"])
