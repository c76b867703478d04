"""Provides the CircuitBreaker: volatility, loss and system-health breakers and the emergency exit.

Each breaker is CLOSED (trading allowed), OPEN (no new entries) or HALF_OPEN (entries at
``half_open_size_ratio`` of normal size). Life cycle of an auto-recovering breaker::

    CLOSED --trip--> OPEN --condition normal, then cooldown_s--> HALF_OPEN --confirmed--> CLOSED
                      ^  (a trip reading while OPEN restarts the wait)     |
                      +------------------- trip again ---------------------+

A *latching* breaker (named in ``BreakerConfig.latching``) stays OPEN until :meth:`CircuitBreaker.manual_resume`,
which is also the way to force any breaker CLOSED.

Trip rules (reaching the threshold trips, see ``engine.domain.precision.reaches``):
    * volatility: ``current / normal >= volatility_multiplier``.
    * loss: ``consecutive_losses >= max_consecutive_losses`` or ``daily_loss_pct >= daily_loss_percent``.
      The trip consumes the internal loss streak (otherwise, with no trading while open, the streak could
      never end and the condition never normalise); the daily part normalises on its own.
    * system: ``api_error_threshold`` or more API errors in the sliding window ``(now - window, now]``.

Half-open confirmation (what closes a half-open breaker):
    * volatility: ``HALF_OPEN_CONFIRMATIONS`` consecutive normal readings (bars).
    * loss: one winning trade (a losing one re-opens it).
    * system: ``HALF_OPEN_CONFIRMATIONS`` successful API calls (any error re-opens it).

Transitions happen only in the ``check_*``/``record_*`` methods, :meth:`advance`, :meth:`manual_resume` and
the emergency-exit methods, and each returns its events (``BreakerTripped``, ``BreakerCoolingDown``,
``BreakerHalfOpened``, ``BreakerReset``, ``EmergencyExitStarted``, ``EmergencyExitCompleted``,
``EmergencyExitCleared``). Queries (:meth:`allows_entry`, :meth:`can_resume_trading`, :meth:`statuses`) never
change state. The whole state is JSON-able via :meth:`to_state` / :meth:`restore`; the runtime persists it on
every event. Time is always injected as ``now_ms`` (UTC ms).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from engine.config import BreakerConfig
from engine.core.emergency import EmergencyExit, EmergencyExitInstruction
from engine.domain.errors import CircuitBreakerException
from engine.domain.events import (
    BreakerCoolingDown,
    BreakerEvent,
    BreakerHalfOpened,
    BreakerReset,
    BreakerTripped,
    Event,
    Severity,
)
from engine.domain.models import BreakerStatus, CircuitState
from engine.domain.precision import reaches

VOLATILITY = "volatility"
LOSS = "loss"
SYSTEM = "system"
BREAKER_NAMES: tuple[str, ...] = (VOLATILITY, LOSS, SYSTEM)
EMERGENCY = "emergency"

HALF_OPEN_CONFIRMATIONS = 3
"""Normal readings (volatility) or API successes (system) that close a half-open breaker."""

PNL_EPS = 1e-9
"""Trade P&L (quote currency) within this of zero is a breakeven: neither a win nor a loss."""

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class BreakerUpdate:
    """One breaker after an observation: its status and the transitions the observation caused."""

    status: BreakerStatus
    events: tuple[Event, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status.state is CircuitState.OPEN


class EntryPermission(NamedTuple):
    """Whether new entries are allowed; unpacks as ``(allowed, size_multiplier, reasons)``."""

    allowed: bool
    size_multiplier: float  # ratio in [0, 1]
    reasons: tuple[str, ...]


_ENTRY_ALLOWED = EntryPermission(True, 1.0, ())  # every breaker closed: one shared value


@dataclass(slots=True)
class _Breaker:
    name: str
    threshold: float
    state: CircuitState = CircuitState.CLOSED
    value: float = 0.0
    reason: str = ""
    since_ms: int | None = None
    normal_since_ms: int | None = None
    resume_after_ms: int | None = None
    confirmations: int = 0


class CircuitBreaker:
    """The three breakers and the emergency exit; see the module docstring for the rules."""

    def __init__(self, config: BreakerConfig) -> None:
        self._config = config
        self._breakers = {
            VOLATILITY: _Breaker(VOLATILITY, config.volatility_multiplier),
            LOSS: _Breaker(LOSS, 1.0),
            SYSTEM: _Breaker(SYSTEM, float(config.api_error_threshold)),
        }
        self._consecutive_losses = 0
        self._daily_loss_pct = 0.0
        self._api_errors: deque[int] = deque()
        self._emergency = EmergencyExit()
        self._volatility_reading: tuple[float, float] | None = None  # display only: see observe_volatility

    @property
    def config(self) -> BreakerConfig:
        return self._config

    def reconfigure(self, config: BreakerConfig) -> None:
        """Apply new settings keeping every breaker's state (thresholds refresh on the next check)."""
        self._config = config

    @property
    def consecutive_losses(self) -> int:
        """Current losing streak counted by :meth:`record_trade_result`."""
        return self._consecutive_losses

    def is_latching(self, name: str) -> bool:
        return name in self._config.latching

    # ---------------------------------------------------------------------------------- transitions
    def _event(self, cls: type[BreakerEvent], record: _Breaker, now_ms: int, message: str, previous: CircuitState,
               severity: Severity) -> BreakerEvent:
        return cls(time_ms=now_ms, message=message, severity=severity, breaker=record.name, previous=previous,
                   state=record.state, value=record.value, threshold=record.threshold, reason=record.reason,
                   since_ms=record.since_ms, resume_after_ms=record.resume_after_ms,
                   latching=self.is_latching(record.name))

    def _trip(self, record: _Breaker, reason: str, now_ms: int) -> Event:
        previous = record.state
        record.state = CircuitState.OPEN
        record.reason = reason
        record.since_ms = now_ms
        record.normal_since_ms = None
        record.resume_after_ms = None
        record.confirmations = 0
        return self._event(BreakerTripped, record, now_ms, f"{record.name} breaker tripped: {reason}",
                           previous, Severity.CRITICAL)

    def _close(self, record: _Breaker, reason: str, now_ms: int) -> Event:
        previous = record.state
        record.state = CircuitState.CLOSED
        record.reason = reason
        record.since_ms = now_ms
        record.normal_since_ms = None
        record.resume_after_ms = None
        record.confirmations = 0
        return self._event(BreakerReset, record, now_ms, f"{record.name} breaker closed: {reason}",
                           previous, Severity.INFO)

    def _advance(self, record: _Breaker, now_ms: int, events: list[Event]) -> None:
        """OPEN -> HALF_OPEN once the cool-down after normalisation has elapsed (never for latching)."""
        if (record.state is CircuitState.OPEN and record.resume_after_ms is not None
                and now_ms >= record.resume_after_ms and not self.is_latching(record.name)):
            record.state = CircuitState.HALF_OPEN
            record.since_ms = now_ms
            record.confirmations = 0
            events.append(self._event(
                BreakerHalfOpened, record, now_ms,
                f"{record.name} breaker half-open: trading at {self._config.half_open_size_ratio:g}x size",
                CircuitState.OPEN, Severity.WARNING,
            ))

    def _observe(self, record: _Breaker, tripped: bool, reason: str, now_ms: int, *,
                 confirms: bool) -> BreakerUpdate:
        """Apply one reading of the breaker's condition; ``confirms`` = a normal reading counts in half-open."""
        events: list[Event] = []
        if record.state is CircuitState.CLOSED:
            if tripped:
                events.append(self._trip(record, reason, now_ms))
        elif record.state is CircuitState.OPEN:
            if tripped:
                record.normal_since_ms = None
                record.resume_after_ms = None
            elif record.normal_since_ms is None and not self.is_latching(record.name):
                record.normal_since_ms = now_ms
                record.resume_after_ms = now_ms + round(self._config.cooldown_s * 1000)
                events.append(self._event(
                    BreakerCoolingDown, record, now_ms,
                    f"{record.name} condition normal; half-open after {self._config.cooldown_s:g} s cool-down",
                    CircuitState.OPEN, Severity.INFO,
                ))
            self._advance(record, now_ms, events)
        elif tripped:
            events.append(self._trip(record, f"{reason} (while half-open)", now_ms))
        elif confirms:
            record.confirmations += 1
            if record.confirmations >= HALF_OPEN_CONFIRMATIONS:
                events.append(self._close(record, f"{record.confirmations} normal readings in half-open", now_ms))
        return BreakerUpdate(self._status(record), tuple(events))

    # ------------------------------------------------------------------------------------ volatility
    def check_volatility_circuit(self, current_volatility: float, normal_volatility: float,
                                 now_ms: int) -> BreakerUpdate:
        """Trip when ``current / normal >= volatility_multiplier`` (e.g. ATR against its median).

        An unusable reading (non-finite, negative, or a non-positive normal level) changes nothing but
        the passage of time.
        """
        record = self._breakers[VOLATILITY]
        record.threshold = self._config.volatility_multiplier
        self._volatility_reading = None  # record.value is the newest reading from here on
        if not (math.isfinite(current_volatility) and math.isfinite(normal_volatility)
                and current_volatility >= 0.0 and normal_volatility > 0.0):
            events: list[Event] = []
            self._advance(record, now_ms, events)
            return BreakerUpdate(self._status(record), tuple(events))
        ratio = current_volatility / normal_volatility
        record.value = ratio
        tripped = reaches(ratio, record.threshold)
        reason = f"volatility {ratio:.2f}x normal (limit {record.threshold:g}x)"
        return self._observe(record, tripped, reason, now_ms, confirms=True)

    def observe_volatility(self, current_volatility: float, normal_volatility: float) -> None:
        """Record a calm bar's reading for display only: no transition, no effect on any decision.

        The decision path feeds :meth:`check_volatility_circuit` only on alarm bars or while the breaker is
        not closed; this keeps the shown ``current / normal`` value current on every other bar. The ratio is
        computed only when a status is asked for, and the reading is not part of :meth:`to_state`.
        """
        self._volatility_reading = (current_volatility, normal_volatility)

    # ------------------------------------------------------------------------------------------ loss
    def check_loss_circuit(self, consecutive_losses: int, daily_loss_pct: float, now_ms: int) -> BreakerUpdate:
        """Trip on ``max_consecutive_losses`` losses in a row or a daily loss of ``daily_loss_percent``.

        The status shows whichever condition is closer to its limit, as that condition's value and
        threshold (e.g. ``4 / 5`` losses, or ``4.1 / 5.0`` pct).
        """
        record = self._breakers[LOSS]
        cfg = self._config
        if math.isfinite(daily_loss_pct):
            self._daily_loss_pct = daily_loss_pct
        daily = self._daily_loss_pct
        streak_tripped = consecutive_losses >= cfg.max_consecutive_losses
        daily_tripped = reaches(daily, cfg.daily_loss_percent)
        if consecutive_losses / cfg.max_consecutive_losses >= daily / cfg.daily_loss_percent:
            record.value, record.threshold = float(consecutive_losses), float(cfg.max_consecutive_losses)
        else:
            record.value, record.threshold = daily, cfg.daily_loss_percent
        reason = ""  # formatted only when tripped: this runs on every closed trade
        if streak_tripped or daily_tripped:
            reasons = []
            if streak_tripped:
                reasons.append(f"{consecutive_losses} consecutive losses (limit {cfg.max_consecutive_losses})")
            if daily_tripped:
                reasons.append(f"daily loss {daily:.2f}% (limit {cfg.daily_loss_percent:g}%)")
            reason = "; ".join(reasons)
        update = self._observe(record, streak_tripped or daily_tripped, reason, now_ms, confirms=False)
        if streak_tripped and record.state is CircuitState.OPEN:
            self._consecutive_losses = 0  # the trip consumes the streak (see module docstring)
        return update

    def record_trade_result(self, pnl: float, now_ms: int, daily_loss_pct: float | None = None) -> BreakerUpdate:
        """Count a closed trade's net P&L (quote currency) into the losing streak, then re-check.

        In half-open, a win closes the loss breaker and a loss re-opens it; a breakeven changes nothing.
        ``daily_loss_pct`` is the account's daily loss now (the loss limits' figure, ``engine.core.account_limits``);
        None re-checks with the last one given.
        """
        if daily_loss_pct is not None and math.isfinite(daily_loss_pct):
            self._daily_loss_pct = daily_loss_pct
        record = self._breakers[LOSS]
        is_loss, is_win = pnl < -PNL_EPS, pnl > PNL_EPS
        if is_loss:
            self._consecutive_losses += 1
        elif is_win:
            self._consecutive_losses = 0
        if record.state is CircuitState.HALF_OPEN and (is_loss or is_win):
            if is_win:
                event = self._close(record, "winning trade in half-open", now_ms)
            else:
                event = self._trip(record, "losing trade while half-open", now_ms)
            return BreakerUpdate(self._status(record), (event,))
        return self.check_loss_circuit(self._consecutive_losses, self._daily_loss_pct, now_ms)

    # ---------------------------------------------------------------------------------------- system
    def _prune_errors(self, now_ms: int) -> int:
        horizon = now_ms - round(self._config.api_error_window_s * 1000)
        errors = self._api_errors
        while errors and errors[0] <= horizon:
            errors.popleft()
        return len(errors)

    def check_system_health(self, now_ms: int) -> BreakerUpdate:
        """Trip when ``api_error_threshold`` or more API errors fall in ``(now - window, now]``."""
        record = self._breakers[SYSTEM]
        record.threshold = float(self._config.api_error_threshold)
        count = self._prune_errors(now_ms)
        record.value = float(count)
        reason = f"{count} API errors in {self._config.api_error_window_s:g} s (limit {record.threshold:g})"
        return self._observe(record, reaches(count, record.threshold), reason, now_ms, confirms=False)

    def record_api_error(self, now_ms: int) -> BreakerUpdate:
        """Count one failed exchange/Telegram call; any error re-opens a half-open system breaker."""
        self._api_errors.append(now_ms)
        record = self._breakers[SYSTEM]
        if record.state is CircuitState.HALF_OPEN:
            record.value = float(self._prune_errors(now_ms))
            event = self._trip(record, "API error while half-open", now_ms)
            return BreakerUpdate(self._status(record), (event,))
        return self.check_system_health(now_ms)

    def trip_system(self, reason: str, now_ms: int) -> BreakerUpdate:
        """Open the system breaker for a failure outside the API error count (e.g. the store failing writes).

        A closed or half-open breaker trips (``BreakerTripped``); an open one keeps its state, takes the new
        reason and restarts its wait for normal readings (no event). Recovery then follows the usual rules.
        """
        record = self._record(SYSTEM)
        if record.state is CircuitState.OPEN:
            record.reason = reason
            record.normal_since_ms = None
            record.resume_after_ms = None
            return BreakerUpdate(self._status(record))
        event = self._trip(record, reason, now_ms)
        return BreakerUpdate(self._status(record), (event,))

    def record_api_success(self, now_ms: int) -> BreakerUpdate:
        """Count one successful call; ``HALF_OPEN_CONFIRMATIONS`` of them close a half-open breaker."""
        record = self._breakers[SYSTEM]
        if record.state is CircuitState.HALF_OPEN:
            record.value = float(self._prune_errors(now_ms))
            return self._observe(record, False, "", now_ms, confirms=True)
        return self.check_system_health(now_ms)

    # ---------------------------------------------------------------------------------- time, queries
    def advance(self, now_ms: int) -> tuple[Event, ...]:
        """Apply the passage of time: age out API errors and half-open breakers whose cool-down ended."""
        events: list[Event] = list(self.check_system_health(now_ms).events)
        for name in (VOLATILITY, LOSS):
            self._advance(self._breakers[name], now_ms, events)
        return tuple(events)

    def allows_entry(self, now_ms: int) -> EntryPermission:
        """Whether a new entry may be opened now, at what size multiplier, and why not / why reduced."""
        if self._emergency.phase is not None:
            return EntryPermission(False, 0.0, (f"emergency exit {self._emergency.phase}: {self._emergency.reason}",))
        blocked: list[str] = []
        reduced: list[str] = []
        for record in self._breakers.values():
            if record.state is CircuitState.OPEN:
                if self.is_latching(record.name):
                    wait = "latched: needs a manual resume"
                elif record.resume_after_ms is not None:
                    wait = f"half-open in {max(0, record.resume_after_ms - now_ms) / 1000:g} s"
                else:
                    wait = "waiting for the condition to normalise"
                blocked.append(f"{record.name} breaker open ({record.reason}); {wait}")
            elif record.state is CircuitState.HALF_OPEN:
                reduced.append(f"{record.name} breaker half-open: size x{self._config.half_open_size_ratio:g}")
        if blocked:
            return EntryPermission(False, 0.0, tuple(blocked))
        if reduced:
            return EntryPermission(True, self._config.half_open_size_ratio, tuple(reduced))
        return _ENTRY_ALLOWED

    def can_resume_trading(self, now_ms: int) -> bool:
        """True when no breaker is open and no emergency exit is in progress or done."""
        return self.allows_entry(now_ms).allowed

    def _status(self, record: _Breaker) -> BreakerStatus:
        value = record.value
        reading = self._volatility_reading if record.name == VOLATILITY else None
        if reading is not None:
            current, normal = reading
            if math.isfinite(current) and math.isfinite(normal) and current >= 0.0 and normal > 0.0:
                value = current / normal
        return BreakerStatus(
            record.name, record.state, value, record.threshold, record.reason, record.since_ms,
            record.resume_after_ms, self.is_latching(record.name),
        )

    def status(self, name: str) -> BreakerStatus:
        return self._status(self._record(name))

    def statuses(self) -> tuple[BreakerStatus, ...]:
        """Every breaker as the console shows it (value, threshold, distance to trip, state).

        The emergency-exit latch and the loss-limit halt are shown beside them: ``engine.runtime.latches``.
        """
        return tuple(self._status(record) for record in self._breakers.values())

    def _record(self, name: str) -> _Breaker:
        try:
            return self._breakers[name]
        except KeyError:
            raise CircuitBreakerException(f"unknown breaker {name!r}; expected one of {BREAKER_NAMES}") from None

    # ----------------------------------------------------------------------------- manual, emergency
    def manual_resume(self, name: str, now_ms: int) -> tuple[Event, ...]:
        """A person resets one breaker to CLOSED (``"emergency"`` clears a completed emergency exit).

        The only way out of a latching breaker; it also works on auto-recovering ones. Resuming the loss
        breaker clears the losing streak. A closed breaker gives no event.

        Raises:
            CircuitBreakerException: unknown name, or the emergency exit is still in progress.
        """
        if name == EMERGENCY:
            return self._emergency.clear(now_ms)
        record = self._record(name)
        if name == LOSS:
            self._consecutive_losses = 0
        if name == SYSTEM:
            self._api_errors.clear()
        if record.state is CircuitState.CLOSED:
            return ()
        return (self._close(record, "manual resume", now_ms),)

    def trigger_emergency_exit(self, reason: str, now_ms: int) -> EmergencyExitInstruction:
        """Start the emergency exit: cancel open orders, close every position at market, halt.

        Idempotent: while one is in progress or done, further calls return ``status="already"`` with no
        actions. Call :meth:`complete_emergency_exit` when the runtime has executed the actions; a person
        clears it with ``manual_resume("emergency", now_ms)``. See ``engine.core.emergency``.
        """
        return self._emergency.trigger(reason, now_ms)

    def complete_emergency_exit(self, now_ms: int) -> tuple[Event, ...]:
        """Mark the emergency exit done (orders cancelled, positions closed); trading stays halted."""
        return self._emergency.complete(now_ms)

    @property
    def emergency_phase(self) -> str | None:
        """``"in_progress"``, ``"done"`` or None; after a restart ``"in_progress"`` means: finish the exit."""
        return self._emergency.phase

    # ----------------------------------------------------------------------------------- persistence
    def to_state(self) -> dict[str, Any]:
        """The complete state as JSON-able data (persist it on every event)."""
        return {
            "version": STATE_VERSION,
            "breakers": {
                name: {
                    "state": str(r.state), "value": r.value, "threshold": r.threshold, "reason": r.reason,
                    "since_ms": r.since_ms, "normal_since_ms": r.normal_since_ms,
                    "resume_after_ms": r.resume_after_ms, "confirmations": r.confirmations,
                }
                for name, r in self._breakers.items()
            },
            "consecutive_losses": self._consecutive_losses,
            "daily_loss_pct": self._daily_loss_pct,
            "api_errors_ms": list(self._api_errors),
            "emergency": self._emergency.to_state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load state produced by :meth:`to_state` (possibly after a JSON round trip)."""
        if state.get("version") != STATE_VERSION:
            raise CircuitBreakerException(f"unsupported breaker state version {state.get('version')!r}")

        def optional_int(value: Any) -> int | None:
            return None if value is None else int(value)

        for name, saved in state["breakers"].items():
            record = self._record(name)
            record.state = CircuitState(saved["state"])
            record.value = float(saved["value"])
            record.threshold = float(saved["threshold"])
            record.reason = str(saved["reason"])
            record.since_ms = optional_int(saved["since_ms"])
            record.normal_since_ms = optional_int(saved["normal_since_ms"])
            record.resume_after_ms = optional_int(saved["resume_after_ms"])
            record.confirmations = int(saved["confirmations"])
        self._consecutive_losses = int(state["consecutive_losses"])
        self._daily_loss_pct = float(state["daily_loss_pct"])
        self._api_errors = deque(int(t) for t in state["api_errors_ms"])
        self._emergency.restore(state["emergency"])

    @classmethod
    def from_state(cls, config: BreakerConfig, state: Mapping[str, Any]) -> CircuitBreaker:
        breaker = cls(config)
        breaker.restore(state)
        return breaker
