"""Provides the in-memory spot exchange behind the fake Binance server: markets, balances, orders, fills.

Shapes live in :mod:`tests.fakes.binance_shapes`. Money is kept in ``Decimal`` so the fake is exact
and a test can compare balances to the cent. The rules follow Binance spot closely enough for ccxt
and our broker: filters (LOT_SIZE, PRICE_FILTER, NOTIONAL) are enforced, a resting sell stop locks
its base quantity (so two full-size stops on one position cannot coexist), a stop whose price is
already crossed is refused, a client order id is refused as a duplicate only while its order is open
(as on Binance: a filled or cancelled order's id books a new order), and market orders fill at the
price the test set with the test's taker fee charged in the asset received (base on a BUY, quote on
a SELL). OCO order lists (:mod:`tests.fakes.binance_lists`) rest a ``LIMIT_MAKER`` beside a stop: the
maker leg fills at its limit price with the maker fee once the price reaches it, and the other leg
expires.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any

from engine.domain.timeframes import parse_timeframe
from tests.fakes.binance_lists import OrderLists
from tests.fakes.binance_shapes import (
    DUPLICATE_ORDER,
    EIGHT_PLACES,
    INSUFFICIENT_BALANCE,
    ORDER_DOES_NOT_EXIST,
    STOP_TYPES,
    UNKNOWN_ORDER_CANCEL,
    WOULD_TRIGGER,
    ExchangeRejection,
    FakeMarket,
    FakeOrder,
    FakeTrade,
)


def _multiple_of(value: Decimal, step: Decimal) -> bool:
    return step == 0 or value % step == 0


class FakeSpotExchange:
    """Markets, balances, orders and candles of one fake Binance spot account.

    Args:
        clock: current time in UTC ms (used for order times and which candles exist yet).
        fee_rate: taker fee as a ratio in [0, 1], charged in the asset received.
        maker_fee_rate: the fee of a resting maker order that fills (an OCO's ``LIMIT_MAKER`` leg);
            None = ``fee_rate``.
        reject_duplicates_of_open_only: True (the default, Binance's rule) refuses a client order
            id only while an order with it is open (NEW / PARTIALLY_FILLED), so re-sending a filled
            order's id books a second order. False refuses any reuse: a strict mode for tests
            that want every resend refused.
    """

    def __init__(
        self,
        clock: Callable[[], int],
        *,
        fee_rate: Decimal | str = "0.001",
        maker_fee_rate: Decimal | str | None = None,
        reject_duplicates_of_open_only: bool = True,
    ) -> None:
        self.clock = clock
        self.fee_rate = Decimal(fee_rate)
        self.maker_fee_rate = self.fee_rate if maker_fee_rate is None else Decimal(maker_fee_rate)
        self.reject_duplicates_of_open_only = reject_duplicates_of_open_only
        self.markets: dict[str, FakeMarket] = {}
        self.prices: dict[str, Decimal] = {}
        self.balances: dict[str, list[Decimal]] = {}  # asset -> [free, locked]
        self.orders: list[FakeOrder] = []
        self.trades: list[FakeTrade] = []
        self.candles: dict[tuple[str, str], list[tuple[int, str, str, str, str, str]]] = {}
        self.next_fill_ratio: Decimal | None = None
        self._ids = itertools.count(1000)
        self._trade_ids = itertools.count(5000)
        self._cancel_ids = itertools.count(1)
        self.lists = OrderLists(self)

    # --- setup ----------------------------------------------------------------------------------
    def add_market(self, market: FakeMarket, price: Decimal | str | None = None) -> None:
        self.markets[market.symbol] = market
        if price is not None:
            self.prices[market.symbol] = Decimal(str(price))

    def set_balance(self, asset: str, free: Decimal | str | float) -> None:
        self.balances[asset] = [Decimal(str(free)), Decimal(0)]

    def free(self, asset: str) -> Decimal:
        return self.balances.get(asset, [Decimal(0), Decimal(0)])[0]

    def locked(self, asset: str) -> Decimal:
        return self.balances.get(asset, [Decimal(0), Decimal(0)])[1]

    def load_candles(self, symbol: str, interval: str, rows: Iterable[Sequence[Any]]) -> None:
        """Rows ``(open_time_ms, open, high, low, close, volume)``; only those opened by now are served."""
        stored = [(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5])) for r in rows]
        self.candles[(symbol, interval)] = sorted(stored)

    # --- queries ---------------------------------------------------------------------------------
    def market(self, symbol: str) -> FakeMarket:
        if symbol not in self.markets:
            raise ExchangeRejection(-1121, "Invalid symbol.")
        return self.markets[symbol]

    def find_order(self, symbol: str, order_id: str | None, client_id: str | None) -> FakeOrder:
        for order in self.orders:
            if order.symbol != symbol:
                continue
            if (order_id is not None and str(order.order_id) == order_id) or (
                order_id is None and client_id is not None and order.client_order_id == client_id
            ):
                return order
        raise ExchangeRejection(*ORDER_DOES_NOT_EXIST)

    def open_orders(self, symbol: str | None) -> list[FakeOrder]:
        return [o for o in self.orders if o.is_open and (symbol is None or o.symbol == symbol)]

    def my_trades(self, symbol: str, order_id: str | None, start_ms: int | None, limit: int) -> list[FakeTrade]:
        chosen = [
            t
            for t in self.trades
            if t.symbol == symbol
            and (order_id is None or str(t.order_id) == order_id)
            and (start_ms is None or t.time_ms >= start_ms)
        ]
        return chosen[:limit]

    def klines(
        self, symbol: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[list[Any]]:
        self.market(symbol)
        length = parse_timeframe(interval)
        now = self.clock()
        rows = [r for r in self.candles.get((symbol, interval), []) if r[0] <= now]
        rows = [r for r in rows if (start_ms is None or r[0] >= start_ms) and (end_ms is None or r[0] <= end_ms)]
        rows = rows[:limit] if start_ms is not None else rows[-limit:]
        return [[r[0], r[1], r[2], r[3], r[4], r[5], r[0] + length - 1, "0", 1, "0", "0", "0"] for r in rows]

    # --- trading ---------------------------------------------------------------------------------
    def new_order(self, params: dict[str, str]) -> FakeOrder:
        """Validates and books one order the way POST /api/v3/order does."""
        market = self.market(params.get("symbol", ""))
        side, kind = params.get("side", ""), params.get("type", "")
        if kind not in market.order_types or side not in ("BUY", "SELL"):
            raise ExchangeRejection(-1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"fake{next(self._ids)}"
        self._check_duplicate(market.symbol, client_id)
        qty = Decimal(params.get("quantity", "0"))
        price = Decimal(params.get("price", "0"))
        stop = Decimal(params.get("stopPrice", "0"))
        self._check_filters(market, kind, qty, price, stop)
        now = self.clock()
        order = FakeOrder(next(self._ids), client_id, market.symbol, side, kind, qty, price, stop, now)
        if kind == "MARKET":
            self._fill_market(market, order)
        elif kind in STOP_TYPES:
            self._rest_stop(market, order)
        else:
            raise ExchangeRejection(-1116, "Invalid orderType.")  # limits are not needed by the bot
        self.orders.append(order)
        return order

    def cancel(self, symbol: str, order_id: str | None, client_id: str | None) -> tuple[FakeOrder, str]:
        try:
            order = self.find_order(symbol, order_id, client_id)
        except ExchangeRejection:
            raise ExchangeRejection(*UNKNOWN_ORDER_CANCEL) from None
        if not order.is_open:
            raise ExchangeRejection(*UNKNOWN_ORDER_CANCEL)
        if order.order_list_id >= 0:  # cancelling one leg cancels the whole list
            self.lists.end(self.lists.of(order), "CANCELED")
        else:
            self._unlock(order)
            order.status = "CANCELED"
            order.update_ms = self.clock()
        return order, self.new_cancel_id()

    def new_cancel_id(self) -> str:
        return f"cancel{next(self._cancel_ids)}"

    def set_price(self, symbol: str, price: Decimal | str | float) -> list[FakeOrder]:
        """Moves the market; fills every resting stop the new price crosses and every maker limit it reaches."""
        market = self.market(symbol)
        last = self.prices[symbol] = Decimal(str(price))
        filled: list[FakeOrder] = []
        for order in self.open_orders(symbol):
            if not order.is_open:
                continue  # expired just now by its list's other leg
            sells = order.side == "SELL"
            if order.type == "LIMIT_MAKER":
                if not (last >= order.price if sells else last <= order.price):
                    continue
                fill_price, maker = order.price, True
            elif order.type in STOP_TYPES:
                if not order.triggered:
                    order.triggered = last <= order.stop_price if sells else last >= order.stop_price
                    if order.triggered and order.order_list_id >= 0:
                        self.lists.activated(order)
                if not order.triggered:
                    continue
                if order.type == "STOP_LOSS":
                    fill_price = last
                elif (sells and last >= order.price) or (not sells and last <= order.price):
                    fill_price = order.price
                else:
                    continue  # triggered stop-limit rests as a limit order until the price comes back
                maker = False
            else:
                continue
            self._unlock(order)
            self._execute(market, order, order.orig_qty, fill_price, maker=maker)
            order.status = "FILLED"
            if order.order_list_id >= 0:
                self.lists.activated(order)
            filled.append(order)
        return filled

    # --- internals -------------------------------------------------------------------------------
    def _check_duplicate(self, symbol: str, client_id: str) -> None:
        for order in self.orders:
            if order.symbol == symbol and order.client_order_id == client_id:
                if order.is_open or not self.reject_duplicates_of_open_only:
                    raise ExchangeRejection(*DUPLICATE_ORDER)

    def _check_filters(self, market: FakeMarket, kind: str, qty: Decimal, price: Decimal, stop: Decimal) -> None:
        tick, step = Decimal(market.tick_size), Decimal(market.step_size)
        if qty < Decimal(market.min_qty) or not _multiple_of(qty, step):
            raise ExchangeRejection(-1013, "Filter failure: LOT_SIZE")
        for value in (price, stop):
            if value != 0 and not _multiple_of(value, tick):
                raise ExchangeRejection(-1013, "Filter failure: PRICE_FILTER")
        if kind in STOP_TYPES and stop <= 0:
            raise ExchangeRejection(
                -1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed."
            )
        reference = price if price > 0 else (stop if stop > 0 else self.prices.get(market.symbol, Decimal(0)))
        if qty * reference < Decimal(market.min_notional):
            raise ExchangeRejection(-1013, "Filter failure: NOTIONAL")

    def _fill_market(self, market: FakeMarket, order: FakeOrder) -> None:
        if market.symbol not in self.prices:
            raise ExchangeRejection(-1013, "Market is closed.")
        last = self.prices[market.symbol]
        qty = order.orig_qty
        if self.next_fill_ratio is not None:
            step = Decimal(market.step_size)
            qty = ((qty * self.next_fill_ratio) / step).to_integral_value(ROUND_DOWN) * step
            self.next_fill_ratio = None
        self._require_free(market.quote if order.side == "BUY" else market.base, self._cost(order, last))
        self._execute(market, order, qty, last)
        # Binance expires the unfilled rest of a market order that ran out of liquidity.
        order.status = "FILLED" if qty == order.orig_qty else "EXPIRED"

    def _cost(self, order: FakeOrder, price: Decimal) -> Decimal:
        return order.orig_qty * price if order.side == "BUY" else order.orig_qty

    def _rest_stop(self, market: FakeMarket, order: FakeOrder) -> None:
        last = self.prices.get(market.symbol)
        if last is not None and (
            (order.side == "SELL" and last <= order.stop_price) or (order.side == "BUY" and last >= order.stop_price)
        ):
            raise ExchangeRejection(*WOULD_TRIGGER)
        asset = market.base if order.side == "SELL" else market.quote
        amount = order.orig_qty if order.side == "SELL" else order.orig_qty * max(order.stop_price, order.price)
        self._require_free(asset, amount)
        self.balances[asset][0] -= amount
        self.balances[asset][1] += amount
        order.locked = amount

    def _unlock(self, order: FakeOrder) -> None:
        if order.order_list_id >= 0:
            self.lists.release(self.lists.of(order))
        elif order.locked:
            market = self.markets[order.symbol]
            asset = market.base if order.side == "SELL" else market.quote
            self.balances[asset][0] += order.locked
            self.balances[asset][1] -= order.locked
            order.locked = Decimal(0)

    def _require_free(self, asset: str, amount: Decimal) -> None:
        if self.free(asset) < amount:
            raise ExchangeRejection(*INSUFFICIENT_BALANCE)

    def _execute(
        self, market: FakeMarket, order: FakeOrder, qty: Decimal, price: Decimal, *, maker: bool = False
    ) -> None:
        if qty <= 0:
            return
        rate = self.maker_fee_rate if maker else self.fee_rate
        for asset in (market.base, market.quote):
            self.balances.setdefault(asset, [Decimal(0), Decimal(0)])
        quote_amount = qty * price
        if order.side == "BUY":
            fee, fee_asset = (qty * rate).quantize(EIGHT_PLACES), market.base
            self.balances[market.quote][0] -= quote_amount
            self.balances[market.base][0] += qty - fee
        else:
            fee, fee_asset = (quote_amount * rate).quantize(EIGHT_PLACES), market.quote
            self.balances[market.base][0] -= qty
            self.balances[market.quote][0] += quote_amount - fee
        now = self.clock()
        trade = FakeTrade(
            next(self._trade_ids), order.order_id, market.symbol, order.side, price, qty, fee, fee_asset, now, maker
        )
        order.fills.append(trade)
        order.executed_qty += qty
        order.cum_quote += quote_amount
        order.update_ms = now
        self.trades.append(trade)
