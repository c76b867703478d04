"""Specification of the snapshot feed: at most N redraws a second, newest snapshot wins, no event is lost."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from textual.message import Message

from engine.domain.bus import Bus
from tests.event_samples import filled
from tests.tui.engine_double import T0_MS, crafted_snapshot
from tradebot_tui.feed import EventsArrived, SnapshotArrived, pump_snapshots

MAX_PER_SECOND = 10.0


async def test_a_burst_of_snapshots_is_forwarded_at_most_at_the_redraw_rate_ending_with_the_newest() -> None:
    bus = Bus()
    subscription = bus.subscribe("console")
    posted: list[Message] = []
    pump = asyncio.create_task(pump_snapshots(subscription, posted.append, MAX_PER_SECOND))
    base = crafted_snapshot()
    snapshots = [dataclasses.replace(base, time_ms=T0_MS + i) for i in range(200)]
    for snapshot in snapshots:  # 200 snapshots over ~0.2 s of engine time
        bus.publish_snapshot(snapshot)
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.25)
    pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    shown = [m.snapshot for m in posted if isinstance(m, SnapshotArrived)]
    elapsed_upper_bound_s = 0.2 + 0.25 + 0.5  # publishing, settling, and scheduler slack on a busy machine
    assert 1 <= len(shown) <= 1 + elapsed_upper_bound_s * MAX_PER_SECOND
    assert shown[-1] is snapshots[-1]


async def test_every_event_is_forwarded_in_order_even_when_snapshots_are_skipped() -> None:
    bus = Bus()
    subscription = bus.subscribe("console")
    posted: list[Message] = []
    pump = asyncio.create_task(pump_snapshots(subscription, posted.append, MAX_PER_SECOND))
    events = [filled(T0_MS + i, f"fill {i}") for i in range(30)]
    for i, event in enumerate(events):
        bus.publish_event(event)
        bus.publish_snapshot(dataclasses.replace(crafted_snapshot(), time_ms=T0_MS + i))
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.3)
    pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    forwarded = [event for m in posted if isinstance(m, EventsArrived) for event in m.events]
    assert forwarded == events


def test_a_newer_snapshot_message_replaces_an_older_one_but_events_are_never_replaced() -> None:
    older, newer = SnapshotArrived(crafted_snapshot()), SnapshotArrived(crafted_snapshot(time_ms=T0_MS + 1))
    assert newer.can_replace(older)
    assert not EventsArrived([]).can_replace(EventsArrived([]))
    assert not newer.can_replace(EventsArrived([]))


async def test_a_snapshot_changing_the_trading_state_is_not_held_back_by_the_redraw_limit() -> None:
    from engine.domain.models import TradingState

    bus = Bus()
    subscription = bus.subscribe("console")
    posted: list[Message] = []
    slow = 0.05  # one redraw per 20 s: a held-back snapshot would not arrive within the wait below
    pump = asyncio.create_task(pump_snapshots(subscription, posted.append, slow))
    active = crafted_snapshot()
    halted = dataclasses.replace(active, trading_state=TradingState.HALTED, time_ms=active.time_ms + 1)
    later = dataclasses.replace(halted, time_ms=active.time_ms + 2)

    def shown() -> list[object]:
        return [m.snapshot for m in posted if isinstance(m, SnapshotArrived)]

    bus.publish_snapshot(active)
    async with asyncio.timeout(5):
        while not shown():
            await asyncio.sleep(0.005)
        bus.publish_snapshot(halted)
        while len(shown()) < 2:
            await asyncio.sleep(0.005)
    bus.publish_snapshot(later)  # same state again: waits for the redraw limit
    await asyncio.sleep(0.2)
    pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    assert shown() == [active, halted]
