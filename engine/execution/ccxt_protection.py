"""Provides ProtectiveOrders: the CcxtBroker's stop replacement and Binance OCO stop-and-target pairs.

Trailing stops are moved cancel-then-place, never place-then-cancel. On Binance spot a resting sell
stop (or OCO) locks its base quantity, so a second full-size one is refused for insufficient balance
while the first exists; and where free balance would allow it, two live stops can both trigger in a
fast move and sell the position twice. Cancel-then-place costs one round trip (tens of ms) without a
stop; if the new one is refused, the old level is put back at once and the caller is told
(:class:`~engine.execution.broker.StopReplaceError`).

A pair is one OCO order list sent through ccxt's implicit ``orderList/oco`` endpoint (ccxt has no
unified OCO call for spot): a ``LIMIT_MAKER`` at the target above, a ``STOP_LOSS`` (or, where only that
exists, a ``STOP_LOSS_LIMIT``) at the stop below, for one quantity locked once. Its send follows every
rule of a single order: the stop leg's client id is looked up first, an unknown outcome is resolved by
looking that leg up (never re-sent blind), and a refusal is classified: the stop already crossed
(:class:`~engine.domain.errors.StopWouldTriggerException`) or the target already reached
(:class:`~engine.execution.broker.TargetCrossedError`); Binance's "relationship of the prices" refusal
names neither, so the last price tells which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ccxt  # type: ignore[import-untyped]

from engine.domain.errors import (
    ExchangeCallException,
    InsufficientFundsException,
    OrderNotFoundException,
    OrderOutcomeUnknownException,
    OrderRejectedException,
    StopWouldTriggerException,
)
from engine.domain.models import OrderStatus, Side
from engine.execution.broker import OrderAck, PairAck, StopReplaceError, TargetCrossedError, make_client_order_id
from engine.execution.broker import pair_client_ids as _pair_ids
from engine.execution.ccxt_parsing import MalformedReplyError, parse_order_list

if TYPE_CHECKING:
    from engine.execution.ccxt_broker import CcxtBroker

_PARSER_FAILURES = (TypeError, KeyError, AttributeError, ValueError, IndexError)
_PRICE_RELATIONSHIP = "relationship of the prices"
_WOULD_TAKE = "immediately match"


class ProtectiveOrders:
    """Stops that move and stop-and-target pairs of one :class:`~engine.execution.ccxt_broker.CcxtBroker`.

    Args:
        broker: the broker whose client, retries, look-ups and resolution it uses.
    """

    def __init__(self, broker: CcxtBroker) -> None:
        self.b = broker

    # --- lone stops ------------------------------------------------------------------------------
    async def replace_stop_loss(
        self, old_client_order_id: str, new_client_order_id: str, symbol: str, side: Side, quantity: float,
        stop_price: float,
    ) -> OrderAck:
        operation = f"replace_stop_loss {symbol} {old_client_order_id} -> {new_client_order_id}"
        try:
            old: OrderAck | None = await self.b.cancel_order(old_client_order_id, symbol)
        except OrderNotFoundException:
            old = None  # never placed (or long gone): nothing to move, just protect
        if old is not None and old.status is OrderStatus.FILLED:
            return old  # the stop already closed the position
        remaining = await self._remaining(symbol, quantity, old)
        if remaining <= 0:
            if old is not None:
                return old
            raise StopReplaceError(operation, "nothing left to protect", None)
        try:
            return await self.b.place_stop_loss(new_client_order_id, symbol, side, remaining, stop_price)
        except StopWouldTriggerException as crossed:
            # The new level is already crossed: putting the old one back would only delay the exit.
            raise StopReplaceError(operation, crossed.reason, None, would_trigger=True) from None
        except OrderOutcomeUnknownException:
            raise  # the new stop may rest: putting the old one back could protect twice
        except ExchangeCallException as refused:
            restored = None
            if old is not None and old.order.stop_price is not None:
                restore_id = make_client_order_id("rs", symbol, 0, new_client_order_id)
                try:
                    restored = await self.b.place_stop_loss(restore_id, symbol, side, remaining, old.order.stop_price)
                except ExchangeCallException:
                    restored = None
            raise StopReplaceError(operation, refused.reason, restored) from None

    async def _remaining(self, symbol: str, quantity: float, old: OrderAck | None) -> float:
        """What a replacement may sell: the quantity less what the old one sold, within the free balance."""
        holding = await self.b.holding(symbol)
        remaining = min(quantity - (old.filled_quantity if old is not None else 0.0), holding.free)
        try:
            return self.b.amount(symbol, remaining)
        except ccxt.InvalidOrder:
            return 0.0

    # --- pairs -----------------------------------------------------------------------------------
    def supports_pair(self, symbol: str) -> bool:
        market = (self.b.client.markets or {}).get(symbol) or {}
        info = market.get("info") or {}
        types = info.get("orderTypes") or []
        return bool(info.get("ocoAllowed")) and "LIMIT_MAKER" in types and (
            "STOP_LOSS" in types or "STOP_LOSS_LIMIT" in types
        )

    def _oco_params(
        self, stop_client_id: str, symbol: str, side: Side, quantity: float, stop_price: float, target_price: float
    ) -> dict[str, Any]:
        list_id, target_id = _pair_ids(stop_client_id)
        market = self.b.client.market(symbol)
        stop = self.b.price(symbol, stop_price)
        maker = {"Type": "LIMIT_MAKER", "Price": self.b.client.price_to_precision(symbol, target_price),
                 "ClientOrderId": target_id}
        guard: dict[str, Any] = {"ClientOrderId": stop_client_id, "StopPrice": self.b.client.price_to_precision(
            symbol, stop)}
        if "STOP_LOSS" in (market["info"].get("orderTypes") or []):
            guard["Type"] = "STOP_LOSS"
        else:
            offset = -self.b.stop_limit_offset_ratio if side is Side.SELL else self.b.stop_limit_offset_ratio
            guard.update(Type="STOP_LOSS_LIMIT", TimeInForce="GTC",
                         Price=self.b.client.price_to_precision(symbol, stop * (1.0 + offset)))
        above, below = (maker, guard) if side is Side.SELL else (guard, maker)
        params: dict[str, Any] = {
            "symbol": market["id"], "side": side.value.upper(),
            "quantity": self.b.client.amount_to_precision(symbol, quantity),
            "listClientOrderId": list_id, "newOrderRespType": "FULL",
        }
        params.update({f"above{key}": value for key, value in above.items()})
        params.update({f"below{key}": value for key, value in below.items()})
        return params

    async def place_pair(
        self, stop_client_id: str, symbol: str, side: Side, quantity: float, stop_price: float, target_price: float
    ) -> PairAck:
        _, target_id = _pair_ids(stop_client_id)

        async def send() -> PairAck:
            params = self._oco_params(stop_client_id, symbol, side, quantity, stop_price, target_price)
            try:
                raw = await self.b.client.private_post_orderlist_oco(params)
            except ccxt.BaseError:
                raise
            except _PARSER_FAILURES as exc:
                raise MalformedReplyError(f"OCO reply could not be read ({type(exc).__name__})") from None
            pair = parse_order_list(raw, symbol, stop_client_id, target_id, self.b.now_ms())
            return PairAck(await self.b.with_trades_if_filled(pair.stop),
                           await self.b.with_trades_if_filled(pair.target))

        async def found(_: OrderAck) -> PairAck:
            return await self._require_pair(stop_client_id, symbol, operation)

        operation = (f"place_protection {symbol} {side.value} {stop_client_id} stop {stop_price:g} "
                     f"target {target_price:g}")
        try:
            return await self.b.send_once(operation, stop_client_id, symbol, send,
                                          find=lambda: self.fetch_pair(stop_client_id, symbol), found=found)
        except StopWouldTriggerException as refused:
            if _WOULD_TAKE in refused.reason:
                raise TargetCrossedError(operation, refused.reason, refused.attempts) from None
            raise
        except InsufficientFundsException:
            raise
        except OrderRejectedException as refused:
            if _PRICE_RELATIONSHIP not in refused.reason:
                raise
            crossed = await self._which_crossed(operation, symbol, side, stop_price, target_price)
            if crossed is None:
                raise
            raise crossed from None

    async def _which_crossed(
        self, operation: str, symbol: str, side: Side, stop_price: float, target_price: float
    ) -> OrderRejectedException | None:
        """Which level the last price is through (a SELL pair: stop below, target above), or None."""
        try:
            market_id = self.b.client.market(symbol)["id"]
            ticker = await self.b.call(f"fetch_last_price {symbol}",
                                       lambda: self.b.client.public_get_ticker_price({"symbol": market_id}))
            last = float(ticker["price"])
        except (ExchangeCallException, *_PARSER_FAILURES):
            return None
        sign = 1.0 if side is Side.SELL else -1.0
        if sign * (last - stop_price) <= 0:
            return StopWouldTriggerException(operation, f"the last price {last:g} is through the stop")
        if sign * (last - target_price) >= 0:
            return TargetCrossedError(operation, f"the last price {last:g} is through the target")
        return None

    async def fetch_pair(self, stop_client_id: str, symbol: str) -> PairAck | None:
        """Both legs by client id (with trades), or None if the stop leg is unknown to the exchange."""
        stop = await self.b.lookup(stop_client_id, symbol)
        if stop is None:
            return None
        target = await self.b.lookup(_pair_ids(stop_client_id)[1], symbol)
        if target is None:
            # Both legs are booked in one transaction; a stop leg without its target is not settled yet.
            raise OrderOutcomeUnknownException(f"fetch_protection {symbol} {stop_client_id}",
                                               "the stop leg is known, its target leg not (yet)", stop_client_id)
        return PairAck(stop, target, recovered=True)

    async def _require_pair(self, stop_client_id: str, symbol: str, operation: str) -> PairAck:
        pair = await self.fetch_pair(stop_client_id, symbol)
        if pair is None:
            raise OrderOutcomeUnknownException(operation, "the stop leg was seen, then not", stop_client_id)
        return pair

    async def cancel_pair(self, stop_client_id: str, symbol: str) -> PairAck:
        list_id, target_id = _pair_ids(stop_client_id)

        async def attempt() -> PairAck:
            market_id = self.b.client.market(symbol)["id"]
            try:
                raw = await self.b.client.private_delete_orderlist({"symbol": market_id, "listClientOrderId": list_id})
            except ccxt.OrderNotFound:
                # No open list under this id: a leg filled, an earlier lost cancel did it, or it never existed.
                stop_raw = await self.b.find(stop_client_id, symbol)
                target_raw = await self.b.find(target_id, symbol)
                if stop_raw is None or target_raw is None:
                    raise
                return PairAck(await self.b.full_ack(stop_raw, stop_client_id),
                               await self.b.full_ack(target_raw, target_id))
            except _PARSER_FAILURES as exc:
                raise MalformedReplyError(f"order list cancel reply could not be read ({type(exc).__name__})") from None
            return parse_order_list(raw, symbol, stop_client_id, target_id, self.b.now_ms())

        await self.b.ensure_markets()
        pair: PairAck = await self.b.call(f"cancel_protection {symbol} {stop_client_id}", attempt)
        return PairAck(await self.b.with_trades_if_filled(pair.stop), await self.b.with_trades_if_filled(pair.target))

    async def replace_pair(
        self, old_stop_client_id: str, new_stop_client_id: str, symbol: str, side: Side, quantity: float,
        stop_price: float, target_price: float,
    ) -> PairAck:
        operation = f"replace_protection {symbol} {old_stop_client_id} -> {new_stop_client_id}"
        try:
            old: PairAck | None = await self.cancel_pair(old_stop_client_id, symbol)
        except OrderNotFoundException:
            old = None
        if old is not None and old.filled_leg is not None:
            return old  # a leg already sold: nothing to move
        remaining = await self._remaining(symbol, quantity, None)
        if remaining <= 0:
            if old is not None:
                return old
            raise StopReplaceError(operation, "nothing left to protect", None)
        try:
            return await self.place_pair(new_stop_client_id, symbol, side, remaining, stop_price, target_price)
        except StopWouldTriggerException as crossed:
            raise StopReplaceError(operation, crossed.reason, None, would_trigger=True) from None
        except TargetCrossedError as reached:
            raise StopReplaceError(operation, reached.reason, None, target_reached=True) from None
        except OrderOutcomeUnknownException:
            raise  # the new pair may rest: putting the old one back could protect twice
        except ExchangeCallException as refused:
            restored: PairAck | None = None
            if old is not None and old.stop.order.stop_price is not None:
                restore_id = make_client_order_id("rs", symbol, 0, new_stop_client_id)
                try:
                    restored = await self.place_pair(restore_id, symbol, side, remaining, old.stop.order.stop_price,
                                                     target_price)
                except ExchangeCallException:
                    restored = None
            raise StopReplaceError(operation, refused.reason, None if restored is None else restored.stop,
                                   restored_target=None if restored is None else restored.target) from None
