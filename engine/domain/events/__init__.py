"""Provides the typed engine events: one frozen dataclass per kind, named in the past tense.

Every event has a time (UTC ms), a message for people and a :class:`Severity`; its own fields say what
happened in typed values. Subscribers dispatch on the class (``isinstance`` / ``match``), never on a kind
string. :attr:`Event.kind` (the class name) is what the store, the notification outbox, the console and the
backtest's event counts record, so those texts are the same as before the events were typed.

The classes live in ``base`` (the base and :class:`Severity`), ``trading`` (positions and orders), ``risk``
(trading state, limits, breakers, emergency exits) and ``system`` (commands, failures, feed, store, drift);
import them from here.
"""

from __future__ import annotations

from engine.domain.events.base import Event, Severity
from engine.domain.events.risk import (
    BreakerCoolingDown,
    BreakerEvent,
    BreakerHalfOpened,
    BreakerReset,
    BreakerTripped,
    EmergencyExitCleared,
    EmergencyExitCompleted,
    EmergencyExitStarted,
    RiskHaltCleared,
    RiskLimitBreached,
    RiskLimitChanged,
    RiskLimitEvent,
    RiskLimitWarning,
    TradingStateChanged,
)
from engine.domain.events.system import (
    CandleQuarantined,
    CommandAccepted,
    CommandFailed,
    CommandHandled,
    CommandRejected,
    DecisionDiverged,
    DriftCheckFailed,
    EngineFailed,
    ExpectancyBelowBacktest,
    FeedRecovered,
    FeedStale,
    StoreDegraded,
    SystemError,
)
from engine.domain.events.trading import (
    ExitPostponed,
    ExitRefused,
    OrderCancelFailed,
    OrderFilled,
    OrderRateLimited,
    OrderRejected,
    OrderUncertain,
    PositionClosed,
    PositionOpened,
    PositionReduced,
    PositionUnprotected,
    StopLost,
    StopPlaced,
    StopRefused,
    TargetNotPlaced,
    TargetReached,
)

__all__ = [
    "BreakerCoolingDown",
    "BreakerEvent",
    "BreakerHalfOpened",
    "BreakerReset",
    "BreakerTripped",
    "CandleQuarantined",
    "CommandAccepted",
    "CommandFailed",
    "CommandHandled",
    "CommandRejected",
    "DecisionDiverged",
    "DriftCheckFailed",
    "EmergencyExitCleared",
    "EmergencyExitCompleted",
    "EmergencyExitStarted",
    "EngineFailed",
    "Event",
    "ExitPostponed",
    "ExitRefused",
    "ExpectancyBelowBacktest",
    "FeedRecovered",
    "FeedStale",
    "OrderCancelFailed",
    "OrderFilled",
    "OrderRateLimited",
    "OrderRejected",
    "OrderUncertain",
    "PositionClosed",
    "PositionOpened",
    "PositionReduced",
    "PositionUnprotected",
    "RiskHaltCleared",
    "RiskLimitBreached",
    "RiskLimitChanged",
    "RiskLimitEvent",
    "RiskLimitWarning",
    "Severity",
    "StopLost",
    "StopPlaced",
    "StopRefused",
    "StoreDegraded",
    "SystemError",
    "TargetNotPlaced",
    "TargetReached",
    "TradingStateChanged",
]
