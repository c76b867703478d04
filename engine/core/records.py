"""Provides the compiled core's output records: events, decisions and closed trades as typed rows.

A kernel appends rows to per-bar scratch arrays (:class:`Outbox`'s three arrays and their counters); the
driver copies them out after each bar. Each row carries an integer ``kind``; :data:`EVENT_KINDS` names
event kinds as the Python core's ``Event.kind`` does, so event counts compare one to one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.core.jit import njit

# Event kinds: the Python core's Event.kind strings, by code.
(EV_TRADING_STATE_CHANGED, EV_RISK_LIMIT_WARNING, EV_RISK_LIMIT_BREACHED, EV_RISK_HALT_CLEARED,
 EV_BREAKER_TRIPPED, EV_BREAKER_COOLING_DOWN, EV_BREAKER_HALF_OPENED, EV_BREAKER_RESET, EV_ORDER_REJECTED,
 EV_POSITION_OPENED, EV_POSITION_CLOSED, EV_EMERGENCY_EXIT_STARTED, EV_EMERGENCY_EXIT_COMPLETED,
 EV_EMERGENCY_EXIT_CLEARED) = range(14)
EVENT_KINDS: tuple[str, ...] = (
    "TradingStateChanged", "RiskLimitWarning", "RiskLimitBreached", "RiskHaltCleared", "BreakerTripped",
    "BreakerCoolingDown", "BreakerHalfOpened", "BreakerReset", "OrderRejected", "PositionOpened",
    "PositionClosed", "EmergencyExitStarted", "EmergencyExitCompleted", "EmergencyExitCleared",
)

# Decision kinds (engine.core.decision: EntryDecision, ExitDecision, StopMoved).
DECISION_ENTRY, DECISION_EXIT, DECISION_STOP_MOVED = 0, 1, 2

EVENT_DTYPE = np.dtype([
    ("kind", np.int64), ("time_ms", np.int64), ("symbol", np.int64),  # symbol -1: the account
    ("code", np.int64),  # limit bit, breaker row, or the new trading state
    ("detail", np.int64),  # the previous state, or the breaker's previous state
    ("value", np.float64), ("other", np.float64),  # e.g. a limit's value and its limit, in pct
], align=True)

DECISION_DTYPE = np.dtype([
    ("kind", np.int64), ("symbol", np.int64), ("decided_ms", np.int64), ("bar", np.int64), ("side", np.int64),
    ("quantity", np.float64), ("stop_price", np.float64), ("take_profit_price", np.float64),
    ("has_take_profit", np.bool_), ("strength", np.float64), ("multiplier", np.float64), ("bound", np.int64),
    ("reason", np.int64),  # exit reason code (engine.core.state EXIT_*)
    ("daily_loss_pct", np.float64), ("drawdown_pct", np.float64), ("breached", np.int64),  # risk-limit exits
], align=True)

TRADE_DTYPE = np.dtype([
    ("symbol", np.int64), ("side", np.int64), ("quantity", np.float64), ("entry_price", np.float64),
    ("exit_price", np.float64), ("entry_ms", np.int64), ("exit_ms", np.int64), ("pnl", np.float64),
    ("fees", np.float64), ("exit_kind", np.int64), ("ambiguous", np.bool_), ("size_bound", np.int64),
    ("entry_bar", np.int64), ("exit_bar", np.int64),  # decision bars: the reasons' texts are read there
    ("daily_loss_pct", np.float64), ("drawdown_pct", np.float64), ("breached", np.int64),  # risk-limit exits
], align=True)

# Counter slots of an outbox.
N_EVENTS, N_DECISIONS, N_TRADES = 0, 1, 2

_NO_EVENTS = np.zeros(0, EVENT_DTYPE)
_NO_DECISIONS = np.zeros(0, DECISION_DTYPE)
_NO_TRADES = np.zeros(0, TRADE_DTYPE)
for _empty in (_NO_EVENTS, _NO_DECISIONS, _NO_TRADES):
    _empty.flags.writeable = False


class Outbox:
    """Scratch arrays one bar's kernels append to, sized for the most one bar of ``symbols`` can produce."""

    def __init__(self, symbols: int) -> None:
        self.events = np.zeros(64 + 16 * symbols, EVENT_DTYPE)
        self.decisions = np.zeros(8 + symbols, DECISION_DTYPE)
        self.trades = np.zeros(4 + symbols, TRADE_DTYPE)
        self.counts = np.zeros(3, np.int64)

    def adopt(self, events: np.ndarray, decisions: np.ndarray, trades: np.ndarray, counts: np.ndarray) -> None:
        """Use these arrays (e.g. views into an ``engine.core.arena.Arena``) instead of its own."""
        self.events, self.decisions, self.trades, self.counts = events, decisions, trades, counts

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the rows appended since the last take (events, decisions, trades); then empties."""
        counts = self.counts
        n_events, n_decisions, n_trades = counts.tolist()
        if not (n_events or n_decisions or n_trades):
            return _NO_EVENTS, _NO_DECISIONS, _NO_TRADES
        taken = (self.events[:n_events].copy(), self.decisions[:n_decisions].copy(), self.trades[:n_trades].copy())
        counts[:] = 0
        return taken


@njit()
def add_event(events: Any, counts: Any, kind: int, time_ms: int, symbol: int, code: int, detail: int,
              value: float, other: float) -> None:
    """Append one event row."""
    n = counts[N_EVENTS]
    if n >= len(events):
        raise RuntimeError("event outbox full")
    row = events[n]
    row["kind"] = kind
    row["time_ms"] = time_ms
    row["symbol"] = symbol
    row["code"] = code
    row["detail"] = detail
    row["value"] = value
    row["other"] = other
    counts[N_EVENTS] = n + 1


@njit()
def next_decision(decisions: Any, counts: Any, kind: int, symbol: int, decided_ms: int, bar: int) -> int:
    """Append a decision row with its identity set; the caller fills the rest of the row at the returned index."""
    n = counts[N_DECISIONS]
    if n >= len(decisions):
        raise RuntimeError("decision outbox full")
    row = decisions[n]
    row["kind"] = kind
    row["symbol"] = symbol
    row["decided_ms"] = decided_ms
    row["bar"] = bar
    row["side"] = 0
    row["quantity"] = 0.0
    row["stop_price"] = np.nan
    row["take_profit_price"] = np.nan
    row["has_take_profit"] = False
    row["strength"] = 0.0
    row["multiplier"] = 0.0
    row["bound"] = 0
    row["reason"] = 0
    row["daily_loss_pct"] = np.nan
    row["drawdown_pct"] = np.nan
    row["breached"] = 0
    counts[N_DECISIONS] = n + 1
    return int(n)


@njit()
def next_trade(trades: Any, counts: Any) -> int:
    """Append a trade row; the caller fills every field of the row at the returned index."""
    n = counts[N_TRADES]
    if n >= len(trades):
        raise RuntimeError("trade outbox full")
    counts[N_TRADES] = n + 1
    return int(n)


def event_counts(events: np.ndarray) -> dict[str, int]:
    """Events per kind name, as ``SimulationLog.event_counts`` (kinds that occurred, sorted by name)."""
    codes, counts = np.unique(events["kind"], return_counts=True)
    return dict(sorted((EVENT_KINDS[int(c)], int(n)) for c, n in zip(codes, counts, strict=True)))
