"""Provides the translation of ccxt's Binance order and trade dicts into OrderAck/Fill, refusing malformed replies.

A reply that does not describe an order (an empty body, ``{}``, a truncated object that ccxt parsed
into ``None`` fields) must never be booked as one, and must never raise a stray ``ValueError`` deep in
the order manager: :func:`parse_order_ack` raises :class:`MalformedReplyError` instead, which the
broker treats like a lost reply (the outcome is unknown and is resolved by looking the order up).
"""

from __future__ import annotations

from typing import Any

import ccxt  # type: ignore[import-untyped]

from engine.execution.broker import OrderAck
from engine.models import Fill, Order, OrderStatus, OrderType, Side

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
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}


class MalformedReplyError(ccxt.BadResponse):  # type: ignore[misc]
    """The exchange answered, but not with an order: the request's outcome is unknown.

    A ``ccxt.BadResponse`` so the retry layer classifies it like a garbled body (an outage, outcome
    unknown), never as a refusal and never as a bug.
    """


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _finite_float(value: Any, field: str) -> float:
    try:
        number = float(value or 0.0)
    except (TypeError, ValueError):
        raise MalformedReplyError(f"order reply has a non-numeric {field}: {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or number < 0:
        raise MalformedReplyError(f"order reply has an invalid {field}: {value!r}")
    return number


def parse_order_ack(
    raw: Any,
    client_order_id: str,
    default_ms: int,
    *,
    recovered: bool = False,
    trades: list[dict[str, Any]] | None = None,
) -> OrderAck:
    """The ack for one ccxt order dict, under our client order id.

    Args:
        raw: what ccxt returned for the order (``create_order``, ``fetch_order``, ``cancel_order``).
        client_order_id: our id (a cancel reply carries the cancel request's id, not the order's).
        default_ms: time to use when the reply has none (UTC ms).
        recovered: the order was found by looking the client id up, not from its own reply.
        trades: the order's trades (``fetch_order_trades``); default: the trades inside ``raw``.

    Raises:
        MalformedReplyError: ``raw`` is not an order (no symbol, no side, no id, bad numbers).
    """
    if not isinstance(raw, dict) or not raw:
        raise MalformedReplyError(f"order reply is not an order object: {type(raw).__name__} {str(raw)[:40]!r}")
    side = _SIDES.get(str(raw.get("side")).lower())
    symbol = raw.get("symbol")
    if side is None or not symbol or raw.get("id") is None:
        raise MalformedReplyError("order reply lacks its side, symbol or order id")
    info = raw.get("info") or {}
    status = _RAW_STATUS.get(str(info.get("status")), _UNIFIED_STATUS.get(str(raw.get("status")), OrderStatus.OPEN))
    order_type = _RAW_TYPE.get(str(info.get("type")), OrderType.MARKET)
    created_ms = int(raw.get("timestamp") or default_ms)
    order = Order(
        client_order_id=client_order_id,
        symbol=str(symbol),
        side=side,
        type=order_type,
        quantity=_finite_float(raw.get("amount"), "amount"),
        status=status,
        created_ms=created_ms,
        price=_float(raw.get("price")) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=_float(raw.get("triggerPrice") or raw.get("stopPrice")),
        exchange_order_id=str(raw["id"]),
        filled_quantity=_finite_float(raw.get("filled"), "filled"),
        average_price=_float(raw.get("average")),
    )
    source = trades if trades is not None else (raw.get("trades") or [])
    fills = tuple(parse_fill(trade, order, created_ms) for trade in source)
    return OrderAck(order, fills, recovered)


def parse_fill(trade: dict[str, Any], order: Order, default_ms: int) -> Fill:
    """One execution of ``order``; the fee keeps its currency (Binance charges a buy's fee in the base asset)."""
    fee = trade.get("fee") or {}
    return Fill(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        quantity=_finite_float(trade.get("amount"), "trade amount"),
        price=_finite_float(trade.get("price"), "trade price"),
        fee=_finite_float(fee.get("cost"), "fee"),
        time_ms=int(trade.get("timestamp") or default_ms),
        fee_asset=str(fee.get("currency") or ""),
        trade_id=str(trade.get("id") or ""),
    )
