"""Provides the squeeze-release signal engine: vectorised over a history and incremental for live bars.

Rules (every threshold is a field of :class:`SignalParams`):

- **LONG / SHORT** on a squeeze release: the squeeze was on for at least ``min_squeeze_bars`` bars and is
  off (or "no squeeze") now, within ``release_window`` bars of the release, with momentum above zero and
  rising (LONG) or below zero and falling (SHORT), ``|slope| / atr >= min_momentum_slope``,
  ``|momentum| / atr >= min_momentum_atr``, confirmed by the Magic Trend direction (if
  ``require_trend_confirmation``) and ``strength >= min_strength``. At most one entry per release.
- **EXIT** (for a long; mirrored for a short): momentum fell ``fade_bars`` bars in a row starting from a
  positive value (``exit_on_momentum_fade``), or the Magic Trend points down (``exit_on_trend_flip``).
  ``exit_long`` / ``exit_short`` say whether the condition holds on a bar (a position holder exits on
  the first such bar); the ``signal`` column shows EXIT only on the bar where a condition starts.
- **Strength** in [0, 1] of an entry: the weighted mean of three ratios, each clipped to [0, 1]:
  momentum magnitude ``|momentum| / (momentum_full_atr * atr)``, slope ``|slope| / (slope_full_atr *
  atr)`` and squeeze duration ``squeeze_bars / squeeze_full_bars`` (weights ``weight_*``). An EXIT has
  strength 1, NONE 0. ``atr`` is Wilder's ATR(``atr_period``), so the ratios are scale-free.

Values at bar t use bars 0..t only. The Magic Trend depends on the first bar of the history, so the
incremental engine must see the same history (``prime``) to agree with :meth:`SignalEngine.compute`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engine.analysis import indicators as ind
from engine.domain.models import Candles, FloatArray, SignalType, TradingSignal

if TYPE_CHECKING:
    from engine.analysis.signals_live import IncrementalSignalEngine

Int8Array = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

SIGNAL_NONE, SIGNAL_LONG, SIGNAL_SHORT, SIGNAL_EXIT = 0, 1, -1, 2
SIGNAL_TYPES: dict[int, SignalType] = {
    SIGNAL_NONE: SignalType.NONE,
    SIGNAL_LONG: SignalType.LONG,
    SIGNAL_SHORT: SignalType.SHORT,
    SIGNAL_EXIT: SignalType.EXIT,
}
# exit_cause bit flags
EXIT_LONG_FADE, EXIT_LONG_TREND, EXIT_SHORT_FADE, EXIT_SHORT_TREND = 1, 2, 4, 8
_EXIT_LONG, _EXIT_SHORT = EXIT_LONG_FADE | EXIT_LONG_TREND, EXIT_SHORT_FADE | EXIT_SHORT_TREND
_NO_RELEASE_AGE = np.iinfo(np.int64).max // 2


@dataclass(frozen=True)
class SignalParams:
    """Every tunable of the signal engine (an optimizer sweeps these)."""

    bb_length: int = 20
    bb_mult: float = 2.0
    kc_length: int = 20
    kc_mult: float = 1.5
    use_true_range: bool = True
    lazybear_compat: bool = True
    trend_cci_period: int = 20
    trend_atr_period: int = 5
    trend_coeff: float = 1.0
    atr_period: int = 14
    min_squeeze_bars: int = 1
    release_window: int = 1
    min_momentum_slope: float = 0.0  # |slope| / atr
    min_momentum_atr: float = 0.0  # |momentum| / atr
    require_trend_confirmation: bool = True
    min_strength: float = 0.0  # ratio in [0, 1]
    exit_on_momentum_fade: bool = True
    fade_bars: int = 2
    exit_on_trend_flip: bool = True
    momentum_full_atr: float = 1.0
    slope_full_atr: float = 0.25
    squeeze_full_bars: int = 20
    weight_momentum: float = 0.4
    weight_slope: float = 0.3
    weight_duration: float = 0.3

    def __post_init__(self) -> None:
        for name in ("bb_length", "kc_length", "trend_cci_period", "trend_atr_period", "atr_period"):
            if getattr(self, name) < 1:
                raise ValueError(f"SignalParams.{name} must be >= 1")
        if self.min_squeeze_bars < 1 or self.release_window < 1 or self.fade_bars < 1:
            raise ValueError("SignalParams: min_squeeze_bars, release_window and fade_bars must be >= 1")
        if min(self.momentum_full_atr, self.slope_full_atr, self.squeeze_full_bars) <= 0:
            raise ValueError("SignalParams: the *_full_* scales must be > 0")
        weights = (self.weight_momentum, self.weight_slope, self.weight_duration)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("SignalParams: weights must be >= 0 with a positive sum")

    def with_overrides(self, **changes: Any) -> SignalParams:
        return dataclasses.replace(self, **changes)

    @property
    def lookback_bars(self) -> int:
        """Bars of history the windowed indicators need for the newest value."""
        return max(2 * self.kc_length, self.bb_length, self.kc_length + 1, self.trend_cci_period) + (
            self.trend_atr_period + 1
        )


@dataclass(frozen=True, eq=False)
class SignalFrame:
    """Signals and their inputs for every bar of a history (arrays aligned with the candles)."""

    symbol: str
    timeframe: str
    open_time_ms: IntArray
    signal: Int8Array  # SIGNAL_* codes
    strength: FloatArray  # ratio in [0, 1]
    momentum: FloatArray  # squeeze momentum value, quote currency
    momentum_slope: FloatArray  # momentum[t] - momentum[t-1]
    squeeze_on: BoolArray
    squeeze_off: BoolArray
    squeeze_bars: IntArray  # length of the released squeeze on entry-window bars, else 0
    trend_direction: Int8Array  # Magic Trend: +1 up, -1 down, 0 warm-up
    trend_line: FloatArray
    atr: FloatArray  # Wilder ATR(atr_period), quote currency
    exit_cause: Int8Array  # EXIT_* bit flags that hold on the bar

    def __len__(self) -> int:
        return len(self.signal)

    @property
    def exit_long(self) -> BoolArray:
        return np.asarray((self.exit_cause & _EXIT_LONG) != 0, dtype=np.bool_)

    @property
    def exit_short(self) -> BoolArray:
        return np.asarray((self.exit_cause & _EXIT_SHORT) != 0, dtype=np.bool_)

    def signal_at(self, index: int) -> TradingSignal:
        """The signal of bar ``index`` (negative counts from the end) with its reasons."""
        i = range(len(self))[index]
        code = int(self.signal[i])
        return TradingSignal(
            self.symbol,
            int(self.open_time_ms[i]),
            SIGNAL_TYPES[code],
            float(self.strength[i]),
            _reasons(self, i, code),
        )


def _reasons(frame: SignalFrame, i: int, code: int) -> tuple[str, ...]:
    momentum, slope = frame.momentum[i], frame.momentum_slope[i]
    sign = "+" if momentum > 0 else "-"
    trend = {1: "magic trend up", -1: "magic trend down"}.get(int(frame.trend_direction[i]), "magic trend warming up")
    if code in (SIGNAL_LONG, SIGNAL_SHORT):
        movement = "rising" if slope > 0 else "falling"
        return (f"squeeze released after {int(frame.squeeze_bars[i])} bars", f"momentum {sign}, {movement}", trend)
    if code == SIGNAL_EXIT:
        cause, reasons = int(frame.exit_cause[i]), []
        for flag, text in (
            (EXIT_LONG_FADE, "exit long: momentum + fading"),
            (EXIT_LONG_TREND, "exit long: magic trend down"),
            (EXIT_SHORT_FADE, "exit short: momentum - fading"),
            (EXIT_SHORT_TREND, "exit short: magic trend up"),
        ):
            if cause & flag:
                reasons.append(text)
        return tuple(reasons)
    if np.isnan(momentum):
        return ("warming up",)
    squeeze = "squeeze on" if frame.squeeze_on[i] else "squeeze off" if frame.squeeze_off[i] else "no squeeze"
    return (squeeze, f"momentum {sign}", trend)


def _shift(values: npt.NDArray[Any], bars: int, fill: Any) -> npt.NDArray[Any]:
    out = np.full_like(values, fill)
    if bars < len(values):
        out[bars:] = values[: len(values) - bars]
    return out


def _run_length(flags: BoolArray) -> IntArray:
    """Consecutive True bars ending at each bar (0 where False)."""
    index = np.arange(len(flags))
    last_false = np.maximum.accumulate(np.where(flags, -1, index))
    return index - last_false


@dataclass(frozen=True)
class _BarInputs:
    """What the decision rules read for each bar; arrays of any length (one bar when live)."""

    momentum: FloatArray
    slope: FloatArray
    atr: FloatArray
    direction: Int8Array
    squeeze_on: BoolArray
    release_age: IntArray
    release_bars: IntArray
    falling_run: IntArray
    rising_run: IntArray
    fade_origin: FloatArray  # momentum fade_bars bars ago


def _evaluate(p: SignalParams, bar: _BarInputs) -> tuple[BoolArray, BoolArray, FloatArray, Int8Array]:
    """The decision rules, bar by bar: (qualifies long, qualifies short, entry strength, exit causes)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        magnitude = np.abs(bar.momentum) / bar.atr
        steepness = np.abs(bar.slope) / bar.atr
        parts = (
            (p.weight_momentum, np.clip(magnitude / p.momentum_full_atr, 0.0, 1.0)),
            (p.weight_slope, np.clip(steepness / p.slope_full_atr, 0.0, 1.0)),
            (p.weight_duration, np.clip(bar.release_bars / p.squeeze_full_bars, 0.0, 1.0)),
        )
        strength = sum(weight * part for weight, part in parts) / sum(weight for weight, _ in parts)
        strength = np.nan_to_num(np.clip(strength, 0.0, 1.0), nan=0.0)
        released = (bar.release_age < p.release_window) & ~bar.squeeze_on & (bar.release_bars >= p.min_squeeze_bars)
        common = (
            released
            & (steepness >= p.min_momentum_slope)
            & (magnitude >= p.min_momentum_atr)
            & (strength >= p.min_strength)
        )
        trend_ok_long = (bar.direction == 1) | (not p.require_trend_confirmation)
        trend_ok_short = (bar.direction == -1) | (not p.require_trend_confirmation)
        qualifies_long = common & (bar.momentum > 0) & (bar.slope > 0) & trend_ok_long
        qualifies_short = common & (bar.momentum < 0) & (bar.slope < 0) & trend_ok_short
        cause = np.zeros(len(bar.momentum), dtype=np.int8)
        if p.exit_on_momentum_fade:
            fading_long = (bar.falling_run >= p.fade_bars) & (bar.fade_origin > 0)
            fading_short = (bar.rising_run >= p.fade_bars) & (bar.fade_origin < 0)
            cause |= np.where(fading_long, EXIT_LONG_FADE, 0).astype(np.int8)
            cause |= np.where(fading_short, EXIT_SHORT_FADE, 0).astype(np.int8)
        if p.exit_on_trend_flip:
            cause |= np.where(bar.direction == -1, EXIT_LONG_TREND, 0).astype(np.int8)
            cause |= np.where(bar.direction == 1, EXIT_SHORT_TREND, 0).astype(np.int8)
    return qualifies_long, qualifies_short, strength, cause


class SignalEngine:
    """Turns candles into signals with one set of :class:`SignalParams`."""

    def __init__(self, params: SignalParams | None = None) -> None:
        self.params = params or SignalParams()

    def compute(self, candles: Candles) -> SignalFrame:
        """Signals for every bar of ``candles`` (vectorised)."""
        p = self.params
        high, low, close = candles.high, candles.low, candles.close
        squeeze = ind.squeeze_momentum(
            high, low, close, p.bb_length, p.bb_mult, p.kc_length, p.kc_mult, p.use_true_range, p.lazybear_compat
        )
        trend = ind.magic_trend(high, low, close, p.trend_cci_period, p.trend_atr_period, p.trend_coeff)
        atr = ind.atr(high, low, close, p.atr_period)
        momentum = squeeze.value
        slope = momentum - _shift(momentum, 1, np.nan)
        squeeze_run = _run_length(squeeze.squeeze_on)
        release = _shift(squeeze.squeeze_on, 1, False) & ~squeeze.squeeze_on
        index = np.arange(len(candles))
        last_release = np.maximum.accumulate(np.where(release, index, -1))
        has_release = last_release >= 0
        release_age = np.where(has_release, index - last_release, _NO_RELEASE_AGE)
        released_run = _shift(squeeze_run, 1, 0)[np.maximum(last_release, 0)]
        bar = _BarInputs(
            momentum=momentum,
            slope=slope,
            atr=atr,
            direction=trend.direction,
            squeeze_on=squeeze.squeeze_on,
            release_age=release_age,
            release_bars=np.where(has_release, released_run, 0),
            falling_run=_run_length(slope < 0),
            rising_run=_run_length(slope > 0),
            fade_origin=_shift(momentum, p.fade_bars, np.nan),
        )
        qualifies_long, qualifies_short, entry_strength, cause = _evaluate(p, bar)
        # At most one entry per release: the first qualifying bar of each release's window.
        qualifies = qualifies_long | qualifies_short
        qualifying = np.flatnonzero(qualifies)
        _, first = np.unique(last_release[qualifying], return_index=True)
        entry = np.zeros(len(candles), dtype=bool)
        entry[qualifying[first]] = True
        exit_long, exit_short = (cause & _EXIT_LONG) != 0, (cause & _EXIT_SHORT) != 0
        exit_starts = (exit_long & ~_shift(exit_long, 1, False)) | (exit_short & ~_shift(exit_short, 1, False))
        signal = np.where(
            entry & qualifies_long,
            SIGNAL_LONG,
            np.where(entry & qualifies_short, SIGNAL_SHORT, np.where(exit_starts, SIGNAL_EXIT, SIGNAL_NONE)),
        ).astype(np.int8)
        strength = np.where(entry, entry_strength, np.where(signal == SIGNAL_EXIT, 1.0, 0.0))
        in_window = (release_age < p.release_window) & has_release
        return SignalFrame(
            candles.symbol,
            candles.timeframe,
            np.asarray(candles.open_time_ms),
            signal,
            strength,
            momentum,
            slope,
            squeeze.squeeze_on,
            squeeze.squeeze_off,
            np.where(in_window, bar.release_bars, 0),
            trend.direction,
            trend.line,
            atr,
            cause,
        )

    def incremental(self, symbol: str = "", timeframe: str = "") -> IncrementalSignalEngine:
        """A live engine with these parameters (see :mod:`engine.analysis.signals_live`)."""
        from engine.analysis.signals_live import IncrementalSignalEngine

        return IncrementalSignalEngine(self.params, symbol, timeframe)
