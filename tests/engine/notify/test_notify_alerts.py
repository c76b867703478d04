"""Specification of alert delivery: every event kind reaches every allowed chat through the outbox."""

from __future__ import annotations

import asyncio

from engine.store import Store
from tests.engine.notify.conftest import GROUP_CHAT, PRIVATE_CHAT, NotifierFactory, RecordingEngine
from tests.engine.notify.test_notify_formatting import ALERT_CASES
from tests.event_samples import filled, opened
from tests.fakes.fake_bot_api import FakeBotApi


async def wait_for_outbox(store: Store, status: str, count: int, timeout: float = 5.0) -> None:
    async def reached() -> None:
        while len(await store.outbox_messages(status)) < count:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(reached(), timeout)


async def test_every_alert_kind_reaches_every_allowed_chat(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    for event, _ in ALERT_CASES:
        engine.publish(event)
    await wait_for_outbox(store, "sent", len(ALERT_CASES))
    for chat in (PRIVATE_CHAT, GROUP_CHAT):
        delivered = "\n".join(api.texts_to(chat))
        for _, expected in ALERT_CASES:
            assert expected[0] in delivered
    assert all(message.parse_mode == "HTML" for message in api.sent)


async def test_a_burst_of_alerts_is_coalesced_into_few_messages(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    await start_notifier()
    for index in range(30):
        engine.publish(opened(index, f"COIN{index}/USDT", stop=1.0 + index))
    await wait_for_outbox(store, "sent", 30)
    delivered = api.texts_to(PRIVATE_CHAT)
    assert len(delivered) <= 3
    joined = "\n".join(delivered)
    assert all(f"COIN{index}/USDT" in joined for index in range(30))
    assert joined.index("COIN3/USDT") < joined.index("COIN29/USDT")


async def test_routine_events_are_not_queued(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    notifier = await start_notifier()
    engine.publish(filled(1))
    engine.publish(opened(2))
    await wait_for_outbox(store, "sent", 1)
    await notifier.stop()
    assert [row.kind for row in await store.outbox_messages()] == ["PositionOpened"]


async def test_events_published_just_before_stop_stay_in_the_outbox(
    api: FakeBotApi, store: Store, engine: RecordingEngine, start_notifier: NotifierFactory
) -> None:
    notifier = await start_notifier()
    await api.stop()
    for index in range(5):
        engine.publish(opened(index))
    await notifier.stop()
    assert len(await store.outbox_messages("pending")) == 5
