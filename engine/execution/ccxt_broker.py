"""Provides CcxtBroker: Binance spot execution through ccxt with idempotent submits and exchange-side stops.

Idempotency: every order carries the caller's deterministic client order id. When an attempt fails
in a way that leaves its outcome unknown (timeout, 5xx, garbled reply), the next attempt first asks
the exchange for that client id and returns the order if it exists; a ``Duplicate order sent.``
refusal is answered the same way. So a retried or restarted submit never creates a second order.

Trailing stops are moved cancel-then-place, never place-then-cancel. On Binance spot a resting
sell stop locks its base quantity, so a second full-size stop is refused for insufficient balance
while the first exists; and where free balance would allow it, two live stops can both trigger in
a fast move and sell the position twice. Cancel-then-place costs one round trip (tens of ms)
without a stop; if the new stop is refused, the old level is put back at once and the caller is
told (:class:`~engine.execution.broker.StopReplaceError`). Binance's atomic ``order/cancelReplace``
would close even that window and is the natural next step.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import ccxt  # type: ignore[import-untyped]

from engine.errors import ExchangeCallException, OrderNotFoundException
from engine.execution.broker import Balance, OrderAck, StopReplaceError, make_client_order_id
from engine.execution.retry import RandomSource, RetryPolicy, call_with_retry
from engine.models import Fill, MarketLimits, Order, OrderStatus, OrderType, Side

DEFAULT_STOP_LIMIT_OFFSET_RATIO = 0.005
"""Where only STOP_LOSS_LIMIT exists: the limit sits this ratio beyond the stop so it still fills."""

_RAW_STATUS = {
    "NEW": OrderStatus.OPEN,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.CANCELED,  # a market order's unfilled rest; filled_quantity tells the part done
    "EXPIRED_IN_MATCH": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
}
_UNIFIED_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
}
_RAW_TYPE = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "LIMIT_MAKER": OrderType.LIMIT,
    "STOP_LOSS": OrderType.STOP_MARKET,
    "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
}


def _is_duplicate_refusal(exc: ccxt.BaseError) -> bool:
    return "Duplicate order sent" in str(exc)


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class CcxtBroker:
    """The :class:`~engine.execution.broker.Broker` for Binance spot via a ccxt async client.

    Args:
        client: a client from :func:`engine.execution.ccxt_client.create_binance_client`; the
            broker owns it from now on and closes it in :meth:`close`.
        policy: timeouts and retries of every call.
        on_error: called with each failed attempt's sanitized exception (feed the system breaker).
        on_success: called after each successful call.
        now_ms: clock for timestamps the exchange does not report (UTC ms).
        stop_limit_offset_ratio: see ``DEFAULT_STOP_LIMIT_OFFSET_RATIO``; ratio in [0, 1].
        sleep, rng: backoff plumbing, injectable for tests.
    """

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy,
        on_error: Callable[[ExchangeCallException], None] | None = None,
        on_success: Callable[[], None] | None = None,
        now_ms: Callable[[], int] = _wall_clock_ms,
        stop_limit_offset_ratio: float = DEFAULT_STOP_LIMIT_OFFSET_RATIO,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: RandomSource = random,
    ) -> None:
        self._client = client
        self._policy = policy
        self._on_error = on_error
        self._on_success = on_success
        self._now_ms = now_ms
        self._stop_limit_offset_ratio = stop_limit_offset_ratio
        self._sleep = sleep
        self._rng = rng
        self._limits: dict[str, MarketLimits] = {}

    async def _call(self, operation: str, factory: Callable[[], Awaitable[Any]]) -> Any:
        return await call_with_retry(
            operation,
            factory,
            policy=self._policy,
            on_error=self._on_error,
            on_success=self._on_success,
            sleep=self._sleep,
            rng=self._rng,
        )

    # --- markets ---------------------------------------------------------------------------------
    async def load_markets(self) -> dict[str, MarketLimits]:
        markets = await self._call("load_markets", lambda: self._client.load_markets(True))
        limits: dict[str, MarketLimits] = {}
        for symbol, market in markets.items():
            if not market.get("spot") or market.get("active") is False:
                continue
            precision, bounds = market.get("precision") or {}, market.get("limits") or {}
            limits[symbol] = MarketLimits(
                symbol=symbol,
                lot_step=float(precision.get("amount") or 1e-8),
                tick_size=float(precision.get("price") or 1e-8),
                min_qty=float((bounds.get("amount") or {}).get("min") or 0.0),
                min_notional=float((bounds.get("cost") or {}).get("min") or 0.0),
            )
        self._limits = limits
        return dict(limits)

    async def _ensure_markets(self) -> None:
        if self._client.markets is None:
            await self._client.load_markets()

    def _amount(self, symbol: str, quantity: float) -> float:
        # ccxt truncates amounts to the lot step (never more than was sized) and raises InvalidOrder
        # when nothing is left.
        return float(self._client.amount_to_precision(symbol, quantity))

    def _price(self, symbol: str, price: float) -> float:
        return float(self._client.price_to_precision(symbol, price))

    # --- orders ----------------------------------------------------------------------------------
    async def submit_market_order(
        self, client_order_id: str, symbol: str, side: Side, quantity: float, *, lookup_first: bool = False
    ) -> OrderAck:
        async def send() -> dict[str, Any]:
            amount = self._amount(symbol, quantity)
            raw: dict[str, Any] = await self._client.create_order(
                symbol, "market", side.value, amount, None, {"newClientOrderId": client_order_id}
            )
            return raw

        operation = f"submit_market_order {symbol} {side.value} {client_order_id}"
        return await self._send_once(operation, client_order_id, symbol, send, lookup_first)

    async def place_stop_loss(
        self,
        client_order_id: str,
        symbol: str,
        side: Side,
        quantity: float,
        stop_price: float,
        *,
        lookup_first: bool = False,
    ) -> OrderAck:
        async def send() -> dict[str, Any]:
            amount = self._amount(symbol, quantity)
            stop = self._price(symbol, stop_price)
            params: dict[str, Any] = {"newClientOrderId": client_order_id, "stopLossPrice": stop}
            order_types = self._client.market(symbol)["info"].get("orderTypes") or []
            raw: dict[str, Any]
            if "STOP_LOSS" in order_types:
                raw = await self._client.create_order(symbol, "market", side.value, amount, None, params)
                return raw
            offset = -self._stop_limit_offset_ratio if side is Side.SELL else self._stop_limit_offset_ratio
            limit = self._price(symbol, stop * (1.0 + offset))
            params["timeInForce"] = "GTC"
            raw = await self._client.create_order(symbol, "limit", side.value, amount, limit, params)
            return raw

        operation = f"place_stop_loss {symbol} {side.value} {client_order_id} at {stop_price:g}"
        return await self._send_once(operation, client_order_id, symbol, send, lookup_first)

    async def _send_once(
        self,
        operation: str,
        client_order_id: str,
        symbol: str,
        send: Callable[[], Awaitable[dict[str, Any]]],
        lookup_first: bool,
    ) -> OrderAck:
        attempts = 0

        async def attempt() -> OrderAck:
            nonlocal attempts
            attempts += 1
            await self._ensure_markets()
            if attempts > 1 or lookup_first:
                # The previous attempt may have reached the exchange before its reply was lost.
                existing = await self._find(client_order_id, symbol)
                if existing is not None:
                    return self._ack(existing, client_order_id, recovered=True)
            try:
                raw = await send()
            except ccxt.InvalidOrder as exc:
                if not _is_duplicate_refusal(exc):
                    raise
                existing = await self._find(client_order_id, symbol)
                if existing is None:
                    raise
                return self._ack(existing, client_order_id, recovered=True)
            return self._ack(raw, client_order_id)

        result: OrderAck = await self._call(operation, attempt)
        return result

    async def replace_stop_loss(
        self,
        old_client_order_id: str,
        new_client_order_id: str,
        symbol: str,
        side: Side,
        quantity: float,
        stop_price: float,
    ) -> OrderAck:
        operation = f"replace_stop_loss {symbol} {old_client_order_id} -> {new_client_order_id}"
        try:
            old = await self.cancel_order(old_client_order_id, symbol)
        except OrderNotFoundException:
            old = None  # never placed (or long gone): nothing to move, just protect
        remaining = quantity
        if old is not None:
            if old.status is OrderStatus.FILLED:
                return old  # the stop already closed the position
            remaining = quantity - old.filled_quantity
            if old.filled_quantity > 0 and self._amount_or_zero(symbol, remaining) <= 0:
                return old
        try:
            return await self.place_stop_loss(new_client_order_id, symbol, side, remaining, stop_price)
        except ExchangeCallException as refused:
            restored = None
            if old is not None and old.order.stop_price is not None:
                restore_id = make_client_order_id("rs", symbol, 0, new_client_order_id)
                try:
                    restored = await self.place_stop_loss(
                        restore_id, symbol, side, remaining, old.order.stop_price, lookup_first=True
                    )
                except ExchangeCallException:
                    restored = None
            raise StopReplaceError(operation, str(refused), restored) from None

    def _amount_or_zero(self, symbol: str, quantity: float) -> float:
        try:
            return self._amount(symbol, quantity)
        except ccxt.InvalidOrder:
            return 0.0

    async def cancel_order(self, client_order_id: str, symbol: str) -> OrderAck:
        async def attempt() -> OrderAck:
            await self._ensure_markets()
            try:
                raw = await self._client.cancel_order(None, symbol, {"clientOrderId": client_order_id})
            except ccxt.OrderNotFound:
                # Unknown *open* order: it filled, was cancelled by an earlier lost attempt, or never
                # existed. Only the last is an error.
                existing = await self._find(client_order_id, symbol)
                if existing is None:
                    raise
                return self._ack(existing, client_order_id)
            return self._ack(raw, client_order_id)

        result: OrderAck = await self._call(f"cancel_order {symbol} {client_order_id}", attempt)
        return result

    async def fetch_order(self, client_order_id: str, symbol: str) -> OrderAck | None:
        async def attempt() -> OrderAck | None:
            await self._ensure_markets()
            raw = await self._find(client_order_id, symbol)
            if raw is None:
                return None
            trades: list[dict[str, Any]] = []
            if (raw.get("filled") or 0) > 0 and raw.get("id") is not None:
                trades = await self._client.fetch_order_trades(raw["id"], symbol)
            return self._ack(raw, client_order_id, trades=trades)

        result: OrderAck | None = await self._call(f"fetch_order {symbol} {client_order_id}", attempt)
        return result

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderAck]:
        async def attempt() -> list[dict[str, Any]]:
            await self._ensure_markets()
            result: list[dict[str, Any]] = await self._client.fetch_open_orders(symbol)
            return result

        raws = await self._call(f"fetch_open_orders {symbol or 'all'}", attempt)
        return [self._ack(raw, str(raw.get("clientOrderId") or "")) for raw in raws]

    async def fetch_balances(self) -> dict[str, Balance]:
        raw = await self._call("fetch_balances", lambda: self._client.fetch_balance())
        totals: dict[str, Any] = raw.get("total") or {}
        free: dict[str, Any] = raw.get("free") or {}
        return {
            asset: Balance(asset, float(free.get(asset) or 0.0), float(total))
            for asset, total in totals.items()
            if total
        }

    async def fetch_server_time_ms(self) -> int:
        """The exchange's clock (UTC ms): the cheapest call (public, weight 1), used as a health probe.

        One attempt only (a probe that retries would hide the outage it is there to report); its
        failure or success reaches ``on_error``/``on_success`` like every other call.
        """
        policy = replace(self._policy, max_attempts=1)
        result = await call_with_retry("fetch_server_time", lambda: self._client.fetch_time(), policy=policy,
                                       on_error=self._on_error, on_success=self._on_success, sleep=self._sleep,
                                       rng=self._rng)
        return int(result)

    async def close(self) -> None:
        await self._client.close()

    # --- parsing ---------------------------------------------------------------------------------
    async def _find(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        try:
            raw: dict[str, Any] = await self._client.fetch_order(None, symbol, {"clientOrderId": client_order_id})
        except ccxt.OrderNotFound:
            return None
        return raw

    def _ack(
        self,
        raw: dict[str, Any],
        client_order_id: str,
        *,
        recovered: bool = False,
        trades: list[dict[str, Any]] | None = None,
    ) -> OrderAck:
        info = raw.get("info") or {}
        status = _RAW_STATUS.get(str(info.get("status")), _UNIFIED_STATUS.get(str(raw.get("status")), OrderStatus.OPEN))
        order_type = _RAW_TYPE.get(str(info.get("type")), OrderType.MARKET)
        created_ms = int(raw.get("timestamp") or self._now_ms())
        order = Order(
            client_order_id=client_order_id,
            symbol=str(raw.get("symbol")),
            side=Side(str(raw.get("side"))),
            type=order_type,
            quantity=float(raw.get("amount") or 0.0),
            status=status,
            created_ms=created_ms,
            price=_float(raw.get("price")) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
            stop_price=_float(raw.get("triggerPrice") or raw.get("stopPrice")),
            exchange_order_id=None if raw.get("id") is None else str(raw["id"]),
            filled_quantity=float(raw.get("filled") or 0.0),
            average_price=_float(raw.get("average")),
        )
        source = trades if trades is not None else (raw.get("trades") or [])
        fills = tuple(self._fill(trade, order, created_ms) for trade in source)
        return OrderAck(order, fills, recovered)

    @staticmethod
    def _fill(trade: dict[str, Any], order: Order, default_ms: int) -> Fill:
        fee = trade.get("fee") or {}
        return Fill(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=float(trade.get("amount") or 0.0),
            price=float(trade.get("price") or 0.0),
            fee=float(fee.get("cost") or 0.0),
            time_ms=int(trade.get("timestamp") or default_ms),
            fee_asset=str(fee.get("currency") or ""),
            trade_id=str(trade.get("id") or ""),
        )
