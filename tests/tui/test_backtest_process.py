"""Specification: the backtest screen's runs happen in a child process, with progress, cancel and one-line errors.

The child is the real ``python -m tradebot_tui.backtest_process`` on the bundled candles.
"""

from __future__ import annotations

import json

import pytest

from engine.config import Settings
from tradebot_tui.backtest_process import (
    BacktestCancelled,
    BacktestFailed,
    child_settings,
    run_backtest_in_process,
)
from tradebot_tui.backtest_runner import BacktestRequest, run_backtest

REQUEST = BacktestRequest("BTC/USDT", "1h", 90, (("risk.risk_per_trade_percent", 0.5),))


def test_a_run_in_the_child_equals_the_same_run_in_this_process() -> None:
    settings = Settings()
    ratios: list[float] = []
    child = run_backtest_in_process(settings, REQUEST, ratios.append, lambda: False)
    here = run_backtest(settings, REQUEST, lambda _: None, lambda: False)
    assert child == here
    assert len(child.trades) > 0
    assert ratios and ratios == sorted(ratios) and ratios[-1] <= 1.0


def test_cancelling_stops_the_run_before_it_finishes() -> None:
    seen: list[float] = []
    with pytest.raises(BacktestCancelled):
        run_backtest_in_process(Settings(), BacktestRequest("BTC/USDT", "1h", None), seen.append,
                                lambda: bool(seen))
    assert seen and seen[-1] < 1.0


def test_a_bad_parameter_comes_back_as_one_line() -> None:
    request = BacktestRequest("BTC/USDT", "1h", 30, (("risk.no_such_setting", 1.0),))
    with pytest.raises(BacktestFailed) as failure:
        run_backtest_in_process(Settings(), request, lambda _: None, lambda: False)
    message = str(failure.value)
    assert "no_such_setting" in message and "\n" not in message


def test_the_child_gets_no_secret_and_never_trades() -> None:
    settings = Settings(exchange={"api_key": "key-abc", "api_secret": "secret-xyz"}, telegram={"token": "tok-123"})
    text = json.dumps(child_settings(settings))
    assert "key-abc" not in text and "secret-xyz" not in text and "tok-123" not in text
    assert child_settings(settings)["exchange"]["mode"] == "paper"
