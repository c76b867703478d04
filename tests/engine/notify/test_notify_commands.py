"""Specification of remote control: allowed chats command, others are ignored and audited, exit needs a code."""

from __future__ import annotations

import asyncio
import dataclasses
import re

from engine.domain.commands import EmergencyExit, Halt, Resume
from engine.security.audit import AuditLog
from engine.store import Store
from tests.engine.notify.conftest import (
    FAST_TUNING,
    GROUP_CHAT,
    PRIVATE_CHAT,
    STRANGER_CHAT,
    NotifierFactory,
    RecordingEngine,
    make_snapshot,
)
from tests.fakes.fake_bot_api import FakeBotApi, SentMessage


async def command(api: FakeBotApi, text: str, chat_id: int = PRIVATE_CHAT, chat_type: str = "private") -> str:
    """Sends ``text`` from ``chat_id`` and returns the bot's answer to that chat."""
    before = len(api.texts_to(chat_id))
    api.queue_text(chat_id, text, chat_type=chat_type)

    def is_answer(message: SentMessage) -> bool:
        return message.chat_id == chat_id

    replies = await api.wait_for_sent(is_answer, count=before + 1)
    return replies[before].text


async def test_status_answers_from_the_engine_snapshot(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    engine.bus.publish_snapshot(make_snapshot())
    await start_notifier()
    answer = await command(api, "/status")
    assert "ACTIVE" in answer and "10,250.50" in answer and "Breakers open: 1 (loss)" in answer


async def test_positions_pnl_and_breakers_answer_from_the_snapshot(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    engine.bus.publish_snapshot(make_snapshot())
    await start_notifier()
    assert "LONG BTC/USDT" in await command(api, "/positions")
    assert "Realised today: <code>+180.25</code>" in await command(api, "/pnl")
    assert "5 losses in a row" in await command(api, "/breakers")


async def test_views_say_so_when_the_engine_has_no_snapshot_yet(
    api: FakeBotApi, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    assert "not published a snapshot" in await command(api, "/status")


async def test_halt_and_resume_are_submitted_with_the_chat_as_source(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    assert "Halt sent" in await command(api, "/halt")
    assert "Resume sent" in await command(api, "/resume")
    submitted = await engine.wait_for_submitted(2)
    assert isinstance(submitted[0], Halt) and submitted[0].source == f"telegram:{PRIVATE_CHAT}"
    assert submitted[1] == Resume(source=f"telegram:{PRIVATE_CHAT}")


async def test_a_group_chat_in_the_allowed_list_may_command(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    await command(api, "/halt", chat_id=GROUP_CHAT, chat_type="group")
    assert [c.source for c in await engine.wait_for_submitted(1)] == [f"telegram:{GROUP_CHAT}"]


async def test_report_command_sends_the_daily_report_now(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    engine.bus.publish_snapshot(make_snapshot())
    await start_notifier()
    answer = await command(api, "/report")
    assert "Daily report" in answer and "+250.50" in answer


async def test_help_lists_every_command(api: FakeBotApi, start_notifier: NotifierFactory) -> None:
    await start_notifier()
    answer = await command(api, "/help")
    for name in ("/status", "/positions", "/pnl", "/breakers", "/halt", "/resume", "/exit_all", "/report"):
        assert name in answer


async def test_every_accepted_command_is_audited_with_its_chat_id(
    api: FakeBotApi, store: Store, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    await command(api, "/status")
    await command(api, "/halt")
    entries = await AuditLog(store).entries()
    assert [(e.actor, e.action, e.detail["command"], e.detail["chat_id"]) for e in entries] == [
        (f"telegram:{PRIVATE_CHAT}", "telegram.command", "status", PRIVATE_CHAT),
        (f"telegram:{PRIVATE_CHAT}", "telegram.command", "halt", PRIVATE_CHAT),
    ]
    assert (await AuditLog(store).verify()).ok


async def test_unauthorised_chat_is_ignored_and_audited(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    api.queue_text(STRANGER_CHAT, "/halt")
    api.queue_text(STRANGER_CHAT, "/exit_all")

    async def audited() -> list:
        while len(entries := await AuditLog(store).entries()) < 2:
            await asyncio.sleep(0.02)
        return entries

    entries = await asyncio.wait_for(audited(), 5.0)
    await command(api, "/status")  # an allowed command after them: they were processed, not pending
    assert engine.submitted == []
    assert api.texts_to(STRANGER_CHAT) == []
    assert [(e.action, e.detail["chat_id"], e.detail["text"]) for e in entries[:2]] == [
        ("telegram.unauthorised", STRANGER_CHAT, "/halt"),
        ("telegram.unauthorised", STRANGER_CHAT, "/exit_all"),
    ]


def confirmation_code(prompt: str) -> str:
    match = re.search(r"/confirm (\d{4})", prompt)
    assert match is not None, prompt
    return match.group(1)


async def test_exit_all_runs_only_after_the_code_is_confirmed(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    prompt = await command(api, "/exit_all")
    assert engine.submitted == []
    answer = await command(api, f"/confirm EXIT {confirmation_code(prompt)}")
    assert "Emergency exit sent" in answer
    (submitted,) = await engine.wait_for_submitted(1)
    assert isinstance(submitted, EmergencyExit) and submitted.source == f"telegram:{PRIVATE_CHAT}"


async def test_exit_all_accepts_a_yes_reply_with_the_code(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    code = confirmation_code(await command(api, "/exit_all"))
    await command(api, f"yes {code}")
    assert [type(c) for c in await engine.wait_for_submitted(1)] == [EmergencyExit]


async def test_exit_all_with_a_wrong_code_is_abandoned(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    code = confirmation_code(await command(api, "/exit_all"))
    wrong = f"{(int(code) + 1) % 10_000:04d}"
    assert "abandoned" in await command(api, f"/confirm {wrong}")
    assert "Nothing to confirm" in await command(api, f"/confirm {code}")
    assert engine.submitted == []


async def test_exit_all_cancelled_is_not_executed(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    code = confirmation_code(await command(api, "/exit_all"))
    assert "cancelled" in await command(api, "/cancel")
    assert "Nothing to confirm" in await command(api, f"/confirm {code}")
    assert engine.submitted == []


async def test_exit_all_confirmed_too_late_is_not_executed(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier(tuning=dataclasses.replace(FAST_TUNING, confirm_window_s=0.2))
    code = confirmation_code(await command(api, "/exit_all"))
    await asyncio.sleep(0.3)
    assert "expired" in await command(api, f"/confirm {code}")
    assert engine.submitted == []


async def test_confirmation_from_another_chat_does_not_count(
    api: FakeBotApi, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    code = confirmation_code(await command(api, "/exit_all"))
    assert "Nothing to confirm" in await command(api, f"/confirm {code}", chat_id=GROUP_CHAT, chat_type="group")
    assert engine.submitted == []
