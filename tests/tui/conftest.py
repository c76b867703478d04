"""Fixtures for console tests: a recording engine double and a helper that waits for a snapshot to show."""

from __future__ import annotations

import asyncio

import pytest
from textual.pilot import Pilot

from engine.domain.snapshot import EngineSnapshot
from tests.tui.engine_double import RecordingEngine
from tradebot_tui.app import TradebotApp

WAIT_LIMIT_S = 5.0


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


async def wait_until_shown(pilot: Pilot[int], snapshot: EngineSnapshot) -> None:
    """Wait (bounded) until the app has applied exactly this snapshot."""
    app = pilot.app
    assert isinstance(app, TradebotApp)
    async with asyncio.timeout(WAIT_LIMIT_S):
        while app.snapshot is not snapshot:
            await pilot.pause(0.02)
    await pilot.pause()


async def publish_and_wait(pilot: Pilot[int], engine: RecordingEngine, snapshot: EngineSnapshot) -> None:
    engine.publish(snapshot)
    await wait_until_shown(pilot, snapshot)
