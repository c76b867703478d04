"""Specification of the backtest screen: runs in a thread with progress, shows metrics, charts and trades,
compares runs side by side, and never blocks the emergency keys."""

from __future__ import annotations

import asyncio
import threading

from textual.widgets import DataTable, Input, ProgressBar, Static

from engine.config import Settings
from engine.domain.commands import EmergencyExit, Halt
from engine.domain.models import ClosedTrade, PositionSide
from tests.tui.conftest import publish_and_wait
from tests.tui.engine_double import T0_MS, RecordingEngine, crafted_snapshot
from tradebot_tui.app import EMERGENCY_WORD, create_app
from tradebot_tui.backtest_runner import BacktestRequest, BacktestRun, CancelCheck, ProgressCallback
from tradebot_tui.screens.backtest import BacktestScreen
from tradebot_tui.screens.confirm import TypedConfirmScreen

SIZE = (120, 40)
WAIT_S = 5.0


class ScriptedRunner:
    """A backtest runner double: records requests, reports progress, optionally waits for a release."""

    def __init__(self, *, hold: bool = False, fail: Exception | None = None) -> None:
        self.requests: list[BacktestRequest] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.hold = hold
        self.fail = fail

    def __call__(
        self, settings: Settings, request: BacktestRequest, progress: ProgressCallback, cancel: CancelCheck
    ) -> BacktestRun:
        self.requests.append(request)
        progress(0.0)
        self.started.set()
        if self.hold:
            while not self.release.wait(0.01):
                if cancel():
                    raise RuntimeError("cancelled")
        progress(0.5)
        if self.fail is not None:
            raise self.fail
        number = len(self.requests)
        trade = ClosedTrade(request.symbol, PositionSide.LONG, 0.01, 100.0, 110.0 + number, T0_MS, T0_MS + 1, 0.1)
        return BacktestRun(
            label=request.label,
            metrics=(("total return", f"+{number}.00%"), ("trades", "1")),
            day=(0.0, 1.0, 2.0),
            equity=(10_000.0, 10_050.0 * number, 10_100.0),
            drawdown_pct=(0.0, 0.0, 1.5),
            trades=(trade,),
        )


async def open_backtest(pilot, app) -> BacktestScreen:  # type: ignore[no-untyped-def]
    await pilot.press("b")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, BacktestScreen)
    return screen


async def finish(pilot, screen: BacktestScreen) -> None:  # type: ignore[no-untyped-def]
    assert screen.worker is not None
    await screen.worker.wait()
    await pilot.pause()


async def test_a_run_shows_progress_metrics_trades_and_charts(engine: RecordingEngine) -> None:
    runner = ScriptedRunner()
    app = create_app(Settings(), engine, backtest_runner=runner)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_backtest(pilot, app)
        await pilot.click("#bt-run")
        await finish(pilot, screen)
        assert runner.requests == [BacktestRequest("BTC/USDT", "1h", 90, ())]
        assert screen.query_one(ProgressBar).progress == 1.0
        metrics = screen.query_one("#bt-metrics", DataTable)
        assert [str(c.label) for c in metrics.columns.values()] == ["metric", "#1 BTC/USDT 1h 90d"]
        assert [str(v) for v in metrics.get_row_at(0)] == ["total return", "+1.00%"]
        trades = screen.query_one("#bt-trades", DataTable)
        assert trades.row_count == 1 and str(trades.get_row_at(0)[4]) == "111.00"
        assert "Done" in str(screen.query_one("#bt-status", Static).render())


async def test_two_runs_are_compared_side_by_side(engine: RecordingEngine) -> None:
    runner = ScriptedRunner()
    app = create_app(Settings(), engine, backtest_runner=runner)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_backtest(pilot, app)
        await pilot.click("#bt-run")
        await finish(pilot, screen)
        screen.query_one("#bt-params", Input).value = "risk.risk_per_trade_percent=0.5"
        await pilot.click("#bt-run")
        await finish(pilot, screen)
        assert runner.requests[1].overrides == (("risk.risk_per_trade_percent", 0.5),)
        metrics = screen.query_one("#bt-metrics", DataTable)
        labels = [str(c.label) for c in metrics.columns.values()]
        assert labels == ["metric", "#1 BTC/USDT 1h 90d", "#2 BTC/USDT 1h 90d risk_per_trade_percent=0.5"]
        assert [str(v) for v in metrics.get_row_at(0)] == ["total return", "+1.00%", "+2.00%"]


async def test_unreadable_parameters_are_reported_and_nothing_runs(engine: RecordingEngine) -> None:
    runner = ScriptedRunner()
    app = create_app(Settings(), engine, backtest_runner=runner)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_backtest(pilot, app)
        screen.query_one("#bt-params", Input).value = "risk_per_trade_percent"
        await pilot.click("#bt-run")
        await pilot.pause()
        assert runner.requests == [] and screen.worker is None
        assert "not name=value" in str(screen.query_one("#bt-status", Static).render())


async def test_a_failing_run_is_reported_and_the_form_comes_back(engine: RecordingEngine) -> None:
    runner = ScriptedRunner(fail=ValueError("unknown strategy parameter(s): bogus"))
    app = create_app(Settings(), engine, backtest_runner=runner)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_backtest(pilot, app)
        await pilot.click("#bt-run")
        assert screen.worker is not None
        async with asyncio.timeout(WAIT_S):
            while not screen.worker.is_finished:
                await pilot.pause(0.02)
        await pilot.pause()
        assert "Backtest failed: unknown strategy parameter" in str(screen.query_one("#bt-status", Static).render())
        assert not screen.query_one("#bt-run").disabled


async def test_halt_and_emergency_exit_work_while_a_backtest_runs(engine: RecordingEngine) -> None:
    runner = ScriptedRunner(hold=True)
    app = create_app(Settings(), engine, backtest_runner=runner)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        screen = await open_backtest(pilot, app)
        await pilot.click("#bt-run")
        assert runner.started.wait(WAIT_S)
        assert screen.worker is not None and screen.worker.is_running
        await pilot.press("h")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, TypedConfirmScreen)
        await pilot.press(*EMERGENCY_WORD, "enter")
        await pilot.pause()
        assert screen.worker.is_running  # the backtest was never in the way
        runner.release.set()
        await finish(pilot, screen)
    assert [type(c) for c in engine.commands] == [Halt, EmergencyExit]


async def test_a_run_keeps_going_when_leaving_the_screen_and_its_result_is_there_on_return(
    engine: RecordingEngine,
) -> None:
    runner = ScriptedRunner(hold=True)
    app = create_app(Settings(), engine, backtest_runner=runner)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_backtest(pilot, app)
        await pilot.click("#bt-run")
        assert runner.started.wait(WAIT_S)
        await pilot.press("escape")
        await pilot.pause()
        runner.release.set()
        await finish(pilot, screen)
        again = await open_backtest(pilot, app)
        assert again is screen and len(screen.runs) == 1
