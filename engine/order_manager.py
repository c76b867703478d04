"""Provides OrderManager: live execution of the decision path's orders through a Broker, write-ahead.

Every money-moving step is: persist the order *intent*, send it with a deterministic client order id,
persist the acknowledgement and fills. An entry fill is followed at once by an exchange-side stop
(so a crash never leaves a position unprotected); a tightened stop replaces it; an exit cancels it and
sells at market. Stop fills are found by polling the stop order on each of the symbol's candles. A send
whose outcome is unknown (network failure after retries) stays pending and is resolved by looking the
client id up on the next candle; after a restart :meth:`OrderManager.start` does the same for every
stored open order and reconciles positions, stops and cash with the exchange (see :mod:`engine.reconcile`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.decision import Decision, EntryDecision, ExitDecision, StopMoved
from engine.errors import ExchangeCallException, ExchangeUnavailableException, StopWouldTriggerException
from engine.execution.broker import Broker, OrderAck, StopReplaceError, make_client_order_id
from engine.models import Event, Fill, Order, OrderStatus, OrderType, PositionSide, Side
from engine.portfolio import QUANTITY_EPSILON, OpenPosition
from engine.strategy import PreparedSymbol

if TYPE_CHECKING:
    from engine.runtime import TradingEngine

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "tb"
ENTRY, EXIT, STOP = "entry", "exit", "stop"
STOP_TYPES = (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)


def order_kind(order: Order) -> str:
    """``entry``, ``exit`` or ``stop`` from the order's stored reason (written with the intent)."""
    return order.reason.partition(":")[0]


class OrderManager:
    """The runtime's execution back-end for live trading (spot longs).

    Args:
        engine: the running engine (core, portfolio, store, clock, emit).
        broker: the venue, e.g. :class:`engine.execution.ccxt_broker.CcxtBroker`.
    """

    mode = "live"

    def __init__(self, engine: TradingEngine, broker: Broker) -> None:
        self.engine = engine
        self.broker = broker
        self.core = engine.core
        self.portfolio = engine.portfolio
        self.stops: dict[str, Order] = {}  # symbol -> its resting exchange stop
        self.uncertain: dict[str, Order] = {}  # client id -> order whose send outcome is unknown
        self.unprotected: set[str] = set()  # symbols whose stop could not be placed (retried each candle)
        self.base_assets: dict[str, str] = {}

    # ------------------------------------------------------------------------------------ helpers
    @property
    def store(self) -> Any:
        return self.engine.store

    def _now(self) -> int:
        return self.engine.clock.now_ms()

    def _emit(self, kind: str, message: str, data: dict[str, Any], severity: str = "info") -> None:
        self.engine.emit(Event(kind, self._now(), message, data, severity))

    async def _save(self, order: Order) -> None:
        await self.store.save_order(order, updated_ms=self._now())

    @property
    def busy(self) -> bool:
        return bool(self.uncertain)

    # -------------------------------------------------------------------------------------- start
    async def start(self, now_ms: int) -> list[str]:
        """Load market rules, then reconcile the restored state with the exchange; returns the repairs."""
        from engine.reconcile import reconcile

        limits = await self.broker.load_markets()
        for symbol in self.engine.symbols:
            if symbol in limits:
                self.core.market_limits[symbol] = limits[symbol]
            self.base_assets[symbol] = symbol.partition("/")[0]
        return await reconcile(self)

    async def close(self) -> None:
        await self.broker.close()

    async def probe(self) -> None:
        """One cheap exchange call for the health monitor; its outcome reaches the system breaker.

        Raises:
            ExchangeCallException: the exchange did not answer (already counted as an API error).
        """
        server_time = getattr(self.broker, "fetch_server_time_ms", None)
        if server_time is not None:
            await server_time()
        else:  # a broker without a clock call: the balance query is the next cheapest
            await self.broker.fetch_balances()

    # ---------------------------------------------------------------------------------------- bars
    async def on_bar(self, prepared: PreparedSymbol, index: int) -> None:
        symbol = prepared.symbol
        close_ms = int(prepared.candles.open_time_ms[index]) + self._bar_ms(prepared)
        await self.resolve_uncertain(symbol)
        await self.poll_stop(symbol)
        if symbol in self.unprotected and symbol in self.portfolio.positions:
            await self.protect(symbol)
        if symbol in self.portfolio.positions:
            self.portfolio.mark(symbol, float(prepared.candles.close[index]))
            account = self.core.check_account(close_ms)
            self.engine.emit_all(account.events)
            await self.execute(account.decisions)
        outcome = self.core.on_bar(prepared, index, close_ms)
        self.engine.emit_all(outcome.events)
        await self.execute(outcome.decisions)

    @staticmethod
    def _bar_ms(prepared: PreparedSymbol) -> int:
        from engine.timeframes import parse_timeframe

        return parse_timeframe(prepared.candles.timeframe)

    async def execute(self, decisions: tuple[Decision, ...]) -> None:
        for decision in decisions:
            if isinstance(decision, EntryDecision):
                await self._enter(decision)
            elif isinstance(decision, StopMoved):
                await self._move_stop(decision)
            elif isinstance(decision, ExitDecision):
                await self._exit(decision)

    async def cancel_open_orders(self) -> int:
        cancelled = 0
        for symbol, stop in list(self.stops.items()):
            try:
                ack = await self.broker.cancel_order(stop.client_order_id, symbol)
            except ExchangeCallException as exc:
                self._emit("OrderCancelFailed", f"{symbol}: could not cancel stop: {exc}", {"symbol": symbol},
                           "critical")
                continue
            await self._save(replace(stop, status=ack.status))
            if ack.status is OrderStatus.FILLED:
                await self._stop_filled(symbol, stop, ack)
            else:
                self.stops.pop(symbol, None)
                cancelled += 1
        return cancelled

    # ------------------------------------------------------------------------------------ entries
    async def _enter(self, decision: EntryDecision) -> None:
        symbol = decision.symbol
        if decision.side is not PositionSide.LONG:  # spot: no shorting through this broker
            self.core.order_resolved(symbol)
            return
        cid = make_client_order_id(CLIENT_ID_PREFIX, symbol, decision.decided_ms, ENTRY)
        intent = Order(cid, symbol, Side.BUY, OrderType.MARKET, decision.quantity, OrderStatus.INTENT, self._now(),
                       stop_price=decision.stop_price, reason=f"{ENTRY}: {decision.reason}")
        await self._save(intent)  # write-ahead: persisted before anything is sent
        try:
            ack = await self.broker.submit_market_order(cid, symbol, Side.BUY, decision.quantity)
        except ExchangeUnavailableException as exc:
            await self._uncertain(intent, exc)
            return
        except ExchangeCallException as exc:
            await self._rejected(intent, exc)
            return
        await self.apply_entry(intent, ack)

    async def apply_entry(self, intent: Order, ack: OrderAck) -> None:
        """Book an entry's acknowledgement: position, fills, then the protective exchange stop."""
        symbol = intent.symbol
        order = replace(ack.order, reason=intent.reason, stop_price=intent.stop_price, created_ms=intent.created_ms)
        self.uncertain.pop(intent.client_order_id, None)
        if ack.filled_quantity <= QUANTITY_EPSILON:
            await self._save(replace(order, status=OrderStatus.REJECTED if ack.status.is_terminal else order.status))
            self.core.order_resolved(symbol)
            return
        price = ack.average_price or _average(ack.fills) or 0.0
        base = self.base_assets.get(symbol, symbol.partition("/")[0])
        fee_base = sum(f.fee for f in ack.fills if f.fee_asset == base)
        fee_quote = sum(f.fee for f in ack.fills if f.fee_asset != base) + fee_base * price
        quantity = ack.filled_quantity - fee_base
        stop_price = float(intent.stop_price or 0.0)
        if symbol in self.portfolio.positions:  # a restart found a fill already booked
            await self._save(order)
            self.core.order_resolved(symbol)
            return
        position = self.portfolio.open(symbol, PositionSide.LONG, quantity, price, fee_quote, order.created_ms,
                                       stop_price)
        await self._record_fills(order, ack.fills, position.to_position(), None)
        self.core.order_resolved(symbol)
        self.engine.recorder.save_portfolio(self.portfolio, self._now())  # type: ignore[union-attr]
        self._emit("PositionOpened", f"{symbol} long {quantity:g} @ {price:.8g} (stop {stop_price:.8g})",
                   {"symbol": symbol, "side": "long", "qty": quantity, "price": price, "stop": stop_price,
                    "client_order_id": order.client_order_id, "recovered": ack.recovered})
        await self.place_stop(symbol, stop_price, make_client_order_id(CLIENT_ID_PREFIX, symbol,
                                                                       order.created_ms, STOP))

    # -------------------------------------------------------------------------------------- stops
    async def place_stop(self, symbol: str, stop_price: float, cid: str) -> None:
        position = self.portfolio.positions.get(symbol)
        if position is None:
            return
        intent = Order(cid, symbol, Side.SELL, OrderType.STOP_MARKET, position.quantity, OrderStatus.INTENT,
                       self._now(), stop_price=stop_price, reason=f"{STOP}: protective")
        await self._save(intent)
        try:
            ack = await self.broker.place_stop_loss(cid, symbol, Side.SELL, position.quantity, stop_price,
                                                    lookup_first=True)
        except StopWouldTriggerException:
            await self._save(replace(intent, status=OrderStatus.REJECTED))
            await self._exit(ExitDecision(symbol, self._now(), "stop already crossed"))
            return
        except ExchangeCallException as exc:
            await self._save(replace(intent, status=OrderStatus.REJECTED))
            self.unprotected.add(symbol)
            self._emit("PositionUnprotected", f"{symbol}: stop not placed ({exc}); retrying next candle",
                       {"symbol": symbol, "stop": stop_price}, "critical")
            return
        stop = replace(ack.order, reason=intent.reason, created_ms=intent.created_ms)
        await self._save(stop)
        self.stops[symbol] = stop
        self.unprotected.discard(symbol)
        self._emit("StopPlaced", f"{symbol}: exchange stop at {stop_price:.8g}", {"symbol": symbol,
                   "stop": stop_price, "client_order_id": cid})

    async def protect(self, symbol: str) -> None:
        position = self.portfolio.positions[symbol]
        cid = make_client_order_id(CLIENT_ID_PREFIX, symbol, self._now(), STOP)
        await self.place_stop(symbol, position.stop_price, cid)

    async def _move_stop(self, decision: StopMoved) -> None:
        symbol = decision.symbol
        old = self.stops.get(symbol)
        position = self.portfolio.positions.get(symbol)
        if position is None:
            return
        new_cid = make_client_order_id(CLIENT_ID_PREFIX, symbol, decision.decided_ms, "trail")
        if old is None:
            await self.place_stop(symbol, decision.stop_price, new_cid)
            return
        intent = Order(new_cid, symbol, Side.SELL, OrderType.STOP_MARKET, position.quantity, OrderStatus.INTENT,
                       self._now(), stop_price=decision.stop_price, reason=f"{STOP}: trailing")
        await self._save(intent)
        try:
            ack = await self.broker.replace_stop_loss(old.client_order_id, new_cid, symbol, Side.SELL,
                                                      position.quantity, decision.stop_price)
        except StopReplaceError as exc:
            await self._save(replace(intent, status=OrderStatus.REJECTED))
            await self._save(replace(old, status=OrderStatus.CANCELED))
            self.stops.pop(symbol, None)
            if exc.restored is not None:
                self.stops[symbol] = replace(exc.restored.order, reason=f"{STOP}: restored")
                await self._save(self.stops[symbol])
                return
            self._emit("PositionUnprotected", f"{symbol}: stop could not be moved or restored; closing",
                       {"symbol": symbol}, "critical")
            await self._exit(ExitDecision(symbol, self._now(), "stop lost"))
            return
        except ExchangeCallException as exc:
            await self._save(replace(intent, status=OrderStatus.REJECTED))
            log.warning("%s: stop not moved (%s); the old stop stays", symbol, exc)
            return
        if ack.client_order_id == old.client_order_id:  # the old stop had filled: nothing to move
            await self._save(replace(intent, status=OrderStatus.CANCELED))
            await self._stop_filled(symbol, old, ack)
            return
        await self._save(replace(old, status=OrderStatus.CANCELED))
        stop = replace(ack.order, reason=intent.reason, created_ms=intent.created_ms)
        await self._save(stop)
        self.stops[symbol] = stop

    async def poll_stop(self, symbol: str) -> None:
        """Has the symbol's exchange stop filled since the last candle?"""
        stop = self.stops.get(symbol)
        if stop is None:
            return
        try:
            ack = await self.broker.fetch_order(stop.client_order_id, symbol)
        except ExchangeCallException as exc:
            log.warning("%s: stop status unknown this candle (%s)", symbol, exc)
            return
        if ack is not None and ack.status is OrderStatus.FILLED:
            await self._stop_filled(symbol, stop, ack)
        elif ack is None or ack.status.is_terminal:  # cancelled or expired outside the bot, or unknown there
            await self._save(replace(stop, status=OrderStatus.CANCELED if ack is None else ack.status))
            self.stops.pop(symbol, None)
            if symbol in self.portfolio.positions:
                self._emit("StopLost", f"{symbol}: exchange stop {stop.client_order_id} is gone "
                           f"({'unknown' if ack is None else ack.status.value}); placing a new one",
                           {"symbol": symbol, "client_order_id": stop.client_order_id}, "warning")
                await self.protect(symbol)

    async def _stop_filled(self, symbol: str, stop: Order, ack: OrderAck) -> None:
        self.stops.pop(symbol, None)
        order = replace(ack.order, reason=stop.reason, created_ms=stop.created_ms)
        position = self.portfolio.positions.get(symbol)
        if position is None:
            await self._save(order)
            return
        kind = "trailing_stop" if position.trailing_active else "stop"
        await self._close(symbol, order, ack, kind)

    # -------------------------------------------------------------------------------------- exits
    async def _exit(self, decision: ExitDecision) -> None:
        symbol = decision.symbol
        position = self.portfolio.positions.get(symbol)
        if position is None:
            self.core.order_resolved(symbol)
            return
        stop = self.stops.get(symbol)
        if stop is not None:
            try:
                cancelled = await self.broker.cancel_order(stop.client_order_id, symbol)
            except ExchangeCallException as exc:
                self._emit("OrderRejected", f"{symbol}: exit postponed, stop not cancelled ({exc})",
                           {"symbol": symbol}, "warning")
                self.core.order_resolved(symbol)
                return
            if cancelled.status is OrderStatus.FILLED:
                await self._stop_filled(symbol, stop, cancelled)
                self.core.order_resolved(symbol)
                return
            await self._save(replace(stop, status=OrderStatus.CANCELED))
            self.stops.pop(symbol, None)
        cid = make_client_order_id(CLIENT_ID_PREFIX, symbol, decision.decided_ms, EXIT)
        intent = Order(cid, symbol, Side.SELL, OrderType.MARKET, position.quantity, OrderStatus.INTENT, self._now(),
                       reason=f"{EXIT}: {decision.reason}")
        await self._save(intent)
        try:
            ack = await self.broker.submit_market_order(cid, symbol, Side.SELL, position.quantity)
        except ExchangeUnavailableException as exc:
            await self._uncertain(intent, exc)
            return
        except ExchangeCallException as exc:
            await self._rejected(intent, exc)
            await self.protect(symbol)
            return
        await self.apply_exit(intent, ack)

    async def apply_exit(self, intent: Order, ack: OrderAck) -> None:
        self.uncertain.pop(intent.client_order_id, None)
        order = replace(ack.order, reason=intent.reason, created_ms=intent.created_ms)
        if ack.filled_quantity <= QUANTITY_EPSILON:
            await self._save(replace(order, status=OrderStatus.REJECTED if ack.status.is_terminal else order.status))
            self.core.order_resolved(intent.symbol)
            return
        reason = intent.reason.partition(": ")[2] or "exit"
        await self._close(intent.symbol, order, ack, reason)

    async def _close(self, symbol: str, order: Order, ack: OrderAck, reason: str) -> None:
        price = ack.average_price or _average(ack.fills) or float(order.stop_price or 0.0)
        fee = sum(f.fee for f in ack.fills)
        remainder = self._split_unsold(symbol, ack.filled_quantity)
        trade = self.portfolio.close(symbol, price, fee, self._now(), reason)
        if remainder is not None:
            self.portfolio.update(remainder)
        await self._record_fills(order, ack.fills, None if remainder is None else remainder.to_position(), trade)
        self.core.order_resolved(symbol)
        self.engine.recorder.save_portfolio(self.portfolio, self._now())  # type: ignore[union-attr]
        self._emit("PositionClosed", f"{symbol} long closed @ {price:.8g} ({reason}) pnl {trade.pnl:+.2f}",
                   {"symbol": symbol, "side": "long", "qty": trade.quantity, "entry": trade.entry_price,
                    "exit": price, "pnl": trade.pnl, "reason": reason}, "info" if trade.pnl >= 0 else "warning")
        self.engine.emit_all(self.core.on_trade_closed(trade, self._now()).events)
        if remainder is not None:
            self._emit("PositionReduced", f"{symbol}: only {trade.quantity:g} sold; {remainder.quantity:g} still "
                       "held and protected", {"symbol": symbol, "sold": trade.quantity, "qty": remainder.quantity},
                       "warning")
            await self.protect(symbol)

    def _split_unsold(self, symbol: str, sold: float) -> OpenPosition | None:
        """A sell that filled short of the position (a partial fill): book only what sold, return the rest.

        The position in the portfolio becomes the sold part (entry fee pro rata) so that closing it
        records a trade of the sold quantity; the returned remainder is what the exchange still holds.
        """
        position = self.portfolio.positions[symbol]
        if sold <= QUANTITY_EPSILON or position.quantity - sold < self.core.limits_for(symbol).lot_step:
            return None
        sold_ratio = sold / position.quantity
        self.portfolio.update(replace(position, quantity=sold, entry_fee=position.entry_fee * sold_ratio))
        return replace(position, quantity=position.quantity - sold, entry_fee=position.entry_fee * (1 - sold_ratio))

    async def _record_fills(self, order: Order, fills: tuple[Fill, ...], position: Any, trade: Any) -> None:
        if not fills:  # the venue reported no trades: book one fill from the order's totals
            fills = (Fill(order.client_order_id, order.symbol, order.side, order.filled_quantity,
                          float(order.average_price or 0.0), 0.0, self._now(), trade_id=f"{order.client_order_id}-0"),)
        async with self.store.transaction():
            await self._save(order)
            for i, fill in enumerate(fills):
                last = i == len(fills) - 1
                await self.store.record_fill(fill, position, trade if last else None, order=order)
        self._emit("OrderFilled", f"{order.symbol} {order.side.value} {order.filled_quantity:g} filled",
                   {"symbol": order.symbol, "client_order_id": order.client_order_id, "side": order.side.value,
                    "qty": order.filled_quantity, "price": order.average_price})

    # ----------------------------------------------------------------------------- failures, unknowns
    async def _uncertain(self, intent: Order, exc: Exception) -> None:
        order = replace(intent, status=OrderStatus.SUBMITTED)
        await self._save(order)
        self.uncertain[order.client_order_id] = order
        self._emit("OrderUncertain", f"{intent.symbol}: outcome of {intent.client_order_id} unknown ({exc}); "
                   "will look it up", {"symbol": intent.symbol, "client_order_id": intent.client_order_id},
                   "warning")

    async def _rejected(self, intent: Order, exc: ExchangeCallException) -> None:
        await self._save(replace(intent, status=OrderStatus.REJECTED))
        self.core.order_resolved(intent.symbol)
        self._emit("OrderRejected", f"{intent.symbol}: {order_kind(intent)} refused: {exc}",
                   {"symbol": intent.symbol, "client_order_id": intent.client_order_id, "error": type(exc).__name__},
                   "warning")

    async def resolve_uncertain(self, symbol: str | None = None) -> None:
        """Look up every order whose send outcome is unknown (of one symbol) and settle it."""
        for cid, order in list(self.uncertain.items()):
            if symbol is not None and order.symbol != symbol:
                continue
            try:
                ack = await self.broker.fetch_order(cid, order.symbol)
            except ExchangeCallException:
                continue  # still unreachable: try again next candle
            await self.settle(order, ack)

    async def settle(self, order: Order, ack: OrderAck | None) -> None:
        """Apply what the exchange knows about ``order`` (None = it never arrived)."""
        self.uncertain.pop(order.client_order_id, None)
        if ack is None:
            await self._save(replace(order, status=OrderStatus.REJECTED, reason=order.reason + " (never reached "
                                                                                               "the exchange)"))
            self.core.order_resolved(order.symbol)
            return
        if order_kind(order) == ENTRY:
            await self.apply_entry(order, ack)
        elif order_kind(order) == EXIT:
            await self.apply_exit(order, ack)


def _average(fills: tuple[Fill, ...]) -> float | None:
    quantity = sum(f.quantity for f in fills)
    return sum(f.quantity * f.price for f in fills) / quantity if quantity > 0 else None
