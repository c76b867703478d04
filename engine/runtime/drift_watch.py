"""Provides DriftWatch: the runtime side of the performance drift alert (the check itself is
:mod:`engine.runtime.drift`).

The watch keeps every candle the account decides on (seeded with each symbol's warm-up history, the
exact candles the live indicators started from, so the backtest's values equal the live ones) and, every
``drift.check_every_bars`` base bars, hands a copy of them with the account's trades to
:func:`engine.runtime.drift.check_drift` in a worker thread. Trading never waits: a due check while one runs
replaces the waiting one (only the newest is run).

The window starts at the first bar before which the account is flat with nothing pending (at start, or
once a position restored from an earlier run has closed): the backtest starts flat too. Findings become
events, each reported once:

* ``DecisionDiverged`` (critical; warning when the live decision was a person's command): the first
  decision that differs; one per window.
* ``ExpectancyBelowBacktest`` (warning): once when the condition starts to hold; again only after a
  check found it cleared.
* ``DriftCheckFailed`` (warning): a check raised; logged with its traceback, reported once, checks go on.

Paper trading is compared bar for bar (:data:`engine.runtime.drift.EXACT`); live with
:data:`engine.runtime.drift.LIVE_TOLERANCE` (stop and target fills are booked one bar late).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from engine.config import DriftConfig, Settings
from engine.data.live_feed import ClosedCandle
from engine.domain import events
from engine.domain.models import Candles
from engine.domain.timeframes import parse_timeframe
from engine.runtime.drift import (
    EXACT,
    LIVE_TOLERANCE,
    DecisionDiverged,
    DecisionTolerance,
    DriftInputs,
    DriftReport,
    OpenEntry,
    check_drift,
    fmt_bar,
)
from engine.runtime.drift_expectancy import ExpectancyBelowBacktest

if TYPE_CHECKING:
    from engine.runtime.engine import TradingEngine

log = logging.getLogger(__name__)

DriftCheck = Callable[[DriftInputs, Settings, DriftConfig, DecisionTolerance], DriftReport]
_COLUMNS = ("open", "high", "low", "close", "volume")


class CandleLog:
    """Every candle of one symbol since the window's warm-up, append-only (arrays double when full)."""

    def __init__(self, symbol: str, timeframe: str, capacity: int = 1024) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self._time = np.zeros(capacity, dtype=np.int64)
        self._values = {name: np.zeros(capacity, dtype=np.float64) for name in _COLUMNS}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def extend(self, candles: Candles) -> None:
        for i in range(len(candles)):
            self.append(int(candles.open_time_ms[i]), *(float(getattr(candles, name)[i]) for name in _COLUMNS))

    def append(self, open_ms: int, *values: float) -> None:
        if self._size and open_ms <= int(self._time[self._size - 1]):
            return
        if self._size == len(self._time):
            self._time = np.concatenate([self._time, np.zeros_like(self._time)])
            self._values = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in self._values.items()}
        self._time[self._size] = open_ms
        for name, value in zip(_COLUMNS, values, strict=True):
            self._values[name][self._size] = value
        self._size += 1

    def candles(self) -> Candles:
        """A copy (Candles copies writable arrays), safe to read in another thread while this log grows."""
        n = self._size
        return Candles(self.symbol, self.timeframe, self._time[:n], *(self._values[k][:n] for k in _COLUMNS))


class DriftWatch:
    """Runs the drift check in the background and publishes its findings (see the module docstring).

    Args:
        engine: the running engine (settings, histories, portfolio, core, emit, clock).
        check: the check to run (tests inject a failing one); :func:`engine.runtime.drift.check_drift` by default.

    Attributes:
        checks_run: checks completed; ``failures``: checks that raised.
        last_report: the newest completed check's report.
    """

    def __init__(self, engine: TradingEngine, check: DriftCheck = check_drift) -> None:
        self._engine = engine
        self.config: DriftConfig = engine.settings.drift
        self.check = check
        self.tolerance = LIVE_TOLERANCE if engine.live else EXACT
        self._bar_ms = parse_timeframe(engine.timeframe)
        self._logs = {s: CandleLog(s, engine.timeframe) for s in engine.symbols}
        self.window_start_ms: int | None = None
        self.initial_equity: float | None = None
        self._last_check_close_ms = 0
        self._due: DriftInputs | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._reported_divergence = False
        self._expectancy_alerted = False
        self._failure_reported = False
        self.checks_run = 0
        self.failures = 0
        self.last_report: DriftReport | None = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # ------------------------------------------------------------------------------------- candles
    def start(self) -> None:
        """Seed the logs with each symbol's held history (call once, before the first live candle)."""
        if not self.enabled:
            return
        last_open: list[int] = []
        for symbol, history in self._engine.histories.items():
            self._logs[symbol].extend(history.candles())
            if history.last_open_ms is not None:
                last_open.append(history.last_open_ms)
        if last_open:
            self._maybe_open_window(max(last_open) + self._bar_ms)

    def on_bar(self, candle: ClosedCandle) -> None:
        """After a candle's decisions: log it and, when due, queue a check of the window so far."""
        if not self.enabled:
            return
        self._logs[candle.symbol].append(candle.open_time_ms, candle.open, candle.high, candle.low, candle.close,
                                         candle.volume)
        close_ms = candle.open_time_ms + self._bar_ms
        if self.window_start_ms is None:
            self._maybe_open_window(close_ms)
            return
        if close_ms - self._last_check_close_ms >= self.config.check_every_bars * self._bar_ms:
            self._last_check_close_ms = close_ms
            self._due = self.inputs()
            self._idle.clear()
            self._wake.set()

    def _maybe_open_window(self, next_open_ms: int) -> None:
        """Start the window at ``next_open_ms`` if the account is flat with nothing pending (as a backtest starts)."""
        engine = self._engine
        if engine.portfolio.positions or engine.core.pending:
            return
        self.window_start_ms = next_open_ms
        self.initial_equity = engine.portfolio.equity()
        self._last_check_close_ms = next_open_ms
        log.info("drift watch: window starts at %s", fmt_bar(next_open_ms))

    def inputs(self) -> DriftInputs:
        """What a check compares, copied now (the account's trades and open positions as of this bar)."""
        engine = self._engine
        assert self.window_start_ms is not None
        portfolio = engine.portfolio
        return DriftInputs(
            candles={s: candle_log.candles() for s, candle_log in self._logs.items() if len(candle_log)},
            window_start_ms=self.window_start_ms,
            closed_trades=tuple(portfolio.closed_trades),
            open_entries=tuple(OpenEntry(p.symbol, p.side, p.entry_ms) for p in portfolio.positions.values()),
            initial_equity=self.initial_equity,
            market_limits=dict(engine.core.market_limits),
        )

    # -------------------------------------------------------------------------------------- checks
    async def run(self) -> None:
        """The engine task: run each queued check in a worker thread, publish its findings. Never raises."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            inputs, self._due = self._due, None
            if inputs is not None:
                await self._run_check(inputs)
            if self._due is None:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Until no check is queued or running (tests; the engine never waits for a check)."""
        await self._idle.wait()

    async def _run_check(self, inputs: DriftInputs) -> None:
        try:
            report = await asyncio.to_thread(self.check, inputs, self._engine.settings, self.config, self.tolerance)
        except Exception as error:  # noqa: BLE001 - a failing check must never stop trading
            self.failures += 1
            log.exception("drift check failed")
            if not self._failure_reported:
                self._failure_reported = True
                text = self._engine.guard.describe(error)
                self._engine.emit(events.DriftCheckFailed(
                    time_ms=self._engine.clock.now_ms(), message=f"performance drift check failed: {text}; trading "
                    "goes on, the check is retried every window (reported once)", error=text))
            return
        self.checks_run += 1
        self.last_report = report
        self._publish(report)

    def _publish(self, report: DriftReport) -> None:
        divergence = report.divergence
        if divergence is not None and not self._reported_divergence:
            self._reported_divergence = True
            self._engine.emit(diverged_event(divergence, self._engine.clock.now_ms()))
        alert = report.expectancy_alert
        if alert is None:
            self._expectancy_alerted = False
        elif not self._expectancy_alerted:
            self._expectancy_alerted = True
            self._engine.emit(expectancy_event(alert, self._engine.clock.now_ms()))


def diverged_event(divergence: DecisionDiverged, now_ms: int) -> events.DecisionDiverged:
    """The event of a drift finding; a divergence a person's command caused is a warning, not critical."""
    return events.DecisionDiverged(
        time_ms=now_ms, message=divergence.message,
        severity=events.Severity.WARNING if divergence.by_command else events.Severity.CRITICAL,
        symbol=divergence.symbol, bar_ms=divergence.bar_ms, decision=divergence.decision, live=divergence.live,
        backtest=divergence.backtest, live_bar_ms=divergence.live_bar_ms,
        backtest_bar_ms=divergence.backtest_bar_ms, by_command=divergence.by_command)


def expectancy_event(alert: ExpectancyBelowBacktest, now_ms: int) -> events.ExpectancyBelowBacktest:
    return events.ExpectancyBelowBacktest(
        time_ms=now_ms, message=alert.message, realised_pct=alert.realised_pct, backtest_pct=alert.backtest_pct,
        standard_error_pct=alert.standard_error_pct, std_errors=alert.std_errors,
        threshold_pct=alert.threshold_pct, trades=alert.trades, backtest_trades=alert.backtest_trades)
