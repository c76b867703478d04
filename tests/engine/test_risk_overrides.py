"""Specification of persisted runtime risk changes: an accepted SetRiskLimit is saved, restored on restart, audited."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.domain.commands import SetRiskLimit
from engine.runtime.engine import TradingEngine
from engine.runtime.risk_overrides import RISK_OVERRIDES_KEY, restore_risk_overrides
from engine.security.audit import AuditLog
from engine.security.auth import hash_passphrase
from engine.security.crypto import KdfParams
from engine.store import Store
from tests.engine.runtime_helpers import WAIT_S, btc_window, finish, paper_engine, start, wait_for_event

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
CHAT = 4242
DAILY_LOSS = "risk.max_daily_loss_percent"


def engine_on(tmp_path: Path) -> TradingEngine:
    """A paper engine on the same database each time, restoring its state at start-up, candles held."""
    engine = paper_engine(
        tmp_path,
        {"BTC/USDT": btc_window(length=520)},
        restore=True,
        risk_passphrase_hash=hash_passphrase("unused here", FAST_KDF),
    )
    engine.pause_candles()
    return engine


async def audit_rows(engine: TradingEngine, action: str) -> list[Any]:
    async def written() -> list[Any]:
        while not (rows := [e for e in await AuditLog(engine.store).entries() if e.action == action]):
            await asyncio.sleep(0.01)
        return rows

    return await asyncio.wait_for(written(), WAIT_S)


async def test_a_set_risk_change_survives_a_restart_and_is_audited_with_old_and_new_values(tmp_path: Path) -> None:
    first = engine_on(tmp_path)
    events = first.bus.subscribe("test")
    task = start(first)
    await asyncio.wait_for(first.started.wait(), WAIT_S)
    request = SetRiskLimit(source=f"telegram:{CHAT}", key=DAILY_LOSS, value=3.0)  # what `/set` submits
    granted = await first.risk_gate.authorize_from_chat(request, CHAT, [CHAT], confirmed=True)
    await first.submit(granted)
    accepted = await wait_for_event(events, "CommandAccepted")
    assert "kept across restarts" in accepted.data["outcome"]
    await audit_rows(first, "command.SetRiskLimit")  # written after the event: wait before stopping
    await finish(first, task)

    second = engine_on(tmp_path)
    task = start(second)
    await asyncio.wait_for(second.started.wait(), WAIT_S)
    assert second.core.risk.config.max_daily_loss_percent == 3.0
    assert second.snapshot() is not None and second.snapshot().daily_loss_limit_pct == 3.0
    assert any("restored runtime risk change risk.max_daily_loss_percent = 3" in note for note in second.repairs)
    (row,) = await audit_rows(second, "command.SetRiskLimit")
    assert (row.actor, row.detail["parameter"], row.detail["old"], row.detail["new"], row.detail["accepted"]) == (
        f"telegram:{CHAT}",
        DAILY_LOSS,
        5.0,
        3.0,
        True,
    )
    await finish(second, task)


async def test_a_saved_change_the_settings_now_reject_is_skipped_with_a_note(tmp_path: Path) -> None:
    settings = Settings()
    core = DecisionCore(settings.risk, settings.breaker, Portfolio(cash=10_000.0))
    async with Store.open(tmp_path / "overrides.sqlite3") as store:
        await store.set_state(
            RISK_OVERRIDES_KEY,
            {"risk.no_such_setting": {"value": 1.0}, "breaker.max_consecutive_losses": {"value": 3.0}},
        )
        notes = await restore_risk_overrides(store, core)
    assert core.breaker.config.max_consecutive_losses == 3
    restored, skipped = sorted(notes)
    assert skipped.startswith("saved risk change risk.no_such_setting ignored: unknown setting")
    assert restored.startswith("restored runtime risk change breaker.max_consecutive_losses = 3 (config value 5;")
