"""Specification of what the recorder persists when the decision core emits an event (dispatched on its type)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.config import Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.runtime.persistence import CORE_STATE_KEY, EngineRecorder
from engine.store import Store
from tests.event_samples import filled

HOUR_MS = 3_600_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "store.sqlite") as opened:
        yield opened


def _core() -> DecisionCore:
    settings = Settings()
    return DecisionCore(settings.risk, settings.breaker, Portfolio(cash=10_000.0))


async def test_a_loss_limit_breach_saves_the_core_state_at_once(store: Store) -> None:
    core = _core()
    recorder = EngineRecorder(store, core)
    core.check_account(HOUR_MS, 10_000.0)
    breach = core.check_account(2 * HOUR_MS, 5_000.0).events  # half the day's equity gone: every limit breached
    assert "RiskLimitBreached" in [event.kind for event in breach]
    for event in breach:
        recorder.on_event(event)
    await recorder.drain_now()
    assert (await store.get_state(CORE_STATE_KEY))["trading_state"] == "HALTED"


async def test_a_breaker_trip_is_kept_in_the_breaker_history_and_a_fill_is_not(store: Store) -> None:
    core = _core()
    recorder = EngineRecorder(store, core)
    trip = core.breaker.trip_system("exchange unreachable", HOUR_MS).events
    for event in (*trip, filled(HOUR_MS)):
        recorder.on_event(event)
    await recorder.drain_now()
    assert [row["event"] for row in await store.breaker_events()] == ["BreakerTripped"]
