"""Console risk changes: `l` (limits) and `u`/enter on a breaker open a dialog that needs the risk-change passphrase.

The dialog talks to a real :class:`engine.runtime.risk_gate.RiskChangeGate` (real store, real audit log, fast Scrypt
parameters); only the command it grants reaches the engine. One test drives the real engine on a replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from engine.config import Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.domain.commands import ResumeBreaker, SetRiskLimit
from engine.runtime.risk_gate import RiskChangeGate
from engine.security.audit import AuditLog
from engine.security.auth import PassphraseHash, hash_passphrase
from engine.security.crypto import KdfParams
from engine.store import Store
from tests.tui.conftest import publish_and_wait
from tests.tui.engine_double import RecordingEngine, crafted_snapshot
from tradebot_tui.app import TradebotApp, create_app
from tradebot_tui.screens.risk import RiskChangeScreen

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
RISK_PASSPHRASE = "risk-passphrase-for-tests"
DAILY_LOSS = "risk.max_daily_loss_percent"
WAIT_S = 20.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "console.sqlite3") as opened:
        yield opened


def gate_for(store: Store, passphrase_hash: PassphraseHash | None) -> RiskChangeGate:
    settings = Settings()
    core = DecisionCore(settings.risk, settings.breaker, Portfolio(cash=10_000.0))
    return RiskChangeGate(core, AuditLog(store), passphrase_hash, lambda: 1_767_225_600_000)


def record_notifications(app: TradebotApp) -> list[str]:
    shown: list[str] = []
    original = app.notify

    def notify(message: str, **options: Any) -> None:
        shown.append(message)
        original(message, **options)

    app.notify = notify  # type: ignore[method-assign]
    return shown


async def wait_for(pilot: Pilot[int], condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await pilot.pause(0.02)


def text_of(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


async def fill_limit_dialog(pilot: Pilot[int], key: str, value: str, passphrase: str) -> RiskChangeScreen:
    await pilot.press("l")
    screen = pilot.app.screen
    assert isinstance(screen, RiskChangeScreen)
    screen.query_one("#risk-key", Select).value = key
    screen.query_one("#risk-value", Input).focus()
    await pilot.press(*value, "enter")  # enter moves on to the passphrase
    await pilot.press(*passphrase, "enter")
    return screen


async def test_without_a_configured_passphrase_the_console_refuses_and_says_how_to_set_one(
    engine: RecordingEngine, store: Store
) -> None:
    engine.risk_gate = gate_for(store, None)  # type: ignore[attr-defined]
    app = create_app(Settings(), engine)
    async with app.run_test() as pilot:
        shown = record_notifications(app)
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("l")
        await pilot.pause()
        assert not isinstance(app.screen, RiskChangeScreen)
        assert any("tradebot secrets set-risk-passphrase" in message for message in shown)
    assert engine.commands == []


async def test_the_dialog_shows_the_value_in_force_for_the_chosen_setting(
    engine: RecordingEngine, store: Store
) -> None:
    engine.risk_gate = gate_for(store, hash_passphrase(RISK_PASSPHRASE, FAST_KDF))  # type: ignore[attr-defined]
    app = create_app(Settings(), engine)
    async with app.run_test() as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, RiskChangeScreen)
        screen.query_one("#risk-key", Select).value = DAILY_LOSS
        await wait_for(pilot, lambda: text_of(screen, "#risk-current") == "now: 5.0")


async def test_a_wrong_passphrase_keeps_the_dialog_open_and_sends_nothing(
    engine: RecordingEngine, store: Store
) -> None:
    engine.risk_gate = gate_for(store, hash_passphrase(RISK_PASSPHRASE, FAST_KDF))  # type: ignore[attr-defined]
    app = create_app(Settings(), engine)
    async with app.run_test() as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        screen = await fill_limit_dialog(pilot, DAILY_LOSS, "3", "not-the-passphrase")
        await wait_for(pilot, lambda: "wrong passphrase" in text_of(screen, "#risk-hint"))
        assert app.screen is screen and screen.query_one("#risk-passphrase", Input).value == ""
    assert engine.commands == []
    (failure,) = [e for e in await AuditLog(store).entries() if e.action == "login_failure"]
    assert (failure.actor, failure.detail["old"], failure.detail["new"]) == ("console", 5.0, 3.0)


async def test_the_right_passphrase_submits_a_granted_change(engine: RecordingEngine, store: Store) -> None:
    gate = gate_for(store, hash_passphrase(RISK_PASSPHRASE, FAST_KDF))
    engine.risk_gate = gate  # type: ignore[attr-defined]
    app = create_app(Settings(), engine)
    async with app.run_test() as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await fill_limit_dialog(pilot, DAILY_LOSS, "3", RISK_PASSPHRASE)
        await wait_for(pilot, lambda: bool(engine.commands))
        assert not isinstance(app.screen, RiskChangeScreen)
    (command,) = engine.commands
    assert isinstance(command, SetRiskLimit) and (command.key, command.value) == (DAILY_LOSS, 3.0)
    gate.redeem(command)  # the grant is one the gate issued, for exactly this change
    assert command.grant not in repr(command)  # and it stays out of log lines


async def test_escape_cancels_the_dialog_and_sends_nothing(engine: RecordingEngine, store: Store) -> None:
    engine.risk_gate = gate_for(store, hash_passphrase(RISK_PASSPHRASE, FAST_KDF))  # type: ignore[attr-defined]
    app = create_app(Settings(), engine)
    async with app.run_test() as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("l")
        assert isinstance(app.screen, RiskChangeScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RiskChangeScreen)
    assert engine.commands == []


async def test_reset_breaker_asks_for_the_passphrase_and_submits_a_granted_override(
    engine: RecordingEngine, store: Store
) -> None:
    engine.risk_gate = gate_for(store, hash_passphrase(RISK_PASSPHRASE, FAST_KDF))  # type: ignore[attr-defined]
    app = create_app(Settings(), engine)
    async with app.run_test() as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())  # the loss breaker is open in it
        await pilot.press("u")
        screen = app.screen
        assert isinstance(screen, RiskChangeScreen) and screen.breaker is not None
        assert "RESET BREAKER LOSS" in str(screen.query_one("#dialog-title", Static).content)
        await pilot.press(*RISK_PASSPHRASE, "enter")
        await wait_for(pilot, lambda: bool(engine.commands))
    (command,) = engine.commands
    assert isinstance(command, ResumeBreaker) and command.breaker == "loss" and command.grant


async def test_a_risk_change_from_the_console_reaches_the_real_engine(tmp_path: Path) -> None:
    settings = Settings(
        exchange={"symbols": ["BTC/USDT"], "replay_speed": 4.0},
        storage={"database_path": tmp_path / "tradebot.sqlite3", "log_dir": tmp_path / "logs"},
    )
    app = create_app(settings, risk_passphrase_hash=hash_passphrase(RISK_PASSPHRASE, FAST_KDF))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.engine_state == "running")
        await fill_limit_dialog(pilot, DAILY_LOSS, "2.5", RISK_PASSPHRASE)
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.daily_loss_limit_pct == 2.5)
        await app.shutdown()
    assert [type(c) for c in app.submitted] == [SetRiskLimit]
