"""Specification of the performance drift alert: live decisions and expectancy against the window's backtest.

The "live" account of the pure tests is the window's own backtest (paper trading equals it, as the first
runtime test shows), with one thing changed; no expected number is written down, so the tests hold
whatever the strategy's sizing and filters decide.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.config import Settings
from engine.domain.events import Event
from engine.domain.models import Candles, ClosedTrade, ExitKind
from engine.notify.formatting import format_event
from engine.runtime.drift import (
    EXACT,
    LIVE_TOLERANCE,
    DecisionDiverged,
    DecisionTolerance,
    DriftInputs,
    DriftReport,
    OpenEntry,
    check_drift,
    fmt_bar,
    run_window_backtest,
)
from engine.runtime.drift_expectancy import (
    ExpectancyBelowBacktest,
    ExpectancyComparison,
    expectancy_alert,
    mean_and_standard_error,
)
from engine.runtime.drift_watch import expectancy_event
from engine.runtime.engine import TradingEngine, build_engine
from engine.simulation.account import TradeRecord
from tests.engine.runtime_helpers import WAIT_S, btc_window, finish, make_settings, start, wait_for_event

SYMBOL = "BTC/USDT"
WARMUP = 500
HOUR_MS = 3_600_000
SHORT_BARS = WARMUP + 300  # a shorter replay that still trades
DRIFT_KINDS = ("DecisionDiverged", "ExpectancyBelowBacktest", "DriftCheckFailed")


# ------------------------------------------------------------------------------------------------ helpers
def _settings(**drift: Any) -> Settings:
    return Settings(exchange={"symbols": [SYMBOL]}, breaker={"latching": []}, drift=drift)


class Window:
    """The bundled window, its backtest from the live start and that backtest as a live account's trades."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.candles: Candles = btc_window()
        self.start_ms = int(self.candles.open_time_ms[WARMUP])
        result = run_window_backtest(self.inputs(), settings)
        self.records: list[TradeRecord] = [r for r in result.trades if r.exit_kind != "end_of_data"]
        self.trades: list[ClosedTrade] = [r.trade for r in self.records]
        self.open = [OpenEntry(r.trade.symbol, r.trade.side, r.trade.entry_ms)
                     for r in result.trades if r.exit_kind == "end_of_data"]
        assert len(self.trades) >= 5, "the window must contain trades for the comparison to mean anything"

    def inputs(self, trades: list[ClosedTrade] | None = None) -> DriftInputs:
        return DriftInputs({SYMBOL: self.candles}, self.start_ms, trades or [], self.open if trades else [])

    def check(self, trades: list[ClosedTrade], tolerance: DecisionTolerance = LIVE_TOLERANCE,
              **drift: Any) -> DriftReport:
        config = self.settings.drift.model_copy(update=drift)
        return check_drift(self.inputs(trades), self.settings, config, tolerance)

    def index_of_exit(self, kinds: tuple[str, ...]) -> int:
        """A trade (not the last) that left by one of ``kinds``, with room for one more bar before the next entry."""
        for i, record in enumerate(self.records[:-1]):
            if record.exit_kind in kinds and self.trades[i + 1].entry_ms - record.trade.exit_ms > 3 * HOUR_MS:
                return i
        pytest.skip(f"no {kinds} exit with room after it in the window")


@pytest.fixture(scope="module")
def window() -> Window:
    return Window(_settings())


def _worse(trade: ClosedTrade, pct_of_notional: float) -> ClosedTrade:
    return replace(trade, pnl=trade.pnl - pct_of_notional / 100.0 * trade.entry_price * trade.quantity)


def _drift_engine(tmp_path: Path, bars: int = 1400, **drift: Any) -> TradingEngine:
    """A paper engine replaying the bundled window's first ``bars`` bars (``WARMUP`` of them as history)."""
    settings = make_settings(tmp_path, [SYMBOL], drift=drift)
    return build_engine(settings, series={SYMBOL: btc_window(length=bars)}, replay_speed=float("inf"),
                        warmup_bars=WARMUP, snapshot_rate_hz=50.0)


async def _replayed(engine: TradingEngine) -> None:
    """Until every candle is decided on and every drift check it queued has finished."""
    await asyncio.wait_for(engine.replay_done.wait(), WAIT_S)
    await engine.wait_idle()
    await asyncio.wait_for(engine.drift.wait_idle(), WAIT_S)


def _drift_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind in DRIFT_KINDS]


# ------------------------------------------------------------------------------------------ decisions
def test_the_window_s_own_trades_show_no_divergence(window: Window) -> None:
    report = window.check(window.trades, tolerance=EXACT)
    assert report.divergence is None
    assert report.compared_decisions == 2 * len(window.trades) + len(window.open)


@pytest.mark.parametrize("change", ["later exit", "extra trade", "missing trade"])
def test_one_changed_trade_is_reported_as_the_first_differing_decision(window: Window, change: str) -> None:
    k = window.index_of_exit(("stop", "trailing_stop", "target", "signal"))
    trades = list(window.trades)
    original, following = trades[k], trades[k + 1]
    if change == "later exit":
        trades[k] = replace(original, exit_ms=original.exit_ms + 3 * HOUR_MS)
        expected = ("exit", original.exit_ms, original.exit_ms + 3 * HOUR_MS, original.exit_ms)
    elif change == "extra trade":
        entry = original.exit_ms + HOUR_MS
        trades.insert(k + 1, replace(original, entry_ms=entry, exit_ms=entry + HOUR_MS, reason="stop"))
        expected = ("entry", entry, entry, following.entry_ms)
    else:
        del trades[k]
        expected = ("entry", original.entry_ms, following.entry_ms, original.entry_ms)

    divergence = window.check(trades).divergence

    assert divergence is not None
    assert divergence.symbol == SYMBOL
    assert (divergence.decision, divergence.bar_ms, divergence.live_bar_ms, divergence.backtest_bar_ms) == expected


def test_a_missed_entry_is_named_with_what_each_side_did_and_when(window: Window) -> None:
    divergence = window.check(window.trades[1:]).divergence
    assert divergence is not None
    assert divergence.live.startswith("took no entry then (entered long in the bar of ")
    assert divergence.backtest == f"entered long in the bar of {fmt_bar(window.trades[0].entry_ms)}"
    assert divergence.message.startswith(f"{SYMBOL}: live trading left the backtest at the entry of "
                                         f"{fmt_bar(window.trades[0].entry_ms)}")


def test_a_stop_booked_one_bar_late_is_live_s_normal_delay_not_a_divergence(window: Window) -> None:
    k = window.index_of_exit(("stop", "trailing_stop", "target"))
    trades = list(window.trades)
    trades[k] = replace(trades[k], exit_ms=trades[k].exit_ms + HOUR_MS + 1_500)  # noticed after the bar closed
    assert window.check(trades, tolerance=LIVE_TOLERANCE).divergence is None
    assert window.check(trades, tolerance=EXACT).divergence is not None  # paper has no such delay


def test_a_signal_exit_one_bar_late_is_a_divergence_even_live(window: Window) -> None:
    k = window.index_of_exit(("signal",))
    trades = list(window.trades)
    trades[k] = replace(trades[k], exit_ms=trades[k].exit_ms + HOUR_MS)
    divergence = window.check(trades, tolerance=LIVE_TOLERANCE).divergence
    assert divergence is not None and divergence.decision == "exit"


def test_a_different_exit_kind_in_the_same_bar_is_a_divergence(window: Window) -> None:
    k = window.index_of_exit(("stop", "trailing_stop", "signal"))
    trades = list(window.trades)
    trades[k] = replace(trades[k], reason="manual close (console)", exit_kind=ExitKind.MANUAL)
    divergence = window.check(trades).divergence
    assert divergence is not None
    assert (divergence.decision, divergence.bar_ms, divergence.by_command) == ("exit", trades[k].exit_ms, True)
    assert "(manual)" in divergence.live


def test_a_decision_after_the_last_closed_bar_is_left_for_a_later_check(window: Window) -> None:
    last_close = int(window.candles.open_time_ms[-1]) + HOUR_MS
    trades = [*window.trades, replace(window.trades[-1], entry_ms=last_close + 5, exit_ms=last_close + 9)]
    assert window.check(trades).divergence is None


def test_exits_are_compared_by_their_recorded_kind_never_by_the_reason_text(window: Window) -> None:
    k = window.index_of_exit(("stop", "trailing_stop", "signal"))
    trades = list(window.trades)
    trades[k] = replace(trades[k], reason="words a person may write")
    assert window.check(trades).divergence is None


# ----------------------------------------------------------------------------------------- expectancy
def test_realised_expectancy_well_below_the_backtest_s_with_enough_trades_alerts(window: Window) -> None:
    trades = [_worse(t, 5.0) for t in window.trades]
    report = window.check(trades, min_trades=len(trades), expectancy_std_errors=2.0)
    alert = report.expectancy_alert
    assert alert is not None
    assert alert.trades == len(trades)
    assert alert.realised_pct < alert.threshold_pct < alert.backtest_pct
    assert report.divergence is None  # the money differs, not the decisions


def test_a_shortfall_within_the_standard_errors_is_not_alerted(window: Window) -> None:
    realised = window.check(window.trades).expectancy
    assert realised.standard_error_pct is not None and realised.standard_error_pct > 0
    trades = [_worse(t, 0.5 * realised.standard_error_pct) for t in window.trades]
    assert window.check(trades, min_trades=len(trades), expectancy_std_errors=2.0).expectancy_alert is None


def test_below_min_trades_the_expectancy_is_not_judged(window: Window) -> None:
    trades = [_worse(t, 5.0) for t in window.trades]
    assert window.check(trades, min_trades=len(trades) + 1).expectancy_alert is None


def test_an_expectancy_alert_reads_live_against_backtest_per_trade() -> None:
    alert = ExpectancyBelowBacktest(-1.0, 0.5, 0.2, 2.0, 12, 15)
    text = format_event(expectancy_event(alert, 0))
    assert text is not None
    assert "-1.00%</b> live vs <code>+0.50%</code> backtest" in text
    assert "2.0 × SE <code>0.20%</code>" in text and "Live trades: <code>12</code>" in text


@given(values=st.lists(st.floats(-50.0, 50.0), min_size=2, max_size=60), k=st.floats(0.0, 5.0))
def test_an_account_realising_the_backtest_s_returns_is_never_alerted(values: list[float], k: float) -> None:
    assert expectancy_alert(values, values, k, 2) is None


@given(values=st.lists(st.floats(-50.0, 50.0), min_size=2, max_size=60), shortfall=st.floats(0.0, 20.0),
       k=st.floats(0.0, 5.0))
def test_a_shortfall_alerts_exactly_when_it_exceeds_k_standard_errors(
    values: list[float], shortfall: float, k: float
) -> None:
    _, standard_error = mean_and_standard_error(values)
    assert standard_error is not None
    assume(abs(shortfall - k * standard_error) > 1e-6 * (1.0 + shortfall))
    alert = expectancy_alert([v - shortfall for v in values], values, k, 2)
    assert (alert is not None) == (shortfall > k * standard_error)


# -------------------------------------------------------------------------------------------- runtime
async def test_paper_replay_of_a_bundled_window_finds_no_divergence(tmp_path: Path) -> None:
    engine = _drift_engine(tmp_path, check_every_bars=24)
    events = engine.bus.subscribe("test")
    task = start(engine)
    await _replayed(engine)

    final = check_drift(engine.drift.inputs(), engine.settings, engine.settings.drift, EXACT)
    assert engine.drift.checks_run >= 1 and engine.drift.last_report is not None
    assert engine.drift.last_report.divergence is None
    assert final.divergence is None
    assert final.compared_decisions >= 10
    assert [e for e in events.drain_events() if e.kind == "DecisionDiverged"] == []
    await finish(engine, task)


async def test_a_manual_close_is_published_as_a_divergence_event_and_alert(tmp_path: Path) -> None:
    from engine.domain.commands import ClosePosition

    engine = _drift_engine(tmp_path, check_every_bars=24)
    publish = engine.emit
    paused: list[bool] = []

    def pause_at_first_entry(event: Event) -> None:
        publish(event)
        if event.kind == "PositionOpened" and not paused:
            paused.append(True)
            engine.pause_candles()  # freeze the market so the close acts on this position

    engine.emit = pause_at_first_entry  # type: ignore[method-assign]
    events = engine.bus.subscribe("test")
    task = start(engine)
    await wait_for_event(events, "PositionOpened")
    await engine.submit(ClosePosition(source="console", symbol=SYMBOL))
    await wait_for_event(events, "CommandAccepted", lambda e: e.data["command"] == "ClosePosition")
    engine.resume_candles()

    event = await wait_for_event(events, "DecisionDiverged")
    assert event.severity == "warning"  # a person's command: not the engine going astray
    assert event.data["symbol"] == SYMBOL and event.data["decision"] == "exit" and event.data["by_command"]
    assert "(manual)" in event.data["live"]
    alert = format_event(event)
    assert alert is not None and SYMBOL in alert and "manual" in alert
    await finish(engine, task)


async def test_each_finding_is_published_once_however_many_checks_find_it(tmp_path: Path) -> None:
    divergence = DecisionDiverged(SYMBOL, 0, "entry", "took no entry", "entered long")
    expectancy = ExpectancyBelowBacktest(-1.0, 0.5, 0.2, 2.0, 12, 12)
    report = DriftReport(divergence, expectancy, ExpectancyComparison(-1.0, 0.2, 12, 0.5, 12), 3)
    engine = _drift_engine(tmp_path, bars=WARMUP + 100, check_every_bars=24)
    engine.drift.check = lambda *args: report
    events = engine.bus.subscribe("test")
    task = start(engine)
    await _replayed(engine)

    assert engine.drift.checks_run >= 2
    kinds = [e.kind for e in _drift_events(events.drain_events())]
    assert sorted(kinds) == ["DecisionDiverged", "ExpectancyBelowBacktest"]
    await finish(engine, task)


async def test_a_failing_check_is_reported_once_and_trading_goes_on(tmp_path: Path) -> None:
    def failing_check(*args: object) -> DriftReport:
        raise RuntimeError("backtest blew up")

    engine = _drift_engine(tmp_path, bars=SHORT_BARS, check_every_bars=24)
    engine.drift.check = failing_check
    events = engine.bus.subscribe("test")
    task = start(engine)
    await _replayed(engine)

    assert engine.drift.failures >= 2
    (failed,) = _drift_events(events.drain_events())
    assert failed.kind == "DriftCheckFailed" and failed.severity == "warning"
    assert "backtest blew up" in failed.data["error"] and format_event(failed) is not None
    assert engine.candles_processed == SHORT_BARS - WARMUP
    assert engine.portfolio.closed_trades, "the engine went on trading"
    await finish(engine, task)  # and stops cleanly: the failure never reached the engine
