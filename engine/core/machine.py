"""Provides the compiled decision core: ``engine.core.decision.DecisionCore`` as kernels over the state records.

Per closed bar of a symbol (:func:`decide`): the volatility breaker's reading, the open position's
trailing stop and exit signal, or for a flat symbol the lifting of an expired loss-limit halt, the limit
check before an entry, and the entry through the breakers and the risk sizing. :func:`check_account`
tests the loss limits (a breach closes everything and halts), :func:`trade_closed` feeds a closed trade to
the limits and the loss breaker, :func:`emergency_exit` closes everything and latches. Decisions and events
go to the outbox rows (``engine.core.records``); the driver executes decisions and calls
:func:`order_resolved`.

Arguments shared by every kernel, in this order: ``config`` (one row), ``markets`` (per symbol),
``account`` (one row), ``breakers`` (three rows), ``api_errors`` (the system breaker's window),
``positions`` (per symbol), then the outbox arrays ``events``, ``decisions``, ``trades``, ``counts``.
"""

from __future__ import annotations

import math
from typing import Any

from engine.core.breakers import advance, allows_entry, check_loss, check_volatility, record_trade_result
from engine.core.jit import njit
from engine.core.limits import check_limits, is_halted
from engine.core.records import (
    DECISION_ENTRY,
    DECISION_EXIT,
    DECISION_STOP_MOVED,
    EV_EMERGENCY_EXIT_STARTED,
    EV_TRADING_STATE_CHANGED,
    add_event,
    next_decision,
)
from engine.core.sizing import position_size, tightened_stop, trailing_candidate
from engine.core.state import (
    ACTION_CLOSE_ALL,
    ACTIVE,
    CLOSED,
    EMERGENCY_ARMED,
    EMERGENCY_IN_PROGRESS,
    EXIT_EMERGENCY,
    EXIT_RISK_LIMIT,
    EXIT_SIGNAL,
    HALTED,
    LONG,
    ORDER_ENTRY,
    ORDER_EXIT,
    SHORT,
    VOLATILITY,
)


@njit()
def equity(account: Any, positions: Any) -> float:
    """Cash plus every open position marked at its last price, summed in opening order (``Portfolio.equity``)."""
    open_count = account[0]["open_count"]
    marked = 0.0
    if open_count == 0:
        return float(account[0]["cash"] + marked)
    last_seq = -1
    for _ in range(open_count):  # the next open position by opening order (a handful of symbols)
        best = -1
        for k in range(len(positions)):
            seq = positions[k]["seq"]
            if positions[k]["open"] and seq > last_seq and (best < 0 or seq < positions[best]["seq"]):
                best = k
        position = positions[best]
        last_seq = position["seq"]
        if position["side"] == LONG:
            marked += position["quantity"] * position["last_price"]
        else:
            marked -= position["quantity"] * position["last_price"]
    return float(account[0]["cash"] + marked)


@njit()
def set_trading_state(account: Any, events: Any, counts: Any, state: int, now_ms: int) -> None:
    """Move to ``state`` with a ``TradingStateChanged`` event, unless already there."""
    previous = account[0]["trading_state"]
    if previous == state:
        return
    account[0]["trading_state"] = state
    add_event(events, counts, EV_TRADING_STATE_CHANGED, now_ms, -1, state, previous, 0.0, 0.0)


@njit()
def _close_all(markets: Any, account: Any, positions: Any, decisions: Any, counts: Any, now_ms: int,
               reason: int) -> int:
    """Exit decisions for every open position without a pending order, in symbol-name order; how many."""
    count = 0
    for rank in range(len(markets)):
        for symbol in range(len(markets)):
            if markets[symbol]["name_rank"] != rank:
                continue
            position = positions[symbol]
            if not position["open"] or position["pending"]:
                continue
            position["pending"] = True
            position["order_kind"] = ORDER_EXIT
            position["order_reason"] = reason
            position["order_bar"] = -1
            position["order_daily_loss_pct"] = account[0]["check_daily_loss_pct"]
            position["order_drawdown_pct"] = account[0]["check_drawdown_pct"]
            position["order_breached"] = account[0]["check_breached"]
            row = next_decision(decisions, counts, DECISION_EXIT, symbol, now_ms, -1)
            decisions[row]["reason"] = reason
            decisions[row]["daily_loss_pct"] = account[0]["check_daily_loss_pct"]
            decisions[row]["drawdown_pct"] = account[0]["check_drawdown_pct"]
            decisions[row]["breached"] = account[0]["check_breached"]
            count += 1
    return count


@njit()
def check_account(config: Any, markets: Any, account: Any, positions: Any, events: Any, decisions: Any,
                  counts: Any, now_ms: int, equity_now: float) -> None:
    """Test the loss limits at the bar close ``now_ms``; a breach halts and closes every position."""
    action = check_limits(config, account, events, counts, equity_now, now_ms, False)
    if action != ACTION_CLOSE_ALL:
        return
    if account[0]["trading_state"] != HALTED:
        account[0]["halted_by_limit"] = True
    set_trading_state(account, events, counts, HALTED, now_ms)
    _close_all(markets, account, positions, decisions, counts, now_ms, EXIT_RISK_LIMIT)


@njit()
def _manage_position(config: Any, markets: Any, positions: Any, decisions: Any, counts: Any, symbol: int,
                     bar: Any, now_ms: int) -> None:
    position = positions[symbol]
    side = position["side"]
    best = position["best_price"]
    if side == LONG:
        if bar["high"] > best:
            best = bar["high"]
    elif bar["low"] < best:
        best = bar["low"]
    swing = bar["swing_low"] if side == LONG else bar["swing_high"]
    raw = trailing_candidate(config, side, position["entry_price"], best, bar["close"], bar["atr"], swing)
    tightened = tightened_stop(markets, symbol, side, raw, position["stop_price"])
    moved = not math.isnan(tightened)
    if moved:
        position["stop_price"] = tightened
        position["trailing_active"] = True
    position["best_price"] = best
    position["bars_held"] += 1
    if moved:
        row = next_decision(decisions, counts, DECISION_STOP_MOVED, symbol, now_ms, bar["index"])
        decisions[row]["side"] = side
        decisions[row]["stop_price"] = tightened
    if bar["exit_long"] if side == LONG else bar["exit_short"]:
        position["pending"] = True
        position["order_kind"] = ORDER_EXIT
        position["order_reason"] = EXIT_SIGNAL
        position["order_bar"] = bar["index"]
        row = next_decision(decisions, counts, DECISION_EXIT, symbol, now_ms, bar["index"])
        decisions[row]["reason"] = EXIT_SIGNAL


@njit()
def _lift_expired_limit_halt(config: Any, account: Any, positions: Any, events: Any, counts: Any,
                             now_ms: int) -> None:
    """While flat and halted by a loss limit, re-check; a lifted daily halt shows ACTIVE again."""
    if is_halted(account):
        check_limits(config, account, events, counts, equity(account, positions), now_ms, False)
        if is_halted(account):
            return
    account[0]["halted_by_limit"] = False
    set_trading_state(account, events, counts, ACTIVE, now_ms)


@njit()
def _entry(config: Any, markets: Any, account: Any, breakers: Any, api_errors: Any, positions: Any, events: Any,
           decisions: Any, counts: Any, symbol: int, bar: Any, now_ms: int) -> None:
    if is_halted(account):
        return
    allowed, size_multiplier = allows_entry(config, account, breakers)
    if not allowed:
        # Give open breakers a fresh reading so they can cool down and half-open without a new trade.
        daily = account[0]["check_daily_loss_pct"] if account[0]["has_check"] else 0.0
        check_loss(config, account, breakers, events, counts, account[0]["consecutive_losses"], daily, now_ms)
        advance(config, account, breakers, api_errors, events, counts, now_ms)
        allowed, size_multiplier = allows_entry(config, account, breakers)
        if not allowed:
            return
    side = LONG if bar["entry_direction"] > 0 else SHORT
    price = bar["close"]
    atr = bar["atr"]
    cash = account[0]["cash"]
    available = 0.0 if 0.0 > cash else cash  # max(cash, 0.0)
    quantity, stop, bound = position_size(
        config, markets, symbol, equity(account, positions), available, price, atr, bar["entry_strength"],
        bar["entry_multiplier"], bar["volatility_ratio"], size_multiplier, side,
    )
    if not quantity > 0.0 or math.isnan(stop):
        return
    take_profit = config[0]["take_profit_atr_multiple"]
    has_target = take_profit > 0
    target = price + side * take_profit * atr if has_target else math.nan
    position = positions[symbol]
    position["pending"] = True
    position["order_kind"] = ORDER_ENTRY
    position["order_side"] = side
    position["order_quantity"] = quantity
    position["order_stop"] = stop
    position["order_target"] = target
    position["order_has_target"] = has_target
    position["order_bar"] = bar["index"]
    position["order_bound"] = bound
    row = next_decision(decisions, counts, DECISION_ENTRY, symbol, now_ms, bar["index"])
    decision = decisions[row]
    decision["side"] = side
    decision["quantity"] = quantity
    decision["stop_price"] = stop
    decision["take_profit_price"] = target
    decision["has_take_profit"] = has_target
    decision["strength"] = bar["entry_strength"]
    decision["multiplier"] = bar["entry_multiplier"]
    decision["bound"] = bound


@njit()
def decide(config: Any, markets: Any, account: Any, breakers: Any, api_errors: Any, positions: Any, events: Any,
           decisions: Any, counts: Any, symbol: int, bar: Any) -> None:
    """``DecisionCore.on_bar`` for the closed bar ``bar`` (a ``BAR_DTYPE`` row) of ``symbol``."""
    now_ms = bar["close_ms"]
    acc = account[0]
    if acc["watch_volatility"] or bar["volatility_alarm"]:
        check_volatility(config, breakers, events, counts, bar["atr"], bar["normal_volatility"], now_ms)
        acc["watch_volatility"] = breakers[VOLATILITY]["state"] != CLOSED
    position = positions[symbol]
    if position["pending"]:
        return
    if position["open"]:
        _manage_position(config, markets, positions, decisions, counts, symbol, bar, now_ms)
        return
    if acc["halted_by_limit"]:
        _lift_expired_limit_halt(config, account, positions, events, counts, now_ms)
    if bar["entry_direction"] == 0:
        return
    # The limits are checked at this close before an entry (the equity before it marks a new day's start).
    check_account(config, markets, account, positions, events, decisions, counts, now_ms, equity(account, positions))
    if acc["trading_state"] != ACTIVE:
        return
    _entry(config, markets, account, breakers, api_errors, positions, events, decisions, counts, symbol, bar, now_ms)


@njit()
def trade_closed(config: Any, account: Any, breakers: Any, positions: Any, events: Any, counts: Any, pnl: float,
                 now_ms: int, bar_close_ms: int, instant: bool) -> None:
    """Check the limits after a closed trade and feed it to the loss breaker (``DecisionCore.on_trade_closed``).

    ``bar_close_ms``: the close of the bar a simulated exit filled in (its trading day); with ``instant``
    (live) the fill is the instant ``now_ms``.
    """
    equity_now = equity(account, positions)
    if instant:
        check_limits(config, account, events, counts, equity_now, now_ms, True)
    else:
        check_limits(config, account, events, counts, equity_now, bar_close_ms, False)
    daily = account[0]["check_daily_loss_pct"]
    record_trade_result(config, account, breakers, events, counts, pnl, now_ms, daily)
    check_loss(config, account, breakers, events, counts, account[0]["consecutive_losses"], daily, now_ms)


@njit(cache=True)
def order_resolved(positions: Any, symbol: int) -> None:
    """The driver filled or rejected the symbol's pending order."""
    positions[symbol]["pending"] = False
    positions[symbol]["order_kind"] = 0


@njit(cache=True)
def emergency_exit(markets: Any, account: Any, positions: Any, events: Any, decisions: Any, counts: Any,
                   now_ms: int) -> bool:
    """Close every position at market and halt; a second call while one runs or is done does nothing."""
    acc = account[0]
    if acc["emergency_phase"] != EMERGENCY_ARMED:
        return False
    acc["emergency_phase"] = EMERGENCY_IN_PROGRESS
    acc["emergency_since_ms"] = now_ms
    acc["halted_by_limit"] = False
    add_event(events, counts, EV_EMERGENCY_EXIT_STARTED, now_ms, -1, 0, 0, 0.0, 0.0)
    set_trading_state(account, events, counts, HALTED, now_ms)
    _close_all(markets, account, positions, decisions, counts, now_ms, EXIT_EMERGENCY)
    return True
