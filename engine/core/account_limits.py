"""Provides AccountLimits: the max daily loss and max drawdown limits with warnings and latched halts.

Boundary rule (shared with the breakers, see ``engine.domain.precision.reaches``): a limit is the first value
that is not allowed, so reaching it exactly is a breach; warnings likewise fire at exactly
``warning_threshold_ratio`` x limit. A breach tells the caller to close every position at once and halt
(``RiskAction.CLOSE_ALL_AND_HALT``): blocking only new entries would let open losses run past the limit.

Day rule (``engine.domain.trading_day``, shared with the breakers' daily loss and the backtest metrics): a check
at a bar close belongs to the day containing ``close - 1 ms``, a check at an instant (a fill) to the day
containing it. A day's start equity is the equity marked at its reset instant: the equity of the latest
check before it (the close at or before the reset, i.e. the previous day's last close), not that of the
day's first check. Checks while flat may be left out: flat equity changes only by fills, which are checked.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import RiskConfig
from engine.core.limit_levels import highest_equity_reaching, lowest_equity_not_reaching
from engine.core.limit_levels import loss_pct as loss_pct  # the limits' loss measure, re-exported
from engine.domain.errors import RiskManagementException
from engine.domain.events import Event, RiskHaltCleared, RiskLimitBreached, RiskLimitEvent, RiskLimitWarning
from engine.domain.precision import reaches
from engine.domain.trading_day import DAY_MS, day_of_close, day_of_instant, day_start_ms, reset_offset_ms

STATE_VERSION = 1

DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"
_LIMIT_NAMES = (DAILY_LOSS, DRAWDOWN)


class RiskAction(enum.StrEnum):
    """What the caller must do after a limit check."""

    NONE = "none"  # trade normally
    HALT_ENTRIES = "halt_entries"  # a limit is latched (breached earlier): no new entries
    CLOSE_ALL_AND_HALT = "close_all_and_halt"  # a limit is breached now: close every position at once, halt


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """Result of a limit check (``AccountLimits.check``); percentages in [0, 100].

    ``action`` is level-triggered (repeated on every call while a limit is breached, so it cannot be
    missed and executing it twice is harmless); ``events`` are edge-triggered (once per crossing).
    """

    action: RiskAction
    equity: float
    peak_equity: float
    day_start_equity: float
    daily_loss_pct: float
    drawdown_pct: float
    daily_loss_limit_pct: float
    drawdown_limit_pct: float
    reasons: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()

    @property
    def must_close_all(self) -> bool:
        return self.action is RiskAction.CLOSE_ALL_AND_HALT

    @property
    def allows_entry(self) -> bool:
        return self.action is RiskAction.NONE

    @property
    def daily_loss_distance_pct(self) -> float:
        """Percentage points of equity left before the daily-loss limit (<= 0 = breached)."""
        return self.daily_loss_limit_pct - self.daily_loss_pct


def _limit_event(cls: type[RiskLimitEvent], now_ms: int, message: str, name: str, value: float, limit: float,
                 equity: float) -> RiskLimitEvent:
    """A limit event (built only when an event is, not on every check)."""
    return cls(time_ms=now_ms, message=message, limit=name, value_pct=value, limit_pct=limit,
               distance_pct=limit - value, equity=equity)


class AccountLimits:
    """Tracks the equity peak and the trading day's start equity and enforces both loss limits.

    State that must survive a restart (peak, day key and start equity, warning flags, latched halts) is
    JSON-able via :meth:`to_state` / :meth:`restore`.
    """

    def __init__(self, config: RiskConfig) -> None:
        self._peak_equity: float | None = None
        self._day_key: int | None = None
        self._day_start_equity: float | None = None
        self._mark_equity: float | None = None  # equity of the latest check: the next day's start equity
        self._warned: dict[str, bool] = dict.fromkeys(_LIMIT_NAMES, False)
        self._latched: dict[str, int] = {}  # limit name -> breach time (UTC ms)
        # The quiet band (see check_unless_quiet): equity and time ranges in which a check is a no-op.
        self._quiet_low = math.inf
        self._quiet_high = -math.inf
        self._quiet_from_ms = 0  # the band's range of bar closes (an instant t is in it where a close t + 1 is)
        self._quiet_until_ms = 0
        self._deferred: tuple[float, int, bool] | None = None  # (equity, now_ms, instant) of the last skipped check
        self._deferred_result: LimitCheck | None = None
        self._band_key: tuple[Any, ...] | None = None  # inputs of the last computed quiet band
        self._band: tuple[float, float, int, int] = self.quiet_band()
        self.reconfigure(config)

    def reconfigure(self, config: RiskConfig) -> None:
        """Apply new settings keeping the account state."""
        self._settle_deferred()
        self._config = config
        self._reset_offset_ms = reset_offset_ms(config.daily_reset_utc)
        self._limits = {DAILY_LOSS: config.max_daily_loss_percent, DRAWDOWN: config.max_drawdown_percent}
        self._forget_quiet_band()

    def trading_day_key(self, now_ms: int) -> int:
        """Index of the trading day containing the instant ``now_ms``; days start at ``daily_reset_utc``."""
        return day_of_instant(now_ms, self._reset_offset_ms)

    def trading_day_of_close(self, close_ms: int) -> int:
        """Index of the trading day of a bar closing at ``close_ms`` (the day containing ``close_ms - 1``)."""
        return day_of_close(close_ms, self._reset_offset_ms)

    def check(self, equity: float, now_ms: int, *, instant: bool = False) -> LimitCheck:
        """Track peak and day-start equity and test the daily-loss and max-drawdown limits.

        Call at every bar close with a position (and after fills) with equity marked to market; ``now_ms``
        is the bar's close time, or with ``instant`` the time of an event such as a live fill (see the
        module docstring for the day each belongs to). The first call of a trading day starts the day at
        the equity of the latest check before it (the equity marked at the reset; the first check ever
        has none and uses its own), re-arms the daily warning and lifts a daily-loss halt. A check dated
        before the current day (a late reading) counts in the current day: the day never goes back. A
        drawdown halt is lifted only by :meth:`manual_resume`.

        Limits (pct in [0, 100]): ``daily_loss = (day_start - equity) / day_start * 100`` and
        ``drawdown = (peak - equity) / peak * 100``. Reaching a limit is a breach. While breached, the
        action is ``CLOSE_ALL_AND_HALT`` on every call; afterwards ``HALT_ENTRIES`` while latched.
        Events: ``RiskLimitWarning`` once per upward crossing of ``warning_threshold_ratio`` x limit
        (re-armed when the value falls back below it), ``RiskLimitBreached`` once per breach,
        ``RiskHaltCleared`` when a daily halt lifts at the day boundary. Each carries the distance to
        the limit in percentage points. Non-finite equity halts entries without touching state.
        """
        self._deferred = None
        self._deferred_result = None
        if not math.isfinite(equity):
            return self._check_result(
                RiskAction.HALT_ENTRIES, equity, math.nan, math.nan, ("equity is not a finite number",), ()
            )
        events: list[Event] = []
        day_key = day_of_instant(now_ms if instant else now_ms - 1, self._reset_offset_ms)
        if self._day_key is None or day_key > self._day_key:
            self._day_key = day_key
            self._day_start_equity = self._mark_equity if self._mark_equity is not None else equity
            self._warned[DAILY_LOSS] = False
            if self._latched.pop(DAILY_LOSS, None) is not None:
                events.append(RiskHaltCleared(time_ms=now_ms, message="daily loss halt lifted: new trading day",
                                              limits=(DAILY_LOSS,), source="day_boundary", equity=equity))
        self._mark_equity = equity
        if self._peak_equity is None or equity > self._peak_equity:
            self._peak_equity = equity
        peak = self._peak_equity
        day_start = self._day_start_equity if self._day_start_equity is not None else equity
        daily_loss_pct = loss_pct(day_start, equity) if day_start > 0 else 100.0
        drawdown_pct = loss_pct(peak, equity) if peak > 0 else 100.0
        values = {DAILY_LOSS: daily_loss_pct, DRAWDOWN: drawdown_pct}

        breached_now: list[str] = []
        warned, latched, limits = self._warned, self._latched, self._limits
        ratio = self._config.warning_threshold_ratio
        for name in _LIMIT_NAMES:
            value, limit = values[name], limits[name]
            breached = reaches(value, limit)
            if breached:
                breached_now.append(name)
                if name not in latched:
                    latched[name] = now_ms
                    events.append(_limit_event(
                        RiskLimitBreached, now_ms,
                        f"{name.replace('_', ' ')} {value:.2f}% reached limit {limit}%: closing all positions",
                        name, value, limit, equity,
                    ))
            if reaches(value, limit * ratio):
                if not warned[name]:
                    warned[name] = True
                    if not breached:
                        events.append(_limit_event(
                            RiskLimitWarning, now_ms,
                            f"{name.replace('_', ' ')} {value:.2f}% is {limit - value:.2f} points from limit {limit}%",
                            name, value, limit, equity,
                        ))
            else:
                warned[name] = False

        if breached_now:
            action = RiskAction.CLOSE_ALL_AND_HALT
            reasons = tuple(f"{name} {values[name]:.2f}% >= {self._limits[name]}%" for name in breached_now)
        elif self._latched:
            action = RiskAction.HALT_ENTRIES
            reasons = tuple(f"{name} limit breached earlier; halted" for name in sorted(self._latched))
        else:
            action, reasons = RiskAction.NONE, ()
        self._find_quiet_band()
        return self._check_result(action, equity, daily_loss_pct, drawdown_pct, reasons, tuple(events))

    # ------------------------------------------------------------------------------------ quiet band
    def check_unless_quiet(self, equity: float, now_ms: int, *, instant: bool = False) -> LimitCheck | None:
        """:meth:`check`, skipped (None) when it provably would emit nothing, change nothing and not close.

        After every full check the tracker computes a *quiet band*: the current trading day and a range
        of equity ``[low, high]`` in which a check leaves the peak (``high <= peak``), the day, the
        latches and the warning flags as they are, emits no event and breaches nothing; all it changes is
        the marked equity, which a skipped check records as well. Inside the band the check is skipped;
        its result, should anyone ask, is :meth:`take_deferred_check` (computed then, from the unchanged
        state: the same value the skipped call would have returned). Outside it, or for non-finite
        equity, this is exactly :meth:`check`.
        """
        if (
            self._quiet_low <= equity <= self._quiet_high
            and self._quiet_from_ms <= (now_ms + 1 if instant else now_ms) < self._quiet_until_ms
        ):
            self._deferred = (equity, now_ms, instant)
            self._mark_equity = equity
            return None
        return self.check(equity, now_ms, instant=instant)

    def quiet_band(self) -> tuple[float, float, int, int]:
        """``(equity_low, equity_high, from_ms, until_ms)``: :meth:`check_unless_quiet` skips a check at a
        bar close ``now_ms`` with ``equity_low <= equity <= equity_high`` and ``from_ms <= now_ms < until_ms``
        (the closes of the current trading day; empty when unknown)."""
        return self._quiet_low, self._quiet_high, self._quiet_from_ms, self._quiet_until_ms

    def take_deferred_check(self) -> LimitCheck | None:
        """The result of the latest skipped check if no full check ran since (else None); see above."""
        self._settle_deferred()
        result, self._deferred_result = self._deferred_result, None
        return result

    def _settle_deferred(self) -> None:
        """Evaluate a skipped check now, before anything changes the state it was skipped under."""
        if self._deferred is not None:
            equity, now_ms, instant = self._deferred
            # A no-op on the state: inside the quiet band, and the skipped check marked the same equity.
            self._deferred_result = self.check(equity, now_ms, instant=instant)

    def _forget_quiet_band(self) -> None:
        self._quiet_low, self._quiet_high = math.inf, -math.inf
        self._quiet_from_ms = self._quiet_until_ms = 0

    def quiet_daily_loss_pct(self, equity: float) -> float:
        """The ``daily_loss_pct`` of a check of ``equity`` that :meth:`check_unless_quiet` just skipped.

        Inside the quiet band the day and its start equity are the ones of the last full check, so this
        is the value that check would have reported, without building the rest of its result.
        """
        day_start = self._day_start_equity
        if self._deferred is None or day_start is None:
            raise RiskManagementException("quiet_daily_loss_pct needs a check skipped just before")
        return loss_pct(day_start, equity)

    def _find_quiet_band(self) -> None:
        """Equity range in which the next check of this trading day changes nothing (see above).

        Both loss values are non-increasing functions of equity (float subtraction, division by a
        positive reference and scaling are monotone), and :func:`reaches` is a threshold on the value,
        so "value reaches X" holds on one side of a single equity level. Each bound below is a point at
        which the exact predicate used by :meth:`check` was evaluated and holds, so it holds on the
        whole side of that point inside the band.
        """
        self._forget_quiet_band()
        peak, day_start, day_key = self._peak_equity, self._day_start_equity, self._day_key
        if peak is None or day_start is None or day_key is None or not (peak > 0.0 and day_start > 0.0):
            return
        ratio = self._config.warning_threshold_ratio
        warned, limits = self._warned, self._limits
        # Everything the band depends on; most checks (one per closed trade) find it unchanged. An exact
        # match (a cache key, not a limit comparison) reuses the band the same inputs gave last time.
        key = (peak, day_start, day_key, ratio, self._reset_offset_ms, limits[DAILY_LOSS], limits[DRAWDOWN],
               warned[DAILY_LOSS], warned[DRAWDOWN])
        if key == self._band_key:
            self._quiet_low, self._quiet_high, self._quiet_from_ms, self._quiet_until_ms = self._band
            return
        low, high = -math.inf, peak  # above the peak a check would raise the peak
        for name, reference in ((DAILY_LOSS, day_start), (DRAWDOWN, peak)):
            limit = limits[name]
            low = max(low, lowest_equity_not_reaching(reference, limit))
            if warned[name]:
                high = min(high, highest_equity_reaching(reference, limit * ratio))
            else:
                low = max(low, lowest_equity_not_reaching(reference, limit * ratio))
        if low <= high:
            self._quiet_low, self._quiet_high = low, high
            self._quiet_from_ms = day_start_ms(day_key, self._reset_offset_ms) + 1  # the day's first close
            self._quiet_until_ms = self._quiet_from_ms + DAY_MS
        self._band_key = key
        self._band = self.quiet_band()

    def _check_result(
        self, action: RiskAction, equity: float, daily_loss_pct: float, drawdown_pct: float,
        reasons: tuple[str, ...], events: tuple[Event, ...],
    ) -> LimitCheck:
        return LimitCheck(
            action, equity,
            self._peak_equity if self._peak_equity is not None else math.nan,
            self._day_start_equity if self._day_start_equity is not None else math.nan,
            daily_loss_pct, drawdown_pct, self._limits[DAILY_LOSS], self._limits[DRAWDOWN], reasons, events,
        )

    @property
    def halted(self) -> bool:
        """Whether a limit breach has halted new entries (state as of the last check)."""
        return bool(self._latched)

    @property
    def halt_reasons(self) -> tuple[str, ...]:
        """Names of the latched limits (``daily_loss``, ``drawdown``)."""
        return tuple(sorted(self._latched))

    def manual_resume(self, equity: float, now_ms: int) -> tuple[Event, ...]:
        """A person lifts every limit halt; the peak and day-start equity are re-based to ``equity``.

        Re-basing is what makes the resume meaningful: without it the same drawdown would trip again on
        the next check. Returns a ``RiskHaltCleared`` event, or nothing if not halted.
        """
        if not self._latched:
            return ()
        self._settle_deferred()
        self._forget_quiet_band()
        cleared = sorted(self._latched)
        self._latched.clear()
        self._peak_equity = equity
        self._day_start_equity = equity
        self._mark_equity = equity
        day_key = self.trading_day_key(now_ms)  # a person's command: an instant; the day never goes back
        self._day_key = day_key if self._day_key is None else max(day_key, self._day_key)
        self._warned = dict.fromkeys(_LIMIT_NAMES, False)
        return (RiskHaltCleared(time_ms=now_ms, message=f"risk halt lifted manually ({', '.join(cleared)})",
                                limits=tuple(cleared), source="manual", equity=equity),)

    def to_state(self) -> dict[str, Any]:
        """The restart-surviving state as JSON-able data."""
        return {
            "version": STATE_VERSION,
            "peak_equity": self._peak_equity,
            "day_key": self._day_key,
            "day_start_equity": self._day_start_equity,
            "warned": dict(self._warned),
            "latched": dict(self._latched),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load state produced by :meth:`to_state` (possibly after a JSON round trip)."""
        if state.get("version") != STATE_VERSION:
            raise RiskManagementException(f"unsupported risk state version {state.get('version')!r}")
        self._settle_deferred()
        self._forget_quiet_band()
        peak, day_key, day_start = state["peak_equity"], state["day_key"], state["day_start_equity"]
        self._peak_equity = None if peak is None else float(peak)
        self._day_key = None if day_key is None else int(day_key)
        self._day_start_equity = None if day_start is None else float(day_start)
        # The marked equity is not kept: saved state can be older than the latest check (it is saved on
        # events), and a stale mark would move losses between days. The first check after a restore marks
        # again (a day that starts before it starts at that check's equity: exact while flat).
        self._mark_equity = None
        self._warned = {name: bool(state["warned"].get(name, False)) for name in _LIMIT_NAMES}
        self._latched = {str(name): int(when) for name, when in state["latched"].items()}

