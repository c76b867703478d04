"""Provides the typed events of commands, system failures, the feed, the store and the drift check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.domain.events.base import Event, Severity


@dataclass(frozen=True, kw_only=True)
class CommandHandled(Event):
    """A command was taken or refused (one of the two subclasses below)."""

    command: str
    source: str
    detail: Mapping[str, Any]
    outcome: str


@dataclass(frozen=True, kw_only=True)
class CommandAccepted(CommandHandled):
    """The command was carried out; ``outcome`` says what it did."""


@dataclass(frozen=True, kw_only=True)
class CommandRejected(CommandHandled):
    """The command was refused; ``outcome`` says why."""

    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class CommandFailed(Event):
    """Handling a command raised; the engine goes on."""

    command: str
    source: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class SystemError(Event):  # noqa: A001 - the event's kind, as the alerts and the store name it
    """A symbol's candle processing failed: that symbol stops trading, the others go on."""

    symbol: str
    error: str
    task: str
    component: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class EngineFailed(Event):
    task: str
    error: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class CandleQuarantined(Event):
    """A candle failed validation and was left out (live: the feed degrades; warm-up: a warning)."""

    symbol: str
    timeframe: str
    open_time_ms: int
    rule: str
    detail: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class FeedStale(Event):
    symbol: str
    reason: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class FeedRecovered(Event):
    symbol: str
    was: str


@dataclass(frozen=True, kw_only=True)
class StoreDegraded(Event):
    failures: int
    error: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class DecisionDiverged(Event):
    """Live trading left the backtest of the same window (see :mod:`engine.runtime.drift`); bars are open times (UTC
    ms)."""

    symbol: str
    bar_ms: int
    decision: str
    live: str
    backtest: str
    live_bar_ms: int | None
    backtest_bar_ms: int | None
    by_command: bool
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class ExpectancyBelowBacktest(Event):
    """Realised expectancy (pct of entry notional per trade) well below the backtest's."""

    realised_pct: float
    backtest_pct: float
    standard_error_pct: float
    std_errors: float
    threshold_pct: float
    trades: int
    backtest_trades: int
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class DriftCheckFailed(Event):
    error: str
    severity: Severity = Severity.WARNING
