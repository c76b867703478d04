"""Provides the fake Binance spot account's OCO order lists: placement rules, lookup, cancel and expiry.

What Binance does (``POST /api/v3/orderList/oco``): one list of two legs on one side, a ``LIMIT_MAKER``
and a ``STOP_LOSS``/``STOP_LOSS_LIMIT`` (for a SELL the maker is *above*, the stop *below*), for one
quantity locked once; the prices must satisfy ``maker > last > stop`` (SELL), a maker that would trade
at once is refused with ``-2010`` "Order would immediately match and take.", other violations with
"The relationship of the prices for the orders is not correct."; a list client id is refused as a
duplicate only while its list is open, each leg's client id only while an order with it is open. When
one leg fills (or a stop leg triggers) the other expires; cancelling either leg, or the list, cancels
both. Each leg is an ordinary order too: ``GET /api/v3/order`` finds it by its client id.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import TYPE_CHECKING

from tests.fakes.binance_shapes import (
    DUPLICATE_ORDER,
    OCO_NOT_SUPPORTED,
    OCO_TYPE_REJECTED,
    ORDER_LIST_DOES_NOT_EXIST,
    PRICE_RELATIONSHIP,
    STOP_TYPES,
    UNKNOWN_ORDER_CANCEL,
    WOULD_MATCH,
    ExchangeRejection,
    FakeOrder,
    FakeOrderList,
)

if TYPE_CHECKING:
    from tests.fakes.binance_state import FakeSpotExchange


def _leg(params: dict[str, str], position: str) -> dict[str, str]:
    """The ``above``/``below`` parameters of one leg, without their prefix (``Type``, ``Price``...)."""
    return {key[len(position):]: value for key, value in params.items() if key.startswith(position)}


def _missing(name: str) -> ExchangeRejection:
    return ExchangeRejection(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


class OrderLists:
    """The OCO lists of one :class:`~tests.fakes.binance_state.FakeSpotExchange`, by ``orderListId``."""

    def __init__(self, exchange: FakeSpotExchange) -> None:
        self.exchange = exchange
        self.lists: dict[int, FakeOrderList] = {}
        self._ids = itertools.count(1)

    def new_oco(self, params: dict[str, str]) -> FakeOrderList:
        """Validates and books one OCO the way ``POST /api/v3/orderList/oco`` does."""
        ex = self.exchange
        market = ex.market(params.get("symbol", ""))
        if not market.oco_allowed:
            raise ExchangeRejection(*OCO_NOT_SUPPORTED)
        side = params.get("side", "")
        if side not in ("BUY", "SELL"):
            raise ExchangeRejection(-1117, "Invalid side.")
        above, below = _leg(params, "above"), _leg(params, "below")
        maker, guard = (above, below) if side == "SELL" else (below, above)
        maker_name, guard_name = ("above", "below") if side == "SELL" else ("below", "above")
        if maker.get("Type") != "LIMIT_MAKER" or guard.get("Type") not in STOP_TYPES:
            raise ExchangeRejection(*OCO_TYPE_REJECTED)
        if maker["Type"] not in market.order_types or guard["Type"] not in market.order_types:
            raise ExchangeRejection(-1116, "Invalid orderType.")
        list_client_id = params.get("listClientOrderId") or f"fakelist{next(ex._ids)}"
        if any(lst.list_client_id == list_client_id and lst.symbol == market.symbol and lst.is_open
               for lst in self.lists.values()):
            raise ExchangeRejection(*DUPLICATE_ORDER)
        maker_id = maker.get("ClientOrderId") or f"fake{next(ex._ids)}"
        guard_id = guard.get("ClientOrderId") or f"fake{next(ex._ids)}"
        if maker_id == guard_id:
            raise ExchangeRejection(*DUPLICATE_ORDER)
        for client_id in (maker_id, guard_id):
            ex._check_duplicate(market.symbol, client_id)
        qty = Decimal(params.get("quantity", "0"))
        target = Decimal(maker.get("Price") or "0")
        stop = Decimal(guard.get("StopPrice") or "0")
        limit = Decimal(guard.get("Price") or "0")
        if target <= 0:
            raise _missing(f"{maker_name}Price")
        if stop <= 0:
            raise _missing(f"{guard_name}StopPrice")
        if guard["Type"] == "STOP_LOSS_LIMIT" and (limit <= 0 or not guard.get("TimeInForce")):
            raise _missing(f"{guard_name}Price" if limit <= 0 else f"{guard_name}TimeInForce")
        ex._check_filters(market, "LIMIT_MAKER", qty, target, Decimal(0))
        ex._check_filters(market, guard["Type"], qty, limit, stop)
        sign = 1 if side == "SELL" else -1
        if sign * (target - stop) <= 0:
            raise ExchangeRejection(*PRICE_RELATIONSHIP)
        last = ex.prices.get(market.symbol)
        if last is not None and sign * (last - target) >= 0:
            raise ExchangeRejection(*WOULD_MATCH)
        if last is not None and sign * (last - stop) <= 0:
            raise ExchangeRejection(*PRICE_RELATIONSHIP)
        asset, amount = (market.base, qty) if side == "SELL" else (market.quote, qty * max(target, stop, limit))
        ex._require_free(asset, amount)
        ex.balances[asset][0] -= amount
        ex.balances[asset][1] += amount
        now, list_id = ex.clock(), next(self._ids)
        guard_leg = FakeOrder(next(ex._ids), guard_id, market.symbol, side, guard["Type"], qty, limit, stop, now,
                              order_list_id=list_id)
        maker_leg = FakeOrder(next(ex._ids), maker_id, market.symbol, side, "LIMIT_MAKER", qty, target, Decimal(0),
                              now, order_list_id=list_id)
        legs = [guard_leg, maker_leg] if side == "SELL" else [maker_leg, guard_leg]  # below first
        ex.orders.extend(legs)
        order_list = FakeOrderList(list_id, list_client_id, market.symbol, legs, now, amount, asset)
        self.lists[list_id] = order_list
        return order_list

    def find(self, order_list_id: str | None, list_client_id: str | None) -> FakeOrderList:
        """``GET /api/v3/orderList``: by id, else the latest list with that client id."""
        found = None
        for order_list in self.lists.values():
            if (order_list_id is not None and str(order_list.order_list_id) == order_list_id) or (
                order_list_id is None and list_client_id is not None and order_list.list_client_id == list_client_id
            ):
                found = order_list
        if found is None:
            raise ExchangeRejection(*ORDER_LIST_DOES_NOT_EXIST)
        return found

    def cancel(self, symbol: str, order_list_id: str | None, list_client_id: str | None) -> FakeOrderList:
        """``DELETE /api/v3/orderList``: only an open list of the symbol can be cancelled."""
        try:
            order_list = self.find(order_list_id, list_client_id)
        except ExchangeRejection:
            raise ExchangeRejection(*UNKNOWN_ORDER_CANCEL) from None
        if order_list.symbol != symbol or not order_list.is_open:
            raise ExchangeRejection(*UNKNOWN_ORDER_CANCEL)
        self.end(order_list, "CANCELED")
        return order_list

    def open_lists(self) -> list[FakeOrderList]:
        return [order_list for order_list in self.lists.values() if order_list.is_open]

    def of(self, order: FakeOrder) -> FakeOrderList:
        return self.lists[order.order_list_id]

    def end(self, order_list: FakeOrderList, status: str) -> None:
        """Release the list's lock and give every open leg ``status``."""
        self.release(order_list)
        for leg in order_list.legs:
            if leg.is_open:
                leg.status = status
                leg.update_ms = self.exchange.clock()

    def activated(self, order: FakeOrder) -> None:
        """One leg filled or its stop triggered: the other legs expire (the lock stays with a working stop)."""
        for leg in self.of(order).legs:
            if leg is not order and leg.is_open:
                leg.status = "EXPIRED"
                leg.update_ms = self.exchange.clock()

    def release(self, order_list: FakeOrderList) -> None:
        if order_list.locked:
            balance = self.exchange.balances[order_list.lock_asset]
            balance[0] += order_list.locked
            balance[1] -= order_list.locked
            order_list.locked = Decimal(0)
