"""Provides what a fill means for the books: the quantity the account really holds, prices and fees in quote.

Binance spot charges a buy's commission in the asset bought, so a buy of 0.1 BTC leaves 0.0999 BTC on
the account; selling or resting a stop for 0.1 is refused (``-2010`` insufficient balance). The
position is therefore booked net of base-asset fees, and what sells is floored to the lot: the rest
under one lot is *dust*, tracked as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from engine.execution.broker import OrderAck
from engine.models import Fill, MarketLimits

BALANCE_TOLERANCE = 1e-9
"""Base quantities closer than this (base units) are equal: Binance prints 8 decimals, floats add ~1e-16."""
_TOLERANCE = Decimal(repr(BALANCE_TOLERANCE))


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

    In decimal arithmetic, as the exchange counts: 0.0999 / 0.00001 is 9989.999... in binary floats.
    """
    if quantity <= 0 or limits.lot_step <= 0:
        return max(quantity, 0.0)
    step = Decimal(repr(limits.lot_step))
    lots = ((Decimal(repr(quantity)) + _TOLERANCE) / step).to_integral_value(ROUND_DOWN)
    return float(lots * step)


def sellable(held_by_bot: float, free: float, limits: MarketLimits) -> float:
    """What a protective stop or an exit may sell: the bot's quantity, never more than is free, on the lot."""
    return floor_to_lot(min(held_by_bot, free + BALANCE_TOLERANCE), limits)
