"""Provides the Broker protocol that paper and exchange brokers implement, its result types and client ids.

Every money-moving call takes a caller-chosen client order id. The ids are deterministic
(:func:`make_client_order_id`): the same decision on the same bar always yields the same id, so a
resubmit after a timeout or a restart is recognised by the exchange (or by the broker's look-up)
instead of creating a second order.

A position's protection is either a lone stop or, where the venue allows it, a *pair*: the stop and
the take-profit target in one order list (Binance spot OCO: a ``LIMIT_MAKER`` above, a ``STOP_LOSS``
below, the base quantity locked once; when one leg fills the other expires). A pair is named by its
stop leg's client id; the list's and the target leg's ids are derived from it (:func:`pair_client_ids`),
so a stored stop is enough to find its whole pair again after a restart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from engine.domain.errors import ExchangeCallException, OrderRejectedException
from engine.domain.models import Fill, MarketLimits, Order, OrderStatus, Side

if TYPE_CHECKING:
    from engine.execution.order_resolution import Holding, Resolution

CLIENT_ORDER_ID_MAX_CHARS = 36
"""Binance's limit for ``newClientOrderId``; its charset is ``[A-Za-z0-9_-]``."""

_ILLEGAL_ID_CHARS = re.compile(r"[^A-Za-z0-9]")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(value: int) -> str:
    if value < 0:
        raise ValueError(f"bar time must be >= 0 ms, got {value}")
    digits = []
    while True:
        value, remainder = divmod(value, 36)
        digits.append(_BASE36[remainder])
        if value == 0:
            return "".join(reversed(digits))


def make_client_order_id(prefix: str, symbol: str, bar_time_ms: int, purpose: str) -> str:
    """Deterministic, Binance-legal client order id of at most 36 characters.

    Args:
        prefix: short tag of this bot/account, e.g. ``"tb"``; letters and digits.
        symbol: market symbol, e.g. ``BTC/USDT`` (separators are dropped).
        bar_time_ms: open time (UTC ms) of the bar whose decision the order carries out.
        purpose: what the order is for, unique per bar and symbol, e.g. ``"entry"``, ``"stop"``,
            ``"trail3"`` (the third trailing replacement), ``"exit"``.

    Returns:
        ``prefix-SYMBOL-time36-purpose`` when it fits, else ``prefix-time36-<hash of all inputs>``;
        the same inputs always give the same id.
    """
    clean_prefix = _ILLEGAL_ID_CHARS.sub("", prefix)[:8]
    clean_symbol = _ILLEGAL_ID_CHARS.sub("", symbol).upper()
    clean_purpose = _ILLEGAL_ID_CHARS.sub("", purpose)
    if not clean_prefix or not clean_symbol or not clean_purpose:
        raise ValueError("prefix, symbol and purpose must each contain a letter or digit")
    when = _base36(bar_time_ms)
    readable = f"{clean_prefix}-{clean_symbol}-{when}-{clean_purpose}"
    if len(readable) <= CLIENT_ORDER_ID_MAX_CHARS:
        return readable
    digest = hashlib.blake2b(f"{prefix}|{symbol}|{bar_time_ms}|{purpose}".encode(), digest_size=8).hexdigest()
    return f"{clean_prefix}-{when}-{digest}"[:CLIENT_ORDER_ID_MAX_CHARS]


def pair_client_ids(stop_client_id: str) -> tuple[str, str]:
    """``(list id, target leg id)`` of the pair whose stop leg is ``stop_client_id``: Binance-legal, <= 36 chars.

    Derived (never stored), so the ids of a pair follow from its stop alone, after a restart too.
    """
    if len(stop_client_id) <= CLIENT_ORDER_ID_MAX_CHARS - 2:
        return f"{stop_client_id}-l", f"{stop_client_id}-t"
    digest = hashlib.blake2b(stop_client_id.encode(), digest_size=12).hexdigest()
    return f"pl-{digest}", f"pt-{digest}"


@dataclass(frozen=True)
class OrderAck:
    """What the venue says about one order right now.

    Attributes:
        order: the order as the venue reports it, under *our* client order id.
        fills: executions known for it (a market order's fills; a fetched filled order's trades).
        recovered: True when the venue already had this client order id, i.e. a resubmit found the
            order a previous, unacknowledged attempt created instead of placing a second one.
    """

    order: Order
    fills: tuple[Fill, ...] = ()
    recovered: bool = False

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def status(self) -> OrderStatus:
        return self.order.status

    @property
    def filled_quantity(self) -> float:
        return self.order.filled_quantity

    @property
    def average_price(self) -> float | None:
        return self.order.average_price

    @property
    def is_open(self) -> bool:
        return not self.order.status.is_terminal


@dataclass(frozen=True)
class PairAck:
    """What the venue says about one stop-and-target pair (a Binance OCO order list), leg by leg.

    Attributes:
        stop: the stop leg, under the pair's own (stop) client id.
        target: the take-profit leg (a maker limit), under its derived client id.
        recovered: the pair was found by looking it up, not from its own reply.
    """

    stop: OrderAck
    target: OrderAck
    recovered: bool = False

    @property
    def client_order_id(self) -> str:
        return self.stop.client_order_id

    @property
    def is_open(self) -> bool:
        """Both legs rest (on Binance one leg filling or being cancelled ends the other)."""
        return self.stop.is_open and self.target.is_open

    @property
    def filled_leg(self) -> OrderAck | None:
        """The leg that sold (the other one expired then), or None while neither has."""
        if self.target.filled_quantity > 0:
            return self.target
        if self.stop.filled_quantity > 0:
            return self.stop
        return None


@dataclass(frozen=True)
class Balance:
    """One asset of the account; amounts in that asset."""

    asset: str
    free: float
    total: float

    @property
    def locked(self) -> float:
        """Held by open orders (e.g. a resting sell stop locks its base quantity)."""
        return self.total - self.free


class TargetCrossedError(OrderRejectedException):
    """The take-profit target is already reached: its maker limit would take (``-2010`` "Order would
    immediately match and take."), so no pair was placed; the position should be sold at market."""


class StopReplaceError(ExchangeCallException):
    """A trailing stop could not be moved: the old stop (or pair) was cancelled, the new one refused.

    Attributes:
        restored: the stop re-placed at the old price, or None if that failed too, in which case
            the position has no exchange-side stop and the caller must protect or close it now.
        restored_target: with a pair, the target leg re-placed beside ``restored``.
        would_trigger: the new level is already crossed by the market (nothing was restored: the
            position should be closed at market).
        target_reached: the pair's target is already reached (nothing was restored: the position
            should be sold at market as a take-profit).
    """

    def __init__(
        self,
        operation: str,
        reason: str,
        restored: OrderAck | None,
        *,
        would_trigger: bool = False,
        restored_target: OrderAck | None = None,
        target_reached: bool = False,
    ) -> None:
        super().__init__(operation, reason)
        self.restored = restored
        self.restored_target = restored_target
        self.would_trigger = would_trigger
        self.target_reached = target_reached

    @property
    def unprotected(self) -> bool:
        return self.restored is None


@runtime_checkable
class Broker(Protocol):
    """Order execution at a venue (paper or exchange). Quantities in base currency, prices in quote.

    Implementations round quantities down to the lot step and prices to the tick size of the
    market, and raise :class:`engine.domain.errors.ExchangeCallException` subclasses on failure.
    """

    async def load_markets(self) -> dict[str, MarketLimits]:
        """Trading rules per symbol (lot step, tick size, minimum quantity and notional)."""
        ...

    async def submit_market_order(self, client_order_id: str, symbol: str, side: Side, quantity: float) -> OrderAck:
        """Sends a market order at most once per proven absence, whatever happens to the network.

        The client id is looked up first (Binance only refuses a client id reused while the first
        order is *open*; a filled market order's id would buy again), and an order already there is
        returned with ``recovered=True``. A filled ack carries its fills with their fees.

        Raises:
            OrderOutcomeUnknownException: sent, and still neither found nor proven absent; keep it
                as unknown and look it up later (:meth:`resolve_order`), never re-send it blind.
            ExchangeUnavailableException: proven never placed (an outage before it reached the venue).
            OrderRejectedException: refused (insufficient balance, filters...).
        """
        ...

    async def place_stop_loss(
        self, client_order_id: str, symbol: str, side: Side, quantity: float, stop_price: float
    ) -> OrderAck:
        """Rests an exchange-side stop that closes ``quantity`` when the price crosses ``stop_price``.

        Sent like :meth:`submit_market_order`; a stop already crossed raises StopWouldTriggerException.
        """
        ...

    async def resolve_order(
        self, client_order_id: str, symbol: str, *, sent_ms: int, before: Holding | None = None
    ) -> Resolution:
        """Settles an order whose outcome is unknown: found, proven absent, or still unknown."""
        ...

    async def holding(self, symbol: str) -> Holding:
        """The market's base asset now (free and total, base units)."""
        ...

    async def replace_stop_loss(
        self,
        old_client_order_id: str,
        new_client_order_id: str,
        symbol: str,
        side: Side,
        quantity: float,
        stop_price: float,
    ) -> OrderAck:
        """Moves a stop: cancel the old one, then place the new one (see CcxtBroker for why).

        Returns the new stop, or the old stop's ack if it had already filled (nothing to move).

        Raises:
            StopReplaceError: the new stop was refused; ``restored`` tells whether the old level
                was put back.
        """
        ...

    def supports_protection_pair(self, symbol: str) -> bool:
        """Whether a stop and a take-profit can rest together as one pair on this market (Binance: OCO)."""
        ...

    async def place_protection(
        self, stop_client_id: str, symbol: str, side: Side, quantity: float, stop_price: float, target_price: float
    ) -> PairAck:
        """Rests a stop at ``stop_price`` and a maker limit at ``target_price`` for ``quantity``, one cancelling
        the other; the quantity is locked once. Sent like :meth:`submit_market_order` (looked up first, an
        unknown outcome resolved through the stop leg, never re-sent blind).

        Raises:
            StopWouldTriggerException: the stop is already crossed.
            TargetCrossedError: the target is already reached.
            OrderOutcomeUnknownException, ExchangeUnavailableException, OrderRejectedException: as for
                :meth:`submit_market_order`.
        """
        ...

    async def replace_protection(
        self,
        old_stop_client_id: str,
        new_stop_client_id: str,
        symbol: str,
        side: Side,
        quantity: float,
        stop_price: float,
        target_price: float,
    ) -> PairAck:
        """Moves a pair's stop: cancel the old pair, then place a new one (same target, new stop).

        Returns the new pair, or the old pair if one of its legs had already filled (nothing to move).

        Raises:
            StopReplaceError: the new pair was refused; ``restored``/``restored_target`` tell whether the
                old pair was put back, ``would_trigger``/``target_reached`` which level the market crossed.
            OrderOutcomeUnknownException: the old pair is cancelled; the new one's outcome is unknown.
        """
        ...

    async def cancel_protection(self, stop_client_id: str, symbol: str) -> PairAck:
        """Cancels a pair (both legs); a pair already done (a leg filled) is returned as it is."""
        ...

    async def fetch_protection(self, stop_client_id: str, symbol: str) -> PairAck | None:
        """Both legs of a pair (with fills), or None if the venue does not know its stop leg."""
        ...

    async def cancel_order(self, client_order_id: str, symbol: str) -> OrderAck:
        """Cancels an open order; an order already filled or cancelled is returned as it is."""
        ...

    async def fetch_order(self, client_order_id: str, symbol: str) -> OrderAck | None:
        """The order by client id (with its fills when any), or None if the venue does not know it."""
        ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderAck]:
        """Every open order, of one symbol or all."""
        ...

    async def fetch_balances(self) -> dict[str, Balance]:
        """Non-zero balances by asset."""
        ...

    async def close(self) -> None:
        """Releases connections; the broker is unusable afterwards."""
        ...
