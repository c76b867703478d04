"""Provides a fake Binance spot REST server on 127.0.0.1 for the real ccxt client, with fault injection.

Start it with ``async with FakeBinance() as fake:`` and point a client at ``fake.base_url``. It answers
what ccxt's binance class asks for (exchangeInfo, time, ping, klines, ticker, account, order
create/query/cancel, openOrders, myTrades, and the OCO order lists: ``POST /api/v3/orderList/oco``,
``DELETE``/``GET /api/v3/orderList``, ``GET /api/v3/openOrderList``) in Binance's JSON shapes, keeps its own
order book in a :class:`~tests.fakes.binance_state.FakeSpotExchange`, records every request, and can be told to
misbehave on the next call(s) to one endpoint with :meth:`FakeBinance.inject` (the catalogue is in
:mod:`tests.fakes.binance_faults`). By default it refuses a reused client order id only while that
order is open, as Binance does; :meth:`FakeBinance.duplicate_client_ids` tells a test whether the
client under test made the exchange book one id twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.binance_faults import (
    REPLIES_AFTER_HANDLING,
    Fault,
    FaultKind,
    FaultQueue,
    LateBookings,
    error_response,
    refusal_before_handling,
    reply_after_handling,
    unknown_send_status,
)
from tests.fakes.binance_shapes import (
    ExchangeRejection,
    FakeMarket,
    FakeOrder,
    FakeOrderList,
    account_json,
    exchange_info_json,
    fmt,
)
from tests.fakes.binance_state import FakeSpotExchange

__all__ = ["FakeBinance", "Fault", "FaultKind", "LoggedRequest"]

SIGNED_PATHS = frozenset({
    "/api/v3/account", "/api/v3/order", "/api/v3/openOrders", "/api/v3/myTrades", "/api/v3/orderList/oco",
    "/api/v3/orderList", "/api/v3/openOrderList",
})
ORDER_SENDS = (("POST", "/api/v3/order"), ("POST", "/api/v3/orderList/oco"))


@dataclass
class LoggedRequest:
    """One request as the server received it, with the status it answered and the fault it met."""

    method: str
    path: str
    params: dict[str, str]
    has_api_key: bool
    time_ms: int
    status: int = 0
    fault: FaultKind | None = None


Handler = Callable[[dict[str, str]], Awaitable[Any]]


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _free_loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class FakeBinance:
    """The loopback server. Keys are fake; when ``api_secret`` is set, HMAC signatures are checked.

    Args:
        clock: current time in UTC ms (serverTime, order times, which candles exist).
        fee_rate: taker fee ratio in [0, 1].
        maker_fee_rate: fee ratio of a resting maker order that fills (an OCO's limit leg); None = ``fee_rate``.
        api_key: value required in the ``X-MBX-APIKEY`` header of signed endpoints.
        api_secret: when not None, the HMAC-SHA256 signature of signed requests must match.
        reject_duplicates_of_open_only: True (Binance's rule) refuses a ``newClientOrderId`` only
            while an order with that id is open; False refuses any reuse (strict, opt-in).
    """

    clock: Callable[[], int] = _wall_clock_ms
    fee_rate: str = "0.001"
    maker_fee_rate: str | None = None
    api_key: str = "fake-api-key"
    api_secret: str | None = "fake-api-secret"
    reject_duplicates_of_open_only: bool = True
    exchange: FakeSpotExchange = field(init=False)
    log: list[LoggedRequest] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.exchange = FakeSpotExchange(
            self.clock, fee_rate=self.fee_rate, maker_fee_rate=self.maker_fee_rate,
            reject_duplicates_of_open_only=self.reject_duplicates_of_open_only,
        )
        self._faults = FaultQueue()
        self._late_bookings = LateBookings(self._book_late)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "/api/v3/ping"): self._ping,
            ("GET", "/api/v3/time"): self._time,
            ("GET", "/api/v3/exchangeInfo"): self._exchange_info,
            ("GET", "/api/v3/klines"): self._klines,
            ("GET", "/api/v3/ticker/price"): self._ticker_price,
            ("GET", "/api/v3/ticker/bookTicker"): self._book_ticker,
            ("GET", "/api/v3/account"): self._account,
            ("POST", "/api/v3/order"): self._new_order,
            ("GET", "/api/v3/order"): self._query_order,
            ("DELETE", "/api/v3/order"): self._cancel_order,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
            ("POST", "/api/v3/orderList/oco"): self._new_oco,
            ("DELETE", "/api/v3/orderList"): self._cancel_order_list,
            ("GET", "/api/v3/orderList"): self._query_order_list,
            ("GET", "/api/v3/openOrderList"): self._open_order_lists,
        }

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = _free_loopback_socket()
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        self._closing.set()  # releases hung handlers at once
        self._late_bookings.cancel_all()  # an order must not appear after the test is over
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBinance:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # --- controls --------------------------------------------------------------------------------
    def add_market(self, base: str, quote: str, *, price: str | float | None = None, **filters: Any) -> FakeMarket:
        market = FakeMarket(base, quote, **filters)
        self.exchange.add_market(market, None if price is None else Decimal(str(price)))
        return market

    def set_balance(self, asset: str, free: str | float) -> None:
        self.exchange.set_balance(asset, free)

    def set_price(self, symbol: str, price: str | float) -> None:
        """Moves the last price of ``symbol`` (``BTC/USDT`` or ``BTCUSDT``); crossed stops fill."""
        self.exchange.set_price(symbol.replace("/", ""), Decimal(str(price)))

    def inject(
        self, method: str, path: str, fault: Fault | FaultKind, *, times: int = 1, symbol: str | None = None
    ) -> None:
        """Makes the next ``times`` requests to ``method path`` misbehave as ``fault`` says.

        With ``symbol`` (``BTC/USDT`` or ``BTCUSDT``) only requests for that symbol are affected.
        ``LATE_VISIBILITY`` is refused (ValueError) on endpoints other than POST /api/v3/order and
        /api/v3/orderList/oco.
        """
        chosen = fault if isinstance(fault, Fault) else Fault(fault)
        self._faults.add(method.upper(), path, chosen, times, _market_id(symbol))

    def clear_faults(self) -> None:
        """Forgets every injected fault not yet used up: the exchange behaves from now on."""
        self._faults.clear()

    # --- what happened ---------------------------------------------------------------------------
    def requests(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        return [r for r in self.log if (method is None or r.method == method) and (path is None or r.path == path)]

    def order_posts(self, symbol: str | None = None) -> list[LoggedRequest]:
        """Every POST /api/v3/order and /api/v3/orderList/oco received (refused and faulted ones too): the
        orders *sent*, an OCO pair counting as one send."""
        market_id = _market_id(symbol)
        posts = [r for r in self.log if (r.method, r.path) in ORDER_SENDS]
        return [r for r in posts if market_id is None or r.params.get("symbol") == market_id]

    def oco_posts(self, symbol: str | None = None) -> list[LoggedRequest]:
        """Every POST /api/v3/orderList/oco received."""
        return [r for r in self.order_posts(symbol) if r.path == "/api/v3/orderList/oco"]

    def open_order_lists(self, symbol: str | None = None) -> list[FakeOrderList]:
        """The OCO lists still working, in booking order."""
        market_id = _market_id(symbol)
        return [o for o in self.exchange.lists.open_lists() if market_id is None or o.symbol == market_id]

    def accepted_orders(self, symbol: str | None = None) -> list[FakeOrder]:
        """Every order the exchange booked, in booking order, whatever the client was told."""
        market_id = _market_id(symbol)
        return [o for o in self.exchange.orders if market_id is None or o.symbol == market_id]

    def duplicate_client_ids(self, symbol: str | None = None) -> list[str]:
        """Client order ids booked more than once on one symbol (first booking first); empty when healthy."""
        counts = Counter((o.symbol, o.client_order_id) for o in self.accepted_orders(symbol))
        return [client_id for (_, client_id), count in counts.items() if count > 1]

    @property
    def pending_bookings(self) -> int:
        """``LATE_VISIBILITY`` orders accepted but not booked yet."""
        return len(self._late_bookings)

    @property
    def dropped_bookings(self) -> list[tuple[dict[str, str], ExchangeRejection]]:
        """``LATE_VISIBILITY`` orders refused when their booking came due: (request parameters, refusal)."""
        return list(self._late_bookings.dropped)

    # --- dispatch --------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        raw_signed = request.query_string
        if request.method == "POST":
            raw_signed = await request.text()
            params.update(dict(parse_qsl(raw_signed, keep_blank_values=True)))
        entry = LoggedRequest(request.method, request.path, params, "X-MBX-APIKEY" in request.headers, self.clock())
        self.log.append(entry)
        response = await self._respond(request, entry, params, raw_signed)
        entry.status = response.status
        return response

    async def _respond(
        self, request: web.Request, entry: LoggedRequest, params: dict[str, str], raw_signed: str
    ) -> web.StreamResponse:
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return web.Response(status=404, text="<html><body>404 Not Found</body></html>", content_type="text/html")
        if request.path in SIGNED_PATHS:
            refusal = self._check_auth(request, raw_signed)
            if refusal is not None:
                return refusal
        fault = self._faults.take(request.method, request.path, params)
        entry.fault = fault.kind if fault else None
        if fault is not None:
            early = await self._before_handling(fault, params)
            if early is not None:
                return early
        try:
            body = await handler(params)
        except ExchangeRejection as rejection:
            # A refused request is answered as refused even under an after-handling fault: nothing was
            # booked, so there is nothing to hide from the client.
            return error_response(rejection.http_status, rejection.code, rejection.msg)
        if fault is not None and fault.kind is FaultKind.TIMEOUT_AFTER_PROCESSING:
            await self._hang(fault)
            return web.Response(status=504, text="gateway timeout")
        if fault is not None and fault.kind in REPLIES_AFTER_HANDLING:
            return reply_after_handling(fault)
        return web.json_response(body)

    def _check_auth(self, request: web.Request, raw_signed: str) -> web.Response | None:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            return error_response(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if self.api_secret is None:
            return None
        payload, sep, signature = raw_signed.partition("&signature=")
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not sep or not hmac.compare_digest(signature, expected):
            return error_response(400, -1022, "Signature for this request is not valid.")
        return None

    async def _before_handling(self, fault: Fault, params: dict[str, str]) -> web.StreamResponse | None:
        """The reply when ``fault`` pre-empts the handler; None lets the request be handled."""
        if fault.kind is FaultKind.TIMEOUT:
            await self._hang(fault)
            return web.Response(status=504, text="gateway timeout")
        if fault.kind is FaultKind.LATE_VISIBILITY:
            self._late_bookings.schedule(params, fault.visible_after_s)
            return unknown_send_status()
        if fault.kind is FaultKind.PARTIAL_FILL:
            self.exchange.next_fill_ratio = Decimal(fault.fill_ratio)
            return None
        return refusal_before_handling(fault)

    async def _hang(self, fault: Fault) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=fault.hang_s)
        except TimeoutError:
            pass

    # --- endpoints -------------------------------------------------------------------------------
    def _book_late(self, params: dict[str, str]) -> object:
        """A ``LATE_VISIBILITY`` booking: an OCO list (its parameters name an above leg) or one order."""
        return self.exchange.lists.new_oco(params) if "aboveType" in params else self.exchange.new_order(params)

    async def _ping(self, params: dict[str, str]) -> Any:
        return {}

    async def _time(self, params: dict[str, str]) -> Any:
        return {"serverTime": self.clock()}

    async def _exchange_info(self, params: dict[str, str]) -> Any:
        return exchange_info_json(self.exchange.markets.values(), self.clock())

    async def _klines(self, params: dict[str, str]) -> Any:
        start, end = params.get("startTime"), params.get("endTime")
        return self.exchange.klines(params.get("symbol", ""), params.get("interval", ""),
                                    None if start is None else int(start), None if end is None else int(end),
                                    min(int(params.get("limit", "500")), 1000))

    def _priced_symbols(self, params: dict[str, str]) -> list[str]:
        symbol = params.get("symbol")
        if symbol is None:
            return sorted(self.exchange.prices)
        if symbol not in self.exchange.prices:
            raise ExchangeRejection(-1121, "Invalid symbol.")
        return [symbol]

    async def _ticker_price(self, params: dict[str, str]) -> Any:
        rows = [{"symbol": s, "price": fmt(self.exchange.prices[s])} for s in self._priced_symbols(params)]
        return rows[0] if "symbol" in params else rows

    async def _book_ticker(self, params: dict[str, str]) -> Any:
        rows = []
        for symbol in self._priced_symbols(params):
            price = fmt(self.exchange.prices[symbol])
            rows.append({"symbol": symbol, "bidPrice": price, "bidQty": "1", "askPrice": price, "askQty": "1"})
        return rows[0] if "symbol" in params else rows

    async def _account(self, params: dict[str, str]) -> Any:
        return account_json(self.exchange.balances, self.clock())

    async def _new_order(self, params: dict[str, str]) -> Any:
        return self.exchange.new_order(params).full_json()

    def _lookup_keys(self, params: dict[str, str]) -> tuple[str, str | None, str | None]:
        order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise ExchangeRejection(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        return params.get("symbol", ""), order_id, client_id

    async def _query_order(self, params: dict[str, str]) -> Any:
        return self.exchange.find_order(*self._lookup_keys(params)).query_json()

    async def _cancel_order(self, params: dict[str, str]) -> Any:
        order, cancel_id = self.exchange.cancel(*self._lookup_keys(params))
        return order.cancel_json(params.get("newClientOrderId", cancel_id))

    async def _new_oco(self, params: dict[str, str]) -> Any:
        return self.exchange.lists.new_oco(params).placed_json(params.get("newOrderRespType", "RESULT"))

    def _list_keys(self, params: dict[str, str], client_key: str) -> tuple[str | None, str | None]:
        list_id, client_id = params.get("orderListId"), params.get(client_key)
        if list_id is None and client_id is None:
            raise ExchangeRejection(
                -1102, f"Param '{client_key}' or 'orderListId' must be sent, but both were empty/null!"
            )
        return list_id, client_id

    async def _cancel_order_list(self, params: dict[str, str]) -> Any:
        order_list = self.exchange.lists.cancel(params.get("symbol", ""), *self._list_keys(params, "listClientOrderId"))
        return order_list.cancel_json(params.get("newClientOrderId") or self.exchange.new_cancel_id())

    async def _query_order_list(self, params: dict[str, str]) -> Any:
        return self.exchange.lists.find(*self._list_keys(params, "origClientOrderId")).list_json()

    async def _open_order_lists(self, params: dict[str, str]) -> Any:
        return [order_list.list_json() for order_list in self.exchange.lists.open_lists()]

    async def _open_orders(self, params: dict[str, str]) -> Any:
        return [order.query_json() for order in self.exchange.open_orders(params.get("symbol"))]

    async def _my_trades(self, params: dict[str, str]) -> Any:
        start = params.get("startTime")
        trades = self.exchange.my_trades(params.get("symbol", ""), params.get("orderId"),
                                         None if start is None else int(start),
                                         min(int(params.get("limit", "500")), 1000))
        return [trade.my_trade_json() for trade in trades]


def _market_id(symbol: str | None) -> str | None:
    """``BTC/USDT`` or ``BTCUSDT`` as Binance spells it."""
    return None if symbol is None else symbol.replace("/", "")
