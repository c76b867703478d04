"""Specification of the dashboard panes: each renders what the newest engine snapshot says, nothing more."""

from __future__ import annotations

import dataclasses

from textual.widgets import DataTable, Static

from engine.config import Settings
from engine.domain.models import TradingState
from tests.event_samples import filled
from tests.tui.conftest import publish_and_wait, wait_until_shown
from tests.tui.engine_double import T0_MS, RecordingEngine, crafted_snapshot
from tradebot_tui.app import create_app
from tradebot_tui.widgets.account import LimitBar
from tradebot_tui.widgets.events import EventLog, EventTicker
from tradebot_tui.widgets.status import StatusBar

WIDE = (160, 48)


def cells(table: DataTable[object], row: int) -> list[str]:
    return [str(cell) for cell in table.get_row_at(row)]


async def test_status_bar_shows_mode_exchange_feed_trading_state_and_engine_state(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        assert "waiting for the engine" in str(app.query_one(StatusBar).status_text())
        await publish_and_wait(pilot, engine, crafted_snapshot(feed_healthy=False, trading_state=TradingState.HALTED))
        line = str(app.query_one(StatusBar).status_text())
        assert "PAPER" in line and "binance" in line and "STALE" in line and "HALTED" in line and "running" in line


async def test_live_mode_is_shown_as_live(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot(mode="live"))
        text = app.query_one(StatusBar).status_text()
        assert " LIVE " in str(text)
        assert any("red" in str(span.style) for span in text.spans if text.plain[span.start : span.end] == " LIVE ")


async def test_positions_pane_lists_each_position_with_prices_pnl_and_stops(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        table = app.query_one("#positions", DataTable)
        assert table.row_count == 2
        assert cells(table, 0) == [
            "BTC/USDT",
            "long",
            "0.015",
            "64,000.0",
            "64,900.0",
            "+13.50",
            "62,500.0",
            "63,800.0",
        ]
        assert cells(table, 1)[5] == "-22.00" and cells(table, 1)[7] == "-"


async def test_positions_cursor_stays_on_the_same_symbol_across_snapshots(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        first = crafted_snapshot()
        await publish_and_wait(pilot, engine, first)
        await pilot.press("down")
        reordered = crafted_snapshot(positions=tuple(reversed(first.positions)), time_ms=T0_MS + 1)
        await publish_and_wait(pilot, engine, reordered)
        assert app.selected_position() is not None and app.selected_position().symbol == "ETH/USDT"


async def test_pnl_pane_shows_realised_unrealised_total_and_an_equity_sparkline(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        snapshot = crafted_snapshot()
        await publish_and_wait(pilot, engine, snapshot)
        figures = str(app.query_one("#pnl-figures", Static).render())
        assert "-142.35" in figures and "+25.48" in figures and "-116.87" in figures and "9,731.40" in figures
        assert list(app.query_one("#equity-sparkline").data) == list(snapshot.equity_history)


async def test_drawdown_bars_are_amber_from_80_percent_of_the_limit_and_red_at_it(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        await publish_and_wait(
            pilot, engine, crafted_snapshot(drawdown_pct=7.9, max_drawdown_pct=8.0, daily_loss_pct=5.0)
        )
        assert app.query_one("#dd-current", LimitBar).has_class("-ok")
        assert app.query_one("#dd-max", LimitBar).has_class("-warn")
        assert app.query_one("#dd-daily", LimitBar).has_class("-limit")
        await publish_and_wait(
            pilot, engine, crafted_snapshot(drawdown_pct=10.0, daily_loss_pct=0.0, time_ms=T0_MS + 1)
        )
        assert app.query_one("#dd-current", LimitBar).has_class("-limit")
        assert not app.query_one("#dd-current", LimitBar).has_class("-ok")
        assert app.query_one("#dd-daily", LimitBar).has_class("-ok")


async def test_breakers_pane_shows_state_value_against_threshold_reason_since_and_resume(
    engine: RecordingEngine,
) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        table = app.query_one("#breakers", DataTable)
        assert cells(table, 0) == ["volatility", "closed", "1.4/3", "-", "-", "-"]
        assert cells(table, 1) == ["loss ⚓", "open", "5/5", "manual", "23:20", "5 consecutive losses"]
        assert cells(table, 2) == ["system", "half-open", "2/10", "00:10 (10m)", "23:40", "api errors"]


async def test_signals_pane_shows_trend_arrows_per_timeframe_squeeze_volume_and_signal(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        table = app.query_one("#signals", DataTable)
        assert [str(c.label) for c in table.columns.values()][:4] == ["symbol", "1h", "4h", "1d"]
        assert cells(table, 0) == ["BTC/USDT", "↑", "↑", "↑", "off", "LONG 0.72", "confirmed", "64,900.0"]
        assert cells(table, 1)[1:4] == ["↓", "↑", "→"]
        assert cells(table, 2)[4:7] == ["on", "EXIT 0.40", "spike"]


async def test_event_log_starts_from_the_snapshot_history_then_appends_live_events(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        snapshot = crafted_snapshot()
        await publish_and_wait(pilot, engine, snapshot)
        log = app.query_one(EventLog)
        assert log.shown == list(snapshot.recent_events)
        fill = filled(T0_MS + 60_000, "SELL 0.8 ETH/USDT @ 3,380.00")
        engine.bus.publish_event(fill)
        following = dataclasses.replace(snapshot, time_ms=T0_MS + 60_000, recent_events=(*snapshot.recent_events, fill))
        await publish_and_wait(pilot, engine, following)
        assert log.shown == [*snapshot.recent_events, fill]  # once, not again from the snapshot
        assert "SELL 0.8 ETH/USDT" in str(app.query_one(EventTicker).render())


async def test_trading_state_changes_only_when_the_engine_reports_it(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("h")
        await pilot.pause()
        assert "ACTIVE" in str(app.query_one(StatusBar).status_text())
        halted = crafted_snapshot(trading_state=TradingState.HALTED, time_ms=T0_MS + 1)
        await publish_and_wait(pilot, engine, halted)
        assert "HALTED" in str(app.query_one(StatusBar).status_text())


async def test_small_terminal_hides_the_event_log_and_shows_the_newest_event_on_one_line(
    engine: RecordingEngine,
) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=(80, 24)) as pilot:
        snapshot = crafted_snapshot()
        await publish_and_wait(pilot, engine, snapshot)
        assert not app.query_one(EventLog).display
        assert app.query_one(EventTicker).display
        assert snapshot.recent_events[-1].message in str(app.query_one(EventTicker).render())


async def test_a_snapshot_already_published_before_start_is_shown(engine: RecordingEngine) -> None:
    snapshot = crafted_snapshot()
    engine.publish(snapshot)
    app = create_app(Settings(), engine)
    async with app.run_test(size=WIDE) as pilot:
        await wait_until_shown(pilot, snapshot)
        assert app.query_one("#positions", DataTable).row_count == 2
