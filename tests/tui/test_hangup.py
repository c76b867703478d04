"""Specification of terminal loss: the console detaches, logs, alerts, and the engine keeps running."""

from __future__ import annotations

import logging

import pytest

from engine.config import Settings
from tests.tui.conftest import publish_and_wait
from tests.tui.engine_double import T0_MS, RecordingEngine, crafted_snapshot
from tradebot_tui.app import create_app
from tradebot_tui.hangup import DISCONNECTED_KIND
from tradebot_tui.widgets.status import StatusBar


async def test_terminal_loss_logs_publishes_a_critical_alert_and_sends_no_command(
    engine: RecordingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(), engine)
    alerts = engine.bus.subscribe("telegram")
    async with app.run_test(size=(120, 40)) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        with caplog.at_level(logging.CRITICAL, logger="tradebot_tui.hangup"):
            app.hangup_guard.handle_hangup()
        await pilot.pause()
        assert app.is_running
        assert app.hangup_guard.detached
        published = alerts.drain_events()
        assert [(e.kind, e.severity) for e in published] == [(DISCONNECTED_KIND, "critical")]
        assert "keeps running" in published[0].message
        assert any("terminal lost" in record.getMessage().lower() for record in caplog.records)
    assert engine.commands == []


async def test_after_terminal_loss_snapshots_are_no_longer_rendered(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=(120, 40)) as pilot:
        first = crafted_snapshot()
        await publish_and_wait(pilot, engine, first)
        app.hangup_guard.handle_hangup()
        engine.publish(crafted_snapshot(time_ms=T0_MS + 1))
        await pilot.pause(0.3)
        assert app.query_one(StatusBar).snapshot is first


async def test_a_second_hangup_is_reported_once(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    alerts = engine.bus.subscribe("telegram")
    async with app.run_test(size=(120, 40)):
        app.hangup_guard.handle_hangup()
        app.hangup_guard.handle_hangup()
    assert [e.kind for e in alerts.drain_events()] == [DISCONNECTED_KIND]
