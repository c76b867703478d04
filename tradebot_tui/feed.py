"""Provides the console's snapshot feed: a throttled loop from a bus subscription to app messages.

The engine publishes into the subscription's single snapshot slot and never waits; this loop
takes the newest snapshot at most ``max_per_second`` times a second and posts it as a
replaceable message (a UI that falls behind renders only the newest). Events are posted in
their own, never-replaced message so no fill or breaker trip is lost from the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.message import Message

from engine.domain.bus import Subscription
from engine.domain.events import Event
from engine.domain.snapshot import EngineSnapshot

IDLE_POLL_S = 0.5  # how often events are checked for when no snapshot arrives


class SnapshotArrived(Message):
    """The newest engine snapshot; a newer one supersedes it in the queue."""

    def __init__(self, snapshot: EngineSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)


class EventsArrived(Message):
    """Engine events in publication order; never replaced."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


async def pump_snapshots(subscription: Subscription, post: Callable[[Message], object], max_per_second: float) -> None:
    """Forward snapshots and events from ``subscription`` to ``post`` (e.g. ``app.post_message``) forever.

    Args:
        subscription: the console's bus subscription.
        post: callable taking a Message.
        max_per_second: upper bound on snapshots posted per second (settings.ui.max_redraws_per_second).
    """
    interval_s = 1.0 / max_per_second
    while True:
        try:
            snapshot: EngineSnapshot | None = await asyncio.wait_for(subscription.next_snapshot(), IDLE_POLL_S)
        except TimeoutError:
            snapshot = None
        events = subscription.drain_events()
        if events:
            post(EventsArrived(events))
        if snapshot is not None:
            post(SnapshotArrived(snapshot))
            await asyncio.sleep(interval_s)
