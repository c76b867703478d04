"""Provides Protector: the bounded loop that keeps each live position protected or closes it.

A position's :class:`~engine.execution.protection.ProtectionState` moves only here, in
:meth:`Protector.drive_protection`: a loop, never the stop and exit paths calling each other. A stop the
market has already crossed becomes one market exit; a refused stop is a critical alert and a retry on
the next bar; a refused exit is a critical alert, halted entries and a retry on the next bar with the
quantity re-read from the balance. Every order asks the order-rate governor first and is sized from
what the account has free, floored to the lot.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.decision import StopMoved
from engine.errors import ExchangeCallException, OrderOutcomeUnknownException, StopWouldTriggerException
from engine.execution.booking import sellable
from engine.execution.broker import StopReplaceError
from engine.execution.protection import Protection, ProtectionState
from engine.models import Order, OrderStatus, OrderType, Side

if TYPE_CHECKING:
    from engine.order_manager import OrderManager

log = logging.getLogger(__name__)

STOP, EXIT = "stop", "exit"
_P = ProtectionState


class Protector:
    """Stops and exits of the live positions of one :class:`~engine.order_manager.OrderManager`.

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

    def _alert_once(self, protection: Protection, kind: str, message: str, data: dict[str, Any]) -> None:
        if protection.alerted is not protection.state:
            protection.alerted = protection.state
            self.m.emit(kind, message, data, "critical")

    async def _try_stop(self, symbol: str, protection: Protection) -> bool:
        """Place the exchange stop; True if the loop should go on (the stop is crossed: exit now)."""
        position = self.m.portfolio.positions[symbol]
        stop_price = position.stop_price
        quantity = await self._sellable(symbol)
        if not quantity or not self.m.governed(symbol, "stop"):
            protection.enter(_P.UNPROTECTED)
            why = "nothing sellable on the account" if quantity == 0 else "balance unknown or order rate limit"
            self._alert_once(protection, "PositionUnprotected", f"{symbol}: no stop ({why}); retrying next candle",
                             {"symbol": symbol, "stop": stop_price})
            return False
        cid = self.m.new_client_id(symbol, STOP)
        intent = Order(cid, symbol, Side.SELL, OrderType.STOP_MARKET, quantity, OrderStatus.INTENT, self.m.now(),
                       stop_price=stop_price, reason=f"{STOP}: protective")
        await self.m.save(intent)
        protection.enter(_P.PLACING_STOP)
        try:
            ack = await self.m.broker.place_stop_loss(cid, symbol, Side.SELL, quantity, stop_price)
        except StopWouldTriggerException as exc:
            await self.m.save(replace(intent, status=OrderStatus.REJECTED))
            self.m.emit("StopRefused", f"{symbol}: stop {stop_price:.8g} already crossed ({exc.reason}); selling at "
                       "market", {"symbol": symbol, "stop": stop_price}, "warning")
            self.m.core.pending.add(symbol)
            protection.enter(_P.EXITING, "stop already crossed")
            return True
        except OrderOutcomeUnknownException as exc:
            await self.m.mark_uncertain(intent, exc)
            return False
        except ExchangeCallException as exc:
            await self.m.save(replace(intent, status=OrderStatus.REJECTED))
            protection.enter(_P.UNPROTECTED)
            self._alert_once(protection, "PositionUnprotected", f"{symbol}: stop not placed ({exc}); retrying next "
                             "candle", {"symbol": symbol, "stop": stop_price, "error": type(exc).__name__})
            return False
        await self.stop_resting(symbol, replace(ack.order, reason=intent.reason, created_ms=intent.created_ms))
        return False

    async def stop_resting(self, symbol: str, stop: Order) -> None:
        await self.m.save(stop)
        self.m.stops[symbol] = stop
        protection = self.m.protection_of(symbol)
        if not protection.exiting:  # an exit decided meanwhile still wins: it cancels this stop first
            protection.enter(_P.PROTECTED)
        self.m.emit("StopPlaced", f"{symbol}: exchange stop at {float(stop.stop_price or 0):.8g} for "
                    f"{stop.quantity:g}", {"symbol": symbol, "stop": stop.stop_price, "qty": stop.quantity,
                                           "client_order_id": stop.client_order_id})

    async def _try_exit(self, symbol: str, protection: Protection) -> bool:
        """Sell the position at market; True if the loop should go on (a remainder needs its stop)."""
        stop = self.m.stops.get(symbol)
        if stop is not None:
            try:
                cancelled = await self.m.broker.cancel_order(stop.client_order_id, symbol)
            except ExchangeCallException as exc:
                self.m.emit("ExitPostponed", f"{symbol}: exit postponed, stop not cancelled ({exc})",
                           {"symbol": symbol}, "warning")
                return False  # the stop still rests: the position stays protected meanwhile
            if cancelled.status is OrderStatus.FILLED:
                await self.m.stop_filled(symbol, stop, cancelled)
                return False
            await self.m.save(replace(stop, status=OrderStatus.CANCELED))
            self.m.stops.pop(symbol, None)
        quantity = await self._sellable(symbol)
        if not quantity or not self.m.governed(symbol, "exit"):
            return self._exit_refused(symbol, protection, "balance unknown, nothing sellable or order rate limit")
        cid = self.m.new_client_id(symbol, EXIT)
        intent = Order(cid, symbol, Side.SELL, OrderType.MARKET, quantity, OrderStatus.INTENT, self.m.now(),
                       reason=f"{EXIT}: {protection.exit_reason or 'exit'}")
        await self.m.save(intent)
        try:
            ack = await self.m.broker.submit_market_order(cid, symbol, Side.SELL, quantity)
        except OrderOutcomeUnknownException as exc:
            await self.m.mark_uncertain(intent, exc)
            return False
        except ExchangeCallException as exc:
            await self.m.save(replace(intent, status=OrderStatus.REJECTED))
            return self._exit_refused(symbol, protection, str(exc))
        return await self.m.apply_exit(intent, ack)

    def _exit_refused(self, symbol: str, protection: Protection, reason: str) -> bool:
        protection.enter(_P.EXIT_REFUSED)
        if protection.alerted is not _P.EXIT_REFUSED:
            self._alert_once(protection, "ExitRefused", f"{symbol}: exit refused ({reason}); entries halted, "
                             "retrying next candle", {"symbol": symbol, "reason": reason})
            self.m.halt(f"exit refused on {symbol}")
        return False

    async def move_stop(self, decision: StopMoved) -> None:
        symbol = decision.symbol
        position = self.m.portfolio.positions.get(symbol)
        if position is None:
            return
        protection = self.m.protection_of(symbol)
        old = self.m.stops.get(symbol)
        if protection.state is not _P.PROTECTED or old is None or self.m.awaiting(symbol):
            if not protection.exiting:  # no stop rests: place one at the new level
                protection.new_budget()
                await self.drive_protection(symbol)
            return
        if not self.m.governed(symbol, "stop move"):
            return  # the old stop keeps resting
        new_cid = self.m.new_client_id(symbol, "trail")
        mine = position.quantity + self.m.portfolio.dust.get(symbol, 0.0)
        intent = Order(new_cid, symbol, Side.SELL, OrderType.STOP_MARKET, mine, OrderStatus.INTENT, self.m.now(),
                       stop_price=decision.stop_price, reason=f"{STOP}: trailing")
        await self.m.save(intent)
        try:
            ack = await self.m.broker.replace_stop_loss(old.client_order_id, new_cid, symbol, Side.SELL, mine,
                                                      decision.stop_price)
        except StopReplaceError as exc:
            await self.m.save(replace(intent, status=OrderStatus.REJECTED))
            await self.m.save(replace(old, status=OrderStatus.CANCELED))
            self.m.stops.pop(symbol, None)
            if exc.restored is not None:
                await self.m.save(replace(exc.restored.order, reason=f"{STOP}: restored"))
                self.m.stops[symbol] = replace(exc.restored.order, reason=f"{STOP}: restored")
                return
            if exc.would_trigger:
                self.m.core.pending.add(symbol)
                protection.enter(_P.EXITING, "trailing stop crossed")
            else:
                protection.enter(_P.UNPROTECTED)
            protection.new_budget()
            await self.drive_protection(symbol)
            return
        except OrderOutcomeUnknownException as exc:  # the old stop was cancelled; the new one's fate is unknown
            await self.m.save(replace(old, status=OrderStatus.CANCELED))
            self.m.stops.pop(symbol, None)
            protection.enter(_P.PLACING_STOP)
            await self.m.mark_uncertain(intent, exc)
            return
        except ExchangeCallException as exc:
            await self.m.save(replace(intent, status=OrderStatus.REJECTED))
            log.warning("%s: stop not moved (%s); the old stop stays", symbol, exc)
            return
        if ack.client_order_id == old.client_order_id:  # the old stop had filled: nothing to move
            await self.m.save(replace(intent, status=OrderStatus.CANCELED))
            await self.m.stop_filled(symbol, old, ack)
            return
        await self.m.save(replace(old, status=OrderStatus.CANCELED))
        await self.m.save(replace(ack.order, reason=intent.reason, created_ms=intent.created_ms))
        self.m.stops[symbol] = replace(ack.order, reason=intent.reason, created_ms=intent.created_ms)

    async def poll_stop(self, symbol: str) -> None:
        """Has the symbol's exchange stop filled since the last candle?"""
        stop = self.m.stops.get(symbol)
        if stop is None:
            return
        try:
            ack = await self.m.broker.fetch_order(stop.client_order_id, symbol)
        except ExchangeCallException as exc:
            log.warning("%s: stop status unknown this candle (%s)", symbol, exc)
            return
        if ack is not None and ack.status is OrderStatus.FILLED:
            await self.m.stop_filled(symbol, stop, ack)
        elif ack is None or ack.status.is_terminal:  # cancelled or expired outside the bot, or unknown there
            await self.m.save(replace(stop, status=OrderStatus.CANCELED if ack is None else ack.status))
            self.m.stops.pop(symbol, None)
            if symbol in self.m.portfolio.positions:
                self.m.protection_of(symbol).enter(_P.UNPROTECTED)
                self.m.emit("StopLost", f"{symbol}: exchange stop {stop.client_order_id} is gone "
                           f"({'unknown' if ack is None else ack.status.value}); placing a new one",
                           {"symbol": symbol, "client_order_id": stop.client_order_id}, "warning")
