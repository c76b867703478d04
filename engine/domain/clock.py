"""Provides the injected clocks: wall time for live trading, simulated time for replay and tests.

The engine never reads the system time directly; it asks its clock. Backtest, replay and live thus
share code, and a test can place "now" exactly where it wants it.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Current time, UTC ms since the epoch."""
        ...


class WallClock:
    """The system clock (live trading)."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)


class SimulatedClock:
    """A clock that moves only when told to: replay follows the candles it has played.

    Args:
        start_ms: initial time, UTC ms.
    """

    def __init__(self, start_ms: int = 0) -> None:
        self._now_ms = int(start_ms)

    def now_ms(self) -> int:
        return self._now_ms

    def advance_to(self, time_ms: int) -> None:
        """Move forward to ``time_ms``; an earlier time is ignored (time never runs backwards)."""
        if time_ms > self._now_ms:
            self._now_ms = int(time_ms)
