"""Provides the console's snapshot feed: a throttled loop from a bus subscription to app messages.

The engine publishes into the subscription's single snapshot slot and never waits; this loop
takes the newest snapshot at most ``max_per_second`` times a second and posts it as a
replaceable message (a UI that falls behind renders only the newest). Events are posted in
their own, never-replaced message so no fill or breaker trip is lost from the log.
"""

from __future__ import annotations

import asyncio
import time
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


def changes_state(shown: EngineSnapshot | None, snapshot: EngineSnapshot) -> bool:
    """Whether ``snapshot`` changes what a trader waits to see after a key (trading or engine state)."""
    return shown is None or (shown.trading_state, shown.engine_state) != (snapshot.trading_state,
                                                                          snapshot.engine_state)


async def pump_snapshots(subscription: Subscription, post: Callable[[Message], object], max_per_second: float) -> None:
    """Forward snapshots and events from ``subscription`` to ``post`` (e.g. ``app.post_message``) forever.

    Snapshots go at most ``max_per_second`` times a second, the newest winning, except that one changing the
    trading or engine state (a halt, a resume) goes at once: the answer to a key is never held back.

    Args:
        subscription: the console's bus subscription.
        post: callable taking a Message.
        max_per_second: upper bound on snapshots posted per second (settings.ui.max_redraws_per_second).
    """
    interval_s = 1.0 / max_per_second
    shown: EngineSnapshot | None = None
    pending: EngineSnapshot | None = None
    next_allowed_s = 0.0
    while True:
        wait_s = IDLE_POLL_S if pending is None else max(0.0, next_allowed_s - time.monotonic())
        try:
            pending = await asyncio.wait_for(subscription.next_snapshot(), wait_s)
        except TimeoutError:
            pass
        events = subscription.drain_events()
        if events:
            post(EventsArrived(events))
        if pending is not None and (time.monotonic() >= next_allowed_s or changes_state(shown, pending)):
            post(SnapshotArrived(pending))
            shown, pending = pending, None
            next_allowed_s = time.monotonic() + interval_s
