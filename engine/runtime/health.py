"""Provides SystemHealthMonitor: keeps the system-health breaker moving when no candle is due.

The system breaker changes state only when something reports to it (an API call's error or success)
or when its clock is applied (:meth:`engine.core.breaker.CircuitBreaker.check_system_health`). The live
feed calls the exchange only when a candle is due, so in a quiet market an open breaker would never
see its errors age out, never half-open and never collect the successes that close it. The monitor
fixes that: every ``interval_s`` it applies the clock to the system breaker and, when given one, runs
a cheap exchange probe (the server time) whose outcome the broker reports to the breaker like any
other call. An outage is thus also noticed between candles, before the next decision.

Only the system breaker is touched: the volatility and loss breakers move with bars and trades on the
decision path, which the backtester shares; advancing them here, at wall-clock moments a backtest
cannot see, would make paper and backtest diverge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from engine.core.breaker import CircuitBreaker
from engine.domain.clock import Clock
from engine.domain.errors import ExchangeCallException
from engine.domain.events import Event

log = logging.getLogger(__name__)

DEFAULT_HEALTH_INTERVAL_S = 5.0
"""Seconds between health ticks: a one-weight probe every 5 s is far below any exchange's rate limit."""

Probe = Callable[[], Awaitable[Any]]


class SystemHealthMonitor:
    """Periodic breaker clock and exchange probe.

    Args:
        breaker: the engine's circuit breaker.
        clock: the engine's clock (UTC ms).
        emit: publishes the breaker's transition events (the engine's ``emit_all``).
        probe: a cheap exchange call wired to report errors/successes to ``breaker`` (None: clock only).
        interval_s: seconds between ticks (> 0).
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        clock: Clock,
        emit: Callable[[tuple[Event, ...]], None],
        probe: Probe | None = None,
        interval_s: float = DEFAULT_HEALTH_INTERVAL_S,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"health interval must be > 0 s, got {interval_s}")
        self._breaker = breaker
        self._clock = clock
        self._emit = emit
        self._probe = probe
        self.interval_s = interval_s
        self.probes = 0
        self.probe_failures = 0

    async def tick(self) -> None:
        """Apply the clock to the system breaker, then probe the exchange once (its outcome feeds the breaker)."""
        self._emit(self._breaker.check_system_health(self._clock.now_ms()).events)
        if self._probe is None:
            return
        self.probes += 1
        try:
            await self._probe()
        except ExchangeCallException as exc:  # already counted by the broker's on_error
            self.probe_failures += 1
            log.debug("health probe failed: %s", exc)

    async def run(self) -> None:
        """Tick every ``interval_s`` until cancelled; a bug in one tick is logged, never ends the engine."""
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("health tick failed")
            await asyncio.sleep(self.interval_s)
