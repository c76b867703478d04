"""Provides the multi-timeframe analyser: trend per timeframe, confluence with a signal, size multipliers.

Trend of one timeframe (``trend_method``), per closed candle of that timeframe:

- ``"magic_trend"``: the Magic Trend direction (+1 while cci(close) >= 0, -1 below; 0 in warm-up).
- ``"ema"``: +1 when ``ema(close, ema_fast)`` is above ``ema(close, ema_slow)`` by more than
  ``neutral_band_pct`` percent of the slow ema, -1 when below by more than that, 0 inside the band (and in
  warm-up).
- ``"magic_trend_and_ema"`` (default): the common direction when both agree, else 0 (neutral).

Confluence of a LONG (SHORT) signal across the N timeframes: ``aligned`` = timeframes trending up (down),
``opposed`` = trending the other way; neutral ones count for neither. It is *conflicting* when
``opposed > 0 and opposed >= aligned`` and then the size multiplier is 0 (no trade). Otherwise the multiplier
grows linearly with ``aligned`` from ``single_alignment_multiplier`` (1 aligned) to
``full_alignment_multiplier`` (all aligned): with 3 timeframes 0.5, 0.75, 1.0. No aligned timeframe and none
opposed gives ``no_alignment_multiplier`` (default 0: no confirmation, no trade).

No look-ahead: a base bar sees a timeframe's candle only once that candle has closed at the base bar's
*close* time (``closed_index`` on ``open_time_ms + base_ms``). On 1h bars, the 4h candle of 00:00 becomes
visible on the 03:00 bar (which closes at 04:00), not before. Missing higher timeframes are resampled from
the base candles (see :mod:`engine.analysis.buckets` for gaps and partial buckets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.analysis.buckets import resample
from engine.analysis.indicators import ema, magic_trend
from engine.domain.models import Candles, FloatArray, IntArray, PositionSide, SignalType
from engine.domain.timeframes import closed_as_of, closed_index, parse_timeframe

Int8Array = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]
TrendMethod = Literal["magic_trend", "ema", "magic_trend_and_ema"]
TREND_METHODS: tuple[str, ...] = ("magic_trend", "ema", "magic_trend_and_ema")

_DIRECTION_SIGN: dict[SignalType, int] = {SignalType.LONG: 1, SignalType.SHORT: -1}


def _sign_of(direction: SignalType) -> int:
    if direction not in _DIRECTION_SIGN:
        raise ValueError(f"direction must be LONG or SHORT, got {direction!r}")
    return _DIRECTION_SIGN[direction]


@dataclass(frozen=True)
class ConfluenceResult:
    """How the timeframes' trends agree with a signal direction.

    Attributes:
        direction: LONG or SHORT, the signal's direction.
        trends: timeframe -> +1 up, -1 down, 0 neutral or not yet known.
        aligned: number of timeframes trending in ``direction``.
        opposed: number trending against it.
        multiplier: position-size multiplier, ratio in [0, 1] (0 = no trade).
        conflicting: opposed > 0 and opposed >= aligned.
    """

    direction: SignalType
    trends: dict[str, int]
    aligned: int
    opposed: int
    multiplier: float
    conflicting: bool


@dataclass(frozen=True, eq=False)
class MtfFrame:
    """Per base bar: each timeframe's trend as of the bar's close, and the confluence for LONG and SHORT."""

    open_time_ms: IntArray
    timeframes: tuple[str, ...]
    trends: dict[str, Int8Array]
    long_multiplier: FloatArray
    short_multiplier: FloatArray
    long_conflicting: BoolArray  # also: an open long should be reduced
    short_conflicting: BoolArray

    def __len__(self) -> int:
        return len(self.open_time_ms)

    def multiplier_for(self, direction: SignalType) -> FloatArray:
        return self.long_multiplier if _sign_of(direction) > 0 else self.short_multiplier

    def conflicting_for(self, direction: SignalType) -> BoolArray:
        return self.long_conflicting if _sign_of(direction) > 0 else self.short_conflicting

    def trends_at(self, index: int) -> dict[str, int]:
        return {timeframe: int(self.trends[timeframe][index]) for timeframe in self.timeframes}


class MultiTimeframeAnalyzer:
    """Trend per timeframe and its confluence with a signal (see the module docstring for the rules).

    Args:
        timeframes: the timeframes to consult, e.g. ``("1h", "4h", "1d")``; none lower than the base candles'.
        trend_method: ``"magic_trend"``, ``"ema"`` or ``"magic_trend_and_ema"``.
        cci_period, atr_period, atr_coeff: Magic Trend inputs.
        ema_fast, ema_slow: ema periods in bars of each timeframe.
        neutral_band_pct: ema gap (pct in [0, 100] of the slow ema) inside which the trend is neutral.
        full_alignment_multiplier: multiplier when every timeframe is aligned, ratio in [0, 1].
        single_alignment_multiplier: multiplier when exactly one is aligned (none conflicting).
        no_alignment_multiplier: multiplier when no timeframe is aligned and none opposed.
    """

    def __init__(
        self,
        timeframes: tuple[str, ...] = ("1h", "4h", "1d"),
        trend_method: TrendMethod = "magic_trend_and_ema",
        cci_period: int = 20,
        atr_period: int = 5,
        atr_coeff: float = 1.0,
        ema_fast: int = 20,
        ema_slow: int = 50,
        neutral_band_pct: float = 0.1,
        full_alignment_multiplier: float = 1.0,
        single_alignment_multiplier: float = 0.5,
        no_alignment_multiplier: float = 0.0,
    ) -> None:
        if not timeframes:
            raise ValueError("timeframes must name at least one timeframe")
        lengths = [parse_timeframe(timeframe) for timeframe in timeframes]
        if len(set(lengths)) != len(lengths):
            raise ValueError(f"timeframes must be distinct, got {timeframes!r}")
        if trend_method not in TREND_METHODS:
            raise ValueError(f"trend_method must be one of {TREND_METHODS}, got {trend_method!r}")
        if not 0 < ema_fast < ema_slow:
            raise ValueError(f"need 0 < ema_fast < ema_slow, got {ema_fast} and {ema_slow}")
        if neutral_band_pct < 0:
            raise ValueError(f"neutral_band_pct must be >= 0, got {neutral_band_pct}")
        multipliers = (full_alignment_multiplier, single_alignment_multiplier, no_alignment_multiplier)
        if not all(0.0 <= value <= 1.0 for value in multipliers):
            raise ValueError(f"alignment multipliers must be ratios in [0, 1], got {multipliers}")
        order = np.argsort(lengths, kind="stable")
        self.timeframes: tuple[str, ...] = tuple(timeframes[k] for k in order)
        self.trend_method = trend_method
        self.cci_period = cci_period
        self.atr_period = atr_period
        self.atr_coeff = atr_coeff
        self.ema_fast = ema_fast
        self.ema_slow = ema_slow
        self.neutral_band_pct = neutral_band_pct
        self.full_alignment_multiplier = full_alignment_multiplier
        self.single_alignment_multiplier = single_alignment_multiplier
        self.no_alignment_multiplier = no_alignment_multiplier
        self._latest_cache: dict[tuple[str, str, int, int, int, float], int] = {}

    # --- trend of one timeframe ------------------------------------------------------------------------

    def trend(self, candles: Candles) -> Int8Array:
        """Trend per candle of one timeframe: +1 up, -1 down, 0 neutral or warm-up (bar t uses 0..t)."""
        close = candles.close
        if len(candles) == 0:
            return np.zeros(0, dtype=np.int8)
        magic = fast = slow = None
        if self.trend_method in ("magic_trend", "magic_trend_and_ema"):
            magic = magic_trend(
                candles.high, candles.low, close, self.cci_period, self.atr_period, self.atr_coeff
            ).direction
        if self.trend_method in ("ema", "magic_trend_and_ema"):
            fast, slow = ema(close, self.ema_fast), ema(close, self.ema_slow)
        return self.combine_trend(magic, fast, slow)

    def combine_trend(
        self, magic: Int8Array | None, fast: FloatArray | None, slow: FloatArray | None
    ) -> Int8Array:
        """The trend rule on its inputs, for arrays of any length (one candle in the incremental path).

        Args:
            magic: Magic Trend direction per candle (needed unless ``trend_method == "ema"``).
            fast, slow: ``ema(close, ema_fast)`` and ``ema(close, ema_slow)`` (needed unless
                ``trend_method == "magic_trend"``).
        """
        if self.trend_method == "magic_trend":
            assert magic is not None
            return magic.astype(np.int8)
        assert fast is not None and slow is not None
        result = np.zeros(len(fast), dtype=np.int8)
        with np.errstate(divide="ignore", invalid="ignore"):
            gap_pct = np.where(slow > 0, (fast - slow) / slow * 100.0, np.nan)
        band = self.neutral_band_pct
        result[gap_pct > band] = 1
        result[gap_pct < -band] = -1  # NaN (warm-up) compares False both ways: neutral
        if self.trend_method == "ema":
            return result
        assert magic is not None
        return np.where(result == magic, result, 0).astype(np.int8)

    # --- confluence rules (one implementation for arrays and single bars) -----------------------------

    def _multiplier(
        self, aligned: npt.NDArray[np.int64], opposed: npt.NDArray[np.int64]
    ) -> tuple[FloatArray, BoolArray]:
        count = len(self.timeframes)
        conflicting = (opposed > 0) & (opposed >= aligned)
        if count == 1:
            scaled = np.full(aligned.shape, self.full_alignment_multiplier)
        else:
            step = (self.full_alignment_multiplier - self.single_alignment_multiplier) / (count - 1)
            scaled = self.single_alignment_multiplier + step * (aligned - 1)
        multiplier = np.where(aligned == 0, self.no_alignment_multiplier, scaled)
        return np.where(conflicting, 0.0, multiplier), conflicting

    def analyze_confluence(self, trends: Mapping[str, int], direction: SignalType) -> ConfluenceResult:
        """Confluence of a signal in ``direction`` with per-timeframe ``trends`` (+1/-1/0).

        Timeframes missing from ``trends`` count as neutral.
        """
        sign = _sign_of(direction)
        values = {timeframe: int(trends.get(timeframe, 0)) for timeframe in self.timeframes}
        aligned = sum(1 for value in values.values() if value == sign)
        opposed = sum(1 for value in values.values() if value == -sign)
        multiplier, conflicting = self._multiplier(np.asarray([aligned]), np.asarray([opposed]))
        return ConfluenceResult(direction, values, aligned, opposed, float(multiplier[0]), bool(conflicting[0]))

    def calculate_signal_strength(self, signal_strength: float, confluence: ConfluenceResult) -> float:
        """A signal's strength (ratio in [0, 1]) scaled by the confluence multiplier, in [0, 1]."""
        if not 0.0 <= signal_strength <= 1.0:
            raise ValueError(f"signal_strength must be a ratio in [0, 1], got {signal_strength}")
        return min(1.0, max(0.0, signal_strength * confluence.multiplier))

    def should_reduce_position(self, position_side: PositionSide, confluence: ConfluenceResult) -> bool:
        """True when the timeframes conflict with an open position (opposed > 0 and opposed >= aligned).

        Re-evaluated from ``confluence.trends`` for the position's own direction, so a confluence computed
        for the other direction gives the same answer.
        """
        direction = SignalType.LONG if position_side is PositionSide.LONG else SignalType.SHORT
        return self.analyze_confluence(confluence.trends, direction).conflicting

    # --- vectorised driver -----------------------------------------------------------------------------

    def _candles_for(self, timeframe: str, base: Candles, higher: Mapping[str, Candles] | None) -> Candles:
        length, base_ms = parse_timeframe(timeframe), parse_timeframe(base.timeframe)
        if higher is not None and timeframe in higher:
            supplied = higher[timeframe]
            if parse_timeframe(supplied.timeframe) != length:
                raise ValueError(f"higher[{timeframe!r}] holds {supplied.timeframe!r} candles")
            return supplied
        if length < base_ms:
            raise ValueError(f"timeframe {timeframe!r} is lower than the base candles' {base.timeframe!r}")
        return base if length == base_ms else resample(base, timeframe)

    def prepare(self, base: Candles, higher: Mapping[str, Candles] | None = None) -> MtfFrame:
        """Trends and confluence for every base bar, using only candles closed at the bar's close.

        Args:
            base: the signal timeframe's candles.
            higher: optional candles per timeframe (e.g. fetched from the exchange, possibly with a longer
                history or an unfinished last candle, which stays invisible until it closes); timeframes
                not given are resampled from ``base``.
        """
        close_times = base.open_time_ms + parse_timeframe(base.timeframe)
        trends: dict[str, Int8Array] = {}
        for timeframe in self.timeframes:
            candles = self._candles_for(timeframe, base, higher)
            per_candle = self.trend(candles)
            index = closed_index(candles.open_time_ms, parse_timeframe(timeframe), close_times)
            visible = np.concatenate(([0], per_candle)).astype(np.int8)  # index -1 -> 0 (not known yet)
            trends[timeframe] = visible[index + 1]
        stacked = np.stack([trends[timeframe] for timeframe in self.timeframes]) if len(base) else None
        up = (stacked == 1).sum(axis=0) if stacked is not None else np.zeros(0, dtype=np.int64)
        down = (stacked == -1).sum(axis=0) if stacked is not None else np.zeros(0, dtype=np.int64)
        long_multiplier, long_conflicting = self._multiplier(up, down)
        short_multiplier, short_conflicting = self._multiplier(down, up)
        return MtfFrame(
            base.open_time_ms,
            self.timeframes,
            trends,
            long_multiplier,
            short_multiplier,
            long_conflicting,
            short_conflicting,
        )

    def confluence_at(self, frame: MtfFrame, index: int, direction: SignalType) -> ConfluenceResult:
        """The typed confluence of base bar ``index`` of a prepared frame."""
        return self.analyze_confluence(frame.trends_at(index), direction)

    # --- newest bar (live) -------------------------------------------------------------------------------

    def latest_trends(self, base: Candles, higher: Mapping[str, Candles] | None = None) -> dict[str, int]:
        """Each timeframe's trend as of the newest base bar's close; equals ``prepare(...).trends_at(-1)``.

        Only the candles closed at that time are used. A timeframe's trend is memoised on its last closed
        candle, so a daily trend is computed once per day, not once per base bar.
        """
        if len(base) == 0:
            raise ValueError(f"no candles for {base.symbol} {base.timeframe}: nothing to analyse")
        at_ms = int(base.open_time_ms[-1]) + parse_timeframe(base.timeframe)
        result: dict[str, int] = {}
        for timeframe in self.timeframes:
            closed = closed_as_of(self._candles_for(timeframe, base, higher), at_ms)
            if len(closed) == 0:
                result[timeframe] = 0
                continue
            key = (
                base.symbol,
                timeframe,
                len(closed),
                int(closed.open_time_ms[0]),
                int(closed.open_time_ms[-1]),
                float(closed.close[-1]),
            )
            if key not in self._latest_cache:
                if len(self._latest_cache) > 256:
                    self._latest_cache.clear()
                self._latest_cache[key] = int(self.trend(closed)[-1])
            result[timeframe] = self._latest_cache[key]
        return result

    def confluence_latest(
        self, base: Candles, direction: SignalType, higher: Mapping[str, Candles] | None = None
    ) -> ConfluenceResult:
        """Confluence of a signal in ``direction`` on the newest base bar."""
        return self.analyze_confluence(self.latest_trends(base, higher), direction)
