"""Provides OrderManager: live execution of the decision path's orders through a Broker, write-ahead.

Every money-moving step is: ask the order-rate governor, persist the order *intent*, send it, persist
the acknowledgement and fills. The account's records are the truth: an entry is booked net of the
fees Binance takes in the base asset, and stops and exits sell what is free, floored to the lot.

Each position carries a protection state (:mod:`engine.execution.protection`) that one bounded loop,
:meth:`OrderManager.drive_protection`, moves on: a fill is followed at once by an exchange stop, placed
together with the decision's take-profit target as one pair where the venue allows it (Binance OCO);
elsewhere the engine checks the target on each closed bar as the backtest's fill model does
(:mod:`engine.execution.take_profit`). A stop the market has already crossed becomes one market exit;
a refused stop or exit raises a critical alert (a refused exit also halts entries) and is retried on
the next bar. Fills are booked by :class:`engine.execution.booking.Bookkeeper`. An order whose outcome is
unknown stays unknown (``submitted``) and is looked up on every candle until it is found or proven
absent; it is never re-sent blind. After a restart :meth:`OrderManager.start` reconciles the stored
orders, positions, stops and cash with the exchange (see :mod:`engine.execution.reconcile`).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from typing import Any

from engine.analysis.strategy import PreparedSymbol
from engine.core.decision import Decision, EntryDecision, ExitDecision, StopMoved
from engine.domain.errors import ExchangeCallException, OrderOutcomeUnknownException
from engine.domain.events import Event, OrderCancelFailed, OrderRateLimited, OrderRejected, OrderUncertain
from engine.domain.models import ExitKind, Order, OrderKind, OrderStatus, OrderType, PositionSide, Side
from engine.execution.booking import Bookkeeper
from engine.execution.broker import Broker, OrderAck, make_client_order_id
from engine.execution.host import ExecutionHost
from engine.execution.order_resolution import Outcome
from engine.execution.protection import OrderRateGovernor, Protection, ProtectionState
from engine.execution.protector import Protector
from engine.execution.stop_mover import StopMover
from engine.execution.take_profit import Targets
from engine.simulation.fills import FillModel

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "tb"
STOP_TYPES = (OrderType.STOP_MARKET, OrderType.STOP_LIMIT)
_P = ProtectionState


class OrderManager:
    """The runtime's execution back-end for live trading (spot longs).

    Args:
        engine: the running engine (core, portfolio, store, clock, emit).
        broker: the venue, e.g. :class:`engine.execution.ccxt_broker.CcxtBroker`.
        governor: the order-rate bound (default: from ``settings.exchange``).
        exchange_targets: rest the take-profit target on the exchange with the stop where the venue allows
            it; False leaves every target to the engine's check on each closed bar.
    """

    mode = "live"

    def __init__(self, engine: ExecutionHost, broker: Broker, governor: OrderRateGovernor | None = None, *,
                 exchange_targets: bool = True) -> None:
        self.engine = engine
        self.broker = broker
        self.core = engine.core
        self.portfolio = engine.portfolio
        exchange = engine.settings.exchange
        self.governor = governor or OrderRateGovernor(exchange.max_orders_per_symbol_per_minute,
                                                      exchange.max_orders_per_minute)
        self.exchange_targets = exchange_targets
        self.stops: dict[str, Order] = {}  # symbol -> its resting exchange stop (lone, or a pair's stop leg)
        self.targets: dict[str, Order] = {}  # symbol -> the take-profit leg resting in one pair with its stop
        self.uncertain: dict[str, Order] = {}  # client id -> order whose outcome is unknown
        self.pair_intents: dict[str, Order] = {}  # an uncertain pair's stop client id -> its target leg
        self.protection: dict[str, Protection] = {}
        self.base_assets: dict[str, str] = {}
        self._sequence = itertools.count(1)
        self.books = Bookkeeper(self)
        self.protector = Protector(self)
        self.stop_mover = StopMover(self)
        self.targets_side = Targets(self, FillModel.from_config(engine.settings.backtest))

    # ------------------------------------------------------------------------------------ helpers
    @property
    def store(self) -> Any:
        return self.engine.store

    def now(self) -> int:
        return self.engine.clock.now_ms()

    def emit(self, event: Event) -> None:
        self.engine.emit(event)

    async def save(self, order: Order) -> None:
        await self.store.save_order(order, updated_ms=self.now())

    def base_asset(self, symbol: str) -> str:
        return self.base_assets.get(symbol, symbol.partition("/")[0])

    def new_client_id(self, symbol: str, purpose: str) -> str:
        """A fresh client id: each attempt is its own order in the log (an id is never reused)."""
        return make_client_order_id(CLIENT_ID_PREFIX, symbol, self.now(), f"{purpose}{next(self._sequence)}")

    def protection_of(self, symbol: str) -> Protection:
        return self.protection.setdefault(symbol, Protection())

    def awaiting(self, symbol: str) -> bool:
        return any(order.symbol == symbol for order in self.uncertain.values())

    @property
    def busy(self) -> bool:
        return bool(self.uncertain)

    def save_portfolio(self) -> None:
        self.engine.recorder.save_portfolio(self.portfolio, self.now())  # type: ignore[union-attr]

    def halt(self, reason: str) -> None:
        self.engine.emit_all(self.core.halt(self.now(), reason).events)

    def governed(self, symbol: str, what: str) -> bool:
        """Whether one more order may be sent; if not, halt and alert instead (once per symbol and minute)."""
        now = self.now()
        if self.governor.allow(symbol, now):
            return True
        self.emit(OrderRateLimited(
            time_ms=now, message=f"{symbol}: {what} not sent: order rate above {self.governor.per_symbol}/min per "
            f"symbol or {self.governor.per_account}/min in all; trading halted",
            symbol=symbol, order=what, sent_last_minute=self.governor.sent_in_window(now, symbol)))
        self.halt(f"order rate limit reached on {symbol}")
        return False

    # -------------------------------------------------------------------------------------- start
    async def start(self, now_ms: int) -> list[str]:
        """Load market rules, then reconcile the restored state with the exchange; returns the repairs."""
        from engine.execution.reconcile import reconcile

        limits = await self.broker.load_markets()
        for symbol in self.engine.symbols:
            if symbol in limits:
                self.core.market_limits[symbol] = limits[symbol]
            self.base_assets[symbol] = symbol.partition("/")[0]
        return await reconcile(self)

    async def close(self) -> None:
        await self.broker.close()

    async def probe(self) -> None:
        """One cheap exchange call for the health monitor; its outcome reaches the system breaker."""
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
        if symbol in self.portfolio.positions:
            self.protection_of(symbol).new_budget()  # one retry per bar for a refused stop or exit
            await self.drive_protection(symbol)
        if symbol in self.portfolio.positions:  # the closed bar's target, as the fill model takes it
            await self.targets_side.check_bar(prepared, index)
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
        from engine.domain.timeframes import parse_timeframe

        return parse_timeframe(prepared.candles.timeframe)

    async def execute(self, decisions: tuple[Decision, ...]) -> None:
        for decision in decisions:
            if isinstance(decision, EntryDecision):
                await self._enter(decision)
            elif isinstance(decision, StopMoved):
                await self.stop_mover.move_stop(decision)
            elif isinstance(decision, ExitDecision):
                await self._exit(decision)

    async def cancel_open_orders(self) -> int:
        cancelled = 0
        for symbol in list(self.stops):
            try:
                gone = await self.protector.cancel_resting(symbol)
            except ExchangeCallException as exc:
                self.emit(OrderCancelFailed(time_ms=self.now(), message=f"{symbol}: could not cancel stop: {exc}",
                                            symbol=symbol))
                continue
            if gone:
                self.protection_of(symbol).enter(_P.UNPROTECTED)
                cancelled += 1
        return cancelled

    # ------------------------------------------------------------------------------------ entries
    async def _enter(self, decision: EntryDecision) -> None:
        symbol = decision.symbol
        if decision.side is not PositionSide.LONG or not self.governed(symbol, "entry"):
            self.core.order_resolved(symbol)  # spot: no shorting through this broker
            return
        cid = make_client_order_id(CLIENT_ID_PREFIX, symbol, decision.decided_ms, OrderKind.ENTRY)
        # A market entry has no price of its own: ``price`` carries the decision's take-profit target.
        intent = Order(cid, symbol, Side.BUY, OrderType.MARKET, decision.quantity, OrderStatus.INTENT, self.now(),
                       price=decision.take_profit_price, stop_price=decision.stop_price,
                       reason=f"{OrderKind.ENTRY}: {decision.reason}", kind=OrderKind.ENTRY)
        await self.save(intent)  # write-ahead: persisted before anything is sent
        try:
            ack = await self.broker.submit_market_order(cid, symbol, Side.BUY, decision.quantity)
        except OrderOutcomeUnknownException as exc:
            await self.mark_uncertain(intent, exc)
            return
        except ExchangeCallException as exc:
            await self._rejected(intent, exc)
            return
        await self.books.apply_entry(intent, ack)

    # --------------------------------------------------------------------------------- protection
    async def drive_protection(self, symbol: str) -> None:
        """Move the position's protection on (see :class:`engine.execution.protector.Protector`)."""
        await self.protector.drive_protection(symbol)

    async def poll_stop(self, symbol: str) -> None:
        await self.protector.poll_stop(symbol)

    # -------------------------------------------------------------------------------------- exits
    async def _exit(self, decision: ExitDecision) -> None:
        symbol = decision.symbol
        if symbol not in self.portfolio.positions:
            self.core.order_resolved(symbol)
            return
        protection = self.protection_of(symbol)
        self.core.pending.add(symbol)
        protection.start_exit(decision.kind, decision.reason)
        protection.new_budget()
        await self.drive_protection(symbol)

    # ----------------------------------------------------------------------------- failures, unknowns
    async def mark_uncertain(self, intent: Order, exc: Exception, paired: Order | None = None) -> None:
        """Keep ``intent`` as unknown (``submitted``); ``paired``: the target leg sent in one pair with it."""
        order = replace(intent, status=OrderStatus.SUBMITTED)
        await self.save(order)
        self.uncertain[order.client_order_id] = order
        if paired is not None:
            await self.save(replace(paired, status=OrderStatus.SUBMITTED))
            self.pair_intents[order.client_order_id] = replace(paired, status=OrderStatus.SUBMITTED)
        self.emit(OrderUncertain(time_ms=self.now(), message=f"{intent.symbol}: outcome of {intent.client_order_id} "
                                 f"unknown ({exc}); looking it up on every candle, never re-sending it blind",
                                 symbol=intent.symbol, client_order_id=intent.client_order_id))

    async def _rejected(self, intent: Order, exc: ExchangeCallException) -> None:
        await self.save(replace(intent, status=OrderStatus.REJECTED))
        self.core.order_resolved(intent.symbol)
        self.emit(OrderRejected(time_ms=self.now(), message=f"{intent.symbol}: {intent.kind} refused: {exc}",
                                symbol=intent.symbol, client_order_id=intent.client_order_id,
                                error=type(exc).__name__))

    async def resolve_uncertain(self, symbol: str | None = None) -> None:
        """Look up every order whose outcome is unknown (of one symbol) and settle those now known."""
        for cid, order in list(self.uncertain.items()):
            if symbol is not None and order.symbol != symbol:
                continue
            resolution = await self.broker.resolve_order(cid, order.symbol, sent_ms=order.created_ms)
            if resolution.outcome is Outcome.FOUND:
                await self.settle(order, resolution.ack)
            elif resolution.outcome is Outcome.ABSENT:
                await self.settle(order, None)
            else:
                log.warning("%s: %s still unknown (%s)", order.symbol, cid, resolution.reason)

    async def settle(self, order: Order, ack: OrderAck | None) -> None:
        """Apply what the exchange knows about ``order`` (None = proven never placed)."""
        self.uncertain.pop(order.client_order_id, None)
        paired = self.pair_intents.pop(order.client_order_id, None)
        symbol, kind = order.symbol, order.kind
        if ack is None:
            await self.save(replace(order, status=OrderStatus.REJECTED,
                                     reason=order.reason + " (never reached the exchange)"))
            if paired is not None:
                await self.save(replace(paired, status=OrderStatus.REJECTED))
            if kind is OrderKind.ENTRY:
                self.core.order_resolved(symbol)  # the decision is stale: it is not sent again
            elif symbol in self.portfolio.positions:
                protection = self.protection_of(symbol)
                if kind is OrderKind.EXIT:  # the exit is still wanted, for the reason it was sent
                    protection.start_exit(order.exit_kind or protection.exit_kind or ExitKind.MANUAL,
                                          protection.exit_reason or order.reason.removeprefix(f"{OrderKind.EXIT}: "),
                                          order.price)
                else:
                    protection.enter(_P.UNPROTECTED)
                protection.new_budget()
                await self.drive_protection(symbol)
            return
        if kind is OrderKind.ENTRY:
            await self.books.apply_entry(order, ack)
        elif kind is OrderKind.EXIT:
            if await self.books.apply_exit(order, ack):
                await self.drive_protection(symbol)
        elif paired is not None:
            await self.settle_pair(order, paired)
        elif ack.status is OrderStatus.FILLED:
            await self.books.stop_filled(symbol, order, ack)
        elif not ack.status.is_terminal:
            await self.protector.stop_resting(symbol, ack.order.labelled_like(order))
            await self.drive_protection(symbol)  # an exit decided while the stop was unknown goes on now
        else:
            await self.save(replace(order, status=ack.status))
            if symbol in self.portfolio.positions:
                self.protection_of(symbol).enter(_P.UNPROTECTED)
                await self.drive_protection(symbol)

    async def settle_pair(self, stop: Order, target: Order) -> None:
        """A pair whose stop leg the exchange knows: read both legs and apply them (resting, sold or gone)."""
        symbol = stop.symbol
        try:
            pair = await self.broker.fetch_protection(stop.client_order_id, symbol)
        except ExchangeCallException as exc:  # still not readable: it stays unknown, looked up next candle
            log.warning("%s: pair %s not readable (%s)", symbol, stop.client_order_id, exc)
            self.uncertain[stop.client_order_id] = stop
            self.pair_intents[stop.client_order_id] = target
            return
        if pair is None:  # the stop leg was seen a moment ago: treat as still unknown
            self.uncertain[stop.client_order_id] = stop
            self.pair_intents[stop.client_order_id] = target
            return
        await self.targets_side.settle_pair(symbol, stop, target, pair)
        if symbol in self.portfolio.positions:
            await self.drive_protection(symbol)  # gone: protect again; an exit decided meanwhile goes on now

