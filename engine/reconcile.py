"""Provides reconcile: after a restart, make the restored state agree with the exchange, logging each repair.

In order: (1) every stored order not known to be finished is looked up by client id and settled
(an entry that filled while we were down is booked and protected; an intent that never reached the
exchange is marked so; a stop that filled closes its position); (2) positions are checked against the
base-asset balances (a position the exchange no longer holds is closed in the books, a different
quantity is adopted); (3) every open position gets an exchange stop if it has none; (4) cash is set to
the quote balance. The exchange is the source of truth throughout.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.errors import ExchangeCallException
from engine.models import OrderStatus
from engine.order_manager import ENTRY, EXIT, STOP, order_kind

if TYPE_CHECKING:
    from engine.order_manager import OrderManager

log = logging.getLogger(__name__)


async def reconcile(manager: OrderManager) -> list[str]:
    repairs: list[str] = []
    engine, broker, portfolio = manager.engine, manager.broker, manager.portfolio
    store = manager.store
    for order in await store.open_orders():
        if order.symbol not in engine.symbols:
            continue
        cid = order.client_order_id
        try:
            ack = await broker.fetch_order(cid, order.symbol)
        except ExchangeCallException as exc:
            repairs.append(f"{cid}: could not look it up ({exc}); retrying on the next candle")
            if order_kind(order) in (ENTRY, EXIT):
                manager.core.pending.add(order.symbol)
                manager.uncertain[cid] = order
            elif order_kind(order) == STOP:
                manager.stops[order.symbol] = order
            continue
        kind = order_kind(order)
        if kind == STOP:
            if ack is None:
                await manager._save(replace(order, status=OrderStatus.REJECTED))
                repairs.append(f"{cid}: stop intent never reached the exchange")
            elif ack.status is OrderStatus.FILLED:
                repairs.append(f"{cid}: stop filled while the engine was down; position closed")
                await manager._stop_filled(order.symbol, order, ack)
            elif not ack.status.is_terminal:
                manager.stops[order.symbol] = replace(ack.order, reason=order.reason, created_ms=order.created_ms)
                await manager._save(manager.stops[order.symbol])
            else:
                await manager._save(replace(order, status=ack.status))
        elif kind in (ENTRY, EXIT):
            manager.core.pending.add(order.symbol)
            if ack is None:
                repairs.append(f"{cid}: {kind} intent never reached the exchange; dropped (the decision is stale)")
            else:
                state = "recovered" if ack.filled_quantity > 0 else ack.status.value
                repairs.append(f"{cid}: {kind} found on the exchange ({state}); booked")
            await manager.settle(order, ack)

    balances = await broker.fetch_balances()
    for symbol, position in list(portfolio.positions.items()):
        base = manager.base_assets.get(symbol, symbol.partition("/")[0])
        held = balances[base].total if base in balances else 0.0
        step = manager.core.limits_for(symbol).lot_step
        if held + step < position.quantity:
            if held < step or held * position.last_price < manager.core.limits_for(symbol).min_notional:
                repairs.append(f"{symbol}: exchange holds {held:g} {base}, books had {position.quantity:g}; "
                               "position closed in the books at its stop")
                trade = portfolio.close(symbol, position.stop_price, 0.0, manager._now(), "reconciled: not held")
                manager.engine.emit_all(manager.core.on_trade_closed(trade, manager._now()).events)
                await store.record_trade(trade)
                await store.delete_position(symbol)
                continue
            repairs.append(f"{symbol}: quantity {position.quantity:g} -> {held:g} {base} (as held on the exchange)")
            portfolio.update(replace(position, quantity=held))
    for symbol in engine.symbols:
        base = manager.base_assets.get(symbol, symbol.partition("/")[0])
        if symbol not in portfolio.positions and base in balances and balances[base].total > 0:
            log.info("%s: exchange holds %g %s the bot does not manage; left alone", symbol,
                     balances[base].total, base)

    try:
        open_ids = {ack.client_order_id for ack in await broker.fetch_open_orders()}
    except ExchangeCallException as exc:
        open_ids = None
        repairs.append(f"open orders unknown ({exc}); stops checked on the next candles")
    for symbol in sorted(portfolio.positions):
        stop = manager.stops.get(symbol)
        if stop is None or (open_ids is not None and stop.client_order_id not in open_ids):
            manager.stops.pop(symbol, None)
            repairs.append(f"{symbol}: open position had no exchange stop; placed one")
            await manager.protect(symbol)

    quote = engine.symbols[0].partition("/")[2]
    if quote in balances:
        cash = balances[quote].total
        if abs(cash - portfolio.cash) > 0.01:
            repairs.append(f"cash {portfolio.cash:.2f} -> {cash:.2f} {quote} (the exchange balance)")
        portfolio.cash = cash
    if repairs:
        engine.recorder.save_portfolio(portfolio, manager._now())  # type: ignore[union-attr]
    return repairs
