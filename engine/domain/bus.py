"""Provides the engine's pub/sub: events are always delivered, snapshots keep only the newest.

The engine never waits on a subscriber. Publishing an event appends to every subscriber's
unbounded queue (fills and breaker trips must never be lost); publishing a snapshot
overwrites the subscriber's single snapshot slot, so a slow console renders only the newest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from engine.domain.commands import Command
from engine.domain.events import Event
from engine.domain.snapshot import EngineSnapshot


class Subscription:
    """One subscriber's view of the bus; create with :meth:`Bus.subscribe`."""

    def __init__(self, bus: Bus, name: str) -> None:
        self.name = name
        self._bus = bus
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._snapshot: EngineSnapshot | None = None
        self._snapshot_ready = asyncio.Event()
        self.closed = False

    def _push_event(self, event: Event) -> None:
        self._events.put_nowait(event)

    def _push_snapshot(self, snapshot: EngineSnapshot) -> None:
        self._snapshot = snapshot
        self._snapshot_ready.set()

    async def next_event(self) -> Event:
        return await self._events.get()

    def drain_events(self) -> list[Event]:
        """Every event queued so far, without waiting."""
        drained = []
        while not self._events.empty():
            drained.append(self._events.get_nowait())
        return drained

    async def next_snapshot(self) -> EngineSnapshot:
        """Wait for a snapshot newer than the last one taken; intermediate ones are skipped."""
        await self._snapshot_ready.wait()
        self._snapshot_ready.clear()
        assert self._snapshot is not None
        return self._snapshot

    def latest_snapshot(self) -> EngineSnapshot | None:
        return self._snapshot

    async def events(self) -> AsyncIterator[Event]:
        while not self.closed:
            yield await self._events.get()

    def close(self) -> None:
        self.closed = True
        self._bus._unsubscribe(self)


class Bus:
    """Fan-out of events and snapshots to any number of subscribers."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.latest_snapshot: EngineSnapshot | None = None

    def subscribe(self, name: str) -> Subscription:
        subscription = Subscription(self, name)
        if self.latest_snapshot is not None:
            subscription._push_snapshot(self.latest_snapshot)
        self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish_event(self, event: Event) -> None:
        for subscription in self._subscriptions:
            subscription._push_event(event)

    def publish_snapshot(self, snapshot: EngineSnapshot) -> None:
        self.latest_snapshot = snapshot
        for subscription in self._subscriptions:
            subscription._push_snapshot(snapshot)


class EngineHandle(Protocol):
    """What a front-end (console, Telegram) may do with a running engine."""

    bus: Bus

    async def submit(self, command: Command) -> None:
        """Queue a command; its outcome arrives as events on the bus."""
        ...

    def snapshot(self) -> EngineSnapshot | None:
        """The newest published snapshot, if any."""
        ...
