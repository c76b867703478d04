"""Provides the performance drift check: the live window backtested again and compared with what the account did.

Given the candles the account traded on (each symbol's warm-up history, then every bar since the window
start), the settings and the account's trades, :func:`check_drift` runs the same
:class:`engine.backtest.engine.BacktestEngine` over the window and reports two findings:

* :class:`DecisionDiverged`: the first decision that differs. A round trip is two decisions: its entry
  (the bar the entry filled in, and the side) and its exit (the bar and the exit kind: ``stop``,
  ``trailing_stop``, ``target``, ``signal``, ``risk_limit``, ``emergency_exit``, ``manual``). Each symbol's
  round trips are compared in order; the earliest difference over all symbols is the finding. After it the
  account and the backtest are in different states, so later decisions say nothing new; there is one such
  finding per window.
* :class:`ExpectancyBelowBacktest`: realised expectancy below the backtest's by more than
  ``expectancy_std_errors`` standard errors, once the account has ``min_trades`` closed trades.

Quantities and prices are not compared. Live fills at real prices with real fees (Binance takes a buy's
fee in the base asset), sizes on the account's own equity, and rounds on the exchange's lot rules: they
differ from the fill model by design and the difference is a money question, which the expectancy
comparison answers. What must not differ is *what was decided when*.

Times: a trade's ``entry_ms`` / ``exit_ms`` are placed in the bar that contains them (the backtest's fill
times are bar opens). Live records an order's time when it is sent or noticed, not the bar it belongs
to, so :class:`DecisionTolerance` names how many bars late a live decision may be:

* entries and signal / risk-limit / command exits are sent right after the deciding bar closed, i.e. in
  the bar the backtest fills them in: 0 bars;
* stop, trailing-stop and target exits fill on the exchange inside a bar but are booked when the engine
  polls the order after that bar closed: 1 bar late (:data:`LIVE_TOLERANCE`).

Paper trading *is* the backtest bar for bar (:data:`EXACT`). A decision the other side could not have
taken yet (its bar is at or after the last closed bar of the data, or within the tolerance of it) is
left for the next check.

Expectancy, and why % of entry notional: :mod:`engine.runtime.drift_expectancy`.

Pure: no I/O, no clock; the runtime calls it from a worker thread (:mod:`engine.runtime.drift_watch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from engine.backtest.engine import BacktestEngine
from engine.backtest.result import BacktestResult
from engine.config import DriftConfig, Settings
from engine.domain.models import Candles, ClosedTrade, ExitKind, MarketLimits, PositionSide
from engine.domain.timeframes import parse_timeframe
from engine.runtime.drift_expectancy import ExpectancyBelowBacktest, ExpectancyComparison, compare_expectancy


@dataclass(frozen=True)
class DecisionTolerance:
    """How many bars after the backtest's bar a live decision may fall (see the module docstring)."""

    entry_bars: int = 0
    intrabar_exit_bars: int = 1
    other_exit_bars: int = 0

    def exit_bars(self, exit_kind: ExitKind) -> int:
        """Stop, trailing-stop and target exits fill inside a bar: live books them when it polls after the bar."""
        return self.intrabar_exit_bars if exit_kind.is_intrabar else self.other_exit_bars


EXACT = DecisionTolerance(entry_bars=0, intrabar_exit_bars=0, other_exit_bars=0)
"""Paper trading: the same bars as the backtest."""

LIVE_TOLERANCE = DecisionTolerance()
"""Live trading: stop and target fills are booked one bar late."""


@dataclass(frozen=True)
class OpenEntry:
    """A position the account still holds: its entry decision without an exit yet."""

    symbol: str
    side: PositionSide
    entry_ms: int


@dataclass(frozen=True)
class DriftInputs:
    """What one drift check compares.

    Attributes:
        candles: per symbol, the warm-up history the account's indicators started from, then every bar
            it traded on (oldest first, one timeframe).
        window_start_ms: open time of the first bar of the window; the account was flat and idle before it,
            as the backtest is.
        closed_trades: the account's closed trades (those entered before the window are ignored).
        open_entries: the account's open positions.
        initial_equity: the account's equity at the window start (the backtest's capital: same sizing).
        market_limits: the lot/tick rules the account sizes with (None: the backtester's defaults).
    """

    candles: Mapping[str, Candles]
    window_start_ms: int
    closed_trades: Sequence[ClosedTrade] = ()
    open_entries: Sequence[OpenEntry] = ()
    initial_equity: float | None = None
    market_limits: Mapping[str, MarketLimits] | None = None


@dataclass(frozen=True)
class DecisionDiverged:
    """The first decision on which the account and the backtest differ.

    Attributes:
        symbol: where it happened.
        bar_ms: open time of the (earlier) bar of the two decisions, UTC ms.
        decision: ``entry`` or ``exit``.
        live / backtest: what each did, in words ("exited long (stop) in the bar of 2024-01-02 05:00 UTC").
        live_bar_ms / backtest_bar_ms: the bar of each side's decision (None: it took none).
        by_command: the live decision was a person's command (a manual close, an emergency exit).
    """

    symbol: str
    bar_ms: int
    decision: str
    live: str
    backtest: str
    live_bar_ms: int | None = None
    backtest_bar_ms: int | None = None
    by_command: bool = False

    @property
    def message(self) -> str:
        cause = " (a person's command)" if self.by_command else ""
        return (f"{self.symbol}: live trading left the backtest at the {self.decision} of {fmt_bar(self.bar_ms)}"
                f"{cause}: live {self.live}; backtest {self.backtest}")


@dataclass(frozen=True)
class DriftReport:
    """One check's outcome: the findings (None: none) and what was compared."""

    divergence: DecisionDiverged | None
    expectancy_alert: ExpectancyBelowBacktest | None
    expectancy: ExpectancyComparison
    compared_decisions: int


@dataclass(frozen=True)
class RoundTrip:
    """One position as decisions: times are bar opens; ``exit_bar_ms`` None = still held (as far as known)."""

    symbol: str
    side: PositionSide
    entry_bar_ms: int
    exit_bar_ms: int | None = None
    exit_kind: ExitKind | None = None


def fmt_bar(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------------------------------------- the check
def run_window_backtest(inputs: DriftInputs, settings: Settings) -> BacktestResult:
    """The backtest of the window: the same decision path, candles, fill model and settings as the account.

    ``unattended=False``: the account's breakers latch as configured, so until a person resumes one the
    backtest waits exactly as the account does (a resume is a person's decision the backtest cannot know).
    """
    backtest = settings.backtest
    if inputs.initial_equity is not None and inputs.initial_equity > 0:
        backtest = backtest.model_copy(update={"initial_capital": inputs.initial_equity})
    engine = BacktestEngine(dict(inputs.candles), settings=settings, backtest=backtest,
                            market_limits=inputs.market_limits, unattended=False)
    return engine.run_backtest(start=inputs.window_start_ms)


def check_drift(inputs: DriftInputs, settings: Settings, config: DriftConfig,
                tolerance: DecisionTolerance = LIVE_TOLERANCE) -> DriftReport:
    """Backtest the window again and compare it with the account (see the module docstring)."""
    candles = {s: c for s, c in inputs.candles.items() if len(c)}
    live_trades = [t for t in inputs.closed_trades if t.symbol in candles and t.entry_ms >= inputs.window_start_ms]
    in_window = any(int(c.open_time_ms[-1]) >= inputs.window_start_ms for c in candles.values())
    if not in_window:
        return DriftReport(None, None, compare_expectancy(live_trades, [], config)[0], 0)
    result = run_window_backtest(replace(inputs, candles=candles), settings)
    backtest_trades = [r.trade for r in result.trades if r.exit_kind is not ExitKind.END_OF_DATA]
    divergence, compared = first_divergence(candles, live_round_trips(candles, live_trades, inputs),
                                            backtest_round_trips(result), tolerance)
    expectancy, alert = compare_expectancy(live_trades, backtest_trades, config)
    return DriftReport(divergence, alert, expectancy, compared)


# ------------------------------------------------------------------------------------------- decisions
def _bar_of(candles: Candles, bar_ms: int, time_ms: int) -> int | None:
    """Open time of the bar that contains ``time_ms`` (in a gap: the next bar); None at or after the last close."""
    times = candles.open_time_ms
    if time_ms >= int(times[-1]) + bar_ms:
        return None
    i = int(np.searchsorted(times, time_ms, "right")) - 1
    if i < 0:
        return int(times[0])
    if time_ms >= int(times[i]) + bar_ms:
        return int(times[i + 1])
    return int(times[i])


def live_round_trips(candles: Mapping[str, Candles], trades: Sequence[ClosedTrade],
                     inputs: DriftInputs) -> dict[str, list[RoundTrip]]:
    """The account's decisions per symbol in time order; ones after the data's last bar are left out."""
    trips: dict[str, list[tuple[int, RoundTrip]]] = {s: [] for s in candles}
    for trade in trades:
        series = candles[trade.symbol]
        bar_ms = parse_timeframe(series.timeframe)
        entry = _bar_of(series, bar_ms, trade.entry_ms)
        if entry is None:
            continue
        exit_bar = _bar_of(series, bar_ms, trade.exit_ms)
        kind = trade.exit_kind if exit_bar is not None else None
        trips[trade.symbol].append((trade.entry_ms, RoundTrip(trade.symbol, trade.side, entry, exit_bar, kind)))
    for position in inputs.open_entries:
        series_or_none = candles.get(position.symbol)
        if series_or_none is None or position.entry_ms < inputs.window_start_ms:
            continue
        entry = _bar_of(series_or_none, parse_timeframe(series_or_none.timeframe), position.entry_ms)
        if entry is not None:
            trips[position.symbol].append((position.entry_ms, RoundTrip(position.symbol, position.side, entry)))
    return {s: [trip for _, trip in sorted(items, key=lambda item: item[0])] for s, items in trips.items()}


def backtest_round_trips(result: BacktestResult) -> dict[str, list[RoundTrip]]:
    """The backtest's decisions per symbol; a position closed at the end of the data is still held."""
    trips: dict[str, list[RoundTrip]] = {}
    for record in sorted(result.trades, key=lambda r: r.trade.entry_ms):
        trade = record.trade
        held = record.exit_kind is ExitKind.END_OF_DATA
        trips.setdefault(trade.symbol, []).append(RoundTrip(
            trade.symbol, trade.side, trade.entry_ms, None if held else trade.exit_ms,
            None if held else record.exit_kind))
    return trips


def _entered(trip: RoundTrip) -> str:
    return f"entered {trip.side.value} in the bar of {fmt_bar(trip.entry_bar_ms)}"


def _exited(trip: RoundTrip) -> str:
    assert trip.exit_bar_ms is not None
    return f"exited {trip.side.value} ({trip.exit_kind}) in the bar of {fmt_bar(trip.exit_bar_ms)}"


def _no_entry(later: RoundTrip | None) -> str:
    return "took no entry" + (f" then ({_entered(later)})" if later is not None else "")


def _still_held(later: RoundTrip | None) -> str:
    return "still held the position" + (f" then ({_exited(later)})" if later is not None else "")


class _SymbolComparison:
    """One symbol's round trips, live against backtest, in order.

    When the two sides' decisions fall in different bars (beyond the tolerance), the earlier one is the
    decision the other side did not take: it is named as such, with what the other side did later.
    """

    def __init__(self, symbol: str, candles: Candles, tolerance: DecisionTolerance) -> None:
        self.symbol = symbol
        self.bar_ms = parse_timeframe(candles.timeframe)
        self.last_open_ms = int(candles.open_time_ms[-1])
        self.tolerance = tolerance
        self.compared = 0

    def _settled(self, backtest_bar_ms: int, lag_bars: int) -> bool:
        """Whether the live counterpart of a backtest decision in this bar is due in the data already."""
        return backtest_bar_ms + lag_bars * self.bar_ms <= self.last_open_ms

    def _lateness(self, live_bar_ms: int, backtest_bar_ms: int, lag_bars: int) -> int:
        """-1: live decided earlier than the backtest; 0: in time; 1: later than the tolerance allows."""
        late = live_bar_ms - backtest_bar_ms
        return -1 if late < 0 else 0 if late <= lag_bars * self.bar_ms else 1

    def _diverged(self, decision: str, live: RoundTrip | None, live_text: str, live_bar: int | None,
                  backtest_text: str, backtest_bar: int | None) -> DecisionDiverged:
        bars = [b for b in (live_bar, backtest_bar) if b is not None]
        by_command = (decision == "exit" and live is not None and live.exit_kind is not None
                      and live.exit_kind.is_commanded and live_bar is not None and live_bar == min(bars))
        return DecisionDiverged(self.symbol, min(bars), decision, live_text, backtest_text, live_bar, backtest_bar,
                                by_command)

    def _entry(self, mine: RoundTrip, theirs: RoundTrip) -> DecisionDiverged | None:
        lateness = self._lateness(mine.entry_bar_ms, theirs.entry_bar_ms, self.tolerance.entry_bars)
        live_bar, backtest_bar = mine.entry_bar_ms, theirs.entry_bar_ms
        if lateness < 0:
            return self._diverged("entry", mine, _entered(mine), live_bar, _no_entry(theirs), backtest_bar)
        if lateness > 0:
            return self._diverged("entry", mine, _no_entry(mine), live_bar, _entered(theirs), backtest_bar)
        if mine.side is not theirs.side:
            return self._diverged("entry", mine, _entered(mine), live_bar, _entered(theirs), backtest_bar)
        return None

    def _exit(self, mine: RoundTrip, theirs: RoundTrip) -> DecisionDiverged | None:
        if theirs.exit_bar_ms is None:
            if mine.exit_bar_ms is None:
                return None
            return self._diverged("exit", mine, _exited(mine), mine.exit_bar_ms, _still_held(None), None)
        assert theirs.exit_kind is not None
        lag = self.tolerance.exit_bars(theirs.exit_kind)
        if mine.exit_bar_ms is None:
            if not self._settled(theirs.exit_bar_ms, lag):
                return None
            return self._diverged("exit", mine, _still_held(None), None, _exited(theirs), theirs.exit_bar_ms)
        lateness = self._lateness(mine.exit_bar_ms, theirs.exit_bar_ms, lag)
        live_bar, backtest_bar = mine.exit_bar_ms, theirs.exit_bar_ms
        if lateness < 0:
            return self._diverged("exit", mine, _exited(mine), live_bar, _still_held(theirs), backtest_bar)
        if lateness > 0:
            return self._diverged("exit", mine, _still_held(mine), live_bar, _exited(theirs), backtest_bar)
        if mine.exit_kind is not theirs.exit_kind:
            return self._diverged("exit", mine, _exited(mine), live_bar, _exited(theirs), backtest_bar)
        return None

    def first_divergence(self, live: Sequence[RoundTrip], backtest: Sequence[RoundTrip]) -> DecisionDiverged | None:
        for i in range(max(len(live), len(backtest))):
            mine = live[i] if i < len(live) else None
            theirs = backtest[i] if i < len(backtest) else None
            if theirs is None:
                assert mine is not None  # its bar is in the data: the backtest would have taken it by now
                return self._diverged("entry", mine, _entered(mine), mine.entry_bar_ms, _no_entry(None), None)
            if mine is None:
                if not self._settled(theirs.entry_bar_ms, self.tolerance.entry_bars):
                    return None
                return self._diverged("entry", None, _no_entry(None), None, _entered(theirs), theirs.entry_bar_ms)
            divergence = self._entry(mine, theirs)
            if divergence is not None:
                return divergence
            self.compared += 1
            if mine.exit_bar_ms is None and theirs.exit_bar_ms is None:
                return None  # both still hold: the last round trip so far
            divergence = self._exit(mine, theirs)
            if divergence is not None:
                return divergence
            if mine.exit_bar_ms is None or theirs.exit_bar_ms is None:
                return None  # an exit not due yet: compared on a later check
            self.compared += 1
        return None


def first_divergence(candles: Mapping[str, Candles], live: Mapping[str, Sequence[RoundTrip]],
                     backtest: Mapping[str, Sequence[RoundTrip]],
                     tolerance: DecisionTolerance = LIVE_TOLERANCE) -> tuple[DecisionDiverged | None, int]:
    """The earliest differing decision over all symbols (None: none) and how many decisions agreed."""
    found: list[DecisionDiverged] = []
    compared = 0
    for symbol in sorted(candles):
        comparison = _SymbolComparison(symbol, candles[symbol], tolerance)
        divergence = comparison.first_divergence(live.get(symbol, ()), backtest.get(symbol, ()))
        compared += comparison.compared
        if divergence is not None:
            found.append(divergence)
    first = min(found, key=lambda d: (d.bar_ms, d.symbol)) if found else None
    return first, compared
