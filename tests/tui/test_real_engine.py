"""The console over the real engine (``create_app(settings)`` builds it) on a paper replay of bundled candles.

Replay runs at a modest speed so the app goes idle between bars (see RECIPES: a fast engine keeps
every ``pilot.press`` waiting). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable

from engine.config import Settings
from engine.domain.models import TradingState
from tradebot_tui.app import TradebotApp, create_app
from tradebot_tui.screens.confirm import ConfirmScreen
from tradebot_tui.widgets.events import EventLog
from tradebot_tui.widgets.status import StatusBar

WAIT_S = 20.0


def replay_settings(tmp_path: Path) -> Settings:
    return Settings(
        exchange={"symbols": ["BTC/USDT", "ETH/USDT"], "replay_speed": 8.0},
        storage={"database_path": tmp_path / "tradebot.sqlite3", "log_dir": tmp_path / "logs"},
    )


async def wait_for(pilot: Pilot[int], condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await pilot.pause(0.05)


async def test_panes_fill_from_the_replay_and_halt_resume_quit_go_through_the_engine(tmp_path: Path) -> None:
    app = create_app(replay_settings(tmp_path))
    assert isinstance(app, TradebotApp) and app.run_engine
    async with app.run_test(size=(120, 40)) as pilot:
        signals = app.query_one("#signals", DataTable)
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.engine_state == "running")
        await wait_for(pilot, lambda: signals.row_count == 2 and str(signals.get_row_at(0)[-1]) != "-")
        assert [str(signals.get_row_at(i)[0]) for i in range(2)] == ["BTC/USDT", "ETH/USDT"]

        await pilot.press("h")
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.trading_state is TradingState.HALTED)
        await pilot.pause()
        assert "HALTED" in str(app.query_one(StatusBar).status_text())
        assert any(e.kind == "TradingStateChanged" for e in app.query_one(EventLog).shown)

        await pilot.press("r")
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.trading_state is TradingState.ACTIVE)

        await pilot.press("q")
        await pilot.pause()
        if isinstance(app.screen, ConfirmScreen):  # a position happened to be open
            await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running)
    engine = app.engine
    assert engine is not None and getattr(engine, "engine_state", None) == "stopped"
    assert app.return_code == 0
