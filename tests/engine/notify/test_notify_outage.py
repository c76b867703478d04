"""Specification of delivery through outages: the engine never waits, alerts retry with backoff, give up late."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from engine.domain.commands import Halt
from engine.domain.events import Event
from engine.notify import TelegramNotifier
from engine.store import Store
from tests.engine.notify.conftest import (
    FAST_TUNING,
    PRIVATE_CHAT,
    FakeClock,
    NotifierFactory,
    RecordingEngine,
    telegram_config,
)
from tests.engine.notify.test_notify_alerts import wait_for_outbox
from tests.event_samples import opened as sample_opened
from tests.fakes.fake_bot_api import FakeBotApi


def opened(index: int) -> Event:
    return sample_opened(index, f"COIN{index}/USDT", qty=1.0)


async def test_engine_keeps_publishing_and_taking_commands_while_telegram_is_down(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    await api.stop()
    for index in range(200):
        engine.publish(opened(index))
    await asyncio.wait_for(engine.submit(Halt(source="console")), 0.5)
    await wait_for_outbox(store, "pending", 200)
    assert engine.submitted == [Halt(source="console")]

    async def attempted() -> None:
        while not any(row.attempts for row in await store.outbox_messages("pending")):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(attempted(), 5.0)
    failed_rows = [row for row in await store.outbox_messages("pending") if row.last_error]
    assert failed_rows and "NetworkError" in (failed_rows[0].last_error or "")

    await api.start()
    await wait_for_outbox(store, "sent", 200, timeout=10.0)
    joined = "\n".join(api.texts_to(PRIVATE_CHAT))
    assert "COIN0/USDT" in joined and "COIN199/USDT" in joined


async def test_flood_control_reply_delays_the_retry_by_retry_after(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    api.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    engine.publish(opened(1))
    await api.wait_for_call("sendMessage", 1)

    async def rescheduled() -> list:
        while True:
            rows = await store.outbox_messages("pending")
            if rows and rows[0].attempts == 1:
                return rows
            await asyncio.sleep(0.01)

    row = (await asyncio.wait_for(rescheduled(), 5.0))[0]
    assert "RetryAfter" in (row.last_error or "")
    assert row.next_attempt_ms - row.created_ms >= 900
    await wait_for_outbox(store, "sent", 1)
    assert len(api.texts_to(PRIVATE_CHAT)) == 1


async def test_server_errors_are_retried_until_the_alert_is_sent(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    api.fail_next("sendMessage", 500, "Internal Server Error", times=2)
    api.fail_next("sendMessage", 502, "Bad Gateway", times=1)
    engine.publish(opened(1))
    await wait_for_outbox(store, "sent", 1)
    (row,) = await store.outbox_messages("sent")
    assert row.attempts == 4
    assert "Bad Gateway" in (row.last_error or "")


async def test_a_hung_request_times_out_and_is_retried(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier(config=telegram_config(api, request_timeout_s=0.3))
    api.hang_next("sendMessage", 5.0)
    engine.publish(opened(1))
    await wait_for_outbox(store, "sent", 1)
    (row,) = await store.outbox_messages("sent")
    assert row.attempts == 2 and "TimedOut" in (row.last_error or "")


async def test_alert_is_marked_failed_and_logged_after_the_last_attempt(
    api: FakeBotApi,
    store: Store,
    engine: RecordingEngine,
    start_notifier: NotifierFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="engine.notify")
    await start_notifier()
    api.fail_next("sendMessage", 500, "Internal Server Error", times=1000)
    engine.publish(opened(1))
    await wait_for_outbox(store, "failed", 1)
    (row,) = await store.outbox_messages("failed")
    assert row.attempts == FAST_TUNING.retry.max_attempts
    assert any("failed for good" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


async def test_refusal_that_no_retry_can_fix_fails_at_once(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    api.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", times=2)
    engine.publish(opened(1))
    await wait_for_outbox(store, "failed", 1)
    assert api.call_count("sendMessage") == 2  # one try per chat, no retry


async def test_alert_refused_by_one_chat_is_still_delivered_to_the_other(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    api.fail_next("sendMessage", 400, "Bad Request: chat not found", times=1)
    engine.publish(opened(1))
    await wait_for_outbox(store, "sent", 1)
    assert len(api.sent) == 1


async def test_pending_alert_is_delivered_by_the_next_run(
    api: FakeBotApi, engine: RecordingEngine, clock: FakeClock, tmp_path: Path
) -> None:
    database = tmp_path / "restart.sqlite3"
    await api.stop()
    async with Store.open(database) as first_store:
        first = TelegramNotifier(telegram_config(api), first_store, engine, clock, tuning=FAST_TUNING)
        await first.start()
        engine.publish(opened(7))
        await wait_for_outbox(first_store, "pending", 1)
        await first.stop()
    await api.start()
    async with Store.open(database) as second_store:
        second = TelegramNotifier(telegram_config(api), second_store, RecordingEngine(), clock, tuning=FAST_TUNING)
        await second.start()
        try:
            await wait_for_outbox(second_store, "sent", 1)
        finally:
            await second.stop()
    assert any("COIN7/USDT" in text for text in api.texts_to(PRIVATE_CHAT))


async def test_notifier_connects_once_telegram_comes_up(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await api.stop()
    notifier = await start_notifier(wait_connected=False)
    engine.publish(opened(3))
    await wait_for_outbox(store, "pending", 1)
    assert notifier.status == "connecting"
    await api.start()
    await asyncio.wait_for(notifier.connected.wait(), 5.0)
    await wait_for_outbox(store, "sent", 1)
