"""Specification of authenticated risk changes: the engine applies SetRiskLimit/ResumeBreaker only with a grant."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.domain.commands import ResumeBreaker, SetRiskLimit
from engine.domain.models import CircuitState
from engine.domain.ports import RiskChangeRefused
from engine.runtime.engine import TradingEngine
from engine.runtime.remote_control import CachedPassphrase, load_risk_passphrase_hash
from engine.runtime.risk_gate import SET_PASSPHRASE_HINT, RiskChangeGate
from engine.security.audit import AuditLog
from engine.security.auth import AuthenticationFailed, hash_passphrase, verify_passphrase
from engine.security.crypto import KdfParams
from engine.security.secrets_file import RISK_PASSPHRASE_HASH_NAME, SecretsFile
from engine.store import Store
from tests.engine.runtime_helpers import btc_window, finish, paper_engine, start, wait_for_event

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
RISK_PASSPHRASE = "correct horse battery"
DAILY_LOSS = "risk.max_daily_loss_percent"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[TradingEngine]:
    running = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=520)}, replay_speed=5.0,
                           risk_passphrase_hash=hash_passphrase(RISK_PASSPHRASE, FAST_KDF))
    task = start(running)
    await asyncio.wait_for(running.started.wait(), 30)
    yield running
    await finish(running, task)


async def audit_entries(engine: TradingEngine) -> list[Any]:
    await engine.wait_idle()
    return await AuditLog(engine.store).entries()


async def test_engine_refuses_a_risk_change_without_a_grant(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    await engine.submit(SetRiskLimit(source="console", key=DAILY_LOSS, value=3.0))
    refused = await wait_for_event(events, "CommandRejected")
    assert "not authenticated" in refused.data["outcome"]
    assert engine.core.risk.config.max_daily_loss_percent == 5.0


async def test_a_refused_change_is_audited_with_old_and_new_value(engine: TradingEngine) -> None:
    await engine.submit(SetRiskLimit(source="console", key=DAILY_LOSS, value=3.0))
    (row,) = [e for e in await audit_entries(engine) if e.action == "command.SetRiskLimit"]
    assert row.detail["accepted"] is False
    assert (row.detail["parameter"], row.detail["old"], row.detail["new"]) == (DAILY_LOSS, 5.0, 3.0)
    assert "grant" not in row.detail


async def test_a_made_up_grant_is_refused(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    await engine.submit(SetRiskLimit(source="console", key=DAILY_LOSS, value=3.0, grant="let-me-in"))
    assert "not authenticated" in (await wait_for_event(events, "CommandRejected")).data["outcome"]


async def test_an_authenticated_change_is_applied_and_audited(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    granted = await engine.risk_gate.authorize_with_passphrase(
        SetRiskLimit(source="console", key=DAILY_LOSS, value=3.0), RISK_PASSPHRASE)
    await engine.submit(granted)
    changed = await wait_for_event(events, "RiskLimitChanged")
    assert (changed.data["old"], changed.data["new"]) == (5.0, 3.0)
    rows = {e.action: e for e in await audit_entries(engine)}
    assert rows["parameter_change"].detail == {
        "parameter": DAILY_LOSS, "old": 5.0, "new": 3.0, "method": "passphrase"}
    assert rows["command.SetRiskLimit"].detail["accepted"] is True
    assert rows["command.SetRiskLimit"].detail["old"] == 5.0


async def test_a_grant_is_used_once(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    granted = await engine.risk_gate.authorize_with_passphrase(
        SetRiskLimit(source="console", key=DAILY_LOSS, value=3.0), RISK_PASSPHRASE)
    await engine.submit(granted)
    await wait_for_event(events, "CommandAccepted")
    await engine.submit(granted)
    assert "not authenticated" in (await wait_for_event(events, "CommandRejected")).data["outcome"]


async def test_a_grant_does_not_cover_another_value(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    granted = await engine.risk_gate.authorize_with_passphrase(
        SetRiskLimit(source="console", key=DAILY_LOSS, value=3.0), RISK_PASSPHRASE)
    await engine.submit(dataclasses.replace(granted, value=50.0))
    assert "different change" in (await wait_for_event(events, "CommandRejected")).data["outcome"]
    assert engine.core.risk.config.max_daily_loss_percent == 5.0


async def test_a_wrong_passphrase_is_refused_and_audited_as_a_login_failure(engine: TradingEngine) -> None:
    with pytest.raises(AuthenticationFailed):
        await engine.risk_gate.authorize_with_passphrase(
            SetRiskLimit(source="console", key=DAILY_LOSS, value=3.0), "wrong passphrase")
    (row,) = [e for e in await audit_entries(engine) if e.action == "login_failure"]
    assert (row.actor, row.detail["old"], row.detail["new"]) == ("console", 5.0, 3.0)


async def test_an_invalid_value_is_refused_before_any_passphrase_check(engine: TradingEngine) -> None:
    with pytest.raises(RiskChangeRefused, match="refused"):
        await engine.risk_gate.authorize_with_passphrase(
            SetRiskLimit(source="console", key=DAILY_LOSS, value=500.0), RISK_PASSPHRASE)
    (row,) = [e for e in await audit_entries(engine) if e.action == "parameter_change_denied"]
    assert (row.detail["parameter"], row.detail["new"]) == (DAILY_LOSS, 500.0)


async def test_a_breaker_override_needs_a_grant_and_then_resets_the_breaker(engine: TradingEngine) -> None:
    events = engine.bus.subscribe("test")
    engine.emit_all(engine.core.breaker.check_loss_circuit(10, 0.0, engine.clock.now_ms()).events)
    assert engine.core.breaker.status("loss").state is CircuitState.OPEN
    await engine.submit(ResumeBreaker(source="console", breaker="loss"))
    assert "not authenticated" in (await wait_for_event(events, "CommandRejected")).data["outcome"]
    assert engine.core.breaker.status("loss").state is CircuitState.OPEN

    granted = await engine.risk_gate.authorize_with_passphrase(
        ResumeBreaker(source="console", breaker="loss"), RISK_PASSPHRASE)
    await engine.submit(granted)
    await wait_for_event(events, "BreakerReset")
    assert engine.core.breaker.status("loss").state is CircuitState.CLOSED
    override = [e for e in await audit_entries(engine) if e.action == "parameter_change"][-1]
    assert (override.detail["parameter"], override.detail["old"], override.detail["new"]) == (
        "breaker.loss", "open", "closed")


async def test_without_a_risk_passphrase_every_console_change_is_refused(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "gate.sqlite3") as store:
        settings = Settings()
        core = DecisionCore(settings.risk, settings.breaker, Portfolio(cash=10_000.0))
        gate = RiskChangeGate(core, AuditLog(store), None, lambda: 1)
        assert not gate.passphrase_configured and "tradebot secrets set-risk-passphrase" in SET_PASSPHRASE_HINT
        with pytest.raises(AuthenticationFailed, match="no risk-change passphrase"):
            await gate.authorize_with_passphrase(SetRiskLimit(key=DAILY_LOSS, value=3.0), "anything")


async def test_a_grant_expires(tmp_path: Path) -> None:
    now = [0.0]
    async with Store.open(tmp_path / "gate.sqlite3") as store:
        settings = Settings()
        core = DecisionCore(settings.risk, settings.breaker, Portfolio(cash=10_000.0))
        gate = RiskChangeGate(core, AuditLog(store), hash_passphrase(RISK_PASSPHRASE, FAST_KDF), lambda: 1,
                              grant_ttl_s=60.0, monotonic=lambda: now[0])
        granted = await gate.authorize_with_passphrase(SetRiskLimit(key=DAILY_LOSS, value=3.0), RISK_PASSPHRASE)
        now[0] = 61.0
        with pytest.raises(RiskChangeRefused):
            gate.redeem(granted)


def test_the_risk_passphrase_hash_is_read_from_the_secrets_file_with_one_passphrase_prompt(tmp_path: Path,
                                                                                      monkeypatch: Any) -> None:
    monkeypatch.delenv("TRADEBOT_SECRETS_FILE", raising=False)
    config = tmp_path / "config.toml"
    config.write_text("")
    file = SecretsFile(tmp_path / "secrets.enc", kdf=FAST_KDF)
    file.set(RISK_PASSPHRASE_HASH_NAME, hash_passphrase(RISK_PASSPHRASE, FAST_KDF).encode(), "file-pass")
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        return "file-pass"

    cached = CachedPassphrase(provider)
    assert cached() == "file-pass"  # start-up already asked for it once (for the secrets)
    loaded = load_risk_passphrase_hash(config, cached)
    assert loaded is not None and verify_passphrase(RISK_PASSPHRASE, loaded)
    assert len(asked) == 1


def test_an_unreadable_secrets_file_disables_risk_changes_instead_of_failing_start_up(tmp_path: Path,
                                                                                     monkeypatch: Any) -> None:
    monkeypatch.delenv("TRADEBOT_SECRETS_FILE", raising=False)
    config = tmp_path / "config.toml"
    config.write_text("")
    SecretsFile(tmp_path / "secrets.enc", kdf=FAST_KDF).set(
        RISK_PASSPHRASE_HASH_NAME, hash_passphrase(RISK_PASSPHRASE, FAST_KDF).encode(), "file-pass")
    assert load_risk_passphrase_hash(config, lambda: "wrong-pass") is None
    assert load_risk_passphrase_hash(config, lambda: None) is None
