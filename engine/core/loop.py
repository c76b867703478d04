"""Provides the compiled backtest loop: every bar of the merged timeline through the simulated account.

Item ``n`` of the timeline is bar ``bars[n]`` of symbol ``symbols[n]`` (``engine.backtest.loop.merge_timeline``);
the per-symbol input arrays come as tuples indexed by symbol (no copy of the prepared arrays). Equity is
sampled at the last item of every open time. While the account is idle (flat, nothing pending, no
volatility watch), a bar without an entry signal or volatility alarm changes nothing but the sample, so
it is not simulated (``skip_idle``; the same results either way, tested).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.core.jit import njit
from engine.core.records import DECISION_DTYPE, EVENT_DTYPE, N_DECISIONS, N_EVENTS, N_TRADES, TRADE_DTYPE
from engine.core.simulated import simulate_bar


@njit()
def load_bar(bar: Any, symbol: int, index: int, bar_ms: int, open_time: Any, opens: Any, highs: Any, lows: Any,
             closes: Any, atr: Any, normal: Any, ratio: Any, alarm: Any, direction: Any, strength: Any,
             multiplier: Any, exit_long: Any, exit_short: Any, swing_low: Any, swing_high: Any) -> None:
    """Fill the bar row with bar ``index`` of ``symbol`` from the per-symbol array tuples."""
    row = bar[0]
    row["index"] = index
    row["open_ms"] = open_time[symbol][index]
    row["close_ms"] = open_time[symbol][index] + bar_ms
    row["open"] = opens[symbol][index]
    row["high"] = highs[symbol][index]
    row["low"] = lows[symbol][index]
    row["close"] = closes[symbol][index]
    row["atr"] = atr[symbol][index]
    row["normal_volatility"] = normal[symbol][index]
    row["volatility_ratio"] = ratio[symbol][index]
    row["volatility_alarm"] = alarm[symbol][index]
    row["entry_direction"] = direction[symbol][index]
    row["entry_strength"] = strength[symbol][index]
    row["entry_multiplier"] = multiplier[symbol][index]
    row["exit_long"] = exit_long[symbol][index]
    row["exit_short"] = exit_short[symbol][index]
    row["swing_low"] = swing_low[symbol][index]
    row["swing_high"] = swing_high[symbol][index]


@njit()
def _grown(rows: Any, used: int, needed: int) -> Any:
    """``rows`` with room for ``needed`` rows (doubling), the first ``used`` kept."""
    if needed <= len(rows):
        return rows
    size = max(2 * len(rows), needed)
    bigger = np.empty(size, rows.dtype)
    for k in range(used):
        bigger[k] = rows[k]
    return bigger


@njit(cache=True)
def run_timeline(config: Any, markets: Any, account: Any, breakers: Any, api_errors: Any, positions: Any,
                 bar: Any, events: Any, decisions: Any, trades: Any, counts: Any, symbols: Any, bars: Any,
                 group_end: Any, bar_ms: int, skip_idle: bool, keep_events: bool, keep_decisions: bool,
                 open_time: Any, opens: Any, highs: Any, lows: Any, closes: Any, atr: Any, normal: Any, ratio: Any,
                 alarm: Any, direction: Any, strength: Any, multiplier: Any, exit_long: Any, exit_short: Any,
                 swing_low: Any, swing_high: Any) -> tuple[Any, Any, Any, Any, Any, Any, Any]:
    """Simulate every timeline item; returns ``(equity, in_market, event_counts, trades, events, decisions,
    last_bar)`` with equity sampled per open time, event counts per kind code and the rows kept."""
    total = len(symbols)
    equity = np.empty(len(group_end), np.float64)
    in_market = np.zeros(len(group_end), np.bool_)
    kind_counts = np.zeros(32, np.int64)
    all_trades = np.empty(64, TRADE_DTYPE)
    all_events = np.empty(64 if keep_events else 0, EVENT_DTYPE)
    all_decisions = np.empty(64 if keep_decisions else 0, DECISION_DTYPE)
    last_bar = np.full(len(positions), -1, np.int64)
    n_trades = 0
    n_events = 0
    n_decisions = 0
    acc = account[0]
    group = 0
    for n in range(total):
        symbol = symbols[n]
        index = bars[n]
        last_bar[symbol] = index
        if (skip_idle and acc["open_count"] == 0 and direction[symbol][index] == 0 and not alarm[symbol][index]
                and not acc["watch_volatility"] and not positions[symbol]["pending"] and not _any_pending(positions)):
            value = acc["cash"]
        else:
            load_bar(bar, symbol, index, bar_ms, open_time, opens, highs, lows, closes, atr, normal, ratio, alarm,
                     direction, strength, multiplier, exit_long, exit_short, swing_low, swing_high)
            counts[N_EVENTS] = 0
            counts[N_DECISIONS] = 0
            counts[N_TRADES] = 0
            checked = simulate_bar(config, markets, account, breakers, api_errors, positions, events, decisions,
                                   trades, counts, symbol, bar[0])
            value = checked if acc["open_count"] > 0 else acc["cash"]
            for k in range(counts[N_EVENTS]):
                kind_counts[events[k]["kind"]] += 1
            if keep_events and counts[N_EVENTS]:
                all_events = _grown(all_events, n_events, n_events + counts[N_EVENTS])
                for k in range(counts[N_EVENTS]):
                    all_events[n_events] = events[k]
                    n_events += 1
            if keep_decisions and counts[N_DECISIONS]:
                all_decisions = _grown(all_decisions, n_decisions, n_decisions + counts[N_DECISIONS])
                for k in range(counts[N_DECISIONS]):
                    all_decisions[n_decisions] = decisions[k]
                    n_decisions += 1
            if counts[N_TRADES]:
                all_trades = _grown(all_trades, n_trades, n_trades + counts[N_TRADES])
                for k in range(counts[N_TRADES]):
                    all_trades[n_trades] = trades[k]
                    n_trades += 1
        if n == group_end[group]:
            equity[group] = value
            in_market[group] = acc["open_count"] > 0
            group += 1
    return (equity, in_market, kind_counts, all_trades[:n_trades], all_events[:n_events],
            all_decisions[:n_decisions], last_bar)


@njit()
def _any_pending(positions: Any) -> bool:
    for k in range(len(positions)):
        if positions[k]["pending"]:
            return True
    return False
