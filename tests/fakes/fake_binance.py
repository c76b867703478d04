"""Provides a fake Binance spot REST server on 127.0.0.1 for the real ccxt client, with fault injection.

Start it with ``async with FakeBinance() as fake:`` and point a client at ``fake.base_url``. It answers
what ccxt's binance class asks for (exchangeInfo, time, ping, klines, ticker, account, order
create/query/cancel, openOrders, myTrades) in Binance's JSON shapes, keeps its own order book in a
:class:`~tests.fakes.binance_state.FakeSpotExchange`, records every request, and can be told to
misbehave on the next call(s) to one endpoint with :meth:`FakeBinance.inject`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import json
import socket
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.binance_shapes import INSUFFICIENT_BALANCE, ExchangeRejection, FakeMarket, fmt
from tests.fakes.binance_state import FakeSpotExchange

SIGNED_PATHS = frozenset({"/api/v3/account", "/api/v3/order", "/api/v3/openOrders", "/api/v3/myTrades"})


class FaultKind(enum.StrEnum):
    TIMEOUT = "timeout"  # hang before handling: the request has no effect
    TIMEOUT_AFTER_PROCESSING = "timeout_after_processing"  # handled (order booked), reply never arrives
    SERVER_ERROR = "server_error"  # HTTP 5xx with an HTML body, as a load balancer sends
    RATE_LIMITED = "rate_limited"  # HTTP 429, code -1003, Retry-After
    IP_BANNED = "ip_banned"  # HTTP 418, code -1003, Retry-After
    MALFORMED_JSON = "malformed_json"  # handled (order booked), then HTTP 200 with a truncated JSON body
    PARTIAL_FILL = "partial_fill"  # the next market order fills only ``fill_ratio`` and expires
    REJECT_INSUFFICIENT = "reject_insufficient"  # -2010 insufficient balance
    REJECT_FILTER = "reject_filter"  # -1013 filter failure


@dataclass(frozen=True)
class Fault:
    """One misbehaviour; fields other than ``kind`` apply to the kinds that name them."""

    kind: FaultKind
    status: int = 503
    retry_after_s: int | None = 1
    hang_s: float = 5.0
    fill_ratio: str = "0.5"


@dataclass
class LoggedRequest:
    method: str
    path: str
    params: dict[str, str]
    has_api_key: bool
    time_ms: int
    status: int = 0
    fault: FaultKind | None = None


@dataclass
class _Injected:
    fault: Fault
    remaining: int
    symbol: str | None = None


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
        api_key: value required in the ``X-MBX-APIKEY`` header of signed endpoints.
        api_secret: when not None, the HMAC-SHA256 signature of signed requests must match.
    """

    clock: Callable[[], int] = _wall_clock_ms
    fee_rate: str = "0.001"
    api_key: str = "fake-api-key"
    api_secret: str | None = "fake-api-secret"
    exchange: FakeSpotExchange = field(init=False)
    log: list[LoggedRequest] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.exchange = FakeSpotExchange(self.clock, fee_rate=self.fee_rate)
        self._faults: dict[tuple[str, str], deque[_Injected]] = defaultdict(deque)
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
        """
        chosen = fault if isinstance(fault, Fault) else Fault(fault)
        market_id = None if symbol is None else symbol.replace("/", "")
        self._faults[(method.upper(), path)].append(_Injected(chosen, times, market_id))

    def clear_faults(self) -> None:
        """Forgets every injected fault not yet used up: the exchange behaves from now on."""
        self._faults.clear()

    def requests(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        return [r for r in self.log if (method is None or r.method == method) and (path is None or r.path == path)]

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
        fault = self._take_fault(request.method, request.path, params)
        entry.fault = fault.kind if fault else None
        early = await self._early_fault(fault)
        if early is not None:
            return early
        if fault is not None and fault.kind is FaultKind.PARTIAL_FILL:
            self.exchange.next_fill_ratio = Decimal(fault.fill_ratio)
        try:
            body = await handler(params)
        except ExchangeRejection as rejection:
            return _error(rejection.http_status, rejection.code, rejection.msg)
        if fault is not None and fault.kind is FaultKind.TIMEOUT_AFTER_PROCESSING:
            await self._hang(fault)
            return web.Response(status=504, text="gateway timeout")
        if fault is not None and fault.kind is FaultKind.MALFORMED_JSON:
            return web.Response(status=200, text='{"symbol": "BTCUSDT", "orderId": 12', content_type="application/json")
        return web.json_response(body)

    def _check_auth(self, request: web.Request, raw_signed: str) -> web.Response | None:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            return _error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if self.api_secret is None:
            return None
        payload, sep, signature = raw_signed.partition("&signature=")
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not sep or not hmac.compare_digest(signature, expected):
            return _error(400, -1022, "Signature for this request is not valid.")
        return None

    def _take_fault(self, method: str, path: str, params: dict[str, str]) -> Fault | None:
        queue = self._faults.get((method, path))
        if not queue:
            return None
        for injected in queue:
            if injected.symbol is None or injected.symbol == params.get("symbol"):
                injected.remaining -= 1
                if injected.remaining <= 0:
                    queue.remove(injected)
                return injected.fault
        return None

    async def _early_fault(self, fault: Fault | None) -> web.Response | None:
        if fault is None:
            return None
        kind = fault.kind
        if kind is FaultKind.TIMEOUT:
            await self._hang(fault)
            return web.Response(status=504, text="gateway timeout")
        if kind is FaultKind.SERVER_ERROR:
            return web.Response(status=fault.status, text="<html>Bad Gateway</html>", content_type="text/html")
        if kind in (FaultKind.RATE_LIMITED, FaultKind.IP_BANNED):
            status = 429 if kind is FaultKind.RATE_LIMITED else 418
            headers = {} if fault.retry_after_s is None else {"Retry-After": str(fault.retry_after_s)}
            message = "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."
            return _error(status, -1003, message, headers)
        if kind is FaultKind.REJECT_INSUFFICIENT:
            return _error(400, *INSUFFICIENT_BALANCE)
        if kind is FaultKind.REJECT_FILTER:
            return _error(400, -1013, "Filter failure: LOT_SIZE")
        return None

    async def _hang(self, fault: Fault) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=fault.hang_s)
        except TimeoutError:
            pass

    # --- endpoints -------------------------------------------------------------------------------
    async def _ping(self, params: dict[str, str]) -> Any:
        return {}

    async def _time(self, params: dict[str, str]) -> Any:
        return {"serverTime": self.clock()}

    async def _exchange_info(self, params: dict[str, str]) -> Any:
        return {
            "timezone": "UTC",
            "serverTime": self.clock(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [],
            "symbols": [market.exchange_info() for market in self.exchange.markets.values()],
        }

    async def _klines(self, params: dict[str, str]) -> Any:
        start = params.get("startTime")
        end = params.get("endTime")
        limit = min(int(params.get("limit", "500")), 1000)
        return self.exchange.klines(
            params.get("symbol", ""),
            params.get("interval", ""),
            None if start is None else int(start),
            None if end is None else int(end),
            limit,
        )

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
        balances = [
            {"asset": asset, "free": fmt(free), "locked": fmt(locked)}
            for asset, (free, locked) in sorted(self.exchange.balances.items())
        ]
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.clock(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

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

    async def _open_orders(self, params: dict[str, str]) -> Any:
        return [order.query_json() for order in self.exchange.open_orders(params.get("symbol"))]

    async def _my_trades(self, params: dict[str, str]) -> Any:
        start = params.get("startTime")
        trades = self.exchange.my_trades(
            params.get("symbol", ""),
            params.get("orderId"),
            None if start is None else int(start),
            min(int(params.get("limit", "500")), 1000),
        )
        return [trade.my_trade_json() for trade in trades]


def _error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"code": code, "msg": msg}), content_type="application/json", headers=headers
    )
