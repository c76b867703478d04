"""Provides the compiled simulated account: ``engine.simulation.account.SimulatedAccount.process_bar`` as one kernel.

For each closed bar of a symbol, in this order: the order decided on the previous bar fills at this
bar's open (``engine.simulation.fills.FillModel``: slippage against us, commission per side); the open position's
stop and target are tested inside the bar (a gap fills at the open; both in one bar: the stop, flagged);
the position is marked at the close and the loss limits are checked; then the decision core decides
(:func:`engine.core.machine.decide`). Closed trades are appended to the outbox's trade rows.
"""

from __future__ import annotations

import math
from typing import Any

from engine.core.jit import njit
from engine.core.machine import check_account, decide, equity, order_resolved, trade_closed
from engine.core.records import EV_ORDER_REJECTED, EV_POSITION_CLOSED, EV_POSITION_OPENED, add_event, next_trade
from engine.core.state import EXIT_END_OF_DATA, EXIT_STOP, EXIT_TARGET, EXIT_TRAILING_STOP, LONG, ORDER_ENTRY

QUANTITY_EPSILON = 1e-12  # engine.core.portfolio.QUANTITY_EPSILON


@njit()
def market_price(config: Any, buy: bool, reference_price: float) -> float:
    """``FillModel.market_price``: slippage against the taker."""
    if buy:
        return float(reference_price * (1.0 + config[0]["slippage_rate"]))
    return float(reference_price * (1.0 - config[0]["slippage_rate"]))


@njit()
def commission(config: Any, quantity: float, price: float) -> float:
    return float(abs(quantity) * price * config[0]["commission_rate"])


@njit()
def close_position(config: Any, account: Any, breakers: Any, positions: Any, events: Any, trades: Any,
                   counts: Any, symbol: int, price: float, time_ms: int, kind: int, ambiguous: bool) -> bool:
    """Close the symbol's position at ``price`` (``SimulatedAccount._close`` and ``Portfolio.close``)."""
    position = positions[symbol]
    if not position["open"] or position["quantity"] <= QUANTITY_EPSILON:
        return False
    acc = account[0]
    side = position["side"]
    quantity = position["quantity"]
    fee = commission(config, quantity, price)
    acc["cash"] += side * quantity * price - fee
    acc["fees_paid"] += fee
    gross = side * (price - position["entry_price"]) * quantity
    fees = position["entry_fee"] + fee
    pnl = gross - fees
    acc["realized_pnl"] += pnl
    position["open"] = False
    acc["open_count"] -= 1
    row = trades[next_trade(trades, counts)]
    row["symbol"] = symbol
    row["side"] = side
    row["quantity"] = quantity
    row["entry_price"] = position["entry_price"]
    row["exit_price"] = price
    row["entry_ms"] = position["entry_ms"]
    row["exit_ms"] = time_ms
    row["pnl"] = pnl
    row["fees"] = fees
    row["exit_kind"] = kind
    row["ambiguous"] = ambiguous
    row["size_bound"] = position["entry_bound"]
    row["entry_bar"] = position["entry_bar"]
    row["exit_bar"] = position["order_bar"] if kind < EXIT_STOP or kind > EXIT_TARGET else -1
    row["daily_loss_pct"] = position["order_daily_loss_pct"]
    row["drawdown_pct"] = position["order_drawdown_pct"]
    row["breached"] = position["order_breached"]
    add_event(events, counts, EV_POSITION_CLOSED, time_ms, symbol, kind, 0, pnl, price)
    trade_closed(config, account, breakers, positions, events, counts, pnl, time_ms, acc["bar_close_ms"], False)
    return True


@njit()
def _fill_entry(config: Any, account: Any, positions: Any, events: Any, counts: Any, symbol: int,
                open_price: float, time_ms: int) -> bool:
    position = positions[symbol]
    acc = account[0]
    if position["open"]:
        acc["rejected_orders"] += 1
        return False
    side = position["order_side"]
    quantity = position["order_quantity"]
    price = market_price(config, side == LONG, open_price)
    fee = commission(config, quantity, price)
    cash = acc["cash"]
    if side == LONG and quantity * price + fee > (0.0 if 0.0 > cash else cash):
        acc["rejected_orders"] += 1  # the open gapped up past what cash can pay
        add_event(events, counts, EV_ORDER_REJECTED, time_ms, symbol, 0, 0, quantity, price)
        return False
    acc["cash"] -= side * quantity * price + fee
    acc["fees_paid"] += fee
    position["open"] = True
    position["side"] = side
    position["quantity"] = quantity
    position["entry_price"] = price
    position["entry_ms"] = time_ms
    position["entry_fee"] = fee
    position["stop_price"] = position["order_stop"]
    position["initial_stop_price"] = position["order_stop"]
    position["take_profit_price"] = position["order_target"]
    position["has_take_profit"] = position["order_has_target"]
    position["best_price"] = price
    position["trailing_active"] = False
    position["bars_held"] = 0
    position["last_price"] = price
    position["seq"] = acc["next_seq"]
    acc["next_seq"] += 1
    acc["open_count"] += 1
    position["entry_bar"] = position["order_bar"]
    position["entry_bound"] = position["order_bound"]
    add_event(events, counts, EV_POSITION_OPENED, time_ms, symbol, side, 0, quantity, price)
    return True


@njit()
def _fill_pending(config: Any, account: Any, breakers: Any, positions: Any, events: Any, trades: Any,
                  counts: Any, symbol: int, open_price: float, time_ms: int) -> bool:
    position = positions[symbol]
    kind = position["order_kind"]
    reason = position["order_reason"]
    order_resolved(positions, symbol)
    if kind == ORDER_ENTRY:
        return bool(_fill_entry(config, account, positions, events, counts, symbol, open_price, time_ms))
    if not position["open"]:
        return False
    price = market_price(config, position["side"] != LONG, open_price)
    return bool(close_position(config, account, breakers, positions, events, trades, counts, symbol, price,
                               time_ms, reason, False))


@njit()
def _check_stops(config: Any, account: Any, breakers: Any, positions: Any, events: Any, trades: Any, counts: Any,
                 symbol: int, bar: Any) -> bool:
    """Stop and target inside the bar from its open, high and low (``FillModel`` trigger rules)."""
    position = positions[symbol]
    side = position["side"]
    stop = position["stop_price"]
    bar_open = bar["open"]
    if side == LONG:
        stop_at = bar_open if bar_open <= stop else (stop if bar["low"] <= stop else math.nan)
    else:
        stop_at = bar_open if bar_open >= stop else (stop if bar["high"] >= stop else math.nan)
    target_at = math.nan
    hit_target = False
    if position["has_take_profit"]:
        target = position["take_profit_price"]
        if side == LONG:
            if bar_open >= target:
                target_at, hit_target = bar_open, True
            elif bar["high"] >= target:
                target_at, hit_target = target, True
        elif bar_open <= target:
            target_at, hit_target = bar_open, True
        elif bar["low"] <= target:
            target_at, hit_target = target, True
    time_ms = bar["open_ms"]
    if not math.isnan(stop_at):
        kind = EXIT_TRAILING_STOP if position["trailing_active"] else EXIT_STOP
        price = market_price(config, side != LONG, stop_at)
        return bool(close_position(config, account, breakers, positions, events, trades, counts, symbol, price,
                                   time_ms, kind, hit_target))
    if hit_target:
        return bool(close_position(config, account, breakers, positions, events, trades, counts, symbol, target_at,
                                   time_ms, EXIT_TARGET, False))
    return False


@njit()
def simulate_bar(config: Any, markets: Any, account: Any, breakers: Any, api_errors: Any, positions: Any,
                 events: Any, decisions: Any, trades: Any, counts: Any, symbol: int, bar: Any) -> float:
    """Fills, stops, mark, limit check and decision for one closed bar; the equity checked, else NaN."""
    acc = account[0]
    acc["bar_close_ms"] = bar["close_ms"]
    traded = False
    position = positions[symbol]
    if position["pending"]:
        traded = _fill_pending(config, account, breakers, positions, events, trades, counts, symbol, bar["open"],
                               bar["open_ms"])
    if position["open"]:
        traded |= _check_stops(config, account, breakers, positions, events, trades, counts, symbol, bar)
        if position["open"]:
            position["last_price"] = bar["close"]
    checked = math.nan
    if acc["open_count"] > 0 or traded:
        checked = equity(account, positions)
        check_account(config, markets, account, positions, events, decisions, counts, bar["close_ms"], checked)
    decide(config, markets, account, breakers, api_errors, positions, events, decisions, counts, symbol, bar)
    return checked


@njit(cache=True)
def close_all_at(config: Any, markets: Any, account: Any, breakers: Any, positions: Any, events: Any,
                 trades: Any, counts: Any, prices: Any, time_ms: int) -> None:
    """Close every open position at ``prices[symbol]`` minus slippage (end of data), in name order."""
    account[0]["bar_close_ms"] = time_ms
    for rank in range(len(markets)):
        for symbol in range(len(markets)):
            if markets[symbol]["name_rank"] != rank or not positions[symbol]["open"]:
                continue
            price = market_price(config, positions[symbol]["side"] != LONG, prices[symbol])
            positions[symbol]["order_bar"] = -1
            close_position(config, account, breakers, positions, events, trades, counts, symbol, price, time_ms,
                           EXIT_END_OF_DATA, False)
    for symbol in range(len(positions)):
        order_resolved(positions, symbol)
