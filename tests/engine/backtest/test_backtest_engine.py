"""Specification of BacktestEngine: one shared equity, no look-ahead, deterministic results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.backtest import BacktestCancelled, BacktestEngine, BacktestResult, loop
from engine.backtest.markets import BINANCE_SPOT_LIMITS
from engine.data.sample import load_sample
from engine.domain.errors import BacktestException
from engine.domain.models import Candles
from engine.domain.precision import is_step_multiple, reaches

BARS = 4000
START = "2024-10-01"


@pytest.fixture(scope="module")
def data() -> dict[str, Candles]:
    return {s: load_sample(s, "1h").slice(0, BARS) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")}


@pytest.fixture(scope="module")
def portfolio_result(data: dict[str, Candles]) -> BacktestResult:
    return BacktestEngine(data).run_backtest(START)


def _trade_key(result: BacktestResult) -> list[tuple]:
    return [
        (
            t.trade.symbol,
            t.trade.entry_ms,
            t.trade.exit_ms,
            t.exit_kind,
            round(t.trade.quantity, 9),
            round(t.trade.entry_price, 6),
            round(t.trade.exit_price, 6),
        )
        for t in result.trades
    ]


def test_same_inputs_give_byte_identical_json(data: dict[str, Candles], portfolio_result: BacktestResult) -> None:
    again = BacktestEngine(dict(data)).run_backtest(START)
    assert again.to_json() == portfolio_result.to_json()


@pytest.mark.parametrize("cut_bar", [2000, 2700, 3500])
def test_a_run_cut_at_t_has_the_same_trades_up_to_t(data: dict[str, Candles], cut_bar: int) -> None:
    cut_ms = int(data["BTC/USDT"].open_time_ms[cut_bar])
    full = BacktestEngine(data).run_backtest(START)
    cut = BacktestEngine({s: c.between(None, cut_ms) for s, c in data.items()}).run_backtest(START)
    closed_in_cut = [t for t in _trade_key(cut) if t[3] != "end_of_data"]
    full_before_cut = [t for t in _trade_key(full) if t[2] < cut_ms]
    assert closed_in_cut == full_before_cut
    assert closed_in_cut  # the windows hold trades, so the test can fail


def test_an_end_time_equals_cutting_the_data(data: dict[str, Candles]) -> None:
    cut_ms = int(data["BTC/USDT"].open_time_ms[3000])
    by_end = BacktestEngine(data).run_backtest(START, cut_ms)
    by_data = BacktestEngine({s: c.between(None, cut_ms) for s, c in data.items()}).run_backtest(START)
    assert by_end.to_json() == by_data.to_json()


def test_no_trade_opens_before_start(portfolio_result: BacktestResult) -> None:
    start_ms = 1_727_740_800_000  # 2024-10-01
    assert portfolio_result.trades
    assert min(t.trade.entry_ms for t in portfolio_result.trades) > start_ms
    assert portfolio_result.start_ms == start_ms


def test_skipping_idle_bars_changes_nothing(data: dict[str, Candles], portfolio_result: BacktestResult) -> None:
    visited = BacktestEngine(data).run_backtest(START, skip_idle_bars=False)
    assert visited.to_json() == portfolio_result.to_json()


def test_a_lone_symbol_skipping_idle_bars_and_quiet_runs_gives_the_bar_by_bar_result(
    data: dict[str, Candles],
) -> None:
    lone = {"BTC/USDT": data["BTC/USDT"]}
    skipped = BacktestEngine(lone).run_backtest(START)
    visited = BacktestEngine(lone).run_backtest(START, skip_idle_bars=False)
    assert skipped.trades  # the comparison covers entries, exits and quiet runs
    assert skipped.to_json() == visited.to_json()


def test_symbols_share_one_equity(portfolio_result: BacktestResult) -> None:
    symbols = {t.trade.symbol for t in portfolio_result.trades}
    assert len(symbols) >= 2
    net = sum(t.trade.pnl for t in portfolio_result.trades)
    assert portfolio_result.equity[-1] == pytest.approx(portfolio_result.initial_capital + net)


def test_equity_is_sampled_once_per_bar_close(data: dict[str, Candles], portfolio_result: BacktestResult) -> None:
    opens = data["BTC/USDT"].open_time_ms
    expected = opens[opens >= portfolio_result.start_ms] + 3_600_000
    np.testing.assert_array_equal(portfolio_result.equity_time_ms, expected)


def test_quantities_respect_lot_step_and_minimums(portfolio_result: BacktestResult) -> None:
    for record in portfolio_result.trades:
        limits = BINANCE_SPOT_LIMITS[record.trade.symbol]
        assert is_step_multiple(record.trade.quantity, limits.lot_step)
        assert reaches(record.trade.quantity * record.trade.entry_price, limits.min_notional * 0.99)


def test_positions_open_at_the_end_are_closed_as_end_of_data(data: dict[str, Candles]) -> None:
    full = BacktestEngine(data).run_backtest(START)
    spanning = next(
        t for t in full.trades if t.exit_kind != "end_of_data" and t.trade.exit_ms - t.trade.entry_ms > 3_600_000
    )
    cut_ms = spanning.trade.entry_ms + 3_600_000
    result = BacktestEngine(data).run_backtest(START, cut_ms + 3_600_000)
    last = result.trades[-1]
    assert last.exit_kind == "end_of_data" and last.trade.exit_ms == result.end_ms
    assert result.equity[-1] == pytest.approx(result.initial_capital + sum(t.trade.pnl for t in result.trades))


def test_the_result_records_fill_assumptions_and_flags_ambiguous_bars(portfolio_result: BacktestResult) -> None:
    document = json.loads(portfolio_result.to_json())
    assert document["assumptions"]["fills"]["stop_and_target_same_bar"].startswith("assume the stop")
    assert document["assumptions"]["fills"]["slippage_rate"] == 0.0005
    flagged = sum(t["stop_and_target_in_one_bar"] for t in document["trades"])
    assert document["metrics"]["stop_and_target_in_one_bar_trades"] == flagged


def test_unattended_is_the_default_and_recorded(data: dict[str, Candles]) -> None:
    small = {"BTC/USDT": data["BTC/USDT"]}
    assert BacktestEngine(small).run_backtest(START).assumptions["breaker_latching"] == []
    attended = BacktestEngine(small, unattended=False).run_backtest(START)
    assert attended.assumptions["unattended"] is False and attended.assumptions["breaker_latching"] == ["loss"]


def test_overrides_change_the_run_and_are_recorded(data: dict[str, Candles]) -> None:
    result = BacktestEngine({"BTC/USDT": data["BTC/USDT"]}).run_backtest(
        START, overrides={"risk.stop_atr_multiple": 3.0, "signal.fade_bars": 3}
    )
    assert result.params["risk.stop_atr_multiple"] == 3.0 and result.params["signal.fade_bars"] == 3


@pytest.mark.parametrize("symbols", [("BTC/USDT",), ("BTC/USDT", "ETH/USDT")], ids=["one_symbol", "portfolio"])
def test_progress_of_one_symbol_or_several_is_reported_up_to_one(
    data: dict[str, Candles], symbols: tuple[str, ...]
) -> None:
    seen: list[float] = []
    BacktestEngine({s: data[s] for s in symbols}).run_backtest(START, progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


@pytest.mark.parametrize("symbols", [("BTC/USDT",), ("BTC/USDT", "ETH/USDT")], ids=["one_symbol", "portfolio"])
def test_frequent_progress_reports_change_nothing(
    data: dict[str, Candles], symbols: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = {s: data[s] for s in symbols}
    expected = BacktestEngine(chosen).run_backtest(START)
    monkeypatch.setattr(loop, "PROGRESS_EVERY_BARS", 7)  # cuts idle jumps and quiet runs at odd places
    seen: list[float] = []
    reported = BacktestEngine(chosen).run_backtest(START, progress=seen.append)
    assert len(seen) > 10 and seen == sorted(seen)
    assert reported.to_json() == expected.to_json()


@pytest.mark.parametrize("symbols", [("BTC/USDT",), ("BTC/USDT", "ETH/USDT")], ids=["one_symbol", "portfolio"])
def test_cancellation_stops_the_run(data: dict[str, Candles], symbols: tuple[str, ...]) -> None:
    with pytest.raises(BacktestCancelled):
        BacktestEngine({s: data[s] for s in symbols}).run_backtest(START, cancel=lambda: True)


def test_mixed_timeframes_are_rejected(data: dict[str, Candles]) -> None:
    with pytest.raises(BacktestException, match="one timeframe"):
        BacktestEngine({"BTC/USDT": data["BTC/USDT"], "ETH/USDT": load_sample("ETH/USDT", "5m")}).run_backtest()


def test_export_writes_trades_and_equity_csv(portfolio_result: BacktestResult, tmp_path: Path) -> None:
    trades_path, equity_path = portfolio_result.export_csv(tmp_path)
    trade_lines = trades_path.read_text().splitlines()
    assert trade_lines[0].startswith("symbol,side,quantity,entry_time,exit_time")
    assert len(trade_lines) == len(portfolio_result.trades) + 1
    equity_lines = equity_path.read_text().splitlines()
    assert equity_lines[0] == "timestamp_ms,equity" and len(equity_lines) == len(portfolio_result.equity) + 1
