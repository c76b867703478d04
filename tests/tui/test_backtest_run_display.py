"""Specification: the console's backtest view says how often a sizing cap, not the risk budget, decided a size."""

from __future__ import annotations

from engine.backtest import BacktestEngine
from engine.config import Settings
from engine.data.sample import load_sample
from tradebot_tui.backtest_runner import run_from_result


def _display(**risk: float) -> dict[str, str]:
    base = Settings()
    settings = base.model_copy(update={"risk": base.risk.model_copy(update=risk)})
    candles = {"BTC/USDT": load_sample("BTC/USDT", "1h").slice(0, 2000)}
    result = BacktestEngine(candles, settings=settings).run_backtest()
    return dict(run_from_result("run", result).metrics)


def test_with_the_defaults_no_entry_is_capped() -> None:
    shown = _display()
    assert shown["entries capped"] == f"0 of {shown['trades']}"


def test_a_binding_notional_cap_is_shown_with_its_count() -> None:
    shown = _display(max_notional_percent=10.0)
    capped, _, trades, *detail = shown["entries capped"].split()
    assert trades == shown["trades"] and int(capped) > 0
    assert " ".join(detail) == f"(max notional {capped})"
