"""Provides the translation of ccxt's Binance order and trade dicts into OrderAck/Fill, refusing malformed replies.

A reply that does not describe an order (an empty body, ``{}``, a truncated object that ccxt parsed
into ``None`` fields) must never be booked as one, and must never raise a stray ``ValueError`` deep in
the order manager: :func:`parse_order_ack` raises :class:`MalformedReplyError` instead, which the
broker treats like a lost reply (the outcome is unknown and is resolved by looking the order up).

ccxt has no unified call for Binance's OCO order lists: the broker uses the implicit endpoint methods,
whose replies are Binance's own JSON; :func:`parse_order_list` and :func:`parse_raw_order` read those
(the list, and each leg as Binance prints an order), with the same refusal of anything malformed.
"""

from __future__ import annotations

from typing import Any

import ccxt  # type: ignore[import-untyped]

from engine.domain.models import Fill, Order, OrderStatus, OrderType, Side
from engine.execution.broker import OrderAck, PairAck

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
_LIMIT_TYPES = (OrderType.LIMIT, OrderType.STOP_LIMIT)


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


def parse_raw_order(raw: Any, symbol: str, client_order_id: str, default_ms: int) -> OrderAck:
    """One order as Binance prints it (an OCO reply's ``orderReports``), under our client order id.

    Args:
        raw: Binance's order object (``orderId``, ``status``, ``type``, ``side``, ``origQty``, ``executedQty``,
            ``cummulativeQuoteQty``, ``price``, ``stopPrice``, ``transactTime``, and ``fills`` in a FULL reply).
        symbol: the unified market symbol (``BTC/USDT``; Binance prints ``BTCUSDT``).
        client_order_id: our id for it (a cancel report carries the cancel's id as ``clientOrderId``).
        default_ms: time to use when the report has none (UTC ms).

    Raises:
        MalformedReplyError: ``raw`` is not an order (no id, side, known status or type, bad numbers).
    """
    if not isinstance(raw, dict) or raw.get("orderId") is None:
        raise MalformedReplyError("order report is not an order object")
    side = _SIDES.get(str(raw.get("side")).lower())
    status = _RAW_STATUS.get(str(raw.get("status")))
    order_type = _RAW_TYPE.get(str(raw.get("type")))
    if side is None or status is None or order_type is None:
        raise MalformedReplyError("order report lacks its side, status or type")
    filled = _finite_float(raw.get("executedQty"), "executedQty")
    quote = _finite_float(raw.get("cummulativeQuoteQty"), "cummulativeQuoteQty")
    stop = _finite_float(raw.get("stopPrice"), "stopPrice")
    created_ms = int(raw.get("transactTime") or raw.get("time") or default_ms)
    order = Order(
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        type=order_type,
        quantity=_finite_float(raw.get("origQty"), "origQty"),
        status=status,
        created_ms=created_ms,
        price=_finite_float(raw.get("price"), "price") if order_type in _LIMIT_TYPES else None,
        stop_price=stop or None,
        exchange_order_id=str(raw["orderId"]),
        filled_quantity=filled,
        average_price=quote / filled if filled > 0 and quote > 0 else None,
    )
    fills = []
    for number, fill in enumerate(raw.get("fills") or []):
        if not isinstance(fill, dict):
            raise MalformedReplyError("order report has a fill that is no object")
        fills.append(Fill(client_order_id, symbol, side, _finite_float(fill.get("qty"), "fill qty"),
                          _finite_float(fill.get("price"), "fill price"),
                          _finite_float(fill.get("commission"), "commission"), created_ms,
                          str(fill.get("commissionAsset") or ""),
                          str(fill.get("tradeId") or f"{raw['orderId']}-{number}")))
    return OrderAck(order, tuple(fills))


def parse_order_list(
    raw: Any, symbol: str, stop_client_id: str, target_client_id: str, default_ms: int, *, recovered: bool = False
) -> PairAck:
    """The pair in a Binance OCO reply (``POST /api/v3/orderList/oco`` or ``DELETE /api/v3/orderList``).

    The legs are found in ``orderReports`` by our client ids (``origClientOrderId`` in a cancel reply,
    ``clientOrderId`` otherwise).

    Raises:
        MalformedReplyError: ``raw`` is not an OCO order list with a report for each of our legs.
    """
    if not isinstance(raw, dict) or raw.get("contingencyType") != "OCO" or raw.get("orderListId") is None:
        raise MalformedReplyError(f"order list reply is not an OCO list: {type(raw).__name__} {str(raw)[:40]!r}")
    reports = raw.get("orderReports")
    if not isinstance(reports, list):
        raise MalformedReplyError("order list reply carries no order reports")
    legs: dict[str, Any] = {}
    for report in reports:
        if isinstance(report, dict):
            legs[str(report.get("origClientOrderId") or report.get("clientOrderId"))] = report
    if stop_client_id not in legs or target_client_id not in legs:
        raise MalformedReplyError("order list reply lacks one of our legs")
    default_ms = int(raw.get("transactionTime") or default_ms)
    return PairAck(parse_raw_order(legs[stop_client_id], symbol, stop_client_id, default_ms),
                   parse_raw_order(legs[target_client_id], symbol, target_client_id, default_ms), recovered)
