"""Provides Binance spot JSON shapes for the fake exchange: markets, orders, OCO order lists, trades and error codes.

Amounts are ``Decimal`` and printed the way Binance prints them (eight decimals).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

EIGHT_PLACES = Decimal("0.00000001")
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT"})
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
DEFAULT_ORDER_TYPES = (
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
)


def fmt(value: Decimal) -> str:
    """Binance prints every amount with eight decimals."""
    return format(value.quantize(EIGHT_PLACES), "f")


class ExchangeRejection(Exception):
    """A request Binance would refuse: carries the JSON error code, message and HTTP status."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


INSUFFICIENT_BALANCE = (-2010, "Account has insufficient balance for requested action.")
DUPLICATE_ORDER = (-2010, "Duplicate order sent.")
WOULD_TRIGGER = (-2010, "Stop price would trigger immediately.")
UNKNOWN_ORDER_CANCEL = (-2011, "Unknown order sent.")
ORDER_DOES_NOT_EXIST = (-2013, "Order does not exist.")
ORDER_LIST_DOES_NOT_EXIST = (-2013, "Order list does not exist.")
WOULD_MATCH = (-2010, "Order would immediately match and take.")
PRICE_RELATIONSHIP = (-2010, "The relationship of the prices for the orders is not correct.")
OCO_NOT_SUPPORTED = (-2010, "OCO orders are not supported for this symbol")
OCO_TYPE_REJECTED = (-1158, "Order type not supported in OCO.")


@dataclass
class FakeMarket:
    """One spot symbol as exchangeInfo describes it; steps are decimal strings."""

    base: str
    quote: str
    tick_size: str = "0.01"
    step_size: str = "0.00001"
    min_qty: str = "0.00001"
    min_notional: str = "5"
    order_types: tuple[str, ...] = DEFAULT_ORDER_TYPES
    status: str = "TRADING"
    oco_allowed: bool = True

    @property
    def symbol(self) -> str:
        return self.base + self.quote

    def exchange_info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": list(self.order_types),
            "icebergAllowed": True,
            "ocoAllowed": self.oco_allowed,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": self.tick_size,
                    "maxPrice": "1000000.00000000",
                    "tickSize": self.tick_size,
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": self.min_qty,
                    "maxQty": "9000.00000000",
                    "stepSize": self.step_size,
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": self.min_notional,
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


@dataclass
class FakeTrade:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool = False

    def fill_json(self) -> dict[str, Any]:
        return {
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.trade_id,
        }

    def my_trade_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "id": self.trade_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.price * self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time_ms,
            "isBuyer": self.side == "BUY",
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass
class FakeOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    orig_qty: Decimal
    price: Decimal
    stop_price: Decimal
    time_ms: int
    status: str = "NEW"
    executed_qty: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    update_ms: int = 0
    triggered: bool = False
    locked: Decimal = Decimal(0)
    fills: list[FakeTrade] = field(default_factory=list)
    order_list_id: int = -1  # an OCO leg's list (its lock is the list's), else -1

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def query_json(self) -> dict[str, Any]:
        """GET /api/v3/order and /api/v3/openOrders shape."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": self.order_list_id,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": "GTC",
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(self.stop_price),
            "icebergQty": fmt(Decimal(0)),
            "time": self.time_ms,
            "updateTime": self.update_ms or self.time_ms,
            "isWorking": self.type not in STOP_TYPES or self.triggered,
            "workingTime": self.time_ms,
            "origQuoteOrderQty": fmt(Decimal(0)),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def full_json(self) -> dict[str, Any]:
        """POST /api/v3/order with newOrderRespType=FULL."""
        body = {key: value for key, value in self.query_json().items() if key not in ("time", "updateTime")}
        body["transactTime"] = self.time_ms
        body["fills"] = [trade.fill_json() for trade in self.fills]
        if self.type not in STOP_TYPES:
            body.pop("stopPrice")
        return body

    def cancel_json(self, cancel_client_id: str) -> dict[str, Any]:
        body = self.full_json()
        body.pop("fills")
        body["origClientOrderId"] = self.client_order_id
        body["clientOrderId"] = cancel_client_id
        return body


@dataclass
class FakeOrderList:
    """One OCO order list: two legs (below first, as Binance reports them) and the quantity locked once."""

    order_list_id: int
    list_client_id: str
    symbol: str
    legs: list[FakeOrder]
    time_ms: int
    locked: Decimal = Decimal(0)
    lock_asset: str = ""

    @property
    def is_open(self) -> bool:
        return any(leg.is_open for leg in self.legs)

    def list_json(self) -> dict[str, Any]:
        """GET /api/v3/orderList and /api/v3/openOrderList shape (no order reports)."""
        done = not self.is_open
        return {
            "orderListId": self.order_list_id,
            "contingencyType": "OCO",
            "listStatusType": "ALL_DONE" if done else "EXEC_STARTED",
            "listOrderStatus": "ALL_DONE" if done else "EXECUTING",
            "listClientOrderId": self.list_client_id,
            "transactionTime": self.time_ms,
            "symbol": self.symbol,
            "orders": [
                {"symbol": leg.symbol, "orderId": leg.order_id, "clientOrderId": leg.client_order_id}
                for leg in self.legs
            ],
        }

    def placed_json(self, response_type: str) -> dict[str, Any]:
        """POST /api/v3/orderList/oco: ``ACK`` has no reports, ``RESULT`` reports without fills, ``FULL`` with."""
        body = self.list_json()
        if response_type != "ACK":
            reports = [leg.full_json() for leg in self.legs]
            if response_type != "FULL":
                for report in reports:
                    report.pop("fills")
            body["orderReports"] = reports
        return body

    def cancel_json(self, cancel_client_id: str) -> dict[str, Any]:
        """DELETE /api/v3/orderList."""
        body = self.list_json()
        body["orderReports"] = [leg.cancel_json(cancel_client_id) for leg in self.legs]
        return body


def exchange_info_json(markets: Iterable[FakeMarket], now_ms: int) -> dict[str, Any]:
    """GET /api/v3/exchangeInfo."""
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        ],
        "exchangeFilters": [],
        "symbols": [market.exchange_info() for market in markets],
    }


def account_json(balances: Mapping[str, Sequence[Decimal]], now_ms: int) -> dict[str, Any]:
    """GET /api/v3/account from ``asset -> [free, locked]``."""
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
        "updateTime": now_ms,
        "accountType": "SPOT",
        "balances": [
            {"asset": asset, "free": fmt(free), "locked": fmt(locked)}
            for asset, (free, locked) in sorted(balances.items())
        ],
        "permissions": ["SPOT"],
        "uid": 1,
    }
