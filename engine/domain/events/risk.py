"""Provides the typed events of the trading state, loss limits, breakers and emergency exits."""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain.events.base import Event, Severity
from engine.domain.models import CircuitState, TradingState


@dataclass(frozen=True, kw_only=True)
class TradingStateChanged(Event):
    previous: TradingState
    state: TradingState
    reason: str


@dataclass(frozen=True, kw_only=True)
class BreakerEvent(Event):
    """A circuit breaker changed state (one of the subclasses below)."""

    breaker: str
    previous: CircuitState
    state: CircuitState
    value: float
    threshold: float
    reason: str
    since_ms: int | None
    resume_after_ms: int | None
    latching: bool


@dataclass(frozen=True, kw_only=True)
class BreakerTripped(BreakerEvent):
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class BreakerCoolingDown(BreakerEvent):
    """The condition is normal again: the breaker half-opens after the cool-down (``resume_after_ms``)."""


@dataclass(frozen=True, kw_only=True)
class BreakerHalfOpened(BreakerEvent):
    """Trading resumes at reduced size; enough normal readings close the breaker."""


@dataclass(frozen=True, kw_only=True)
class BreakerReset(BreakerEvent):
    """The breaker closed (normal readings while half-open, or a person's reset)."""


@dataclass(frozen=True, kw_only=True)
class RiskLimitEvent(Event):
    """A loss limit reached its warning ratio or its limit; ``*_pct`` in [0, 100], ``equity`` in quote."""

    limit: str
    value_pct: float
    limit_pct: float
    distance_pct: float
    equity: float


@dataclass(frozen=True, kw_only=True)
class RiskLimitWarning(RiskLimitEvent):
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class RiskLimitBreached(RiskLimitEvent):
    """Every position is closed and trading halts."""

    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class RiskHaltCleared(Event):
    """Latched loss-limit halts lifted, by ``source`` (``day_boundary`` or ``manual``)."""

    limits: tuple[str, ...]
    source: str
    equity: float


@dataclass(frozen=True, kw_only=True)
class RiskLimitChanged(Event):
    """An authenticated runtime change of a risk or breaker setting."""

    key: str
    old: float
    new: float
    source: str
    persisted: bool
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class EmergencyExitStarted(Event):
    reason: str
    actions: tuple[str, ...]
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class EmergencyExitCompleted(Event):
    reason: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class EmergencyExitCleared(Event):
    breaker: str = "emergency"
