"""Provides what a fill means for the books: the quantity the account really holds, prices and fees in quote.

Binance spot charges a buy's commission in the asset bought, so a buy of 0.1 BTC leaves 0.0999 BTC on
the account; selling or resting a stop for 0.1 is refused (``-2010`` insufficient balance). The
position is therefore booked net of base-asset fees, and what sells is floored to the lot: the rest
under one lot is *dust*, tracked as such.

:class:`Bookkeeper` applies the live fills to the books: entries (with the stop and take-profit target
the decision carried), and every sell (exit, stop, target) as a closed trade or a remainder. A sell
the backtest's fill model would have priced differently (a take-profit: at the target) records both
prices: the order row keeps the modelled one in ``price`` and the real one in ``average_price``, and
``PositionClosed`` carries ``exit`` (real) and ``modelled_exit``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from engine.core.portfolio import QUANTITY_EPSILON
from engine.domain.events import OrderFilled, PositionClosed, PositionOpened, PositionReduced, Severity
from engine.domain.models import ExitKind, Fill, MarketLimits, Order, OrderStatus, PositionSide
from engine.domain.precision import floor_to_step
from engine.execution.broker import OrderAck
from engine.execution.protection import ProtectionState

if TYPE_CHECKING:
    from engine.execution.order_manager import OrderManager

TAKE_PROFIT = "take_profit"
"""The exit reason (for people) of a position closed at its target: exit kind ``ExitKind.TARGET``."""

BALANCE_TOLERANCE = 1e-9
"""Base quantities closer than this (base units) are equal: Binance prints 8 decimals, floats add ~1e-16."""


@dataclass(frozen=True)
class EntryBooking:
    """An entry as the account holds it.

    Attributes:
        quantity: base quantity received (filled minus base-asset fees).
        price: average fill price, quote currency.
        fee_quote: every fee of the order in quote currency (base fees valued at ``price``).
        fills_known: whether the fills (and so the fees) were reported; if not, ``quantity`` is the
            gross filled quantity and the stop is sized from the free balance.
    """

    quantity: float
    price: float
    fee_quote: float
    fills_known: bool


def average_price(fills: tuple[Fill, ...]) -> float | None:
    quantity = sum(f.quantity for f in fills)
    return sum(f.quantity * f.price for f in fills) / quantity if quantity > 0 else None


def book_entry(ack: OrderAck, base_asset: str) -> EntryBooking:
    """The held quantity, price and quote fees of a filled buy."""
    price = ack.average_price or average_price(ack.fills) or 0.0
    fee_base = sum(f.fee for f in ack.fills if f.fee_asset == base_asset)
    fee_other = sum(f.fee for f in ack.fills if f.fee_asset != base_asset)
    return EntryBooking(ack.filled_quantity - fee_base, price, fee_other + fee_base * price, bool(ack.fills))


def exit_fee_quote(ack: OrderAck, base_asset: str, price: float) -> float:
    """A sell's fees in quote currency (Binance charges a sell in the quote asset; base fees are valued)."""
    return sum(f.fee * price if f.fee_asset == base_asset else f.fee for f in ack.fills)


def floor_to_lot(quantity: float, limits: MarketLimits) -> float:
    """The largest multiple of the lot step not above ``quantity`` (what the exchange will accept to sell).

    The risk manager's own rounding (:func:`engine.domain.precision.floor_to_step`), so a sell is floored
    exactly as an entry was sized.
    """
    if quantity <= 0 or limits.lot_step <= 0:
        return max(quantity, 0.0)
    return floor_to_step(quantity, limits.lot_step)


def sellable(held_by_bot: float, free: float, limits: MarketLimits) -> float:
    """What a protective stop or an exit may sell: the bot's quantity, never more than is free, on the lot."""
    return floor_to_lot(min(held_by_bot, free + BALANCE_TOLERANCE), limits)


class Bookkeeper:
    """The books side of one live :class:`~engine.execution.order_manager.OrderManager`: what its fills mean.

    Args:
        manager: the order manager whose portfolio, store, core and events it uses.
    """

    def __init__(self, manager: OrderManager) -> None:
        self.m = manager

    async def apply_entry(self, intent: Order, ack: OrderAck) -> None:
        """Book an entry's acknowledgement (net of base-asset fees), then protect it at once.

        The intent's ``stop_price`` is the decision's stop, its ``price`` the decision's take-profit target.
        """
        m, symbol = self.m, intent.symbol
        order = replace(ack.order.labelled_like(intent), stop_price=intent.stop_price, price=intent.price)
        m.uncertain.pop(intent.client_order_id, None)
        if ack.filled_quantity <= QUANTITY_EPSILON:
            await m.save(replace(order, status=OrderStatus.REJECTED if ack.status.is_terminal else order.status))
            m.core.order_resolved(symbol)
            return
        if symbol in m.portfolio.positions:  # a restart found a fill already booked
            await m.save(order)
            m.core.order_resolved(symbol)
            return
        booked = book_entry(ack, m.base_asset(symbol))
        stop_price = float(intent.stop_price or 0.0)
        position = m.portfolio.open(symbol, PositionSide.LONG, booked.quantity, booked.price, booked.fee_quote,
                                    order.created_ms, stop_price, intent.price)
        await self.record_fills(order, ack.fills, position.to_position(), None)
        m.core.order_resolved(symbol)
        m.save_portfolio()
        m.emit(PositionOpened(
            time_ms=m.now(), message=f"{symbol} long {booked.quantity:g} @ {booked.price:.8g} (stop {stop_price:.8g}"
            + ("" if intent.price is None else f", target {intent.price:.8g}") + ")",
            symbol=symbol, side=PositionSide.LONG, qty=booked.quantity, filled=ack.filled_quantity,
            price=booked.price, stop=stop_price, target=intent.price, client_order_id=order.client_order_id,
            recovered=ack.recovered, fills_known=booked.fills_known))
        protection = m.protection_of(symbol)
        protection.enter(ProtectionState.UNPROTECTED)
        protection.new_budget()
        await m.drive_protection(symbol)

    async def apply_exit(self, intent: Order, ack: OrderAck) -> bool:
        """Book a sell; True if part of the position is still held (it needs its stop)."""
        self.m.uncertain.pop(intent.client_order_id, None)
        order = replace(ack.order.labelled_like(intent), price=intent.price)
        if ack.filled_quantity <= QUANTITY_EPSILON:
            await self.m.save(replace(order, status=OrderStatus.REJECTED if ack.status.is_terminal else order.status))
            self.m.protection_of(intent.symbol).enter(ProtectionState.EXITING)  # nothing sold: try again
            return False
        reason = intent.reason.partition(": ")[2] or "exit"
        # Every exit order is written with its kind; one without (none is) was not the engine's decision.
        kind = intent.exit_kind if intent.exit_kind is not None else ExitKind.MANUAL
        return await self.close(intent.symbol, order, ack, kind, reason, intent.price)

    async def stop_filled(self, symbol: str, stop: Order, ack: OrderAck) -> None:
        """The exchange stop (lone, or a pair's stop leg) sold."""
        await self._leg_filled(symbol, stop, ack, take_profit=False)

    async def target_filled(self, symbol: str, target: Order, ack: OrderAck) -> None:
        """A pair's take-profit leg sold: a take-profit exit, modelled at the position's target."""
        await self._leg_filled(symbol, target, ack, take_profit=True)

    async def _leg_filled(self, symbol: str, leg: Order, ack: OrderAck, *, take_profit: bool) -> None:
        """A resting protective order sold: the pair (or lone stop) is gone, the position closes."""
        self.m.stops.pop(symbol, None)
        self.m.targets.pop(symbol, None)
        order = ack.order.labelled_like(leg)
        position = self.m.portfolio.positions.get(symbol)
        if position is None:
            await self.m.save(order)
            return
        if take_profit:
            modelled = position.take_profit_price if position.take_profit_price is not None else leg.price
            await self.close(symbol, order, ack, ExitKind.TARGET, TAKE_PROFIT, modelled)
        else:
            kind = ExitKind.TRAILING_STOP if position.trailing_active else ExitKind.STOP
            await self.close(symbol, order, ack, kind, kind.value)

    async def close(
        self, symbol: str, order: Order, ack: OrderAck, kind: ExitKind, reason: str, modelled: float | None = None
    ) -> bool:
        """Book what sold; the rest stays a position (>= 1 lot) or becomes dust. True if a position remains.

        Args:
            kind: why the position was exited (the closed trade's ``exit_kind``); ``reason`` says it for people.
            modelled: the price the fill model gives this exit (a take-profit: its target), recorded beside
                the real one.
        """
        m = self.m
        price = ack.average_price or average_price(ack.fills) or float(order.stop_price or 0.0)
        fee = exit_fee_quote(ack, m.base_asset(symbol), price)
        position = m.portfolio.positions[symbol]
        dust = m.portfolio.dust.pop(symbol, 0.0)
        sold_of_position = min(ack.filled_quantity, position.quantity)
        left = position.quantity + dust - ack.filled_quantity
        remainder = None
        if left > BALANCE_TOLERANCE and left >= m.core.limits_for(symbol).lot_step:
            ratio = sold_of_position / position.quantity
            remainder = replace(position, quantity=position.quantity - sold_of_position,
                                entry_fee=position.entry_fee * (1 - ratio))
            if dust > 0:
                m.portfolio.dust[symbol] = dust  # nothing of it sold: still dust beside the remainder
            m.portfolio.update(replace(position, quantity=sold_of_position, entry_fee=position.entry_fee * ratio))
        else:
            if left > BALANCE_TOLERANCE:
                m.portfolio.dust[symbol] = left
            if sold_of_position < position.quantity:  # the unsold part under one lot is dust now, not sold
                ratio = sold_of_position / position.quantity
                m.portfolio.update(replace(position, quantity=sold_of_position, entry_fee=position.entry_fee * ratio))
        trade = m.portfolio.close(symbol, price, fee, m.now(), reason, kind)
        if remainder is not None:
            m.portfolio.update(remainder)
        await self.record_fills(order, ack.fills, None if remainder is None else remainder.to_position(), trade)
        m.save_portfolio()
        modelled_note = "" if modelled is None else f"; modelled {modelled:.8g}"
        m.emit(PositionClosed(
            time_ms=m.now(),
            message=f"{symbol} long closed @ {price:.8g} ({reason}{modelled_note}) pnl {trade.pnl:+.2f}",
            severity=Severity.INFO if trade.pnl >= 0 else Severity.WARNING,
            symbol=symbol, side=PositionSide.LONG, qty=trade.quantity, entry=trade.entry_price, exit=price,
            pnl=trade.pnl, exit_kind=kind, reason=reason, client_order_id=order.client_order_id,
            modelled_exit=modelled))
        m.engine.emit_all(m.core.on_trade_closed(trade, m.now()).events)
        if remainder is None:
            m.protection.pop(symbol, None)
            m.core.order_resolved(symbol)
            return False
        m.emit(PositionReduced(time_ms=m.now(), message=f"{symbol}: only {trade.quantity:g} sold; "
                               f"{remainder.quantity:g} still held", symbol=symbol, sold=trade.quantity,
                               qty=remainder.quantity))
        # What is still held gets its stop now; an exit still wanted is decided again on the next bar
        # (selling the rest at once into the liquidity that just ran out would only sell it worse).
        m.protection_of(symbol).enter(ProtectionState.UNPROTECTED)
        m.core.order_resolved(symbol)
        return True

    async def record_fills(self, order: Order, fills: tuple[Fill, ...], position: Any, trade: Any) -> None:
        m = self.m
        if not fills:  # the venue reported no trades: book one fill from the order's totals
            fills = (Fill(order.client_order_id, order.symbol, order.side, order.filled_quantity,
                          float(order.average_price or 0.0), 0.0, m.now(), trade_id=f"{order.client_order_id}-0"),)
        async with m.store.transaction():
            await m.save(order)
            for i, fill in enumerate(fills):
                last = i == len(fills) - 1
                await m.store.record_fill(fill, position, trade if last else None, order=order)
        m.emit(OrderFilled(time_ms=m.now(), message=f"{order.symbol} {order.side.value} {order.filled_quantity:g} "
                           "filled", symbol=order.symbol, client_order_id=order.client_order_id, side=order.side,
                           qty=order.filled_quantity, price=order.average_price))
