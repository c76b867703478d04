"""Console overrides of the latches: the emergency and loss-limit rows of the breakers pane, `u` and `r` with them.

Lifting a latch needs the risk-change passphrase, exactly like a breaker reset. The dialog talks to a real
:class:`engine.runtime.risk_gate.RiskChangeGate` over a real DecisionCore (real store, fast Scrypt parameters); the last
test drives the real engine on a replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from engine.config import Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.domain.commands import Resume, ResumeBreaker
from engine.domain.models import BreakerStatus, CircuitState, TradingState
from engine.runtime.latches import breaker_rows
from engine.runtime.risk_gate import RiskChangeGate
from engine.security.audit import AuditLog
from engine.security.auth import hash_passphrase
from engine.security.crypto import KdfParams
from engine.store import Store
from tests.tui.conftest import publish_and_wait
from tests.tui.engine_double import T0_MS, RecordingEngine, crafted_snapshot
from tradebot_tui.app import EMERGENCY_WORD, create_app
from tradebot_tui.screens.risk import RiskChangeScreen
from tradebot_tui.widgets.tables import BreakersTable

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
RISK_PASSPHRASE = "risk-passphrase-for-tests"
SIZE = (120, 40)
WAIT_S = 20.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "console.sqlite3") as opened:
        yield opened


def after_emergency_exit(store: Store) -> tuple[DecisionCore, RiskChangeGate]:
    """A core whose emergency exit completed (flat, halted), and its gate."""
    settings = Settings()
    core = DecisionCore(settings.risk, settings.breaker.model_copy(update={"latching": []}), Portfolio(10_000.0))
    core.emergency_exit(T0_MS, "test exit")
    core.breaker.complete_emergency_exit(T0_MS)
    gate = RiskChangeGate(core, AuditLog(store), hash_passphrase(RISK_PASSPHRASE, FAST_KDF), lambda: T0_MS)
    return core, gate


async def wait_for(pilot: Pilot[int], condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await pilot.pause(0.02)


def text_of(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


async def test_u_on_the_emergency_row_asks_the_passphrase_and_submits_a_granted_reset(
    engine: RecordingEngine, store: Store
) -> None:
    core, gate = after_emergency_exit(store)
    engine.risk_gate = gate  # type: ignore[attr-defined]
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        snapshot = crafted_snapshot(breakers=breaker_rows(core), trading_state=TradingState.HALTED)
        await publish_and_wait(pilot, engine, snapshot)
        table = app.query_one(BreakersTable)
        assert [table.get_row_at(i)[0] for i in range(table.row_count)][-2:] == ["emergency ⚓", "loss_limit"]
        await pilot.press("u")
        screen = app.screen
        assert isinstance(screen, RiskChangeScreen) and screen.breaker is not None
        assert "RESET BREAKER EMERGENCY" in text_of(screen, "#dialog-title")
        assert "emergency exit done (test exit)" in text_of(screen, "#dialog-body")
        await pilot.press(*RISK_PASSPHRASE, "enter")
        await wait_for(pilot, lambda: bool(engine.commands))
    (command,) = engine.commands
    assert isinstance(command, ResumeBreaker) and command.breaker == "emergency"
    gate.redeem(command)  # a grant the gate issued, for exactly this override


async def test_r_while_a_latch_holds_asks_the_passphrase_and_submits_a_granted_resume(
    engine: RecordingEngine, store: Store
) -> None:
    core, gate = after_emergency_exit(store)
    engine.risk_gate = gate  # type: ignore[attr-defined]
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        snapshot = crafted_snapshot(breakers=breaker_rows(core), trading_state=TradingState.HALTED)
        await publish_and_wait(pilot, engine, snapshot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RiskChangeScreen) and screen.resume
        assert "RESUME FROM A LATCHED HALT" in text_of(screen, "#dialog-title")
        assert "emergency (done)" in text_of(screen, "#dialog-body")
        assert engine.commands == []  # nothing is sent before the passphrase
        await pilot.press(*RISK_PASSPHRASE, "enter")
        await wait_for(pilot, lambda: bool(engine.commands))
    (command,) = engine.commands
    assert isinstance(command, Resume) and command.grant
    gate.redeem(command)


async def test_u_with_the_passphrase_clears_the_emergency_row_of_the_real_engine(tmp_path: Path) -> None:
    settings = Settings(
        exchange={"symbols": ["BTC/USDT"], "replay_speed": 4.0},
        storage={"database_path": tmp_path / "tradebot.sqlite3", "log_dir": tmp_path / "logs"},
    )
    app = create_app(settings, risk_passphrase_hash=hash_passphrase(RISK_PASSPHRASE, FAST_KDF))

    def emergency_row() -> BreakerStatus | None:
        rows = app.snapshot.breakers if app.snapshot is not None else ()
        return next((row for row in rows if row.name == "emergency"), None)

    def latched_after_the_exit() -> bool:
        row = emergency_row()
        return row is not None and row.state is CircuitState.OPEN and "emergency exit done" in row.reason

    def cleared() -> bool:
        row = emergency_row()
        return row is not None and row.state is CircuitState.CLOSED

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.engine_state == "running")
        await pilot.press("x", *EMERGENCY_WORD, "enter")
        await wait_for(pilot, latched_after_the_exit)

        await pilot.press("r")  # the latch holds: a passphrase is asked, nothing is sent yet
        assert isinstance(app.screen, RiskChangeScreen) and app.screen.resume
        await pilot.press("escape")
        await pilot.pause()
        assert app.snapshot is not None and app.snapshot.trading_state is TradingState.HALTED

        table = app.query_one(BreakersTable)
        table.focus()
        table.move_cursor(row=table.get_row_index("emergency"), animate=False)
        await pilot.press("u")
        assert isinstance(app.screen, RiskChangeScreen) and app.screen.breaker is not None
        assert app.screen.breaker.name == "emergency"
        await pilot.press(*RISK_PASSPHRASE, "enter")
        await wait_for(pilot, cleared)
        assert app.snapshot is not None and app.snapshot.trading_state is TradingState.HALTED  # until `r`
        await app.shutdown()
    assert [type(c).__name__ for c in app.submitted] == ["EmergencyExit", "ResumeBreaker"]
