"""Specification of the override latches: a latched loss-limit halt or emergency exit is a breaker row and is
lifted only with the same grant as a breaker reset; a plain resume ends a manual halt only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.domain.commands import EmergencyExit, Halt, Resume, ResumeBreaker
from engine.domain.models import BreakerStatus, CircuitState, MarketLimits, TradingState
from engine.runtime.engine import TradingEngine
from engine.security.audit import AuditLog
from engine.security.auth import hash_passphrase
from engine.security.crypto import KdfParams
from tests.engine.runtime_helpers import WAIT_S, btc_window, finish, paper_engine, start, wait_for_event

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
RISK_PASSPHRASE = "correct horse battery"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[TradingEngine]:
    """A paper engine with its candles held: only the test changes its state."""
    running = paper_engine(
        tmp_path, {"BTC/USDT": btc_window(length=520)}, risk_passphrase_hash=hash_passphrase(RISK_PASSPHRASE, FAST_KDF)
    )
    running.pause_candles()
    task = start(running)
    await asyncio.wait_for(running.started.wait(), WAIT_S)
    yield running
    await finish(running, task)


def latch_daily_loss(engine: TradingEngine) -> None:
    """A 6% fall of equity within the trading day: the 5% daily-loss limit halts trading (10% drawdown does not)."""
    now_ms = engine.clock.now_ms()
    equity = engine.portfolio.equity()
    engine.core.check_account(now_ms, equity)
    engine.emit_all(engine.core.check_account(now_ms, equity * 0.94).events)
    assert engine.core.limits.halt_reasons == ("daily_loss",)
    assert engine.core.trading_state is TradingState.HALTED


def row(engine: TradingEngine, name: str) -> BreakerStatus:
    snapshot = engine.build_snapshot()
    return next(status for status in snapshot.breakers if status.name == name)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for ``condition``; the candles are held, so ``wait_idle`` would wait for ever."""

    async def reached() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(reached(), WAIT_S)


async def audit_entries(engine: TradingEngine, action: str) -> list[Any]:
    """The audit rows once one with ``action`` is written."""

    async def written() -> list[Any]:
        while True:
            entries = await AuditLog(engine.store).entries()
            if any(e.action == action for e in entries):
                return entries
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(written(), WAIT_S)


async def test_a_plain_resume_of_a_latched_daily_loss_halt_is_rejected_and_entries_stay_blocked(
    engine: TradingEngine,
) -> None:
    events = engine.bus.subscribe("test")
    latch_daily_loss(engine)
    await engine.submit(Resume(source="telegram:1"))
    rejected = await wait_for_event(events, "CommandRejected")
    assert "a grant is needed" in rejected.data["outcome"] and "loss_limit (daily_loss)" in rejected.data["outcome"]
    await until(lambda: (snapshot := engine.snapshot()) is not None and snapshot.time_ms >= rejected.time_ms)
    assert engine.core.trading_state is TradingState.HALTED and engine.core.limits.halted
    assert engine.snapshot() is not None and engine.snapshot().trading_state is TradingState.HALTED
    sizing = engine.core.risk.calculate_position_size(
        10_000.0, 10_000.0, 100.0, 1.0, 1.0, 1.0, MarketLimits("BTC/USDT")
    )
    assert not sizing.approved and "trading halted" in sizing.reason


async def test_a_granted_resume_lifts_the_latched_daily_loss_halt_and_is_audited(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    latch_daily_loss(engine)
    granted = await engine.risk_gate.authorize_with_passphrase(Resume(source="console"), RISK_PASSPHRASE)
    await engine.submit(granted)
    await wait_for_event(events, "TradingStateChanged", lambda e: e.data["state"] == "ACTIVE")
    assert not engine.core.limits.halted
    rows = {entry.action: entry for entry in await audit_entries(engine, "command.Resume")}
    authorised = rows["parameter_change"].detail
    assert (authorised["parameter"], authorised["new"], authorised["method"]) == (
        "trading.resume",
        "active",
        "passphrase",
    )
    assert "loss_limit (daily_loss)" in authorised["old"]
    assert rows["command.Resume"].detail["accepted"] is True
    assert rows["command.Resume"].detail["parameter"] == "trading.resume"


async def test_a_plain_resume_still_ends_a_manual_halt(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    await engine.submit(Halt(source="console"))
    await engine.submit(Resume(source="console"))
    accepted = await wait_for_event(events, "CommandAccepted", lambda e: e.data["command"] == "Resume")
    assert accepted.data["outcome"] == "trading resumed"
    assert engine.core.trading_state is TradingState.ACTIVE


async def test_the_loss_limit_latch_is_a_breaker_row_cleared_by_a_granted_reset(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    latch_daily_loss(engine)
    latched = row(engine, "loss_limit")
    assert latched.state is CircuitState.OPEN and "daily loss limit breached" in latched.reason
    assert (latched.value, latched.threshold) == (pytest.approx(6.0), 5.0)
    granted = await engine.risk_gate.authorize_with_passphrase(
        ResumeBreaker(source="console", breaker="loss_limit"), RISK_PASSPHRASE
    )
    await engine.submit(granted)
    await wait_for_event(events, "RiskHaltCleared")
    assert row(engine, "loss_limit").state is CircuitState.CLOSED
    assert engine.core.trading_state is TradingState.ACTIVE  # the halt came from the limit alone


async def test_after_an_emergency_exit_its_latch_is_a_row_and_a_plain_resume_keeps_trading_halted(
    engine: TradingEngine,
) -> None:
    events = engine.bus.subscribe("test")
    await engine.submit(EmergencyExit(source="console", reason="test exit"))
    await wait_for_event(events, "EmergencyExitCompleted")
    latched = row(engine, "emergency")
    assert latched.state is CircuitState.OPEN and latched.latching
    assert "emergency exit done (test exit)" in latched.reason

    await engine.submit(Resume(source="console"))
    rejected = await wait_for_event(events, "CommandRejected")
    assert "a grant is needed" in rejected.data["outcome"] and "emergency (done)" in rejected.data["outcome"]
    assert engine.core.trading_state is TradingState.HALTED and row(engine, "emergency").state is CircuitState.OPEN


async def test_a_granted_reset_of_the_emergency_row_clears_the_latch_and_a_plain_resume_then_resumes(
    engine: TradingEngine,
) -> None:
    events = engine.bus.subscribe("test")
    await engine.submit(EmergencyExit(source="console"))
    await wait_for_event(events, "EmergencyExitCompleted")
    granted = await engine.risk_gate.authorize_with_passphrase(
        ResumeBreaker(source="console", breaker="emergency"), RISK_PASSPHRASE
    )
    await engine.submit(granted)
    accepted = await wait_for_event(events, "CommandAccepted", lambda e: e.data["command"] == "ResumeBreaker")
    assert accepted.data["outcome"] == "emergency latch cleared; trading stays halted until resumed"
    assert row(engine, "emergency").state is CircuitState.CLOSED
    assert engine.core.trading_state is TradingState.HALTED

    await engine.submit(Resume(source="console"))
    await wait_for_event(events, "TradingStateChanged", lambda e: e.data["state"] == "ACTIVE")
    assert engine.core.breaker.allows_entry(engine.clock.now_ms()).allowed


async def test_a_granted_resume_after_an_emergency_exit_clears_the_latch_and_allows_entries(
    engine: TradingEngine,
) -> None:
    events = engine.bus.subscribe("test")
    await engine.submit(EmergencyExit(source="console"))
    await wait_for_event(events, "EmergencyExitCompleted")
    granted = await engine.risk_gate.authorize_with_passphrase(Resume(source="console"), RISK_PASSPHRASE)
    await engine.submit(granted)
    await wait_for_event(events, "EmergencyExitCleared")
    await wait_for_event(events, "TradingStateChanged", lambda e: e.data["state"] == "ACTIVE")
    breaker = engine.core.breaker
    assert breaker.emergency_phase is None and breaker.allows_entry(engine.clock.now_ms()).allowed
