"""Provides the daily report schedule: fires once per UTC day at a configured time of the injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as dt_time


def next_occurrence_ms(at_utc: dt_time, after_ms: int) -> int:
    """The first UTC ms strictly after ``after_ms`` whose time of day is ``at_utc``."""
    after = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
    candidate = datetime.combine(after.date(), at_utc.replace(tzinfo=None), tzinfo=UTC)
    candidate_ms = int(candidate.timestamp() * 1000)
    if candidate_ms <= after_ms:
        candidate_ms = int((candidate + timedelta(days=1)).timestamp() * 1000)
    return candidate_ms


class DailySchedule:
    """Says when the daily report is due, given clock readings in UTC ms.

    Starting at ``start_ms``, :meth:`due` returns True once for each passing of ``at_utc``. A clock
    that jumps over several days (a fast replay) gets one report, not one per skipped day.
    """

    def __init__(self, at_utc: dt_time, start_ms: int) -> None:
        self.at_utc = at_utc
        self.next_ms = next_occurrence_ms(at_utc, start_ms)

    def due(self, now_ms: int) -> bool:
        """True (once) when ``now_ms`` has reached the next report time; then schedules the following one."""
        if now_ms < self.next_ms:
            return False
        self.next_ms = next_occurrence_ms(self.at_utc, now_ms)
        return True
