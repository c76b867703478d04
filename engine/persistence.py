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
from dataclasses import asdict, replace
from typing import Any

from engine.decision import DecisionCore
from engine.models import ClosedTrade, EquityPoint, Event, Fill, Order, OrderStatus, OrderType, PositionSide
from engine.portfolio import OpenPosition, Portfolio
from engine.store import TRADING_STATE_KEY, Store

log = logging.getLogger(__name__)

CORE_STATE_KEY = "decision_core"
PORTFOLIO_STATE_KEY = "portfolio"
ENGINE_INFO_KEY = "engine"
BREAKER_EVENT_KINDS = frozenset(
    {"BreakerTripped", "BreakerCoolingDown", "BreakerHalfOpened", "BreakerReset",
     "EmergencyExitStarted", "EmergencyExitCompleted", "EmergencyExitCleared"}
)

Write = Callable[[], Awaitable[Any]]


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
    }


def restore_portfolio(portfolio: Portfolio, state: dict[str, Any]) -> None:
    portfolio.cash = float(state["cash"])
    portfolio.realized_pnl = float(state.get("realized_pnl", 0.0))
    portfolio.fees_paid = float(state.get("fees_paid", 0.0))
    portfolio.positions.clear()
    for row in state.get("positions", []):
        position = OpenPosition(**{**row, "side": PositionSide(row["side"])})
        portfolio.positions[position.symbol] = position


class EngineRecorder:
    """Applies queued writes in order on one task; see the module docstring."""

    def __init__(self, store: Store, core: DecisionCore) -> None:
        self.store = store
        self.core = core
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self.failures = 0

    def enqueue(self, write: Write) -> None:
        self._queue.put_nowait(write)

    async def run(self) -> None:
        while True:
            write = await self._queue.get()
            try:
                await write()
            except Exception:  # a failed write must not stop the trading loop; it is logged loudly
                self.failures += 1
                log.exception("store write failed")
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued write is applied (the writer task must be running)."""
        await self._queue.join()

    async def drain_now(self) -> None:
        """Apply every queued write on the caller's task (shutdown, when the writer is gone)."""
        while not self._queue.empty():
            write = self._queue.get_nowait()
            try:
                await write()
            except Exception:
                log.exception("store write failed")
            self._queue.task_done()

    # --------------------------------------------------------------------------------------- events
    def on_event(self, event: Event) -> None:
        if event.kind in BREAKER_EVENT_KINDS:
            name = str(event.data.get("breaker") or "emergency")
            state = self.core.breaker.to_state()
            detail = state["breakers"].get(name) or {"emergency": state["emergency"]}
            time_ms = event.time_ms
            self.enqueue(lambda: self.store.record_breaker_transition(name, detail, event.kind, time_ms=time_ms))
        if event.kind in BREAKER_EVENT_KINDS or event.kind in ("TradingStateChanged", "LossLimitBreached",
                                                               "RiskLimitChanged", "LossLimitWarning"):
            self.save_core_state(event.time_ms)

    def save_core_state(self, time_ms: int) -> None:
        state = self.core.to_state()
        trading_state = self.core.trading_state.value

        async def write() -> None:
            async with self.store.transaction():
                await self.store.set_state(CORE_STATE_KEY, state, time_ms=time_ms)
                await self.store.set_state(TRADING_STATE_KEY, trading_state, time_ms=time_ms)

        self.enqueue(write)

    def save_portfolio(self, portfolio: Portfolio, time_ms: int) -> None:
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

        self.enqueue(write)

    def record_equity(self, point: EquityPoint) -> None:
        self.enqueue(lambda: self.store.append_equity(point))

    def record_paper_fills(self, fills: list[Fill], trades: list[ClosedTrade], portfolio: Portfolio) -> None:
        """Simulated fills as filled market orders, their trades, then the account (one transaction)."""
        if not fills and not trades:
            return
        positions = {symbol: p.to_position() for symbol, p in portfolio.positions.items()}

        async def write() -> None:
            async with self.store.transaction():
                for fill in fills:
                    order = Order(fill.client_order_id, fill.symbol, fill.side, OrderType.MARKET, fill.quantity,
                                  OrderStatus.FILLED, fill.time_ms, filled_quantity=fill.quantity,
                                  average_price=fill.price, reason="paper")
                    await self.store.save_order(replace(order), updated_ms=fill.time_ms)
                    await self.store.record_fill(fill, positions.get(fill.symbol))
                for trade in trades:
                    await self.store.record_trade(trade)

        self.enqueue(write)
        self.save_portfolio(portfolio, max([f.time_ms for f in fills] + [t.exit_ms for t in trades]))
