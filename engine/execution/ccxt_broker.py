"""Provides CcxtBroker: Binance spot execution through ccxt with idempotent submits and exchange-side stops.

Idempotency: every order carries the caller's client order id, and the broker looks that id up
before it sends (Binance refuses a reused id only while the first order is *open*: a filled market
order's id buys again). An order whose reply is lost, late, garbled or empty has an *unknown* outcome:
it is never re-sent blind but resolved by :func:`~engine.execution.order_resolution.resolve_unknown_order`
(lookups with backoff over a bounded window, then the account's base balance and trades); only an
order proven absent is sent again, and one still unknown raises
:class:`~engine.domain.errors.OrderOutcomeUnknownException` for the caller to keep and look up later. Every
filled ack carries the order's trades with their fees, so the caller books what the account holds.

Stops that move and stop-and-target pairs (Binance OCO) are in :mod:`engine.execution.ccxt_protection`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import ccxt  # type: ignore[import-untyped]

from engine.domain.errors import (
    ExchangeCallException,
    ExchangeUnavailableException,
    OrderOutcomeUnknownException,
    OrderRejectedException,
)
from engine.domain.models import MarketLimits, OrderStatus, Side
from engine.execution.broker import Balance, OrderAck, PairAck
from engine.execution.ccxt_parsing import MalformedReplyError, parse_fill, parse_order_ack
from engine.execution.ccxt_protection import ProtectiveOrders
from engine.execution.order_resolution import (
    Holding,
    Outcome,
    Resolution,
    ResolutionPolicy,
    resolve_unknown_order,
)
from engine.execution.retry import RandomSource, RetryPolicy, call_with_retry

DEFAULT_STOP_LIMIT_OFFSET_RATIO = 0.005
"""Where only STOP_LOSS_LIMIT exists: the limit sits this ratio beyond the stop so it still fills."""

_DUPLICATE_REFUSAL = "Duplicate order sent"
# ccxt parses replies inside create_order/cancel_order; a body that is no order at all can make its parser
# fail with one of these before we see a dict. Caught only around those calls, they mean "garbled reply".
_PARSER_FAILURES = (TypeError, KeyError, AttributeError, ValueError, IndexError)


T = TypeVar("T")


async def _as_is(ack: OrderAck) -> OrderAck:
    return ack


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class CcxtBroker:
    """The :class:`~engine.execution.broker.Broker` for Binance spot via a ccxt async client.

    Args:
        client: a client from :func:`engine.execution.ccxt_client.create_binance_client`; the
            broker owns it from now on and closes it in :meth:`close`.
        policy: timeouts and retries of every call (an order *send* is one attempt: see the module).
        on_error: called with each failed attempt's sanitized exception (feed the system breaker).
        on_success: called after each successful call.
        now_ms: clock for timestamps the exchange does not report (UTC ms).
        stop_limit_offset_ratio: see ``DEFAULT_STOP_LIMIT_OFFSET_RATIO``; ratio in [0, 1].
        resolution: how long an unknown outcome is looked up before absence may be concluded.
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
        resolution: ResolutionPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: RandomSource = random,
    ) -> None:
        self.client = client
        self._policy = policy
        self._one_attempt = replace(policy, max_attempts=1)
        self._on_error = on_error
        self._on_success = on_success
        self.now_ms = now_ms
        self.stop_limit_offset_ratio = stop_limit_offset_ratio
        self._resolution = resolution or ResolutionPolicy()
        self._sleep = sleep
        self._rng = rng
        self._limits: dict[str, MarketLimits] = {}
        self._protective = ProtectiveOrders(self)

    async def call(self, operation: str, factory: Callable[[], Awaitable[Any]], *, once: bool = False) -> Any:
        """One exchange call under the retry policy (``once``: a single attempt, as every order send is)."""
        return await call_with_retry(
            operation,
            factory,
            policy=self._one_attempt if once else self._policy,
            on_error=self._on_error,
            on_success=self._on_success,
            sleep=self._sleep,
            rng=self._rng,
        )

    # --- markets ---------------------------------------------------------------------------------
    async def load_markets(self) -> dict[str, MarketLimits]:
        markets = await self.call("load_markets", lambda: self.client.load_markets(True))
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

    async def ensure_markets(self) -> None:
        if self.client.markets is None:
            await self.call("load_markets", lambda: self.client.load_markets())

    def amount(self, symbol: str, quantity: float) -> float:
        # ccxt truncates amounts to the lot step (never more than was sized) and raises InvalidOrder
        # when nothing is left.
        return float(self.client.amount_to_precision(symbol, quantity))

    def price(self, symbol: str, price: float) -> float:
        return float(self.client.price_to_precision(symbol, price))

    def _base_asset(self, symbol: str) -> str:
        market = (self.client.markets or {}).get(symbol) or {}
        return str(market.get("base") or symbol.partition("/")[0])

    # --- orders ----------------------------------------------------------------------------------
    async def submit_market_order(self, client_order_id: str, symbol: str, side: Side, quantity: float) -> OrderAck:
        async def send() -> Any:
            amount = self.amount(symbol, quantity)
            return await self.client.create_order(
                symbol, "market", side.value, amount, None, {"newClientOrderId": client_order_id}
            )

        operation = f"submit_market_order {symbol} {side.value} {client_order_id}"
        return await self._send_order_once(operation, client_order_id, symbol, send)

    async def place_stop_loss(
        self, client_order_id: str, symbol: str, side: Side, quantity: float, stop_price: float
    ) -> OrderAck:
        async def send() -> Any:
            amount = self.amount(symbol, quantity)
            stop = self.price(symbol, stop_price)
            params: dict[str, Any] = {"newClientOrderId": client_order_id, "stopLossPrice": stop}
            order_types = self.client.market(symbol)["info"].get("orderTypes") or []
            if "STOP_LOSS" in order_types:
                return await self.client.create_order(symbol, "market", side.value, amount, None, params)
            offset = -self.stop_limit_offset_ratio if side is Side.SELL else self.stop_limit_offset_ratio
            limit = self.price(symbol, stop * (1.0 + offset))
            params["timeInForce"] = "GTC"
            return await self.client.create_order(symbol, "limit", side.value, amount, limit, params)

        operation = f"place_stop_loss {symbol} {side.value} {client_order_id} at {stop_price:g}"
        return await self._send_order_once(operation, client_order_id, symbol, send)

    async def _send_order_once(
        self, operation: str, client_order_id: str, symbol: str, send: Callable[[], Awaitable[Any]]
    ) -> OrderAck:
        return await self.send_once(operation, client_order_id, symbol,
                                    lambda: self._send_and_parse(send, client_order_id),
                                    find=lambda: self.lookup(client_order_id, symbol), found=_as_is)

    async def send_once(
        self,
        operation: str,
        client_order_id: str,
        symbol: str,
        send: Callable[[], Awaitable[T]],
        *,
        find: Callable[[], Awaitable[T | None]],
        found: Callable[[OrderAck], Awaitable[T]],
    ) -> T:
        """Look up, then send; an unknown outcome is resolved, and only a proven absence is sent again.

        Args:
            client_order_id: the order's id (a pair's: its stop leg's), looked up by :meth:`resolve_order`.
            send: one send, returning the parsed reply.
            find: the look-up by client id before the send (and after a duplicate refusal).
            found: what the send's result is, given the order that a resolution found.
        """
        await self.ensure_markets()
        existing = await find()
        if existing is not None:
            return existing
        before = await self.holding(symbol)
        resolution: Resolution | None = None
        for sends in range(1, self._policy.max_attempts + 1):
            sent_ms = self.now_ms()
            try:
                result: T = await self.call(operation, send, once=True)
                return result
            except OrderRejectedException as refusal:
                if _DUPLICATE_REFUSAL not in refusal.reason:
                    raise
                # An open order already has this id (an earlier attempt we could not see): that is ours.
                again = await find()
                if again is None:
                    raise
                return again
            except ExchangeUnavailableException as unknown:
                resolution = await self.resolve_order(client_order_id, symbol, sent_ms=sent_ms, before=before)
                if resolution.outcome is Outcome.FOUND:
                    assert resolution.ack is not None
                    return await found(resolution.ack)
                if resolution.outcome is Outcome.UNKNOWN:
                    raise OrderOutcomeUnknownException(
                        operation, f"{unknown.reason}; {resolution.reason}", client_order_id, sends
                    ) from None
                if sends >= self._policy.max_attempts:
                    raise ExchangeUnavailableException(
                        operation, f"{unknown.reason}; never placed ({resolution.reason})", sends
                    ) from None
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def _send_and_parse(self, send: Callable[[], Awaitable[Any]], client_order_id: str) -> OrderAck:
        try:
            raw = await send()
        except ccxt.BaseError:
            raise
        except _PARSER_FAILURES as exc:
            raise MalformedReplyError(f"order reply could not be parsed ({type(exc).__name__})") from None
        return await self.with_trades_if_filled(parse_order_ack(raw, client_order_id, self.now_ms()))

    async def resolve_order(
        self, client_order_id: str, symbol: str, *, sent_ms: int, before: Holding | None = None
    ) -> Resolution:
        """What became of an order whose send outcome is unknown (see the module docstring).

        Args:
            client_order_id: the order's id.
            symbol: its market.
            sent_ms: when it was sent (UTC ms); trades from then on count against absence.
            before: the market's base asset just before the send, when known.
        """
        await self.ensure_markets()

        async def find() -> OrderAck | None:
            raw = await self.call(f"fetch_order {symbol} {client_order_id}",
                                   lambda: self.find(client_order_id, symbol), once=True)
            return None if raw is None else await self.full_ack(raw, client_order_id, recovered=True)

        async def trades_since_send() -> int:
            trades = await self.call(f"fetch_my_trades {symbol}",
                                      lambda: self.client.fetch_my_trades(symbol, sent_ms))
            return sum(1 for trade in trades if int(trade.get("timestamp") or 0) >= sent_ms)

        return await resolve_unknown_order(find, lambda: self.holding(symbol), trades_since_send, before=before,
                                           policy=self._resolution, sleep=self._sleep, rng=self._rng)

    async def lookup(self, client_order_id: str, symbol: str) -> OrderAck | None:
        raw = await self.call(f"fetch_order {symbol} {client_order_id}", lambda: self.find(client_order_id, symbol))
        return None if raw is None else await self.full_ack(raw, client_order_id, recovered=True)

    async def full_ack(self, raw: Any, client_order_id: str, *, recovered: bool = False) -> OrderAck:
        """The ack with the order's trades (a queried order carries none; its fees decide what is held)."""
        return await self.with_trades_if_filled(parse_order_ack(raw, client_order_id, self.now_ms(),
                                                                recovered=recovered))

    async def with_trades_if_filled(self, ack: OrderAck) -> OrderAck:
        """The ack with its trades when it filled and the reply carried none (their fees decide what is held)."""
        order = ack.order
        if ack.filled_quantity <= 0 or ack.fills or order.exchange_order_id is None:
            return ack
        try:
            trades = await self.call(f"fetch_order_trades {order.symbol} {order.client_order_id}",
                                      lambda: self.client.fetch_order_trades(order.exchange_order_id, order.symbol))
        except ExchangeCallException:
            return ack  # the caller sizes from the balance when fills are unknown
        mine = [t for t in trades if str(t.get("order") or order.exchange_order_id) == order.exchange_order_id]
        return OrderAck(order, tuple(parse_fill(t, order, order.created_ms) for t in mine), ack.recovered)

    async def replace_stop_loss(
        self, old_client_order_id: str, new_client_order_id: str, symbol: str, side: Side, quantity: float,
        stop_price: float,
    ) -> OrderAck:
        return await self._protective.replace_stop_loss(old_client_order_id, new_client_order_id, symbol, side,
                                                        quantity, stop_price)

    # --- stop-and-target pairs (Binance OCO; see engine.execution.ccxt_protection) -------------------
    def supports_protection_pair(self, symbol: str) -> bool:
        return self._protective.supports_pair(symbol)

    async def place_protection(
        self, stop_client_id: str, symbol: str, side: Side, quantity: float, stop_price: float, target_price: float
    ) -> PairAck:
        return await self._protective.place_pair(stop_client_id, symbol, side, quantity, stop_price, target_price)

    async def replace_protection(
        self, old_stop_client_id: str, new_stop_client_id: str, symbol: str, side: Side, quantity: float,
        stop_price: float, target_price: float,
    ) -> PairAck:
        return await self._protective.replace_pair(old_stop_client_id, new_stop_client_id, symbol, side, quantity,
                                                   stop_price, target_price)

    async def cancel_protection(self, stop_client_id: str, symbol: str) -> PairAck:
        return await self._protective.cancel_pair(stop_client_id, symbol)

    async def fetch_protection(self, stop_client_id: str, symbol: str) -> PairAck | None:
        await self.ensure_markets()
        return await self._protective.fetch_pair(stop_client_id, symbol)

    async def cancel_order(self, client_order_id: str, symbol: str) -> OrderAck:
        async def attempt() -> OrderAck:
            try:
                raw = await self.client.cancel_order(None, symbol, {"clientOrderId": client_order_id})
            except ccxt.OrderNotFound:
                # Unknown *open* order: it filled, was cancelled by an earlier lost attempt, or never
                # existed. Only the last is an error.
                existing = await self.find(client_order_id, symbol)
                if existing is None:
                    raise
                return await self.full_ack(existing, client_order_id)
            except _PARSER_FAILURES as exc:
                raise MalformedReplyError(f"cancel reply could not be parsed ({type(exc).__name__})") from None
            return parse_order_ack(raw, client_order_id, self.now_ms())

        await self.ensure_markets()
        result: OrderAck = await self.call(f"cancel_order {symbol} {client_order_id}", attempt)
        return await self.with_trades_if_filled(result) if result.status is OrderStatus.FILLED else result

    async def fetch_order(self, client_order_id: str, symbol: str) -> OrderAck | None:
        await self.ensure_markets()
        return await self.lookup(client_order_id, symbol)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderAck]:
        await self.ensure_markets()
        raws = await self.call(f"fetch_open_orders {symbol or 'all'}", lambda: self.client.fetch_open_orders(symbol))
        acks = []
        for raw in raws:
            try:
                acks.append(parse_order_ack(raw, str(raw.get("clientOrderId") or ""), self.now_ms()))
            except MalformedReplyError:
                continue  # an entry that is no order cannot be one of ours
        return acks

    async def fetch_balances(self) -> dict[str, Balance]:
        raw = await self.call("fetch_balances", lambda: self.client.fetch_balance())
        totals: dict[str, Any] = raw.get("total") or {}
        free: dict[str, Any] = raw.get("free") or {}
        return {
            asset: Balance(asset, float(free.get(asset) or 0.0), float(total))
            for asset, total in totals.items()
            if total
        }

    async def holding(self, symbol: str) -> Holding:
        """The market's base asset now: what a sell of it may use (free) and what the account owns (total)."""
        balance = (await self.fetch_balances()).get(self._base_asset(symbol))
        return Holding(0.0, 0.0) if balance is None else Holding(balance.free, balance.total)

    async def fetch_server_time_ms(self) -> int:
        """The exchange's clock (UTC ms): the cheapest call (public, weight 1), used as a health probe.

        One attempt only (a probe that retries would hide the outage it is there to report); its
        failure or success reaches ``on_error``/``on_success`` like every other call.
        """
        result = await self.call("fetch_server_time", lambda: self.client.fetch_time(), once=True)
        return int(result)

    async def close(self) -> None:
        await self.client.close()

    async def find(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        try:
            raw: dict[str, Any] = await self.client.fetch_order(None, symbol, {"clientOrderId": client_order_id})
        except ccxt.OrderNotFound:
            return None
        except _PARSER_FAILURES as exc:
            raise MalformedReplyError(f"order query reply could not be parsed ({type(exc).__name__})") from None
        return raw

