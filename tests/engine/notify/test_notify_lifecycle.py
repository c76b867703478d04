"""Specification of the notifier's life: off without a token, the token never logged, the daily report on time."""

from __future__ import annotations

import asyncio
import logging
from datetime import time as dt_time

import pytest

from engine.config import Settings
from engine.notify import TelegramNotifier, create_notifier
from engine.notify.notifier import bot_api_base_url
from engine.notify.report import DailySchedule, next_occurrence_ms
from engine.store import Store
from tests.engine.notify.conftest import (
    PRIVATE_CHAT,
    TOKEN,
    FakeClock,
    NotifierFactory,
    RecordingEngine,
    make_snapshot,
    telegram_config,
)
from tests.engine.notify.test_notify_alerts import wait_for_outbox
from tests.event_samples import closed, opened, tripped
from tests.fakes.fake_bot_api import FakeBotApi

DAY_MS = 86_400_000
JAN_2_2024_MS = 1_704_153_600_000  # 2024-01-02 00:00 UTC


def test_without_a_token_telegram_is_off(store: Store, engine: RecordingEngine, clock: FakeClock) -> None:
    assert create_notifier(Settings(), store, engine, clock) is None


async def test_with_a_token_the_factory_builds_a_notifier(
    api: FakeBotApi, store: Store, engine: RecordingEngine, clock: FakeClock
) -> None:
    settings = Settings(telegram=telegram_config(api))
    assert isinstance(create_notifier(settings, store, engine, clock), TelegramNotifier)


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("", "https://api.telegram.org/bot"),
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081/bot"),
        ("http://127.0.0.1:8081/bot/", "http://127.0.0.1:8081/bot"),
    ],
)
def test_base_url_may_be_given_with_or_without_the_bot_suffix(configured: str, expected: str) -> None:
    assert bot_api_base_url(configured) == expected


async def test_the_token_never_reaches_the_log_even_with_debug_http_logging(
    api: FakeBotApi,
    engine: RecordingEngine,
    start_notifier: NotifierFactory,
    store: Store,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await start_notifier()
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # someone turns it up anyway
    engine.publish(opened(1, "BTC/USDT"))
    await wait_for_outbox(store, "sent", 1)
    await api.stop()  # and an outage, whose errors are logged too
    engine.publish(opened(2, "ETH/USDT"))

    async def logged_failure() -> None:
        while not any("not sent" in record.getMessage() for record in caplog.records):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(logged_failure(), 5.0)
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)
    assert TOKEN not in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text
    for row in await store.outbox_messages():
        assert TOKEN not in (row.last_error or "")


async def test_a_rejected_token_is_logged_without_the_token_and_alerts_wait(
    api: FakeBotApi,
    store: Store,
    engine: RecordingEngine,
    start_notifier: NotifierFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_token = "7000002:AAHk3v2-wrongTokenForTests_abcdefghijkl"
    notifier = await start_notifier(config=telegram_config(api, token=wrong_token), wait_connected=False)

    async def rejected() -> None:
        while notifier.status != "token_rejected":
            await asyncio.sleep(0.02)

    await asyncio.wait_for(rejected(), 5.0)
    engine.publish(opened(1, "BTC/USDT"))
    await wait_for_outbox(store, "pending", 1)
    assert "rejected the bot token" in caplog.text
    assert wrong_token not in caplog.text and wrong_token.split(":")[1] not in caplog.text
    assert api.sent == []


async def test_daily_report_is_sent_once_at_the_configured_utc_time(
    api: FakeBotApi, engine: RecordingEngine, clock: FakeClock, start_notifier: NotifierFactory
) -> None:
    engine.bus.publish_snapshot(make_snapshot())
    await start_notifier()
    engine.publish(closed(clock.now, 25.0))
    engine.publish(tripped(clock.now, "volatility"))
    clock.now = JAN_2_2024_MS + 20 * 3_600_000  # 20:00 UTC
    (report,) = await api.wait_for_sent(lambda m: "Daily report" in m.text and m.chat_id == PRIVATE_CHAT)
    assert "<b>1</b>" in report.text and "+25.00" in report.text and "volatility tripped" in report.text
    clock.now += 60_000
    clock.now += DAY_MS
    reports = await api.wait_for_sent(lambda m: "Daily report" in m.text and m.chat_id == PRIVATE_CHAT, count=2)
    assert "Trades since 2024-01-02 20:00 UTC: <b>0</b>" in reports[1].text


def test_schedule_fires_once_per_passing_of_the_report_time() -> None:
    schedule = DailySchedule(dt_time(20, 0), JAN_2_2024_MS)
    at_20 = JAN_2_2024_MS + 20 * 3_600_000
    assert not schedule.due(at_20 - 1)
    assert schedule.due(at_20)
    assert not schedule.due(at_20 + 3_600_000)
    assert schedule.due(at_20 + DAY_MS)


def test_schedule_gives_one_report_when_the_clock_jumps_several_days() -> None:
    schedule = DailySchedule(dt_time(20, 0), JAN_2_2024_MS)
    assert schedule.due(JAN_2_2024_MS + 5 * DAY_MS)
    assert not schedule.due(JAN_2_2024_MS + 5 * DAY_MS + 1)


def test_next_occurrence_is_strictly_after_the_given_time() -> None:
    at_20 = JAN_2_2024_MS + 20 * 3_600_000
    assert next_occurrence_ms(dt_time(20, 0), at_20 - 1) == at_20
    assert next_occurrence_ms(dt_time(20, 0), at_20) == at_20 + DAY_MS
