"""Specification of Telegram in the running engine: the real python-telegram-bot client against the fake Bot API.

The engine is the real TradingEngine on a paper replay of bundled candles; ``telegram.base_url`` points at
the loopback fake from ``tests/fakes/fake_bot_api.py``. The headless test runs ``tradebot run --headless``
in a subprocess configured only through ``TRADEBOT_*`` variables.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.domain.commands import EmergencyExit
from engine.domain.models import CircuitState, TradingState
from engine.runtime.engine import TradingEngine
from engine.security.audit import AuditLog
from engine.security.auth import hash_passphrase
from engine.security.crypto import KdfParams
from engine.security.redaction import uninstall_secret_redaction
from engine.store import Store
from tests.engine.notify.conftest import FAST_TUNING, PRIVATE_CHAT, STRANGER_CHAT, TOKEN
from tests.engine.runtime_helpers import btc_window, finish, make_settings, start, wait_for_event
from tests.fakes.fake_bot_api import FakeBotApi, SentMessage

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 20.0
DAILY_LOSS = "risk.max_daily_loss_percent"


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as server:
        yield server
    uninstall_secret_redaction()  # the notifier installs it process-wide; other tests expect raw logs


def telegram_engine(tmp_path: Path, api: FakeBotApi, **options: Any) -> TradingEngine:
    from engine.runtime.engine import build_engine

    settings = make_settings(tmp_path, ["BTC/USDT"], telegram={
        "token": TOKEN, "allowed_chat_ids": [PRIVATE_CHAT], "base_url": api.base_url, "request_timeout_s": 2.0,
    })
    defaults: dict[str, Any] = {
        "series": {"BTC/USDT": btc_window(length=700)}, "replay_speed": float("inf"), "warmup_bars": 500,
        "snapshot_rate_hz": 50.0, "notifier_tuning": FAST_TUNING,
        "risk_passphrase_hash": hash_passphrase("unused-here", KdfParams(n=2**4, r=8, p=1)),
    }
    return build_engine(settings, **{**defaults, **options})


async def started_and_connected(engine: TradingEngine) -> asyncio.Task[None]:
    """Starts ``engine`` with candles held until its notifier is polling."""
    engine.pause_candles()
    task = start(engine)
    await asyncio.wait_for(engine.started.wait(), WAIT_S)
    assert engine.notifier is not None
    await asyncio.wait_for(engine.notifier.connected.wait(), WAIT_S)
    return task


async def reply_to(api: FakeBotApi, text: str, chat_id: int = PRIVATE_CHAT) -> str:
    before = len(api.texts_to(chat_id))
    api.queue_text(chat_id, text)
    replies = await api.wait_for_sent(lambda m: m.chat_id == chat_id, count=before + 1, timeout=WAIT_S)
    return replies[before].text


async def audit_rows(engine: TradingEngine, action: str, count: int = 1) -> list[Any]:
    """The audit rows of ``action`` once there are ``count`` (candles may be held, so no wait_idle)."""

    async def written() -> list[Any]:
        while len(rows := [e for e in await AuditLog(engine.store).entries() if e.action == action]) < count:
            await asyncio.sleep(0.02)
        return rows

    return await asyncio.wait_for(written(), WAIT_S)


def confirmation_code(prompt: str) -> str:
    match = re.search(r"/confirm (\d{4})", prompt)
    assert match is not None, prompt
    return match.group(1)


async def test_without_a_token_the_engine_starts_no_notifier(tmp_path: Path) -> None:
    from tests.engine.runtime_helpers import paper_engine

    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=700)}, stop_when_replay_done=True)
    await asyncio.wait_for(engine.run(), 60)
    assert engine.notifier is None and engine.portfolio.closed_trades
    async with Store.open(engine.database_path) as store:
        assert await store.outbox_messages("pending") == []  # nothing was even queued


async def test_positions_opened_on_a_replay_reach_the_allowed_chat(tmp_path: Path, api: FakeBotApi) -> None:
    engine = telegram_engine(tmp_path, api)
    task = await started_and_connected(engine)
    engine.resume_candles()

    def opened(message: SentMessage) -> bool:
        return message.chat_id == PRIVATE_CHAT and "Position opened LONG BTC/USDT" in message.text

    await api.wait_for_sent(opened, timeout=WAIT_S)
    await finish(engine, task)
    assert engine.notifier is None  # stopped before the store closed
    assert api.texts_to(STRANGER_CHAT) == []


async def test_halt_from_an_allowed_chat_halts_the_engine(tmp_path: Path, api: FakeBotApi) -> None:
    engine = telegram_engine(tmp_path, api)
    events = engine.bus.subscribe("test")
    task = await started_and_connected(engine)

    assert "Halt sent" in await reply_to(api, "/halt")
    changed = await wait_for_event(events, "TradingStateChanged")
    assert changed.data["state"] == "HALTED" and engine.core.trading_state is TradingState.HALTED
    accepted = await wait_for_event(events, "CommandAccepted")
    assert accepted.data["source"] == f"telegram:{PRIVATE_CHAT}"
    await api.wait_for_sent(lambda m: "Trading state changed" in m.text, timeout=WAIT_S)
    await finish(engine, task)


async def test_an_unauthorised_chat_is_ignored_and_audited(tmp_path: Path, api: FakeBotApi) -> None:
    engine = telegram_engine(tmp_path, api)
    task = await started_and_connected(engine)

    api.queue_text(STRANGER_CHAT, "/halt")
    await api.wait_until_acknowledged(WAIT_S)
    await reply_to(api, "/status")  # processed after the stranger's message
    assert engine.core.trading_state is TradingState.ACTIVE
    assert api.texts_to(STRANGER_CHAT) == []
    entries = await audit_rows(engine, "telegram.unauthorised")
    assert [(e.actor, e.detail["chat_id"]) for e in entries] == [(f"telegram:{STRANGER_CHAT}", STRANGER_CHAT)]
    await finish(engine, task)


async def test_set_with_a_confirmation_changes_the_risk_limit(tmp_path: Path, api: FakeBotApi) -> None:
    engine = telegram_engine(tmp_path, api)
    events = engine.bus.subscribe("test")
    task = await started_and_connected(engine)

    prompt = await reply_to(api, f"/set {DAILY_LOSS} 3")
    assert "5.0 → <b>3.0</b>" in prompt and engine.core.risk.config.max_daily_loss_percent == 5.0
    assert "Risk change sent" in await reply_to(api, f"/confirm {confirmation_code(prompt)}")
    changed = await wait_for_event(events, "RiskLimitChanged")
    assert changed.data["source"] == f"telegram:{PRIVATE_CHAT}"
    assert engine.core.risk.config.max_daily_loss_percent == 3.0
    await api.wait_for_sent(lambda m: "Risk setting changed" in m.text, timeout=WAIT_S)
    rows = await audit_rows(engine, "parameter_change")
    assert [(r.actor, r.detail["old"], r.detail["new"], r.detail["method"]) for r in rows] == [
        (f"telegram:{PRIVATE_CHAT}", 5.0, 3.0, "telegram_chat")]
    await finish(engine, task)


async def test_set_with_a_wrong_code_changes_nothing_and_is_audited(tmp_path: Path, api: FakeBotApi) -> None:
    engine = telegram_engine(tmp_path, api)
    task = await started_and_connected(engine)

    code = confirmation_code(await reply_to(api, f"/set {DAILY_LOSS} 3"))
    wrong = f"{(int(code) + 1) % 10_000:04d}"
    assert "abandoned" in await reply_to(api, f"/confirm {wrong}")
    assert engine.core.risk.config.max_daily_loss_percent == 5.0
    denied = await audit_rows(engine, "parameter_change_denied")
    assert [(d.detail["old"], d.detail["new"], d.detail["reason"]) for d in denied] == [(5.0, 3.0, "not confirmed")]
    await finish(engine, task)


async def test_set_of_an_invalid_value_is_refused_without_asking_to_confirm(tmp_path: Path, api: FakeBotApi) -> None:
    engine = telegram_engine(tmp_path, api)
    task = await started_and_connected(engine)
    answer = await reply_to(api, f"/set {DAILY_LOSS} 500")
    assert answer.startswith("Refused") and "/confirm" not in answer
    await finish(engine, task)


async def test_resume_breaker_with_a_confirmation_resets_a_tripped_breaker(tmp_path: Path, api: FakeBotApi) -> None:
    engine = telegram_engine(tmp_path, api)
    events = engine.bus.subscribe("test")
    task = await started_and_connected(engine)
    engine.emit_all(engine.core.breaker.check_loss_circuit(10, 0.0, engine.clock.now_ms()).events)

    prompt = await reply_to(api, "/resume_breaker loss")
    assert "Breaker override" in prompt and engine.core.breaker.status("loss").state is CircuitState.OPEN
    await reply_to(api, f"YES {confirmation_code(prompt)}")
    await wait_for_event(events, "BreakerReset")
    assert engine.core.breaker.status("loss").state is CircuitState.CLOSED
    await finish(engine, task)


async def test_resume_after_an_emergency_exit_asks_to_confirm_then_lifts_the_latch(
    tmp_path: Path, api: FakeBotApi
) -> None:
    engine = telegram_engine(tmp_path, api)
    events = engine.bus.subscribe("test")
    task = await started_and_connected(engine)
    await engine.submit(EmergencyExit(source="console"))
    await wait_for_event(events, "EmergencyExitCompleted")
    await api.wait_for_sent(lambda m: "Emergency exit completed" in m.text, timeout=WAIT_S)  # alerts, not replies

    prompt = await reply_to(api, "/resume")
    assert "Resume from a latched halt" in prompt and "emergency (done)" in prompt
    assert engine.core.trading_state is TradingState.HALTED  # nothing was submitted yet
    api.queue_text(PRIVATE_CHAT, f"YES {confirmation_code(prompt)}")
    await api.wait_for_sent(lambda m: "Resume from a latched halt sent" in m.text, timeout=WAIT_S)
    await wait_for_event(events, "EmergencyExitCleared")
    await wait_for_event(events, "TradingStateChanged", lambda e: e.data["state"] == "ACTIVE")
    assert engine.core.breaker.emergency_phase is None
    await finish(engine, task)


async def test_the_engine_trades_through_a_telegram_outage(tmp_path: Path, api: FakeBotApi) -> None:
    await api.stop()
    engine = telegram_engine(tmp_path, api, stop_when_replay_done=True)
    await asyncio.wait_for(engine.run(), 60)
    assert engine.portfolio.closed_trades, "the replay window trades"
    async with Store.open(engine.database_path) as store:
        pending = await store.outbox_messages("pending")
    assert any("Position opened" in row.text for row in pending)  # kept for the next run


async def test_headless_run_delivers_alerts(tmp_path: Path, api: FakeBotApi) -> None:
    database = tmp_path / "db" / "tradebot.sqlite3"
    database.parent.mkdir()
    async with Store.open(database) as store:
        await store.upsert_candles(btc_window(length=700))  # 500 warm-up bars + 200 replayed
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndatabase_path = "{database}"\nlog_dir = "{tmp_path / "logs"}"\n')
    config.chmod(0o600)
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRADEBOT_")}
    env.update({
        "PYTHONPATH": str(REPO), "TRADEBOT_CONFIG": str(config), "TRADEBOT_SECRETS_FILE": str(tmp_path / "none.enc"),
        "TRADEBOT_EXCHANGE__SYMBOLS": '["BTC/USDT"]', "TRADEBOT_EXCHANGE__REPLAY_SPEED": "60",
        "TRADEBOT_TELEGRAM__TOKEN": TOKEN, "TRADEBOT_TELEGRAM__BASE_URL": api.base_url,
        "TRADEBOT_TELEGRAM__ALLOWED_CHAT_IDS": f"[{PRIVATE_CHAT}]",
    })
    output = tmp_path / "run.out"
    with output.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebot_tui.cli", "run", "--headless", "--until-replay-ends",
            env=env, cwd=str(tmp_path), stdout=out, stderr=out,
        )
        try:
            code = await asyncio.wait_for(process.wait(), 90)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = output.read_text()
    assert code == 0, text[-3000:]
    alerts = [m for m in api.sent if m.chat_id == PRIVATE_CHAT and "Position opened" in m.text]
    assert alerts, text[-3000:]
    assert TOKEN not in text
