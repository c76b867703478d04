"""Provides EngineRecorder: the runtime's ordered, non-blocking writer of state to the store.

Events are recorded as they happen (breaker transitions with the breaker's state at that moment, the
DecisionCore state, the trading state, positions, trades, equity) by queueing writes that one task
applies in order. Money-moving write-ahead steps (order intents) are *not* queued: the order manager
awaits them before it sends anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from engine.core.decision import DecisionCore
from engine.core.portfolio import OpenPosition, Portfolio
from engine.domain.events import (
    BreakerEvent,
    EmergencyExitCleared,
    EmergencyExitCompleted,
    EmergencyExitStarted,
    Event,
    RiskHaltCleared,
    RiskLimitChanged,
    RiskLimitEvent,
    TradingStateChanged,
)
from engine.domain.models import ClosedTrade, EquityPoint, Fill, Order, PositionSide
from engine.store import TRADING_STATE_KEY, Store

log = logging.getLogger(__name__)

CORE_STATE_KEY = "decision_core"
PORTFOLIO_STATE_KEY = "portfolio"
ENGINE_INFO_KEY = "engine"
BREAKER_EVENTS = (BreakerEvent, EmergencyExitStarted, EmergencyExitCompleted, EmergencyExitCleared)
"""Events that are breaker transitions: each is kept in the store's breaker history."""

STORE_DEGRADED_AFTER_FAILURES = 3
"""Consecutive failed writes after which the recorder reports the store as degraded (once per streak)."""

CORE_STATE_EVENTS = (TradingStateChanged, RiskLimitEvent, RiskLimitChanged, RiskHaltCleared)
"""Events after which the decision core's state (limits, latches, trading state) is saved at once."""

Write = Callable[[], Awaitable[Any]]
DegradedCallback = Callable[[int, str], None]
"""``on_degraded(consecutive_failures, last_error_text)``; see :class:`EngineRecorder`."""


@dataclass(slots=True)
class QueuedWrite:
    """What became of one queued write: ``done`` once the recorder applied or gave up on it.

    ``done`` with ``error`` None = written; ``done`` with an ``error`` = failed; not ``done`` = never
    attempted (still queued, or the writer was cancelled first).
    """

    what: str
    done: bool = False
    error: Exception | None = None


def portfolio_to_state(portfolio: Portfolio) -> dict[str, Any]:
    positions = []
    for position in portfolio.positions.values():
        row = asdict(position)
        row["side"] = position.side.value
        positions.append(row)
    return {
        "cash": portfolio.cash,
        "realized_pnl": portfolio.realized_pnl,
        "fees_paid": portfolio.fees_paid,
        "positions": positions,
        "dust": dict(portfolio.dust),
    }


def restore_portfolio(portfolio: Portfolio, state: dict[str, Any]) -> None:
    portfolio.cash = float(state["cash"])
    portfolio.realized_pnl = float(state.get("realized_pnl", 0.0))
    portfolio.fees_paid = float(state.get("fees_paid", 0.0))
    portfolio.dust = {symbol: float(quantity) for symbol, quantity in (state.get("dust") or {}).items()}
    portfolio.positions.clear()
    for row in state.get("positions", []):
        position = OpenPosition(**{**row, "side": PositionSide(row["side"])})
        portfolio.positions[position.symbol] = position


class EngineRecorder:
    """Applies queued writes in order on one task; see the module docstring.

    A failed write never stops the trading loop: it is logged and counted (``failures``, the total;
    ``consecutive_failures``, reset by every successful write). When ``consecutive_failures`` reaches
    ``STORE_DEGRADED_AFTER_FAILURES`` the optional ``on_degraded(consecutive_failures, last_error)`` is
    called, once per streak: again only after a success has reset the count.
    """

    def __init__(self, store: Store, core: DecisionCore, *, on_degraded: DegradedCallback | None = None) -> None:
        self.store = store
        self.core = core
        self._queue: asyncio.Queue[tuple[Write, QueuedWrite]] = asyncio.Queue()
        self._on_degraded = on_degraded
        self.failures = 0
        self.consecutive_failures = 0

    def enqueue(self, write: Write, what: str = "store write") -> QueuedWrite:
        """Queue ``write``; the returned record tells later whether it was written (see QueuedWrite)."""
        outcome = QueuedWrite(what)
        self._queue.put_nowait((write, outcome))
        return outcome

    @property
    def pending_writes(self) -> int:
        """Writes queued and not yet attempted."""
        return self._queue.qsize()

    async def _apply(self, write: Write, outcome: QueuedWrite) -> None:
        try:
            await write()
        except Exception as error:  # a failed write must not stop the trading loop; it is logged loudly
            outcome.done, outcome.error = True, error
            self.failures += 1
            self.consecutive_failures += 1
            log.exception("store write failed: %s (%d in a row)", outcome.what, self.consecutive_failures)
            if self.consecutive_failures == STORE_DEGRADED_AFTER_FAILURES and self._on_degraded is not None:
                try:
                    self._on_degraded(self.consecutive_failures, str(error) or type(error).__name__)
                except Exception:
                    log.exception("store degraded callback failed")
        else:
            outcome.done = True
            self.consecutive_failures = 0

    async def run(self) -> None:
        while True:
            write, outcome = await self._queue.get()
            try:
                await self._apply(write, outcome)
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued write is applied (the writer task must be running)."""
        await self._queue.join()

    async def drain_now(self) -> None:
        """Apply every queued write on the caller's task (shutdown, when the writer is gone)."""
        while not self._queue.empty():
            write, outcome = self._queue.get_nowait()
            try:
                await self._apply(write, outcome)  # failures are counted as on the writer task
            finally:
                self._queue.task_done()

    # --------------------------------------------------------------------------------------- events
    def on_event(self, event: Event) -> None:
        if isinstance(event, BREAKER_EVENTS):
            name = event.breaker if isinstance(event, BreakerEvent | EmergencyExitCleared) else "emergency"
            state = self.core.breaker.to_state()
            detail = state["breakers"].get(name) or {"emergency": state["emergency"]}
            time_ms, kind = event.time_ms, event.kind
            self.enqueue(lambda: self.store.record_breaker_transition(name, detail, kind, time_ms=time_ms),
                         f"{kind} transition of {name}")
        if isinstance(event, BREAKER_EVENTS + CORE_STATE_EVENTS):
            self.save_core_state(event.time_ms)

    def save_core_state(self, time_ms: int) -> QueuedWrite:
        state = self.core.to_state()
        trading_state = self.core.trading_state.value

        async def write() -> None:
            async with self.store.transaction():
                await self.store.set_state(CORE_STATE_KEY, state, time_ms=time_ms)
                await self.store.set_state(TRADING_STATE_KEY, trading_state, time_ms=time_ms)

        return self.enqueue(write, "decision core state (breakers, limits, trading state)")

    def save_portfolio(self, portfolio: Portfolio, time_ms: int) -> QueuedWrite:
        state = portfolio_to_state(portfolio)
        positions = [p.to_position() for p in portfolio.positions.values()]

        async def write() -> None:
            async with self.store.transaction():
                await self.store.set_state(PORTFOLIO_STATE_KEY, state, time_ms=time_ms)
                stored = {p.symbol for p in await self.store.open_positions()}
                for position in positions:
                    await self.store.save_position(position)
                for symbol in stored - {p.symbol for p in positions}:
                    await self.store.delete_position(symbol)

        return self.enqueue(write, "portfolio (cash, positions)")

    def record_equity(self, point: EquityPoint) -> None:
        self.enqueue(lambda: self.store.append_equity(point), "equity point")

    def record_paper_fills(self, fills: list[Fill], orders: list[Order], trades: list[ClosedTrade],
                           portfolio: Portfolio) -> None:
        """Simulated fills with their filled market orders (``orders[i]`` filled ``fills[i]``), their trades,
        then the account (one transaction)."""
        if not fills and not trades:
            return
        positions = {symbol: p.to_position() for symbol, p in portfolio.positions.items()}

        async def write() -> None:
            async with self.store.transaction():
                for fill, order in zip(fills, orders, strict=True):
                    await self.store.save_order(order, updated_ms=fill.time_ms)
                    await self.store.record_fill(fill, positions.get(fill.symbol))
                for trade in trades:
                    await self.store.record_trade(trade)

        self.enqueue(write, "paper fills and trades")
        self.save_portfolio(portfolio, max([f.time_ms for f in fills] + [t.exit_ms for t in trades]))
