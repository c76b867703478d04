"""Provides the checks on live candles (CandleValidator) and the per-symbol feed status (FeedHealth).

Every closed candle from the exchange passes the import rules of :mod:`engine.data.validate` (finite values,
positive prices, volume >= 0, high >= max(open, close), low <= min(open, close), open time on the timeframe
grid, strictly after the previous accepted candle) and the **outlier rule**: its range (high - low) and its
close jump (|close - previous close|) must not exceed ``outlier_atr_multiple`` times the recent ATR (Wilder's,
``OUTLIER_ATR_PERIOD`` bars of the accepted candles; never taken below ``OUTLIER_MIN_ATR_RATIO`` of the
previous close, so a dead-quiet minute does not turn an ordinary tick into an outlier). On the bundled and
shared real series (1m to 1h, 2024-2026, the October 2025 crash included) the largest such ratio is 42.5
(SOL 5m; 31.5 on 1h, ADA in that crash). The default multiple, 75, keeps a margin above that and still flags
every 10x or 1000x print on 1h bars (and a 2x one on 68-96 % of the bundled 1h bars: it depends on the ATR).

A failing candle is **quarantined**: not handed to the engine (no decision is taken on it), not stored, and
the last good state (previous close, ATR) is kept. It is never fetched again: the exchange's closed klines
are final, so asking again would give the same bar; the feed's cursor moves past it, the good candles after
it flow on, and the history has a one-bar gap there, like a bar the exchange never had. A genuine jump to a
new level is not quarantined forever: once ``OUTLIER_CONFIRM_BARS`` consecutive bars break only the outlier
rule and agree with each other, the last of them is accepted at the new level.

:class:`FeedHealth` keeps each symbol OK, DEGRADED (its last candle was quarantined; the next good one
clears it) or STALE (no new closed candle, good or bad, for ``stale_after_bars`` bar lengths by the clock;
the next candle clears it), and records each change for the runner to publish as an event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engine.data.validate import CandleColumns, Rule, row_violations, timestamps_to_ms
from engine.domain.models import Candles
from engine.domain.snapshot import FEED_DEGRADED, FEED_OK, FEED_STALE, FeedStatus

OUTLIER_RULE = "outlier"
"""``Quarantine.rule`` of a candle that passes the import rules but moves too far for the recent ATR."""

DEFAULT_OUTLIER_ATR_MULTIPLE = 75.0
OUTLIER_ATR_PERIOD = 14
OUTLIER_MIN_ATR_RATIO = 0.001
"""The ATR the outlier rule measures against is at least this ratio of the previous close (0.1 %)."""
OUTLIER_CONFIRM_BARS = 3
"""Consecutive agreeing outlier bars after which the last one is accepted as a real move to a new level."""
PRIME_BARS = 50 * OUTLIER_ATR_PERIOD
"""Bars of a history :meth:`CandleValidator.prime` replays (the ATR's seed then weighs < 1e-15)."""

Values = tuple[float, float, float, float, float]


def iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Quarantine:
    """One candle the checks refused.

    Attributes:
        rule: a :class:`engine.data.validate.Rule` value, or ``OUTLIER_RULE``.
        detail: the offending values, e.g. ``"high 99.0 < low 101.0"``.
    """

    symbol: str
    timeframe: str
    open_time_ms: int
    rule: str
    detail: str

    @property
    def message(self) -> str:
        return (f"{self.symbol} {self.timeframe} candle {iso(self.open_time_ms)} quarantined ({self.rule}: "
                f"{self.detail}); not traded on")


@dataclass(frozen=True)
class Checked:
    """One candle after the checks: ``rule`` is None when it passed (and was accepted)."""

    open_time_ms: int
    values: Values  # (open, high, low, close, volume); NaN where the exchange sent no number
    rule: str | None = None
    detail: str = ""


def parse_row(row: Sequence[Any]) -> tuple[Values, str | None]:
    """A ccxt OHLCV row's ``(open, high, low, close, volume)`` as floats; unreadable values become NaN.

    Returns:
        The values and, when one could not be read (ccxt gives None for a non-numeric string), a detail.
    """
    values: list[float] = []
    problem: str | None = None
    for name, raw in zip(("open", "high", "low", "close", "volume"), row[1:6], strict=True):
        try:
            values.append(float(raw))
        except (TypeError, ValueError):
            values.append(math.nan)
            problem = problem or f"{name} {raw!r} is not a number"
    return (values[0], values[1], values[2], values[3], values[4]), problem


class CandleValidator:
    """The import rules plus the outlier rule for one symbol's candles, in order (see the module docstring).

    Args:
        timeframe_ms: bar length.
        outlier_atr_multiple: the outlier rule's limit, in ATRs (> 1).
    """

    def __init__(self, timeframe_ms: int, outlier_atr_multiple: float = DEFAULT_OUTLIER_ATR_MULTIPLE) -> None:
        if outlier_atr_multiple <= 1:
            raise ValueError(f"outlier_atr_multiple must be > 1, got {outlier_atr_multiple}")
        self.timeframe_ms = timeframe_ms
        self.outlier_atr_multiple = outlier_atr_multiple
        self.previous_open_ms: int | None = None
        self.previous_close = math.nan
        self.atr = math.nan
        self._seed: list[float] = []
        self._suspects: list[float] = []  # closes of the consecutive outlier-only bars just quarantined

    def prime(self, candles: Candles) -> None:
        """Start from the end of an accepted history (oldest first)."""
        self.previous_open_ms, self.previous_close, self.atr = None, math.nan, math.nan
        self._seed, self._suspects = [], []
        start = max(0, len(candles) - PRIME_BARS)
        for i in range(start, len(candles)):
            self._observe(int(candles.open_time_ms[i]), float(candles.high[i]), float(candles.low[i]),
                          float(candles.close[i]))

    def validate(self, rows: Sequence[Sequence[Any]]) -> list[Checked]:
        """Check ccxt OHLCV rows (``[open_time_ms, o, h, l, c, v, ...]``, oldest first) in order.

        Each row passing every rule is accepted (the next is measured against it); each failing one is
        quarantined (see the module docstring). The import rules run over the rows at once, the outlier rule
        one row at a time.
        """
        if not rows:
            return []
        parsed = [parse_row(row) for row in rows]
        times = [int(row[0]) for row in rows]
        first = 0 if self.previous_open_ms is None else 1
        raw = np.asarray(([self.previous_open_ms] if first else []) + times, dtype=np.int64)
        # A placeholder previous row (valid values) carries only the last accepted open time, for ordering.
        table = np.asarray(([(1.0, 1.0, 1.0, 1.0, 0.0)] if first else []) + [v for v, _ in parsed],
                           dtype=np.float64).reshape(-1, 5)
        columns = CandleColumns(raw, timestamps_to_ms(raw)[0], table[:, 0], table[:, 1], table[:, 2], table[:, 3],
                                table[:, 4], first_row=1)
        broken = row_violations(columns, self.timeframe_ms)
        checked: list[Checked] = []
        for index, (open_ms, (values, unreadable)) in enumerate(zip(times, parsed, strict=True)):
            verdict: tuple[str, str] | None
            if unreadable is not None:
                verdict = Rule.NON_NUMERIC_VALUE.value, unreadable
            elif index + first in broken:
                rule, detail = broken[index + first]
                verdict = rule.value, detail
            else:
                verdict = self._outlier_verdict(values)
            if verdict is None:
                self._accept(open_ms, values)
                checked.append(Checked(open_ms, values))
            else:
                self._quarantine(values, verdict[0])
                checked.append(Checked(open_ms, values, *verdict))
        return checked

    # ---------------------------------------------------------------------------------- the outlier rule
    def _observe(self, open_ms: int, high: float, low: float, close: float) -> None:
        previous = self.previous_close
        true_range = high - low if math.isnan(previous) else max(high, previous) - min(low, previous)
        if math.isnan(self.atr):
            self._seed.append(true_range)
            if len(self._seed) == OUTLIER_ATR_PERIOD:
                self.atr, self._seed = sum(self._seed) / OUTLIER_ATR_PERIOD, []
        else:
            self.atr += (true_range - self.atr) / OUTLIER_ATR_PERIOD
        self.previous_open_ms, self.previous_close = open_ms, close

    def _outlier(self, values: Values, reference_close: float) -> str | None:
        """Why the bar moves too far from ``reference_close`` for the recent ATR, or None."""
        _, high, low, close, _ = values
        atr = max(self.atr, OUTLIER_MIN_ATR_RATIO * reference_close)
        moved = max(high - low, abs(close - reference_close))
        if moved <= self.outlier_atr_multiple * atr:
            return None
        what = "range" if high - low >= abs(close - reference_close) else "close jump"
        return (f"{what} {moved:.6g} is {moved / atr:.0f}x the recent ATR {atr:.6g} "
                f"(limit {self.outlier_atr_multiple:g}x; previous close {reference_close:.6g})")

    def _outlier_verdict(self, values: Values) -> tuple[str, str] | None:
        if math.isnan(self.atr) or math.isnan(self.previous_close):
            return None  # too little history for an ATR: the import rules only
        detail = self._outlier(values, self.previous_close)
        if detail is None:
            return None
        if len(self._suspects) >= OUTLIER_CONFIRM_BARS - 1 and self._outlier(values, self._suspects[-1]) is None:
            return None  # the bars before agree with it: a real move to a new level (see _accept)
        return OUTLIER_RULE, detail

    def _accept(self, open_ms: int, values: Values) -> None:
        _, high, low, close, _ = values
        if self._suspects and self._outlier(values, self.previous_close) is not None:
            self.previous_close = self._suspects[-1]  # a confirmed new level: measure from it
        self._suspects = []
        self._observe(open_ms, high, low, close)

    def _quarantine(self, values: Values, rule: str) -> None:
        """Only a run of agreeing outliers is remembered (a real move to a new level, once confirmed)."""
        if rule != OUTLIER_RULE:
            self._suspects = []
        elif self._suspects and self._outlier(values, self._suspects[-1]) is None:
            self._suspects.append(values[3])
        else:
            self._suspects = [values[3]]


class FeedHealth:
    """Per-symbol feed status for the live feed (see the module docstring).

    Args:
        symbols: the symbols fed.
        timeframe_ms: bar length.
        stale_after_bars: bar lengths without a new closed candle after which a symbol is STALE (> 1).
    """

    def __init__(self, symbols: Iterable[str], timeframe: str, timeframe_ms: int, stale_after_bars: float = 1.5
                 ) -> None:
        if stale_after_bars <= 1:
            raise ValueError(f"stale_after_bars must be > 1, got {stale_after_bars}")
        self.timeframe = timeframe
        self.timeframe_ms = timeframe_ms
        self.stale_after_ms = int(stale_after_bars * timeframe_ms)
        self._status = {symbol: FeedStatus(symbol) for symbol in symbols}
        self._last_close_ms: dict[str, int | None] = dict.fromkeys(self._status)
        self._changes: list[tuple[FeedStatus, FeedStatus, Quarantine | None]] = []

    def expect(self, symbol: str, last_close_ms: int) -> None:
        """The close time (UTC ms) of the last candle already held: staleness is measured from it."""
        self._last_close_ms[symbol] = last_close_ms

    def status(self, symbol: str) -> FeedStatus:
        return self._status[symbol]

    def statuses(self) -> tuple[FeedStatus, ...]:
        return tuple(self._status.values())

    @property
    def all_ok(self) -> bool:
        return all(status.state == FEED_OK for status in self._status.values())

    def _set(self, status: FeedStatus, quarantine: Quarantine | None = None) -> None:
        before = self._status[status.symbol]
        self._status[status.symbol] = status
        if before.state != status.state or quarantine is not None:
            self._changes.append((before, status, quarantine))

    def accepted(self, symbol: str, close_ms: int, now_ms: int) -> None:
        """A good candle arrived: OK again."""
        self._last_close_ms[symbol] = close_ms
        if self._status[symbol].state != FEED_OK:
            self._set(FeedStatus(symbol, FEED_OK, "", now_ms))

    def quarantined(self, quarantine: Quarantine, now_ms: int) -> None:
        """A bad candle arrived: DEGRADED, with the candle's time and rule."""
        symbol = quarantine.symbol
        self._last_close_ms[symbol] = quarantine.open_time_ms + self.timeframe_ms
        reason = f"candle {iso(quarantine.open_time_ms)} quarantined: {quarantine.rule} ({quarantine.detail})"
        self._set(FeedStatus(symbol, FEED_DEGRADED, reason, now_ms), quarantine)

    def check_stale(self, now_ms: int) -> None:
        """Mark STALE every symbol whose last candle closed ``stale_after_bars`` bars or more ago."""
        for symbol, status in self._status.items():
            last = self._last_close_ms[symbol]
            if status.state == FEED_STALE or last is None or now_ms < last + self.stale_after_ms:
                continue
            minutes = (now_ms - last) / 60_000
            reason = (f"no new {self.timeframe} candle for {minutes:.0f} min: the last one closed {iso(last)}"
                      f" (STALE after {self.stale_after_ms / self.timeframe_ms:g} bars)")
            self._set(replace(status, state=FEED_STALE, reason=reason, since_ms=now_ms))

    def take_changes(self) -> list[tuple[FeedStatus, FeedStatus, Quarantine | None]]:
        """``(before, after, quarantine)`` per change since the last call, oldest first."""
        changes, self._changes = self._changes, []
        return changes

