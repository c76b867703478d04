"""Provides reconcile: after a restart, make the restored state agree with the exchange, logging each repair.

In order: (1) every stored order not known to be finished is resolved by client id (found, proven
never placed, or still unknown: then it stays unknown and its symbol waits): an entry that filled
while we were down is booked net of fees and protected, a stop that filled closes its position; a
stop-and-target pair (an OCO: the stop row and its target leg's row, whose id is derived from the
stop's) is read leg by leg: both resting are kept, a leg that sold closes the position (``take_profit``
or ``stop``);
(2) positions are checked against the base-asset balances, with the tracked dust (a position the
exchange no longer holds is closed in the books, a smaller quantity is adopted; coins the bot does
not manage are left alone); (3) every open position without a resting stop is protected; (4) cash
is set to the quote balance. The exchange is the source of truth throughout.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.domain.errors import ExchangeCallException
from engine.domain.models import ExitKind, Order, OrderKind, OrderStatus
from engine.execution.booking import BALANCE_TOLERANCE
from engine.execution.broker import OrderAck, pair_client_ids
from engine.execution.order_resolution import Outcome, Resolution
from engine.execution.protection import ProtectionState

if TYPE_CHECKING:
    from engine.execution.order_manager import OrderManager

log = logging.getLogger(__name__)


async def _resolve_stored_orders(manager: OrderManager, repairs: list[str]) -> None:
    engine = manager.engine
    stored = [order for order in await manager.store.open_orders() if order.symbol in engine.symbols]
    targets = {order.client_order_id: order for order in stored if order.kind is OrderKind.TAKE_PROFIT}
    for order in stored:
        cid, kind = order.client_order_id, order.kind
        if kind is OrderKind.TAKE_PROFIT:
            continue  # settled with its stop (or, left over, below)
        paired = None
        if kind is OrderKind.STOP:
            target_id = pair_client_ids(cid)[1]
            paired = targets.pop(target_id, None) or await manager.store.get_order(target_id)
        resolution = await _resolve(manager, order, kind, repairs)
        if resolution is None or resolution.outcome is Outcome.UNKNOWN:
            if kind in (OrderKind.ENTRY, OrderKind.EXIT):
                manager.core.pending.add(order.symbol)
            manager.uncertain[cid] = replace(order, status=OrderStatus.SUBMITTED)
            if paired is not None:
                manager.pair_intents[cid] = paired
            continue
        if kind in (OrderKind.ENTRY, OrderKind.EXIT):
            manager.core.pending.add(order.symbol)
        if resolution.outcome is Outcome.ABSENT:
            repairs.append(f"{cid}: {kind} never reached the exchange; dropped"
                           + (" (the decision is stale)" if kind is OrderKind.ENTRY else ""))
        else:
            assert resolution.ack is not None
            state = "filled" if resolution.ack.filled_quantity > 0 else resolution.ack.status.value
            repairs.append(f"{cid}: {kind}{' (with its target)' if paired else ''} found on the exchange ({state}); "
                           "booked")
        if kind is OrderKind.STOP and paired is not None:
            await _settle_stored_pair(manager, order, paired, resolution.ack, repairs)
        elif kind is OrderKind.STOP:
            await _settle_stored_stop(manager, order, resolution.ack)
        else:
            await manager.settle(order, resolution.ack)
    for target in targets.values():  # a target row whose stop is settled already (a crash in between)
        await _settle_stored_target(manager, target, repairs)


async def _resolve(
    manager: OrderManager, order: Order, kind: OrderKind | None, repairs: list[str]
) -> Resolution | None:
    """The stored order looked up by client id (None: markets not loadable, nothing is known)."""
    cid = order.client_order_id
    try:
        resolution = await manager.broker.resolve_order(cid, order.symbol, sent_ms=order.created_ms)
    except ExchangeCallException as exc:
        repairs.append(f"{cid}: could not look it up ({exc}); looking again on the next candle")
        return None
    if resolution.outcome is Outcome.UNKNOWN:
        repairs.append(f"{cid}: {kind} outcome still unknown ({resolution.reason}); looking again on the "
                       "next candle, never re-sending it")
    return resolution


async def _settle_stored_pair(
    manager: OrderManager, stop: Order, target: Order, ack: OrderAck | None, repairs: list[str]
) -> None:
    """A stored pair: both legs resting (kept), a leg sold (its position closes), or gone (protected later)."""
    if ack is None:
        await manager.save(replace(stop, status=OrderStatus.REJECTED))
        await manager.save(replace(target, status=OrderStatus.REJECTED))
        return
    try:
        pair = await manager.broker.fetch_protection(stop.client_order_id, stop.symbol)
    except ExchangeCallException as exc:
        repairs.append(f"{stop.client_order_id}: its target leg not readable ({exc}); looking again next candle")
        pair = None
    if pair is None:
        manager.uncertain[stop.client_order_id] = replace(stop, status=OrderStatus.SUBMITTED)
        manager.pair_intents[stop.client_order_id] = target
        return
    await manager.targets_side.settle_pair(stop.symbol, stop, target, pair)


async def _settle_stored_target(manager: OrderManager, target: Order, repairs: list[str]) -> None:
    resolution = await _resolve(manager, target, OrderKind.TAKE_PROFIT, repairs)
    if resolution is None or resolution.outcome is Outcome.UNKNOWN:
        return
    if resolution.ack is None:
        await manager.save(replace(target, status=OrderStatus.REJECTED))
    elif resolution.ack.filled_quantity > 0 and not resolution.ack.is_open:
        repairs.append(f"{target.client_order_id}: take-profit found filled; booked")
        await manager.books.target_filled(target.symbol, target, resolution.ack)
    else:
        await manager.save(resolution.ack.order.labelled_like(target))


async def _settle_stored_stop(manager: OrderManager, order: Order, ack: OrderAck | None) -> None:
    """A stored stop: resting (kept), filled (its position closes), or gone (the position is protected later)."""
    if ack is None:
        await manager.save(replace(order, status=OrderStatus.REJECTED))
    elif ack.status is OrderStatus.FILLED:
        await manager.books.stop_filled(order.symbol, order, ack)
    elif not ack.status.is_terminal:
        manager.stops[order.symbol] = ack.order.labelled_like(order)
        await manager.save(manager.stops[order.symbol])
    else:
        await manager.save(replace(order, status=ack.status))


async def reconcile(manager: OrderManager) -> list[str]:
    repairs: list[str] = []
    engine, broker, portfolio = manager.engine, manager.broker, manager.portfolio
    store = manager.store
    for symbol in portfolio.positions:
        manager.protection_of(symbol).enter(ProtectionState.UNPROTECTED)
    await _resolve_stored_orders(manager, repairs)

    balances = await broker.fetch_balances()
    for symbol, position in list(portfolio.positions.items()):
        base = manager.base_asset(symbol)
        held = balances[base].total if base in balances else 0.0
        dust = portfolio.dust.get(symbol, 0.0)
        limits = manager.core.limits_for(symbol)
        if held < position.quantity + dust - BALANCE_TOLERANCE:
            kept = max(held - dust, 0.0)
            if kept < max(limits.lot_step, limits.min_qty) or kept * position.last_price < limits.min_notional:
                repairs.append(f"{symbol}: exchange holds {held:g} {base}, books had {position.quantity:g}; "
                               "position closed in the books at its stop")
                # Not the engine's decision: sold outside the bot, or by its stop while the bot was down.
                trade = portfolio.close(symbol, position.stop_price, 0.0, manager.now(), "reconciled: not held",
                                        ExitKind.MANUAL)
                manager.protection.pop(symbol, None)
                manager.engine.emit_all(manager.core.on_trade_closed(trade, manager.now()).events)
                await store.record_trade(trade)
                await store.delete_position(symbol)
                continue
            repairs.append(f"{symbol}: quantity {position.quantity:g} -> {kept:g} {base} (as held on the exchange)")
            portfolio.update(replace(position, quantity=kept))
        elif held > position.quantity + dust + BALANCE_TOLERANCE:
            log.info("%s: exchange holds %g %s, the position is %g (+%g dust); the rest is not the bot's",
                     symbol, held, base, position.quantity, dust)
    for symbol in engine.symbols:
        base = manager.base_asset(symbol)
        if symbol not in portfolio.positions and base in balances and balances[base].total > 0:
            log.info("%s: exchange holds %g %s the bot does not manage (dust %g); left alone", symbol,
                     balances[base].total, base, portfolio.dust.get(symbol, 0.0))

    try:
        open_ids = {ack.client_order_id for ack in await broker.fetch_open_orders()}
    except ExchangeCallException as exc:
        open_ids = None
        repairs.append(f"open orders unknown ({exc}); stops checked on the next candles")
    for symbol in sorted(portfolio.positions):
        stop, target = manager.stops.get(symbol), manager.targets.get(symbol)
        if stop is not None and (open_ids is None or (stop.client_order_id in open_ids and (
                target is None or target.client_order_id in open_ids))):
            manager.protection_of(symbol).enter(ProtectionState.PROTECTED)  # a stop (or both legs) rests: kept
            continue
        manager.stops.pop(symbol, None)
        manager.targets.pop(symbol, None)
        if manager.protection_of(symbol).exiting or symbol in manager.core.pending:
            continue  # an exit is under way (or unknown): it is driven on the next candle
        repairs.append(f"{symbol}: open position had no exchange stop; placing one")
        protection = manager.protection_of(symbol)
        protection.enter(ProtectionState.UNPROTECTED)
        protection.new_budget()
        await manager.drive_protection(symbol)

    quote = engine.symbols[0].partition("/")[2]
    if quote in balances:
        cash = balances[quote].total
        if abs(cash - portfolio.cash) > 0.01:
            repairs.append(f"cash {portfolio.cash:.2f} -> {cash:.2f} {quote} (the exchange balance)")
        portfolio.cash = cash
    if repairs:
        engine.recorder.save_portfolio(portfolio, manager.now())  # type: ignore[union-attr]
    return repairs
