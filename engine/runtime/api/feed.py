"""Provides EventJournal and ClientFeed: numbered events for replay, and one attached client's outgoing queue.

The journal numbers every event the engine publishes (1, 2, ...) and keeps the newest ``capacity`` of them, so a
client can ask for everything after the last id it saw (``GET /v1/events?since=ID``, or ``?since=`` on the
stream) and re-attach without a gap. A client feed follows the bus's rule: events are never dropped, of the
snapshots only the newest waits (a slow console renders the latest state, not a backlog).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from engine.domain.events import Event
from engine.domain.snapshot import EngineSnapshot

DEFAULT_JOURNAL_CAPACITY = 2_000


@dataclass(frozen=True)
class NumberedEvent:
    id: int
    event: Event


class ClientFeed:
    """What one attached client has yet to receive."""

    def __init__(self) -> None:
        self._events: deque[NumberedEvent] = deque()
        self._snapshot: EngineSnapshot | None = None
        self._ready = asyncio.Event()
        self.closed = False

    def push_event(self, item: NumberedEvent) -> None:
        self._events.append(item)
        self._ready.set()

    def push_snapshot(self, snapshot: EngineSnapshot) -> None:
        self._snapshot = snapshot
        self._ready.set()

    async def next(self) -> NumberedEvent | EngineSnapshot:
        """The oldest undelivered event, else the newest snapshot; waits when there is neither."""
        while True:
            if self._events:
                return self._events.popleft()
            if self._snapshot is not None:
                snapshot, self._snapshot = self._snapshot, None
                return snapshot
            self._ready.clear()
            await self._ready.wait()


class EventJournal:
    """Numbers events and fans them (and snapshots) out to the attached clients."""

    def __init__(self, capacity: int = DEFAULT_JOURNAL_CAPACITY) -> None:
        self._recent: deque[NumberedEvent] = deque(maxlen=capacity)
        self._next_id = 1
        self._clients: list[ClientFeed] = []
        self.latest_snapshot: EngineSnapshot | None = None

    @property
    def latest_id(self) -> int:
        """The id of the newest event (0 before the first)."""
        return self._next_id - 1

    def record(self, event: Event) -> NumberedEvent:
        item = NumberedEvent(self._next_id, event)
        self._next_id += 1
        self._recent.append(item)
        for client in self._clients:
            client.push_event(item)
        return item

    def publish_snapshot(self, snapshot: EngineSnapshot) -> None:
        self.latest_snapshot = snapshot
        for client in self._clients:
            client.push_snapshot(snapshot)

    def since(self, after_id: int) -> list[NumberedEvent]:
        """The kept events with an id above ``after_id``, oldest first."""
        return [item for item in self._recent if item.id > after_id]

    @property
    def oldest_kept_id(self) -> int:
        return self._recent[0].id if self._recent else self._next_id

    def attach(self, after_id: int | None) -> ClientFeed:
        """A feed that first replays the events after ``after_id`` (None: none) and the newest snapshot."""
        client = ClientFeed()
        if after_id is not None:
            for item in self.since(after_id):
                client.push_event(item)
        if self.latest_snapshot is not None:
            client.push_snapshot(self.latest_snapshot)
        self._clients.append(client)
        return client

    def detach(self, client: ClientFeed) -> None:
        client.closed = True
        if client in self._clients:
            self._clients.remove(client)

    @property
    def client_count(self) -> int:
        return len(self._clients)
