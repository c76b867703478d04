"""Provides Protector: the bounded loop that keeps each live position protected or closes it.

A position's :class:`~engine.execution.protection.ProtectionState` moves only here, in
:meth:`Protector.drive_protection`: a loop, never the stop and exit paths calling each other. A stop the
market has already crossed becomes one market exit; a take-profit target the market has already
reached becomes one market exit as ``take_profit``; a refused stop is a critical alert and a retry on
the next bar; a refused exit is a critical alert, halted entries and a retry on the next bar with the
quantity re-read from the balance. Every order asks the order-rate governor first and is sized from
what the account has free, floored to the lot.

Where the venue allows it (:meth:`~engine.execution.take_profit.Targets.pair_target`) the stop is placed
together with the take-profit target as one pair (one order, the quantity locked once); a pair the venue
refuses for this position is replaced by a lone stop at once, and the engine then checks the target on
each closed bar (:meth:`~engine.execution.take_profit.Targets.check_bar`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.domain.errors import (
    ExchangeCallException,
    InsufficientFundsException,
    OrderOutcomeUnknownException,
    OrderRejectedException,
    StopWouldTriggerException,
)
from engine.domain.events import (
    Event,
    ExitPostponed,
    ExitRefused,
    PositionUnprotected,
    StopLost,
    StopPlaced,
    StopRefused,
    TargetNotPlaced,
    TargetReached,
)
from engine.domain.models import ExitKind, Order, OrderKind, OrderStatus, OrderType, Side
from engine.execution.booking import TAKE_PROFIT, sellable
from engine.execution.broker import OrderAck, PairAck, TargetCrossedError
from engine.execution.protection import Protection, ProtectionState
from engine.execution.take_profit import target_intent

if TYPE_CHECKING:
    from engine.execution.order_manager import OrderManager

log = logging.getLogger(__name__)

_P = ProtectionState


class Protector:
    """Stops, pairs and exits of the live positions of one :class:`~engine.execution.order_manager.OrderManager`.

    Args:
        manager: the order manager whose broker, books and events it uses (and whose stops it keeps).
    """

    def __init__(self, manager: OrderManager) -> None:
        self.m = manager

    async def drive_protection(self, symbol: str) -> None:
        """Move the position's protection on until it is protected, closed, waiting, or out of budget.

        The only place stop and exit attempts follow each other: a loop, never a recursion, and
        bounded by the protection budget and the order-rate governor.
        """
        protection = self.m.protection_of(symbol)
        while symbol in self.m.portfolio.positions and protection.state is not _P.PROTECTED:
            if not protection.budget_left or self.m.awaiting(symbol):
                return
            protection.attempts += 1
            if protection.exiting:
                carry_on = await self._try_exit(symbol, protection)
            else:
                carry_on = await self._try_stop(symbol, protection)
            if not carry_on:
                return

    async def _sellable(self, symbol: str) -> float | None:
        """What may be sold now: the bot's quantity (with dust) within the free balance, on the lot."""
        position = self.m.portfolio.positions[symbol]
        try:
            holding = await self.m.broker.holding(symbol)
        except ExchangeCallException as exc:
            log.warning("%s: balance unknown (%s)", symbol, exc)
            return None
        mine = position.quantity + self.m.portfolio.dust.get(symbol, 0.0)
        return sellable(mine, holding.free, self.m.core.limits_for(symbol))

    def _alert_once(self, protection: Protection, event: Event) -> None:
        if protection.alerted is not protection.state:
            protection.alerted = protection.state
            self.m.emit(event)

    async def _rejected(self, *intents: Order | None) -> None:
        for intent in intents:
            if intent is not None:
                await self.m.save(replace(intent, status=OrderStatus.REJECTED))

    async def _try_stop(self, symbol: str, protection: Protection) -> bool:
        """Place the exchange stop (with its target, as a pair, where the venue allows it); True if the
        loop should go on (the stop is crossed or the target reached: exit now; the pair refused: a lone stop)."""
        position = self.m.portfolio.positions[symbol]
        stop_price = position.stop_price
        target = self.m.targets_side.pair_target(symbol, protection)
        quantity = await self._sellable(symbol)
        if not quantity or not self.m.governed(symbol, "stop"):
            protection.enter(_P.UNPROTECTED)
            why = "nothing sellable on the account" if quantity == 0 else "balance unknown or order rate limit"
            self._alert_once(protection, PositionUnprotected(
                time_ms=self.m.now(), message=f"{symbol}: no stop ({why}); retrying next candle", symbol=symbol,
                stop=stop_price))
            return False
        cid = self.m.new_client_id(symbol, OrderKind.STOP)
        intent = Order(cid, symbol, Side.SELL, OrderType.STOP_MARKET, quantity, OrderStatus.INTENT, self.m.now(),
                       stop_price=stop_price, reason=f"{OrderKind.STOP}: protective", kind=OrderKind.STOP)
        paired = None if target is None else target_intent(intent, target)
        await self.m.save(intent)  # write-ahead: both legs persisted before anything is sent
        if paired is not None:
            await self.m.save(paired)
        protection.enter(_P.PLACING_STOP)
        try:
            if paired is None:
                ack: OrderAck | PairAck = await self.m.broker.place_stop_loss(cid, symbol, Side.SELL, quantity,
                                                                             stop_price)
            else:
                ack = await self.m.broker.place_protection(cid, symbol, Side.SELL, quantity, stop_price,
                                                           float(target or 0.0))
        except TargetCrossedError as exc:
            await self._rejected(intent, paired)
            self.m.emit(TargetReached(time_ms=self.m.now(), message=f"{symbol}: target {target:.8g} already reached "
                                      f"({exc.reason}); selling at market", symbol=symbol, target=target,
                                      modelled_exit=target))
            self.m.core.pending.add(symbol)
            protection.start_exit(ExitKind.TARGET, TAKE_PROFIT, target)
            return True
        except StopWouldTriggerException as exc:
            await self._rejected(intent, paired)
            self.m.emit(StopRefused(time_ms=self.m.now(), message=f"{symbol}: stop {stop_price:.8g} already crossed "
                                    f"({exc.reason}); selling at market", symbol=symbol, stop=stop_price))
            self.m.core.pending.add(symbol)
            kind = ExitKind.TRAILING_STOP if position.trailing_active else ExitKind.STOP
            protection.start_exit(kind, "stop already crossed")
            return True
        except OrderOutcomeUnknownException as exc:
            await self.m.mark_uncertain(intent, exc, paired)
            return False
        except ExchangeCallException as exc:
            await self._rejected(intent, paired)
            protection.enter(_P.UNPROTECTED)
            if paired is not None and isinstance(exc, OrderRejectedException) and not isinstance(
                    exc, InsufficientFundsException):
                protection.pair_refused = True  # a lone stop now; the engine watches the target on each bar
                self.m.emit(TargetNotPlaced(time_ms=self.m.now(), message=f"{symbol}: stop-and-target pair refused "
                                            f"({exc.reason}); a lone stop instead, the target is checked on each "
                                            "closed bar", symbol=symbol, target=target))
                return True
            self._alert_once(protection, PositionUnprotected(
                time_ms=self.m.now(), message=f"{symbol}: stop not placed ({exc}); retrying next candle",
                symbol=symbol, stop=stop_price, error=type(exc).__name__))
            return False
        if isinstance(ack, PairAck):
            assert paired is not None
            await self.m.targets_side.settle_pair(symbol, intent, paired, ack)
        else:
            await self.stop_resting(symbol, ack.order.labelled_like(intent))
        return False

    async def stop_resting(self, symbol: str, stop: Order) -> None:
        await self.m.save(stop)
        self.m.stops[symbol] = stop
        self.m.targets.pop(symbol, None)
        protection = self.m.protection_of(symbol)
        if not protection.exiting:  # an exit decided meanwhile still wins: it cancels this stop first
            protection.enter(_P.PROTECTED)
        self.m.emit(StopPlaced(time_ms=self.m.now(), message=f"{symbol}: exchange stop at "
                               f"{float(stop.stop_price or 0):.8g} for {stop.quantity:g}", symbol=symbol,
                               stop=stop.stop_price, qty=stop.quantity, client_order_id=stop.client_order_id))

    async def cancel_resting(self, symbol: str) -> bool:
        """Take the symbol's resting stop (and its target) down; False if it had sold meanwhile (booked now).

        Raises:
            ExchangeCallException: not cancelled; it still rests.
        """
        stop, target = self.m.stops.get(symbol), self.m.targets.get(symbol)
        if stop is None:
            return True
        if target is None:
            cancelled = await self.m.broker.cancel_order(stop.client_order_id, symbol)
            if cancelled.status is OrderStatus.FILLED:
                await self.m.books.stop_filled(symbol, stop, cancelled)
                return False
            await self.m.save(replace(stop, status=OrderStatus.CANCELED))
        else:
            pair = await self.m.broker.cancel_protection(stop.client_order_id, symbol)
            if pair.filled_leg is not None:
                await self.m.targets_side.settle_pair(symbol, stop, target, pair)
                return False
            await self.m.save(replace(stop, status=OrderStatus.CANCELED))
            await self.m.save(replace(target, status=OrderStatus.CANCELED))
        self.m.stops.pop(symbol, None)
        self.m.targets.pop(symbol, None)
        return True

    async def _try_exit(self, symbol: str, protection: Protection) -> bool:
        """Sell the position at market; True if the loop should go on (a remainder needs its stop)."""
        try:
            if not await self.cancel_resting(symbol):
                return False  # the stop or target sold first
        except ExchangeCallException as exc:
            self.m.emit(ExitPostponed(time_ms=self.m.now(), message=f"{symbol}: exit postponed, stop not cancelled "
                                      f"({exc})", symbol=symbol))
            return False  # the stop still rests: the position stays protected meanwhile
        quantity = await self._sellable(symbol)
        if not quantity or not self.m.governed(symbol, "exit"):
            return self._exit_refused(symbol, protection, "balance unknown, nothing sellable or order rate limit")
        cid = self.m.new_client_id(symbol, OrderKind.EXIT)
        # ``price`` of a market exit: the fill model's price for it where that differs (a take-profit's target).
        intent = Order(cid, symbol, Side.SELL, OrderType.MARKET, quantity, OrderStatus.INTENT, self.m.now(),
                       price=protection.modelled_price, reason=f"{OrderKind.EXIT}: {protection.exit_reason or 'exit'}",
                       kind=OrderKind.EXIT, exit_kind=protection.exit_kind)
        await self.m.save(intent)
        try:
            ack = await self.m.broker.submit_market_order(cid, symbol, Side.SELL, quantity)
        except OrderOutcomeUnknownException as exc:
            await self.m.mark_uncertain(intent, exc)
            return False
        except ExchangeCallException as exc:
            await self.m.save(replace(intent, status=OrderStatus.REJECTED))
            return self._exit_refused(symbol, protection, str(exc))
        return await self.m.books.apply_exit(intent, ack)

    def _exit_refused(self, symbol: str, protection: Protection, reason: str) -> bool:
        protection.enter(_P.EXIT_REFUSED)
        if protection.alerted is not _P.EXIT_REFUSED:
            self._alert_once(protection, ExitRefused(
                time_ms=self.m.now(), message=f"{symbol}: exit refused ({reason}); entries halted, retrying next "
                "candle", symbol=symbol, reason=reason))
            self.m.halt(f"exit refused on {symbol}")
        return False

    async def poll_stop(self, symbol: str) -> None:
        """Has the symbol's exchange stop (or a leg of its pair) filled since the last candle?"""
        stop, target = self.m.stops.get(symbol), self.m.targets.get(symbol)
        if stop is None:
            return
        try:
            ack = await self.m.broker.fetch_order(stop.client_order_id, symbol)
            if target is not None and ack is not None and not ack.is_open:  # a leg sold, or the pair is gone
                pair = await self.m.broker.fetch_protection(stop.client_order_id, symbol)
                if pair is not None:
                    await self.m.targets_side.settle_pair(symbol, stop, target, pair)
                    if pair.filled_leg is None and symbol in self.m.portfolio.positions:
                        self._stop_lost(symbol, stop, "cancelled or expired")
                    return
        except ExchangeCallException as exc:
            log.warning("%s: stop status unknown this candle (%s)", symbol, exc)
            return
        if ack is not None and ack.status is OrderStatus.FILLED:
            await self.m.books.stop_filled(symbol, stop, ack)
        elif ack is None or ack.status.is_terminal:  # cancelled or expired outside the bot, or unknown there
            await self.m.save(replace(stop, status=OrderStatus.CANCELED if ack is None else ack.status))
            if target is not None:
                await self.m.save(replace(target, status=OrderStatus.CANCELED))
            self.m.stops.pop(symbol, None)
            self.m.targets.pop(symbol, None)
            if symbol in self.m.portfolio.positions:
                self.m.protection_of(symbol).enter(_P.UNPROTECTED)
                self._stop_lost(symbol, stop, "unknown" if ack is None else ack.status.value)

    def _stop_lost(self, symbol: str, stop: Order, how: str) -> None:
        self.m.emit(StopLost(time_ms=self.m.now(), message=f"{symbol}: exchange stop {stop.client_order_id} is gone "
                             f"({how}); placing a new one", symbol=symbol, client_order_id=stop.client_order_id))
